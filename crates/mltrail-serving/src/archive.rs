//! Sealed log segments become Parquet files in the artifact store
//! (`predictions/<deployment>/<yyyy-mm-dd>/<first-record-time>-<segment>.parquet`), readable by
//! Spark, Trino or DuckDB. Inputs, outputs, labels and rankings stay JSON text columns because
//! their shape is the model's, not the log's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value as Json};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where archived segments go: the artifact store, reached however the process can reach it.
pub trait ArchiveStore: Send + Sync {
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), String>>;
    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

pub type SharedArchive = Arc<dyn ArchiveStore>;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Other(String),
}

const TEXT: [&str; 8] = [
    "type",
    "id",
    "deployment",
    "model",
    "version",
    "digest",
    "arm",
    "policy",
];
const INTS: [&str; 2] = ["time_ms", "latency_us"];
const JSON_TEXT: [&str; 4] = ["inputs", "outputs", "label", "ranking"];
const FLOATS: [&str; 2] = ["reward", "propensity"];

pub fn schema() -> Schema {
    let mut fields = Vec::new();
    fields.extend(TEXT.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    fields.extend(INTS.iter().map(|n| Field::new(*n, DataType::Int64, true)));
    fields.extend(
        JSON_TEXT
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true)),
    );
    fields.extend(
        FLOATS
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, true)),
    );
    Schema::new(fields)
}

/// Log records (prediction and feedback) as one Parquet file.
pub fn to_parquet(records: &[Json]) -> Result<Vec<u8>, ArchiveError> {
    let schema = Arc::new(schema());
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in TEXT {
        let mut b = StringBuilder::new();
        for r in records {
            match r.get(name) {
                Some(Json::String(s)) => b.append_value(s),
                Some(Json::Null) | None => b.append_null(),
                Some(other) => b.append_value(other.to_string()),
            }
        }
        columns.push(Arc::new(b.finish()));
    }
    for name in INTS {
        let mut b = Int64Builder::new();
        for r in records {
            b.append_option(r.get(name).and_then(Json::as_i64));
        }
        columns.push(Arc::new(b.finish()));
    }
    for name in JSON_TEXT {
        let mut b = StringBuilder::new();
        for r in records {
            match r.get(name) {
                Some(Json::Null) | None => b.append_null(),
                Some(v) => b.append_value(v.to_string()),
            }
        }
        columns.push(Arc::new(b.finish()));
    }
    for name in FLOATS {
        let mut b = Float64Builder::new();
        for r in records {
            b.append_option(r.get(name).and_then(Json::as_f64));
        }
        columns.push(Arc::new(b.finish()));
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

/// Reads an archived file back into log records (the inverse of [`to_parquet`]).
pub fn from_parquet(bytes: Vec<u8>) -> Result<Vec<Json>, ArchiveError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let rows = batch.num_rows();
        let mut records: Vec<Map<String, Json>> = vec![Map::new(); rows];
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let col = batch.column(i);
            let name = field.name().as_str();
            if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                for (r, rec) in records.iter_mut().enumerate() {
                    if a.is_valid(r) {
                        let text = a.value(r);
                        let value = if JSON_TEXT.contains(&name) {
                            serde_json::from_str(text)
                                .unwrap_or_else(|_| Json::String(text.to_string()))
                        } else {
                            Json::String(text.to_string())
                        };
                        rec.insert(name.to_string(), value);
                    }
                }
            } else if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
                for (r, rec) in records.iter_mut().enumerate() {
                    if a.is_valid(r) {
                        rec.insert(name.to_string(), Json::from(a.value(r)));
                    }
                }
            } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
                for (r, rec) in records.iter_mut().enumerate() {
                    if a.is_valid(r) {
                        rec.insert(
                            name.to_string(),
                            serde_json::Number::from_f64(a.value(r))
                                .map_or(Json::Null, Json::Number),
                        );
                    }
                }
            }
        }
        out.extend(records.into_iter().map(Json::Object));
    }
    Ok(out)
}

/// One archived record as stored: text fields borrowed from the file's columns, the JSON fields
/// (`inputs`, `outputs`, `label`) still as JSON text, so a reader parses only what it keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordView<'a> {
    pub kind: Option<&'a str>,
    pub id: Option<&'a str>,
    pub time_ms: Option<i64>,
    pub model: Option<&'a str>,
    pub version: Option<&'a str>,
    pub inputs: Option<&'a str>,
    pub outputs: Option<&'a str>,
    pub label: Option<&'a str>,
}

