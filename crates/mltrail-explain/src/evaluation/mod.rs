//! A model version's evaluation on a labelled dataset: the version runs over the rows with the
//! serving runtime (the same kernels and input tensors `mltrail serve` uses), and the answers are
//! compared with the labels ([`metrics`]: scikit-learn's numbers), split by sensitive columns
//! (Fairlearn's, [`crate::fairness`]), and explained on a sample (global importance: mean |SHAP|
//! per column). [`report`] renders it as one self-contained HTML page.

pub mod metrics;
pub mod report;

use mltrail_data::table::{self, Table, Values};
use mltrail_serving::deployment::LoadedModel;
use mltrail_serving::request::{tensors_from_columns, ColumnCells, RequestError, MISSING_CODE};
use mltrail_serving::response::row_object;
use mltrail_serving::runtime::RuntimeError;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::fairness::{FairnessReport, Grouping};
use crate::model::ModelExplainer;
use metrics::{Classification, Regression, Scored};

/// The layout version of an evaluation's JSON.
pub const FORMAT: &str = "mltrail.evaluation/1";

/// Rows per model run, so input tensors stay small.
const BATCH_ROWS: usize = 10_000;

// The table's missing-text code is the one serving reads.
const _: () = assert!(table::MISSING == MISSING_CODE);

/// Why rows could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreTableError {
    #[error("the data has no column `{0}`, which the model takes")]
    MissingColumn(String),
    #[error("the rows do not fit the model: {0}")]
    Input(#[source] RequestError),
    #[error("running the model: {0}")]
    Run(#[source] RuntimeError),
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Scoring(#[from] ScoreTableError),
    #[error("--label `{0}` is not a column of the dataset")]
    MissingLabel(String),
    #[error("--sensitive `{0}` is not a column of the dataset")]
    MissingSensitive(String),
    #[error("the model has no outputs to evaluate")]
    NoOutputs,
    #[error("the model's first output `{0}` is neither a class nor a number on some row")]
    Prediction(String),
    #[error("fairness needs two classes; the labels and predictions hold {0}")]
    FairnessClasses(usize),
}

/// Global importance: the mean absolute SHAP value of each column over explained rows (for
/// several outputs, averaged over them too), largest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Importance {
    pub method: String,
    pub rows: usize,
    pub background_digest: String,
    pub columns: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub format: &'static str,
    pub label: String,
    pub rows: usize,
    pub task: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
    /// Fairlearn's layout (`mltrail fairness --json`), when sensitive columns were named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance: Option<Importance>,
}

fn cells(values: &Values) -> ColumnCells<'_> {
    match values {
        Values::Numeric { values, integer } => ColumnCells::Numbers {
            values,
            integer: *integer,
        },
        Values::Text { labels, codes } => ColumnCells::Text { labels, codes },
    }
}

/// Runs the model over the first `rows` rows of `table` (its signature's columns), a batch at a
/// time; one output object per row, as serving answers it.
pub fn score_table(
    loaded: &LoadedModel,
    table: &Table,
    rows: usize,
) -> Result<Vec<Map<String, Json>>, ScoreTableError> {
    let columns: Vec<ColumnCells<'_>> = loaded
        .signature
        .column_names()
        .iter()
        .map(|c| {
            table
                .column(c)
                .map(|col| cells(&col.values))
                .ok_or_else(|| ScoreTableError::MissingColumn(c.clone()))
        })
        .collect::<Result<_, _>>()?;
    let rows = rows.min(table.rows);
    let mut out = Vec::with_capacity(rows);
    for start in (0..rows).step_by(BATCH_ROWS) {
        let batch = start..(start + BATCH_ROWS).min(rows);
        let n = batch.len();
        let tensors = tensors_from_columns(&loaded.model, &loaded.signature, &columns, batch)
            .map_err(ScoreTableError::Input)?;
        let outputs = loaded.model.run(tensors).map_err(ScoreTableError::Run)?;
        out.extend((0..n).map(|r| row_object(&loaded.output_names, &outputs, r, n)));
    }
    Ok(out)
}

/// A value as a class name: strings and booleans as they are, integers (and whole doubles, as
/// a CSV label column reads) in decimal.
pub fn class_name(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Json::Number(n) => n
            .as_f64()
            .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
            .map(|x| format!("{}", x as i64)),
        Json::Array(items) if items.len() == 1 => class_name(&items[0]),
        _ => None,
    }
}

