//! Two tables compared column by column: each column typed by the reference (or by what the
//! caller declares), tested with Evidently's default test (or one forced method), and the
//! dataset verdict. `mltrail drift`, `mltrail monitor check` and the server's monitors all
//! compare through here.

use mltrail_data::schema::{ColumnType, DatasetSchema};
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
    /// Columns of personal data: tested like the others, never binned (a report's bins would
    /// show their values).
    pub private: Vec<String>,
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
            private: Vec::new(),
        }
    }
}

impl CompareOptions {
    /// Whether a column is read at all (for readers that can skip columns).
    pub fn wants(&self, name: &str) -> bool {
        (self.columns.is_empty() || self.columns.iter().any(|c| c == name))
            && !self.exclude.iter().any(|c| c == name)
    }

    /// Types columns as a dataset version's schema declares them: free text and timestamps are
    /// not tested, numeric and categorical columns are tested as declared. A column the caller already typed keeps the caller's type.
    pub fn follow_schema(&mut self, schema: &DatasetSchema) {
        for column in &schema.columns {
            let name = column.name.clone();
            if column.pii && !self.private.contains(&name) {
                self.private.push(name.clone());
            }
            if self.categorical.contains(&name) || self.numerical.contains(&name) {
                continue;
            }
            match column.kind {
                ColumnType::Categorical => self.categorical.push(name),
                ColumnType::Numeric => self.numerical.push(name),
                ColumnType::Text | ColumnType::Datetime if !self.columns.contains(&name) => {
                    self.exclude.push(name)
                }
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

/// Runs `f` on every item, spread over the cores; results in the items' order.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len())
        .max(1);
    let inputs: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    let outputs: Vec<std::sync::Mutex<Option<R>>> =
        inputs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(input) = inputs.get(i) else { break };
                let Some(item) = input.lock().ok().and_then(|mut t| t.take()) else {
                    continue;
                };
                let out = f(item);
                if let Ok(mut slot) = outputs[i].lock() {
                    *slot = Some(out);
                }
            });
        }
    });
    outputs
        .into_iter()
        .filter_map(|o| o.into_inner().ok().flatten())
        .collect()
}

/// One reference column, typed and sorted.
struct ReferenceColumn {
    name: String,
    kind: ColumnKind,
    /// Whether the file held numbers (else text): what the current column must hold too.
    numeric: bool,
    sample: Sample,
}

/// A reference prepared once (each column typed by its values and the options, then sorted) and
/// compared with any number of current tables: a monitor compares every window with the same one.
pub struct PreparedReference {
    columns: Vec<ReferenceColumn>,
}

