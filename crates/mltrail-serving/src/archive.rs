//! Sealed log segments become Parquet files in the artifact store
//! (`predictions/<deployment>/<yyyy-mm-dd>/<replica>-<segment>.parquet`), readable by Spark,
//! Trino or DuckDB. The columns are [`crate::record::COLUMNS`], one per field of the log records;
//! inputs, outputs, labels and rankings stay JSON text because their shape is the model's (or the
//! caller's), not the log's.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::value::RawValue;

use crate::deployment::{BoxError, BoxFuture};
use crate::record::{
    uuid_v7_time_ms, Cell, ColumnType, ExplanationRecord, FeedbackRecord, LogRecord,
    PredictionRecord, RecordKind, COLUMNS,
};
use crate::segment_tree::ArchivedSegment;

/// The archive as readers see it: the artifact store, reached however the process can reach
/// it (through the tracking server's proxy from `mltrail serve`, directly inside the server).
pub trait ArchiveReader: Send + Sync {
    /// Every file under `dir`, recursively, named from the store's root.
    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<String>, StorageError>>;
    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>>;
    /// The bytes `range` of a file (for a footer and the row groups a time range needs). The
    /// default fetches the whole file; stores that read ranges override it.
    fn get_range<'a>(
        &'a self,
        path: &'a str,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'a, Result<bytes::Bytes, StorageError>> {
        Box::pin(async move {
            let whole = bytes::Bytes::from(self.get(path).await?);
            let (start, end) = (
                usize::try_from(range.start).unwrap_or(usize::MAX),
                usize::try_from(range.end).unwrap_or(usize::MAX),
            );
            if start > end || end > whole.len() {
                return Err(StorageError::new(
                    "read",
                    path,
                    format!("bytes {start}..{end} of a {} byte file", whole.len()),
                ));
            }
            Ok(whole.slice(start..end))
        })
    }
}

/// Where archived segments go: the files, and the audit trail that records each one
/// ([`crate::segment_tree`]).
pub trait ArchiveStore: ArchiveReader {
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Records an uploaded file's summary in the audit trail. Recording the same summary again
    /// (a retry after a lost answer) is not an error.
    fn record_segment<'a>(
        &'a self,
        segment: &'a ArchivedSegment,
    ) -> BoxFuture<'a, Result<Recorded, StorageError>>;
}

/// What the trail answered to an archived segment's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, or the same summary was recorded before.
    Yes,
    /// The trail holds another summary for that file, and never changes it (what it says).
    Conflict(String),
}

/// What an archive file's footer says of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footer {
    Rows(u64),
    /// The footer is longer than the bytes given: read the file's last this many.
    NeedLast(u64),
}

/// The number of rows an archive file of `size` bytes holds, from its last bytes (`tail`)
/// alone: its footer.
pub fn footer_rows(tail: &bytes::Bytes, size: u64) -> Result<Footer, ArchiveError> {
    let mut reader = parquet::file::metadata::ParquetMetaDataReader::new();
    match reader.try_parse_sized(tail, size) {
        Ok(()) => {
            let rows = reader.finish()?.file_metadata().num_rows();
            Ok(Footer::Rows(u64::try_from(rows).unwrap_or(0)))
        }
        Err(parquet::errors::ParquetError::NeedMoreData(needed)) => {
            Ok(Footer::NeedLast(needed as u64))
        }
        Err(e) => Err(e.into()),
    }
}

pub type SharedArchive = Arc<dyn ArchiveStore>;

/// The archive read straight from the artifact store: the tracking server's own view (a
/// subject's export), where `mltrail serve` goes through the server's proxy.
pub struct ArtifactArchive(pub mltrail_artifacts::ArtifactStore);

impl ArtifactArchive {
    fn path(path: &str) -> Result<mltrail_core::ArtifactPath, StorageError> {
        mltrail_core::ArtifactPath::parse(path).map_err(|e| StorageError::new("name", path, e))
    }
}

