//! Shapley values by sampling feature orderings (Štrumbelj & Kononenko 2014), for models whose
//! structure the exact methods cannot read (graphs onnxruntime runs, mixed preprocessing).
//!
//! Each sample walks one ordering from a background row to the explained row, switching one
//! feature at a time; a feature's marginal change is one draw of its Shapley value. Orderings
//! come in antithetic pairs (an ordering and its reverse) from a fixed seed, so the same row
//! always gets the same values, and pairs cycle through the background rows evenly, so the
//! values add up exactly to the output minus the background's mean output. The standard error
//! of each value comes from the spread of the pair means.

use crate::ExplainError;

/// Scores rows (row-major, `features` wide): `outputs` numbers per row.
pub type Score<'a> = dyn Fn(&[f64]) -> Result<Vec<f64>, ExplainError> + 'a;

pub struct SamplingShap {
    background: Vec<f64>,
    features: usize,
    outputs: usize,
    base: Vec<f64>,
    pairs: usize,
    seed: u64,
}

/// Values and their standard errors, both `outputs × features`.
pub struct Sampled {
    pub values: Vec<f64>,
    pub standard_error: Vec<f64>,
}

impl SamplingShap {
    /// At least `min_pairs` antithetic pairs per explanation, rounded up to a whole number of
    /// passes over the background.
    pub fn new(
        score: &Score<'_>,
        background: Vec<f64>,
        features: usize,
        outputs: usize,
        min_pairs: usize,
        seed: u64,
    ) -> Result<Self, ExplainError> {
        let rows = crate::whole_rows(&background, features).map_err(ExplainError::Background)?;
        let scores = score(&background)?;
        if scores.len() != rows * outputs {
            return Err(ExplainError::Model(format!(
                "scoring {rows} rows gave {} numbers, not {outputs} per row",
                scores.len()
            )));
        }
        let mut base = vec![0.0; outputs];
        for row in scores.chunks_exact(outputs) {
            for (b, v) in base.iter_mut().zip(row) {
                *b += v / rows as f64;
            }
        }
        let pairs = min_pairs.max(1).div_ceil(rows) * rows;
        Ok(SamplingShap {
            background,
            features,
            outputs,
            base,
            pairs,
            seed,
        })
    }

    pub fn base_value(&self) -> &[f64] {
        &self.base
    }

    pub fn explain(&self, score: &Score<'_>, row: &[f64]) -> Result<Sampled, ExplainError> {
        let (d, k) = (self.features, self.outputs);
        let rows = self.background.len() / d;
        let mut rng = SplitMix(self.seed);
        let mut order: Vec<usize> = (0..d).collect();
        // Every ordering's d + 1 rows, scored in one batch per pair.
        let mut batch = Vec::with_capacity(2 * (d + 1) * d);
        let mut pair_means = vec![0.0; self.pairs * k * d];
        for p in 0..self.pairs {
            shuffle(&mut order, &mut rng);
            let start = &self.background[(p % rows) * d..][..d];
            batch.clear();
            for reverse in [false, true] {
                let mut z = start.to_vec();
                batch.extend_from_slice(&z);
                for i in 0..d {
                    let j = if reverse { order[d - 1 - i] } else { order[i] };
                    z[j] = row[j];
                    batch.extend_from_slice(&z);
                }
            }
            let scores = score(&batch)?;
            if scores.len() != 2 * (d + 1) * k {
                return Err(ExplainError::Model(
                    "the model scored a different number of rows than asked".into(),
                ));
            }
            let means = &mut pair_means[p * k * d..][..k * d];
            for (half, reverse) in [false, true].into_iter().enumerate() {
                let s = &scores[half * (d + 1) * k..][..(d + 1) * k];
                for i in 0..d {
                    let j = if reverse { order[d - 1 - i] } else { order[i] };
                    for o in 0..k {
                        means[o * d + j] += 0.5 * (s[(i + 1) * k + o] - s[i * k + o]);
                    }
                }
            }
        }
        let n = self.pairs as f64;
        let mut values = vec![0.0; k * d];
        for means in pair_means.chunks_exact(k * d) {
            for (v, m) in values.iter_mut().zip(means) {
                *v += m / n;
            }
        }
        let mut standard_error = vec![0.0; k * d];
        if self.pairs > 1 {
            for means in pair_means.chunks_exact(k * d) {
                for ((e, m), v) in standard_error.iter_mut().zip(means).zip(&values) {
                    *e += (m - v) * (m - v);
                }
            }
            standard_error
                .iter_mut()
                .for_each(|e| *e = (*e / (n - 1.0)).sqrt() / n.sqrt());
        }
        Ok(Sampled {
            values,
            standard_error,
        })
    }
}

/// SplitMix64: a fixed, portable sequence from a seed (explanations are reproducible).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias at these sizes is below 2^-40).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is dropped: simplicity over speed here).
    pub(crate) fn gaussian(&mut self) -> f64 {
        let u = 1.0 - self.unit(); // (0, 1]: the log is finite
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn shuffle(items: &mut [usize], rng: &mut SplitMix) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// `n` rows of `data` (row-major, `width` wide) drawn without replacement with `seed`, in their
/// original order; all of them when there are `n` or fewer.
pub fn sample_rows(data: &[f64], width: usize, n: usize, seed: u64) -> Vec<f64> {
    let rows = data.len().checked_div(width).unwrap_or(0);
    if rows <= n {
        return data.to_vec();
    }
    let mut index: Vec<usize> = (0..rows).collect();
    let mut rng = SplitMix(seed);
    for i in 0..n {
        let j = i + rng.below(rows - i);
        index.swap(i, j);
    }
    let mut picked = index[..n].to_vec();
    picked.sort_unstable();
    picked
        .iter()
        .flat_map(|r| data[r * width..(r + 1) * width].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_additive_model_is_explained_exactly_and_the_values_add_up() {
        // f(x) = 2 x0 - x1 + x0 x2: interactions split evenly between x0 and x2.
        let score = |rows: &[f64]| -> Result<Vec<f64>, ExplainError> {
            Ok(rows
                .chunks_exact(3)
                .map(|r| 2.0 * r[0] - r[1] + r[0] * r[2])
                .collect())
        };
        let background = vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let shap = SamplingShap::new(&score, background, 3, 1, 64, 7).expect("explainer");
        assert_eq!(shap.base_value(), &[1.0]);
        let x = [3.0, 2.0, 1.0];
        let out = shap.explain(&score, &x).expect("values");
        let total: f64 = out.values.iter().sum();
        assert!((total - (7.0 - 1.0)).abs() < 1e-12, "{total}");
        // x1 enters alone: its value is exact whatever the orderings.
        assert!((out.values[1] - (-(2.0 - 0.5))).abs() < 1e-12);
        // Same seed, same values.
        let again = shap.explain(&score, &x).expect("values");
        assert_eq!(out.values, again.values);
    }

    #[test]
    fn a_sample_of_as_many_rows_as_the_data_is_the_data() {
        let data: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(sample_rows(&data, 2, 5, 1), data);
        let some = sample_rows(&data, 2, 3, 1);
        assert_eq!(some.len(), 6);
        assert_eq!(some, sample_rows(&data, 2, 3, 1));
    }
}
