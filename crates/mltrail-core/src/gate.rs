//! Release gates: the requirements a registered model's protected alias holds its next version
//! to (`evaluation.roc_auc >= 0.80`, `fairness.sex.demographic_parity_difference <= 0.1`,
//! `evaluation.roc_auc >= champion.evaluation.roc_auc - 0.01`), how each is checked against the
//! evidence the trail holds, and the report a checked move leaves behind.
//!
//! A value the evidence does not hold fails its requirement with the reason; it never passes by
//! default. Only a requirement that names the champion, when the alias points nowhere yet,
//! holds without being checked (`vacuous`), and the report says so.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Where a requirement's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The version's evaluation (`mltrail evaluate`): its classification or regression metrics.
    Evaluation,
    /// The evaluation's fairness scalars (Fairlearn's names) for one sensitive column.
    Fairness,
    /// The version's robustness report (`mltrail robustness`).
    Robustness,
    /// The candidate's training data against the deployment's recent production inputs.
    Drift,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Evaluation,
        Source::Fairness,
        Source::Robustness,
        Source::Drift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Evaluation => "evaluation",
            Source::Fairness => "fairness",
            Source::Robustness => "robustness",
            Source::Drift => "drift",
        }
    }
}

/// A value the trail holds about a version: the candidate's, or the champion's (the version
/// the alias points at now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePath {
    pub champion: bool,
    pub source: Source,
    pub keys: Vec<String>,
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.champion {
            f.write_str("champion.")?;
        }
        write!(f, "{}.{}", self.source.as_str(), self.keys.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    AtLeast,
    AtMost,
    Above,
    Below,
}

impl Comparison {
    fn as_str(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::AtMost => "<=",
            Comparison::Above => ">",
            Comparison::Below => "<",
        }
    }

    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::AtLeast => left >= right,
            Comparison::AtMost => left <= right,
            Comparison::Above => left > right,
            Comparison::Below => left < right,
        }
    }
}

/// What a value is compared with: a number, or another value shifted by a number.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Number(f64),
    Value { path: ValuePath, offset: f64 },
}

/// One requirement, as written and as understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub left: ValuePath,
    pub comparison: Comparison,
    pub right: Bound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error("`{0}`: a requirement is VALUE OP BOUND, e.g. `evaluation.roc_auc >= 0.8`; OP is one of >=, <=, >, <")]
    Shape(String),
    #[error("`{0}`: a value is [champion.]evaluation.METRIC, fairness.COLUMN.METRIC, robustness.FIELD or drift.FIELD")]
    Path(String),
    #[error("`{0}`: a bound is a finite number, or a value plus or minus a finite number")]
    Bound(String),
    #[error("`{0}`: the left side names the candidate (champion.… may appear on the right only)")]
    ChampionOnLeft(String),
}

fn parse_path(text: &str) -> Result<ValuePath, RequirementError> {
    let bad = || RequirementError::Path(text.to_string());
    let mut parts: Vec<&str> = text.split('.').collect();
    let champion = parts.first() == Some(&"champion");
    if champion {
        parts.remove(0);
    }
    let (&first, keys) = parts.split_first().ok_or_else(bad)?;
    let source = Source::ALL
        .into_iter()
        .find(|s| s.as_str() == first)
        .ok_or_else(bad)?;
    // No `-` in keys: `champion.evaluation.a-1` must read as an offset, never as a key.
    let well_formed = keys
        .iter()
        .all(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'));
    // fairness.COLUMN.METRIC, or fairness.COLUMN.METHOD.METRIC (between_groups, to_overall).
    let arity = match source {
        Source::Fairness => (2..=3).contains(&keys.len()),
        _ => keys.len() == 1,
    };
    if !well_formed || !arity {
        return Err(bad());
    }
    Ok(ValuePath {
        champion,
        source,
        keys: keys.iter().map(|k| k.to_string()).collect(),
    })
}

fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    // Rust also reads `inf`, `NaN` and `infinity`; a bound is a finite decimal number.
    let decimal = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    text.parse::<f64>()
        .ok()
        .filter(|v| decimal && v.is_finite())
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let shape = || RequirementError::Shape(text.to_string());
        let (at, comparison, width) = [
            (">=", Comparison::AtLeast),
            ("<=", Comparison::AtMost),
            (">", Comparison::Above),
            ("<", Comparison::Below),
        ]
        .into_iter()
        .find_map(|(op, c)| text.find(op).map(|at| (at, c, op.len())))
        .ok_or_else(shape)?;
        let left = parse_path(text[..at].trim())?;
        if left.champion {
            return Err(RequirementError::ChampionOnLeft(text.to_string()));
        }
        let right_text = text[at + width..].trim();
        if right_text.contains(['<', '>', '=']) {
            return Err(shape());
        }
        let right = if let Some(v) = parse_number(right_text) {
            Bound::Number(v)
        } else {
            // `PATH`, `PATH + N` or `PATH - N`: the first sign whose sides are a path and a
            // non-negative number (a number may hold an exponent's sign).
            let split = right_text.match_indices(['+', '-']).find_map(|(i, sign)| {
                let path = parse_path(right_text[..i].trim()).ok()?;
                let n = parse_number(&right_text[i + 1..]).filter(|n| *n >= 0.0)?;
                Some((path, if sign == "-" { -n } else { n }))
            });
            let (path, offset) = match split {
                Some(found) => found,
                None if right_text.contains(['+', ' ']) => {
                    return Err(RequirementError::Bound(text.to_string()))
                }
                None => (parse_path(right_text)?, 0.0),
            };
            Bound::Value { path, offset }
        };
        Ok(Requirement {
            left,
            comparison,
            right,
        })
    }

    /// Whether checking it reads the champion's values.
    pub fn names_champion(&self) -> bool {
        matches!(&self.right, Bound::Value { path, .. } if path.champion)
    }
}

