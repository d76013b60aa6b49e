//! A deployment's log as a training table: one row per prediction, its inputs and outputs as
//! columns, its latest label and reward, and the log signature that says which policy caused
//! it: `arm`, `propensity`, `ips_weight` (1 / propensity) and `returned`. The rows can be cut to
//! one arm, cut of some arms, or to the rows whose propensity is known, so a model retrained on
//! production logs is not trained on a routing policy's own bias.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde_json::Value as Json;

use crate::record::{LogRecord, PredictionRecord};

/// Which predictions become rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingFilter {
    /// Only this arm's predictions (`credit@challenger`).
    pub arm: Option<String>,
    /// None of these arms' predictions.
    pub exclude_arms: Vec<String>,
    /// Only predictions with a known, positive propensity (so every row has its weight).
    pub ips: bool,
    /// Also the shadows' predictions (never returned; no propensity).
    pub include_shadows: bool,
}

/// What the filter left out, for the caller to say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    pub rows: usize,
    pub other_arms: usize,
    pub no_propensity: usize,
    pub shadows: usize,
}

/// Why a training table cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("no prediction is left to export: {0}")]
    Empty(String),
}

fn keep(p: &PredictionRecord, filter: &TrainingFilter, cut: &mut Cut) -> bool {
    let returned = p.signature.as_ref().is_none_or(|s| s.returned);
    if !returned && !filter.include_shadows {
        cut.shadows += 1;
        return false;
    }
    let arm = p.arm.as_deref();
    let other = match &filter.arm {
        Some(wanted) => arm != Some(wanted.as_str()),
        None => arm.is_some_and(|a| filter.exclude_arms.iter().any(|x| x == a)),
    };
    if other {
        cut.other_arms += 1;
        return false;
    }
    let propensity = p.signature.as_ref().and_then(|s| s.propensity);
    if filter.ips && !propensity.is_some_and(|v| v > 0.0) {
        cut.no_propensity += 1;
        return false;
    }
    true
}

/// A cell's column type, widened as values are seen.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Float,
    Bool,
    Text,
}

fn kind_of(v: &Json) -> Option<Kind> {
    match v {
        Json::Null => None,
        Json::Bool(_) => Some(Kind::Bool),
        Json::Number(n) if n.is_i64() => Some(Kind::Int),
        Json::Number(_) => Some(Kind::Float),
        _ => Some(Kind::Text),
    }
}

fn widen(a: Option<Kind>, b: Option<Kind>) -> Option<Kind> {
    match (a, b) {
        (None, k) | (k, None) => k,
        (Some(x), Some(y)) if x == y => Some(x),
        (Some(Kind::Int | Kind::Float), Some(Kind::Int | Kind::Float)) => Some(Kind::Float),
        _ => Some(Kind::Text),
    }
}

