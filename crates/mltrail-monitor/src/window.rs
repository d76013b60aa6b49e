//! One window of a deployment's prediction log, turned into what a monitor compares: the inputs
//! as a table, each prediction (and its positive-class score), and the labels feedback brought.

use std::collections::HashMap;

use mltrail_data::table::{self, JsonTableBuilder, Table};
use mltrail_serving::archive::RecordView;
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

/// One window of the log, accumulated file by file in compact form: the inputs go straight into
/// columns, and each prediction keeps only its id, model version and output text. Labels are kept
/// only for predictions of the window.
pub struct Window {
    start: i64,
    end: i64,
    labels_until: i64,
    inputs: JsonTableBuilder,
    ids: Vec<u128>,
    /// Index into `version_names`, per prediction.
    versions: Vec<u32>,
    version_names: Vec<(String, String)>,
    outputs: Vec<Box<str>>,
    /// Prediction id → (feedback time, label JSON text); the latest feedback wins.
    labels: HashMap<u128, (i64, Box<str>)>,
    /// The input columns some prediction of the window stored sealed (personal data).
    sealed: Vec<String>,
    /// The last `sealed` list read, so a window of one deployment parses it once.
    last_sealed: String,
    /// A ranking deployment's impressions: prediction id, time and its outputs' text
    /// (`{"items": [...], "scores": [...], …}`); they are not rows of the inputs table.
    impressions: Vec<(u128, i64, Box<str>)>,
    /// Prediction id → what the front end reported: the latest `displayed` and the latest
    /// `clicked`, each with its feedback time.
    shown: HashMap<u128, Shown>,
}

/// What feedback said a user was shown of one impression, and clicked.
#[derive(Default)]
struct Shown {
    displayed: Option<(i64, Box<str>)>,
    clicked: Option<(i64, Box<str>)>,
}

/// One impression with its ids as text: served (the logged order), displayed and clicked (as
/// the front end reported, empty when it did not), and what the deployment's catalog said.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpressionText {
    pub time_ms: i64,
    pub served: Vec<String>,
    pub displayed: Option<Vec<String>>,
    pub clicked: Vec<String>,
    /// Whom it was for (`request_key`), when the deployment logs one.
    pub key: Option<String>,
    /// The items the catalog did not hold, in served order (left out of `served` when
    /// `filtered`).
    pub out_of_catalog: Vec<String>,
    pub filtered: bool,
    /// The catalog version that checked it and its available items.
    pub catalog: Option<(String, usize)>,
}

impl ImpressionText {
    /// The impression as [`crate::ranking`] reads it.
    pub fn as_impression(&self) -> crate::ranking::Impression<'_> {
        crate::ranking::Impression {
            served: self.served.iter().map(String::as_str).collect(),
            displayed: self
                .displayed
                .iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            clicked: self.clicked.iter().map(String::as_str).collect(),
        }
    }
}

/// A JSON list of item ids as text (strings as they are, integers in decimal); other entries
/// are left out.
fn item_texts(json: &str) -> Option<Vec<String>> {
    let items: Vec<Json> = serde_json::from_str(json).ok()?;
    Some(
        items
            .iter()
            .filter_map(|i| mltrail_serving::ranking::item_text(i).map(|t| t.into_owned()))
            .collect(),
    )
}

/// Whether a prediction record is a ranking deployment's impression: its inputs are the
/// candidates, a JSON list, not one row's object.
fn is_impression(inputs: Option<&str>) -> bool {
    inputs.is_some_and(|i| i.trim_start().starts_with('['))
}

fn parse_id(id: Option<&str>) -> Option<u128> {
    id.and_then(|i| uuid::Uuid::parse_str(i).ok())
        .map(|u| u.as_u128())
}

impl Window {
    /// Predictions made in `[start, end)`, with feedback received in `[start, labels_until)`.
    pub fn new(start: i64, end: i64, labels_until: i64) -> Self {
        Window {
            start,
            end,
            labels_until,
            inputs: JsonTableBuilder::new(),
            ids: Vec::new(),
            versions: Vec::new(),
            version_names: Vec::new(),
            outputs: Vec::new(),
            labels: HashMap::new(),
            sealed: Vec::new(),
            last_sealed: String::new(),
            impressions: Vec::new(),
            shown: HashMap::new(),
        }
    }

