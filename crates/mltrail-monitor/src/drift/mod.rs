//! Column drift tests with Evidently's definitions and scipy's numerics, Evidently's default test
//! choice, and the dataset verdict. Inputs are the non-missing values of one column in the
//! reference and in the current sample.

pub mod binning;
mod statistics;

use std::cmp::Ordering;

use serde::Serialize;

pub use statistics::{
    chi2_contingency, chisquare, jensen_shannon, ks, psi, wasserstein, wasserstein_normed, z_test,
    KsResult,
};

/// One column's values, missing values already dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Numeric(Vec<f64>),
    /// Numbers treated as categories (an integer column with few distinct values).
    Discrete(Vec<f64>),
    Categorical(Categories),
}

/// Text values, dictionary-encoded: `labels[code]` (4 bytes a row however long the text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Categories {
    pub labels: Vec<String>,
    pub codes: Vec<u32>,
}

impl Categories {
    pub fn from_values<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut out = Categories::default();
        for v in values {
            let next = out.labels.len() as u32;
            let code = *index.entry(v).or_insert_with_key(|k| {
                out.labels.push(k.clone());
                next
            });
            out.codes.push(code);
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.codes.iter().map(|c| self.labels[*c as usize].as_str())
    }
}

/// A distinct value, ordered as numbers or as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Number(v) => write!(f, "{v}"),
            Key::Text(s) => f.write_str(s),
        }
    }
}

pub(crate) fn key_cmp(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Number(x), Key::Number(y)) => x.total_cmp(y),
        (Key::Text(x), Key::Text(y)) => x.cmp(y),
        (Key::Number(_), Key::Text(_)) => Ordering::Less,
        (Key::Text(_), Key::Number(_)) => Ordering::Greater,
    }
}

impl Sample {
    /// Sorts numeric values in place. Every statistic here ignores row order, and the ones that
    /// need sorted values (KS, Wasserstein, histograms) then skip their own sorted copy.
    pub fn sort(&mut self) {
        if let Sample::Numeric(v) | Sample::Discrete(v) = self {
            v.sort_unstable_by(f64::total_cmp);
        }
    }

    /// A categorical sample from text values.
    pub fn categorical<I: IntoIterator<Item = String>>(values: I) -> Self {
        Sample::Categorical(Categories::from_values(values))
    }

    pub fn len(&self) -> usize {
        match self {
            Sample::Numeric(v) | Sample::Discrete(v) => v.len(),
            Sample::Categorical(c) => c.codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Sample::Numeric(_))
    }

    pub(crate) fn keys(&self) -> Box<dyn Iterator<Item = Key> + '_> {
        match self {
            Sample::Numeric(v) | Sample::Discrete(v) => Box::new(v.iter().map(|x| Key::Number(*x))),
            Sample::Categorical(c) => Box::new(c.iter().map(|s| Key::Text(s.to_string()))),
        }
    }

    /// Number of distinct values.
    pub fn distinct(&self) -> usize {
        self.distinct_up_to(usize::MAX)
    }

    /// Number of distinct values, counting stops once `limit` is exceeded (the default test and
    /// the binning only ask "more than 5?" and "more than 20?").
    pub fn distinct_up_to(&self, limit: usize) -> usize {
        match self {
            Sample::Numeric(v) | Sample::Discrete(v) => distinct_numbers_up_to(v, limit),
            Sample::Categorical(c) => {
                let mut seen = std::collections::HashSet::new();
                for x in &c.codes {
                    seen.insert(*x);
                    if seen.len() > limit {
                        break;
                    }
                }
                seen.len()
            }
        }
    }
}

/// Distinct numbers in `v`; counting stops once `limit` is exceeded.
pub fn distinct_numbers_up_to(v: &[f64], limit: usize) -> usize {
    let mut seen = std::collections::HashSet::new();
    for x in v {
        seen.insert(x.to_bits());
        if seen.len() > limit {
            break;
        }
    }
    seen.len()
}

/// Distinct values of both samples together, counting stops past `limit`.
pub(crate) fn union_distinct_up_to(a: &Sample, b: &Sample, limit: usize) -> usize {
    match (a, b) {
        (Sample::Categorical(x), Sample::Categorical(y)) => {
            let mut seen = std::collections::HashSet::new();
            for v in x.iter().chain(y.iter()) {
                seen.insert(v);
                if seen.len() > limit {
                    break;
                }
            }
            seen.len()
        }
        (Sample::Numeric(x) | Sample::Discrete(x), Sample::Numeric(y) | Sample::Discrete(y)) => {
            let mut seen = std::collections::HashSet::new();
            for v in x.iter().chain(y) {
                seen.insert(v.to_bits());
                if seen.len() > limit {
                    break;
                }
            }
            seen.len()
        }
        _ => {
            let mut seen = std::collections::HashSet::new();
            for k in a.keys().chain(b.keys()) {
                seen.insert(match k {
                    Key::Number(v) => format!("n{}", v.to_bits()),
                    Key::Text(t) => format!("t{t}"),
                });
                if seen.len() > limit {
                    break;
                }
            }
            seen.len()
        }
    }
}

pub(crate) fn union_keys(a: &Sample, b: &Sample) -> Vec<Key> {
    let mut keys: Vec<Key> = a.keys().chain(b.keys()).collect();
    keys.sort_by(key_cmp);
    keys.dedup();
    keys
}

