//! A deployment's routing policy as the user writes it (TOML for `mltrail serve --policy`, JSON
//! through the tracking server), read into a [`Policy`] whose every kind holds only the keys
//! it uses. A key the kind does not read is refused rather than ignored: a typo in `epsilon`
//! would otherwise run an experiment nobody asked for.
//!
//! The policy's version is the digest of its canonical JSON (RFC 8785), so the same policy
//! written twice, in TOML or JSON, in any key order, has the same version.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::deployment::ModelRef;

/// Most arms a policy may have: each is a model held in memory.
pub const MAX_ARMS: usize = 16;
/// Most context columns a `linucb` policy may read (its state per arm is that squared).
pub const MAX_CONTEXT: usize = 64;
/// Posterior draws a `thompson` policy takes by default to estimate its propensities.
pub const DEFAULT_DRAWS: u32 = 1000;

/// How the policy picks an arm for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// One arm answers everything.
    Single,
    /// Arms by weight (normalized to sum to 1); by a stable hash of the request key when the
    /// policy names one, so a key always lands on the same arm.
    Split { weights: Vec<f64> },
    /// The first arm answers; every other arm scores the same rows off the request's path and
    /// its outputs are logged, never returned.
    Shadow,
    /// The arm with the best mean reward, except with probability `epsilon` one at random.
    EpsilonGreedy { epsilon: f64 },
    /// Each arm with the probability that its posterior mean reward is the best, estimated
    /// from `draws` draws of the posteriors.
    Thompson { likelihood: Likelihood, draws: u32 },
    /// The arm with the best upper confidence bound (mean + sqrt(2 ln N / n)).
    Ucb1,
    /// Disjoint LinUCB (Li et al. 2010) over numeric input columns.
    LinUcb { alpha: f64, context: Vec<String> },
    /// The second arm (the candidate) takes a growing share of traffic from the first (the
    /// stable version), step by step, while its analysis passes; when a check fails it is
    /// rolled back to 0.
    Canary(Canary),
}

/// A canary's schedule and analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// The candidate's share of traffic at each step, in (0, 1], rising.
    pub steps: Vec<f64>,
    /// How long each step lasts, in milliseconds.
    pub step_ms: i64,
    /// The analysis window, in milliseconds: checks read the candidate's requests, errors,
    /// latency and labels since the window began, and fail as soon as one is out of bounds.
    pub window_ms: i64,
    /// Requests the candidate must have in a window before its error rate and latency count
    /// (and labels, before accuracy counts).
    pub min_requests: u64,
    pub max_error_rate: Option<f64>,
    /// Bound on the candidate's 99th percentile latency in the window, in milliseconds.
    pub max_latency_ms: Option<f64>,
    /// Bound on how much lower the candidate's accuracy on labelled feedback may be than the
    /// stable arm's in the window.
    pub max_accuracy_drop: Option<f64>,
    /// The output a label is compared with for accuracy.
    pub label_output: String,
    /// Monitors (their ids) whose firing alerts about windows after the canary began roll it
    /// back: the monitor rules that exist, judged on the deployment's traffic.
    pub monitors: Vec<String>,
    /// On rollback, move the registry alias the candidate arm names (`NAME@ALIAS`) back to
    /// the stable arm's version, through its release gate.
    pub move_alias_back: bool,
}

impl Rule {
    /// Whether the rule learns from rewards.
    pub fn learns(&self) -> bool {
        matches!(
            self,
            Rule::EpsilonGreedy { .. } | Rule::Thompson { .. } | Rule::Ucb1 | Rule::LinUcb { .. }
        )
    }

    /// The kind as written in a policy file.
    pub fn kind(&self) -> &'static str {
        match self {
            Rule::Single => "single",
            Rule::Split { .. } => "split",
            Rule::Shadow => "shadow",
            Rule::EpsilonGreedy { .. } => "epsilon_greedy",
            Rule::Thompson { .. } => "thompson",
            Rule::Ucb1 => "ucb1",
            Rule::LinUcb { .. } => "linucb",
            Rule::Canary(_) => "canary",
        }
    }
}

/// The reward model of a Thompson policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Likelihood {
    /// Rewards in [0, 1] (a click, a conversion); a Beta(1, 1) prior per arm.
    Bernoulli,
    /// Any real reward (revenue); each arm's mean with its standard error.
    Gaussian,
}

