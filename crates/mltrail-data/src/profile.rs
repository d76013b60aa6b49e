//! A dataset's profile: per column the count, missing values, distinct values, and either the
//! numeric summary (min, max, mean, std, quantiles, histogram) or the top categories. Computed
//! from the columns already read; this is what a dataset version stores as the monitoring
//! reference.

use std::collections::HashMap;

use crate::table::{Table, Values, MISSING};

#[derive(Debug, Clone, PartialEq)]
pub struct NumericSummary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation (ddof 0), as the drift tests use.
    pub std: f64,
    /// The 1st, 5th, 25th, 50th, 75th, 95th and 99th percentiles (linear interpolation, numpy's
    /// default).
    pub quantiles: Vec<(f64, f64)>,
    /// Ten equal-width bins over [min, max]: (left edge, count); the last bin is closed.
    pub histogram: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    Numeric(NumericSummary),
    /// The most frequent values with their counts, most frequent first (at most 20).
    Categorical {
        top: Vec<(String, u64)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnProfile {
    pub name: String,
    pub count: u64,
    pub missing: u64,
    pub distinct: u64,
    pub summary: Option<Summary>,
}

const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn numeric(values: &[f64]) -> (u64, u64, Option<Summary>) {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let missing = (values.len() - present.len()) as u64;
    if present.is_empty() {
        return (missing, 0, None);
    }
    present.sort_unstable_by(f64::total_cmp);
    let distinct = 1 + present.windows(2).filter(|w| w[0] != w[1]).count() as u64;
    let n = present.len() as f64;
    let mean = present.iter().sum::<f64>() / n;
    let std = (present.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    let (min, max) = (present[0], present[present.len() - 1]);
    let width = (max - min) / 10.0;
    let mut histogram: Vec<(f64, u64)> = (0..10).map(|i| (min + width * i as f64, 0)).collect();
    for v in &present {
        let i = if width > 0.0 {
            (((v - min) / width) as usize).min(9)
        } else {
            0
        };
        histogram[i].1 += 1;
    }
    let quantiles = QUANTILES
        .iter()
        .map(|q| (*q, quantile(&present, *q)))
        .collect();
    (
        missing,
        distinct,
        Some(Summary::Numeric(NumericSummary {
            min,
            max,
            mean,
            std,
            quantiles,
            histogram,
        })),
    )
}

fn categorical(labels: &[String], codes: &[u32]) -> (u64, u64, Option<Summary>) {
    let mut counts: HashMap<u32, u64> = HashMap::new();
    let mut missing = 0;
    for c in codes {
        if *c == MISSING {
            missing += 1;
        } else {
            *counts.entry(*c).or_default() += 1;
        }
    }
    let distinct = counts.len() as u64;
    let mut top: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(c, n)| (labels[c as usize].clone(), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(20);
    (
        missing,
        distinct,
        (!top.is_empty()).then_some(Summary::Categorical { top }),
    )
}

/// Profiles every column of a table.
pub fn profile(table: &Table) -> Vec<ColumnProfile> {
    table
        .columns
        .iter()
        .map(|c| {
            let (missing, distinct, summary) = match &c.values {
                Values::Numeric { values, .. } => numeric(values),
                Values::Text { labels, codes } => categorical(labels, codes),
            };
            ColumnProfile {
                name: c.name.clone(),
                count: table.rows as u64,
                missing,
                distinct,
                summary,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Column;

    fn table(columns: Vec<Column>, rows: usize) -> Table {
        Table { columns, rows }
    }

    #[test]
    fn numeric_columns_get_a_summary_with_numpy_quantiles() {
        let t = table(
            vec![Column {
                name: "x".into(),
                values: Values::Numeric {
                    values: vec![1.0, 2.0, f64::NAN, 3.0, 4.0],
                    integer: false,
                },
            }],
            5,
        );
        let p = &profile(&t)[0];
        assert_eq!((p.count, p.missing, p.distinct), (5, 1, 4));
        let Some(Summary::Numeric(s)) = &p.summary else {
            panic!("numeric summary")
        };
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
        assert!((s.std - 1.118_033_988_749_895).abs() < 1e-12);
        // numpy.percentile([1,2,3,4], 25) = 1.75, 50 -> 2.5
        assert_eq!(s.quantiles[2], (0.25, 1.75));
        assert_eq!(s.quantiles[3], (0.5, 2.5));
        assert_eq!(s.histogram.iter().map(|b| b.1).sum::<u64>(), 4);
        assert_eq!(
            s.histogram[9].1, 1,
            "the maximum falls in the last, closed bin"
        );
    }

    #[test]
    fn text_columns_get_their_top_categories() {
        let t = table(
            vec![Column {
                name: "c".into(),
                values: Values::Text {
                    labels: vec!["a".into(), "b".into()],
                    codes: vec![0, 1, 1, MISSING],
                },
            }],
            4,
        );
        let p = &profile(&t)[0];
        assert_eq!((p.missing, p.distinct), (1, 2));
        assert_eq!(
            p.summary,
            Some(Summary::Categorical {
                top: vec![("b".into(), 2), ("a".into(), 1)]
            })
        );
    }

    #[test]
    fn an_all_missing_column_has_no_summary() {
        let t = table(
            vec![Column {
                name: "x".into(),
                values: Values::Numeric {
                    values: vec![f64::NAN; 3],
                    integer: false,
                },
            }],
            3,
        );
        assert_eq!(profile(&t)[0].summary, None);
        assert_eq!(profile(&t)[0].missing, 3);
    }
}
