//! The experiment view: per arm what a policy chose and earned, from its learned state (the
//! total of every replica's reports), with the interval of each mean, the policy's current
//! propensities and an estimate of what choosing other than the best arm cost.

use serde::Serialize;

use super::{Policy, Router, RoutingState, Rule};

use super::Z95;

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ArmReport {
    /// As the policy names it.
    pub arm: String,
    /// Rows the policy chose it for and answered with it.
    pub requests: u64,
    /// Rewards observed.
    pub rewards: u64,
    pub mean_reward: Option<f64>,
    /// The 95 % normal interval of the mean (two rewards at least).
    #[schema(value_type = Option<Vec<f64>>)]
    pub interval: Option<[f64; 2]>,
    /// The probability the policy gives it now (for a request without context).
    pub propensity: Option<f64>,
}

/// A policy's experiment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExperimentReport {
    pub experiment: String,
    pub policy: String,
    pub version: String,
    pub kind: &'static str,
    pub arms: Vec<ArmReport>,
    /// Σ over arms of its requests × (best mean − its mean), from the estimated means: what
    /// not always choosing the best-looking arm cost, in reward units.
    pub regret: Option<f64>,
    /// What the reader should know before using these logs (deterministic propensities…).
    pub warnings: Vec<String>,
}

/// The report of `policy` having learned `state`; a canary's candidate has `canary_share`
/// of the traffic now (`canary::share_now`).
pub fn experiment(policy: &Policy, state: &RoutingState, canary_share: f64) -> ExperimentReport {
    let router = Router::new(std::sync::Arc::new(policy.clone()), Some(state.clone()));
    router.set_canary_share(canary_share);
    let propensities = router.current_probabilities();
    let arms: Vec<ArmReport> = policy
        .arms
        .iter()
        .zip(&state.arms)
        .enumerate()
        .map(|(i, (name, a))| ArmReport {
            arm: name.to_string(),
            requests: a.requests,
            rewards: a.rewards,
            mean_reward: a.mean(),
            interval: a.mean().zip(a.variance()).map(|(m, v)| {
                let half = Z95 * (v / a.rewards as f64).sqrt();
                [m - half, m + half]
            }),
            propensity: propensities.get(i).copied(),
        })
        .collect();
    let best = arms
        .iter()
        .filter_map(|a| a.mean_reward)
        .fold(None, |b: Option<f64>, m| Some(b.map_or(m, |b| b.max(m))));
    let regret = best.map(|best| {
        arms.iter()
            .filter_map(|a| a.mean_reward.map(|m| a.requests as f64 * (best - m)))
            .sum()
    });
    let mut warnings = Vec::new();
    if matches!(policy.rule, Rule::Ucb1 | Rule::LinUcb { .. }) && policy.exploration_floor == 0.0 {
        warnings.push(format!(
            "{} chooses deterministically and exploration_floor is 0: logged propensities are 1 (or a tie's share), so these logs cannot evaluate another policy; set exploration_floor (e.g. 0.05) to keep every arm's propensity positive",
            policy.rule.kind()
        ));
    }
    if policy.rule == Rule::Shadow {
        warnings.push("a shadow policy returns only its first arm: the other arms' records are not returned (returned = false) and carry no propensity".into());
    }
    ExperimentReport {
        experiment: policy.experiment.clone(),
        policy: policy.name.clone(),
        version: policy.version().to_string(),
        kind: policy.rule.kind(),
        arms,
        regret,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_reads_means_intervals_and_regret_from_the_sums() {
        let policy = Policy::from_json(&json!({"kind": "ucb1", "arms": ["m/1", "m/2"]})).unwrap();
        let mut state = RoutingState::empty(&policy.digest, 2);
        for r in [1.0, 0.0, 1.0, 1.0] {
            state.arms[0].observe(r, None);
        }
        for r in [0.0, 0.0] {
            state.arms[1].observe(r, None);
        }
        state.arms[0].requests = 10;
        state.arms[1].requests = 4;
        let report = experiment(&policy, &state, 0.0);
        assert_eq!(report.arms[0].mean_reward, Some(0.75));
        let [low, high] = report.arms[0].interval.unwrap();
        // sd = 0.5, se = 0.25
        assert!((high - low - 2.0 * Z95 * 0.25).abs() < 1e-12);
        assert_eq!(report.regret, Some(4.0 * 0.75));
        assert_eq!(report.arms[0].propensity, Some(1.0));
        assert_eq!(report.warnings.len(), 1);
    }
}