/// The canonical spelling: what policies store and reports show.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.left, self.comparison.as_str())?;
        match &self.right {
            Bound::Number(v) => write!(f, "{v}"),
            Bound::Value { path, offset } if *offset == 0.0 => write!(f, "{path}"),
            Bound::Value { path, offset } if *offset < 0.0 => write!(f, "{path} - {}", -offset),
            Bound::Value { path, offset } => write!(f, "{path} + {offset}"),
        }
    }
}

/// A protected alias's policy: its requirements and how many approvals a version needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub requirements: Vec<Requirement>,
    pub approvals: u32,
}

impl Policy {
    /// From the stored or requested spelling; every requirement must parse.
    pub fn parse(requirements: &[String], approvals: u32) -> Result<Policy, RequirementError> {
        Ok(Policy {
            requirements: requirements
                .iter()
                .map(|r| Requirement::parse(r))
                .collect::<Result<_, _>>()?,
            approvals,
        })
    }

    /// The requirements in canonical spelling.
    pub fn spelled(&self) -> Vec<String> {
        self.requirements.iter().map(|r| r.to_string()).collect()
    }
}

/// What the trail holds about one version, as the JSON documents recorded for it. `None`
/// where no document exists; the `String` beside each says which version it is about.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// `NAME/VERSION`, for reasons.
    pub version: String,
    pub evaluation: Option<Value>,
    pub robustness: Option<Value>,
    pub drift: Option<Value>,
    /// Documents the trail records but that could not be read (changed, missing): why, by
    /// source. A requirement reading one fails with that reason.
    pub unreadable: Vec<(Source, String)>,
}

/// A value looked up, or why there is none.
pub type Lookup = Result<f64, String>;

