//! Reading a CSV or Parquet file into typed columns.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    LargeStringArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Schema};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: the file has no rows")]
    Empty { path: String },
    #[error("{path}: column `{column}` has type {kind}, which drift cannot compare (numbers, text and booleans can)")]
    UnsupportedType {
        path: String,
        column: String,
        kind: String,
    },
    #[error("{path}: unknown file type (expected .csv or .parquet)")]
    UnknownFormat { path: String },
}

static PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Show a progress line on stderr while reading big CSV files (for interactive commands).
pub fn show_progress(on: bool) {
    PROGRESS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Counts bytes as the CSV parser reads them and redraws `name: NN%` on stderr.
struct ProgressReader<R> {
    inner: R,
    name: String,
    total: u64,
    read: u64,
    shown: u64,
    finished: bool,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let pct = (self.read * 100).checked_div(self.total).unwrap_or(100);
        if (pct > self.shown || n == 0) && !self.finished {
            self.shown = pct;
            eprint!(
                "\rreading {}: {pct:>3}% of {} MiB",
                self.name,
                self.total >> 20
            );
            if n == 0 {
                self.finished = true;
                eprintln!();
            }
        }
        Ok(n)
    }
}

/// Files at least this big get a progress line when progress is on.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// An integer column with at most this many distinct values is categorical, not numeric
/// (Evidently's rule, applied wherever a column's kind is inferred).
pub const CATEGORICAL_INTEGER_MAX_DISTINCT: usize = 10;

/// Marks a missing value in [`Values::Text`] codes.
pub const MISSING: u32 = u32::MAX;

/// A column's values, stored compactly (8 bytes a number, 4 bytes a text cell).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers, NaN where missing; `integer` when the file typed the column as integers
    /// (compared as f64: exact up to 2^53).
    Numeric { values: Vec<f64>, integer: bool },
    /// Dictionary-encoded text: `labels[code]`, [`MISSING`] where missing.
    Text {
        labels: Vec<String>,
        codes: Vec<u32>,
    },
}

impl Values {
    /// Each row's value as a category name: text as it is, a number as Rust prints it (`3`,
    /// `0.5`); `None` where missing. What fairness groups rows by.
    pub fn categories(&self) -> Vec<Option<String>> {
        match self {
            Values::Text { labels, codes } => codes
                .iter()
                .map(|c| (*c != MISSING).then(|| labels[*c as usize].clone()))
                .collect(),
            Values::Numeric { values, .. } => values
                .iter()
                .map(|v| (!v.is_nan()).then(|| v.to_string()))
                .collect(),
        }
    }
}

/// Builds the dictionary of a text column while reading.
#[derive(Default)]
struct Dictionary {
    index: std::collections::HashMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Moves a column's values out (for callers that consume the table column by column).
    pub fn take(&mut self, name: &str) -> Option<Values> {
        let col = self.columns.iter_mut().find(|c| c.name == name)?;
        Some(std::mem::replace(
            &mut col.values,
            Values::Numeric {
                values: Vec::new(),
                integer: false,
            },
        ))
    }
}

/// Builds a table from JSON objects, one row at a time, e.g. the inputs a prediction log
/// recorded. A column whose present values are all numbers is numeric (`integer` when all are
/// integers); any other column is text, with numbers and booleans spelled as JSON spells them.
/// Columns are those of every row together, in the order first seen; a row without a column, or
/// with `null`, is missing there.
#[derive(Default)]
pub struct JsonTableBuilder {
    columns: Vec<Column>,
    dicts: Vec<Dictionary>,
    index: std::collections::HashMap<String, usize>,
    rows: usize,
    /// Which columns the current row has set.
    seen: Vec<bool>,
    /// The column after the one the current row set last.
    cursor: usize,
}

/// Streams one JSON object's entries into the builder.
struct RowSeed<'b>(&'b mut JsonTableBuilder);