fn is_class(value: &Json) -> bool {
    match value {
        Json::String(_) | Json::Bool(_) => true,
        Json::Number(n) => n.is_i64() || n.is_u64(),
        Json::Array(items) if items.len() == 1 => is_class(&items[0]),
        _ => false,
    }
}

fn number(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::Array(items) if items.len() == 1 => number(&items[0]),
        _ => None,
    }
}

/// One label cell as JSON, as a request would carry it.
pub fn label_value(values: &Values, row: usize) -> Json {
    match values {
        Values::Numeric { values, integer } => {
            let v = values[row];
            if !v.is_finite() {
                Json::Null
            } else if *integer && v.fract() == 0.0 && v.abs() < 9e15 {
                Json::from(v as i64)
            } else {
                Json::from(v)
            }
        }
        Values::Text { labels, codes } => match codes[row] {
            table::MISSING => Json::Null,
            c => Json::from(labels[c as usize].clone()),
        },
    }
}

/// A row's class probabilities: a map of class → probability (a ZipMap), or an array whose
/// columns are the classes in sorted order (scikit-learn's `classes_`).
fn probabilities(value: Option<&Json>) -> Option<(Vec<String>, Vec<f64>)> {
    match value? {
        Json::Object(m) => {
            let (names, values): (Vec<String>, Vec<f64>) = m
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .unzip();
            Some((names, values))
        }
        Json::Array(items) if items.len() == 1 && items[0].is_object() => {
            probabilities(items.first())
        }
        Json::Array(items) if items.len() >= 2 => {
            let values: Vec<f64> = items.iter().map(Json::as_f64).collect::<Option<_>>()?;
            Some((Vec::new(), values))
        }
        _ => None,
    }
}

/// What to evaluate on.
pub struct Inputs<'a> {
    pub loaded: &'a LoadedModel,
    pub table: &'a Table,
    pub label: &'a str,
    pub sensitive: &'a [String],
    /// Explains up to `importance_rows` rows for global importance, when given.
    pub explainer: Option<&'a ModelExplainer>,
    pub importance_rows: usize,
}

/// Evaluates the model on every row of the table.
pub fn evaluate(inputs: &Inputs<'_>) -> Result<Evaluation, EvaluationError> {
    let Inputs {
        loaded,
        table,
        label,
        sensitive,
        ..
    } = *inputs;
    let target = table
        .column(label)
        .ok_or_else(|| EvaluationError::MissingLabel(label.to_string()))?;
    let first = loaded
        .output_names
        .first()
        .ok_or(EvaluationError::NoOutputs)?
        .clone();
    let outputs = score_table(loaded, table, table.rows)?;
    let predictions: Vec<&Json> = outputs
        .iter()
        .map(|o| o.get(&first).unwrap_or(&Json::Null))
        .collect();
    // Classes are strings, booleans or integers; a regressor answers doubles.
    let classification = predictions.iter().all(|p| is_class(p));
    let mut evaluation = Evaluation {
        format: FORMAT,
        label: label.to_string(),
        rows: table.rows,
        task: if classification {
            "classification"
        } else {
            "regression"
        },
        classification: None,
        regression: None,
        fairness: None,
        importance: None,
    };
    if classification {
        let second = loaded.output_names.get(1);
        let mut scored = Vec::with_capacity(outputs.len());
        let mut truth = Vec::with_capacity(outputs.len());
        let mut named: Option<Vec<String>> = None;
        for (r, (o, p)) in outputs.iter().zip(&predictions).enumerate() {
            let Some(actual) = class_name(&label_value(&target.values, r)) else {
                continue; // an unlabelled row is not evaluated
            };
            let predicted =
                class_name(p).ok_or_else(|| EvaluationError::Prediction(first.clone()))?;
            let probs = probabilities(second.and_then(|s| o.get(s)));
            let probs = match probs {
                Some((names, values)) => {
                    if !names.is_empty() {
                        named.get_or_insert(names);
                    }
                    Some(values)
                }
                None => None,
            };
            truth.push(actual);
            scored.push(Scored {
                predicted,
                probabilities: probs,
            });
        }
        // Array probabilities: their columns are the sorted classes, when they are as many.
        let classes = named.unwrap_or_else(|| {
            let mut seen: Vec<String> = truth
                .iter()
                .cloned()
                .chain(scored.iter().map(|s| s.predicted.clone()))
                .collect();
            seen.sort();
            seen.dedup();
            seen
        });
        if scored.iter().any(|s| {
            s.probabilities
                .as_ref()
                .is_some_and(|p| p.len() != classes.len())
        }) {
            for s in &mut scored {
                s.probabilities = None;
            }
        }
        let metrics = metrics::classification(&truth, &scored, &classes);
        if !sensitive.is_empty() {
            let positive = metrics
                .positive_class
                .clone()
                .ok_or(EvaluationError::FairnessClasses(metrics.classes.len()))?;
            let labelled: Vec<usize> = (0..table.rows)
                .filter(|&r| class_name(&label_value(&target.values, r)).is_some())
                .collect();
            let groups: Vec<Grouping> = sensitive
                .iter()
                .map(|name| {
                    let column = table
                        .column(name)
                        .ok_or_else(|| EvaluationError::MissingSensitive(name.clone()))?;
                    let all = column.values.categories();
                    Ok((
                        name.clone(),
                        labelled.iter().map(|&r| all[r].clone()).collect(),
                    ))
                })
                .collect::<Result<_, EvaluationError>>()?;
            let t: Vec<bool> = truth.iter().map(|c| *c == positive).collect();
            let p: Vec<bool> = scored.iter().map(|s| s.predicted == positive).collect();
            evaluation.fairness = Some(FairnessReport::new(&groups, &t, &p).to_json());
        }
        evaluation.classification = Some(thin_roc(metrics));
    } else {
        let mut truth = Vec::new();
        let mut predicted = Vec::new();
        for (r, p) in predictions.iter().enumerate() {
            let actual = number(&label_value(&target.values, r));
            if let Some(actual) = actual {
                truth.push(actual);
                predicted
                    .push(number(p).ok_or_else(|| EvaluationError::Prediction(first.clone()))?);
            }
        }
        evaluation.regression = Some(metrics::regression(&truth, &predicted));
    }
    if let Some(explainer) = inputs.explainer {
        evaluation.importance = importance(explainer, loaded, table, inputs.importance_rows);
    }
    Ok(evaluation)
}

