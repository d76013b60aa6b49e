//! Two tables compared column by column: each column typed by the reference (or by what the
//! caller declares), tested with Evidently's default test (or one forced method), and the
//! dataset verdict. `mltrail drift`, `mltrail monitor check` and the server's monitors all
//! compare through here.

use mltrail_data::table::{self, Table, Values};
use serde::Serialize;

use crate::drift::{self, Categories, ColumnDrift, DatasetDrift, DriftError, Method, Sample};
use crate::report::{self, Histogram};

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Only these columns (empty: every column both tables have).
    pub columns: Vec<String>,
    pub exclude: Vec<String>,
    /// Columns to test as categories whatever their values look like.
    pub categorical: Vec<String>,
    /// Columns to test as numbers even when they have few distinct values.
    pub numerical: Vec<String>,
    /// One test for every column instead of Evidently's choice.
    pub method: Option<Method>,
    /// The dataset drifts when at least this share of columns drift.
    pub drift_share: f64,
    /// Also bin both samples for a report.
    pub histograms: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            columns: Vec::new(),
            exclude: Vec::new(),
            categorical: Vec::new(),
            numerical: Vec::new(),
            method: None,
            drift_share: 0.5,
            histograms: false,
        }
    }
}

impl CompareOptions {
    /// Whether a column is read at all (for readers that can skip columns).
    pub fn wants(&self, name: &str) -> bool {
        (self.columns.is_empty() || self.columns.iter().any(|c| c == name))
            && !self.exclude.iter().any(|c| c == name)
    }

