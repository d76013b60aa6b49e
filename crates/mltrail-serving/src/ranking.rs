//! A deployment whose answer is a ranking (`[serve] output = "ranking"`): a request's rows are
//! the candidate items of one impression, the model scores each, and the answer is the item ids
//! by descending score under one prediction id. The record keeps the candidates (their inputs,
//! the item id first) and the served order with its scores, so what a front end later reports
//! it displayed can be compared with what was served (`mltrail_monitor::ranking`).

use std::borrow::Cow;

use serde_json::Value as Json;

use crate::runtime::{MapKeys, Value};

/// How a ranking deployment reads its requests and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingOutput {
    /// The request column holding each candidate's item id (string or integer, unique within a
    /// request); it need not be a model input.
    pub item_column: String,
    /// The model output ranked by; `None`: a classifier's probabilities (its second output),
    /// else the only output.
    pub score_output: Option<String>,
    /// The request column naming whom the impression is for (a user id, the same on every
    /// row), logged as the impression's `request_key`: what repeats are counted by.
    pub key_column: Option<String>,
}

/// Why a request could not be ranked.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    #[error("row {row}: the item id in `{column}` must be a string or an integer, got {got}")]
    ItemType {
        row: usize,
        column: String,
        got: String,
    },
    #[error("rows {first} and {row}: item `{item}` is a candidate twice (column `{column}`); an impression lists each item once")]
    Duplicate {
        first: usize,
        row: usize,
        item: String,
        column: String,
    },
    /// The served version's outputs hold no single score per row.
    #[error("the model's outputs cannot rank the items: {0}")]
    Score(String),
    #[error("row {row}: the request key in `{column}` must be a string or an integer, got {got}")]
    KeyType {
        row: usize,
        column: String,
        got: String,
    },
    #[error(
        "row {row}: `{column}` is {got}, row 0's is {first}; an impression is for one requester"
    )]
    Key {
        row: usize,
        column: String,
        got: String,
        first: String,
    },
}

impl RankingError {
    pub fn column(&self) -> Option<&str> {
        match self {
            RankingError::ItemType { column, .. }
            | RankingError::Duplicate { column, .. }
            | RankingError::KeyType { column, .. }
            | RankingError::Key { column, .. } => Some(column),
            RankingError::Score(_) => None,
        }
    }

    pub fn row(&self) -> Option<usize> {
        match self {
            RankingError::ItemType { row, .. }
            | RankingError::Duplicate { row, .. }
            | RankingError::KeyType { row, .. }
            | RankingError::Key { row, .. } => Some(*row),
            RankingError::Score(_) => None,
        }
    }
}