/// An object key, borrowed from the text unless it had escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of column values")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value: serde_json::Value = map.next_value()?;
            self.0.push_cell(&key, value);
        }
        Ok(())
    }
}

fn dictionary_code(dict: &mut Dictionary, labels: &mut Vec<String>, text: String) -> u32 {
    if let Some(c) = dict.index.get(&text) {
        return *c;
    }
    let c = labels.len() as u32;
    labels.push(text.clone());
    dict.index.insert(text, c);
    c
}

impl JsonTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns a numeric column into text once a non-number arrives, spelling the numbers it
    /// already holds as JSON would.
    fn to_text(column: &mut Column, dict: &mut Dictionary) {
        let Values::Numeric { values, integer } = &column.values else {
            return;
        };
        let mut labels = Vec::new();
        let codes = values
            .iter()
            .map(|v| {
                if v.is_nan() {
                    MISSING
                } else {
                    let text = if *integer {
                        format!("{}", *v as i64)
                    } else {
                        serde_json::Number::from_f64(*v)
                            .map_or_else(|| v.to_string(), |n| n.to_string())
                    };
                    dictionary_code(dict, &mut labels, text)
                }
            })
            .collect();
        column.values = Values::Text { labels, codes };
    }

    pub fn push(&mut self, row: &serde_json::Map<String, serde_json::Value>) {
        self.begin_row();
        for (key, value) in row {
            self.push_cell(key, value.clone());
        }
        self.end_row();
    }

    /// Adds one row from its cells, without building a JSON object for it: a one-entry
    /// `serde_json::Map` costs over 600 bytes, which for a monitor's window of millions of
    /// predictions was gigabytes.
    pub fn push_cells<'k>(
        &mut self,
        cells: impl IntoIterator<Item = (&'k str, serde_json::Value)>,
    ) {
        self.begin_row();
        for (key, value) in cells {
            self.push_cell(key, value);
        }
        self.end_row();
    }

    /// Adds one row from the text of a JSON object, without building the object (the monitors
    /// read millions of logged rows this way). A row that is not valid JSON keeps the cells
    /// read before the error; the error is returned.
    pub fn push_json(&mut self, text: &str) -> Result<(), serde_json::Error> {
        use serde::de::DeserializeSeed;
        self.begin_row();
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = RowSeed(self).deserialize(&mut de).and_then(|_| de.end());
        self.end_row();
        parsed
    }

    fn begin_row(&mut self) {
        self.seen.iter_mut().for_each(|s| *s = false);
        self.cursor = 0;
    }

    fn column_index(&mut self, key: &str) -> usize {
        // Logged rows list their keys in the same order: try the column after the last one.
        if let Some(c) = self.columns.get(self.cursor) {
            if c.name == key {
                return self.cursor;
            }
        }
        if let Some(i) = self.index.get(key) {
            return *i;
        }
        let i = self.columns.len();
        self.index.insert(key.to_string(), i);
        // A new column starts numeric and missing in every earlier row.
        self.columns.push(Column {
            name: key.to_string(),
            values: Values::Numeric {
                values: vec![f64::NAN; self.rows],
                integer: true,
            },
        });
        self.dicts.push(Dictionary::default());
        self.seen.push(false);
        i
    }

    fn push_cell(&mut self, key: &str, value: serde_json::Value) {
        let i = self.column_index(key);
        self.cursor = i + 1;
        if self.seen[i] {
            return; // a repeated key: the first value stands
        }
        self.seen[i] = true;
        let (column, dict) = (&mut self.columns[i], &mut self.dicts[i]);
        if !value.is_null() && !value.is_number() {
            Self::to_text(column, dict);
        }
        match &mut column.values {
            Values::Numeric { values, integer } => {
                if value.is_null() {
                    values.push(f64::NAN);
                } else {
                    *integer &= value.is_i64() || value.is_u64();
                    values.push(value.as_f64().unwrap_or(f64::NAN));
                }
            }
            Values::Text { labels, codes } => codes.push(match value {
                serde_json::Value::Null => MISSING,
                serde_json::Value::String(text) => dictionary_code(dict, labels, text),
                other => dictionary_code(dict, labels, other.to_string()),
            }),
        }
    }

    fn end_row(&mut self) {
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                match &mut column.values {
                    Values::Numeric { values, .. } => values.push(f64::NAN),
                    Values::Text { codes, .. } => codes.push(MISSING),
                }
            }
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(self) -> Table {
        let mut columns = self.columns;
        // A column that never held a value is not known to be an integer.
        for c in &mut columns {
            if let Values::Numeric { values, integer } = &mut c.values {
                if values.iter().all(|v| v.is_nan()) {
                    *integer = false;
                }
            }
        }
        Table {
            columns,
            rows: self.rows,
        }
    }
}

