//! One window of a deployment's prediction log, turned into what a monitor compares: the inputs
//! as a table, each prediction (and its positive-class score), and the labels feedback brought.

use std::collections::HashMap;

use mltrail_data::table::{self, Table};
use serde_json::{Map, Value as Json};

use crate::performance::{Labelled, Outcome};

/// Which model outputs hold the prediction and its score. Output objects are keyed by the model's
/// output names, e.g. `{"label": 1, "probabilities": [0.2, 0.8]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputNames {
    pub prediction: String,
    pub score: Option<String>,
}

impl OutputNames {
    /// The first output is the prediction; a second one, when present, holds class scores.
    pub fn from_model_outputs(names: &[String]) -> Option<Self> {
        Some(OutputNames {
            prediction: names.first()?.clone(),
            score: names.get(1).cloned(),
        })
    }

    /// The prediction of one row: a scalar (a one-element array is its element).
    pub fn prediction(&self, outputs: &Map<String, Json>) -> Option<Json> {
        match outputs.get(&self.prediction)? {
            Json::Array(items) if items.len() == 1 => Some(items[0].clone()),
            Json::Array(_) | Json::Object(_) | Json::Null => None,
            scalar => Some(scalar.clone()),
        }
    }

    /// The positive-class score of a binary classifier: the second of two probabilities, or the
    /// `1`/`true` entry of a ZipMap (else its greatest key).
    pub fn score(&self, outputs: &Map<String, Json>) -> Option<f64> {
        match outputs.get(self.score.as_ref()?)? {
            Json::Array(p) if p.len() == 2 => p[1].as_f64(),
            Json::Array(rows) if rows.len() == 1 => match &rows[0] {
                Json::Array(p) if p.len() == 2 => p[1].as_f64(),
                Json::Object(m) => zipmap_score(m),
                _ => None,
            },
            Json::Object(m) => zipmap_score(m),
            _ => None,
        }
    }
}

fn zipmap_score(m: &Map<String, Json>) -> Option<f64> {
    if m.len() != 2 {
        return None;
    }
    let key = ["1", "true", "True"]
        .into_iter()
        .find(|k| m.contains_key(*k))
        .map(str::to_string)
        .or_else(|| m.keys().max().cloned())?;
    m.get(&key)?.as_f64()
}

/// The log records of one window, split by kind.
#[derive(Debug, Default)]
pub struct WindowRecords {
    /// Prediction records with `start <= time_ms < end`.
    pub predictions: Vec<Map<String, Json>>,
    /// Feedback records on any prediction, received by the time the window is evaluated.
    pub feedback: Vec<Map<String, Json>>,
}

impl WindowRecords {
    /// Sorts records into the window: predictions made in `[start, end)`, feedback received in
    /// `[start, labels_until)`.
    pub fn collect<I: IntoIterator<Item = Json>>(
        records: I,
        start: i64,
        end: i64,
        labels_until: i64,
    ) -> Self {
        let mut out = WindowRecords::default();
        for record in records {
            let Json::Object(r) = record else { continue };
            let Some(time) = r.get("time_ms").and_then(Json::as_i64) else {
                continue;
            };
            match r.get("type").and_then(Json::as_str) {
                Some("prediction") if time >= start && time < end => out.predictions.push(r),
                Some("feedback") if time >= start && time < labels_until => out.feedback.push(r),
                _ => {}
            }
        }
        // Replicas archive independently: order by time so results do not depend on file order.
        out.predictions
            .sort_by_key(|r| r.get("time_ms").and_then(Json::as_i64));
        out
    }

    /// The (model, version) that served most of the window's predictions.
    pub fn main_version(&self) -> Option<(String, String)> {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for r in &self.predictions {
            let field = |k: &str| r.get(k).and_then(Json::as_str).unwrap_or("").to_string();
            *counts
                .entry((field("model"), field("version")))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(k, _)| k)
    }

    /// Predictions per model version, for the result.
    pub fn versions(&self) -> Map<String, Json> {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &self.predictions {
            let version = r.get("version").and_then(Json::as_str).unwrap_or("?");
            *counts.entry(version.to_string()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k, Json::from(v)))
            .collect()
    }

