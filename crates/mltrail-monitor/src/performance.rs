//! Model quality once the truth is known: classification (accuracy, precision, recall, F1, ROC
//! AUC) and regression (RMSE, MAE) metrics over (prediction, label) pairs, computed the way
//! scikit-learn computes them (macro averages for more than two classes).

use std::collections::BTreeMap;

use mltrail_explain::evaluation::metrics::{self as evaluation, Scored};

/// A predicted or true value as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Class(String),
    Number(f64),
}

impl Outcome {
    /// Reads a logged value: strings, booleans and integers are classes, other numbers are
    /// numbers; `[x]` is `x`. `None` for anything else (objects, empty arrays, null).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        use serde_json::Value as Json;
        match value {
            Json::String(s) => Some(Outcome::Class(s.clone())),
            Json::Bool(b) => Some(Outcome::Class(b.to_string())),
            Json::Number(n) if n.is_i64() || n.is_u64() => Some(Outcome::Class(n.to_string())),
            Json::Number(n) => n.as_f64().map(Outcome::Number),
            Json::Array(items) if items.len() == 1 => Self::from_json(&items[0]),
            _ => None,
        }
    }

    /// The class name of a label that arrived as a whole float (`1.0` for class `1`).
    pub(crate) fn as_class(&self) -> String {
        match self {
            Outcome::Class(c) => c.clone(),
            Outcome::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
            Outcome::Number(x) => x.to_string(),
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Outcome::Number(x) => Some(*x),
            Outcome::Class(c) => c.parse().ok(),
        }
    }
}

/// One labelled prediction: what the model said (with its positive-class score, when it gave
/// one) and what turned out to be true.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub predicted: Outcome,
    pub score: Option<f64>,
    pub actual: Outcome,
}

/// The positive class of a binary problem: `1` or `true` when present, else the greater name
/// (the evaluation's rule, so a monitor and `mltrail evaluate` agree).
pub(crate) use mltrail_explain::evaluation::metrics::positive_class;

/// ROC AUC from scores and binary truths (the Mann–Whitney statistic, ties counted half): the
/// one implementation, mltrail-explain's, which fairness reports use too.
pub fn roc_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    if pairs.iter().any(|(s, _)| !s.is_finite()) {
        return None;
    }
    let (scores, truth): (Vec<f64>, Vec<bool>) = pairs.iter().copied().unzip();
    Some(mltrail_explain::fairness::roc_auc(&truth, &scores)).filter(|auc| !auc.is_nan())
}

/// Metrics by name, computed by `mltrail evaluate`'s functions (scikit-learn's numbers).
/// Classification when the predictions are classes (`accuracy`, `precision`, `recall`, `f1`,
/// and `auc` when every binary prediction came with a finite positive-class score),
/// regression when numbers (`rmse`, `mae`).
pub fn metrics(pairs: &[Labelled]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if pairs.is_empty() {
        return out;
    }
    let classification = pairs
        .iter()
        .all(|p| matches!(p.predicted, Outcome::Class(_)));
    if classification {
        let truth: Vec<String> = pairs.iter().map(|p| p.actual.as_class()).collect();
        let mut classes: Vec<String> = truth
            .iter()
            .cloned()
            .chain(pairs.iter().map(|p| p.predicted.as_class()))
            .collect();
        classes.sort();
        classes.dedup();
        // A positive-class score is the two-class probabilities, in `classes` order.
        let positive = positive_class(&classes).cloned();
        let scored_rows =
            positive.is_some() && pairs.iter().all(|p| p.score.is_some_and(f64::is_finite));
        let scored: Vec<Scored> = pairs
            .iter()
            .map(|p| Scored {
                predicted: p.predicted.as_class(),
                probabilities: p.score.filter(|_| scored_rows).map(|s| {
                    classes
                        .iter()
                        .map(|c| {
                            if Some(c) == positive.as_ref() {
                                s
                            } else {
                                1.0 - s
                            }
                        })
                        .collect()
                }),
            })
            .collect();
        let m = evaluation::classification(&truth, &scored, &classes);
        out.insert("accuracy".into(), m.accuracy);
        out.insert("precision".into(), m.precision);
        out.insert("recall".into(), m.recall);
        out.insert("f1".into(), m.f1);
        if let Some(auc) = m.roc_auc {
            out.insert("auc".into(), auc);
        }
    } else {
        let (truth, predicted): (Vec<f64>, Vec<f64>) = pairs
            .iter()
            .filter_map(|p| Some((p.actual.as_number()?, p.predicted.as_number()?)))
            .unzip();
        let m = evaluation::regression(&truth, &predicted);
        if m.example_count > 0 {
            out.insert("rmse".into(), m.rmse);
            out.insert("mae".into(), m.mae);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(predicted: &str, score: f64, actual: &str) -> Labelled {
        Labelled {
            predicted: Outcome::Class(predicted.into()),
            score: Some(score),
            actual: Outcome::Class(actual.into()),
        }
    }

    #[test]
    fn binary_metrics_match_scikit_learn() {
        // sklearn 1.x: accuracy 0.6, precision, recall, f1 and roc_auc all 2/3.
        let pairs = [
            class("1", 0.9, "1"),
            class("1", 0.8, "0"),
            class("0", 0.3, "1"),
            class("0", 0.2, "0"),
            class("1", 0.7, "1"),
        ];
        let m = metrics(&pairs);
        assert!((m["accuracy"] - 0.6).abs() < 1e-12);
        assert!((m["precision"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["recall"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["f1"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["auc"] - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn multiclass_metrics_are_macro_averages() {
        // sklearn macro: precision (0.5 + 0.5 + 0) / 3, recall (0.5 + 1 + 0) / 3.
        let pairs = [
            class("a", 0.0, "a"),
            class("b", 0.0, "a"),
            class("b", 0.0, "b"),
            class("a", 0.0, "c"),
        ];
        let m = metrics(&pairs);
        assert!((m["accuracy"] - 0.5).abs() < 1e-12);
        assert!((m["precision"] - 1.0 / 3.0).abs() < 1e-12);
        assert!((m["recall"] - 0.5).abs() < 1e-12);
        assert!(!m.contains_key("auc"));
    }

    #[test]
    fn regression_metrics_and_float_labels() {
        let pairs = [
            Labelled {
                predicted: Outcome::Number(2.5),
                score: None,
                actual: Outcome::Number(3.0),
            },
            Labelled {
                predicted: Outcome::Number(1.0),
                score: None,
                actual: Outcome::Class("2".into()),
            },
        ];
        let m = metrics(&pairs);
        assert!((m["mae"] - 0.75).abs() < 1e-12);
        assert!((m["rmse"] - (0.625f64).sqrt()).abs() < 1e-12);
        // A label sent as 1.0 is class 1.
        let m = metrics(&[Labelled {
            predicted: Outcome::Class("1".into()),
            score: None,
            actual: Outcome::Number(1.0),
        }]);
        assert_eq!(m["accuracy"], 1.0);
    }

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(roc_auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(roc_auc(&[(0.5, true)]), None);
    }
}