impl ArchiveReader for ArtifactArchive {
    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            let mut files = Vec::new();
            let mut folders = vec![dir.trim_end_matches('/').to_string()];
            while let Some(folder) = folders.pop() {
                let entries = self
                    .0
                    .list(&Self::path(&folder)?)
                    .await
                    .map_err(|e| StorageError::new("list", &folder, e))?;
                for entry in entries {
                    let full = format!("{folder}/{}", entry.path);
                    if entry.is_dir {
                        folders.push(full);
                    } else {
                        files.push(full);
                    }
                }
            }
            Ok(files)
        })
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
        Box::pin(async move {
            self.0
                .get(&Self::path(path)?)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| StorageError::new("get", path, e))
        })
    }

    fn get_range<'a>(
        &'a self,
        path: &'a str,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'a, Result<bytes::Bytes, StorageError>> {
        Box::pin(async move {
            self.0
                .get_range(&Self::path(path)?, range)
                .await
                .map(|(bytes, _)| bytes)
                .map_err(|e| StorageError::new("get", path, e))
        })
    }
}

/// An archive store call that failed: which call, on which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {path}: {source}")]
pub struct StorageError {
    pub operation: &'static str,
    pub path: String,
    #[source]
    pub source: BoxError,
}

impl StorageError {
    pub fn new(operation: &'static str, path: &str, source: impl Into<BoxError>) -> Self {
        StorageError {
            operation,
            path: path.to_string(),
            source: source.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("reading an archived file was interrupted: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
    /// A record with no RFC 8785 form (a number JSON cannot hold), so no Merkle leaf.
    #[error("a record has no canonical form: {0}")]
    Canonical(#[from] serde_json::Error),
    /// Looking for a record, files that could not be read (it may be in one of them).
    #[error("not found in the files that could be read; unreadable: {}", .0.join(", "))]
    Unreadable(Vec<String>),
}

fn data_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Text | ColumnType::JsonText => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// The archive's Arrow schema, from [`COLUMNS`].
pub fn schema() -> Schema {
    Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(c.name, data_type(c.kind), true))
            .collect::<Vec<_>>(),
    )
}

/// Log records as one Arrow batch with the archive's columns.
pub fn to_batch(records: &[LogRecord]) -> Result<RecordBatch, ArchiveError> {
    let schema = Arc::new(schema());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for column in COLUMNS {
        let cells = records.iter().map(|r| r.cell(column.name));
        let array: ArrayRef = match column.kind {
            ColumnType::Text | ColumnType::JsonText => {
                let mut b = StringBuilder::new();
                for cell in cells {
                    match cell {
                        Cell::Text(s) | Cell::Json(s) => b.append_value(s),
                        Cell::Id(id) => b.append_value(
                            id.hyphenated()
                                .encode_lower(&mut uuid::Uuid::encode_buffer()),
                        ),
                        Cell::Int(i) => b.append_value(i.to_string()),
                        Cell::Float(f) => b.append_value(f.to_string()),
                        Cell::Bool(v) => b.append_value(v.to_string()),
                        Cell::Names(names) => {
                            b.append_value(serde_json::to_string(names).unwrap_or_default())
                        }
                        Cell::Null => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnType::Int => {
                let mut b = Int64Builder::new();
                for cell in cells {
                    b.append_option(match cell {
                        Cell::Int(i) => Some(i),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ColumnType::Float => {
                let mut b = Float64Builder::new();
                for cell in cells {
                    b.append_option(match cell {
                        Cell::Float(f) => Some(f),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            ColumnType::Bool => {
                let mut b = BooleanBuilder::new();
                for cell in cells {
                    b.append_option(match cell {
                        Cell::Bool(v) => Some(v),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Log records as one Parquet file.
pub fn to_parquet(records: &[LogRecord]) -> Result<Vec<u8>, ArchiveError> {
    let mut file = ParquetFile::new()?;
    file.write(records)?;
    file.finish()
}

/// Records per row group when a segment is archived. Converting then holds one group's records
/// and columns at a time rather than a whole segment's (a 64 MiB segment is about 200,000
/// records, and converting it whole took ~300 MiB in the soak: docs/reliability.md).
pub const ROWS_PER_GROUP: usize = 16_384;

/// One Parquet file written a row group at a time.
pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetFile {
    pub fn new() -> Result<Self, ArchiveError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), Arc::new(schema()), Some(props))?,
        })
    }

    /// Writes `records` as one row group (nothing for none).
    pub fn write(&mut self, records: &[LogRecord]) -> Result<(), ArchiveError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer.write(&to_batch(records)?)?;
        self.writer.flush()?;
        Ok(())
    }

    /// The file's bytes.
    pub fn finish(self) -> Result<Vec<u8>, ArchiveError> {
        Ok(self.writer.into_inner()?)
    }
}

/// Reads an archived file back into log records (the inverse of [`to_parquet`]). A row that is no
/// log record (an unknown type, no valid id) is left out; a JSON cell that is not JSON comes back
/// as a JSON string of its text, so one bad cell never hides the rest of a file.
pub fn from_parquet(bytes: Vec<u8>) -> Result<Vec<LogRecord>, ArchiveError> {
    let mut out = Vec::new();
    visit_parquet(bytes::Bytes::from(bytes), |view| {
        out.extend(view.to_record());
    })?;
    Ok(out)
}

/// One archived record as stored: text fields borrowed from the file's columns, the JSON fields
/// still as JSON text, so a reader parses only what it keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordView<'a> {
    pub kind: Option<&'a str>,
    pub id: Option<&'a str>,
    pub time_ms: Option<i64>,
    pub deployment: Option<&'a str>,
    pub model: Option<&'a str>,
    pub version: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub arm: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub latency_us: Option<i64>,
    pub inputs: Option<&'a str>,
    pub outputs: Option<&'a str>,
    pub label: Option<&'a str>,
    pub ranking: Option<&'a str>,
    pub clicked: Option<&'a str>,
    pub reward: Option<f64>,
    pub propensity: Option<f64>,
    /// The subject's keyed hash, on a sealed prediction.
    pub subject: Option<&'a str>,
    /// The sealed columns as a JSON list, on a sealed prediction.
    pub sealed: Option<&'a str>,
    /// Their values, sealed, on a sealed prediction.
    pub sealed_inputs: Option<&'a str>,
    /// An explanation (JSON), on a prediction explained while served or an explanation record.
    pub explanation: Option<&'a str>,
    /// The log signature of a routed prediction (`crate::record::Signature`).
    pub experiment: Option<&'a str>,
    pub policy_version: Option<&'a str>,
    pub returned: Option<bool>,
    pub request_key: Option<&'a str>,
    pub shadow_of: Option<&'a str>,
    /// The request's W3C trace id.
    pub trace_id: Option<&'a str>,
}

impl RecordView<'_> {
    /// The sealed columns' names; `None` when the record seals nothing (or the cell is not a
    /// list of names).
    pub fn sealed_columns(&self) -> Option<Vec<String>> {
        self.sealed.and_then(|s| serde_json::from_str(s).ok())
    }

    /// The typed record; `None` for a row that is no log record (an unknown type, as a newer
    /// writer may add, or no valid id).
    pub fn to_record(&self) -> Option<LogRecord> {
        let kind = self.kind.and_then(RecordKind::parse)?;
        let id = self.id.and_then(|i| uuid::Uuid::parse_str(i).ok())?;
        let text = |v: Option<&str>| v.unwrap_or_default().to_string();
        let time_ms = self.time_ms.unwrap_or(0);
        Some(match kind {
            RecordKind::Prediction => LogRecord::Prediction(PredictionRecord {
                id,
                time_ms,
                deployment: text(self.deployment),
                model: text(self.model),
                version: text(self.version),
                digest: text(self.digest),
                arm: self.arm.map(str::to_string),
                latency_us: self.latency_us.unwrap_or(0),
                trace_id: self.trace_id.map(str::to_string),
                inputs: self.inputs.map(json_cell).unwrap_or_else(empty_object),
                outputs: self.outputs.map(json_cell).unwrap_or_else(empty_object),
                subject: self.subject.map(str::to_string),
                sealed: self.sealed_columns(),
                sealed_inputs: self.sealed_inputs.map(str::to_string),
                explanation: self.explanation.map(json_cell),
                signature: self.policy.map(|policy| crate::record::Signature {
                    experiment: text(self.experiment),
                    policy: policy.to_string(),
                    policy_version: text(self.policy_version),
                    returned: self.returned.unwrap_or(true),
                    propensity: self.propensity,
                    request_key: self.request_key.map(str::to_string),
                    shadow_of: self.shadow_of.and_then(|i| uuid::Uuid::parse_str(i).ok()),
                }),
            }),
            RecordKind::Feedback => LogRecord::Feedback(FeedbackRecord {
                id,
                time_ms,
                deployment: text(self.deployment),
                label: self.label.map(json_cell),
                reward: self.reward.and_then(serde_json::Number::from_f64),
                ranking: self.ranking.map(json_cell),
                clicked: self.clicked.map(json_cell),
            }),
            RecordKind::Explanation => LogRecord::Explanation(ExplanationRecord {
                id,
                time_ms,
                deployment: text(self.deployment),
                explanation: self.explanation.map(json_cell)?,
            }),
        })
    }
}

/// A JSON-text cell as stored; text that is not JSON (written by another tool) is kept as a
/// JSON string.
fn json_cell(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(text).unwrap_or_else(|_| empty_object())
    })
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| unreachable!("`{{}}` is JSON"))
}

/// Calls `visit` on every non-null value of one text column of an archived file, reading only
/// that column (a file without it has none).
pub fn visit_column(
    bytes: bytes::Bytes,
    column: &str,
    mut visit: impl FnMut(&str),
) -> Result<(), ArchiveError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.metadata().file_metadata().schema_descr_ptr();
    if !(0..schema.num_columns()).any(|i| schema.column(i).name() == column) {
        return Ok(());
    }
    let mask = ProjectionMask::columns(&schema, [column]);
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let Some(values) = batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            continue;
        };
        for value in values.iter().flatten() {
            visit(value);
        }
    }
    Ok(())
}

/// Calls `visit` on every record of an archived file, without building JSON values: the
/// monitors read millions of rows through this.
pub fn visit_parquet(
    bytes: bytes::Bytes,
    visit: impl FnMut(RecordView<'_>),
) -> Result<(), ArchiveError> {
    visit_batches(
        ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?,
        visit,
    )
}

/// [`visit_parquet`] over any reader of an archived file's batches (some row groups of it).
pub fn visit_batches(
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    mut visit: impl FnMut(RecordView<'_>),
) -> Result<(), ArchiveError> {
    for batch in reader {
        let batch = batch?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        };
        let int = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        };
        let float = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        };
        let (kind, id, deployment, model) =
            (text("type"), text("id"), text("deployment"), text("model"));
        let (version, digest, arm, policy) =
            (text("version"), text("digest"), text("arm"), text("policy"));
        let (inputs, outputs, label, ranking) = (
            text("inputs"),
            text("outputs"),
            text("label"),
            text("ranking"),
        );
        let (time, latency) = (int("time_ms"), int("latency_us"));
        let (reward, propensity) = (float("reward"), float("propensity"));
        let returned = batch
            .column_by_name("returned")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned());
        let (experiment, policy_version, request_key, shadow_of) = (
            text("experiment"),
            text("policy_version"),
            text("request_key"),
            text("shadow_of"),
        );
        let (trace_id, clicked) = (text("trace_id"), text("clicked"));
        let (subject, sealed, sealed_inputs, explanation) = (
            text("subject"),
            text("sealed"),
            text("sealed_inputs"),
            text("explanation"),
        );
        fn cell(a: &Option<StringArray>, r: usize) -> Option<&str> {
            a.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r))
        }
        fn int_cell(a: &Option<Int64Array>, r: usize) -> Option<i64> {
            a.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r))
        }
        fn float_cell(a: &Option<Float64Array>, r: usize) -> Option<f64> {
            a.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r))
        }
        fn bool_cell(a: &Option<BooleanArray>, r: usize) -> Option<bool> {
            a.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r))
        }
        for r in 0..batch.num_rows() {
            visit(RecordView {
                kind: cell(&kind, r),
                id: cell(&id, r),
                time_ms: int_cell(&time, r),
                deployment: cell(&deployment, r),
                model: cell(&model, r),
                version: cell(&version, r),
                digest: cell(&digest, r),
                arm: cell(&arm, r),
                policy: cell(&policy, r),
                latency_us: int_cell(&latency, r),
                inputs: cell(&inputs, r),
                outputs: cell(&outputs, r),
                label: cell(&label, r),
                ranking: cell(&ranking, r),
                clicked: cell(&clicked, r),
                reward: float_cell(&reward, r),
                propensity: float_cell(&propensity, r),
                subject: cell(&subject, r),
                sealed: cell(&sealed, r),
                sealed_inputs: cell(&sealed_inputs, r),
                explanation: cell(&explanation, r),
                experiment: cell(&experiment, r),
                policy_version: cell(&policy_version, r),
                returned: bool_cell(&returned, r),
                request_key: cell(&request_key, r),
                shadow_of: cell(&shadow_of, r),
                trace_id: cell(&trace_id, r),
            });
        }
    }
    Ok(())
}

