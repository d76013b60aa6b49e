//! Each rule's probability of choosing each arm for one request, from what the policy has
//! learned. The arm is then drawn from exactly these probabilities, so the propensity a record
//! carries is the probability the choice was made with, not an approximation of it: for
//! Thompson sampling the probabilities are estimated from a stated number of posterior draws
//! and the choice is drawn from that estimate.

use rand::rngs::SmallRng;
use rand::RngExt;
use rand_distr::{Beta, Distribution, Normal};

use super::policy::{Likelihood, Policy, Rule};
use super::state::{ArmState, RoutingState};

/// What a LinUCB arm needs per request: A⁻¹ and θ = A⁻¹ b.
#[derive(Debug, Clone)]
pub(crate) struct LinearArm {
    inverse: Vec<f64>,
    theta: Vec<f64>,
}

/// The uniform share `floor` mixed into `p`.
fn with_floor(mut p: Vec<f64>, floor: f64) -> Vec<f64> {
    if floor > 0.0 {
        let k = p.len() as f64;
        for v in &mut p {
            *v = (1.0 - floor) * *v + floor / k;
        }
    }
    p
}

/// Probability 1 spread evenly over `best` (the arms tied for the top).
fn uniform_over(best: &[usize], arms: usize) -> Vec<f64> {
    let mut p = vec![0.0; arms];
    for &a in best {
        p[a] = 1.0 / best.len() as f64;
    }
    p
}

/// The arms whose score is the highest (exact ties share the choice).
fn argmax(scores: &[f64]) -> Vec<usize> {
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (0..scores.len()).filter(|&a| scores[a] == top).collect()
}

/// Arms with fewer than `least` rewards: tried before any is preferred on its record.
fn unexplored(arms: &[ArmState], least: u64) -> Vec<usize> {
    (0..arms.len())
        .filter(|&a| arms[a].rewards < least)
        .collect()
}

/// The probability of each arm under `rule`, for one request with `context` (LinUCB).
/// `thompson` and `linear` are the cached estimates the caller keeps per state revision.
pub(crate) fn probabilities(
    policy: &Policy,
    state: &RoutingState,
    context: Option<&[f64]>,
    thompson: &[f64],
    linear: &[LinearArm],
    canary_share: f64,
) -> Vec<f64> {
    let k = state.arms.len();
    match &policy.rule {
        Rule::Canary(_) => vec![1.0 - canary_share, canary_share],
        Rule::Single | Rule::Shadow => uniform_over(&[0], k),
        Rule::Split { weights } => weights.clone(),
        Rule::EpsilonGreedy { epsilon } => {
            let fresh = unexplored(&state.arms, 1);
            let best = if fresh.is_empty() {
                let means: Vec<f64> = state
                    .arms
                    .iter()
                    .map(|a| a.mean().unwrap_or(f64::NEG_INFINITY))
                    .collect();
                argmax(&means)
            } else {
                fresh
            };
            with_floor(uniform_over(&best, k), *epsilon)
        }
        Rule::Thompson { .. } => with_floor(thompson.to_vec(), policy.exploration_floor),
        Rule::Ucb1 => {
            let fresh = unexplored(&state.arms, 1);
            let best = if fresh.is_empty() {
                let total: f64 = state.arms.iter().map(|a| a.rewards as f64).sum();
                let bounds: Vec<f64> = state
                    .arms
                    .iter()
                    .map(|a| {
                        let n = a.rewards as f64;
                        a.reward_sum / n + (2.0 * total.ln() / n).sqrt()
                    })
                    .collect();
                argmax(&bounds)
            } else {
                fresh
            };
            with_floor(uniform_over(&best, k), policy.exploration_floor)
        }
        Rule::LinUcb { alpha, .. } => {
            let Some(x) = context else {
                // Requests of a LinUCB policy are refused without their context; uniform is
                // only what a caller that skipped it would get.
                return vec![1.0 / k as f64; k];
            };
            let scores: Vec<f64> = linear
                .iter()
                .map(|arm| {
                    let d = x.len();
                    let mean: f64 = arm.theta.iter().zip(x).map(|(t, v)| t * v).sum();
                    let mut spread = 0.0;
                    for i in 0..d {
                        let row: f64 = (0..d).map(|j| arm.inverse[i * d + j] * x[j]).sum();
                        spread += x[i] * row;
                    }
                    mean + alpha * spread.max(0.0).sqrt()
                })
                .collect();
            with_floor(uniform_over(&argmax(&scores), k), policy.exploration_floor)
        }
    }
}

