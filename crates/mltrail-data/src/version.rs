//! What a dataset version records of a file, made the same way wherever a file comes from
//! (`mltrail data add`, `PUT /api/v1/catalogs/{name}`): its rows read and profiled, its schema
//! inferred, its BLAKE3 digest and where it is stored; and JSON records written as a Parquet
//! file whose column types are the records' own (an id `"007"` stays text).

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{json, Map, Value};

use crate::profile::{profile, ColumnProfile, Summary};
use crate::schema::DatasetSchema;
use crate::table::{self, DataError, Table};

/// A file read, profiled and digested, ready to be stored as a version of a dataset.
pub struct Prepared {
    pub table: Table,
    /// BLAKE3 of the bytes, hex.
    pub digest: String,
    /// Where the file is stored: `datasets/<name>/<16 hex of the digest>/<file name>`.
    pub source: String,
    pub schema: DatasetSchema,
    /// `{"rows", "columns": [...]}`, as dataset versions keep it.
    pub profile: Value,
}

/// A dataset name: non-empty, without `/`, `@` or `\`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '@', '\\']) {
        return Err(format!(
            "`{name}` must be non-empty without '/', '@' or '\\'"
        ));
    }
    Ok(())
}

/// Reads and profiles `bytes` (a `.csv` or `.parquet` named `file_name`) as a version of
/// dataset `name`.
pub fn prepare(name: &str, file_name: &str, bytes: &[u8]) -> Result<Prepared, DataError> {
    let t = table::read_bytes(file_name, bytes)?;
    let profiles = profile(&t);
    let schema = DatasetSchema::infer(&t, &profiles);
    let digest = blake3::hash(bytes).to_hex().to_string();
    let source = format!("datasets/{name}/{}/{file_name}", &digest[..16]);
    let profile = profile_document(t.rows, &profiles);
    Ok(Prepared {
        table: t,
        digest,
        source,
        schema,
        profile,
    })
}

/// A table's profile as dataset versions keep it.
pub fn profile_document(rows: usize, profiles: &[ColumnProfile]) -> Value {
    json!({"rows": rows, "columns": profiles.iter().map(profile_json).collect::<Vec<_>>()})
}

/// One column's profile as JSON.
pub fn profile_json(p: &ColumnProfile) -> Value {
    let summary = match &p.summary {
        Some(Summary::Numeric(s)) => json!({
            "kind": "numeric", "min": s.min, "max": s.max, "mean": s.mean, "std": s.std,
            "quantiles": s.quantiles.iter().map(|(q, v)| json!({"q": q, "value": v})).collect::<Vec<_>>(),
            "histogram": s.histogram.iter().map(|(edge, n)| json!({"from": edge, "count": n})).collect::<Vec<_>>(),
        }),
        Some(Summary::Categorical { top }) => json!({
            "kind": "categorical",
            "top": top.iter().map(|(v, n)| json!({"value": v, "count": n})).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    };
    json!({"column": p.name, "count": p.count, "missing": p.missing, "distinct": p.distinct, "summary": summary})
}

/// Why JSON records cannot be a table.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordsError {
    #[error("there are no records")]
    Empty,
    #[error("record {record} is not an object")]
    NotObject { record: usize },
    #[error("record {record}: `{column}` is {value}; a cell is a string, a number or a boolean")]
    Cell {
        record: usize,
        column: String,
        value: String,
    },
    #[error("record {record}: `{column}` is {got}, where earlier records have {expected}")]
    Mixed {
        record: usize,
        column: String,
        got: &'static str,
        expected: &'static str,
    },
    #[error("cannot write the records as Parquet: {0}")]
    Write(String),
}

impl RecordsError {
    /// The column at fault, when one is.
    pub fn column(&self) -> Option<&str> {
        match self {
            RecordsError::Cell { column, .. } | RecordsError::Mixed { column, .. } => Some(column),
            _ => None,
        }
    }
}

/// The largest integer a double holds exactly.
const EXACT_INTEGER: u64 = 1 << 53;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Integer,
    Float,
    Boolean,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::Boolean => "a boolean",
        }
    }
}

/// The file metadata key under which a file made by [`parquet_from_records`] keeps the digest of
/// its items alone (so that the same items pushed again are recognized whatever else the
/// metadata says).
pub const ITEMS_DIGEST_KEY: &str = "mltrail.items_digest";

/// The digest of a file's items: the one its metadata records ([`ITEMS_DIGEST_KEY`]), else the
/// digest of its bytes.
pub fn items_digest(bytes: &[u8]) -> String {
    let recorded =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes))
            .ok()
            .and_then(|reader| {
                use parquet::file::reader::FileReader;
                reader
                    .metadata()
                    .file_metadata()
                    .key_value_metadata()?
                    .iter()
                    .find(|kv| kv.key == ITEMS_DIGEST_KEY)?
                    .value
                    .clone()
            });
    recorded.unwrap_or_else(|| blake3::hash(bytes).to_hex().to_string())
}

