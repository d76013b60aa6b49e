//! Model quality once the truth is known: classification (accuracy, precision, recall, F1, ROC
//! AUC) and regression (RMSE, MAE) metrics over (prediction, label) pairs, computed the way
//! scikit-learn computes them (macro averages for more than two classes).

use std::collections::BTreeMap;

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

/// The positive class of a binary problem: `1` or `true` when present, else the greater name.
pub(crate) fn positive_class(classes: &[String]) -> Option<&String> {
    if classes.len() != 2 {
        return None;
    }
    classes
        .iter()
        .find(|c| matches!(c.as_str(), "1" | "true" | "True" | "yes"))
        .or_else(|| classes.iter().max())
}

/// ROC AUC from scores and binary truths (the Mann–Whitney statistic, ties counted half): the
/// one implementation, mltrail-explain's, which fairness reports use too.
pub fn roc_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    if pairs.iter().any(|(s, _)| !s.is_finite()) {
        return None;
    }
    let (scores, truth): (Vec<f64>, Vec<bool>) = pairs.iter().copied().unzip();
    Some(mltrail_explain::fairness::roc_auc(&truth, &scores)).filter(|auc| !auc.is_nan())
}

/// Metrics by name. Classification when the predictions are classes, regression when numbers.
pub fn metrics(pairs: &[Labelled]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if pairs.is_empty() {
        return out;
    }
    let classification = pairs
        .iter()
        .all(|p| matches!(p.predicted, Outcome::Class(_)));
    if classification {
        let truth: Vec<(String, String)> = pairs
            .iter()
            .map(|p| (p.predicted.as_class(), p.actual.as_class()))
            .collect();
        let n = truth.len() as f64;
        out.insert(
            "accuracy".into(),
            truth.iter().filter(|(p, a)| p == a).count() as f64 / n,
        );
        let mut classes: Vec<String> = truth
            .iter()
            .flat_map(|(p, a)| [p.clone(), a.clone()])
            .collect();
        classes.sort();
        classes.dedup();
        let precision_recall = |class: &String| {
            let tp = truth
                .iter()
                .filter(|(p, a)| p == class && a == class)
                .count() as f64;
            let predicted = truth.iter().filter(|(p, _)| p == class).count() as f64;
            let actual = truth.iter().filter(|(_, a)| a == class).count() as f64;
            // scikit-learn's zero_division=0.
            let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let recall = if actual > 0.0 { tp / actual } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            (precision, recall, f1)
        };
        let (precision, recall, f1) = match positive_class(&classes) {
            Some(positive) => precision_recall(positive),
            None => {
                let per: Vec<_> = classes.iter().map(precision_recall).collect();
                let k = per.len().max(1) as f64;
                (
                    per.iter().map(|x| x.0).sum::<f64>() / k,
                    per.iter().map(|x| x.1).sum::<f64>() / k,
                    per.iter().map(|x| x.2).sum::<f64>() / k,
                )
            }
        };
        out.insert("precision".into(), precision);
        out.insert("recall".into(), recall);
        out.insert("f1".into(), f1);
        if let Some(positive) = positive_class(&classes) {
            let scored: Option<Vec<(f64, bool)>> = pairs
                .iter()
                .zip(&truth)
                .map(|(p, (_, a))| p.score.map(|s| (s, a == positive)))
                .collect();
            if let Some(auc) = scored.as_deref().and_then(roc_auc) {
                out.insert("auc".into(), auc);
            }
        }
    } else {
        let errors: Vec<f64> = pairs
            .iter()
            .filter_map(|p| Some(p.predicted.as_number()? - p.actual.as_number()?))
            .filter(|e| e.is_finite())
            .collect();
        if !errors.is_empty() {
            let n = errors.len() as f64;
            out.insert(
                "rmse".into(),
                (errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt(),
            );
            out.insert(
                "mae".into(),
                errors.iter().map(|e| e.abs()).sum::<f64>() / n,
            );
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
