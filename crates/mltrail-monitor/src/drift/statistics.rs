//! The statistics, each written to produce scipy's and Evidently's numbers on the same data.

use super::binning::{bin, value_counts};
use super::{union_keys, Key, Sample};
use crate::special::{chi2_sf, kolmogorov_sf, ks_outer_prob_inside, ks_prob_outside_square, ndtr};

/// The values in ascending order, copied only when not already sorted (see [`Sample::sort`]).
pub(crate) fn sorted(v: &[f64]) -> std::borrow::Cow<'_, [f64]> {
    if v.windows(2).all(|w| w[0] <= w[1]) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut s = v.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    std::borrow::Cow::Owned(s)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `np.round`: half to even.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    pub statistic: f64,
    /// scipy's `method="auto"`: exact when both samples have at most 10,000 values.
    pub p_value: f64,
    /// scipy's `method="asymp"`.
    pub p_value_asymp: f64,
}

/// Two-sided two-sample Kolmogorov–Smirnov test, as `scipy.stats.ks_2samp`.
pub fn ks(reference: &[f64], current: &[f64]) -> KsResult {
    let (a, b) = (sorted(reference), sorted(current));
    let (n1, n2) = (a.len(), b.len());
    // ECDF difference at every observed value (searchsorted 'right').
    let (mut i, mut j) = (0usize, 0usize);
    let (mut max_s, mut min_s) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < n1 || j < n2 {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        while i < n1 && a[i] <= v {
            i += 1;
        }
        while j < n2 && b[j] <= v {
            j += 1;
        }
        let diff = i as f64 / n1 as f64 - j as f64 / n2 as f64;
        max_s = max_s.max(diff);
        min_s = min_s.min(diff);
    }
    let min_s = (-min_s).clamp(0.0, 1.0);
    let d = if min_s > max_s { min_s } else { max_s };

    let asymp = |d: f64| {
        let (m, n) = if n1 >= n2 {
            (n1 as f64, n2 as f64)
        } else {
            (n2 as f64, n1 as f64)
        };
        let en = m * n / (m + n);
        kolmogorov_sf(round_half_even(en) as u64, d).clamp(0.0, 1.0)
    };
    let p_asymp = asymp(d);

    let (n1u, n2u) = (n1 as u64, n2 as u64);
    let mut statistic = d;
    let mut p = f64::NAN;
    if n1.max(n2) <= 10_000 {
        let g = gcd(n1u, n2u);
        let lcm = (n1u / g) * n2u;
        let h = round_half_even(d * lcm as f64) as u64;
        statistic = h as f64 / lcm as f64;
        p = if h == 0 {
            1.0
        } else if n1 == n2 {
            ks_prob_outside_square(n1u, h)
        } else {
            ks_outer_prob_inside(n1u, n2u, g, h)
        };
    }
    if !(0.0..=1.0).contains(&p) {
        p = asymp(statistic);
    }
    KsResult {
        statistic,
        p_value: p.clamp(0.0, 1.0),
        p_value_asymp: p_asymp,
    }
}

/// First Wasserstein distance between the two empirical distributions (scipy).
pub fn wasserstein(reference: &[f64], current: &[f64]) -> f64 {
    let (u, v) = (sorted(reference), sorted(current));
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    // Walk the merged order of both samples without materializing it: at each step, the
    // distance between consecutive values times the gap between the two ECDFs there.
    let (mut a, mut b) = (0usize, 0usize);
    let next = |a: &mut usize, b: &mut usize| -> Option<f64> {
        if *b == v.len() || (*a < u.len() && u[*a] <= v[*b]) {
            let x = u.get(*a).copied();
            *a += 1;
            x
        } else {
            let x = v[*b];
            *b += 1;
            Some(x)
        }
    };
    let Some(mut prev) = next(&mut a, &mut b) else {
        return 0.0;
    };
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    while let Some(cur) = next(&mut a, &mut b) {
        while i < u.len() && u[i] <= prev {
            i += 1;
        }
        while j < v.len() && v[j] <= prev {
            j += 1;
        }
        total += (i as f64 / nu - j as f64 / nv).abs() * (cur - prev);
        prev = cur;
    }
    total
}