/// Calls `visit` on every record of an archived file, without building JSON values: the
/// monitors read millions of rows through this.
pub fn visit_parquet(
    bytes: bytes::Bytes,
    mut visit: impl FnMut(RecordView<'_>),
) -> Result<(), ArchiveError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    for batch in reader {
        let batch = batch?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        };
        let (kind, id, model, version) = (text("type"), text("id"), text("model"), text("version"));
        let (inputs, outputs, label) = (text("inputs"), text("outputs"), text("label"));
        let time = batch
            .column_by_name("time_ms")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
        fn cell(a: &Option<StringArray>, r: usize) -> Option<&str> {
            a.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r))
        }
        for r in 0..batch.num_rows() {
            visit(RecordView {
                kind: cell(&kind, r),
                id: cell(&id, r),
                time_ms: time.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r)),
                model: cell(&model, r),
                version: cell(&version, r),
                inputs: cell(&inputs, r),
                outputs: cell(&outputs, r),
                label: cell(&label, r),
            });
        }
    }
    Ok(())
}

/// `yyyy-mm-dd` (UTC) of a millisecond timestamp.
pub fn utc_date(time_ms: u64) -> String {
    let days = (time_ms / 86_400_000) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-27T10:00:00Z` of a millisecond timestamp.
pub fn utc_timestamp(time_ms: i64) -> String {
    let ms = time_ms.max(0);
    let secs = (ms / 1000) % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        utc_date(ms as u64),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The millisecond timestamp inside a UUIDv7.
pub fn uuid_v7_time_ms(id: u128) -> u64 {
    (id >> 80) as u64
}

/// Finds an archived prediction and every archived feedback on it: the prediction lives in the
/// files of its own day (from the UUIDv7 timestamp); feedback may arrive on any later day.
pub async fn find_archived(
    store: &dyn ArchiveStore,
    deployment: &str,
    id: uuid::Uuid,
) -> Result<Option<(Json, Vec<Json>)>, String> {
    let day = utc_date(uuid_v7_time_ms(id.as_u128()));
    let root = format!("predictions/{deployment}");
    let mut files: Vec<String> = store
        .list(&root)
        .await?
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    files.sort();
    let file_day = |p: &str| {
        p.strip_prefix(&root)
            .and_then(|r| r.trim_start_matches('/').split('/').next())
            .unwrap_or("")
            .to_string()
    };
    let wanted = id.to_string();
    let mut prediction = None;
    let mut feedback = Vec::new();
    for file in files.iter().filter(|f| file_day(f) >= day) {
        let bytes = store.get(file).await?;
        let records = tokio::task::spawn_blocking(move || from_parquet(bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for r in records {
            if r.get("id").and_then(Json::as_str) != Some(wanted.as_str()) {
                continue;
            }
            match r.get("type").and_then(Json::as_str) {
                Some("prediction") => prediction = Some(r),
                Some("feedback") => feedback.push(r),
                _ => {}
            }
        }
    }
    Ok(prediction.map(|p| (p, feedback)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_parquet() {
        let records = vec![
            serde_json::json!({"type": "prediction", "id": "a", "time_ms": 5, "deployment": "d", "model": "m", "version": "1",
                               "digest": "x", "arm": null, "inputs": {"f0": 1.5}, "outputs": {"label": 1}, "latency_us": 7}),
            serde_json::json!({"type": "feedback", "id": "a", "time_ms": 9, "deployment": "d", "label": 1, "reward": 0.5}),
        ];
        let back = from_parquet(to_parquet(&records).unwrap()).unwrap();
        assert_eq!(back[0]["inputs"]["f0"], 1.5);
        assert_eq!(back[0]["latency_us"], 7);
        assert_eq!(back[1]["label"], 1);
        assert_eq!(back[1]["reward"], 0.5);
        assert!(back[1].get("model").is_none());
        let mut seen = Vec::new();
        visit_parquet(to_parquet(&records).unwrap().into(), |r| {
            seen.push((
                r.kind.map(str::to_string),
                r.time_ms,
                r.inputs.map(str::to_string),
                r.label.map(str::to_string),
            ));
        })
        .unwrap();
        assert_eq!(
            seen[0],
            (
                Some("prediction".into()),
                Some(5),
                Some("{\"f0\":1.5}".into()),
                None
            )
        );
        assert_eq!(seen[1].3.as_deref(), Some("1"));
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_745_151_565), "2026-11-27");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_timestamp(1_795_754_710_000), "2026-11-27T04:45:10Z");
    }
}