/// `records` (objects of strings, numbers, booleans; a missing key or `null` is a missing cell)
/// as a Parquet file, a column per key in the order keys first appear, typed by their values: a
/// column of integers is Int64, of numbers Float64 (integers among them widened), of strings
/// Utf8, of booleans Boolean; other mixtures are refused, and so are integers beyond 2^53 (the
/// tables that read the file hold numbers as doubles: send such ids as strings). `metadata` goes
/// into the file's key-value metadata.
pub fn parquet_from_records(
    records: &[Value],
    metadata: &[(&str, String)],
) -> Result<Vec<u8>, RecordsError> {
    if records.is_empty() {
        return Err(RecordsError::Empty);
    }
    let objects: Vec<&Map<String, Value>> = records
        .iter()
        .enumerate()
        .map(|(record, r)| r.as_object().ok_or(RecordsError::NotObject { record }))
        .collect::<Result<_, _>>()?;
    let mut columns: Vec<(String, Option<Kind>)> = Vec::new();
    for (record, object) in objects.iter().enumerate() {
        for (key, value) in *object {
            let kind = match value {
                Value::Null => None,
                Value::String(_) => Some(Kind::Text),
                Value::Bool(_) => Some(Kind::Boolean),
                Value::Number(n)
                    if n.as_i64()
                        .is_some_and(|i| i.unsigned_abs() <= EXACT_INTEGER) =>
                {
                    Some(Kind::Integer)
                }
                Value::Number(n) if n.is_i64() || n.is_u64() => {
                    return Err(RecordsError::Cell {
                        record,
                        column: key.clone(),
                        value: format!("{n}, beyond 2^53 (send it as a string)"),
                    })
                }
                Value::Number(_) => Some(Kind::Float),
                other => {
                    return Err(RecordsError::Cell {
                        record,
                        column: key.clone(),
                        value: other.to_string(),
                    })
                }
            };
            let at = match columns.iter().position(|(name, _)| name == key) {
                Some(at) => at,
                None => {
                    columns.push((key.clone(), None));
                    columns.len() - 1
                }
            };
            let merged = match (columns[at].1, kind) {
                (held, None) => held,
                (None, new) => new,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(Kind::Integer | Kind::Float), Some(Kind::Integer | Kind::Float)) => {
                    Some(Kind::Float)
                }
                (Some(expected), Some(got)) => {
                    return Err(RecordsError::Mixed {
                        record,
                        column: key.clone(),
                        got: got.name(),
                        expected: expected.name(),
                    })
                }
            };
            columns[at].1 = merged;
        }
    }
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (name, kind) in &columns {
        let cells = objects.iter().map(|o| o.get(name).filter(|v| !v.is_null()));
        let (data_type, array): (DataType, ArrayRef) = match kind.unwrap_or(Kind::Text) {
            Kind::Text => (
                DataType::Utf8,
                Arc::new(
                    cells
                        .map(|v| v.and_then(Value::as_str))
                        .collect::<StringArray>(),
                ),
            ),
            Kind::Integer => (
                DataType::Int64,
                Arc::new(
                    cells
                        .map(|v| v.and_then(Value::as_i64))
                        .collect::<Int64Array>(),
                ),
            ),
            Kind::Float => (
                DataType::Float64,
                Arc::new(
                    cells
                        .map(|v| v.and_then(Value::as_f64))
                        .collect::<Float64Array>(),
                ),
            ),
            Kind::Boolean => (
                DataType::Boolean,
                Arc::new(
                    cells
                        .map(|v| v.and_then(Value::as_bool))
                        .collect::<BooleanArray>(),
                ),
            ),
        };
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| RecordsError::Write(e.to_string()))?;
    let mut out = Vec::new();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.to_string(), v.clone()))
                .collect(),
        ))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(properties))
            .map_err(|e| RecordsError::Write(e.to_string()))?;
    writer
        .write(&batch)
        .map_err(|e| RecordsError::Write(e.to_string()))?;
    writer
        .close()
        .map_err(|e| RecordsError::Write(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Values;

    #[test]
    fn records_keep_their_types_through_parquet() {
        let records = vec![
            json!({"item_id": "007", "available": true, "price": 3}),
            json!({"item_id": "008", "available": false, "price": 2.5, "note": null}),
            json!({"item_id": "009"}),
        ];
        let bytes = parquet_from_records(&records, &[]).unwrap();
        let p = prepare("catalog", "catalog.parquet", &bytes).unwrap();
        assert_eq!(
            items_digest(&bytes),
            p.digest,
            "no recorded digest: the file's own"
        );
        let marked = parquet_from_records(&records, &[(ITEMS_DIGEST_KEY, "abc".into())]).unwrap();
        assert_eq!(items_digest(&marked), "abc");
        assert_eq!(p.table.rows, 3);
        assert_eq!(
            p.table.column("item_id").unwrap().values.categories(),
            [Some("007".into()), Some("008".into()), Some("009".into())],
            "ids stay text"
        );
        match &p.table.column("price").unwrap().values {
            Values::Numeric { values, .. } => {
                assert_eq!(values[..2], [3.0, 2.5]);
                assert!(values[2].is_nan());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            p.source.starts_with("datasets/catalog/") && p.source.ends_with("/catalog.parquet")
        );
        assert_eq!(p.profile["rows"], 3);
    }

    #[test]
    fn records_that_are_no_table_are_refused_naming_the_column() {
        assert_eq!(parquet_from_records(&[], &[]), Err(RecordsError::Empty));
        assert_eq!(
            parquet_from_records(&[json!([1])], &[]),
            Err(RecordsError::NotObject { record: 0 })
        );
        let e = parquet_from_records(&[json!({"a": 1}), json!({"a": "x"})], &[]).unwrap_err();
        assert_eq!(e.column(), Some("a"));
        let e = parquet_from_records(&[json!({"a": {"b": 1}})], &[]).unwrap_err();
        assert_eq!(e.column(), Some("a"));
        let e = parquet_from_records(&[json!({"id": 9007199254740993u64})], &[]).unwrap_err();
        assert!(e.to_string().contains("beyond 2^53"), "{e}");
        assert!(check_name("ok-name").is_ok() && check_name("a/b").is_err());
    }
}
