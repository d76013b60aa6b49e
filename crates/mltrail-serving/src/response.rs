//! Turning model outputs into JSON: per row (for the native API and the prediction log) and in
//! the shape `mlflow models serve` answers `/invocations` with.

use serde_json::{Map, Value as Json};

use crate::request::RequestKind;
use crate::runtime::{MapKeys, MapSequence, Tensor, TensorData, Value};

fn number(v: f64) -> Json {
    serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
}

fn element(t: &TensorData, i: usize) -> Json {
    match t {
        TensorData::Float(v) => number(f64::from(v[i])),
        TensorData::Double(v) => number(v[i]),
        TensorData::Int64(v) => Json::from(v[i]),
        TensorData::Int32(v) => Json::from(v[i]),
        TensorData::String(v) => Json::from(v[i].clone()),
        TensorData::Bool(v) => Json::from(v[i]),
    }
}

fn map_row(m: &MapSequence, row: usize) -> Json {
    let k = m.key_count();
    let keys: Vec<String> = match &m.keys {
        MapKeys::Int64(v) => v.iter().map(|x| x.to_string()).collect(),
        MapKeys::String(v) => v.clone(),
    };
    Json::Object(
        keys.into_iter()
            .enumerate()
            .map(|(j, key)| (key, number(f64::from(m.values[row * k + j]))))
            .collect(),
    )
}

fn tensor_row(t: &Tensor, row: usize, rows: usize) -> Json {
    let per_row = t.data.len() / rows.max(1);
    if per_row == 1 {
        return element(&t.data, row);
    }
    Json::Array(
        (row * per_row..(row + 1) * per_row)
            .map(|i| element(&t.data, i))
            .collect(),
    )
}

/// One JSON object per row: output name → that row's value.
pub fn per_row(names: &[String], outputs: &[Value], rows: usize) -> Vec<Json> {
    (0..rows)
        .map(|r| {
            Json::Object(
                names
                    .iter()
                    .zip(outputs)
                    .map(|(name, v)| {
                        let value = match v {
                            Value::Tensor(t) => tensor_row(t, r, rows),
                            Value::Maps(m) => map_row(m, r),
                        };
                        (name.clone(), value)
                    })
                    .collect::<Map<_, _>>(),
            )
        })
        .collect()
}

fn nested(t: &Tensor) -> Json {
    fn build(t: &TensorData, shape: &[usize], offset: usize) -> Json {
        match shape {
            [] => element(t, offset),
            [n, rest @ ..] => {
                let stride: usize = rest.iter().product();
                Json::Array(
                    (0..*n)
                        .map(|i| build(t, rest, offset + i * stride))
                        .collect(),
                )
            }
        }
    }
    build(&t.data, &t.shape, 0)
}

/// The `/invocations` answer as `mlflow models serve` gives it for an ONNX model: a list of
/// records for DataFrame input, a dict of output arrays for tensor input.
pub fn invocations(kind: RequestKind, names: &[String], outputs: &[Value], rows: usize) -> Json {
    let predictions = match kind {
        RequestKind::DataFrame => Json::Array(per_row(names, outputs, rows)),
        RequestKind::Tensor => Json::Object(
            names
                .iter()
                .zip(outputs)
                .map(|(name, v)| {
                    let value = match v {
                        Value::Tensor(t) => nested(t),
                        Value::Maps(m) => {
                            Json::Array((0..m.rows()).map(|r| map_row(m, r)).collect())
                        }
                    };
                    (name.clone(), value)
                })
                .collect(),
        ),
    };
    serde_json::json!({ "predictions": predictions })
}
