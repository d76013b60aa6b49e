//! The three sources above the defaults, each read into a [`Layer`] of checked values: the config
//! file, the environment and the flags. A value is checked against its key's type as it is read,
//! so an error names the key and where the value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{redact, Config, Key, Source};

/// The variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "MLTRAIL_CONFIG";

const fn key(table: &'static str, name: &'static str) -> Key {
    Key { table, name }
}

/// Keys `[server]` held before mltrail.toml had other tables. Files written then still set them
/// there, and `mltrail server`'s flags keep these names.
const LEGACY_SERVER_KEYS: &[(&str, Key)] = &[
    ("backend_store_uri", key("store", "backend_store_uri")),
    (
        "artifacts_destination",
        key("store", "artifacts_destination"),
    ),
    ("log_format", key("log", "format")),
    ("monitor_interval_ms", key("monitor", "interval_ms")),
    ("webhook_attempts", key("monitor", "webhook_attempts")),
    ("webhook_backoff_ms", key("monitor", "webhook_backoff_ms")),
];

/// Environment variables older than `MLTRAIL_<TABLE>_<KEY>`, and the key each sets. They keep
/// working; when both are set, the systematic name wins (then this list's order).
pub const LEGACY_ENV: &[(&str, Key)] = &[
    ("MLTRAIL_HOST", key("server", "host")),
    ("MLTRAIL_AUTH", key("auth", "mode")),
    (
        "MLTRAIL_AUDIT_SIGNING_KEY",
        key("audit", "signing_key_file"),
    ),
    ("MLTRAIL_PORT", key("server", "port")),
    (
        "MLTRAIL_MAX_ARTIFACT_BYTES",
        key("server", "max_artifact_bytes"),
    ),
    (
        "MLTRAIL_BACKEND_STORE_URI",
        key("store", "backend_store_uri"),
    ),
    (
        "MLTRAIL_ARTIFACTS_DESTINATION",
        key("store", "artifacts_destination"),
    ),
    ("MLTRAIL_LOG", key("log", "filter")),
    (
        "MLTRAIL_WEBHOOK_ATTEMPTS",
        key("monitor", "webhook_attempts"),
    ),
    (
        "MLTRAIL_WEBHOOK_BACKOFF_MS",
        key("monitor", "webhook_backoff_ms"),
    ),
    // Shared with the client commands and the mlflow client.
    ("MLTRAIL_TRACKING_URI", key("serve", "tracking_uri")),
    ("MLFLOW_TRACKING_URI", key("serve", "tracking_uri")),
];

/// The key a flag sets: the key of the same name in the flag struct's table, a legacy `[server]`
/// name for `mltrail server`'s flags, and `--log-format`, which every process has, for
/// `[log] format`.
pub(super) fn flag_key(table: &str, field: &str) -> Option<Key> {
    Key::find(table, field).or_else(|| match (table, field) {
        (_, "log_format") => Some(key("log", "format")),
        ("server" | "serve", "auth") => Some(key("auth", "mode")),
        ("server" | "serve", "insecure_no_auth") => Some(key("auth", "insecure_no_auth")),
        ("server", "default_permission") => Some(key("auth", "default_permission")),
        ("server", _) => legacy_server_key(field),
        _ => None,
    })
}

fn legacy_server_key(name: &str) -> Option<Key> {
    LEGACY_SERVER_KEYS
        .iter()
        .find(|(legacy, _)| *legacy == name)
        .map(|(_, key)| *key)
}

