//! Typed parsing of metric-logging bodies (`log-metric`, metric-only `log-batch`), the hottest
//! requests. The general path ([`Req`](crate::req::Req)) builds a `serde_json::Value` tree: a
//! map per metric and a heap string per field, about a third of a 1,000-value batch's cost.
//! Here the body goes straight into [`NewMetric`]s.
//!
//! The typed form accepts exactly what the general path accepts on its happy path (int64 as
//! number or string, doubles as number or "NaN"/"Infinity"). Anything else — a query string,
//! params or tags, a missing or mistyped field — returns `None`, and the caller takes the
//! general path, whose errors name the field.

use crate::req::{f64_from_str, i64_from_str, whole_f64};
use mltrail_store::metrics::NewMetric;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A metric-logging request: the run and its values.
#[derive(Debug)]
pub(crate) struct MetricBody {
    pub run_id: String,
    pub metrics: Vec<NewMetric>,
}

#[derive(Deserialize)]
struct Metric<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    value: Double,
    timestamp: Int64,
    #[serde(default)]
    step: Option<Int64>,
    #[serde(default, borrow)]
    model_id: Option<Cow<'a, str>>,
}

impl Metric<'_> {
    fn into_new(self) -> NewMetric {
        NewMetric {
            key: self.key.into_owned(),
            value: self.value.0,
            timestamp: self.timestamp.0,
            step: self.step.map_or(0, |s| s.0),
            model_id: self.model_id.map(Cow::into_owned),
        }
    }
}

/// `run_id`, or `run_uuid` when `run_id` is absent or empty (older clients).
fn run_of(run_id: Option<Cow<'_, str>>, run_uuid: Option<Cow<'_, str>>) -> Option<String> {
    run_id
        .filter(|id| !id.is_empty())
        .or(run_uuid)
        .map(Cow::into_owned)
}

// No `#[serde(flatten)]` below: it buffers the whole map into an intermediate tree, which is
// the cost this module exists to avoid.
#[derive(Deserialize)]
struct LogBatch<'a> {
    #[serde(default, borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    run_uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    metrics: Vec<Metric<'a>>,
    #[serde(default)]
    params: Vec<IgnoredAny>,
    #[serde(default)]
    tags: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct LogMetric<'a> {
    #[serde(default, borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    run_uuid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    value: Double,
    timestamp: Int64,
    #[serde(default)]
    step: Option<Int64>,
    #[serde(default, borrow)]
    model_id: Option<Cow<'a, str>>,
}

/// A `log-batch` body that logs metrics only, or `None` for the general path.
pub(crate) fn log_batch(query: Option<&str>, body: &[u8]) -> Option<MetricBody> {
    if query.is_some_and(|q| !q.is_empty()) {
        return None;
    }
    let batch: LogBatch = serde_json::from_slice(body).ok()?;
    if !batch.params.is_empty() || !batch.tags.is_empty() {
        return None;
    }
    Some(MetricBody {
        run_id: run_of(batch.run_id, batch.run_uuid)?,
        metrics: batch.metrics.into_iter().map(Metric::into_new).collect(),
    })
}

/// A `log-metric` body, or `None` for the general path.
pub(crate) fn log_metric(query: Option<&str>, body: &[u8]) -> Option<MetricBody> {
    if query.is_some_and(|q| !q.is_empty()) {
        return None;
    }
    let r: LogMetric = serde_json::from_slice(body).ok()?;
    let metric = Metric {
        key: r.key,
        value: r.value,
        timestamp: r.timestamp,
        step: r.step,
        model_id: r.model_id,
    };
    Some(MetricBody {
        run_id: run_of(r.run_id, r.run_uuid)?,
        metrics: vec![metric.into_new()],
    })
}