impl PreparedReference {
    fn column(&self, name: &str) -> Option<&ReferenceColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Types and sorts the reference's columns that `opts` wants (all of them, or `opts.columns`).
pub fn prepare(
    mut reference: Table,
    opts: &CompareOptions,
) -> Result<PreparedReference, CompareError> {
    let names: Vec<String> = if opts.columns.is_empty() {
        reference.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        opts.columns.clone()
    };
    let mut raw = Vec::new();
    for name in names.into_iter().filter(|n| opts.wants(n)) {
        let values = reference
            .take(&name)
            .ok_or_else(|| CompareError::MissingColumn {
                column: name.clone(),
                side: Side::Reference,
            })?;
        raw.push((name, values));
    }
    drop(reference);
    let columns = par_map(raw, |(name, values)| {
        let forced_cat = opts.categorical.contains(&name);
        let forced_num = opts.numerical.contains(&name);
        let (kind, numeric, mut sample) = match values {
            Values::Text { .. } if forced_num => {
                return Err(CompareError::TextAsNumerical(name));
            }
            Values::Text { labels, codes } => (
                ColumnKind::Categorical,
                false,
                Sample::Categorical(categories(labels, codes)),
            ),
            Values::Numeric { values, integer } => {
                let values = finite(values);
                let max = table::CATEGORICAL_INTEGER_MAX_DISTINCT;
                if forced_cat
                    || (integer
                        && !forced_num
                        && drift::distinct_numbers_up_to(&values, max) <= max)
                {
                    (ColumnKind::Categorical, true, Sample::Discrete(values))
                } else {
                    (ColumnKind::Numerical, true, Sample::Numeric(values))
                }
            }
        };
        sample.sort();
        Ok(ReferenceColumn {
            name,
            kind,
            numeric,
            sample,
        })
    });
    Ok(PreparedReference {
        columns: columns.into_iter().collect::<Result<_, _>>()?,
    })
}

/// The current column as a sample of the reference column's kind; consumes the values.
fn current_sample(r: &ReferenceColumn, c: Values) -> Result<Sample, CompareError> {
    match (r.numeric, c, &r.sample) {
        (false, Values::Text { labels, codes }, _) => {
            Ok(Sample::Categorical(categories(labels, codes)))
        }
        (true, Values::Numeric { values, .. }, Sample::Discrete(_)) => {
            Ok(Sample::Discrete(finite(values)))
        }
        (true, Values::Numeric { values, .. }, _) => Ok(Sample::Numeric(finite(values))),
        (numeric, c, _) => Err(CompareError::TypeMismatch {
            column: r.name.clone(),
            reference: if numeric { "numeric" } else { "text" },
            current: kind_name(&c),
        }),
    }
}

/// Compares `current` with a prepared reference, spreading the columns over the cores.
pub fn compare_prepared(
    reference: &PreparedReference,
    mut current: Table,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    let wanted: Vec<&ReferenceColumn> = if opts.columns.is_empty() {
        reference
            .columns
            .iter()
            .filter(|c| current.column(&c.name).is_some())
            .collect()
    } else {
        opts.columns
            .iter()
            .filter(|n| opts.wants(n))
            .map(|n| {
                reference
                    .column(n)
                    .ok_or_else(|| CompareError::MissingColumn {
                        column: n.clone(),
                        side: Side::Reference,
                    })
            })
            .collect::<Result<_, _>>()?
    };
    if wanted.is_empty() {
        return Err(CompareError::NoColumns);
    }
    let only_in_reference = reference
        .columns
        .iter()
        .filter(|c| current.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let mut pairs = Vec::with_capacity(wanted.len());
    for r in wanted {
        let c = current
            .take(&r.name)
            .ok_or_else(|| CompareError::MissingColumn {
                column: r.name.clone(),
                side: Side::Current,
            })?;
        pairs.push((r, current_sample(r, c)?));
    }
    drop(current);
    let results = par_map(pairs, |(r, mut cs)| {
        cs.sort();
        drift::column_drift(&r.name, &r.sample, &cs, opts.method, None).map(|drift| {
            ColumnComparison {
                drift,
                kind: r.kind,
                histogram: (opts.histograms && !opts.private.contains(&r.name))
                    .then(|| report::histogram(&r.sample, &cs)),
            }
        })
    });
    let columns: Vec<ColumnComparison> = results.into_iter().collect::<Result<_, _>>()?;
    let verdicts: Vec<ColumnDrift> = columns.iter().map(|c| c.drift.clone()).collect();
    Ok(Comparison {
        dataset: drift::dataset_drift(&verdicts, opts.drift_share),
        columns,
        only_in_reference,
    })
}

/// Compares `current` with `reference` (prepared for this one comparison).
pub fn compare(
    mut reference: Table,
    current: Table,
    opts: &CompareOptions,
) -> Result<Comparison, CompareError> {
    // Only columns both tables have are prepared; the others are reported, not sorted.
    let mut only_in_reference = Vec::new();
    if opts.columns.is_empty() {
        reference.columns.retain(|c| {
            let shared = current.column(&c.name).is_some();
            if !shared && opts.wants(&c.name) {
                only_in_reference.push(c.name.clone());
            }
            shared
        });
    }
    let prepared = prepare(reference, opts)?;
    let mut comparison = compare_prepared(&prepared, current, opts)?;
    comparison.only_in_reference.extend(only_in_reference);
    Ok(comparison)
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
        opts.follow_schema(&DatasetSchema::from_json(&serde_json::json!([
            {"name": "zip", "type": "categorical"},
            {"name": "grade", "type": "categorical"},
            {"name": "income", "type": "numeric"},
            {"name": "comment", "type": "text"},
            {"name": "signup", "type": "datetime"},
        ])));
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