/// An item id as compared with the ids a front end reports: a string as it is, an integer in
/// decimal.
pub fn item_text(item: &Json) -> Option<Cow<'_, str>> {
    match item {
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// The request's item ids, checked: each a string or an integer, none twice.
pub fn item_ids(cells: Vec<Json>, column: &str) -> Result<Vec<Json>, RankingError> {
    let mut seen: std::collections::HashMap<String, usize> =
        std::collections::HashMap::with_capacity(cells.len());
    for (row, cell) in cells.iter().enumerate() {
        let text = item_text(cell).ok_or_else(|| RankingError::ItemType {
            row,
            column: column.to_string(),
            got: cell.to_string(),
        })?;
        if let Some(first) = seen.insert(text.to_string(), row) {
            return Err(RankingError::Duplicate {
                first,
                row,
                item: text.into_owned(),
                column: column.to_string(),
            });
        }
    }
    Ok(cells)
}

/// The impression's request key from its rows' `column` cells: a string or an integer, the same
/// on every row.
pub fn request_key(cells: &[Json], column: &str) -> Result<Json, RankingError> {
    let first = cells.first().cloned().unwrap_or(Json::Null);
    let bad_type = |row: usize, got: &Json| RankingError::KeyType {
        row,
        column: column.to_string(),
        got: got.to_string(),
    };
    if item_text(&first).is_none() {
        return Err(bad_type(0, &first));
    }
    if let Some((row, got)) = cells.iter().enumerate().find(|(_, c)| **c != first) {
        return Err(RankingError::Key {
            row,
            column: column.to_string(),
            got: got.to_string(),
            first: first.to_string(),
        });
    }
    Ok(first)
}

/// The output a ranking reads its scores from: the one named, else the second of two or more
/// (a classifier's probabilities), else the first.
pub fn score_output_index(
    output_names: &[String],
    named: Option<&str>,
) -> Result<usize, RankingError> {
    match named {
        Some(name) => output_names.iter().position(|n| n == name).ok_or_else(|| {
            RankingError::Score(format!(
                "the model has no output `{name}` (it has {})",
                output_names.join(", ")
            ))
        }),
        None if output_names.len() >= 2 => Ok(1),
        None if output_names.is_empty() => {
            Err(RankingError::Score("the model has no outputs".into()))
        }
        None => Ok(0),
    }
}

/// One score per row from `output`: a single value per row, or a binary classifier's
/// probability of its positive class (the second of two columns, or the `1`/`true` entry of a
/// map, else its greatest key).
pub fn scores(output: &Value, name: &str, rows: usize) -> Result<Vec<f64>, RankingError> {
    match output {
        Value::Tensor(t) => {
            let values = t
                .to_f64("ranking")
                .map_err(|_| RankingError::Score(format!("output `{name}` is not numeric")))?;
            let width = values.len().checked_div(rows).unwrap_or(0);
            if rows == 0 || values.len() != rows * width {
                return Err(RankingError::Score(format!(
                    "output `{name}` holds {} values for {rows} rows",
                    values.len()
                )));
            }
            match width {
                1 => Ok(values),
                2 => Ok(values.chunks(2).map(|p| p[1]).collect()),
                w => Err(RankingError::Score(format!(
                    "output `{name}` has {w} values per row; a ranking needs one score per row or a binary classifier's two probabilities (name another with score_output)"
                ))),
            }
        }
        Value::Maps(m) => {
            let keys = m.key_count();
            if keys != 2 || m.rows() != rows {
                return Err(RankingError::Score(format!(
                    "output `{name}` maps {keys} classes; a ranking needs a binary classifier's two probabilities"
                )));
            }
            let positive = match &m.keys {
                MapKeys::Int64(k) => k.iter().position(|&k| k == 1),
                MapKeys::String(k) => k
                    .iter()
                    .position(|k| k == "1" || k == "true" || k == "True"),
            }
            .unwrap_or_else(|| match &m.keys {
                MapKeys::Int64(k) => usize::from(k[1] > k[0]),
                MapKeys::String(k) => usize::from(k[1] > k[0]),
            });
            Ok(m.values.chunks(2).map(|p| f64::from(p[positive])).collect())
        }
    }
}

/// Row indices by descending score; equal scores keep the request's order, and a NaN score
/// comes last.
pub fn served_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // `partial_cmp`, not `total_cmp`: 0.0 and -0.0 are equal scores.
    order.sort_by(|&a, &b| match (scores[a].is_nan(), scores[b].is_nan()) {
        (false, false) => scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal),
        (x, y) => x.cmp(&y),
    });
    order
}

/// What the catalog said of an impression's items.
pub struct CatalogCheck<'a> {
    /// `NAME@VERSION` of the catalog in force.
    pub version: &'a str,
    /// Its available items.
    pub available: usize,
    pub mode: crate::catalog::CatalogMode,
    /// The rows whose item it does not hold, in served order.
    pub out: Vec<usize>,
}

/// An impression as its record's outputs hold it.
pub struct Impression<'a> {
    pub items: &'a [Json],
    pub scores: &'a [f64],
    /// The rows answered, by descending score (without the rows a catalog filtered out).
    pub order: &'a [usize],
    pub catalog: Option<&'a CatalogCheck<'a>>,
    pub request_key: Option<&'a Json>,
}

fn list(out: &mut Vec<u8>, rows: &[usize], mut each: impl FnMut(&mut Vec<u8>, usize)) {
    out.push(b'[');
    for (k, &r) in rows.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        each(out, r);
    }
    out.push(b']');
}

impl Impression<'_> {
    /// The record's outputs, `{"items": [...], "scores": [...]}` in served order, with
    /// `out_of_catalog` (and `filtered`, `catalog`, `catalog_items`) when a catalog checked
    /// them and `request_key` when the request named one; a NaN score is written `null`
    /// (JSON has no NaN).
    pub fn outputs_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 * self.order.len() + 24);
        let item = |out: &mut Vec<u8>, r: usize| {
            let _ = serde_json::to_writer(out, &self.items[r]);
        };
        out.extend_from_slice(b"{\"items\":");
        list(&mut out, self.order, item);
        out.extend_from_slice(b",\"scores\":");
        list(&mut out, self.order, |out, r| {
            let _ = serde_json::to_writer(out, &serde_json::Number::from_f64(self.scores[r]));
        });
        if let Some(check) = self.catalog {
            out.extend_from_slice(b",\"out_of_catalog\":");
            list(&mut out, &check.out, item);
            if check.mode == crate::catalog::CatalogMode::Filter {
                out.extend_from_slice(b",\"filtered\":true");
            }
            out.extend_from_slice(b",\"catalog\":");
            let _ = serde_json::to_writer(&mut out, check.version);
            out.extend_from_slice(format!(",\"catalog_items\":{}", check.available).as_bytes());
        }
        if let Some(key) = self.request_key {
            out.extend_from_slice(b",\"request_key\":");
            let _ = serde_json::to_writer(&mut out, key);
        }
        out.push(b'}');
        out
    }
}

