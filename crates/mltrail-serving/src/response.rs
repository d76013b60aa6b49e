//! Turning model outputs into JSON: per row (for the native API, DataFrame answers and the
//! prediction log) and in the shape `mlflow models serve` answers tensor input with.

use serde_json::Value as Json;

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

fn write_number(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_element(out: &mut Vec<u8>, t: &TensorData, i: usize) {
    match t {
        TensorData::Float(v) => write_number(out, f64::from(v[i])),
        TensorData::Double(v) => write_number(out, v[i]),
        TensorData::Int64(v) => out.extend_from_slice(v[i].to_string().as_bytes()),
        TensorData::Int32(v) => out.extend_from_slice(v[i].to_string().as_bytes()),
        TensorData::String(v) => {
            let _ = serde_json::to_writer(&mut *out, &v[i]);
        }
        TensorData::Bool(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
    }
}

/// One row's outputs as JSON text (`{"output": value, …}`), written without building a tree of
/// values: this runs for every row served.
pub fn row_json(keys: &[Vec<u8>], outputs: &[Value], row: usize, rows: usize, out: &mut Vec<u8>) {
    out.push(b'{');
    for (k, (key, v)) in keys.iter().zip(outputs).enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        out.push(b':');
        match v {
            Value::Tensor(t) => {
                let per_row = t.data.len() / rows.max(1);
                if per_row == 1 {
                    write_element(out, &t.data, row);
                } else {
                    out.push(b'[');
                    for (j, i) in (row * per_row..(row + 1) * per_row).enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        write_element(out, &t.data, i);
                    }
                    out.push(b']');
                }
            }
            Value::Maps(m) => {
                let n = m.key_count();
                out.push(b'{');
                for j in 0..n {
                    if j > 0 {
                        out.push(b',');
                    }
                    match &m.keys {
                        MapKeys::Int64(keys) => {
                            out.push(b'"');
                            out.extend_from_slice(keys[j].to_string().as_bytes());
                            out.push(b'"');
                        }
                        MapKeys::String(keys) => {
                            let _ = serde_json::to_writer(&mut *out, &keys[j]);
                        }
                    }
                    out.push(b':');
                    write_number(out, f64::from(m.values[row * n + j]));
                }
                out.push(b'}');
            }
        }
    }
    out.push(b'}');
}

/// Output names escaped as JSON keys, once per model.
pub fn json_keys(names: &[String]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| serde_json::to_vec(n).unwrap_or_default())
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

/// The `/invocations` answer for tensor input (`instances`/`inputs`), as `mlflow models serve`
/// gives it for an ONNX model: a dict of output arrays. (DataFrame input answers one record per
/// row, written with [`row_json`].)
pub fn tensor_predictions(names: &[String], outputs: &[Value]) -> Json {
    let predictions = Json::Object(
        names
            .iter()
            .zip(outputs)
            .map(|(name, v)| {
                let value = match v {
                    Value::Tensor(t) => nested(t),
                    Value::Maps(m) => Json::Array((0..m.rows()).map(|r| map_row(m, r)).collect()),
                };
                (name.clone(), value)
            })
            .collect(),
    );
    serde_json::json!({ "predictions": predictions })
}

/// One row's outputs as a JSON object (output name → value): the object [`row_json`] writes,
/// built as values for code that reads predictions without parsing text (monitors scoring their
/// reference).
pub fn row_object(
    names: &[String],
    outputs: &[Value],
    row: usize,
    rows: usize,
) -> serde_json::Map<String, Json> {
    names
        .iter()
        .zip(outputs)
        .map(|(name, v)| {
            let value = match v {
                Value::Tensor(t) => {
                    let per_row = t.data.len() / rows.max(1);
                    if per_row == 1 {
                        element(&t.data, row)
                    } else {
                        Json::Array(
                            (row * per_row..(row + 1) * per_row)
                                .map(|i| element(&t.data, i))
                                .collect(),
                        )
                    }
                }
                Value::Maps(m) => map_row(m, row),
            };
            (name.clone(), value)
        })
        .collect()
}

/// `{"predictions": [row, …]}` from rows written by [`row_json`]: the `/invocations` answer
/// to DataFrame input.
pub fn predictions_of_rows(rows: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 20);
    out.extend_from_slice(b"{\"predictions\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row);
    }
    out.extend_from_slice(b"]}");
    out
}

/// The native answer: `{"deployment", "predictions": [{"prediction_id", "model", "version",
/// "digest", "outputs"}, …]}`, written without building values (it runs for every request).
pub fn native_predictions(
    deployment: &str,
    model: &str,
    version: &str,
    digest: &str,
    ids: &[uuid::Uuid],
    rows: &[Vec<u8>],
) -> Vec<u8> {
    let text = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let shared = format!(
        ",\"model\":{},\"version\":{},\"digest\":{},\"outputs\":",
        text(model),
        text(version),
        text(digest)
    );
    let mut out = Vec::with_capacity(
        rows.iter()
            .map(|r| r.len() + shared.len() + 64)
            .sum::<usize>()
            + 64,
    );
    out.extend_from_slice(
        format!("{{\"deployment\":{},\"predictions\":[", text(deployment)).as_bytes(),
    );
    for (i, (id, row)) in ids.iter().zip(rows).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"prediction_id\":");
        crate::record::push_quoted_id(&mut out, id);
        out.extend_from_slice(shared.as_bytes());
        out.extend_from_slice(row);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Where a routed row's answer came from.
pub struct RowOrigin<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub digest: &'a str,
    /// The arm as the policy names it.
    pub arm: &'a str,
    pub propensity: f64,
}

/// The native answer of a routed request: [`native_predictions`] with each row's own version,
/// `arm` and `propensity`.
pub fn native_routed_predictions<'a>(
    deployment: &str,
    ids: &[uuid::Uuid],
    rows: &[Vec<u8>],
    origin: impl Fn(usize) -> RowOrigin<'a>,
) -> Vec<u8> {
    let text = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() + 256).sum::<usize>() + 64);
    out.extend_from_slice(
        format!("{{\"deployment\":{},\"predictions\":[", text(deployment)).as_bytes(),
    );
    for (i, (id, row)) in ids.iter().zip(rows).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let o = origin(i);
        out.extend_from_slice(b"{\"prediction_id\":");
        crate::record::push_quoted_id(&mut out, id);
        out.extend_from_slice(
            format!(
                ",\"model\":{},\"version\":{},\"digest\":{},\"arm\":{},\"propensity\":",
                text(o.model),
                text(o.version),
                text(o.digest),
                text(o.arm)
            )
            .as_bytes(),
        );
        let _ = serde_json::to_writer(&mut out, &o.propensity);
        out.extend_from_slice(b",\"outputs\":");
        out.extend_from_slice(row);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Tensor, TensorData};

    #[test]
    fn row_objects_are_the_rows_written_as_text() {
        let outputs = vec![
            Value::Tensor(Tensor::new(vec![2], TensorData::Int64(vec![1, 0])).unwrap()),
            Value::Tensor(
                Tensor::new(vec![2, 2], TensorData::Float(vec![0.3, 0.7, f32::NAN, 0.1])).unwrap(),
            ),
        ];
        let names = vec!["label".to_string(), "probabilities".to_string()];
        let keys = json_keys(&names);
        for row in 0..2 {
            let mut text = Vec::new();
            row_json(&keys, &outputs, row, 2, &mut text);
            let parsed: serde_json::Map<String, Json> = serde_json::from_slice(&text).unwrap();
            assert_eq!(row_object(&names, &outputs, row, 2), parsed);
        }
    }
}
