//! Explanations as serving sees them: when they are made (`mltrail serve --explain`), the seam
//! through which they are computed, and how a stored explanation reads to a person (reason
//! codes).
//!
//! Serving does not compute explanations: an [`Explainers`] (mltrail-explain's, wired in by the
//! binary) makes a [`RowExplainer`] for each model version from its training data. An
//! explanation is stored as a JSON object `{method, output_space, base_value, values, output,
//! background_digest}`, where `values` maps column → contribution for a model with one
//! explained output, and label → {column → contribution} for several (`base_value` and
//! `output` then map label → number too).

use std::sync::Arc;

use serde_json::Value as Json;

use crate::deployment::{BoxError, BoxFuture, Serving};
use crate::runtime::Model;

/// When a deployment explains its predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExplainMode {
    /// Never; asking for an explanation is refused.
    Off,
    /// On the first request for it, from the stored inputs; then kept in the log.
    #[default]
    OnRequest,
    /// While serving, into the prediction's own record (what was served, as it was served).
    Always,
}

impl ExplainMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(ExplainMode::Off),
            "on_request" => Some(ExplainMode::OnRequest),
            "always" => Some(ExplainMode::Always),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExplainMode::Off => "off",
            ExplainMode::OnRequest => "on_request",
            ExplainMode::Always => "always",
        }
    }
}

/// Explains rows of one model version.
pub trait RowExplainer: Send + Sync {
    /// Each row's explanation as a JSON object (the module's layout). `rows` are row-major, in
    /// the signature's column order, as the model's input tensor holds them.
    fn explain(&self, model: &Model, rows: &[f64]) -> Result<Vec<Vec<u8>>, BoxError>;

    /// The smallest change of `request`'s features, within their ranges, that changes the
    /// model's decision about `row`, as a JSON object; or why none was found.
    fn counterfactual(
        &self,
        model: &Model,
        row: &[f64],
        request: &CounterfactualRequest,
    ) -> Result<Json, CounterfactualError>;
}

/// Why a counterfactual was not made.
#[derive(Debug, thiserror::Error)]
pub enum CounterfactualError {
    /// The request cannot be answered as asked (`field`: the query parameter at fault).
    #[error("{message}")]
    Request {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Failed(BoxError),
}

/// Which features a person could act on, and the values each may take: `None` for an end the
/// request leaves open (then the training data's least or greatest value).
#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualRequest {
    pub features: Vec<(String, Option<f64>, Option<f64>)>,
}

/// Makes the explainer of a model version in service.
pub trait Explainers: Send + Sync {
    fn build(
        &self,
        serving: Arc<Serving>,
    ) -> BoxFuture<'static, Result<Arc<dyn RowExplainer>, BoxError>>;
}

/// The numbers of a stored row's inputs in the signature's column order: what the model was
/// given. A missing or `null` value is NaN; text is refused (explanations need numbers).
pub fn input_numbers(inputs: &str, columns: &[String]) -> Result<Vec<f64>, String> {
    let object: serde_json::Map<String, Json> = serde_json::from_str(inputs)
        .map_err(|e| format!("the stored inputs are not a JSON object: {e}"))?;
    columns
        .iter()
        .map(|c| match object.get(c) {
            None | Some(Json::Null) => Ok(f64::NAN),
            Some(Json::Number(n)) => n
                .as_f64()
                .ok_or_else(|| format!("column `{c}` holds {n}, which is not a double")),
            Some(Json::Bool(b)) => Ok(f64::from(u8::from(*b))),
            Some(other) => Err(format!(
                "column `{c}` holds {other}, not a number: only numeric inputs are explained"
            )),
        })
        .collect()
}

/// How many features a set of reason codes names at most.
pub const REASONS: usize = 3;

/// Reason codes: the features that pushed the decision most, in plain words
/// ("debt_ratio = 0.62 raised the score by 0.31"), strongest first. For several outputs they
/// speak of the one with the highest output (the predicted class). `inputs` is the row's
/// inputs object as stored (opened, for sealed records).
pub fn reasons(explanation: &Json, inputs: &str) -> Vec<String> {
    let inputs: serde_json::Map<String, Json> = serde_json::from_str(inputs).unwrap_or_default();
    let (values, about) = match (&explanation["values"], &explanation["output"]) {
        (Json::Object(values), Json::Number(_)) => (values, String::new()),
        (Json::Object(per_label), Json::Object(outputs)) => {
            let Some((label, _)) = outputs
                .iter()
                .filter_map(|(label, v)| v.as_f64().map(|v| (label, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                return Vec::new();
            };
            match per_label.get(label) {
                Some(Json::Object(values)) => (values, format!(" of {label}")),
                _ => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    let mut ranked: Vec<(&String, f64)> = values
        .iter()
        .filter_map(|(c, v)| v.as_f64().map(|v| (c, v)))
        .filter(|(_, v)| *v != 0.0 && v.is_finite())
        .collect();
    ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    ranked
        .into_iter()
        .take(REASONS)
        .map(|(column, v)| {
            let value = inputs
                .get(column)
                .map_or_else(|| "missing".to_string(), |v| v.to_string());
            let verb = if v > 0.0 { "raised" } else { "lowered" };
            format!(
                "{column} = {value} {verb} the score{about} by {}",
                amount(v.abs())
            )
        })
        .collect()
}

/// A contribution as people read it: three significant digits.
fn amount(v: f64) -> String {
    if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_strongest_features_first_in_plain_words() {
        let explanation: Json = serde_json::from_str(
            r#"{"values": {"income": -0.05, "debt_ratio": 0.31, "age": 0.0, "savings": 0.004},
                "output": 1.2}"#,
        )
        .unwrap();
        let inputs = r#"{"income": 52000.5, "debt_ratio": 0.62, "age": 41, "savings": 0}"#;
        assert_eq!(
            reasons(&explanation, inputs),
            vec![
                "debt_ratio = 0.62 raised the score by 0.31",
                "income = 52000.5 lowered the score by 0.05",
                "savings = 0 raised the score by 4.00e-3",
            ]
        );
    }

    #[test]
    fn with_several_outputs_the_reasons_are_about_the_predicted_class() {
        let explanation: Json = serde_json::from_str(
            r#"{"values": {"0": {"x": 0.5}, "1": {"x": -0.5}, "2": {"x": 0.1, "y": -0.2}},
                "output": {"0": 0.1, "1": -1.0, "2": 2.0}}"#,
        )
        .unwrap();
        assert_eq!(
            reasons(&explanation, r#"{"x": 1, "y": 2}"#),
            vec![
                "y = 2 lowered the score of 2 by 0.20",
                "x = 1 raised the score of 2 by 0.10"
            ]
        );
    }

    #[test]
    fn stored_inputs_become_numbers_in_signature_order() {
        let columns = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let row = input_numbers(r#"{"a": 1.5, "b": 2, "c": null}"#, &columns).unwrap();
        assert_eq!(&row[..2], &[2.0, 1.5]);
        assert!(row[2].is_nan());
        assert!(input_numbers(r#"{"a": "x"}"#, &columns).is_err());
    }
}