/// Where a learning policy's reward comes from in `/api/v1/feedback`.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardSource {
    /// The feedback's `reward` number.
    Reward,
    /// The feedback's `label`: a number is the reward, `true`/`false` are 1 and 0, and
    /// `reward_map` maps a label (as its JSON text, so `"yes"` or `1`) to a reward.
    Label { map: BTreeMap<String, f64> },
}

/// A routing policy, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy's name (default: its kind).
    pub name: String,
    /// The experiment its records belong to (default: the name).
    pub experiment: String,
    /// The arms, as `NAME/VERSION` or `NAME@ALIAS`, in the order the file lists them.
    pub arms: Vec<ModelRef>,
    /// The request column whose value identifies who asks (a user id): logged with every
    /// record, and for a split, what keeps a caller on one arm.
    pub key: Option<String>,
    pub rule: Rule,
    pub reward: RewardSource,
    /// A share of requests spread uniformly over the arms on top of the rule, so every arm
    /// keeps a positive propensity (UCB1 and LinUCB are otherwise deterministic).
    pub exploration_floor: f64,
    /// Seeds the policy's random choices (tests and simulations); unseeded, from the OS.
    pub seed: Option<u64>,
    /// The policy as given, canonical (RFC 8785).
    pub canonical: String,
    /// BLAKE3 of `canonical`, hex.
    pub digest: String,
}

/// Why a policy is refused: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy `{field}`: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn refuse(field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The keys every kind takes.
const COMMON: [&str; 7] = [
    "kind",
    "name",
    "experiment",
    "arms",
    "key",
    "reward",
    "reward_map",
];

/// The keys each kind takes beside the common ones.
fn kind_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "single" => &[],
        "split" => &["weights", "seed"],
        "shadow" => &[],
        "epsilon_greedy" => &["epsilon", "seed"],
        "thompson" => &["likelihood", "draws", "exploration_floor", "seed"],
        "ucb1" => &["exploration_floor", "seed"],
        "linucb" => &["alpha", "context", "exploration_floor", "seed"],
        "canary" => &[
            "steps",
            "step_seconds",
            "window_seconds",
            "min_requests",
            "max_error_rate",
            "max_latency_ms",
            "max_accuracy_drop",
            "label_output",
            "monitors",
            "move_alias_back",
            "seed",
        ],
        _ => return None,
    })
}

/// The kinds a policy file may name.
pub const KINDS: [&str; 8] = [
    "single",
    "split",
    "shadow",
    "canary",
    "epsilon_greedy",
    "thompson",
    "ucb1",
    "linucb",
];

/// The largest whole number every double holds exactly (2^53).
const EXACT_INTEGERS: u64 = 1 << 53;

/// An integer the policy's canonical JSON (RFC 8785, numbers as doubles) would not keep as
/// written: refused, so a policy read back is the policy given.
fn beyond_doubles(n: &serde_json::Number) -> bool {
    n.as_u64().is_some_and(|v| v > EXACT_INTEGERS)
        || n.as_i64()
            .is_some_and(|v| v.unsigned_abs() > EXACT_INTEGERS)
}

fn too_large(n: &serde_json::Number) -> String {
    format!("{n} is beyond 2^53, which a policy's canonical JSON keeps exactly (its numbers are doubles)")
}

struct Fields<'a> {
    map: &'a Map<String, Json>,
}

impl<'a> Fields<'a> {
    fn text(&self, key: &str) -> Result<Option<&'a str>, PolicyError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
            Some(other) => Err(refuse(
                key,
                format!("must be a non-empty string, got {other}"),
            )),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, PolicyError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) if beyond_doubles(n) => Err(refuse(key, too_large(n))),
            Some(Json::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| refuse(key, format!("must be a finite number, got {n}"))),
            Some(other) => Err(refuse(key, format!("must be a number, got {other}"))),
        }
    }

    fn unit(&self, key: &str, default: f64) -> Result<f64, PolicyError> {
        let value = self.number(key)?.unwrap_or(default);
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(refuse(key, format!("must be in [0, 1], got {value}")))
        }
    }

    fn whole(&self, key: &str) -> Result<Option<u64>, PolicyError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) if beyond_doubles(n) => Err(refuse(key, too_large(n))),
            Some(Json::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| refuse(key, format!("must be a whole number ≥ 0, got {n}"))),
            Some(other) => Err(refuse(key, format!("must be a whole number, got {other}"))),
        }
    }

    fn texts(&self, key: &str) -> Result<Option<Vec<String>>, PolicyError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Json::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    other => Err(refuse(
                        key,
                        format!("must list non-empty strings, got {other}"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(refuse(
                key,
                format!("must be a list of strings, got {other}"),
            )),
        }
    }
}