    /// Takes one archived record if it belongs to the window.
    pub fn visit(&mut self, r: RecordView<'_>) {
        let Some(time) = r.time_ms else { return };
        match r.kind {
            // A shadow's prediction was never returned: the deployment's traffic is the
            // returned predictions' (a shadow's inputs repeat the row it shadowed).
            Some("prediction") if r.returned == Some(false) => {}
            Some("prediction")
                if time >= self.start && time < self.end && is_impression(r.inputs) =>
            {
                self.impressions.push((
                    parse_id(r.id).unwrap_or(0),
                    time,
                    r.outputs.unwrap_or("{}").into(),
                ));
            }
            Some("prediction") if time >= self.start && time < self.end => {
                if let Some(sealed) = r.sealed.filter(|s| *s != self.last_sealed) {
                    self.note_sealed(sealed);
                }
                // A record whose inputs are not a JSON object still counts, with them missing.
                let _ = self.inputs.push_json(r.inputs.unwrap_or("{}"));
                self.ids.push(parse_id(r.id).unwrap_or(0));
                let version = (
                    r.model.unwrap_or("").to_string(),
                    r.version.unwrap_or("").to_string(),
                );
                let v = match self.version_names.iter().position(|n| *n == version) {
                    Some(v) => v,
                    None => {
                        self.version_names.push(version);
                        self.version_names.len() - 1
                    }
                };
                self.versions.push(v as u32);
                self.outputs.push(r.outputs.unwrap_or("null").into());
            }
            Some("feedback") if time >= self.start && time < self.labels_until => {
                let Some(id) = parse_id(r.id) else { return };
                // Prediction ids are UUIDv7 stamped with the prediction's time: feedback on
                // predictions outside the window is not kept.
                let made = mltrail_serving::record::uuid_v7_time_ms(id) as i64;
                if made < self.start || made >= self.end {
                    return;
                }
                if r.ranking.is_some() || r.clicked.is_some() {
                    let shown = self.shown.entry(id).or_default();
                    for (field, given) in [
                        (&mut shown.displayed, r.ranking),
                        (&mut shown.clicked, r.clicked),
                    ] {
                        if let Some(text) = given {
                            if field.as_ref().is_none_or(|(t, _)| time >= *t) {
                                *field = Some((time, text.into()));
                            }
                        }
                    }
                }
                let Some(label) = r.label else { return };
                let entry = self.labels.entry(id).or_insert((time, label.into()));
                if time >= entry.0 {
                    *entry = (time, label.into());
                }
            }
            _ => {}
        }
    }

    fn note_sealed(&mut self, sealed_json: &str) {
        self.last_sealed = sealed_json.to_string();
        let names: Vec<String> = serde_json::from_str(sealed_json).unwrap_or_default();
        for name in names {
            if !self.sealed.contains(&name) {
                self.sealed.push(name);
            }
        }
    }