    /// The logged inputs, one row per prediction.
    pub fn inputs(&self) -> Table {
        let empty = Map::new();
        table::from_json_rows(self.predictions.iter().map(|r| match r.get("inputs") {
            Some(Json::Object(m)) => m,
            _ => &empty,
        }))
    }

    /// The predictions as a one-column table named `prediction`.
    pub fn predictions(&self, names: &OutputNames) -> Table {
        prediction_table(self.predictions.iter().map(|r| match r.get("outputs") {
            Some(Json::Object(m)) => names.prediction(m),
            _ => None,
        }))
    }

    /// Predictions whose label arrived (the latest label wins when several did).
    pub fn labelled(&self, names: &OutputNames) -> Vec<Labelled> {
        let mut labels: HashMap<&str, &Json> = HashMap::new();
        for f in &self.feedback {
            if let (Some(id), Some(label)) = (f.get("id").and_then(Json::as_str), f.get("label")) {
                if !label.is_null() {
                    labels.insert(id, label);
                }
            }
        }
        self.predictions
            .iter()
            .filter_map(|r| {
                let label = labels.get(r.get("id")?.as_str()?)?;
                let outputs = r.get("outputs")?.as_object()?;
                Some(Labelled {
                    predicted: Outcome::from_json(&names.prediction(outputs)?)?,
                    score: names.score(outputs),
                    actual: Outcome::from_json(label)?,
                })
            })
            .collect()
    }
}

/// A one-column table `prediction` from scalar predictions (`None` where there was none).
pub fn prediction_table<I: IntoIterator<Item = Option<Json>>>(predictions: I) -> Table {
    let rows: Vec<Map<String, Json>> = predictions
        .into_iter()
        .map(|p| {
            let mut row = Map::new();
            row.insert("prediction".into(), p.unwrap_or(Json::Null));
            row
        })
        .collect();
    let mut t = table::from_json_rows(&rows);
    if t.columns.is_empty() {
        t.columns.push(table::Column {
            name: "prediction".into(),
            values: table::Values::Numeric {
                values: vec![f64::NAN; rows.len()],
                integer: false,
            },
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_sorted_into_the_window_and_joined_with_labels() {
        let records = vec![
            json!({"type": "prediction", "id": "a", "time_ms": 100, "model": "m", "version": "1",
                   "inputs": {"x": 1.5}, "outputs": {"label": [1], "probabilities": [[0.3, 0.7]]}}),
            json!({"type": "prediction", "id": "b", "time_ms": 150, "model": "m", "version": "2",
                   "inputs": {"x": 2.5}, "outputs": {"label": [0], "probabilities": [[0.9, 0.1]]}}),
            json!({"type": "prediction", "id": "late", "time_ms": 200, "inputs": {"x": 9.0}}),
            json!({"type": "feedback", "id": "a", "time_ms": 210, "label": 0}),
            json!({"type": "feedback", "id": "a", "time_ms": 220, "label": 1}),
            json!({"type": "feedback", "id": "b", "time_ms": 400, "label": 1}),
        ];
        let w = WindowRecords::collect(records, 100, 200, 300);
        assert_eq!(w.predictions.len(), 2);
        assert_eq!(w.inputs().rows, 2);
        let names =
            OutputNames::from_model_outputs(&["label".into(), "probabilities".into()]).unwrap();
        let labelled = w.labelled(&names);
        assert_eq!(
            labelled.len(),
            1,
            "b's label came after the window's labels"
        );
        assert_eq!(labelled[0].actual, Outcome::Class("1".into()));
        assert_eq!(labelled[0].score, Some(0.7));
        assert_eq!(w.versions()["1"], 1);
        let p = w.predictions(&names);
        assert_eq!(
            p.column("prediction").unwrap().values,
            table::Values::Numeric {
                values: vec![1.0, 0.0],
                integer: true
            }
        );
    }

    #[test]
    fn zipmap_scores_take_the_positive_class() {
        let names = OutputNames {
            prediction: "output_label".into(),
            score: Some("output_probability".into()),
        };
        let outputs = json!({"output_label": 1, "output_probability": [{"0": 0.25, "1": 0.75}]});
        assert_eq!(names.score(outputs.as_object().unwrap()), Some(0.75));
    }
}