fn canary(fields: &Fields<'_>) -> Result<Canary, PolicyError> {
    let steps: Vec<f64> = match fields.map.get("steps") {
        None => vec![0.05, 0.25, 1.0],
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| match v.as_f64() {
                Some(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
                _ => Err(refuse(
                    "steps",
                    format!("must list percentages in (0, 100], got {v}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(refuse(
                "steps",
                format!("must be a list of percentages, e.g. [5, 25, 100], got {other}"),
            ))
        }
    };
    if steps.is_empty() || steps.windows(2).any(|w| w[1] <= w[0]) {
        return Err(refuse(
            "steps",
            "must list at least one percentage, each above the one before",
        ));
    }
    let seconds = |key: &str, default: f64| -> Result<i64, PolicyError> {
        let value = fields.number(key)?.unwrap_or(default);
        if value > 0.0 && value <= 30.0 * 86_400.0 {
            Ok((value * 1000.0).round() as i64)
        } else {
            Err(refuse(
                key,
                format!("must be seconds in (0, 2592000], got {value}"),
            ))
        }
    };
    let step_ms = seconds("step_seconds", 600.0)?;
    let window_ms = seconds("window_seconds", 60.0)?;
    let positive = |key: &str| -> Result<Option<f64>, PolicyError> {
        match fields.number(key)? {
            Some(v) if v < 0.0 => Err(refuse(key, format!("must be ≥ 0, got {v}"))),
            other => Ok(other),
        }
    };
    let max_error_rate = match fields.map.get("max_error_rate") {
        None => Some(0.05),
        Some(_) => Some(fields.unit("max_error_rate", 0.05)?),
    };
    Ok(Canary {
        steps,
        step_ms,
        window_ms,
        min_requests: fields.whole("min_requests")?.unwrap_or(20).max(1),
        max_error_rate,
        max_latency_ms: positive("max_latency_ms")?,
        max_accuracy_drop: match fields.map.get("max_accuracy_drop") {
            None => None,
            Some(_) => Some(fields.unit("max_accuracy_drop", 0.0)?),
        },
        label_output: fields.text("label_output")?.unwrap_or("label").to_string(),
        monitors: fields.texts("monitors")?.unwrap_or_default(),
        move_alias_back: match fields.map.get("move_alias_back") {
            None => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(refuse(
                    "move_alias_back",
                    format!("must be true or false, got {other}"),
                ))
            }
        },
    })
}

impl Policy {
    /// Reads a policy from its JSON form (a TOML file converts to the same value).
    pub fn from_json(document: &Json) -> Result<Self, PolicyError> {
        let map = document.as_object().ok_or_else(|| {
            refuse(
                "kind",
                "a policy is a table of keys (kind = \"…\", arms = […])",
            )
        })?;
        let fields = Fields { map };
        let kind = fields
            .text("kind")?
            .ok_or_else(|| refuse("kind", format!("is required: one of {}", KINDS.join(", "))))?;
        let own = kind_keys(kind).ok_or_else(|| {
            refuse(
                "kind",
                format!("`{kind}` is not a policy kind: one of {}", KINDS.join(", ")),
            )
        })?;
        if let Some(unknown) = map
            .keys()
            .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
        {
            let mut takes: Vec<&str> = COMMON[1..].to_vec();
            takes.extend_from_slice(own);
            return Err(refuse(
                unknown,
                format!(
                    "is not a key of kind `{kind}` (it takes: {})",
                    takes.join(", ")
                ),
            ));
        }
        let arm_texts = fields
            .texts("arms")?
            .ok_or_else(|| refuse("arms", "is required: the model versions or aliases to route to, e.g. [\"credit/3\", \"credit@challenger\"]"))?;
        let mut arms = Vec::with_capacity(arm_texts.len());
        for text in &arm_texts {
            let arm = ModelRef::parse(text).map_err(|_| {
                refuse(
                    "arms",
                    format!("`{text}` is not NAME/VERSION or NAME@ALIAS"),
                )
            })?;
            if arms
                .iter()
                .any(|a: &ModelRef| a.to_string() == arm.to_string())
            {
                return Err(refuse("arms", format!("`{text}` is listed twice")));
            }
            arms.push(arm);
        }
        let wanted = match kind {
            "single" => 1..=1,
            "canary" => 2..=2,
            "split" | "epsilon_greedy" | "thompson" | "ucb1" | "linucb" => 1..=MAX_ARMS,
            _ => 2..=MAX_ARMS,
        };
        if !wanted.contains(&arms.len()) {
            return Err(refuse(
                "arms",
                format!(
                    "kind `{kind}` takes {} to {} arms, got {}",
                    wanted.start(),
                    wanted.end(),
                    arms.len()
                ),
            ));
        }
        let rule = match kind {
            "single" => Rule::Single,
            "shadow" => Rule::Shadow,
            "split" => {
                let weights = match fields.map.get("weights") {
                    None => vec![1.0; arms.len()],
                    Some(Json::Array(items)) => items
                        .iter()
                        .map(|w| match w.as_f64() {
                            Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
                            _ => Err(refuse("weights", format!("must list numbers ≥ 0, got {w}"))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(other) => {
                        return Err(refuse(
                            "weights",
                            format!("must be a list of numbers, got {other}"),
                        ))
                    }
                };
                if weights.len() != arms.len() {
                    return Err(refuse(
                        "weights",
                        format!(
                            "has {} weights for {} arms: give one per arm",
                            weights.len(),
                            arms.len()
                        ),
                    ));
                }
                let total: f64 = weights.iter().sum();
                if total <= 0.0 {
                    return Err(refuse("weights", "must not all be 0"));
                }
                Rule::Split {
                    weights: weights.iter().map(|w| w / total).collect(),
                }
            }
            "epsilon_greedy" => Rule::EpsilonGreedy {
                epsilon: fields.unit("epsilon", 0.1)?,
            },
            "thompson" => {
                let likelihood = match fields.text("likelihood")? {
                    None | Some("bernoulli") => Likelihood::Bernoulli,
                    Some("gaussian") => Likelihood::Gaussian,
                    Some(other) => {
                        return Err(refuse(
                            "likelihood",
                            format!("must be bernoulli or gaussian, got `{other}`"),
                        ))
                    }
                };
                let draws = fields.whole("draws")?.unwrap_or(u64::from(DEFAULT_DRAWS));
                if !(10..=100_000).contains(&draws) {
                    return Err(refuse(
                        "draws",
                        format!("must be between 10 and 100000, got {draws}"),
                    ));
                }
                Rule::Thompson {
                    likelihood,
                    draws: draws as u32,
                }
            }
            "ucb1" => Rule::Ucb1,
            "canary" => {
                let canary = canary(&fields)?;
                if canary.move_alias_back {
                    match (&arms[0], &arms[1]) {
                        (_, ModelRef::Alias { name: candidate, .. })
                            if arms[0].name() == candidate => {}
                        _ => {
                            return Err(refuse(
                                "move_alias_back",
                                "needs a candidate arm NAME@ALIAS and a stable arm of the same model NAME (e.g. arms = [\"credit/3\", \"credit@production\"])",
                            ))
                        }
                    }
                }
                Rule::Canary(canary)
            }
            "linucb" => {
                let alpha = fields.number("alpha")?.unwrap_or(1.0);
                if alpha < 0.0 {
                    return Err(refuse("alpha", format!("must be ≥ 0, got {alpha}")));
                }
                let context = fields.texts("context")?.unwrap_or_default();
                if context.is_empty() || context.len() > MAX_CONTEXT {
                    return Err(refuse(
                        "context",
                        format!("must list 1 to {MAX_CONTEXT} numeric input columns the policy reads, e.g. [\"income\", \"age\"]"),
                    ));
                }
                if let Some(twice) = context
                    .iter()
                    .enumerate()
                    .find(|(i, c)| context[..*i].contains(c))
                {
                    return Err(refuse("context", format!("`{}` is listed twice", twice.1)));
                }
                Rule::LinUcb { alpha, context }
            }
            _ => unreachable!("kind_keys admitted only the kinds above"),
        };
        let exploration_floor = fields.unit("exploration_floor", 0.0)?;
        let reward = match fields.text("reward")? {
            None | Some("reward") => {
                if map.contains_key("reward_map") {
                    return Err(refuse(
                        "reward_map",
                        "maps labels to rewards: it needs reward = \"label\"",
                    ));
                }
                RewardSource::Reward
            }
            Some("label") => {
                let map = match map.get("reward_map") {
                    None => BTreeMap::new(),
                    Some(Json::Object(entries)) => entries
                        .iter()
                        .map(|(label, r)| match r.as_f64() {
                            Some(v) if v.is_finite() => Ok((label.clone(), v)),
                            _ => Err(refuse(
                                "reward_map",
                                format!("maps `{label}` to {r}: rewards are finite numbers"),
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => {
                        return Err(refuse(
                            "reward_map",
                            format!("must be a table of label = reward, got {other}"),
                        ))
                    }
                };
                RewardSource::Label { map }
            }
            Some(other) => {
                return Err(refuse(
                    "reward",
                    format!("must be \"reward\" or \"label\", got `{other}`"),
                ))
            }
        };
        let name = fields.text("name")?.unwrap_or(kind).to_string();
        let experiment = fields.text("experiment")?.unwrap_or(&name).to_string();
        for (field, value) in [("name", &name), ("experiment", &experiment)] {
            if value.len() > 200 || value.contains(':') {
                return Err(refuse(field, "must be at most 200 bytes without `:`"));
            }
        }
        let canonical = String::from_utf8(mltrail_core::jcs::of_value(document))
            .map_err(|_| refuse("kind", "the policy is not UTF-8"))?;
        let digest = blake3::hash(canonical.as_bytes()).to_hex().to_string();
        Ok(Policy {
            name,
            experiment,
            arms,
            key: fields.text("key")?.map(str::to_string),
            rule,
            reward,
            exploration_floor,
            seed: fields.whole("seed")?,
            canonical,
            digest,
        })
    }

    /// The policy's version as records carry it: the first 16 hex digits of its digest.
    pub fn version(&self) -> &str {
        &self.digest[..16]
    }

    /// The input columns the policy reads beside the model's: its key and its context.
    pub fn request_columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = self.key.iter().map(String::as_str).collect();
        if let Rule::LinUcb { context, .. } = &self.rule {
            columns.extend(context.iter().map(String::as_str));
        }
        columns
    }

    /// The reward a piece of feedback carries for this policy: `None` when it carries none (a
    /// label for a policy rewarded by `reward`), an error when it carries one of the wrong kind.
    pub fn reward_of(
        &self,
        reward: Option<&serde_json::Number>,
        label: Option<&serde_json::value::RawValue>,
    ) -> Result<Option<f64>, PolicyError> {
        let value = match &self.reward {
            RewardSource::Reward => match reward {
                None => return Ok(None),
                Some(n) => n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| refuse("reward", format!("{n} is not a finite number")))?,
            },
            RewardSource::Label { map } => {
                let Some(label) = label else { return Ok(None) };
                let text = label.get();
                if let Some(mapped) = map.get(text).or_else(|| {
                    // A string label is also found by its text without quotes.
                    serde_json::from_str::<String>(text)
                        .ok()
                        .and_then(|s| map.get(&s))
                }) {
                    *mapped
                } else {
                    match serde_json::from_str::<Json>(text) {
                        Ok(Json::Number(n)) => n.as_f64().filter(|v| v.is_finite()).ok_or_else(
                            || refuse("label", format!("{n} is not a finite number")),
                        )?,
                        Ok(Json::Bool(b)) => f64::from(u8::from(b)),
                        _ => {
                            return Err(refuse(
                                "label",
                                format!("{text} is not a number or a boolean, and the policy's reward_map does not map it"),
                            ))
                        }
                    }
                }
            }
        };
        // Sums of rewards and their squares are what replicas share: a reward whose square is
        // no finite double would make every later report unreadable.
        if !(value * value).is_finite() {
            return Err(refuse(
                "reward",
                format!("{value} is too large: its square is beyond the doubles' range"),
            ));
        }
        if let Rule::Thompson {
            likelihood: Likelihood::Bernoulli,
            ..
        } = self.rule
        {
            if !(0.0..=1.0).contains(&value) {
                return Err(refuse(
                    "reward",
                    format!("{value} is outside [0, 1], which a Bernoulli Thompson policy takes (use likelihood = \"gaussian\" for other rewards)"),
                ));
            }
        }
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_version_is_the_same_for_the_same_policy_in_any_key_order() {
        let a = Policy::from_json(
            &json!({"kind": "epsilon_greedy", "epsilon": 0.1, "arms": ["credit/3", "credit@challenger"], "key": "user_id"}),
        )
        .unwrap();
        let b = Policy::from_json(
            &json!({"arms": ["credit/3", "credit@challenger"], "key": "user_id", "epsilon": 0.1, "kind": "epsilon_greedy"}),
        )
        .unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.version().len(), 16);
        assert_eq!(a.name, "epsilon_greedy");
        assert_eq!(a.rule, Rule::EpsilonGreedy { epsilon: 0.1 });
        let c = Policy::from_json(
            &json!({"kind": "epsilon_greedy", "epsilon": 0.2, "arms": ["credit/3", "credit@challenger"]}),
        )
        .unwrap();
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn a_key_the_kind_does_not_read_is_refused_by_name() {
        let e =
            Policy::from_json(&json!({"kind": "split", "arms": ["a/1", "a/2"], "epsilon": 0.1}))
                .unwrap_err();
        assert_eq!(e.field, "epsilon");
        assert!(e.message.contains("not a key of kind `split`"), "{e}");
        let e = Policy::from_json(&json!({"kind": "greedy", "arms": ["a/1"]})).unwrap_err();
        assert_eq!(e.field, "kind");
        let e =
            Policy::from_json(&json!({"kind": "epsilon_greedy", "arms": ["a/1"], "epsilon": 1.5}))
                .unwrap_err();
        assert_eq!(e.field, "epsilon");
        let e = Policy::from_json(
            &json!({"kind": "epsilon_greedy", "arms": ["a/1"], "epsilon": "0.1"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "epsilon");
        let e =
            Policy::from_json(&json!({"kind": "split", "arms": ["a/1", "a/2"], "weights": [1]}))
                .unwrap_err();
        assert_eq!(e.field, "weights");
        let e = Policy::from_json(&json!({"kind": "shadow", "arms": ["a/1"]})).unwrap_err();
        assert_eq!(e.field, "arms");
        let e = Policy::from_json(&json!({"kind": "split", "arms": ["a/1", "a/1"]})).unwrap_err();
        assert!(e.message.contains("twice"));
        let e = Policy::from_json(&json!({"kind": "linucb", "arms": ["a/1", "a/2"]})).unwrap_err();
        assert_eq!(e.field, "context");
        let e = Policy::from_json(
            &json!({"kind": "thompson", "arms": ["a/1", "a/2"], "reward_map": {"yes": 1}}),
        )
        .unwrap_err();
        assert_eq!(e.field, "reward_map");
        let e = Policy::from_json(&json!({"kind": "split", "arms": ["a"]})).unwrap_err();
        assert_eq!(e.field, "arms");
        let e = Policy::from_json(
            &json!({"kind": "split", "arms": ["a/1"], "seed": 9_007_199_254_740_993u64}),
        )
        .unwrap_err();
        assert_eq!(e.field, "seed");
        let e = Policy::from_json(
            &json!({"kind": "canary", "arms": ["a/1", "b@c"], "move_alias_back": true}),
        )
        .unwrap_err();
        assert_eq!(e.field, "move_alias_back");
    }

    #[test]
    fn rewards_come_from_the_source_the_policy_names() {
        let raw = |t: &str| serde_json::value::RawValue::from_string(t.into()).unwrap();
        let by_reward =
            Policy::from_json(&json!({"kind": "thompson", "arms": ["a/1", "a/2"]})).unwrap();
        assert_eq!(
            by_reward.reward_of(Some(&serde_json::Number::from(1)), None),
            Ok(Some(1.0))
        );
        assert_eq!(by_reward.reward_of(None, Some(&raw("1"))), Ok(None));
        let e = by_reward
            .reward_of(serde_json::Number::from_f64(2.5).as_ref(), None)
            .unwrap_err();
        assert!(e.message.contains("outside [0, 1]"));
        let by_label = Policy::from_json(&json!({"kind": "ucb1", "arms": ["a/1", "a/2"], "reward": "label", "reward_map": {"yes": 1, "no": 0}}))
            .unwrap();
        assert_eq!(
            by_label.reward_of(None, Some(&raw("\"yes\""))),
            Ok(Some(1.0))
        );
        assert_eq!(
            by_label.reward_of(None, Some(&raw("\"no\""))),
            Ok(Some(0.0))
        );
        assert_eq!(by_label.reward_of(None, Some(&raw("true"))), Ok(Some(1.0)));
        assert_eq!(by_label.reward_of(None, Some(&raw("3.5"))), Ok(Some(3.5)));
        assert!(by_label.reward_of(None, Some(&raw("\"maybe\""))).is_err());
        assert!(by_label.reward_of(None, Some(&raw("1e200"))).is_err());
    }
}
