//! Explanations for `mltrail serve`: serving's [`Explainers`] seam, filled with this crate.
//!
//! A version's explainer is made from the dataset version its training-data tag names, read
//! through the deployment's [`ModelSource`] (the tracking server's REST API, or the stores),
//! with the signature's columns in the model's order. Each explanation is written as the JSON
//! object `mltrail_serving::explanation` describes.

use std::sync::Arc;

use mltrail_data::table::{self, Table, Values};
use mltrail_serving::deployment::{BoxError, BoxFuture, ModelSource, Serving};
use mltrail_serving::explanation::{
    CounterfactualError, CounterfactualRequest, Explainers, RowExplainer,
};
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
                named_once(&columns, explainer.features())?;
                if let Some(why) = explainer.fallback_reason() {
                    tracing::info!(version = %serving.version, reason = %why, "explaining by sampling");
                }
                let stats = column_stats(&rows, columns.len());
                Ok(Arc::new(Served {
                    explainer,
                    columns,
                    stats,
                }))
            })
            .await?
        })
    }
}

/// An explanation maps each column's name to its value: the signature must name every input
/// column of the model, and each once.
fn named_once(columns: &[String], features: usize) -> Result<(), String> {
    if columns.len() != features {
        return Err(format!(
            "the model's signature names {} input columns and the model takes {features}: explanations need one name per column",
            columns.len()
        ));
    }
    let mut sorted: Vec<&String> = columns.iter().collect();
    sorted.sort();
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!(
            "the model's signature names column `{}` twice: explanations need one name per column",
            w[0]
        )),
        None => Ok(()),
    }
}

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
    /// Per column, the training data's least and greatest value and standard deviation: the
    /// default ranges and the unit of distance of counterfactuals.
    stats: Vec<(f64, f64, f64)>,
}

/// Per column of row-major `rows`, (min, max, population standard deviation, as
/// scikit-learn's `StandardScaler`) of its finite values.
pub fn column_stats(rows: &[f64], width: usize) -> Vec<(f64, f64, f64)> {
    (0..width)
        .map(|j| {
            let values: Vec<f64> = rows
                .chunks_exact(width)
                .map(|r| r[j])
                .filter(|v| v.is_finite())
                .collect();
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi, sd)
        })
        .collect()
}

impl RowExplainer for Served {
    fn explain(&self, model: &Model, rows: &[f64]) -> Result<Vec<Vec<u8>>, BoxError> {
        let writer = JsonWriter::new(&self.explainer, &self.columns);
        Ok(self
            .explainer
            .explain(model, rows)?
            .iter()
            .map(|e| writer.write(e))
            .collect())
    }

