//! Decoding scoring requests (MLflow's protocol: `dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`) into model input tensors, validated against the model's signature first.
//! Every refusal names the column and row at fault.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use mltrail_core::privacy::{subject_text, DataKey, PrivacyError, PrivacySpec};

use crate::runtime::{ElementType, Model, Tensor, TensorData};
use crate::signature::{Layout, Signature};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("{0}")]
    Format(String),
    #[error("missing column `{column}`")]
    MissingColumn { column: String },
    #[error("unexpected column `{column}` (the model takes: {expected})")]
    ExtraColumn { column: String, expected: String },
    #[error("column `{column}`, row {row}: {why}")]
    Cell {
        column: String,
        row: usize,
        why: String,
    },
    #[error("row {row}: expected {expected} values, got {got}")]
    Width {
        row: usize,
        expected: usize,
        got: usize,
    },
}

impl RequestError {
    pub fn column(&self) -> Option<&str> {
        match self {
            Self::MissingColumn { column }
            | Self::ExtraColumn { column, .. }
            | Self::Cell { column, .. } => Some(column),
            _ => None,
        }
    }

    pub fn row(&self) -> Option<usize> {
        match self {
            Self::Cell { row, .. } | Self::Width { row, .. } => Some(*row),
            _ => None,
        }
    }
}

/// Which protocol shape a request used; it decides the shape of the `/invocations` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `dataframe_split` / `dataframe_records`: MLflow answers one record per row.
    DataFrame,
    /// `instances` / `inputs`: MLflow answers a dict of output arrays.
    Tensor,
}

/// Rows of named cells, whatever shape the request came in.
struct Table {
    columns: Option<Vec<String>>,
    rows: Vec<Vec<Json>>,
}

// The decoders take the parsed body by value: cells move into the table, none is copied.

