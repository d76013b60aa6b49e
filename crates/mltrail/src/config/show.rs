//! The configuration as people read it: `mltrail config show` (each key's value and where it came
//! from), `mltrail config example` (every key with its default and documentation, also the
//! README's), and the defaults and variables `--help` shows beside each flag. All three are
//! generated from the tables' declarations, so none of them can drift from the code.

use anyhow::Result;
use clap::Command;
use serde_json::{json, Map, Value};

use super::layers::flag_key;
use super::{Config, Key, Loaded, Source};

/// The commands whose flags set config keys, and the table their flag struct belongs to.
const FLAG_COMMANDS: &[(&[&str], &str)] = &[
    (&["server"], "server"),
    (&["serve"], "serve"),
    (&["audit", "verify"], "store"),
    (&["audit", "log"], "store"),
    (&["config", "show", "server"], "server"),
    (&["config", "show", "serve"], "serve"),
];

/// A value as it is written in mltrail.toml; `None` for a key that is not set.
fn toml_literal(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(toml::Value::String(s.clone()).to_string()),
        other => Some(other.to_string()),
    }
}

/// A value as `--help` shows it (no quotes).
fn plain(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn value_of(values: &Value, key: Key) -> &Value {
    &values[key.table][key.name]
}

fn defaults() -> Result<Value> {
    Ok(serde_json::to_value(Config::default())?)
}

/// `mltrail config show`: valid TOML, with each value's source as a comment.
pub fn text(loaded: &Loaded) -> Result<String> {
    let values = loaded.values()?;
    let mut out = String::from(
        "# The configuration in effect: every key, its value, and where the value came from\n\
         # (default, the config file, an environment variable or a flag).\n",
    );
    match &loaded.file {
        Some((path, from)) => {
            out.push_str(&format!("# config file: {} ({from})\n", path.display()))
        }
        None => out.push_str("# config file: none (give --config or MLTRAIL_CONFIG)\n"),
    }
    for table in Config::TABLES {
        out.push_str(&format!("\n[{}]\n", table.name));
        let lines: Vec<(String, String)> = table
            .keys
            .iter()
            .filter_map(|k| Key::find(table.name, k.name))
            .map(|key| {
                let setting = match toml_literal(value_of(&values, key)) {
                    Some(v) => format!("{} = {v}", key.name),
                    None => format!("# {} is not set", key.name),
                };
                (setting, loaded.source(key).to_string())
            })
            .collect();
        let width = lines.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
        for (setting, source) in lines {
            out.push_str(&format!("{setting:<width$}  # {source}\n"));
        }
    }
    if !loaded.ignored_env.is_empty() {
        out.push_str(&format!(
            "\n# ignored environment variables (they set no key): {}\n",
            loaded.ignored_env.join(", ")
        ));
    }
    Ok(out)
}

/// `mltrail config show --json`: `tables.<table>.<key>` is `{value, source, from}`.
pub fn json(loaded: &Loaded) -> Result<Value> {
    let values = loaded.values()?;
    let mut tables = Map::new();
    for table in Config::TABLES {
        let mut keys = Map::new();
        for key in table
            .keys
            .iter()
            .filter_map(|k| Key::find(table.name, k.name))
        {
            let source = loaded.source(key);
            let mut entry = json!({
                "value": value_of(&values, key),
                "source": source.kind(),
                "from": source.origin(),
            });
            if let Source::File {
                legacy: Some(spelling),
                ..
            } = source
            {
                entry["as"] = json!(spelling.trim_matches('`'));
            }
            keys.insert(key.name.to_string(), entry);
        }
        tables.insert(table.name.to_string(), Value::Object(keys));
    }
    Ok(json!({
        "file": loaded.file.as_ref().map(|(path, from)| json!({
            "path": path.display().to_string(),
            "source": from.kind(),
            "from": from.origin(),
        })),
        "tables": tables,
        "ignored_env": loaded.ignored_env,
    }))
}

/// The flags that set each key: the flag, and the commands that have it.
fn flags_by_key(cli: &Command) -> Vec<(Key, String, String)> {
    let mut found = Vec::new();
    for (path, table) in FLAG_COMMANDS.iter().filter(|(path, _)| path[0] != "config") {
        let Some(cmd) = path
            .iter()
            .try_fold(cli, |cmd, name| cmd.find_subcommand(name))
        else {
            continue;
        };
        for arg in cmd.get_arguments() {
            if let (Some(key), Some(long)) =
                (flag_key(table, arg.get_id().as_str()), arg.get_long())
            {
                found.push((
                    key,
                    format!("--{long}"),
                    format!("mltrail {}", path.join(" ")),
                ));
            }
        }
    }
    found
}

/// `# flag: --port (mltrail server)`, one line per flag name.
fn flag_lines(key: Key, flags: &[(Key, String, String)]) -> String {
    let mut by_name: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, name, command) in flags.iter().filter(|(k, _, _)| *k == key) {
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, commands)) => commands.push(command),
            None => by_name.push((name, vec![command])),
        }
    }
    by_name
        .into_iter()
        .map(|(name, commands)| format!("# flag: {name} ({})\n", commands.join(", ")))
        .collect()
}