/// A drift test, named as in the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Two-sample Kolmogorov–Smirnov; drift if p ≤ 0.05.
    Ks,
    /// First Wasserstein distance divided by max(std(reference), 0.001) (Evidently's
    /// "Wasserstein distance (normed)"); drift if ≥ 0.1.
    Wasserstein,
    /// Jensen–Shannon distance (natural log) on Evidently's bins; drift if ≥ 0.1.
    #[serde(rename = "jensenshannon")]
    JensenShannon,
    /// Population stability index on Evidently's bins; drift if ≥ 0.1.
    Psi,
    /// Evidently's one-sample chi-square (current counts against reference shares); drift if p < 0.05.
    #[serde(rename = "chisquare")]
    ChiSquare,
    /// Two-sample chi-square on the 2×k contingency table (Yates when dof = 1); drift if p < 0.05.
    #[serde(rename = "chi2_contingency")]
    Chi2Contingency,
    /// Pooled two-proportion z-test for binary columns; drift if p < 0.05.
    Z,
}

impl Method {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ks" => Self::Ks,
            "wasserstein" => Self::Wasserstein,
            "jensenshannon" | "js" => Self::JensenShannon,
            "psi" => Self::Psi,
            "chisquare" => Self::ChiSquare,
            "chi2_contingency" => Self::Chi2Contingency,
            "z" => Self::Z,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ks => "ks",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannon => "jensenshannon",
            Self::Psi => "psi",
            Self::ChiSquare => "chisquare",
            Self::Chi2Contingency => "chi2_contingency",
            Self::Z => "z",
        }
    }

    /// Evidently's default threshold.
    pub fn threshold(self) -> f64 {
        match self {
            Self::Ks | Self::ChiSquare | Self::Chi2Contingency | Self::Z => 0.05,
            Self::Wasserstein | Self::JensenShannon | Self::Psi => 0.1,
        }
    }

    pub fn is_test(self) -> bool {
        matches!(
            self,
            Self::Ks | Self::ChiSquare | Self::Chi2Contingency | Self::Z
        )
    }

    /// Whether a value means drift, with Evidently's comparison for this method.
    pub fn drifted(self, statistic: f64, p_value: Option<f64>, threshold: f64) -> bool {
        match (self, p_value) {
            (Self::Ks, Some(p)) => p <= threshold,
            (_, Some(p)) => p < threshold,
            (_, None) => statistic >= threshold,
        }
    }
}

/// Evidently's default test for a column (`_get_default_stattest`): `n` is the number of
/// reference values, `u` the number of distinct values in reference ∪ current.
pub fn default_method(reference: &Sample, current: &Sample) -> Method {
    let n = reference.len();
    let u = union_distinct_up_to(reference, current, 5);
    let numeric = reference.is_numeric();
    if n <= 1000 {
        if numeric && u > 5 {
            return Method::Ks;
        }
        return if u > 2 { Method::ChiSquare } else { Method::Z };
    }
    if numeric && u > 5 {
        Method::Wasserstein
    } else {
        Method::JensenShannon
    }
}

/// One column's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDrift {
    pub column: String,
    pub method: Method,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("column `{0}` has no values in the reference or the current sample")]
    Empty(String),
    #[error("column `{column}`: {method} needs {needs}")]
    Unsuitable {
        column: String,
        method: &'static str,
        needs: &'static str,
    },
}

/// Runs `method` (Evidently's default when `None`) on one column.
pub fn column_drift(
    column: &str,
    reference: &Sample,
    current: &Sample,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    if reference.is_empty() || current.is_empty() {
        return Err(DriftError::Empty(column.to_string()));
    }
    let method = method.unwrap_or_else(|| default_method(reference, current));
    let numeric = |m: Method| match (reference, current) {
        (Sample::Numeric(r), Sample::Numeric(c)) => Ok((r, c)),
        _ => Err(DriftError::Unsuitable {
            column: column.to_string(),
            method: m.name(),
            needs: "a numeric column",
        }),
    };
    let (statistic, p_value) = match method {
        Method::Ks => {
            let (r, c) = numeric(method)?;
            let res = ks(r, c);
            (res.statistic, Some(res.p_value))
        }
        Method::Wasserstein => {
            let (r, c) = numeric(method)?;
            (wasserstein_normed(r, c), None)
        }
        Method::JensenShannon => (jensen_shannon(reference, current), None),
        Method::Psi => (psi(reference, current), None),
        Method::ChiSquare => {
            let (s, p) = chisquare(reference, current);
            (s, Some(p))
        }
        Method::Chi2Contingency => {
            let (s, p) = chi2_contingency(reference, current);
            (s, Some(p))
        }
        Method::Z => {
            if union_distinct_up_to(reference, current, 2) > 2 {
                return Err(DriftError::Unsuitable {
                    column: column.to_string(),
                    method: "z",
                    needs: "a column with at most two values",
                });
            }
            let (s, p) = z_test(reference, current);
            (s, Some(p))
        }
    };
    let threshold = threshold.unwrap_or_else(|| method.threshold());
    Ok(ColumnDrift {
        column: column.to_string(),
        method,
        statistic,
        p_value,
        threshold,
        drifted: method.drifted(statistic, p_value, threshold),
    })
}

/// The dataset verdict: drift when the share of drifted columns reaches `drift_share` (0.5 in
/// Evidently's `DataDriftPreset`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetDrift {
    pub drifted_columns: usize,
    pub share: f64,
    pub drift: bool,
}

pub fn dataset_drift(columns: &[ColumnDrift], drift_share: f64) -> DatasetDrift {
    let drifted = columns.iter().filter(|c| c.drifted).count();
    let share = if columns.is_empty() {
        0.0
    } else {
        drifted as f64 / columns.len() as f64
    };
    DatasetDrift {
        drifted_columns: drifted,
        share,
        drift: !columns.is_empty() && share >= drift_share,
    }
}
