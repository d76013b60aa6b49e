//! Alert rules on monitor values: `METRIC OP THRESHOLD [for N]`, e.g. `drift_share >= 0.3`,
//! `feature_drifted.income == 1 for 2`, `accuracy < 0.8 for 3`. A rule fires once when its
//! condition has held for N consecutive windows, resolves when it stops holding, and can fire
//! again after that. The caller decides which windows count (the monitors skip windows without
//! predictions).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub metric: String,
    pub op: Op,
    pub threshold: f64,
    /// Consecutive windows the condition must hold (1: fire on the first).
    pub windows: u32,
}

/// The values a window produces, by name (what rules and Prometheus gauges read).
pub type Values = BTreeMap<String, f64>;

/// The fixed metric names a window's values can have (`error` is 1 when the window could not be
/// compared); per-column and performance names follow the patterns in [`Rule::parse`]'s error
/// message.
pub const METRICS: &[&str] = &[
    "rows",
    "error",
    "dataset_drift",
    "drift_share",
    "drifted_columns",
    "prediction_drift",
    "prediction_drifted",
    "labelled_rows",
];

/// What a business metric monitor's window reports (`crate::seasonal::Assessment::values`).
pub const BUSINESS_METRICS: &[&str] = &[
    "points",
    "anomalies",
    "drops",
    "spikes",
    "observed",
    "expected",
    "deviation",
    "annotated_points",
    "unjudged_points",
];

/// What a ranking monitor's window reports; also `ranking.sorted.<key>` per sort key
/// ([`crate::ranking::SortKey::name`]).
pub const RANKING_METRICS: &[&str] = &[
    "impressions",
    "displayed_impressions",
    "reported_share",
    "ranking.agreement",
    "ranking.kendall_tau",
    "ranking.top_k_overlap",
    "ranking.ndcg_served",
    "ranking.ndcg_displayed",
    "returning_impressions",
    "ranking.repeat_share",
    "catalog.out_of_catalog_share",
    "catalog.impressions_out_of_catalog",
    "catalog.coverage",
    "catalog.gini",
];

/// Whether `name` is a value of a ranking monitor's windows.
pub fn is_ranking_metric(name: &str) -> bool {
    RANKING_METRICS.contains(&name)
        || name
            .strip_prefix("ranking.sorted.")
            .is_some_and(|key| crate::ranking::SortKey::ALL.iter().any(|k| k.name() == key))
}

const PATTERNS: &str = "rows, error, dataset_drift, drift_share, drifted_columns, feature_drift.<column>, feature_drifted.<column>, prediction_drift, prediction_drifted, labelled_rows, accuracy, precision, recall, f1, auc, rmse, mae, <performance metric>_delta, <fairness metric>.<sensitive column> (demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference, equalized_odds_ratio, equal_opportunity_difference, equal_opportunity_ratio); for a business metric monitor: points, anomalies, drops, spikes, observed, expected, deviation, annotated_points, unjudged_points; for a ranking monitor: impressions, displayed_impressions, reported_share, ranking.agreement, ranking.kendall_tau, ranking.top_k_overlap, ranking.ndcg_served, ranking.ndcg_displayed, ranking.sorted.<served|reverse_served|alphabetical|reverse_alphabetical|numeric|reverse_numeric>, returning_impressions, ranking.repeat_share, catalog.out_of_catalog_share, catalog.impressions_out_of_catalog, catalog.coverage, catalog.gini";

/// What a window reports per sensitive column (and crossed columns), as `METRIC.COLUMN`.
pub const FAIRNESS_METRICS: [&str; 6] = [
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
];