/// Points of the ROC curve kept in an evaluation: its JSON stays small at a million rows.
pub const ROC_POINTS: usize = 1001;

/// Keeps at most [`ROC_POINTS`] points of the curve, evenly spaced by index, first and last
/// included (the metrics are computed before, from every row).
fn thin_roc(mut m: Classification) -> Classification {
    if let Some(roc) = &mut m.roc_curve {
        let n = roc.fpr.len();
        if n > ROC_POINTS {
            let keep: Vec<usize> = (0..ROC_POINTS)
                .map(|i| i * (n - 1) / (ROC_POINTS - 1))
                .collect();
            let pick = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
            roc.fpr = pick(&roc.fpr);
            roc.tpr = pick(&roc.tpr);
            roc.thresholds = pick(&roc.thresholds);
        }
    }
    m
}

/// Mean |SHAP| per column over the first `rows` rows; `None` when they cannot be explained
/// (text inputs, a failed explanation: logged, the evaluation stands without it).
fn importance(
    explainer: &ModelExplainer,
    loaded: &LoadedModel,
    table: &Table,
    rows: usize,
) -> Option<Importance> {
    let columns = loaded.signature.column_names();
    let rows = rows.min(table.rows);
    let mut by_column = Vec::with_capacity(columns.len());
    for name in &columns {
        match &table.column(name)?.values {
            Values::Numeric { values, .. } => by_column.push(values),
            Values::Text { .. } => return None,
        }
    }
    let mut flat = Vec::with_capacity(rows * columns.len());
    for r in 0..rows {
        flat.extend(by_column.iter().map(|c| c[r]));
    }
    let explained = match explainer.explain(&loaded.model, &flat) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "global importance left out of the evaluation");
            return None;
        }
    };
    let k = columns.len();
    let mut totals = vec![0.0; k];
    let mut count = 0usize;
    for e in &explained {
        let outputs = e.values.len() / k.max(1);
        for (i, v) in e.values.iter().enumerate() {
            totals[i % k] += v.abs() / outputs.max(1) as f64;
        }
        count += 1;
    }
    let mut ranked: Vec<(String, f64)> = columns
        .into_iter()
        .zip(totals.into_iter().map(|t| t / count.max(1) as f64))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(Importance {
        method: explainer.method().to_string(),
        rows: count,
        background_digest: explainer.background_digest().to_string(),
        columns: ranked,
    })
}