/// The flag a field of a flag struct is: clap names it after the field.
pub(super) fn flag_name(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

#[derive(Debug)]
pub(super) struct Entry {
    pub key: Key,
    pub value: Value,
    pub source: Source,
}

/// The values one source sets, checked against their keys' types.
#[derive(Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

impl Layer {
    /// The flags given to a command, from its flag struct (each `Option` field that is `Some`):
    /// a field sets the key of its name in `table` (see [`flag_key`]).
    pub fn flags(table: &str, args: &impl Serialize) -> Result<Layer> {
        let Value::Object(fields) = serde_json::to_value(args)? else {
            bail!("the flags of [{table}] are not a struct");
        };
        let mut layer = Layer::default();
        for (field, value) in fields {
            if value.is_null() {
                continue;
            }
            // A flag struct whose field matches no key is a bug, caught by the tests.
            let key = flag_key(table, &field)
                .ok_or_else(|| anyhow!("flag {} sets no config key", flag_name(&field)))?;
            layer.push(key, value, Source::Flag(flag_name(&field)))?;
        }
        Ok(layer)
    }

    /// This layer, then `other` above it.
    pub fn then(mut self, other: Layer) -> Layer {
        self.entries.extend(other.entries);
        self
    }

    pub(super) fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    /// The tables of a mltrail.toml. Unknown tables and keys are refused with their name.
    pub(super) fn file(path: &Path) -> Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        let mut layer = Layer::default();
        // How the file spelled each key it set, to name both spellings when it sets one twice.
        let mut spellings: BTreeMap<Key, String> = BTreeMap::new();
        for (table, keys) in doc {
            if Config::table(&table).is_none() {
                bail!("{}", unknown_table(&table, &keys, path));
            }
            let toml::Value::Table(keys) = keys else {
                bail!(
                    "`{table}` in {} is not a table: write `[{table}]` above its keys",
                    path.display()
                );
            };
            for (name, value) in keys {
                let spelling = format!("`[{table}] {name}`");
                let (key, legacy) = match Key::find(&table, &name) {
                    Some(key) => (key, None),
                    None => match (table.as_str(), legacy_server_key(&name)) {
                        ("server", Some(key)) => (key, Some(spelling.clone())),
                        _ => bail!("{}", unknown_key(&table, &name, path)),
                    },
                };
                if let Some(earlier) = spellings.insert(key, spelling.clone()) {
                    bail!(
                        "{key} is set twice in {}: as {earlier} and as {spelling}; keep one",
                        path.display()
                    );
                }
                let value = serde_json::to_value(value)?;
                let source = Source::File {
                    path: path.to_path_buf(),
                    legacy,
                };
                layer.push(key, value, source)?;
            }
        }
        Ok(layer)
    }

    /// Every key's variables (`MLTRAIL_<TABLE>_<KEY>`, then older names); also the `MLTRAIL_*`
    /// variables that set nothing.
    pub(super) fn env(env: &Env) -> Result<(Layer, Vec<String>)> {
        let mut layer = Layer::default();
        let mut known: BTreeSet<String> = BTreeSet::from([CONFIG_ENV.to_string()]);
        for key in Key::all() {
            let names = key.env_names();
            let mut set = None;
            for name in names {
                if set.is_none() {
                    if let Some(text) = env.text(&name)? {
                        set = Some((name.clone(), text));
                    }
                }
                known.insert(name);
            }
            if let Some((name, text)) = set {
                layer.push_text(key, text, Source::Env(name))?;
            }
        }
        let ignored = env
            .vars
            .keys()
            .filter(|name| name.starts_with("MLTRAIL_") && !known.contains(*name))
            .cloned()
            .collect();
        Ok((layer, ignored))
    }

    fn push(&mut self, key: Key, value: Value, source: Source) -> Result<()> {
        if let Err(e) = check(key, &value) {
            bail!(
                "invalid value {} for {key} from {source}: {e}",
                shown(&value)
            );
        }
        self.entries.push(Entry { key, value, source });
        Ok(())
    }

    /// A value given as text (the environment): taken as text when the key holds text, or read
    /// as the number or boolean the key wants, or as a JSON list.
    fn push_text(&mut self, key: Key, text: &str, source: Source) -> Result<()> {
        let as_text = Value::String(text.to_string());
        let value = match (check(key, &as_text), scalar(text)) {
            (Ok(()), _) => as_text,
            (Err(_), Some(scalar)) => scalar,
            // A list (`[gates] policies`) is given as JSON.
            (Err(_), None) if text.trim_start().starts_with('[') => serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("invalid JSON for {key} from {source}: {e}"))?,
            (Err(_), None) => as_text, // `push` reports the type the key wants
        };
        self.push(key, value, source)
    }
}

/// Whether `value` fits the type of `key`: the whole config is read from this one value.
fn check(key: Key, value: &Value) -> Result<(), serde_json::Error> {
    let mut table = Map::new();
    table.insert(key.name.to_string(), value.clone());
    let mut doc = Map::new();
    doc.insert(key.table.to_string(), Value::Object(table));
    serde_json::from_value::<Config>(Value::Object(doc)).map(drop)
}

/// Text that reads as a number or a boolean, as Rust parses them (what clap did for env flags).
fn scalar(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(n.into());
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(n.into());
    }
    if let Ok(b) = text.parse::<bool>() {
        return Some(b.into());
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{}`", redact(s)),
        other => format!("`{other}`"),
    }
}

/// The closest of `candidates` to `name`, when one is close enough to be a typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

pub(super) fn unknown_key(table: &str, name: &str, path: &Path) -> String {
    let mut message = format!("unknown key `[{table}] {name}` in {}", path.display());
    let here = Config::table(table).map(|t| t.keys.iter().map(|k| k.name));
    let legacy = (table == "server").then_some(LEGACY_SERVER_KEYS.iter().map(|(n, _)| *n));
    let candidates = here
        .into_iter()
        .flatten()
        .chain(legacy.into_iter().flatten());
    if let Some(near) = closest(name, candidates) {
        message.push_str(&format!(": did you mean `{near}`?"));
    } else if let Some(elsewhere) = Key::all().find(|k| k.name == name) {
        message.push_str(&format!(": it belongs in [{}]", elsewhere.table));
    }
    message
}

fn unknown_table(table: &str, value: &toml::Value, path: &Path) -> String {
    let tables: Vec<&str> = Config::TABLES.iter().map(|t| t.name).collect();
    if !value.is_table() {
        // A key above every table.
        let home = Key::all()
            .find(|k| k.name == table)
            .map(|k| format!(": put it under [{}]", k.table))
            .unwrap_or_default();
        return format!(
            "unknown key `{table}` at the top of {} (keys belong in a table){home}",
            path.display()
        );
    }
    let hint = match closest(table, tables.iter().copied()) {
        Some(near) => format!("did you mean [{near}]?"),
        None => format!("the tables are {}", tables.join(", ")),
    };
    format!("unknown table `[{table}]` in {}: {hint}", path.display())
}

/// A snapshot of the environment, so tests can pass their own.
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `None`: set, but not valid UTF-8.
    vars: BTreeMap<String, Option<String>>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()))
                })
                .collect(),
        }
    }

    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        }
    }

    /// The variable's value; an error when it is set but not UTF-8.
    pub fn text(&self, name: &str) -> Result<Option<&str>> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(Some(text)) => Ok(Some(text)),
            Some(None) => bail!("environment variable {name} is not valid UTF-8"),
        }
    }
}