/// Population standard deviation (`np.std`, ddof 0).
fn std_ddof0(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Evidently's "Wasserstein distance (normed)": W1 / max(std(reference), 0.001).
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> f64 {
    wasserstein(reference, current) / std_ddof0(reference).max(0.001)
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen–Shannon distance (scipy, natural log) on Evidently's bins without zero-fill.
pub fn jensen_shannon(reference: &Sample, current: &Sample) -> f64 {
    let b = bin(reference, current, false);
    let (sp, sq) = (
        b.reference.iter().sum::<f64>(),
        b.current.iter().sum::<f64>(),
    );
    let (mut left, mut right) = (0.0, 0.0);
    for (r, c) in b.reference.iter().zip(&b.current) {
        let (p, q) = (r / sp, c / sq);
        let m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    ((left + right) / 2.0).sqrt()
}

/// Population stability index on Evidently's bins with zero-fill.
pub fn psi(reference: &Sample, current: &Sample) -> f64 {
    let b = bin(reference, current, true);
    b.reference
        .iter()
        .zip(&b.current)
        .map(|(r, c)| (r - c) * (r / c).ln())
        .sum()
}

/// Evidently's chi-square: `scipy.stats.chisquare(current counts, reference counts × n_cur/n_ref)`.
/// Returns (statistic, p-value).
pub fn chisquare(reference: &Sample, current: &Sample) -> (f64, f64) {
    let (_, rc, cc) = value_counts(reference, current);
    let scale = current.len() as f64 / reference.len() as f64;
    let stat: f64 = rc
        .iter()
        .zip(&cc)
        .map(|(r, c)| {
            let e = r * scale;
            (c - e) * (c - e) / e
        })
        .sum();
    let dof = rc.len().saturating_sub(1) as f64;
    if dof == 0.0 {
        return (stat, f64::NAN);
    }
    (stat, chi2_sf(stat, dof))
}

/// `scipy.stats.chi2_contingency` on the 2 × k table of reference and current counts (Yates'
/// correction when dof = 1). Returns (statistic, p-value).
pub fn chi2_contingency(reference: &Sample, current: &Sample) -> (f64, f64) {
    let (_, rc, cc) = value_counts(reference, current);
    let k = rc.len();
    if k < 2 {
        return (0.0, 1.0);
    }
    let rows = [rc.iter().sum::<f64>(), cc.iter().sum::<f64>()];
    let total = rows[0] + rows[1];
    let dof = (k - 1) as f64;
    let mut stat = 0.0;
    for (row, counts) in [&rc, &cc].into_iter().enumerate() {
        for (j, observed) in counts.iter().enumerate() {
            let expected = rows[row] * (rc[j] + cc[j]) / total;
            let mut o = *observed;
            if k == 2 {
                let diff = expected - o;
                o += diff.abs().min(0.5) * diff.signum();
            }
            stat += (o - expected) * (o - expected) / expected;
        }
    }
    (stat, chi2_sf(stat, dof))
}

/// Evidently's pooled two-proportion z-test: "success" is any value other than the smallest key.
/// Returns (z, two-sided p-value).
pub fn z_test(reference: &Sample, current: &Sample) -> (f64, f64) {
    let keys = union_keys(reference, current);
    let zero: Key = keys[0].clone();
    let share = |s: &Sample| s.keys().filter(|k| *k != zero).count() as f64 / s.len() as f64;
    let (n1, n2) = (reference.len() as f64, current.len() as f64);
    let (p1, p2) = (share(reference), share(current));
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let denom = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if denom == 0.0 {
        return (0.0, 1.0);
    }
    let z = (p1 - p2) / denom;
    (z, 2.0 * (1.0 - ndtr(z.abs())))
}