/// `mltrail config example`: a mltrail.toml with every key at its default, each documented with
/// its environment variables and flags. The README's configuration section is this text.
pub fn example(cli: &Command) -> Result<String> {
    let defaults = defaults()?;
    let flags = flags_by_key(cli);
    let mut out = String::from(
        "# mltrail.toml: every key with its default. Give the file with --config or MLTRAIL_CONFIG.\n\
         # Each value is taken from, highest first: the command's flag, the environment variable\n\
         # (MLTRAIL_<TABLE>_<KEY>, or an older name listed with the key), this file, the default.\n",
    );
    for table in Config::TABLES {
        out.push('\n');
        for line in table.doc.lines() {
            out.push_str(&format!("#{line}\n"));
        }
        out.push_str(&format!("[{}]\n", table.name));
        for key in table
            .keys
            .iter()
            .filter_map(|k| Key::find(table.name, k.name))
        {
            out.push('\n');
            for line in key.doc().lines() {
                out.push_str(&format!("#{line}\n"));
            }
            out.push_str(&format!("# env: {}\n", key.env_names().join(", ")));
            out.push_str(&flag_lines(key, &flags));
            match toml_literal(value_of(&defaults, key)) {
                Some(v) => out.push_str(&format!("{} = {v}\n", key.name)),
                None => out.push_str(&format!("# {} = (no default)\n", key.name)),
            }
        }
    }
    Ok(out)
}

/// Adds each flag's default and environment variables to its help, from the key it sets (the
/// flags no longer carry clap defaults: a default would hide the file's value).
pub fn annotate_help(cli: Command) -> Command {
    let defaults = defaults().unwrap_or_default();
    FLAG_COMMANDS.iter().fold(cli, |cli, (path, table)| {
        at_path(cli, path, &|cmd| annotate(cmd, table, &defaults))
    })
}

fn at_path(cmd: Command, path: &[&str], f: &dyn Fn(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(cmd),
        Some((first, rest)) => {
            if cmd.find_subcommand(first).is_none() {
                return cmd;
            }
            cmd.mut_subcommand(*first, |sub| at_path(sub, rest, f))
        }
    }
}

fn annotate(cmd: Command, table: &str, defaults: &Value) -> Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    ids.into_iter().fold(cmd, |cmd, id| {
        let Some(key) = flag_key(table, &id) else {
            return cmd;
        };
        let mut note = String::new();
        if let Some(default) = plain(value_of(defaults, key)) {
            note.push_str(&format!(" [default: {default}]"));
        }
        note.push_str(&format!(" [env: {}]", key.env_names().join(", ")));
        cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            // A help text that names its own variables already says it.
            if help.contains("MLTRAIL_") {
                return arg;
            }
            let long = arg.get_long_help().map(|h| format!("{h}{note}"));
            let arg = arg.help(format!("{help}{note}").trim_start().to_string());
            match long {
                Some(long) => arg.long_help(long),
                None => arg,
            }
        })
    })
}
