//! Explanations for `mltrail serve`: serving's [`Explainers`] seam, filled with this crate.
//!
//! A version's explainer is made from the dataset version its training-data tag names, read
//! through the deployment's [`ModelSource`] (the tracking server's REST API, or the stores),
//! with the signature's columns in the model's order. Each explanation is written as the JSON
//! object `mltrail_serving::explanation` describes.

use std::sync::Arc;

use mltrail_data::table::{self, Table, Values};
use mltrail_serving::deployment::{BoxError, BoxFuture, ModelSource, Serving};
use mltrail_serving::explanation::{Explainers, RowExplainer};
use mltrail_serving::runtime::Model;
use serde_json::{json, Map, Value as Json};

use crate::model::{Explanation, Method, ModelExplainer};

/// Makes each served version's explainer from its training data.
pub struct TrainingExplainers {
    source: Arc<dyn ModelSource>,
    method: Method,
    background: usize,
}

impl TrainingExplainers {
    pub fn new(source: Arc<dyn ModelSource>, method: Method, background: usize) -> Self {
        TrainingExplainers {
            source,
            method,
            background,
        }
    }
}

impl Explainers for TrainingExplainers {
    fn build(
        &self,
        serving: Arc<Serving>,
    ) -> BoxFuture<'static, Result<Arc<dyn RowExplainer>, BoxError>> {
        let (source, method, background) = (self.source.clone(), self.method, self.background);
        Box::pin(async move {
            let training = serving.training_data.clone().ok_or(
                "the model version names no training dataset to explain against (register it \
                 with `mltrail models register --training-data NAME@VERSION`)",
            )?;
            let stored = source.dataset(&training).await?;
            let bytes = source.read(&stored.path).await?;
            tokio::task::spawn_blocking(move || -> Result<Arc<dyn RowExplainer>, BoxError> {
                let table = table::read_bytes(&stored.file_name, &bytes)?;
                let columns = serving.signature.column_names();
                let rows = numeric_rows(&table, &columns, &training)?;
                let explainer = ModelExplainer::new(&serving.model, &rows, method, background)?;
                if let Some(why) = explainer.fallback_reason() {
                    tracing::info!(version = %serving.version, reason = %why, "explaining by sampling");
                }
                Ok(Arc::new(Served { explainer, columns }))
            })
            .await?
        })
    }
}

/// The training rows in the model's column order, row-major; missing values are NaN.
/// The model's input columns of `table`, row-major, as numbers (text columns are refused: only
/// numeric inputs are explained).
pub fn numeric_rows(table: &Table, columns: &[String], dataset: &str) -> Result<Vec<f64>, String> {
    let mut by_column = Vec::with_capacity(columns.len());
    for name in columns {
        let column = table.column(name).ok_or_else(|| {
            format!("the training dataset {dataset} has no column `{name}`, which the model takes")
        })?;
        match &column.values {
            Values::Numeric { values, .. } => by_column.push(values),
            Values::Text { .. } => {
                return Err(format!(
                    "column `{name}` of {dataset} holds text: only numeric inputs are explained"
                ))
            }
        }
    }
    let mut rows = Vec::with_capacity(table.rows * columns.len());
    for r in 0..table.rows {
        rows.extend(by_column.iter().map(|c| c[r]));
    }
    Ok(rows)
}

struct Served {
    explainer: ModelExplainer,
    columns: Vec<String>,
}

impl RowExplainer for Served {
    fn explain(&self, model: &Model, rows: &[f64]) -> Result<Vec<Vec<u8>>, BoxError> {
        Ok(self
            .explainer
            .explain(model, rows)?
            .iter()
            .map(|e| to_json(&self.explainer, e, &self.columns).to_string())
            .map(String::into_bytes)
            .collect())
    }
}

/// An explanation as stored and served: one output's numbers plain, several keyed by label;
/// what every row shares comes from `explainer`.
pub fn to_json(explainer: &ModelExplainer, e: &Explanation, columns: &[String]) -> Json {
    let outputs = explainer.outputs();
    let d = columns.len();
    let per_column = |numbers: &[f64], o: usize| -> Json {
        Json::Object(
            columns
                .iter()
                .zip(&numbers[o * d..(o + 1) * d])
                .map(|(c, v)| (c.clone(), json!(v)))
                .collect(),
        )
    };
    let by_output = |f: &dyn Fn(usize) -> Json| -> Json {
        if outputs.len() == 1 {
            f(0)
        } else {
            Json::Object(
                outputs
                    .iter()
                    .enumerate()
                    .map(|(o, out)| (out.label.clone(), f(o)))
                    .collect::<Map<String, Json>>(),
            )
        }
    };
    let mut body = json!({
        "method": explainer.method(),
        "output_space": outputs.first().map_or("value", |o| o.space.as_str()),
        "base_value": by_output(&|o| json!(explainer.base_value()[o])),
        "values": by_output(&|o| per_column(&e.values, o)),
        "output": by_output(&|o| json!(e.output[o])),
        "background_digest": explainer.background_digest(),
    });
    if let Some(errors) = &e.standard_error {
        body["standard_error"] = by_output(&|o| per_column(errors, o));
    }
    body
}