    /// Types columns as a dataset version's schema declares them (`[{"name", "type"}]` with
    /// numeric, categorical, text or datetime): free text and timestamps are not tested, the
    /// others are tested as declared. A column the caller already typed keeps the caller's type.
    pub fn follow_schema(&mut self, schema: &serde_json::Value) {
        let Some(columns) = schema.as_array() else {
            return;
        };
        for column in columns {
            let (Some(name), Some(kind)) = (column["name"].as_str(), column["type"].as_str())
            else {
                continue;
            };
            let name = name.to_string();
            if self.categorical.contains(&name) || self.numerical.contains(&name) {
                continue;
            }
            match kind {
                "categorical" => self.categorical.push(name),
                "numeric" => self.numerical.push(name),
                "text" | "datetime" if !self.columns.contains(&name) => self.exclude.push(name),
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Numerical,
    Categorical,
}

impl ColumnKind {
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Numerical => "numerical",
            ColumnKind::Categorical => "categorical",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ColumnComparison {
    pub drift: ColumnDrift,
    pub kind: ColumnKind,
    pub histogram: Option<Histogram>,
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub columns: Vec<ColumnComparison>,
    pub dataset: DatasetDrift,
    /// Reference columns the current table lacks (skipped, not failed).
    pub only_in_reference: Vec<String>,
}

/// Which table a missing column was looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Reference,
    Current,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("no column to compare: the two tables share none (or all were excluded)")]
    NoColumns,
    #[error("column `{column}` is not in the {} data", if *.side == Side::Reference { "reference" } else { "current" })]
    MissingColumn { column: String, side: Side },
    #[error("column `{0}` holds text; it cannot be tested as numerical")]
    TextAsNumerical(String),
    #[error("column `{column}` is {reference} in the reference but {current} in the current data")]
    TypeMismatch {
        column: String,
        reference: &'static str,
        current: &'static str,
    },
    #[error(transparent)]
    Drift(#[from] DriftError),
    #[error("a drift worker stopped")]
    Worker,
}

/// Numbers without missing or infinite values (Evidently drops both before testing).
fn finite(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|x| x.is_finite());
    values
}

fn categories(labels: Vec<String>, mut codes: Vec<u32>) -> Categories {
    codes.retain(|c| *c != table::MISSING);
    Categories { labels, codes }
}

fn kind_name(v: &Values) -> &'static str {
    match v {
        Values::Numeric { .. } => "numeric",
        Values::Text { .. } => "text",
    }
}

/// The two samples of one column, typed by the reference (and the options); consumes the values.
fn samples(
    name: &str,
    r: Values,
    c: Values,
    opts: &CompareOptions,
) -> Result<(Sample, Sample, ColumnKind), CompareError> {
    let forced_cat = opts.categorical.iter().any(|n| n == name);
    let forced_num = opts.numerical.iter().any(|n| n == name);
    match (r, c) {
        (Values::Text { .. }, _) if forced_num => Err(CompareError::TextAsNumerical(name.into())),
        (
            Values::Text { labels, codes },
            Values::Text {
                labels: cl,
                codes: cc,
            },
        ) => Ok((
            Sample::Categorical(categories(labels, codes)),
            Sample::Categorical(categories(cl, cc)),
            ColumnKind::Categorical,
        )),
        (
            Values::Numeric {
                values: rv,
                integer,
            },
            Values::Numeric { values: cv, .. },
        ) => {
            let (rv, cv) = (finite(rv), finite(cv));
            let max = table::CATEGORICAL_INTEGER_MAX_DISTINCT;
            let categorical = forced_cat
                || (integer && !forced_num && drift::distinct_numbers_up_to(&rv, max) <= max);
            if categorical {
                Ok((
                    Sample::Discrete(rv),
                    Sample::Discrete(cv),
                    ColumnKind::Categorical,
                ))
            } else {
                Ok((
                    Sample::Numeric(rv),
                    Sample::Numeric(cv),
                    ColumnKind::Numerical,
                ))
            }
        }
        (r, c) => Err(CompareError::TypeMismatch {
            column: name.into(),
            reference: kind_name(&r),
            current: kind_name(&c),
        }),
    }
}

/// Compares `current` with `reference`, spreading the columns over the cores.
pub fn compare(
    mut reference: Table,
    mut current: Table,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    let wanted: Vec<String> = if opts.columns.is_empty() {
        reference
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| current.column(n).is_some())
            .collect()
    } else {
        opts.columns.clone()
    };
    let wanted: Vec<String> = wanted.into_iter().filter(|n| opts.wants(n)).collect();
    if wanted.is_empty() {
        return Err(CompareError::NoColumns);
    }
    let only_in_reference = reference
        .columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| current.column(n).is_none() && opts.wants(n))
        .collect();
    let mut prepared = Vec::with_capacity(wanted.len());
    for name in &wanted {
        let missing = |side| CompareError::MissingColumn {
            column: name.clone(),
            side,
        };
        let r = reference
            .take(name)
            .ok_or_else(|| missing(Side::Reference))?;
        let c = current.take(name).ok_or_else(|| missing(Side::Current))?;
        prepared.push((
            name.clone(),
            std::sync::Mutex::new(samples(name, r, c, opts)?),
        ));
    }
    drop((reference, current));
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(prepared.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Slot = std::sync::Mutex<Option<Result<(ColumnDrift, Option<Histogram>), DriftError>>>;
    let slots: Vec<Slot> = prepared.iter().map(|_| Slot::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((name, pair)) = prepared.get(i) else {
                    break;
                };
                let Ok(mut pair) = pair.lock() else { break };
                let (rs, cs, _) = &mut *pair;
                rs.sort();
                cs.sort();
                let (rs, cs) = (&*rs, &*cs);
                let result = drift::column_drift(name, rs, cs, opts.method, None)
                    .map(|verdict| (verdict, opts.histograms.then(|| report::histogram(rs, cs))));
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    let mut columns = Vec::with_capacity(prepared.len());
    for (slot, (_, pair)) in slots.into_iter().zip(&prepared) {
        let kind = pair.lock().map_err(|_| CompareError::Worker)?.2;
        let (drift, histogram) = slot
            .into_inner()
            .ok()
            .flatten()
            .ok_or(CompareError::Worker)??;
        columns.push(ColumnComparison {
            drift,
            kind,
            histogram,
        });
    }
    let verdicts: Vec<ColumnDrift> = columns.iter().map(|c| c.drift.clone()).collect();
    Ok(Comparison {
        dataset: drift::dataset_drift(&verdicts, opts.drift_share),
        columns,
        only_in_reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mltrail_data::table::Column;

    fn numeric(name: &str, values: Vec<f64>, integer: bool) -> Column {
        Column {
            name: name.into(),
            values: Values::Numeric { values, integer },
        }
    }

    #[test]
    fn columns_are_typed_by_the_reference_and_declarations() {
        let spread: Vec<f64> = (0..200).map(|i| (i % 50) as f64).collect();
        let few: Vec<f64> = (0..200).map(|i| (i % 3) as f64).collect();
        let table = |shift: f64| Table {
            columns: vec![
                numeric("wide", spread.iter().map(|v| v + shift).collect(), false),
                numeric("few", few.clone(), true),
                numeric("declared", spread.clone(), true),
            ],
            rows: 200,
        };
        let opts = CompareOptions {
            categorical: vec!["declared".into()],
            ..Default::default()
        };
        let out = compare(table(0.0), table(30.0), &opts).unwrap();
        let kinds: Vec<_> = out.columns.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                ColumnKind::Numerical,
                ColumnKind::Categorical,
                ColumnKind::Categorical
            ]
        );
        assert!(out.columns[0].drift.drifted);
        assert!(!out.columns[1].drift.drifted);
        assert_eq!(out.dataset.drifted_columns, 1);
    }

    #[test]
    fn a_declared_schema_types_columns_unless_the_caller_did() {
        let mut opts = CompareOptions {
            numerical: vec!["zip".into()],
            ..Default::default()
        };
        opts.follow_schema(&serde_json::json!([
            {"name": "zip", "type": "categorical"},
            {"name": "grade", "type": "categorical"},
            {"name": "income", "type": "numeric"},
            {"name": "comment", "type": "text"},
            {"name": "signup", "type": "datetime"},
        ]));
        assert_eq!(opts.numerical, ["zip", "income"]);
        assert_eq!(opts.categorical, ["grade"]);
        assert_eq!(opts.exclude, ["comment", "signup"]);
    }

    #[test]
    fn a_type_mismatch_names_the_column() {
        let r = Table {
            columns: vec![numeric("a", vec![1.0, 2.0], false)],
            rows: 2,
        };
        let c = Table {
            columns: vec![Column {
                name: "a".into(),
                values: Values::Text {
                    labels: vec!["x".into()],
                    codes: vec![0, 0],
                },
            }],
            rows: 2,
        };
        let err = compare(r, c, &CompareOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `a` is numeric in the reference but text in the current data"
        );
    }
}