    fn counterfactual(
        &self,
        model: &Model,
        row: &[f64],
        request: &CounterfactualRequest,
    ) -> Result<serde_json::Value, CounterfactualError> {
        use crate::robustness::counterfactual::{search, Request};
        let asked =
            |field: &'static str, message: String| CounterfactualError::Request { field, message };
        let width = self.columns.len();
        let (mut lo, mut hi) = (row.to_vec(), row.to_vec());
        let mut ranges = serde_json::Map::new();
        for (name, from, to) in &request.features {
            let j = self.columns.iter().position(|c| c == name).ok_or_else(|| {
                asked(
                    "features",
                    format!(
                        "`{name}` is not an input of the version that answered ({})",
                        self.columns.join(", ")
                    ),
                )
            })?;
            if row[j].is_nan() {
                return Err(asked(
                    "features",
                    format!("`{name}` is missing in the prediction's stored inputs: there is no value to change"),
                ));
            }
            let (min, max, _) = self.stats[j];
            let (a, b) = (from.unwrap_or(min), to.unwrap_or(max));
            if !(a.is_finite() && b.is_finite() && a < b) {
                return Err(asked(
                    "ranges",
                    format!("the range of `{name}` is {a}..{b} (open ends are the training data's least and greatest value): give LOW < HIGH"),
                ));
            }
            lo[j] = a;
            hi[j] = b;
            ranges.insert(name.clone(), serde_json::json!([a, b]));
        }
        // Unit of distance: the training data's standard deviation (1 where it is 0).
        let scale: Vec<f64> = self
            .stats
            .iter()
            .map(|(_, _, sd)| if *sd > 0.0 { *sd } else { 1.0 })
            .collect();
        let answer = search(
            model,
            width,
            &Request {
                row,
                lo: &lo,
                hi: &hi,
                scale: &scale,
                seed: 0,
            },
        )
        .map_err(|e| match e {
            crate::robustness::RobustnessError::NotAClassifier => asked(
                "features",
                "counterfactuals are for classifiers: this model's first output is not a class label".into(),
            ),
            other => CounterfactualError::Failed(Box::new(other)),
        })?;
        let mut out = serde_json::json!({
            "features": request.features.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
            "ranges": ranges,
            "decision": answer.original,
            "method": answer.method,
            "distance_unit": "training standard deviations, largest change of one feature (L-inf)",
        });
        match &answer.found {
            Some((x, decided)) => {
                // The model took the row rounded to its precision: a feature the search left
                // there is unchanged, and answered as given.
                let element = model.inputs().first().map(|i| i.element);
                let taken = |v: f64| match element {
                    Some(mltrail_serving::runtime::ElementType::Float) => f64::from(v as f32),
                    _ => v,
                };
                let same =
                    |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
                let x: Vec<f64> = (0..width)
                    .map(|j| {
                        if same(x[j], taken(row[j])) {
                            row[j]
                        } else {
                            x[j]
                        }
                    })
                    .collect();
                let changes: Vec<serde_json::Value> = (0..width)
                    .filter(|j| !same(x[*j], row[*j]))
                    .map(|j| serde_json::json!({"feature": self.columns[j], "from": row[j], "to": x[j]}))
                    .collect();
                out["found"] = serde_json::json!(true);
                out["counterfactual"] = serde_json::json!({
                    "decision": decided,
                    "changes": changes,
                    "inputs": self.columns.iter().zip(&x).map(|(c, v)| (c.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                    "distance": answer.distance,
                    "rescored": true,
                });
                out["minimal"] = serde_json::json!(if answer.certified {
                    "certified: no change closer than this within the ranges flips the decision"
                } else {
                    "not certified: the closest change found"
                });
            }
            None => {
                out["found"] = serde_json::json!(false);
                out["reason"] = serde_json::json!(if answer.certified {
                    "no change within the ranges flips the decision (verified)"
                } else {
                    "no change within the ranges that flips the decision was found (not verified: the model is not a tree ensemble the search can read exactly)"
                });
            }
        }
        Ok(out)
    }
}

/// Writes [`to_json`]'s bytes without building a `serde_json::Value`: with `--explain always`
/// every served row is explained, and the tree of maps cost about a quarter of a 100-row
/// request (`perf` on `mltrail serve`). Keys in the order a `Value` map sorts them, so the
/// bytes are the same.
struct JsonWriter {
    /// Column positions in the order of their names, and each name escaped as a JSON key.
    columns: Vec<(usize, Vec<u8>)>,
    /// Output positions in the order of their labels, and each label escaped.
    outputs: Vec<(usize, Vec<u8>)>,
    /// What every row shares, written once: `"background_digest":…,"base_value":…,"method":…,`.
    head: Vec<u8>,
    /// `"output_space":…,`.
    space: Vec<u8>,
}

fn escaped(text: &str) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_default()
}

fn number(out: &mut Vec<u8>, v: f64) {
    // As `json!(v)` writes it: a non-finite double is `null`.
    let _ = serde_json::to_writer(&mut *out, &v);
}

impl JsonWriter {
    fn new(explainer: &ModelExplainer, columns: &[String]) -> Self {
        let mut named: Vec<(usize, &String)> = columns.iter().enumerate().collect();
        named.sort_by(|a, b| a.1.cmp(b.1));
        let mut labels: Vec<(usize, &String)> = explainer
            .outputs()
            .iter()
            .map(|o| &o.label)
            .enumerate()
            .collect();
        labels.sort_by(|a, b| a.1.cmp(b.1));
        let mut writer = JsonWriter {
            columns: named.into_iter().map(|(i, c)| (i, escaped(c))).collect(),
            outputs: labels.into_iter().map(|(i, l)| (i, escaped(l))).collect(),
            head: Vec::new(),
            space: Vec::new(),
        };
        let mut head = b"{\"background_digest\":".to_vec();
        head.extend(escaped(explainer.background_digest()));
        head.extend_from_slice(b",\"base_value\":");
        writer.by_output(&mut head, &mut |out, o| {
            number(out, explainer.base_value()[o])
        });
        head.extend_from_slice(b",\"method\":");
        head.extend(escaped(explainer.method()));
        head.push(b',');
        writer.head = head;
        let space = explainer
            .outputs()
            .first()
            .map_or("value", |o| o.space.as_str());
        writer.space = [&b"\"output_space\":"[..], &escaped(space), b","].concat();
        writer
    }