/// [`JsonTableBuilder`] over rows already in memory.
pub fn from_json_rows<'a, I>(rows: I) -> Table
where
    I: IntoIterator<Item = &'a serde_json::Map<String, serde_json::Value>>,
{
    let mut builder = JsonTableBuilder::new();
    for row in rows {
        builder.push(row);
    }
    builder.finish()
}

fn append(
    path: &str,
    columns: &mut [Column],
    dicts: &mut [Dictionary],
    batch: &RecordBatch,
) -> Result<(), DataError> {
    for ((col, dict), array) in columns
        .iter_mut()
        .zip(dicts.iter_mut())
        .zip(batch.columns())
    {
        append_array(path, col, dict, array)?;
    }
    Ok(())
}

fn append_array(
    path: &str,
    col: &mut Column,
    dict: &mut Dictionary,
    array: &ArrayRef,
) -> Result<(), DataError> {
    let any = array.as_any();
    let unsupported = || DataError::UnsupportedType {
        path: path.into(),
        column: col.name.clone(),
        kind: array.data_type().to_string(),
    };
    match &mut col.values {
        Values::Numeric { values, .. } => {
            macro_rules! numbers {
                ($arr:expr) => {
                    values.extend((0..$arr.len()).map(|i| {
                        if $arr.is_valid(i) {
                            $arr.value(i) as f64
                        } else {
                            f64::NAN
                        }
                    }))
                };
            }
            if let Some(a) = any.downcast_ref::<Int64Array>() {
                numbers!(a);
            } else if let Some(a) = any.downcast_ref::<Int32Array>() {
                numbers!(a);
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                numbers!(a);
            } else if let Some(a) = any.downcast_ref::<Float32Array>() {
                numbers!(a);
            } else {
                return Err(unsupported());
            }
        }
        Values::Text { labels, codes } => {
            let mut push = |v: Option<&str>| {
                let code = match v {
                    None => MISSING,
                    Some(text) => match dict.index.get(text) {
                        Some(c) => *c,
                        None => {
                            let c = labels.len() as u32;
                            labels.push(text.to_string());
                            dict.index.insert(text.to_string(), c);
                            c
                        }
                    },
                };
                codes.push(code);
            };
            if let Some(a) = any.downcast_ref::<StringArray>() {
                (0..a.len()).for_each(|i| push(a.is_valid(i).then(|| a.value(i))));
            } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
                (0..a.len()).for_each(|i| push(a.is_valid(i).then(|| a.value(i))));
            } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                (0..a.len()).for_each(|i| {
                    push(
                        a.is_valid(i)
                            .then(|| if a.value(i) { "true" } else { "false" }),
                    )
                });
            } else {
                return Err(unsupported());
            }
        }
    }
    Ok(())
}

