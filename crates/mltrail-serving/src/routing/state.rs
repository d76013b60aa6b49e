//! What a policy has learned, as sufficient statistics per arm: requests, rewards, their sum and
//! sum of squares, and for LinUCB the sums of `x xᵀ` and `r x` over its context vectors.
//!
//! Every field is a sum, so states add: each serving replica keeps what it learned since its
//! last report as a delta, the tracking server adds the deltas of all replicas to the total,
//! and a replica that starts (or restarts after `kill -9`) resumes from the total rather than
//! a fresh prior.

use serde::{Deserialize, Serialize};

/// One arm's sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmState {
    /// Rows the policy chose this arm for.
    pub requests: u64,
    /// Rewards observed for this arm.
    pub rewards: u64,
    pub reward_sum: f64,
    pub reward_squares: f64,
    /// LinUCB: Σ x xᵀ over rewarded context vectors, row-major (d × d); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gram: Vec<f64>,
    /// LinUCB: Σ r x.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moment: Vec<f64>,
    /// Rows the arm's model could not answer (of `requests`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u64,
    /// Requests by latency, in the buckets of [`LATENCY_BUCKETS`] (one more for slower).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<u64>,
    /// Predictions whose label came back, and those the arm got right.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labelled: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub correct: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Upper bounds of the latency buckets, in seconds (the deployment metrics' buckets).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The bucket of [`LATENCY_BUCKETS`] a latency falls in (the last for slower).
pub fn latency_bucket(seconds: f64) -> usize {
    LATENCY_BUCKETS
        .iter()
        .position(|b| seconds <= *b)
        .unwrap_or(LATENCY_BUCKETS.len())
}

impl ArmState {
    /// The mean reward; `None` before the first.
    pub fn mean(&self) -> Option<f64> {
        (self.rewards > 0).then(|| self.reward_sum / self.rewards as f64)
    }

    /// The sample variance of the rewards; `None` before the second.
    pub fn variance(&self) -> Option<f64> {
        (self.rewards > 1).then(|| {
            let n = self.rewards as f64;
            ((self.reward_squares - self.reward_sum * self.reward_sum / n) / (n - 1.0)).max(0.0)
        })
    }

    /// One request's latency.
    pub fn observe_latency(&mut self, seconds: f64) {
        let mut buckets = [0u64; LATENCY_BUCKETS.len() + 1];
        buckets[latency_bucket(seconds)] = 1;
        self.add_latency(&buckets);
    }

    /// Adds requests counted by latency bucket ([`LATENCY_BUCKETS`], one more for slower).
    pub fn add_latency(&mut self, buckets: &[u64]) {
        if buckets.iter().all(|b| *b == 0) {
            return;
        }
        if self.latency.len() != LATENCY_BUCKETS.len() + 1 {
            self.latency = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        for (have, add) in self.latency.iter_mut().zip(buckets) {
            *have += add;
        }
    }

    /// The 99th percentile latency as its bucket's upper bound, in seconds (infinite past the
    /// last bucket); `None` without requests.
    pub fn latency_p99(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    /// What was added to this arm since `earlier` (a snapshot of it).
    pub fn since(&self, earlier: &ArmState) -> ArmState {
        let minus = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter()
                .enumerate()
                .map(|(i, v)| v.saturating_sub(b.get(i).copied().unwrap_or(0)))
                .collect()
        };
        ArmState {
            requests: self.requests.saturating_sub(earlier.requests),
            rewards: self.rewards.saturating_sub(earlier.rewards),
            reward_sum: self.reward_sum - earlier.reward_sum,
            reward_squares: self.reward_squares - earlier.reward_squares,
            gram: Vec::new(),
            moment: Vec::new(),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: minus(&self.latency, &earlier.latency),
            labelled: self.labelled.saturating_sub(earlier.labelled),
            correct: self.correct.saturating_sub(earlier.correct),
        }
    }

    fn add(&mut self, other: &ArmState) {
        self.errors += other.errors;
        self.labelled += other.labelled;
        self.correct += other.correct;
        if !other.latency.is_empty() {
            if self.latency.len() != other.latency.len() {
                self.latency = vec![0; other.latency.len()];
            }
            for (a, b) in self.latency.iter_mut().zip(&other.latency) {
                *a += b;
            }
        }
        self.requests += other.requests;
        self.rewards += other.rewards;
        self.reward_sum += other.reward_sum;
        self.reward_squares += other.reward_squares;
        add_into(&mut self.gram, &other.gram);
        add_into(&mut self.moment, &other.moment);
    }

    /// One reward, with the context it was earned in (LinUCB).
    pub fn observe(&mut self, reward: f64, context: Option<&[f64]>) {
        self.rewards += 1;
        self.reward_sum += reward;
        self.reward_squares += reward * reward;
        if let Some(x) = context {
            let d = x.len();
            if self.gram.len() != d * d {
                self.gram = vec![0.0; d * d];
                self.moment = vec![0.0; d];
            }
            for i in 0..d {
                for j in 0..d {
                    self.gram[i * d + j] += x[i] * x[j];
                }
                self.moment[i] += reward * x[i];
            }
        }
    }
}

fn add_into(into: &mut Vec<f64>, from: &[f64]) {
    if from.is_empty() {
        return;
    }
    if into.len() != from.len() {
        *into = vec![0.0; from.len()];
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// A policy's learned state: its version and one [`ArmState`] per arm, in the policy's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingState {
    /// The digest of the policy it belongs to (a changed policy starts from its prior).
    pub policy: String,
    pub arms: Vec<ArmState>,
}

/// Why a state cannot be added to another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state belongs to policy {given}, not {expected}")]
    OtherPolicy { given: String, expected: String },
    #[error("the state has {given} arms, the policy {expected}")]
    Arms { given: usize, expected: usize },
    #[error("arm {arm}'s context sums have {given} values where {expected} were expected")]
    Context {
        arm: usize,
        given: usize,
        expected: usize,
    },
    #[error("arm {arm} holds a sum that is not a finite number")]
    NotFinite { arm: usize },
}

impl RoutingState {
    /// The prior: nothing learned yet.
    pub fn empty(policy: &str, arms: usize) -> Self {
        RoutingState {
            policy: policy.to_string(),
            arms: vec![ArmState::default(); arms],
        }
    }