fn known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || BUSINESS_METRICS.contains(&name)
        || is_ranking_metric(name)
        || name
            .strip_prefix("feature_drift.")
            .or_else(|| name.strip_prefix("feature_drifted."))
            .is_some_and(|c| !c.is_empty())
        || name
            .split_once('.')
            .is_some_and(|(m, c)| FAIRNESS_METRICS.contains(&m) && !c.is_empty())
        || [
            "accuracy",
            "precision",
            "recall",
            "f1",
            "auc",
            "rmse",
            "mae",
        ]
        .iter()
        .any(|m| name == *m || name.strip_suffix("_delta") == Some(m))
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (condition, windows) = match words.as_slice() {
            [m, o, t] => ([*m, *o, *t], 1),
            [m, o, t, "for", n] | [m, o, t, "for", n, "windows" | "window"] => {
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("alert `{text}`: `for {n}` needs a whole number of windows ≥ 1"))?;
                ([*m, *o, *t], n)
            }
            _ => {
                return Err(format!(
                    "alert `{text}` is not `METRIC OP THRESHOLD [for N]` (e.g. `drift_share >= 0.3 for 2`)"
                ))
            }
        };
        let [metric, op, threshold] = condition;
        if !known_metric(metric) {
            return Err(format!(
                "alert `{text}`: unknown metric `{metric}` (one of {PATTERNS})"
            ));
        }
        let op = match op {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" | "=" => Op::Eq,
            "!=" => Op::Ne,
            other => {
                return Err(format!(
                    "alert `{text}`: `{other}` is not one of >, >=, <, <=, ==, !="
                ))
            }
        };
        let threshold: f64 = threshold
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| format!("alert `{text}`: `{threshold}` is not a number"))?;
        Ok(Rule {
            metric: metric.to_string(),
            op,
            threshold,
            windows,
        })
    }

    /// Whether the condition holds on one window's values (a missing value never holds).
    pub fn holds(&self, values: &Values) -> bool {
        values
            .get(&self.metric)
            .is_some_and(|v| self.op.holds(*v, self.threshold))
    }

    /// Whether the rule fires on `current`, given the windows before it (newest first): the
    /// condition holds on exactly the last `windows` windows, so a lasting condition fires once.
    pub fn fires(&self, current: &Values, previous: &[Option<&Values>]) -> bool {
        let n = self.windows as usize;
        if !self.holds(current) {
            return false;
        }
        let held = |v: &Option<&Values>| v.is_some_and(|v| self.holds(v));
        let streak_before = previous.iter().take_while(|v| held(v)).count();
        streak_before + 1 == n
    }
}

impl Rule {
    /// Whether a rule that had fired stops holding on `current`: it held on the last `windows`
    /// windows before (so it fired during that streak) and no longer does.
    pub fn resolves(&self, current: &Values, previous: &[Option<&Values>]) -> bool {
        let n = self.windows as usize;
        !self.holds(current)
            && previous.len() >= n
            && previous[..n]
                .iter()
                .all(|v| v.is_some_and(|v| self.holds(v)))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)?;
        if self.windows > 1 {
            write!(f, " for {}", self.windows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(share: f64) -> Values {
        Values::from([("drift_share".to_string(), share)])
    }

    #[test]
    fn rules_parse_and_print() {
        let r = Rule::parse("drift_share >= 0.3 for 2").unwrap();
        assert_eq!(r.op, Op::Ge);
        assert_eq!(r.windows, 2);
        assert_eq!(r.to_string(), "drift_share >= 0.3 for 2");
        assert!(Rule::parse("feature_drifted.income == 1").is_ok());
        assert!(Rule::parse("accuracy_delta < -0.05").is_ok());
        assert!(Rule::parse("error == 1 for 3").is_ok());
        for bad in [
            "drift_share >= x",
            "drift_share => 1",
            "speed > 1",
            "drift_share > 1 for 0",
            "drift_share",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_lasting_condition_fires_once_after_n_windows() {
        let r = Rule::parse("drift_share >= 0.5 for 2").unwrap();
        let (hi, lo) = (values(0.6), values(0.1));
        assert!(!r.fires(&hi, &[Some(&lo)]));
        assert!(r.fires(&hi, &[Some(&hi), Some(&lo)]));
        assert!(!r.fires(&hi, &[Some(&hi), Some(&hi)]));
        // A window with no values (`None`) breaks the streak.
        assert!(!r.fires(&hi, &[None, Some(&hi)]));
        let once = Rule::parse("drift_share >= 0.5").unwrap();
        assert!(once.fires(&hi, &[]));
        assert!(!once.fires(&hi, &[Some(&hi)]));
        assert!(!once.fires(&Values::new(), &[]));
    }

    #[test]
    fn a_fired_rule_resolves_once_when_its_condition_stops_holding() {
        let r = Rule::parse("drift_share >= 0.5 for 2").unwrap();
        let (hi, lo) = (values(0.6), values(0.1));
        assert!(r.resolves(&lo, &[Some(&hi), Some(&hi)]));
        assert!(!r.resolves(&lo, &[Some(&hi), Some(&lo)]), "it never fired");
        assert!(
            !r.resolves(&lo, &[Some(&lo), Some(&hi)]),
            "already resolved"
        );
        assert!(!r.resolves(&hi, &[Some(&hi), Some(&hi)]), "still holding");
        assert!(!r.resolves(&lo, &[Some(&hi)]), "too little history");
    }
}