fn empty_columns(path: &str, schema: &Schema) -> Result<Vec<Column>, DataError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let values = match f.data_type() {
                DataType::Int64 | DataType::Int32 => Values::Numeric {
                    values: Vec::new(),
                    integer: true,
                },
                DataType::Float64 | DataType::Float32 => Values::Numeric {
                    values: Vec::new(),
                    integer: false,
                },
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Boolean => Values::Text {
                    labels: Vec::new(),
                    codes: Vec::new(),
                },
                other => {
                    return Err(DataError::UnsupportedType {
                        path: path.into(),
                        column: f.name().clone(),
                        kind: other.to_string(),
                    })
                }
            };
            Ok(Column {
                name: f.name().clone(),
                values,
            })
        })
        .collect()
}

/// Types are inferred from the first rows (inference runs a regex per value, which dominates
/// reading time on big files); if a later value does not fit, the file is read again with types
/// inferred from every row.
const INFER_ROWS: usize = 20_000;

/// Which columns to read.
pub type ColumnFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

fn read_csv(path: &Path, keep: ColumnFilter) -> Result<Table, DataError> {
    match read_csv_inferring(path, Some(INFER_ROWS), keep) {
        Err(DataError::Parse { .. }) => read_csv_inferring(path, None, keep),
        other => other,
    }
}

fn read_csv_inferring(
    path: &Path,
    infer_rows: Option<usize>,
    keep: ColumnFilter,
) -> Result<Table, DataError> {
    let p = path.display().to_string();
    let io = |source| DataError::Io {
        path: p.clone(),
        source,
    };
    let parse = |e: arrow_schema::ArrowError| DataError::Parse {
        path: p.clone(),
        message: e.to_string(),
    };
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (schema, records) = format
        .infer_schema(File::open(path).map_err(io)?, infer_rows)
        .map_err(parse)?;
    if records == 0 || schema.fields().is_empty() {
        return Err(DataError::Empty { path: p });
    }
    // Columns arrow inferred as dates or times are read as text.
    let schema = Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 | DataType::Float64 | DataType::Boolean | DataType::Utf8 => {
                    f.as_ref().clone()
                }
                _ => f.as_ref().clone().with_data_type(DataType::Utf8),
            })
            .collect::<Vec<_>>(),
    );
    // Only the wanted columns are parsed at all.
    let projection: Vec<usize> = (0..schema.fields().len())
        .filter(|i| keep(schema.field(*i).name()))
        .collect();
    let projected = schema.project(&projection).map_err(parse)?;
    let mut columns = empty_columns(&p, &projected)?;
    let mut dicts: Vec<Dictionary> = columns.iter().map(|_| Dictionary::default()).collect();
    let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .with_projection(projection)
        .build({
            let file = File::open(path).map_err(io)?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            let show =
                PROGRESS.load(std::sync::atomic::Ordering::Relaxed) && total >= PROGRESS_MIN_BYTES;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let reader: Box<dyn std::io::Read + Send> = if show {
                Box::new(ProgressReader {
                    inner: file,
                    name,
                    total,
                    read: 0,
                    shown: 0,
                    finished: false,
                })
            } else {
                Box::new(file)
            };
            reader
        })
        .map_err(parse)?;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(parse)?;
        rows += batch.num_rows();
        append(&p, &mut columns, &mut dicts, &batch)?;
    }
    Ok(Table { columns, rows })
}

/// The parquet crate panics on some malformed files (a negative column chunk offset in the
/// footer, found by the `table_ingest` fuzz target); a file a user hands us must be refused
/// with a message, never take the process down.
fn read_parquet(path: &Path, keep: ColumnFilter) -> Result<Table, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_parquet_file(path, keep)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unreadable".into());
        Err(DataError::Parse {
            path: path.display().to_string(),
            message: format!("the Parquet file is malformed: {why}"),
        })
    })
}