/// A column of JSON cells, typed by what it holds.
fn column(name: &str, cells: &[Option<&Json>]) -> (Field, ArrayRef) {
    let kind = cells
        .iter()
        .fold(None, |k, c| widen(k, c.and_then(kind_of)))
        .unwrap_or(Kind::Text);
    let array: ArrayRef = match kind {
        Kind::Int => {
            let mut b = Int64Builder::new();
            for c in cells {
                b.append_option(c.and_then(Json::as_i64));
            }
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::new();
            for c in cells {
                b.append_option(c.and_then(Json::as_f64));
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            for c in cells {
                b.append_option(c.and_then(Json::as_bool));
            }
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::new();
            for c in cells {
                match c {
                    None | Some(Json::Null) => b.append_null(),
                    Some(Json::String(s)) => b.append_value(s),
                    Some(other) => b.append_value(other.to_string()),
                }
            }
            Arc::new(b.finish())
        }
    };
    let data_type = match kind {
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Text => DataType::Utf8,
    };
    (Field::new(name, data_type, true), array)
}

/// The training table of `records` (a deployment's log, oldest first) under `filter`.
pub fn training_table(
    records: &[LogRecord],
    filter: &TrainingFilter,
) -> Result<(RecordBatch, Cut), TrainingError> {
    // The latest label and reward of each prediction.
    let mut feedback: BTreeMap<uuid::Uuid, (Option<Json>, Option<f64>)> = BTreeMap::new();
    for r in records {
        if let LogRecord::Feedback(f) = r {
            let entry = feedback.entry(f.id).or_default();
            if let Some(label) = &f.label {
                entry.0 = serde_json::from_str(label.get()).ok();
            }
            if let Some(reward) = f.reward.as_ref().and_then(serde_json::Number::as_f64) {
                entry.1 = Some(reward);
            }
        }
    }
    let mut cut = Cut::default();
    let kept: Vec<&PredictionRecord> = records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Prediction(p) => Some(p),
            _ => None,
        })
        .filter(|p| keep(p, filter, &mut cut))
        .collect();
    cut.rows = kept.len();
    if kept.is_empty() {
        return Err(TrainingError::Empty(format!(
            "{} of other arms, {} without a propensity, {} shadows left out",
            cut.other_arms, cut.no_propensity, cut.shadows
        )));
    }
    let parse = |raw: &serde_json::value::RawValue| -> serde_json::Map<String, Json> {
        serde_json::from_str(raw.get()).unwrap_or_default()
    };
    // A shadow's record leaves out the inputs the prediction it shadowed holds.
    let primaries: BTreeMap<uuid::Uuid, &PredictionRecord> = records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Prediction(p) => Some((p.id, p)),
            _ => None,
        })
        .collect();
    let inputs: Vec<serde_json::Map<String, Json>> = kept
        .iter()
        .map(|p| {
            let holder = p
                .signature
                .as_ref()
                .and_then(|s| s.shadow_of)
                .and_then(|id| primaries.get(&id).copied())
                .unwrap_or(p);
            parse(&holder.inputs)
        })
        .collect();
    let outputs: Vec<serde_json::Map<String, Json>> =
        kept.iter().map(|p| parse(&p.outputs)).collect();
    // Column names in the order first seen.
    let names = |maps: &[serde_json::Map<String, Json>]| {
        let mut seen: Vec<String> = Vec::new();
        for m in maps {
            for k in m.keys() {
                if !seen.contains(k) {
                    seen.push(k.clone());
                }
            }
        }
        seen
    };
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut push = |(f, a): (Field, ArrayRef)| {
        fields.push(f);
        arrays.push(a);
    };
    let text = |values: Vec<Option<String>>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for v in values {
            b.append_option(v);
        }
        Arc::new(b.finish())
    };
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
    push((
        utf8("id"),
        text(kept.iter().map(|p| Some(p.id.to_string())).collect()),
    ));
    push((
        Field::new("time_ms", DataType::Int64, true),
        Arc::new(arrow_array::Int64Array::from(
            kept.iter().map(|p| p.time_ms).collect::<Vec<_>>(),
        )),
    ));
    push((
        utf8("model"),
        text(kept.iter().map(|p| Some(p.model.clone())).collect()),
    ));
    push((
        utf8("version"),
        text(kept.iter().map(|p| Some(p.version.clone())).collect()),
    ));
    push((
        utf8("arm"),
        text(kept.iter().map(|p| p.arm.clone()).collect()),
    ));
    let propensity: Vec<Option<f64>> = kept
        .iter()
        .map(|p| p.signature.as_ref().and_then(|s| s.propensity))
        .collect();
    push((
        Field::new("propensity", DataType::Float64, true),
        Arc::new(arrow_array::Float64Array::from(propensity.clone())),
    ));
    push((
        Field::new("ips_weight", DataType::Float64, true),
        Arc::new(arrow_array::Float64Array::from(
            propensity
                .iter()
                .map(|p| p.filter(|v| *v > 0.0).map(|v| 1.0 / v))
                .collect::<Vec<_>>(),
        )),
    ));
    push((
        Field::new("returned", DataType::Boolean, true),
        Arc::new(arrow_array::BooleanArray::from(
            kept.iter()
                .map(|p| p.signature.as_ref().is_none_or(|s| s.returned))
                .collect::<Vec<_>>(),
        )),
    ));
    for (name, value) in [
        ("experiment", 0usize),
        ("policy", 1),
        ("policy_version", 2),
        ("request_key", 3),
    ] {
        let values = kept
            .iter()
            .map(|p| {
                p.signature.as_ref().and_then(|s| match value {
                    0 => Some(s.experiment.clone()),
                    1 => Some(s.policy.clone()),
                    2 => Some(s.policy_version.clone()),
                    _ => s.request_key.clone(),
                })
            })
            .collect();
        push((utf8(name), text(values)));
    }
    // An input named like one of the table's own columns keeps its name with `input_`.
    const OWN: [&str; 14] = [
        "id",
        "time_ms",
        "model",
        "version",
        "arm",
        "propensity",
        "ips_weight",
        "returned",
        "experiment",
        "policy",
        "policy_version",
        "request_key",
        "label",
        "reward",
    ];
    for name in names(&inputs) {
        let cells: Vec<Option<&Json>> = inputs.iter().map(|m| m.get(&name)).collect();
        let column_name = if OWN.contains(&name.as_str()) || name.starts_with("prediction_") {
            format!("input_{name}")
        } else {
            name.clone()
        };
        push(column(&column_name, &cells));
    }
    for name in names(&outputs) {
        let cells: Vec<Option<&Json>> = outputs.iter().map(|m| m.get(&name)).collect();
        push(column(&format!("prediction_{name}"), &cells));
    }
    // A shadow's prediction is judged by the feedback on the prediction it shadowed.
    let answered = |p: &PredictionRecord| {
        p.signature
            .as_ref()
            .and_then(|s| s.shadow_of)
            .unwrap_or(p.id)
    };
    let labels: Vec<Option<&Json>> = kept
        .iter()
        .map(|p| feedback.get(&answered(p)).and_then(|f| f.0.as_ref()))
        .collect();
    push(column("label", &labels));
    push((
        Field::new("reward", DataType::Float64, true),
        Arc::new(arrow_array::Float64Array::from(
            kept.iter()
                .map(|p| feedback.get(&answered(p)).and_then(|f| f.1))
                .collect::<Vec<_>>(),
        )),
    ));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    Ok((batch, cut))
}

