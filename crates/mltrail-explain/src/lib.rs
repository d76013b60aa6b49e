//! Explanations of predictions: SHAP values computed natively on the serving runtime's own
//! structures. Tree ensembles get TreeSHAP (path-dependent, or interventional against a
//! background sample), linear models exact linear SHAP, and any other graph sampled Shapley
//! values with a fixed seed and their standard errors.
//!
//! This crate owns the attribution math and the choice of method for a model. It knows the
//! runtime's models and nothing of HTTP, the store or the prediction log: callers hand it rows
//! (the model's inputs, as numbers) and a background taken from the training data.

pub mod evaluation;
pub mod fairness;
pub mod linear;
pub mod model;
mod regions;
pub mod robustness;
pub mod sampling;
pub mod served;
pub mod tree;

pub use model::{Explanation, Method, ModelExplainer};

/// Why an explanation cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The model's structure cannot be explained this way (the message says what is wrong).
    #[error("cannot explain this model: {0}")]
    Model(String),
    /// The background (training) rows do not fit the model.
    #[error("background data: {0}")]
    Background(String),
    /// A row to explain does not fit the model.
    #[error("input: {0}")]
    Input(String),
    /// The runtime failed to score rows the explainer needed.
    #[error("scoring rows for the explanation failed: {0}")]
    Runtime(#[from] mltrail_serving::runtime::RuntimeError),
}

/// The number of rows of `width` values in `values`, or why they are not whole rows (at least
/// one).
pub(crate) fn whole_rows(values: &[f64], width: usize) -> Result<usize, String> {
    if width == 0 || values.is_empty() || !values.len().is_multiple_of(width) {
        return Err(format!(
            "{} values do not make rows of {width} columns",
            values.len()
        ));
    }
    Ok(values.len() / width)
}
