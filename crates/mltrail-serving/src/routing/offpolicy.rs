//! Off-policy evaluation: the value another policy would have had, estimated from records a
//! logging policy left with their propensities. The estimators are Open Bandit Pipeline's
//! (obp 0.5, `obp/ope/estimators.py`), with no clipping:
//!
//! - IPS: mean of w_i r_i, w_i = π_e(a_i | x_i) / π_b(a_i | x_i);
//! - SNIPS: mean of w_i r_i / mean(w);
//! - DR: mean of q̂(x_i, π_e) + w_i (r_i − q̂(x_i, a_i)), q̂(x, π_e) = Σ_a π_e(a | x) q̂(x, a).
//!
//! The interval is the normal one over the per-round values (mean ± z·sd/√n); OBP's is a
//! bootstrap percentile interval over the same values, which the golden test compares with.

use serde::Serialize;

/// Which estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    Ips,
    Snips,
    Dr,
}

impl Estimator {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ips" => Some(Estimator::Ips),
            "snips" => Some(Estimator::Snips),
            "dr" => Some(Estimator::Dr),
            _ => None,
        }
    }
}

/// One logged decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// The arm the logging policy chose.
    pub arm: usize,
    /// The probability it chose it with (> 0).
    pub propensity: f64,
    pub reward: f64,
    /// π_e(· | x): the target policy's probability of each arm for this round.
    pub target: Vec<f64>,
    /// q̂(x, ·): the reward model's estimate for each arm (DR only; empty otherwise).
    pub estimated: Vec<f64>,
}

/// An estimate with its uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub estimator: Estimator,
    pub value: f64,
    /// Standard error of the mean of the per-round values.
    pub std_error: f64,
    /// 95 % normal interval.
    pub interval: [f64; 2],
    pub rounds: usize,
    /// (Σw)² / Σw²: how many rounds the weighted estimate is worth.
    pub effective_rounds: f64,
}

/// Why no estimate can be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OffPolicyError {
    #[error("no logged rounds to evaluate from")]
    Empty,
    #[error("round {round}: {why}")]
    Round { round: usize, why: String },
}

use super::Z95;

/// Each round's value under `estimator` (OBP's `_estimate_round_rewards`).
pub fn round_values(estimator: Estimator, rounds: &[Round]) -> Result<Vec<f64>, OffPolicyError> {
    if rounds.is_empty() {
        return Err(OffPolicyError::Empty);
    }
    let mut weights = Vec::with_capacity(rounds.len());
    for (i, r) in rounds.iter().enumerate() {
        let bad = |why: String| OffPolicyError::Round { round: i, why };
        if !(r.propensity > 0.0 && r.propensity <= 1.0) {
            return Err(bad(format!(
                "propensity {} is not in (0, 1]: records of a deterministic choice cannot evaluate another policy",
                r.propensity
            )));
        }
        let target = r
            .target
            .get(r.arm)
            .ok_or_else(|| bad(format!("arm {} has no target probability", r.arm)))?;
        if estimator == Estimator::Dr && r.estimated.len() != r.target.len() {
            return Err(bad("the reward model has no estimate for every arm".into()));
        }
        weights.push(target / r.propensity);
    }
    Ok(match estimator {
        Estimator::Ips => rounds
            .iter()
            .zip(&weights)
            .map(|(r, w)| w * r.reward)
            .collect(),
        Estimator::Snips => {
            let mean_w = weights.iter().sum::<f64>() / weights.len() as f64;
            rounds
                .iter()
                .zip(&weights)
                .map(|(r, w)| w * r.reward / mean_w)
                .collect()
        }
        Estimator::Dr => rounds
            .iter()
            .zip(&weights)
            .map(|(r, w)| {
                let baseline: f64 = r.target.iter().zip(&r.estimated).map(|(p, q)| p * q).sum();
                baseline + w * (r.reward - r.estimated[r.arm])
            })
            .collect(),
    })
}

/// The target policy's estimated value.
pub fn estimate(estimator: Estimator, rounds: &[Round]) -> Result<Estimate, OffPolicyError> {
    let values = round_values(estimator, rounds)?;
    let n = values.len() as f64;
    let value = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - value).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let std_error = sd / n.sqrt();
    let weights: Vec<f64> = rounds
        .iter()
        .map(|r| r.target[r.arm] / r.propensity)
        .collect();
    let sum: f64 = weights.iter().sum();
    let squares: f64 = weights.iter().map(|w| w * w).sum();
    Ok(Estimate {
        estimator,
        value,
        std_error,
        interval: [value - Z95 * std_error, value + Z95 * std_error],
        rounds: values.len(),
        effective_rounds: if squares > 0.0 {
            sum * sum / squares
        } else {
            0.0
        },
    })
}

/// The direct method's reward model used for DR here: each arm's mean logged reward (0 for an
/// arm never logged), the same for every round.
pub fn arm_means(rounds: &[Round], arms: usize) -> Vec<f64> {
    let mut sums = vec![(0.0, 0usize); arms];
    for r in rounds {
        if let Some(s) = sums.get_mut(r.arm) {
            s.0 += r.reward;
            s.1 += 1;
        }
    }
    sums.iter()
        .map(|(sum, n)| if *n > 0 { sum / *n as f64 } else { 0.0 })
        .collect()
}