fn read_parquet_file(path: &Path, keep: ColumnFilter) -> Result<Table, DataError> {
    let p = path.display().to_string();
    let parse = |e: parquet::errors::ParquetError| DataError::Parse {
        path: p.clone(),
        message: e.to_string(),
    };
    // Read whole, not through a File: on a file, a page header claiming a huge field made the
    // parquet crate skip through the file a few bytes per system call for minutes (a fuzzing
    // finding, docs/reliability.md); over bytes in memory the same skip ends at once.
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .map_err(parse)?;
    let indices: Vec<usize> = (0..builder.schema().fields().len())
        .filter(|i| keep(builder.schema().field(*i).name()))
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices.clone());
    let projected = builder
        .schema()
        .project(&indices)
        .map_err(|e| DataError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
    let mut columns = empty_columns(&p, &projected)?;
    let mut dicts: Vec<Dictionary> = columns.iter().map(|_| Dictionary::default()).collect();
    let mut rows = 0;
    for batch in builder.with_projection(mask).build().map_err(parse)? {
        let batch = batch.map_err(|e| DataError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
        rows += batch.num_rows();
        append(&p, &mut columns, &mut dicts, &batch)?;
    }
    if rows == 0 {
        return Err(DataError::Empty { path: p });
    }
    Ok(Table { columns, rows })
}

/// Reads `.csv` (header row, types inferred from every row) or `.parquet`.
pub fn read(path: &Path) -> Result<Table, DataError> {
    read_filtered(path, &|_| true)
}

/// Reads a stored file's bytes, its format told by the extension of `file_name` (`.csv`,
/// `.parquet`). Only the extension is used: a stored name (which a client chose) is never a
/// path to write to.
pub fn read_bytes(file_name: &str, bytes: &[u8]) -> Result<Table, DataError> {
    let extension: String = Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let io = |source| DataError::Io {
        path: file_name.to_string(),
        source,
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let local = dir.path().join(format!("data.{extension}"));
    std::fs::write(&local, bytes).map_err(io)?;
    read(&local).map_err(|e| match e {
        DataError::UnknownFormat { .. } => DataError::UnknownFormat {
            path: file_name.to_string(),
        },
        other => other,
    })
}

/// Reads only the columns `keep` accepts.
pub fn read_filtered(path: &Path, keep: ColumnFilter) -> Result<Table, DataError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => read_csv(path, keep),
        Some("parquet") | Some("pq") => read_parquet(path, keep),
        _ => Err(DataError::UnknownFormat {
            path: path.display().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Table, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn a_malformed_parquet_footer_is_refused_not_a_panic() {
        // The fuzz input's first byte picks the format; the rest is the file.
        let input =
            include_bytes!("../../../fuzz/seeds/table_ingest/parquet-negative-column-start");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, &input[1..]).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, DataError::Parse { .. }), "{err}");
    }

    #[test]
    fn a_page_header_claiming_a_huge_field_is_refused_quickly() {
        // Read from a file, this fuzz input kept the parquet crate skipping a few bytes per
        // system call for over five minutes; read from memory it is refused in seconds.
        let input =
            include_bytes!("../../../fuzz/seeds/table_ingest/parquet-page-header-skip-loop");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.parquet");
        std::fs::write(&path, &input[1..]).unwrap();
        let started = std::time::Instant::now();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, DataError::Parse { .. }), "{err}");
        // Generous for a debug build on a busy 2-core machine; the file read took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn columns_are_typed_from_the_data() {
        let t = csv("a,b,c\n1,2.5,x\n2,,y\n").unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(
            t.column("a").unwrap().values,
            Values::Numeric {
                values: vec![1.0, 2.0],
                integer: true
            }
        );
        assert!(
            matches!(&t.column("b").unwrap().values, Values::Numeric { values, integer: false } if values[0] == 2.5 && values[1].is_nan())
        );
        assert_eq!(
            t.column("c").unwrap().values,
            Values::Text {
                labels: vec!["x".into(), "y".into()],
                codes: vec![0, 1]
            }
        );
    }

    #[test]
    fn a_late_value_that_does_not_fit_the_first_rows_type_is_still_read() {
        let mut text = String::from("a\n");
        for i in 0..INFER_ROWS + 10 {
            text.push_str(&format!("{i}\n"));
        }
        text.push_str("2.5\n");
        let t = csv(&text).unwrap();
        assert!(
            matches!(&t.column("a").unwrap().values, Values::Numeric { values, integer: false } if values.last() == Some(&2.5))
        );
    }

    #[test]
    fn json_rows_become_typed_columns() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = [
            serde_json::json!({"a": 1, "b": 2.5, "c": "x"}),
            serde_json::json!({"a": 2, "b": null, "c": true}),
            serde_json::json!({"a": 3, "c": "x", "d": 4}),
        ]
        .into_iter()
        .map(|v| v.as_object().cloned().unwrap())
        .collect();
        let t = from_json_rows(&rows);
        assert_eq!(t.rows, 3);
        assert_eq!(
            t.column("a").unwrap().values,
            Values::Numeric {
                values: vec![1.0, 2.0, 3.0],
                integer: true
            }
        );
        assert!(
            matches!(&t.column("b").unwrap().values, Values::Numeric { values, integer: false } if values[1].is_nan() && values[2].is_nan())
        );
        assert_eq!(
            t.column("c").unwrap().values,
            Values::Text {
                labels: vec!["x".into(), "true".into()],
                codes: vec![0, 1, 0]
            }
        );
        assert!(
            matches!(&t.column("d").unwrap().values, Values::Numeric { values, .. } if values[0].is_nan() && values[2] == 4.0)
        );
        // Streaming from text gives the same table; a repeated key keeps its first value.
        let mut streamed = JsonTableBuilder::new();
        for text in [
            r#"{"a": 1, "b": 2.5, "c": "x"}"#,
            r#"{"a": 2, "b": null, "c": true}"#,
            r#"{"a": 3, "c": "x", "d": 4, "d": 5}"#,
        ] {
            streamed.push_json(text).unwrap();
        }
        let streamed = streamed.finish();
        assert_eq!(format!("{streamed:?}"), format!("{t:?}"));
        let mut broken = JsonTableBuilder::new();
        assert!(broken.push_json(r#"{"a": 1, "b": "#).is_err());
        broken.push_json(r#"{"b": 2}"#).unwrap();
        let broken = broken.finish();
        assert_eq!(broken.rows, 2);
        assert!(
            matches!(&broken.column("b").unwrap().values, Values::Numeric { values, .. } if values[0].is_nan() && values[1] == 2.0)
        );
        // Numbers before the first text value are spelled as JSON spells them.
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = [
            serde_json::json!({"z": 2.0}),
            serde_json::json!({"z": "n/a"}),
            serde_json::json!({"z": 2.0}),
        ]
        .into_iter()
        .map(|v| v.as_object().cloned().unwrap())
        .collect();
        assert_eq!(
            from_json_rows(&rows).column("z").unwrap().values,
            Values::Text {
                labels: vec!["2.0".into(), "n/a".into()],
                codes: vec![0, 1, 0]
            }
        );
    }

    #[test]
    fn ragged_and_empty_files_are_refused_with_the_path() {
        let ragged = csv("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(ragged.contains("t.csv"), "{ragged}");
        assert!(matches!(csv("a,b\n"), Err(DataError::Empty { .. })));
        assert!(matches!(
            csv(""),
            Err(DataError::Empty { .. }) | Err(DataError::Parse { .. })
        ));
    }
}

#[cfg(test)]
mod stored_names {
    use super::*;

    #[test]
    fn a_stored_name_only_chooses_the_format() {
        let table = read_bytes("../../../etc/evil.csv", b"a,b\n1,x\n").expect("a CSV");
        assert_eq!((table.rows, table.columns.len()), (1, 2));
        assert!(matches!(
            read_bytes("/home/someone/.bashrc", b"a\n1\n"),
            Err(DataError::UnknownFormat { .. })
        ));
    }
}