fn records_to_table(records: Vec<Json>, what: &str) -> Result<Table, RequestError> {
    let Some(first) = records.first().and_then(Json::as_object) else {
        return Err(RequestError::Format(format!(
            "`{what}` must be a non-empty list of objects"
        )));
    };
    let columns: Vec<String> = first.keys().cloned().collect();
    let mut rows = Vec::with_capacity(records.len());
    for (r, rec) in records.into_iter().enumerate() {
        let Json::Object(mut obj) = rec else {
            return Err(RequestError::Format(format!(
                "`{what}[{r}]` is not an object"
            )));
        };
        let row = columns
            .iter()
            .map(|c| {
                obj.remove(c).ok_or_else(|| RequestError::Cell {
                    column: c.clone(),
                    row: r,
                    why: "missing".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some(extra) = obj.keys().next() {
            return Err(RequestError::ExtraColumn {
                column: extra.clone(),
                expected: columns.join(", "),
            });
        }
        rows.push(row);
    }
    Ok(Table {
        columns: Some(columns),
        rows,
    })
}

fn rows_to_table(rows: Vec<Json>, what: &str) -> Result<Table, RequestError> {
    if rows.first().is_some_and(Json::is_object) {
        return records_to_table(rows, what);
    }
    let rows = rows
        .into_iter()
        .map(|r| match r {
            Json::Array(cells) => cells,
            scalar => vec![scalar],
        })
        .collect();
    Ok(Table {
        columns: None,
        rows,
    })
}

fn columns_to_table(map: Map<String, Json>, what: &str) -> Result<Table, RequestError> {
    let mut columns = Vec::with_capacity(map.len());
    let mut lists = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Json::Array(list) = v else {
            return Err(RequestError::Format(format!("`{what}.{k}` must be a list")));
        };
        columns.push(k);
        lists.push(list);
    }
    let n = lists.first().map_or(0, Vec::len);
    if let Some((k, l)) = columns.iter().zip(&lists).find(|(_, l)| l.len() != n) {
        return Err(RequestError::Format(format!(
            "`{what}.{k}` has {} rows, others have {n}",
            l.len()
        )));
    }
    let mut cells: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let rows = (0..n)
        .map(|_| {
            cells
                .iter_mut()
                .filter_map(Iterator::next)
                .map(|v| match v {
                    Json::Array(mut inner) if inner.len() == 1 => inner.remove(0),
                    v => v,
                })
                .collect()
        })
        .collect();
    Ok(Table {
        columns: Some(columns),
        rows,
    })
}

fn decode_table(body: Json) -> Result<(Table, RequestKind), RequestError> {
    let Json::Object(mut obj) = body else {
        return Err(RequestError::Format(
            "the body must be a JSON object with one of dataframe_split, dataframe_records, instances, inputs".into(),
        ));
    };
    let keys: Vec<&str> = [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ]
    .into_iter()
    .filter(|k| obj.contains_key(*k))
    .collect();
    let key = match keys.as_slice() {
        [one] => *one,
        [] => {
            return Err(RequestError::Format(
                "the body needs one of dataframe_split, dataframe_records, instances, inputs"
                    .into(),
            ))
        }
        many => {
            return Err(RequestError::Format(format!(
                "the body has more than one input format: {}",
                many.join(", ")
            )))
        }
    };
    let value = obj.remove(key).unwrap_or_default();
    match (key, value) {
        ("dataframe_split", Json::Object(mut split)) => {
            let Some(Json::Array(data)) = split.remove("data") else {
                return Err(RequestError::Format(
                    "`dataframe_split.data` must be a list of rows".into(),
                ));
            };
            let columns = match split.remove("columns") {
                None => None,
                Some(Json::Array(c)) => Some(
                    c.into_iter()
                        .map(|v| match v {
                            Json::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                Some(_) => {
                    return Err(RequestError::Format(
                        "`dataframe_split.columns` must be a list".into(),
                    ))
                }
            };
            let rows = data
                .into_iter()
                .enumerate()
                .map(|(r, row)| match row {
                    Json::Array(cells) => Ok(cells),
                    _ => Err(RequestError::Format(format!(
                        "`dataframe_split.data[{r}]` is not a list"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            Ok((Table { columns, rows }, RequestKind::DataFrame))
        }
        ("dataframe_split", _) => Err(RequestError::Format(
            "`dataframe_split` must be an object".into(),
        )),
        ("dataframe_records", Json::Array(records)) => {
            Ok((records_to_table(records, key)?, RequestKind::DataFrame))
        }
        ("dataframe_records", _) => Err(RequestError::Format(
            "`dataframe_records` must be a list".into(),
        )),
        (_, Json::Array(rows)) => Ok((rows_to_table(rows, key)?, RequestKind::Tensor)),
        (_, Json::Object(map)) => Ok((columns_to_table(map, key)?, RequestKind::Tensor)),
        _ => Err(RequestError::Format(format!(
            "`{key}` must be a list of rows or an object of columns"
        ))),
    }
}

fn number(cell: &Json, column: &str, row: usize, allow_missing: bool) -> Result<f64, RequestError> {
    let bad = |why: String| RequestError::Cell {
        column: column.to_string(),
        row,
        why,
    };
    let v = match cell {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad(format!("{n} is not representable")))?,
        Json::Null => f64::NAN,
        Json::String(s) if s.eq_ignore_ascii_case("nan") => f64::NAN,
        // A boolean is not a number: scoring `true` as 1.0 would hide a caller's mistake.
        other => return Err(bad(format!("expected a number, got {other}"))),
    };
    checked(v, column, row, allow_missing)
}

/// The rules every numeric cell meets, however it arrived: missing only where the model
/// accepts missing values, never infinite.
fn checked(v: f64, column: &str, row: usize, allow_missing: bool) -> Result<f64, RequestError> {
    let bad = |why: &str| RequestError::Cell {
        column: column.to_string(),
        row,
        why: why.to_string(),
    };
    if v.is_nan() && !allow_missing {
        return Err(bad(
            "missing value (null/NaN) where the model does not accept one",
        ));
    }
    if v.is_infinite() {
        return Err(bad("infinite value"));
    }
    Ok(v)
}

/// A cell on its way into a tensor: a request's JSON value or a reference table's typed cell.
/// One builder serves both, so both meet the same rules.
trait CellValue {
    /// The cell as a number, under the rules of [`checked`].
    fn number(&self, column: &str, row: usize, allow_missing: bool) -> Result<f64, RequestError>;
    /// The cell as text, when it is text.
    fn text(&self) -> Option<&str>;
    /// The cell as a boolean, when it is one (only JSON has booleans).
    fn boolean(&self) -> Option<bool> {
        None
    }
    /// The cell as a request would carry it, for messages.
    fn describe(&self) -> String;
}

impl CellValue for &Json {
    fn number(&self, column: &str, row: usize, allow_missing: bool) -> Result<f64, RequestError> {
        number(self, column, row, allow_missing)
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

fn build_tensor<C: CellValue>(
    element: ElementType,
    shape: Vec<usize>,
    cells: &[(C, &str, usize)],
    allow_missing: bool,
) -> Result<Tensor, RequestError> {
    let data = match element {
        ElementType::String => TensorData::String(
            cells
                .iter()
                .map(|(c, col, row)| match c.text() {
                    Some(s) => Ok(s.to_string()),
                    None => Err(RequestError::Cell {
                        column: col.to_string(),
                        row: *row,
                        why: format!("expected a string, got {}", c.describe()),
                    }),
                })
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Float => TensorData::Float(
            cells
                .iter()
                .map(|(c, col, r)| c.number(col, *r, allow_missing).map(|v| v as f32))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Double => TensorData::Double(
            cells
                .iter()
                .map(|(c, col, r)| c.number(col, *r, allow_missing))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Bool => TensorData::Bool(
            cells
                .iter()
                .map(|(c, col, r)| match c.boolean() {
                    Some(b) => Ok(b),
                    None => match c.number(col, *r, false)? {
                        0.0 => Ok(false),
                        1.0 => Ok(true),
                        v => Err(RequestError::Cell {
                            column: col.to_string(),
                            row: *r,
                            why: format!("expected a boolean (true, false, 0 or 1), got {v}"),
                        }),
                    },
                })
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Int64 | ElementType::Int32 => {
            // The range of the model's integer type: a value outside it is refused, not wrapped.
            let (min, max) = match element {
                ElementType::Int32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
                _ => (-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_807.0),
            };
            let ints: Vec<i64> = cells
                .iter()
                .map(|(c, col, r)| {
                    let v = c.number(col, *r, false)?;
                    let why = if v.fract() != 0.0 {
                        format!("expected an integer, got {v}")
                    } else if v < min || v >= max + 1.0 {
                        format!("{v} is outside the range of the model's {element:?} input")
                    } else {
                        return Ok(v as i64);
                    };
                    Err(RequestError::Cell {
                        column: col.to_string(),
                        row: *r,
                        why,
                    })
                })
                .collect::<Result<_, _>>()?;
            match element {
                ElementType::Int32 => TensorData::Int32(
                    ints.into_iter()
                        .map(|v| i32::try_from(v).unwrap_or_default())
                        .collect(),
                ),
                _ => TensorData::Int64(ints),
            }
        }
    };
    Tensor::new(shape, data).map_err(|e| RequestError::Format(e.to_string()))
}

/// A decoded, validated request: input tensors in the model's order, plus the rows as JSON
/// objects (column → value) for the prediction log.
pub struct Decoded {
    pub kind: RequestKind,
    pub rows: usize,
    pub tensors: Vec<Tensor>,
    pub inputs: RowInputs,
    /// The cells of the columns a routing policy reads ([`decode_with`]), row after row.
    pub policy_cells: Vec<Json>,
}

/// The rows' inputs, as the log will hold them.
pub enum RowInputs {
    /// Each row's inputs as a JSON object (column → value), ready for the log.
    Plain(Vec<Vec<u8>>),
    /// The rows of a version that seals personal data, written once their keys are known.
    Sealed(PrivateRows),
}

/// MLflow's CSV scoring input (`Content-Type: text/csv`): a header row of column names, then a
/// row per record. Cells are read as pandas reads them: a whole number or a decimal is a number,
/// an empty cell is missing, anything else is text. The result is the `dataframe_split` body
/// the JSON path decodes, so both formats meet the same rules and errors name row and column.
///
/// `text_columns` keep their cells as written (a subject id or an item id `007` stays `"007"`).
pub fn csv_body(bytes: &[u8], text_columns: &[&str]) -> Result<Json, RequestError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let columns: Vec<Json> = reader
        .headers()
        .map_err(|e| RequestError::Format(format!("the CSV header row is not readable: {e}")))?
        .iter()
        .map(|name| Json::String(name.to_string()))
        .collect();
    let keep: Vec<bool> = columns
        .iter()
        .map(|c| text_columns.iter().any(|t| c == *t))
        .collect();
    let mut data = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths { len, .. } => RequestError::Width {
                row,
                expected: columns.len(),
                got: usize::try_from(*len).unwrap_or(usize::MAX),
            },
            _ => RequestError::Format(format!("CSV row {row} is not readable: {e}")),
        })?;
        data.push(Json::Array(
            record
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if keep.get(c).copied().unwrap_or(false) && !cell.is_empty() {
                        Json::String(cell.to_string())
                    } else {
                        csv_cell(cell)
                    }
                })
                .collect(),
        ));
    }
    Ok(serde_json::json!({"dataframe_split": {"columns": columns, "data": data}}))
}

fn csv_cell(text: &str) -> Json {
    if text.is_empty() {
        return Json::Null;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Json::from(i);
    }
    match text.parse::<f64>() {
        // `nan` and `inf` stay text: the numeric rules read "nan" as missing and refuse "inf".
        Ok(f) if f.is_finite() => Json::from(f),
        _ => Json::String(text.to_string()),
    }
}

/// Decodes a request against the model's signature. With a privacy spec, the subject column
/// may come beside the model's columns (it is logged, not scored), and the rows' inputs are left
/// to [`PrivateRows::write`], which seals the personal data once the subjects' keys are known.
pub fn decode(
    body: Json,
    model: &Model,
    signature: &Signature,
    privacy: Option<&Arc<SealPlan>>,
) -> Result<Decoded, RequestError> {
    decode_with(body, model, signature, privacy, &[])
}

/// [`decode`], also taking the cells of `policy_columns` from each row: the columns a routing
/// policy reads (its request key, its context). They may be model columns or come beside
/// them, like a subject; beside them, they are read, never scored.
pub fn decode_with(
    body: Json,
    model: &Model,
    signature: &Signature,
    privacy: Option<&Arc<SealPlan>>,
    policy_columns: &[&str],
) -> Result<Decoded, RequestError> {
    let (table, kind) = decode_table(body)?;
    let names: Vec<&str> = signature.columns.iter().map(|c| c.name.as_str()).collect();
    let n = table.rows.len();
    if n == 0 {
        return Err(RequestError::Format("the request has no rows".into()));
    }
    // Order every row's cells as the signature lists its columns.
    let order: Vec<usize> = match &table.columns {
        Some(given) => {
            if signature.named() {
                let subject = privacy.map(|p| p.spec().subject());
                if let Some(extra) = given.iter().find(|c| {
                    !names.contains(&c.as_str())
                        && Some(c.as_str()) != subject
                        && !policy_columns.contains(&c.as_str())
                }) {
                    return Err(RequestError::ExtraColumn {
                        column: extra.clone(),
                        expected: names.join(", "),
                    });
                }
                names
                    .iter()
                    .map(|n| {
                        given.iter().position(|g| g == n).ok_or_else(|| {
                            RequestError::MissingColumn {
                                column: n.to_string(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?
            } else {
                (0..given.len()).collect()
            }
        }
        None => (0..names.len()).collect(),
    };
    let width = table.columns.as_ref().map_or(names.len(), Vec::len);
    for (r, row) in table.rows.iter().enumerate() {
        if row.len() != width {
            return Err(RequestError::Width {
                row: r,
                expected: width,
                got: row.len(),
            });
        }
    }
    if order.len() != names.len() {
        return Err(RequestError::Width {
            row: 0,
            expected: names.len(),
            got: order.len(),
        });
    }
    let policy_at: Vec<usize> = policy_columns
        .iter()
        .map(|column| {
            let found = match &table.columns {
                Some(given) => given.iter().position(|g| g == column),
                // Rows without names: the policy can read only the model's own columns.
                None => names.iter().position(|n| n == column),
            };
            found.ok_or_else(|| RequestError::MissingColumn {
                column: column.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    let policy_cells: Vec<Json> = table
        .rows
        .iter()
        .flat_map(|row| policy_at.iter().map(|&i| row[i].clone()))
        .collect();
    let allow_missing = model.accepts_missing_values();
    let tensors = match &signature.layout {
        Layout::Tensor { element, .. } => {
            let mut cells = Vec::with_capacity(n * names.len());
            for (r, row) in table.rows.iter().enumerate() {
                for (k, i) in order.iter().enumerate() {
                    cells.push((&row[*i], names[k], r));
                }
            }
            vec![build_tensor(
                *element,
                vec![n, names.len()],
                &cells,
                allow_missing,
            )?]
        }
        Layout::Columns => signature
            .columns
            .iter()
            .enumerate()
            .map(|(k, col)| {
                let cells: Vec<_> = table
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(r, row)| (&row[order[k]], col.name.as_str(), r))
                    .collect();
                build_tensor(col.element, vec![n, 1], &cells, allow_missing)
            })
            .collect::<Result<_, _>>()?,
    };
    let inputs = match privacy {
        Some(plan) => RowInputs::Sealed(PrivateRows::new(plan.clone(), order, table)?),
        None => {
            let keys = signature.json_keys();
            RowInputs::Plain(
                table
                    .rows
                    .iter()
                    .map(|row| {
                        let mut text = Vec::with_capacity(16 * keys.len());
                        write_object(&mut text, row, keys.iter().zip(order.iter().copied()));
                        text
                    })
                    .collect(),
            )
        }
    };
    Ok(Decoded {
        kind,
        rows: n,
        tensors,
        inputs,
        policy_cells,
    })
}

/// Writes `{"key":cell,…}` from a request row, straight from its cells: each member is an
/// escaped key and the index of its cell in `row`.
fn write_object<'a>(
    out: &mut Vec<u8>,
    row: &[Json],
    members: impl Iterator<Item = (&'a Vec<u8>, usize)>,
) {
    out.push(b'{');
    for (k, (key, i)) in members.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, &row[i]);
    }
    out.push(b'}');
}

/// Why a version's privacy spec cannot be used with its model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealPlanError {
    #[error("the model's columns have no names, so none can be marked as personal data (register it with --signature)")]
    Unnamed,
    #[error("`{column}` is not an input column of the model (it takes: {takes})")]
    NotAColumn { column: String, takes: String },
}

/// How a model version's rows are logged when it seals personal data, worked out once when the
/// version loads: which of the model's columns are sealed, where the subject is (a model column,
/// or one requests send beside), and the records' `sealed` field.
#[derive(Debug, Clone)]
pub struct SealPlan {
    spec: PrivacySpec,
    /// Per model column (signature order), whether it is sealed.
    sealed: Vec<bool>,
    /// Each model column's escaped key (the signature's).
    keys: Vec<Vec<u8>>,
    /// The subject's position among the model's columns; `None` when requests send it beside.
    subject_in_model: Option<usize>,
    subject_key: Vec<u8>,
    sealed_json: Vec<u8>,
}

impl SealPlan {
    /// Checks `spec` against the model: its columns must have names, and every PII column but
    /// the subject must be one of them.
    pub fn new(spec: PrivacySpec, signature: &Signature) -> Result<Self, SealPlanError> {
        if !signature.named() {
            return Err(SealPlanError::Unnamed);
        }
        let names: Vec<&str> = signature.columns.iter().map(|c| c.name.as_str()).collect();
        if let Some(column) = spec.pii().iter().find(|c| !names.contains(&c.as_str())) {
            return Err(SealPlanError::NotAColumn {
                column: column.clone(),
                takes: names.join(", "),
            });
        }
        let sealed: Vec<bool> = names.iter().map(|n| spec.seals(n)).collect();
        let subject_in_model = names.iter().position(|n| *n == spec.subject());
        let mut sealed_names: Vec<&str> = names
            .iter()
            .zip(&sealed)
            .filter(|(_, s)| **s)
            .map(|(n, _)| *n)
            .collect();
        if subject_in_model.is_none() {
            sealed_names.push(spec.subject());
        }
        Ok(SealPlan {
            subject_key: serde_json::to_vec(spec.subject()).unwrap_or_default(),
            sealed_json: serde_json::to_vec(&sealed_names).unwrap_or_default(),
            keys: signature.json_keys().to_vec(),
            sealed,
            spec,
            subject_in_model,
        })
    }

    pub fn spec(&self) -> &PrivacySpec {
        &self.spec
    }

    /// The record's `sealed` field: the names of the sealed columns as a JSON list.
    pub fn sealed_json(&self) -> &[u8] {
        &self.sealed_json
    }
}

/// The rows of a request to a version that seals personal data: their cells, until the
/// subjects' keys are known.
pub struct PrivateRows {
    plan: Arc<SealPlan>,
    /// Where each model column is in a row.
    order: Vec<usize>,
    /// Where the subject is in a row.
    subject_index: usize,
    rows: Vec<Vec<Json>>,
    subjects: Vec<String>,
}

impl PrivateRows {
    fn new(plan: Arc<SealPlan>, order: Vec<usize>, table: Table) -> Result<Self, RequestError> {
        let subject = plan.spec.subject();
        let subject_index = match plan.subject_in_model {
            Some(k) => order[k],
            None => {
                let Some(given) = &table.columns else {
                    return Err(RequestError::Format(format!(
                        "this deployment stores personal data per subject: requests must name their columns, `{subject}` among them"
                    )));
                };
                given.iter().position(|g| g == subject).ok_or_else(|| {
                    RequestError::MissingColumn {
                        column: subject.to_string(),
                    }
                })?
            }
        };
        let subjects = table
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                row.get(subject_index)
                    .and_then(subject_text)
                    .ok_or_else(|| RequestError::Cell {
                        column: subject.to_string(),
                        row: r,
                        why: "names no subject: the subject column needs a text or a whole number in every row".into(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(PrivateRows {
            plan,
            order,
            subject_index,
            rows: table.rows,
            subjects,
        })
    }

    /// Whom each row is about, as the request named them.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The records' `sealed` field.
    pub fn sealed_json(&self) -> &[u8] {
        self.plan.sealed_json()
    }

    /// Each row's inputs as two JSON objects: what is not personal data, as text, and the
    /// personal data sealed with the row's subject key (`keys[r]`) under its prediction id
    /// (`ids[r]`) into one value. One seal per row rather than per cell: a nonce and a tag
    /// (28 bytes) once, and one AES-GCM call.
    pub fn write(
        &self,
        ids: &[uuid::Uuid],
        keys: &[&DataKey],
    ) -> Result<Vec<SealedInputs>, PrivacyError> {
        let plan = &self.plan;
        let members = || {
            plan.keys
                .iter()
                .zip(self.order.iter().copied())
                .zip(&plan.sealed)
        };
        let beside = plan
            .subject_in_model
            .is_none()
            .then_some((&plan.subject_key, self.subject_index));
        let (mut private, mut scratch) = (Vec::with_capacity(128), Vec::with_capacity(160));
        self.rows
            .iter()
            .zip(ids)
            .zip(keys)
            .map(|((row, id), key)| {
                let mut open = Vec::with_capacity(24 * plan.keys.len() + 2);
                write_object(
                    &mut open,
                    row,
                    members().filter(|(_, s)| !**s).map(|(m, _)| m),
                );
                private.clear();
                write_object(
                    &mut private,
                    row,
                    members().filter(|(_, s)| **s).map(|(m, _)| m).chain(beside),
                );
                let mut sealed = Vec::with_capacity(private.len() * 4 / 3 + 48);
                key.seal_into(id.as_bytes(), &private, &mut scratch, &mut sealed)?;
                Ok(SealedInputs { open, sealed })
            })
            .collect()
    }
}

/// One row's inputs, split.
pub struct SealedInputs {
    /// The columns that are not personal data, as a JSON object.
    pub open: Vec<u8>,
    /// The personal data as a JSON object, sealed (`pii1:` and base64url).
    pub sealed: Vec<u8>,
}

/// A table column handed to the model directly (a monitor's reference data), not as JSON: the
/// cells meet the same rules a request's cells meet, and errors name the column and row.
#[derive(Debug, Clone, Copy)]
pub enum ColumnCells<'a> {
    /// Numbers, NaN where missing; `integer` when the column holds whole numbers.
    Numbers { values: &'a [f64], integer: bool },
    /// Dictionary-encoded text: `labels[code]`, [`MISSING_CODE`] where missing.
    Text {
        labels: &'a [String],
        codes: &'a [u32],
    },
}

/// The code of a missing text cell in [`ColumnCells::Text`].
pub const MISSING_CODE: u32 = u32::MAX;

#[derive(Clone, Copy)]
enum TypedCell<'a> {
    Number { value: f64, integer: bool },
    Text(&'a str),
    Missing,
}

impl<'a> ColumnCells<'a> {
    fn cell(&self, row: usize) -> TypedCell<'a> {
        match *self {
            ColumnCells::Numbers { values, integer } => match values[row] {
                v if v.is_finite() => TypedCell::Number { value: v, integer },
                _ => TypedCell::Missing,
            },
            ColumnCells::Text { labels, codes } => match codes[row] {
                MISSING_CODE => TypedCell::Missing,
                c => labels
                    .get(c as usize)
                    .map_or(TypedCell::Missing, |l| TypedCell::Text(l)),
            },
        }
    }
}

impl CellValue for TypedCell<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            TypedCell::Text(s) => Some(s),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            TypedCell::Number { value, integer }
                if *integer && value.fract() == 0.0 && value.abs() < 9e15 =>
            {
                (*value as i64).to_string()
            }
            TypedCell::Number { value, .. } => Json::from(*value).to_string(),
            TypedCell::Text(s) => Json::from(*s).to_string(),
            TypedCell::Missing => "null".into(),
        }
    }

    fn number(&self, column: &str, row: usize, allow_missing: bool) -> Result<f64, RequestError> {
        let v = match self {
            TypedCell::Number { value, .. } => *value,
            TypedCell::Missing => f64::NAN,
            TypedCell::Text(s) if s.eq_ignore_ascii_case("nan") => f64::NAN,
            TypedCell::Text(_) => {
                return Err(RequestError::Cell {
                    column: column.to_string(),
                    row,
                    why: format!("expected a number, got {}", self.describe()),
                })
            }
        };
        checked(v, column, row, allow_missing)
    }
}

/// The model's input tensors for rows `rows` of `columns`, given in the signature's column
/// order: what [`decode`] builds from a request, built from typed columns.
pub fn tensors_from_columns(
    model: &Model,
    signature: &Signature,
    columns: &[ColumnCells<'_>],
    rows: std::ops::Range<usize>,
) -> Result<Vec<Tensor>, RequestError> {
    let names = signature.column_names();
    if columns.len() != names.len() {
        return Err(RequestError::Width {
            row: rows.start,
            expected: names.len(),
            got: columns.len(),
        });
    }
    let n = rows.len();
    let allow_missing = model.accepts_missing_values();
    match &signature.layout {
        Layout::Tensor { element, .. } => {
            let mut cells = Vec::with_capacity(n * names.len());
            for r in rows {
                for (column, name) in columns.iter().zip(&names) {
                    cells.push((column.cell(r), name.as_str(), r));
                }
            }
            Ok(vec![build_tensor(
                *element,
                vec![n, names.len()],
                &cells,
                allow_missing,
            )?])
        }
        Layout::Columns => signature
            .columns
            .iter()
            .zip(columns)
            .map(|(spec, column)| {
                let cells: Vec<_> = rows
                    .clone()
                    .map(|r| (column.cell(r), spec.name.as_str(), r))
                    .collect();
                build_tensor(spec.element, vec![n, 1], &cells, allow_missing)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (columns, rows, kind) of a decoded body.
    fn table_of(body: Json) -> (Option<Vec<String>>, Vec<Vec<Json>>, RequestKind) {
        let (t, kind) = decode_table(body).unwrap();
        (t.columns, t.rows, kind)
    }

    #[test]
    fn csv_reads_as_the_dataframe_split_body() {
        let kept = csv_body(b"id,x\n007,1\n", &["id"]).unwrap();
        assert_eq!(
            kept["dataframe_split"]["data"][0],
            serde_json::json!(["007", 1])
        );
        let body = csv_body(b"a,b,c\n1,2.5,x\n,nan,-3\n", &[]).unwrap();
        assert_eq!(
            body,
            json!({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2.5, "x"], [null, "nan", -3]]}})
        );
        assert!(matches!(
            csv_body(b"a,b\n1\n", &[]),
            Err(RequestError::Width {
                row: 0,
                expected: 2,
                got: 1
            })
        ));
    }

    #[test]
    fn integers_outside_the_models_type_and_booleans_as_numbers_are_refused() {
        let cell = json!(3_000_000_000_i64);
        let cells = [(&cell, "n", 0)];
        assert!(build_tensor(ElementType::Int32, vec![1, 1], &cells, false).is_err());
        assert!(build_tensor(ElementType::Int64, vec![1, 1], &cells, false).is_ok());
        let huge = json!(1e19);
        assert!(build_tensor(ElementType::Int64, vec![1, 1], &[(&huge, "n", 0)], false).is_err());
        let yes = json!(true);
        assert!(build_tensor(ElementType::Float, vec![1, 1], &[(&yes, "n", 0)], false).is_err());
        assert!(build_tensor(ElementType::Bool, vec![1, 1], &[(&yes, "n", 0)], false).is_ok());
        let two = json!(2);
        assert!(build_tensor(ElementType::Bool, vec![1, 1], &[(&two, "n", 0)], false).is_err());
    }

    #[test]
    fn every_mlflow_format_decodes_to_the_same_rows() {
        let split = table_of(
            json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}),
        );
        let records =
            table_of(json!({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}));
        let columns = table_of(json!({"inputs": {"a": [1, 2], "b": ["x", "y"]}}));
        assert_eq!(split.1, records.1);
        assert_eq!(split.1, columns.1);
        assert_eq!(split.2, RequestKind::DataFrame);
        assert_eq!(columns.2, RequestKind::Tensor);
        let lists = table_of(json!({"instances": [[1, 2], [3, 4]]}));
        assert_eq!(lists.0, None);
        assert_eq!(lists.1[1], vec![json!(3), json!(4)]);
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let err = |b: Json| {
            decode_table(b)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(json!([1, 2])).contains("JSON object"));
        assert!(err(json!({"rows": []})).contains("needs one of"));
        assert!(err(json!({"instances": [], "inputs": []})).contains("more than one"));
        assert!(err(json!({"dataframe_split": {"data": 3}})).contains("dataframe_split.data"));
        assert!(err(json!({"inputs": {"a": [1], "b": [1, 2]}})).contains("rows"));
        assert!(matches!(
            decode_table(json!({"dataframe_records": [{"a": 1}, {"a": 1, "z": 2}]})),
            Err(RequestError::ExtraColumn { column, .. }) if column == "z"
        ));
    }

    #[test]
    fn cells_are_checked_by_type_with_column_and_row() {
        let cells = [(&json!("x"), "income", 4usize)];
        assert_eq!(
            build_tensor(ElementType::Float, vec![1, 1], &cells, false).unwrap_err(),
            RequestError::Cell {
                column: "income".into(),
                row: 4,
                why: "expected a number, got \"x\"".into()
            }
        );
        let nan = [(&Json::Null, "age", 0usize)];
        assert!(build_tensor(ElementType::Float, vec![1, 1], &nan, false).is_err());
        let t = build_tensor(ElementType::Float, vec![1, 1], &nan, true).unwrap();
        assert!(matches!(&t.data, TensorData::Float(v) if v[0].is_nan()));
        let frac = [(&json!(1.5), "n", 0usize)];
        assert!(build_tensor(ElementType::Int64, vec![1, 1], &frac, false).is_err());
    }
}