/// An archived prediction with the whole file that holds it (what its proof is made from) and
/// what was archived about it later.
#[derive(Debug)]
pub struct Located {
    /// The file's artifact path and the deployment whose archive it is in.
    pub artifact: String,
    pub deployment: String,
    pub prediction: PredictionRecord,
    /// Every record of that file, in file order, and the prediction's position among them.
    pub records: Vec<LogRecord>,
    pub index: usize,
    /// Feedback on it, oldest file first.
    pub feedback: Vec<FeedbackRecord>,
    /// Explanations computed on request and archived, oldest file first.
    pub explanations: Vec<ExplanationRecord>,
    /// Files searched that could not be read: feedback or explanations in them are missing.
    pub unreadable: Vec<String>,
}

/// Finds an archived prediction in one deployment's archive, or in every deployment's when
/// `deployment` is `None`: the prediction lives in the files of its own day or the day before
/// (from the UUIDv7 timestamp); feedback and explanations may arrive on any later day.
pub async fn locate_archived(
    store: &dyn ArchiveReader,
    deployment: Option<&str>,
    id: uuid::Uuid,
) -> Result<Option<Located>, ArchiveError> {
    let made = i64::try_from(uuid_v7_time_ms(id.as_u128())).unwrap_or(i64::MAX);
    // A file is named by the day of its first record, and a segment is open for up to its
    // age (minutes by default) before it rolls: one opened before midnight holds predictions
    // of the next day. The previous day's files are searched too.
    let day = mltrail_core::time::utc_date(made.saturating_sub(86_400_000));
    let root = match deployment {
        Some(d) => format!("predictions/{d}"),
        None => "predictions".to_string(),
    };
    // `predictions/<deployment>/<day>/<file>`: the day and deployment of a listed file.
    let place = |p: &str| -> Option<(String, String)> {
        let mut parts = p.strip_prefix("predictions/")?.split('/');
        let (dep, file_day) = (parts.next()?, parts.next()?);
        Some((dep.to_string(), file_day.to_string()))
    };
    let mut files: Vec<(String, String, String)> = store
        .list(&root)
        .await?
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .filter_map(|p| place(&p).map(|(dep, d)| (d, dep, p)))
        .filter(|(d, _, _)| *d >= day)
        .collect();
    files.sort();
    let mut found: Option<Located> = None;
    let mut feedback = Vec::new();
    let mut explanations = Vec::new();
    // A file that cannot be read (damaged, or not the archiver's) hides only what it holds:
    // the search goes on, and says so if it finds nothing.
    let mut unreadable = Vec::new();
    for (_, dep, file) in files {
        if found.as_ref().is_some_and(|f| f.deployment != dep) {
            continue;
        }
        let read = match store.get(&file).await {
            Ok(bytes) => tokio::task::spawn_blocking(move || from_parquet(bytes)).await?,
            Err(e) => Err(e.into()),
        };
        let records = match read {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(file = %file, error = %e, "an archived file cannot be read");
                unreadable.push(file);
                continue;
            }
        };
        let here = records.iter().enumerate().find_map(|(i, r)| match r {
            LogRecord::Prediction(p) if p.id == id => Some((i, p.clone())),
            _ => None,
        });
        for record in records.iter().filter(|r| r.id() == id) {
            match record {
                LogRecord::Feedback(f) => feedback.push(f.clone()),
                LogRecord::Explanation(e) => explanations.push(e.clone()),
                LogRecord::Prediction(_) => {}
            }
        }
        if let (Some((index, prediction)), None) = (here, &found) {
            found = Some(Located {
                artifact: file,
                deployment: dep,
                prediction,
                records,
                index,
                feedback: Vec::new(),
                explanations: Vec::new(),
                unreadable: Vec::new(),
            });
        }
    }
    if found.is_none() && !unreadable.is_empty() {
        return Err(ArchiveError::Unreadable(unreadable));
    }
    Ok(found.map(|mut f| {
        // Annotations of another deployment's record with the same id are not this one's.
        f.feedback = feedback
            .into_iter()
            .filter(|r| r.deployment == f.deployment)
            .collect();
        f.explanations = explanations
            .into_iter()
            .filter(|r| r.deployment == f.deployment)
            .collect();
        f.unreadable = unreadable;
        f
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> LogRecord {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_file_written_a_group_at_a_time_reads_back_whole_and_in_order() {
        let prediction = |n: u32| {
            record(&format!(
                r#"{{"type":"prediction","id":"0190a5b2-0000-7000-8000-{n:012}","time_ms":{n},"deployment":"d","model":"m","version":"1","digest":"x","latency_us":1,"inputs":{{"f0":{n}}},"outputs":{{"label":1}}}}"#
            ))
        };
        let records: Vec<LogRecord> = (0..25).map(prediction).collect();
        let mut file = ParquetFile::new().unwrap();
        for group in records.chunks(10) {
            file.write(group).unwrap();
        }
        file.write(&[]).unwrap();
        let bytes = file.finish().unwrap();
        let groups = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.clone()))
            .unwrap()
            .metadata()
            .num_row_groups();
        assert_eq!(groups, 3);
        let back = from_parquet(bytes).unwrap();
        assert_eq!(back.len(), 25);
        for (a, b) in records.iter().zip(&back) {
            assert!(a.same_as(b), "{a:?} != {b:?}");
        }
    }

    #[test]
    fn records_round_trip_through_parquet() {
        let id = "0190a5b2-0000-7000-8000-000000000001";
        let records = vec![
            record(&format!(
                r#"{{"type":"prediction","id":"{id}","time_ms":5,"deployment":"d","model":"m","version":"1","digest":"x","arm":null,"latency_us":7,"inputs":{{"f0":1.5}},"outputs":{{"label":1}}}}"#
            )),
            record(&format!(
                r#"{{"type":"feedback","id":"{id}","time_ms":9,"deployment":"d","label":1,"reward":0.5}}"#
            )),
        ];
        let back = from_parquet(to_parquet(&records).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in records.iter().zip(&back) {
            assert!(a.same_as(b), "{a:?} != {b:?}");
        }
        let mut seen = Vec::new();
        visit_parquet(to_parquet(&records).unwrap().into(), |r| {
            seen.push((
                r.kind.map(str::to_string),
                r.time_ms,
                r.inputs.map(str::to_string),
                r.label.map(str::to_string),
                r.model.map(str::to_string),
            ));
        })
        .unwrap();
        assert_eq!(
            seen[0],
            (
                Some("prediction".into()),
                Some(5),
                Some("{\"f0\":1.5}".into()),
                None,
                Some("m".into())
            )
        );
        assert_eq!(seen[1].3.as_deref(), Some("1"));
        assert_eq!(seen[1].4, None, "feedback names no model");
    }

    #[test]
    fn the_row_count_is_read_from_the_footer_alone() {
        let records: Vec<LogRecord> = (1..=3)
            .map(|n| {
                record(&format!(
                    r#"{{"type":"feedback","id":"0190a5b2-0000-7000-8000-00000000000{n}","time_ms":{n},"deployment":"d","label":1}}"#
                ))
            })
            .collect();
        let file = bytes::Bytes::from(to_parquet(&records).unwrap());
        let size = file.len() as u64;
        let last = |n: u64| file.slice(file.len() - n as usize..);
        let Footer::NeedLast(needed) = footer_rows(&last(8), size).unwrap() else {
            panic!("eight bytes hold only the footer's length")
        };
        assert!(needed > 8 && needed < size);
        assert_eq!(footer_rows(&last(needed), size).unwrap(), Footer::Rows(3));
        assert_eq!(footer_rows(&file, size).unwrap(), Footer::Rows(3));
        assert!(footer_rows(&bytes::Bytes::from_static(b"not parquet"), 11).is_err());
    }

    #[test]
    fn leaves_survive_the_round_trip_a_null_label_included() {
        let id = "0190a5b2-0000-7000-8000-000000000001";
        let records = vec![
            record(&format!(
                r#"{{"type":"feedback","id":"{id}","time_ms":9,"deployment":"d","label":null,"reward":1}}"#
            )),
            record(&format!(
                r#"{{"type":"feedback","id":"{id}","time_ms":10,"deployment":"d","label":[1,null],"ranking":null}}"#
            )),
        ];
        let back = from_parquet(to_parquet(&records).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in records.iter().zip(&back) {
            assert_eq!(
                crate::segment_tree::record_leaf(a).unwrap(),
                crate::segment_tree::record_leaf(b).unwrap(),
                "{a:?} / {b:?}"
            );
        }
    }

    struct Files(std::collections::BTreeMap<String, Vec<u8>>);

    impl ArchiveReader for Files {
        fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<String>, StorageError>> {
            Box::pin(async move {
                Ok(self
                    .0
                    .keys()
                    .filter(|k| k.starts_with(dir))
                    .cloned()
                    .collect())
            })
        }
        fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
            Box::pin(async move { Ok(self.0.get(path).cloned().unwrap_or_default()) })
        }
    }

    #[tokio::test]
    async fn a_prediction_in_a_segment_opened_before_midnight_is_found() {
        // 2026-12-04T00:01:00Z, served into a segment whose first record was on the 3rd.
        let id = "01a23e5a-ae60-7000-8000-000000000001";
        let earlier = "01a23e5a-0000-7000-8000-000000000002";
        let prediction = |id: &str| {
            record(&format!(
                r#"{{"type":"prediction","id":"{id}","time_ms":5,"deployment":"d","model":"m","version":"1","digest":"x","latency_us":1,"inputs":{{}},"outputs":{{}}}}"#
            ))
        };
        let feedback = record(&format!(
            r#"{{"type":"feedback","id":"{id}","time_ms":9,"deployment":"d","label":1}}"#
        ));
        let files = Files(
            [
                (
                    "predictions/d/2026-12-03/r-1.parquet".to_string(),
                    to_parquet(&[prediction(earlier), prediction(id)]).unwrap(),
                ),
                (
                    "predictions/d/2026-12-05/r-2.parquet".to_string(),
                    to_parquet(&[feedback]).unwrap(),
                ),
                (
                    "predictions/d/2026-12-04/x.parquet".to_string(),
                    b"not parquet".to_vec(),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let id = uuid::Uuid::parse_str(id).unwrap();
        let found = locate_archived(&files, Some("d"), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.artifact, "predictions/d/2026-12-03/r-1.parquet");
        assert_eq!(found.index, 1);
        assert_eq!(found.feedback.len(), 1);
        assert_eq!(found.unreadable, ["predictions/d/2026-12-04/x.parquet"]);
        assert!(locate_archived(&files, None, id).await.unwrap().is_some());
        // Not found, with a file that could not be read: said, not hidden.
        let other = uuid::Uuid::parse_str("01a23e5a-ae60-7000-8000-0000000000ff").unwrap();
        match locate_archived(&files, Some("d"), other).await {
            Err(ArchiveError::Unreadable(files)) => {
                assert_eq!(files, ["predictions/d/2026-12-04/x.parquet"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_row_or_cell_does_not_hide_the_rest() {
        let id = "0190a5b2-0000-7000-8000-000000000001";
        let view = RecordView {
            kind: Some("feedback"),
            id: Some(id),
            time_ms: Some(3),
            label: Some("not json"),
            ..RecordView::default()
        };
        let Some(LogRecord::Feedback(f)) = view.to_record() else {
            panic!("a feedback record")
        };
        assert_eq!(f.label.unwrap().get(), "\"not json\"");
        assert!(RecordView {
            kind: Some("impression"),
            ..view
        }
        .to_record()
        .is_none());
        assert!(RecordView {
            id: Some("x"),
            ..view
        }
        .to_record()
        .is_none());
    }

    #[test]
    fn the_schema_is_the_record_columns() {
        let names: Vec<String> = schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, COLUMNS.map(|c| c.name.to_string()));
    }
}