/// The record's inputs: the candidates in request order, each row's object with its item id
/// first (`{"item_id": …, "x": …}`; an item column the model also reads is not repeated).
pub fn inputs_json(rows: &[Vec<u8>], items: &[Json], item_column: &str, is_input: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(Vec::len).sum::<usize>() + 32 * rows.len());
    out.push(b'[');
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        if is_input {
            out.extend_from_slice(row);
            continue;
        }
        out.push(b'{');
        let _ = serde_json::to_writer(&mut out, item_column);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, &items[r]);
        // The row's own object without its opening brace; `{}` leaves only the closing one.
        let rest = row.get(1..).unwrap_or(b"}");
        if rest != b"}" {
            out.push(b',');
        }
        out.extend_from_slice(rest);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{MapSequence, Tensor};
    use serde_json::json;

    #[test]
    fn items_are_strings_or_integers_once_each() {
        let ids = item_ids(vec![json!("b"), json!(7), json!("7x")], "item").unwrap();
        assert_eq!(ids.len(), 3);
        let e = item_ids(vec![json!("a"), json!(1.5)], "item").unwrap_err();
        assert_eq!((e.row(), e.column()), (Some(1), Some("item")));
        let e = item_ids(vec![json!(7), json!("a"), json!("7")], "item").unwrap_err();
        assert!(
            matches!(
                e,
                RankingError::Duplicate {
                    first: 0,
                    row: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(item_ids(vec![json!(null)], "item").is_err());
    }

    #[test]
    fn the_served_order_is_by_descending_score_stable_and_nan_last() {
        assert_eq!(
            served_order(&[0.2, f64::NAN, 0.9, 0.2, -1.0]),
            vec![2, 0, 3, 4, 1]
        );
        assert_eq!(served_order(&[-0.0, 0.0]), vec![0, 1], "equal scores");
    }

    #[test]
    fn scores_come_from_one_value_or_the_positive_class() {
        let one = Value::Tensor(Tensor::floats(vec![3, 1], vec![0.5, 0.25, 2.0]));
        assert_eq!(scores(&one, "v", 3).unwrap(), vec![0.5, 0.25, 2.0]);
        let two = Value::Tensor(Tensor::floats(vec![2, 2], vec![0.75, 0.25, 0.5, 0.5]));
        assert_eq!(scores(&two, "p", 2).unwrap(), vec![0.25, 0.5]);
        let three = Value::Tensor(Tensor::floats(vec![1, 3], vec![0.1, 0.2, 0.7]));
        assert!(scores(&three, "p", 1).is_err());
        let maps = Value::Maps(MapSequence {
            keys: MapKeys::Int64(vec![0, 1]),
            values: vec![0.75, 0.25, 0.125, 0.875],
        });
        assert_eq!(scores(&maps, "p", 2).unwrap(), vec![0.25, 0.875]);
        assert_eq!(
            score_output_index(&["label".into(), "probabilities".into()], None).unwrap(),
            1
        );
        assert_eq!(score_output_index(&["variable".into()], None).unwrap(), 0);
        assert!(score_output_index(&["variable".into()], Some("nope")).is_err());
    }

    #[test]
    fn records_keep_the_candidates_and_the_served_order() {
        let items = vec![json!("b"), json!(3)];
        let order = served_order(&[0.5, 0.75]);
        let impression = Impression {
            items: &items,
            scores: &[0.5, 0.75],
            order: &order,
            catalog: None,
            request_key: None,
        };
        assert_eq!(
            String::from_utf8(impression.outputs_json()).unwrap(),
            r#"{"items":[3,"b"],"scores":[0.75,0.5]}"#
        );
        let check = CatalogCheck {
            version: "c@2",
            available: 9,
            mode: crate::catalog::CatalogMode::Filter,
            out: vec![0],
        };
        let key = json!("u1");
        let filtered = Impression {
            order: &[1],
            catalog: Some(&check),
            request_key: Some(&key),
            ..impression
        };
        assert_eq!(
            String::from_utf8(filtered.outputs_json()).unwrap(),
            r#"{"items":[3],"scores":[0.75],"out_of_catalog":["b"],"filtered":true,"catalog":"c@2","catalog_items":9,"request_key":"u1"}"#
        );
        assert!(request_key(&[json!("u"), json!("u")], "user").is_ok());
        let e = request_key(&[json!("u"), json!("v")], "user").unwrap_err();
        assert_eq!((e.row(), e.column()), (Some(1), Some("user")));
        let rows = vec![br#"{"x":1}"#.to_vec(), b"{}".to_vec()];
        assert_eq!(
            String::from_utf8(inputs_json(&rows, &items, "item", false)).unwrap(),
            r#"[{"item":"b","x":1},{"item":3}]"#
        );
        assert_eq!(
            String::from_utf8(inputs_json(&rows, &items, "x", true)).unwrap(),
            r#"[{"x":1},{}]"#
        );
    }
}