    /// The window's impressions (a ranking deployment's predictions) with what the front end
    /// reported of each.
    pub fn impressions(&self) -> Vec<ImpressionText> {
        self.impressions
            .iter()
            .map(|(id, time, outputs)| {
                let outputs =
                    serde_json::from_str::<Map<String, Json>>(outputs).unwrap_or_default();
                let texts = |key: &str| -> Vec<String> {
                    outputs
                        .get(key)
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|i| {
                            mltrail_serving::ranking::item_text(i).map(|t| t.into_owned())
                        })
                        .collect()
                };
                let shown = self.shown.get(id);
                ImpressionText {
                    time_ms: *time,
                    served: texts("items"),
                    key: outputs.get("request_key").and_then(|k| {
                        mltrail_serving::ranking::item_text(k).map(|t| t.into_owned())
                    }),
                    out_of_catalog: texts("out_of_catalog"),
                    filtered: outputs.get("filtered") == Some(&Json::Bool(true)),
                    catalog: outputs.get("catalog").and_then(Json::as_str).map(|c| {
                        let available = outputs
                            .get("catalog_items")
                            .and_then(Json::as_u64)
                            .unwrap_or(0);
                        (
                            c.to_string(),
                            usize::try_from(available).unwrap_or(usize::MAX),
                        )
                    }),
                    displayed: shown
                        .and_then(|s| s.displayed.as_ref())
                        .and_then(|(_, d)| item_texts(d)),
                    clicked: shown
                        .and_then(|s| s.clicked.as_ref())
                        .and_then(|(_, c)| item_texts(c))
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The input columns the window's predictions stored sealed: personal data.
    pub fn sealed_columns(&self) -> &[String] {
        &self.sealed
    }

    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// The (model, version) that served most of the window's predictions.
    pub fn main_version(&self) -> Option<(String, String)> {
        let mut counts = vec![0usize; self.version_names.len()];
        for v in &self.versions {
            counts[*v as usize] += 1;
        }
        let best = (0..counts.len()).max_by(|a, b| {
            counts[*a]
                .cmp(&counts[*b])
                .then_with(|| self.version_names[*b].cmp(&self.version_names[*a]))
        })?;
        Some(self.version_names[best].clone())
    }

    /// Predictions per model version, for the result.
    pub fn versions(&self) -> Map<String, Json> {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for v in &self.versions {
            let name = &self.version_names[*v as usize].1;
            *counts
                .entry(if name.is_empty() {
                    "?".into()
                } else {
                    name.clone()
                })
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k, Json::from(v)))
            .collect()
    }

    /// The logged inputs, one row per prediction (moved out: call once).
    pub fn take_inputs(&mut self) -> Table {
        std::mem::take(&mut self.inputs).finish()
    }

    fn outputs_of(&self, row: usize) -> Option<Map<String, Json>> {
        serde_json::from_str(&self.outputs[row]).ok()
    }

    /// The predictions as a one-column table named `prediction`.
    pub fn predictions(&self, names: &OutputNames) -> Table {
        prediction_table(
            (0..self.rows()).map(|r| self.outputs_of(r).and_then(|o| names.prediction(&o))),
        )
    }

    /// Each row's prediction and label (`None` where there is none), aligned with the inputs.
    pub fn outcomes(&self, names: &OutputNames) -> Vec<(Option<Outcome>, Option<Outcome>)> {
        (0..self.rows())
            .map(|r| {
                let predicted = self
                    .outputs_of(r)
                    .and_then(|o| names.prediction(&o))
                    .and_then(|p| Outcome::from_json(&p));
                let label = self
                    .labels
                    .get(&self.ids[r])
                    .and_then(|(_, l)| serde_json::from_str::<Json>(l).ok())
                    .and_then(|l| Outcome::from_json(&l));
                (predicted, label)
            })
            .collect()
    }

    /// Predictions whose label arrived.
    pub fn labelled(&self, names: &OutputNames) -> Vec<Labelled> {
        (0..self.rows())
            .filter_map(|r| {
                let (_, label) = self.labels.get(&self.ids[r])?;
                let label: Json = serde_json::from_str(label).ok()?;
                let outputs = self.outputs_of(r)?;
                Some(Labelled {
                    predicted: Outcome::from_json(&names.prediction(&outputs)?)?,
                    score: names.score(&outputs),
                    actual: Outcome::from_json(&label)?,
                })
            })
            .collect()
    }
}

/// A one-column table `prediction` from scalar predictions (`None` where there was none).
pub fn prediction_table<I: IntoIterator<Item = Option<Json>>>(predictions: I) -> Table {
    let mut builder = table::JsonTableBuilder::new();
    for p in predictions {
        builder.push_cells([("prediction", p.unwrap_or(Json::Null))]);
    }
    let mut t = builder.finish();
    if t.columns.is_empty() {
        t.columns.push(table::Column {
            name: "prediction".into(),
            values: table::Values::Numeric {
                values: vec![f64::NAN; t.rows],
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

    fn id(time_ms: u64, n: u128) -> String {
        uuid::Uuid::from_u128(((time_ms as u128) << 80) | (7 << 76) | n).to_string()
    }

    #[test]
    fn a_shadows_predictions_are_not_the_deployments_traffic() {
        let mut w = Window::new(100, 200, 300);
        for (i, returned) in [(1u64, None), (2, Some(true)), (3, Some(false))] {
            let id = uuid::Uuid::from_u128(u128::from(i)).to_string();
            w.visit(RecordView {
                kind: Some("prediction"),
                id: Some(&id),
                time_ms: Some(150),
                model: Some("m"),
                version: Some("1"),
                inputs: Some(r#"{"x":1}"#),
                outputs: Some(r#"{"label":1}"#),
                returned,
                ..RecordView::default()
            });
        }
        assert_eq!(w.ids.len(), 2);
    }

    #[test]
    fn records_are_sorted_into_the_window_and_joined_with_labels() {
        let (a, b, late) = (id(100, 1), id(150, 2), id(200, 3));
        let mut w = Window::new(100, 200, 300);
        let visit = |w: &mut Window, kind, id: &str, time, inputs, outputs, label, version| {
            w.visit(RecordView {
                kind: Some(kind),
                id: Some(id),
                time_ms: Some(time),
                model: Some("m"),
                version: Some(version),
                inputs,
                outputs,
                label,
                ..RecordView::default()
            })
        };
        let out_a = r#"{"label": 1, "probabilities": [0.3, 0.7]}"#;
        let out_b = r#"{"label": 0, "probabilities": [0.9, 0.1]}"#;
        visit(
            &mut w,
            "prediction",
            &a,
            100,
            Some(r#"{"x": 1.5}"#),
            Some(out_a),
            None,
            "1",
        );
        visit(
            &mut w,
            "prediction",
            &b,
            150,
            Some(r#"{"x": 2.5}"#),
            Some(out_b),
            None,
            "2",
        );
        visit(
            &mut w,
            "prediction",
            &late,
            200,
            Some(r#"{"x": 9.0}"#),
            Some(out_a),
            None,
            "1",
        );
        visit(&mut w, "feedback", &a, 220, None, None, Some("1"), "");
        visit(&mut w, "feedback", &a, 210, None, None, Some("0"), "");
        visit(&mut w, "feedback", &b, 400, None, None, Some("1"), "");
        visit(&mut w, "feedback", &late, 250, None, None, Some("1"), "");
        assert_eq!(w.rows(), 2);
        let names =
            OutputNames::from_model_outputs(&["label".into(), "probabilities".into()]).unwrap();
        let labelled = w.labelled(&names);
        assert_eq!(
            labelled.len(),
            1,
            "b's label came after the window's labels"
        );
        assert_eq!(
            labelled[0].actual,
            Outcome::Class("1".into()),
            "the latest label wins"
        );
        assert_eq!(labelled[0].score, Some(0.7));
        assert_eq!(w.versions()["1"], 1);
        assert_eq!(w.main_version(), Some(("m".into(), "1".into())));
        let p = w.predictions(&names);
        assert_eq!(
            p.column("prediction").unwrap().values,
            table::Values::Numeric {
                values: vec![1.0, 0.0],
                integer: true
            }
        );
        assert_eq!(w.take_inputs().rows, 2);
    }

    #[test]
    fn impressions_are_kept_apart_from_rows_and_joined_with_what_was_shown() {
        let (a, b) = (id(110, 1), id(120, 2));
        let mut w = Window::new(100, 200, 300);
        for (pid, outputs) in [
            (&a, r#"{"items":["x",7,"y"],"scores":[0.9,0.5,0.1]}"#),
            (&b, r#"{"items":["z"],"scores":[1]}"#),
        ] {
            w.visit(RecordView {
                kind: Some("prediction"),
                id: Some(pid),
                time_ms: Some(150),
                inputs: Some(r#"[{"item":"x"},{"item":7},{"item":"y"}]"#),
                outputs: Some(outputs),
                ..RecordView::default()
            });
        }
        let feedback = |w: &mut Window, time, ranking, clicked| {
            w.visit(RecordView {
                kind: Some("feedback"),
                id: Some(&a),
                time_ms: Some(time),
                ranking,
                clicked,
                ..RecordView::default()
            })
        };
        feedback(&mut w, 160, Some(r#"["y","x"]"#), None);
        feedback(&mut w, 150, Some(r#"["x"]"#), Some(r#"[7]"#));
        feedback(&mut w, 310, Some(r#"["x","y"]"#), None);
        assert_eq!(w.rows(), 0, "an impression is no row of the inputs table");
        let impressions = w.impressions();
        assert_eq!(impressions.len(), 2);
        assert_eq!(impressions[0].served, ["x", "7", "y"]);
        assert_eq!(
            impressions[0].displayed.as_deref(),
            Some(&["y".to_string(), "x".to_string()][..]),
            "the latest report within the window's feedback time wins"
        );
        assert_eq!(impressions[0].clicked, ["7"]);
        assert_eq!(impressions[1].displayed, None);
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