/// Thompson sampling's probabilities, estimated from `draws` draws of every arm's posterior:
/// the share of draws in which each arm's was the highest.
pub(crate) fn thompson_estimate(
    likelihood: Likelihood,
    draws: u32,
    state: &RoutingState,
    rng: &mut SmallRng,
) -> Vec<f64> {
    let k = state.arms.len();
    let least = match likelihood {
        Likelihood::Bernoulli => 0,
        // A standard error needs two rewards.
        Likelihood::Gaussian => 2,
    };
    let fresh = unexplored(&state.arms, least);
    if !fresh.is_empty() {
        return uniform_over(&fresh, k);
    }
    enum Posterior {
        Beta(Beta<f64>),
        Normal(Normal<f64>),
        Fixed(f64),
    }
    let posteriors: Vec<Posterior> = state
        .arms
        .iter()
        .map(|a| match likelihood {
            Likelihood::Bernoulli => {
                let hits = a.reward_sum.clamp(0.0, a.rewards as f64);
                match Beta::new(1.0 + hits, 1.0 + a.rewards as f64 - hits) {
                    Ok(b) => Posterior::Beta(b),
                    Err(_) => Posterior::Fixed(a.mean().unwrap_or(0.5)),
                }
            }
            Likelihood::Gaussian => {
                let n = a.rewards as f64;
                let mean = a.mean().unwrap_or(0.0);
                let se = (a.variance().unwrap_or(0.0) / n).sqrt();
                match Normal::new(mean, se) {
                    Ok(d) if se > 0.0 => Posterior::Normal(d),
                    _ => Posterior::Fixed(mean),
                }
            }
        })
        .collect();
    let mut wins = vec![0u32; k];
    let mut theta = vec![0.0; k];
    for _ in 0..draws {
        for (t, p) in theta.iter_mut().zip(&posteriors) {
            *t = match p {
                Posterior::Beta(b) => b.sample(rng),
                Posterior::Normal(n) => n.sample(rng),
                Posterior::Fixed(v) => *v,
            };
        }
        let best = argmax(&theta);
        // Exact ties (fixed posteriors) go to one of the tied arms at random.
        let pick = best[rng.random_range(0..best.len())];
        wins[pick] += 1;
    }
    wins.iter()
        .map(|w| f64::from(*w) / f64::from(draws))
        .collect()
}

/// Each LinUCB arm's A⁻¹ (A = I + Σ x xᵀ) and θ = A⁻¹ Σ r x.
pub(crate) fn linear_arms(state: &RoutingState, d: usize) -> Vec<LinearArm> {
    state
        .arms
        .iter()
        .map(|a| {
            let mut matrix = vec![0.0; d * d];
            for i in 0..d {
                matrix[i * d + i] = 1.0;
            }
            if a.gram.len() == d * d {
                for (m, g) in matrix.iter_mut().zip(&a.gram) {
                    *m += g;
                }
            }
            let inverse = invert(&matrix, d);
            let theta = (0..d)
                .map(|i| {
                    (0..d)
                        .map(|j| inverse[i * d + j] * a.moment.get(j).copied().unwrap_or(0.0))
                        .sum()
                })
                .collect();
            LinearArm { inverse, theta }
        })
        .collect()
}

/// The inverse of a symmetric positive definite matrix (I + a Gram matrix) by Gauss–Jordan
/// elimination with partial pivoting. Hand-written: d is at most 64, the inverse is made once
/// per learned reward, and a linear-algebra crate would cost more to build than this costs to
/// read.
fn invert(matrix: &[f64], d: usize) -> Vec<f64> {
    let mut a = matrix.to_vec();
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        inv[i * d + i] = 1.0;
    }
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&r, &s| a[r * d + col].abs().total_cmp(&a[s * d + col].abs()))
            .unwrap_or(col);
        if pivot != col {
            for j in 0..d {
                a.swap(pivot * d + j, col * d + j);
                inv.swap(pivot * d + j, col * d + j);
            }
        }
        let p = a[col * d + col];
        if p.abs() < f64::MIN_POSITIVE {
            continue;
        }
        for j in 0..d {
            a[col * d + j] /= p;
            inv[col * d + j] /= p;
        }
        for r in 0..d {
            if r != col {
                let f = a[r * d + col];
                if f != 0.0 {
                    for j in 0..d {
                        a[r * d + j] -= f * a[col * d + j];
                        inv[r * d + j] -= f * inv[col * d + j];
                    }
                }
            }
        }
    }
    inv
}

/// The arm `u` ∈ [0, 1) falls on when arms take the shares `p`.
pub(crate) fn pick(p: &[f64], u: f64) -> usize {
    let mut edge = 0.0;
    for (a, share) in p.iter().enumerate() {
        edge += share;
        if u < edge {
            return a;
        }
    }
    // Rounding may leave the last edge just under 1: the last arm with a share takes it.
    p.iter().rposition(|s| *s > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_times_the_matrix_is_the_identity() {
        let m = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = invert(&m, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| m[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn pick_follows_the_shares() {
        assert_eq!(pick(&[0.25, 0.75], 0.1), 0);
        assert_eq!(pick(&[0.25, 0.75], 0.3), 1);
        assert_eq!(pick(&[0.5, 0.5, 0.0], 0.999_999_999_999), 1);
    }
}
