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

/// A column's values; `None` is a missing value.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
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
}

fn append(path: &str, columns: &mut [Column], batch: &RecordBatch) -> Result<(), DataError> {
    for (col, array) in columns.iter_mut().zip(batch.columns()) {
        append_array(path, col, array)?;
    }
    Ok(())
}

fn append_array(path: &str, col: &mut Column, array: &ArrayRef) -> Result<(), DataError> {
    let any = array.as_any();
    macro_rules! extend {
        ($variant:ident, $arr:expr, $map:expr) => {{
            let Values::$variant(out) = &mut col.values else {
                unreachable!("column typed from the schema")
            };
            out.extend((0..$arr.len()).map(|i| $arr.is_valid(i).then(|| $map($arr.value(i)))));
        }};
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        extend!(Int, a, |v: i64| v);
    } else if let Some(a) = any.downcast_ref::<Int32Array>() {
        extend!(Int, a, i64::from);
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        extend!(Float, a, |v: f64| v);
    } else if let Some(a) = any.downcast_ref::<Float32Array>() {
        extend!(Float, a, f64::from);
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        extend!(Text, a, |v: &str| v.to_string());
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        extend!(Text, a, |v: &str| v.to_string());
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        extend!(Text, a, |v: bool| v.to_string());
    } else {
        return Err(DataError::UnsupportedType {
            path: path.into(),
            column: col.name.clone(),
            kind: array.data_type().to_string(),
        });
    }
    Ok(())
}

fn empty_columns(path: &str, schema: &Schema) -> Result<Vec<Column>, DataError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let values = match f.data_type() {
                DataType::Int64 | DataType::Int32 => Values::Int(Vec::new()),
                DataType::Float64 | DataType::Float32 => Values::Float(Vec::new()),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Boolean => {
                    Values::Text(Vec::new())
                }
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

fn read_csv(path: &Path) -> Result<Table, DataError> {
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
        .infer_schema(File::open(path).map_err(io)?, None)
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
    let mut columns = empty_columns(&p, &schema)?;
    let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(path).map_err(io)?)
        .map_err(parse)?;
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(parse)?;
        rows += batch.num_rows();
        append(&p, &mut columns, &batch)?;
    }
    Ok(Table { columns, rows })
}

fn read_parquet(path: &Path) -> Result<Table, DataError> {
    let p = path.display().to_string();
    let parse = |e: parquet::errors::ParquetError| DataError::Parse {
        path: p.clone(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parse)?;
    let mut columns = empty_columns(&p, builder.schema())?;
    let mut rows = 0;
    for batch in builder.build().map_err(parse)? {
        let batch = batch.map_err(|e| DataError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
        rows += batch.num_rows();
        append(&p, &mut columns, &batch)?;
    }
    if rows == 0 {
        return Err(DataError::Empty { path: p });
    }
    Ok(Table { columns, rows })
}

/// Reads `.csv` (header row, types inferred from every row) or `.parquet`.
pub fn read(path: &Path) -> Result<Table, DataError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => read_csv(path),
        Some("parquet") | Some("pq") => read_parquet(path),
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
    fn columns_are_typed_from_the_data() {
        let t = csv("a,b,c\n1,2.5,x\n2,,y\n").unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(
            t.column("a").unwrap().values,
            Values::Int(vec![Some(1), Some(2)])
        );
        assert_eq!(
            t.column("b").unwrap().values,
            Values::Float(vec![Some(2.5), None])
        );
        assert_eq!(
            t.column("c").unwrap().values,
            Values::Text(vec![Some("x".into()), Some("y".into())])
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