/// An int64 as protobuf JSON sends it: a number, or a string of digits.
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int64, E> {
                Ok(Int64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int64, E> {
                i64::try_from(v)
                    .map(Int64)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int64, E> {
                whole_f64(v)
                    .map(Int64)
                    .ok_or_else(|| E::custom("not an integer"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int64, E> {
                i64_from_str(v)
                    .map(Int64)
                    .ok_or_else(|| E::custom("not an integer"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A double as protobuf JSON sends it: a number, or "NaN" / "Infinity" / "-Infinity".
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The value's text, parsed by the standard library, which is exact (Eisel-Lemire, with
        // a slow path for the rare hard cases) and, measured on a 1,000-value batch, cheaper than
        // serde_json's exact `float_roundtrip` parser. The hottest bodies take this path.
        let raw = <&serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        let value = if text.starts_with('"') {
            let s: Cow<str> = serde_json::from_str(text).map_err(de::Error::custom)?;
            f64_from_str(&s)
        } else {
            text.parse::<f64>().ok()
        };
        value
            .map(Double)
            .ok_or_else(|| de::Error::custom("not a number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::req::Req;

    /// The general path's reading of the same body, for comparison.
    fn general(body: &str, list: bool) -> Result<(String, Vec<NewMetric>), String> {
        let req = Req::from_parts("a".into(), None, body.as_bytes()).map_err(|e| e.message)?;
        let run_id = req.run_id().map_err(|e| e.message)?;
        let metrics = if list {
            crate::tracking::metrics_from(req.value("metrics")).map_err(|e| e.message)?
        } else {
            vec![crate::tracking::metric_from(req.fields(), "metric").map_err(|e| e.message)?]
        };
        Ok((run_id, metrics))
    }

    fn same(a: &[NewMetric], b: &[NewMetric]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.key == y.key
                    && x.value.to_bits() == y.value.to_bits()
                    && x.timestamp == y.timestamp
                    && x.step == y.step
                    && x.model_id == y.model_id
            })
    }

    #[test]
    fn typed_and_general_paths_read_batches_alike() {
        let bodies = [
            r#"{"run_id":"r1","metrics":[{"key":"loss","value":0.5,"timestamp":1,"step":2}]}"#,
            r#"{"run_id":"","run_uuid":"r2","metrics":[{"key":"a\"b","value":"NaN","timestamp":"17","step":"3"},{"key":"x","value":"-Infinity","timestamp":5.0}]}"#,
            r#"{"run_id":"r3","metrics":[{"key":"m","value":3,"timestamp":1,"model_id":"m-1"},{"key":"m","value":1e308,"timestamp":1,"step":null,"model_id":null}],"params":[],"tags":[]}"#,
            r#"{"run_id":"r4"}"#,
        ];
        for body in bodies {
            let fast = log_batch(None, body.as_bytes()).expect(body);
            let (run_id, metrics) = general(body, true).expect(body);
            assert_eq!(fast.run_id, run_id, "{body}");
            assert!(same(&fast.metrics, &metrics), "{body}");
        }
    }

    #[test]
    fn typed_and_general_paths_read_single_metrics_alike() {
        let bodies = [
            r#"{"run_id":"r1","key":"loss","value":0.25,"timestamp":1700000000000,"step":7}"#,
            r#"{"run_uuid":"r2","key":"k","value":"Infinity","timestamp":"9"}"#,
        ];
        for body in bodies {
            let fast = log_metric(None, body.as_bytes()).expect(body);
            let (run_id, metrics) = general(body, false).expect(body);
            assert_eq!(fast.run_id, run_id, "{body}");
            assert!(same(&fast.metrics, &metrics), "{body}");
        }
    }

    /// Whatever the typed form does not take goes to the general path, which either accepts it
    /// too (params, a query string) or answers with an error naming the field.
    #[test]
    fn anything_else_takes_the_general_path() {
        let batches = [
            r#"{"run_id":"r","metrics":[{"key":"m","timestamp":1}]}"#,
            r#"{"run_id":"r","metrics":[{"key":"m","value":"high","timestamp":1}]}"#,
            r#"{"run_id":"r","metrics":[{"key":"m","value":1,"timestamp":1.5}]}"#,
            r#"{"run_id":"r","metrics":[{"key":null,"value":1,"timestamp":1}]}"#,
            r#"{"run_id":"r","metrics":{"key":"m"}}"#,
            r#"{"run_id":"r","metrics":[],"params":[{"key":"p","value":"v"}]}"#,
            r#"{"metrics":[]}"#,
            r#"{"run_id":"r","metrics":[{"key":"m","value":1,"timestamp":1}"#,
        ];
        for body in batches {
            assert!(log_batch(None, body.as_bytes()).is_none(), "{body}");
        }
        let ok = r#"{"run_id":"r","metrics":[]}"#;
        assert!(log_batch(Some("run_id=r"), ok.as_bytes()).is_none());
        assert!(log_metric(None, br#"{"run_id":"r","key":"m","value":1}"#).is_none());
    }
}