impl Evidence {
    pub fn value(&self, path: &ValuePath) -> Lookup {
        let who = &self.version;
        let source = match path.source {
            Source::Fairness => Source::Evaluation,
            s => s,
        };
        if let Some((_, why)) = self.unreadable.iter().find(|(s, _)| *s == source) {
            return Err(why.clone());
        }
        let key = path.keys.join(".");
        let number = |found: Option<&Value>, document: &str| -> Lookup {
            match found {
                None => Err(format!("{document} of {who} has no `{key}`")),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("`{key}` of {who} is not a finite number")),
                Some(Value::Null) => Err(format!(
                    "`{key}` is undefined in the {document} of {who} (recorded as null)"
                )),
                Some(_) => Err(format!(
                    "`{key}` in the {document} of {who} is not a number"
                )),
            }
        };
        match path.source {
            Source::Evaluation => {
                let e = self.evaluation.as_ref().ok_or_else(|| {
                    format!("{who} has no evaluation (`mltrail evaluate {who} --data DATASET@V --label COL`)")
                })?;
                let metric = e["classification"]
                    .get(&key)
                    .or_else(|| e["regression"].get(&key));
                number(metric, "evaluation")
            }
            Source::Fairness => {
                let e = self.evaluation.as_ref().ok_or_else(|| {
                    format!("{who} has no evaluation, so no fairness (`mltrail evaluate {who} … --sensitive COL`)")
                })?;
                let Some(scalars) = e["fairness"].get("scalar") else {
                    return Err(format!(
                        "the evaluation of {who} has no fairness (evaluate with `--sensitive {}`)",
                        path.keys[0]
                    ));
                };
                let Some(column) = scalars.get(&path.keys[0]) else {
                    return Err(format!(
                        "the evaluation of {who} has no fairness by `{}`",
                        path.keys[0]
                    ));
                };
                let (method, metric) = match path.keys.as_slice() {
                    [_, metric] => ("between_groups", metric),
                    [_, method, metric] => (method.as_str(), metric),
                    _ => return Err(format!("`{key}` is not COLUMN.METRIC")),
                };
                number(column.get(method).and_then(|m| m.get(metric)), "fairness")
            }
            Source::Robustness => {
                let r = self.robustness.as_ref().ok_or_else(|| {
                    format!("{who} has no robustness report (`mltrail robustness {who} --data DATASET@V --label COL`)")
                })?;
                number(r.get(&key), "robustness report")
            }
            Source::Drift => {
                let d = self.drift.as_ref().ok_or_else(|| {
                    format!(
                        "no drift measurement of {who}'s training data against production inputs"
                    )
                })?;
                number(d.get(&key), "drift measurement")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Names the champion, and there is none yet (a first release).
    Vacuous,
}

/// One requirement checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    pub requirement: String,
    pub verdict: Verdict,
    /// The candidate's value, when the trail holds it.
    pub value: Option<f64>,
    /// What it was compared with, when known.
    pub bound: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Checked {
    /// `evaluation.roc_auc >= 0.8: 0.74` or the reason: one line of a refusal.
    pub fn line(&self) -> String {
        match (&self.reason, self.value, self.bound) {
            (Some(reason), _, _) => format!("{}: {reason}", self.requirement),
            (None, Some(v), Some(b)) => {
                format!("{}: value {v}, bound {b}", self.requirement)
            }
            _ => self.requirement.clone(),
        }
    }
}

/// Checks every requirement of `policy` for `candidate`; `champion` is `None` on a first release.
pub fn check(policy: &Policy, candidate: &Evidence, champion: Option<&Evidence>) -> Vec<Checked> {
    policy
        .requirements
        .iter()
        .map(|r| {
            let requirement = r.to_string();
            let value = candidate.value(&r.left);
            let bound = match &r.right {
                Bound::Number(v) => Ok(*v),
                Bound::Value { path, offset } => {
                    let evidence = if path.champion {
                        match champion {
                            Some(c) => c,
                            // A first release: nothing to compare with, but the candidate's
                            // own value must still be there.
                            None if value.is_ok() => {
                                return Checked {
                                    requirement,
                                    verdict: Verdict::Vacuous,
                                    value: value.ok(),
                                    bound: None,
                                    reason: Some(
                                        "first release: the alias points at no version yet, so there is no champion to compare with".into(),
                                    ),
                                };
                            }
                            None => {
                                return Checked {
                                    requirement,
                                    verdict: Verdict::Fail,
                                    value: None,
                                    bound: None,
                                    reason: value.err(),
                                }
                            }
                        }
                    } else {
                        candidate
                    };
                    evidence.value(path).map(|v| v + offset)
                }
            };
            match (value, bound) {
                (Ok(v), Ok(b)) => {
                    let holds = r.comparison.holds(v, b);
                    Checked {
                        requirement,
                        verdict: if holds { Verdict::Pass } else { Verdict::Fail },
                        value: Some(v),
                        bound: Some(b),
                        reason: None,
                    }
                }
                (v, b) => {
                    let reasons: Vec<String> =
                        [v.as_ref().err(), b.as_ref().err()].into_iter().flatten().cloned().collect();
                    Checked {
                        requirement,
                        verdict: Verdict::Fail,
                        value: v.ok(),
                        bound: b.ok(),
                        reason: Some(reasons.join("; ")),
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evidence(version: &str, auc: f64) -> Evidence {
        Evidence {
            version: version.into(),
            evaluation: Some(json!({
                "classification": {"roc_auc": auc, "log_loss": null},
                "fairness": {"scalar": {"sex": {
                    "between_groups": {"demographic_parity_difference": 0.05},
                    "to_overall": {"demographic_parity_difference": 0.03}}}}
            })),
            robustness: None,
            drift: None,
            unreadable: Vec::new(),
        }
    }

    fn policy(rules: &[&str]) -> Policy {
        let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        Policy::parse(&rules, 1).unwrap()
    }

    #[test]
    fn parses_and_spells_canonically() {
        for (text, canonical) in [
            ("evaluation.roc_auc>=0.80", "evaluation.roc_auc >= 0.8"),
            (
                "evaluation.roc_auc >= champion.evaluation.roc_auc - 0.01",
                "evaluation.roc_auc >= champion.evaluation.roc_auc - 0.01",
            ),
            (
                "evaluation.roc_auc > champion.evaluation.roc_auc+0.5",
                "evaluation.roc_auc > champion.evaluation.roc_auc + 0.5",
            ),
            (
                "fairness.sex.demographic_parity_difference <= 0.1",
                "fairness.sex.demographic_parity_difference <= 0.1",
            ),
            ("drift.share < 3e-1", "drift.share < 0.3"),
            (
                "robustness.robust_accuracy >= -1",
                "robustness.robust_accuracy >= -1",
            ),
        ] {
            let r = Requirement::parse(text).unwrap();
            assert_eq!(r.to_string(), canonical);
            assert_eq!(Requirement::parse(canonical).unwrap(), r);
        }
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        for text in [
            "",
            "evaluation.roc_auc",
            "evaluation.roc_auc == 0.8",
            "evaluation.roc_auc >= NaN",
            "evaluation.roc_auc >= inf",
            "evaluation.roc_auc >= champion.evaluation.roc_auc * 2",
            "evaluation.roc_auc >= champion.evaluation.roc_auc - -1",
            "metrics.roc_auc >= 0.8",
            "evaluation >= 0.8",
            "evaluation.a.b >= 0.8",
            "evaluation.top-5 >= 0.8",
            "evaluation.roc_auc >= champion.evaluation.roc_auc-",
            "fairness.sex >= 0.1",
            "champion.evaluation.roc_auc <= evaluation.roc_auc",
            "evaluation.roc_auc >= 0.8 >= 0.7",
        ] {
            assert!(Requirement::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn checks_values_champions_and_missing_evidence() {
        let p = policy(&[
            "evaluation.roc_auc >= 0.8",
            "evaluation.roc_auc >= champion.evaluation.roc_auc - 0.01",
            "fairness.sex.demographic_parity_difference <= 0.1",
            "fairness.sex.to_overall.demographic_parity_difference <= 0.01",
            "robustness.robust_accuracy >= 0.7",
            "evaluation.log_loss <= 1",
        ]);
        let candidate = evidence("credit/2", 0.85);
        let champion = evidence("credit/1", 0.87);
        let got = check(&p, &candidate, Some(&champion));
        let verdicts: Vec<Verdict> = got.iter().map(|c| c.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Pass,
                Verdict::Fail,
                Verdict::Pass,
                Verdict::Fail,
                Verdict::Fail,
                Verdict::Fail
            ]
        );
        assert_eq!(got[1].bound, Some(0.87 - 0.01));
        assert!(got[4]
            .reason
            .as_deref()
            .unwrap()
            .contains("no robustness report"));
        assert!(got[5].reason.as_deref().unwrap().contains("null"));
        // A first release: the champion's requirement holds vacuously, and says so.
        let first = check(&p, &candidate, None);
        assert_eq!(first[1].verdict, Verdict::Vacuous);
        assert!(first[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("first release"));
        // ...but only when the candidate's own value is there.
        let unknown = Evidence {
            version: "credit/9".into(),
            ..Evidence::default()
        };
        let first = check(&p, &unknown, None);
        assert_eq!(first[1].verdict, Verdict::Fail);
        // An evaluation the trail records but that cannot be read fails with why.
        let mut changed = evidence("credit/2", 0.9);
        changed.unreadable = vec![(Source::Evaluation, "the kept evaluation was changed".into())];
        let got = check(&p, &changed, Some(&champion));
        assert_eq!(
            got[0].reason.as_deref(),
            Some("the kept evaluation was changed")
        );
        assert_eq!(
            got[2].verdict,
            Verdict::Fail,
            "fairness reads the evaluation too"
        );
        // No evaluation at all: every requirement that reads it fails, with the reason.
        let bare = Evidence {
            version: "credit/3".into(),
            ..Evidence::default()
        };
        let got = check(&p, &bare, Some(&champion));
        assert!(got.iter().all(|c| c.verdict == Verdict::Fail));
        assert!(got[0].line().contains("has no evaluation"));
    }

    #[test]
    fn nan_never_passes() {
        let p = policy(&["evaluation.roc_auc >= 0.8"]);
        let mut e = evidence("m/1", 0.9);
        e.evaluation = Some(json!({"classification": {"roc_auc": "NaN"}}));
        assert_eq!(check(&p, &e, None)[0].verdict, Verdict::Fail);
    }
}
