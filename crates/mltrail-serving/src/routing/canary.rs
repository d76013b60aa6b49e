//! A canary's schedule and analysis: which step it is on, and whether what its candidate did
//! in the current window breaks one of its checks (error rate, 99th percentile latency,
//! accuracy against the stable arm's on labelled feedback).

use serde::Serialize;

use super::policy::Canary;
use super::state::ArmState;

/// The step a canary set `elapsed_ms` ago is on, and the candidate's share then.
pub fn step_at(canary: &Canary, elapsed_ms: i64) -> (usize, f64) {
    let step = usize::try_from(elapsed_ms.max(0) / canary.step_ms.max(1))
        .unwrap_or(usize::MAX)
        .min(canary.steps.len() - 1);
    (step, canary.steps[step])
}

/// The candidate's share for a canary set at `since_ms`, now: its schedule's step, or 0 once
/// rolled back. (The replicas and the experiment view both read it from here.)
pub fn share_now(canary: &Canary, since_ms: i64, rolled_back: bool) -> f64 {
    if rolled_back {
        0.0
    } else {
        step_at(canary, mltrail_core::now_millis() - since_ms).1
    }
}

/// A failed check: which, and the values that failed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `max_error_rate`, `max_latency_ms` or `max_accuracy_drop`.
    pub rule: &'static str,
    /// The bound the policy set.
    pub bound: f64,
    /// What the candidate did (its error rate, p99 in ms, or its accuracy drop).
    pub value: f64,
    /// The window's counts behind it.
    pub candidate: WindowCounts,
    pub stable: WindowCounts,
}

/// An arm's counts in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCounts {
    pub requests: u64,
    pub errors: u64,
    pub labelled: u64,
    pub correct: u64,
}

impl From<&ArmState> for WindowCounts {
    fn from(a: &ArmState) -> Self {
        WindowCounts {
            requests: a.requests,
            errors: a.errors,
            labelled: a.labelled,
            correct: a.correct,
        }
    }
}

/// The first check the window breaks, if any: `stable` and `candidate` are what each arm did
/// since the window began. Checks need `min_requests` of the candidate (answered or failed);
/// accuracy needs that many labels on each arm.
pub fn judge(canary: &Canary, stable: &ArmState, candidate: &ArmState) -> Option<Verdict> {
    let verdict = |rule, bound, value| Verdict {
        rule,
        bound,
        value,
        candidate: candidate.into(),
        stable: stable.into(),
    };
    // Rows chosen for the candidate, answered or failed.
    let tried = candidate.requests;
    if tried >= canary.min_requests {
        if let Some(bound) = canary.max_error_rate {
            let rate = candidate.errors as f64 / tried as f64;
            if rate > bound {
                return Some(verdict("max_error_rate", bound, rate));
            }
        }
        if let (Some(bound), Some(p99)) = (canary.max_latency_ms, candidate.latency_p99()) {
            let ms = p99 * 1000.0;
            if ms > bound {
                return Some(verdict("max_latency_ms", bound, ms));
            }
        }
    }
    if let Some(bound) = canary.max_accuracy_drop {
        if candidate.labelled >= canary.min_requests && stable.labelled >= canary.min_requests {
            let accuracy = |a: &ArmState| a.correct as f64 / a.labelled as f64;
            let drop = accuracy(stable) - accuracy(candidate);
            if drop > bound {
                return Some(verdict("max_accuracy_drop", bound, drop));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Policy, Rule};
    use serde_json::json;

    fn canary(doc: serde_json::Value) -> Canary {
        match Policy::from_json(&doc).unwrap().rule {
            Rule::Canary(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_schedule_steps_up_and_stays_at_its_last_step() {
        let c = canary(
            json!({"kind": "canary", "arms": ["m/1", "m/2"], "steps": [5, 25, 100], "step_seconds": 10}),
        );
        assert_eq!(step_at(&c, 0), (0, 0.05));
        assert_eq!(step_at(&c, 10_000), (1, 0.25));
        assert_eq!(step_at(&c, 1_000_000), (2, 1.0));
        assert_eq!(step_at(&c, 19_999).0, 1);
    }

    #[test]
    fn each_check_fails_on_its_own_numbers() {
        let c = canary(
            json!({"kind": "canary", "arms": ["m/1", "m/2"], "min_requests": 10,
                              "max_error_rate": 0.1, "max_latency_ms": 100, "max_accuracy_drop": 0.05}),
        );
        let mut stable = ArmState::default();
        let mut candidate = ArmState {
            requests: 9,
            errors: 5,
            ..ArmState::default()
        };
        // 9 tried: too few to judge.
        assert_eq!(judge(&c, &stable, &candidate), None);
        candidate.requests = 10;
        candidate.errors = 2;
        let v = judge(&c, &stable, &candidate).unwrap();
        assert_eq!((v.rule, v.value), ("max_error_rate", 0.2));
        candidate.errors = 0;
        candidate.requests = 100;
        for _ in 0..98 {
            candidate.observe_latency(0.004);
        }
        candidate.observe_latency(0.2);
        candidate.observe_latency(0.2);
        let v = judge(&c, &stable, &candidate).unwrap();
        assert_eq!((v.rule, v.value), ("max_latency_ms", 250.0));
        candidate.latency.clear();
        stable.labelled = 20;
        stable.correct = 19;
        candidate.labelled = 20;
        candidate.correct = 18;
        assert_eq!(judge(&c, &stable, &candidate), None);
        candidate.correct = 10;
        let v = judge(&c, &stable, &candidate).unwrap();
        assert_eq!(v.rule, "max_accuracy_drop");
        assert!((v.value - 0.45).abs() < 1e-12);
    }
}