    /// Checks a state sent from elsewhere against its policy before it is added:
    /// `context` is the LinUCB dimension (0 for other kinds).
    pub fn check(&self, policy: &str, arms: usize, context: usize) -> Result<(), StateError> {
        if self.policy != policy {
            return Err(StateError::OtherPolicy {
                given: self.policy.clone(),
                expected: policy.to_string(),
            });
        }
        if self.arms.len() != arms {
            return Err(StateError::Arms {
                given: self.arms.len(),
                expected: arms,
            });
        }
        for (arm, a) in self.arms.iter().enumerate() {
            let sums = [a.reward_sum, a.reward_squares];
            if !sums
                .iter()
                .chain(&a.gram)
                .chain(&a.moment)
                .all(|v| v.is_finite())
            {
                return Err(StateError::NotFinite { arm });
            }
            for (given, expected) in [(a.gram.len(), context * context), (a.moment.len(), context)]
            {
                if given != 0 && given != expected {
                    return Err(StateError::Context {
                        arm,
                        given,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds another state of the same policy (checked with [`Self::check`]).
    pub fn add(&mut self, other: &RoutingState) {
        for (a, b) in self.arms.iter_mut().zip(&other.arms) {
            a.add(b);
        }
    }

    /// Whether nothing was learned (a delta with nothing to report).
    pub fn is_empty(&self) -> bool {
        self.arms.iter().all(|a| *a == ArmState::default())
    }

    /// Canonical JSON (RFC 8785): what the trail's digest of a snapshot is taken over.
    pub fn canonical(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        String::from_utf8(mltrail_core::jcs::of_value(&value)).unwrap_or_default()
    }

    /// BLAKE3 of [`Self::canonical`], hex.
    pub fn digest(&self) -> String {
        blake3::hash(self.canonical().as_bytes())
            .to_hex()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_add_and_the_sum_is_what_one_replica_would_have_learned() {
        let mut one = RoutingState::empty("p", 2);
        let mut a = RoutingState::empty("p", 2);
        let mut b = RoutingState::empty("p", 2);
        for (i, r) in [1.0, 0.0, 1.0, 1.0, 0.5].into_iter().enumerate() {
            let x = [1.0, i as f64];
            one.arms[i % 2].observe(r, Some(&x));
            if i < 3 { &mut a } else { &mut b }.arms[i % 2].observe(r, Some(&x));
        }
        let mut total = RoutingState::empty("p", 2);
        total.add(&a);
        total.add(&b);
        assert_eq!(total, one);
        assert_eq!(total.digest(), one.digest());
        assert_eq!(one.arms[0].mean(), Some(2.5 / 3.0));
        assert!(one.check("p", 2, 2).is_ok());
        assert!(matches!(
            one.check("q", 2, 2),
            Err(StateError::OtherPolicy { .. })
        ));
        assert!(matches!(one.check("p", 3, 2), Err(StateError::Arms { .. })));
        assert!(matches!(
            one.check("p", 2, 3),
            Err(StateError::Context { .. })
        ));
    }
}
