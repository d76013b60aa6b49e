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
}

impl RankingError {
    pub fn column(&self) -> Option<&str> {
        match self {
            RankingError::ItemType { column, .. } | RankingError::Duplicate { column, .. } => {
                Some(column)
            }
            RankingError::Score(_) => None,
        }
    }

    pub fn row(&self) -> Option<usize> {
        match self {
            RankingError::ItemType { row, .. } | RankingError::Duplicate { row, .. } => Some(*row),
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
    order.sort_by(|&a, &b| match (scores[a].is_nan(), scores[b].is_nan()) {
        (false, false) => scores[b].total_cmp(&scores[a]),
        (x, y) => x.cmp(&y),
    });
    order
}

/// The record's outputs, `{"items": [...], "scores": [...]}` in served order; a NaN score is
/// written `null` (JSON has no NaN).
pub fn outputs_json(items: &[Json], scores: &[f64], order: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 * order.len() + 24);
    out.extend_from_slice(b"{\"items\":[");
    for (k, &r) in order.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &items[r]);
    }
    out.extend_from_slice(b"],\"scores\":[");
    for (k, &r) in order.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &serde_json::Number::from_f64(scores[r]));
    }
    out.extend_from_slice(b"]}");
    out
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
        assert_eq!(
            String::from_utf8(outputs_json(&items, &[0.5, 0.75], &order)).unwrap(),
            r#"{"items":[3,"b"],"scores":[0.75,0.5]}"#
        );
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