    /// One output's value plain, several keyed by label (in label order).
    fn by_output(&self, out: &mut Vec<u8>, f: &mut dyn FnMut(&mut Vec<u8>, usize)) {
        if self.outputs.len() == 1 {
            return f(out, 0);
        }
        out.push(b'{');
        for (k, (o, label)) in self.outputs.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(label);
            out.push(b':');
            f(out, *o);
        }
        out.push(b'}');
    }

    fn per_column(&self, out: &mut Vec<u8>, numbers: &[f64], o: usize) {
        let d = self.columns.len();
        out.push(b'{');
        for (k, (i, name)) in self.columns.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            out.push(b':');
            number(out, numbers[o * d + i]);
        }
        out.push(b'}');
    }

    fn write(&self, e: &Explanation) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 40 * self.columns.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"output\":");
        self.by_output(&mut out, &mut |out, o| number(out, e.output[o]));
        out.push(b',');
        out.extend_from_slice(&self.space);
        if let Some(errors) = &e.standard_error {
            out.extend_from_slice(b"\"standard_error\":");
            self.by_output(&mut out, &mut |out, o| self.per_column(out, errors, o));
            out.push(b',');
        }
        out.extend_from_slice(b"\"values\":");
        self.by_output(&mut out, &mut |out, o| self.per_column(out, &e.values, o));
        out.push(b'}');
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    fn fixture(name: &str) -> (Model, Vec<f64>) {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
        let model = Model::load(&std::fs::read(dir.join(format!("{name}.onnx"))).unwrap()).unwrap();
        let case: Json = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let rows = case["inputs"]["input"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect();
        (model, rows)
    }

    #[test]
    fn columns_are_named_once_each() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(named_once(&names(&["a", "b"]), 2).is_ok());
        assert!(named_once(&names(&["a", "b"]), 3)
            .unwrap_err()
            .contains("takes 3"));
        assert!(named_once(&names(&["a", "b", "a"]), 3)
            .unwrap_err()
            .contains("`a` twice"));
    }

    #[test]
    fn the_written_json_is_the_values_bytes() {
        for (name, width) in [("gbc", 6), ("gbc_3class", 6)] {
            let (model, rows) = fixture(name);
            let explainer =
                ModelExplainer::new(&model, &rows, Method::Interventional, 100).unwrap();
            // Names out of order, so their sorting shows.
            let columns: Vec<String> = (0..width)
                .map(|i| format!("c{}", (width - i) * 7 % 11))
                .collect();
            let writer = JsonWriter::new(&explainer, &columns);
            let mut explained = explainer.explain(&model, &rows).unwrap();
            let mut odd = explained[0].clone();
            odd.values[1] = f64::NAN;
            odd.standard_error = Some(vec![0.125; odd.values.len()]);
            explained.push(odd);
            for e in &explained {
                assert_eq!(
                    String::from_utf8(writer.write(e)).unwrap(),
                    to_json(&explainer, e, &columns).to_string(),
                    "{name}"
                );
            }
        }
    }
}