/// The table as one Parquet file.
pub fn to_parquet(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{prediction_id, FeedbackRecord, Signature};
    use arrow_array::{Array, Float64Array, StringArray};
    use serde_json::value::RawValue;

    fn prediction(i: u64, arm: &str, propensity: Option<f64>, returned: bool) -> LogRecord {
        LogRecord::Prediction(PredictionRecord {
            id: prediction_id(i),
            time_ms: i as i64,
            deployment: "d".into(),
            model: "m".into(),
            version: "1".into(),
            digest: "x".into(),
            arm: Some(arm.into()),
            latency_us: 1,
            trace_id: None,
            inputs: RawValue::from_string(format!(r#"{{"income":{i}.5,"city":"c{i}"}}"#)).unwrap(),
            outputs: RawValue::from_string(r#"{"label":1}"#.into()).unwrap(),
            subject: None,
            sealed: None,
            sealed_inputs: None,
            explanation: None,
            signature: Some(Signature {
                experiment: "e".into(),
                policy: "p".into(),
                policy_version: "0123456789abcdef".into(),
                returned,
                propensity,
                request_key: None,
                shadow_of: None,
            }),
        })
    }

    #[test]
    fn weights_are_inverse_propensities_and_excluded_arms_are_gone() {
        let mut records = vec![
            prediction(1, "m/1", Some(0.25), true),
            prediction(2, "m/2", Some(0.75), true),
            prediction(3, "m/1", Some(0.5), true),
            prediction(4, "m/2", None, false),
        ];
        let first = records[0].id();
        records.push(LogRecord::Feedback(FeedbackRecord {
            id: first,
            time_ms: 9,
            deployment: "d".into(),
            label: Some(RawValue::from_string("0".into()).unwrap()),
            reward: Some(serde_json::Number::from(1)),
            ranking: None,
            clicked: None,
        }));
        let (batch, cut) = training_table(&records, &TrainingFilter::default()).unwrap();
        assert_eq!((batch.num_rows(), cut.shadows), (3, 1));
        let weights = batch
            .column_by_name("ips_weight")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(weights.values().to_vec(), vec![4.0, 1.0 / 0.75, 2.0]);
        let reward = batch
            .column_by_name("reward")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((reward.value(0), reward.is_null(1)), (1.0, true));
        assert!(
            batch.column_by_name("income").is_some()
                && batch.column_by_name("prediction_label").is_some()
        );

        let filter = TrainingFilter {
            exclude_arms: vec!["m/2".into()],
            ..TrainingFilter::default()
        };
        let (batch, cut) = training_table(&records, &filter).unwrap();
        let arms = batch
            .column_by_name("arm")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert!(arms.iter().all(|a| a == Some("m/1")));
        assert_eq!((batch.num_rows(), cut.other_arms), (2, 1));

        let filter = TrainingFilter {
            arm: Some("m/2".into()),
            include_shadows: true,
            ips: true,
            ..TrainingFilter::default()
        };
        let (batch, cut) = training_table(&records, &filter).unwrap();
        assert_eq!(
            (batch.num_rows(), cut.no_propensity, cut.other_arms),
            (1, 1, 2)
        );
    }
}
