//! Evidently's binning (`get_binned_data`), shared by Jensen–Shannon and PSI.

use super::{Key, Sample};

/// Reference and current shares per bin, and how the bins were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
    /// Numeric Sturges edges over reference ∪ current, or `None` for one bin per distinct value.
    pub edges: Option<Vec<f64>>,
}

/// `np.histogram_bin_edges(values, "sturges")`.
pub fn sturges_edges(values: &[f64]) -> Vec<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    let ptp = hi - lo;
    let width = ptp / ((values.len() as f64).log2() + 1.0);
    let bins = if width > 0.0 {
        (ptp / width).ceil() as usize
    } else {
        1
    }
    .max(1);
    // np.linspace(lo, hi, bins + 1): i * step + start, the last edge exactly `hi`.
    let step = (hi - lo) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + lo).collect();
    edges[bins] = hi;
    edges
}

/// `np.histogram(values, edges)[0]`: bins are [e_i, e_i+1), the last one closed.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let sorted = super::statistics::sorted(values);
    let below = |e: f64| sorted.partition_point(|v| *v < e);
    let at_or_below = |e: f64| sorted.partition_point(|v| *v <= e);
    let mut cumulative: Vec<usize> = edges[..edges.len() - 1].iter().map(|e| below(*e)).collect();
    cumulative.push(at_or_below(edges[edges.len() - 1]));
    cumulative
        .windows(2)
        .map(|w| (w[1] - w[0]) as u64)
        .collect()
}

/// Per-value counts over the union of keys (sorted), for categorical and low-cardinality columns.
pub fn value_counts(reference: &Sample, current: &Sample) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    if let (Sample::Categorical(r), Sample::Categorical(c)) = (reference, current) {
        // Count codes, then merge the two dictionaries by label.
        let per_code = |cats: &super::Categories| {
            let mut n = vec![0f64; cats.labels.len()];
            cats.codes.iter().for_each(|c| n[*c as usize] += 1.0);
            n
        };
        let mut counts: std::collections::HashMap<&str, (f64, f64)> =
            std::collections::HashMap::new();
        for (label, n) in r.labels.iter().zip(per_code(r)).filter(|(_, n)| *n > 0.0) {
            counts.entry(label.as_str()).or_default().0 += n;
        }
        for (label, n) in c.labels.iter().zip(per_code(c)).filter(|(_, n)| *n > 0.0) {
            counts.entry(label.as_str()).or_default().1 += n;
        }
        let mut keys: Vec<&str> = counts.keys().copied().collect();
        keys.sort_unstable();
        let rc = keys.iter().map(|k| counts[k].0).collect();
        let cc = keys.iter().map(|k| counts[k].1).collect();
        return (keys.into_iter().map(str::to_string).collect(), rc, cc);
    }
    if let (Sample::Numeric(r) | Sample::Discrete(r), Sample::Numeric(c) | Sample::Discrete(c)) =
        (reference, current)
    {
        // Run lengths over sorted values, merged in numeric order: no per-row keys.
        let runs = |v: &[f64]| {
            let sorted = super::statistics::sorted(v);
            let mut out: Vec<(f64, f64)> = Vec::new();
            for x in sorted.iter() {
                match out.last_mut() {
                    Some((last, n)) if *last == *x => *n += 1.0,
                    _ => out.push((*x, 1.0)),
                }
            }
            out
        };
        let (ra, ca) = (runs(r), runs(c));
        let (mut i, mut j) = (0, 0);
        let (mut keys, mut rc, mut cc) = (Vec::new(), Vec::new(), Vec::new());
        while i < ra.len() || j < ca.len() {
            let take_r = j == ca.len() || (i < ra.len() && ra[i].0 <= ca[j].0);
            let take_c = i == ra.len() || (j < ca.len() && ca[j].0 <= ra[i].0);
            let key = if take_r { ra[i].0 } else { ca[j].0 };
            keys.push(Key::Number(key).to_string());
            rc.push(if take_r { ra[i].1 } else { 0.0 });
            cc.push(if take_c { ca[j].1 } else { 0.0 });
            if take_r {
                i += 1;
            }
            if take_c {
                j += 1;
            }
        }
        return (keys, rc, cc);
    }
    let keys = super::union_keys(reference, current);
    let count = |s: &Sample| {
        let mut c = vec![0f64; keys.len()];
        for k in s.keys() {
            if let Ok(i) = keys.binary_search_by(|probe| super::key_cmp(probe, &k)) {
                c[i] += 1.0;
            }
        }
        c
    };
    let (rc, cc) = (count(reference), count(current));
    (keys.iter().map(|k| k.to_string()).collect(), rc, cc)
}

/// Evidently's binning: Sturges over the combined sample for numeric columns with more than 20
/// distinct reference values, else one bin per distinct value; shares are count / sample size.
/// `fill_zeroes` (PSI) replaces each empty share by min(nonzero)/1e6 if that is ≤ 1e-4, else by 1e-4.
pub fn bin(reference: &Sample, current: &Sample, fill_zeroes: bool) -> Binned {
    let (mut r, mut c, edges) = match (reference, current) {
        (Sample::Numeric(rv), Sample::Numeric(cv)) if reference.distinct_up_to(20) > 20 => {
            let combined: Vec<f64> = rv.iter().chain(cv).copied().collect();
            let edges = sturges_edges(&combined);
            let share = |v: &[f64]| {
                histogram(v, &edges)
                    .into_iter()
                    .map(|n| n as f64 / v.len() as f64)
                    .collect::<Vec<_>>()
            };
            (share(rv), share(cv), Some(edges))
        }
        _ => {
            let (_, rc, cc) = value_counts(reference, current);
            let (rn, cn) = (reference.len() as f64, current.len() as f64);
            (
                rc.into_iter().map(|n| n / rn).collect(),
                cc.into_iter().map(|n| n / cn).collect(),
                None,
            )
        }
    };
    if fill_zeroes {
        for shares in [&mut r, &mut c] {
            let nz = shares
                .iter()
                .copied()
                .filter(|v| *v != 0.0)
                .fold(f64::INFINITY, f64::min);
            let fill = if nz <= 0.0001 { nz / 1e6 } else { 0.0001 };
            shares
                .iter_mut()
                .filter(|v| **v == 0.0)
                .for_each(|v| *v = fill);
        }
    }
    Binned {
        reference: r,
        current: c,
        edges,
    }
}
