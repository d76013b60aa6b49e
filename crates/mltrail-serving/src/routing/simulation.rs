//! Seeded simulations of every rule against arms with known reward rates.

use super::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

fn policy(doc: serde_json::Value) -> Arc<Policy> {
    Arc::new(Policy::from_json(&doc).unwrap())
}

/// Runs `rounds` single-row requests against Bernoulli arms with `rates`; returns how often
/// each arm was chosen in the last `tail` rounds and every choice made.
fn simulate(
    router: &Router,
    rates: &[f64],
    rounds: usize,
    tail: usize,
) -> (Vec<usize>, Vec<Choice>) {
    let mut world = SmallRng::seed_from_u64(99);
    let mut late = vec![0; rates.len()];
    let mut all = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let c = router.choose(1, None, &[])[0];
        let reward = f64::from(u8::from(world.random::<f64>() < rates[c.arm]));
        router.reward(c.arm, reward, None);
        if round >= rounds - tail {
            late[c.arm] += 1;
        }
        all.push(c);
    }
    (late, all)
}

#[test]
fn thompson_sampling_concentrates_on_the_best_arm() {
    let router = Router::new(
        policy(json!({"kind": "thompson", "arms": ["m/1", "m/2", "m/3"], "seed": 7, "draws": 200})),
        None,
    );
    let (late, all) = simulate(&router, &[0.3, 0.5, 0.7], 3000, 500);
    assert!(late[2] > 450, "the best arm took {late:?} of the last 500");
    assert!(all
        .iter()
        .all(|c| c.propensity > 0.0 && c.propensity <= 1.0));
    let learned = router.snapshot();
    assert_eq!(learned.arms.iter().map(|a| a.requests).sum::<u64>(), 3000);
    assert_eq!(learned.arms.iter().map(|a| a.rewards).sum::<u64>(), 3000);
}

#[test]
fn gaussian_thompson_sampling_concentrates_on_the_best_mean() {
    let router = Router::new(
        policy(
            json!({"kind": "thompson", "likelihood": "gaussian", "arms": ["m/1", "m/2"], "seed": 3, "draws": 100}),
        ),
        None,
    );
    let mut world = SmallRng::seed_from_u64(5);
    let normal = rand_distr::Normal::new(0.0, 20.0).unwrap();
    let mut late = [0; 2];
    for round in 0..2000 {
        let c = router.choose(1, None, &[])[0];
        let mean = [100.0, 110.0][c.arm];
        router.reward(
            c.arm,
            mean + rand_distr::Distribution::sample(&normal, &mut world),
            None,
        );
        if round >= 1500 {
            late[c.arm] += 1;
        }
    }
    assert!(
        late[1] > 450,
        "the better arm took {late:?} of the last 500"
    );
}

#[test]
fn ucb1_concentrates_on_the_best_arm() {
    let router = Router::new(
        policy(json!({"kind": "ucb1", "arms": ["m/1", "m/2"], "seed": 1})),
        None,
    );
    let (late, all) = simulate(&router, &[0.2, 0.6], 3000, 500);
    assert!(late[1] > 450, "the best arm took {late:?} of the last 500");
    // Without an exploration floor UCB1 is deterministic: every propensity is 1 (or a tie's share).
    assert!(all
        .iter()
        .all(|c| c.propensity == 1.0 || c.propensity == 0.5));
}

#[test]
fn an_exploration_floor_keeps_every_propensity_positive() {
    let router = Router::new(
        policy(
            json!({"kind": "ucb1", "arms": ["m/1", "m/2"], "seed": 1, "exploration_floor": 0.1}),
        ),
        None,
    );
    let (_, all) = simulate(&router, &[0.2, 0.6], 2000, 1);
    assert!(all.iter().all(|c| c.propensity >= 0.05));
    assert!(
        all.iter().any(|c| (c.propensity - 0.05).abs() < 1e-12),
        "the floor's arm is chosen sometimes"
    );
}

/// Within `z` standard errors of a binomial proportion.
fn near(count: usize, n: usize, p: f64, z: f64) -> bool {
    let se = (p * (1.0 - p) / n as f64).sqrt();
    ((count as f64 / n as f64) - p).abs() <= z * se
}

#[test]
fn epsilon_greedy_propensities_match_how_often_arms_are_chosen() {
    let router = Router::new(
        policy(
            json!({"kind": "epsilon_greedy", "epsilon": 0.2, "arms": ["m/1", "m/2", "m/3"], "seed": 11}),
        ),
        None,
    );
    // Learn first, so the greedy arm is settled; then count choices without learning.
    simulate(&router, &[0.1, 0.8, 0.3], 600, 1);
    let n = 20_000;
    let chosen = router.choose(n, None, &[]);
    for arm in 0..3 {
        let count = chosen.iter().filter(|c| c.arm == arm).count();
        let p = chosen
            .iter()
            .find(|c| c.arm == arm)
            .map(|c| c.propensity)
            .unwrap();
        let expected = if arm == 1 { 0.8 + 0.2 / 3.0 } else { 0.2 / 3.0 };
        assert!((p - expected).abs() < 1e-12, "arm {arm}: propensity {p}");
        assert!(
            near(count, n, p, 4.0),
            "arm {arm}: {count} of {n} at propensity {p}"
        );
    }
}

#[test]
fn thompson_propensities_are_the_probabilities_choices_are_drawn_with() {
    let router = Router::new(
        policy(json!({"kind": "thompson", "arms": ["m/1", "m/2"], "seed": 4, "draws": 1000})),
        None,
    );
    for _ in 0..6 {
        router.reward(0, 1.0, None);
        router.reward(1, 1.0, None);
    }
    for _ in 0..3 {
        router.reward(0, 0.0, None);
    }
    let n = 20_000;
    let chosen = router.choose(n, None, &[]);
    let p = router.current_probabilities();
    assert!(p[1] > 0.6 && p[1] < 0.95, "{p:?}");
    let count = chosen.iter().filter(|c| c.arm == 1).count();
    assert!(chosen.iter().all(|c| c.propensity == p[c.arm]));
    assert!(near(count, n, p[1], 4.0), "{count} of {n} at {}", p[1]);
}

#[test]
fn a_split_keeps_a_key_on_its_arm_and_holds_its_weights() {
    let router = Router::new(
        policy(
            json!({"kind": "split", "arms": ["m/1", "m/2"], "weights": [0.9, 0.1], "key": "user_id"}),
        ),
        None,
    );
    let keys: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
    let first = router.choose(keys.len(), Some(&keys), &[]);
    let again = router.choose(keys.len(), Some(&keys), &[]);
    assert_eq!(
        first.iter().map(|c| c.arm).collect::<Vec<_>>(),
        again.iter().map(|c| c.arm).collect::<Vec<_>>()
    );
    // A new router (a restart, another replica) puts each key on the same arm.
    let other = Router::new(
        policy(
            json!({"kind": "split", "arms": ["m/1", "m/2"], "weights": [9, 1], "key": "user_id"}),
        ),
        None,
    );
    assert_eq!(
        first.iter().map(|c| c.arm).collect::<Vec<_>>(),
        other
            .choose(keys.len(), Some(&keys), &[])
            .iter()
            .map(|c| c.arm)
            .collect::<Vec<_>>()
    );
    let second = first.iter().filter(|c| c.arm == 1).count();
    assert!(
        near(second, keys.len(), 0.1, 4.0),
        "{second} of {}",
        keys.len()
    );
    assert!(first
        .iter()
        .all(|c| (c.propensity - [0.9, 0.1][c.arm]).abs() < 1e-12));
}

#[test]
fn linucb_learns_which_arm_suits_which_context() {
    let router = Router::new(
        policy(
            json!({"kind": "linucb", "arms": ["m/1", "m/2"], "context": ["x", "bias"], "alpha": 0.5, "seed": 2}),
        ),
        None,
    );
    // Arm 0 pays when x < 0.5, arm 1 when x ≥ 0.5.
    let mut world = SmallRng::seed_from_u64(8);
    let mut right = 0;
    for round in 0..3000 {
        let x = world.random::<f64>();
        let context = [x, 1.0];
        let c = router.choose(1, None, &context)[0];
        let good = (x < 0.5) == (c.arm == 0);
        router.reward(c.arm, f64::from(u8::from(good)), Some(&context));
        if round >= 2500 && good {
            right += 1;
        }
    }
    assert!(
        right > 425,
        "{right} of the last 500 went to the arm that pays"
    );
}

#[test]
fn a_router_resumes_from_the_total_and_keeps_what_it_learned_since() {
    let p = policy(json!({"kind": "thompson", "arms": ["m/1", "m/2"], "seed": 1}));
    let first = Router::new(p.clone(), None);
    simulate(&first, &[0.2, 0.8], 200, 1);
    let (id, reported) = first.outgoing().unwrap();
    assert_eq!(reported.arms.iter().map(|a| a.rewards).sum::<u64>(), 200);
    // Unacknowledged, the same report goes again; acknowledged, there is nothing to send.
    assert_eq!(first.outgoing().unwrap().0, id);
    first.delivered(id, reported.clone());
    assert!(first.outgoing().is_none());
    // After a restart: the server's total is the prior of the new router.
    let second = Router::new(p.clone(), Some(reported.clone()));
    assert_eq!(second.snapshot(), reported);
    second.reward(1, 1.0, None);
    let mut server = reported.clone();
    server.add(&first.snapshot());
    second.resume(server.clone());
    let mut expected = server;
    expected.arms[1].observe(1.0, None);
    assert_eq!(second.snapshot(), expected);
    // A state of another policy is not resumed from.
    let other = Router::new(
        policy(json!({"kind": "thompson", "arms": ["m/1", "m/3"], "seed": 1})),
        Some(reported),
    );
    assert!(other.snapshot().is_empty());
}

#[test]
fn a_split_chooses_without_the_lock_and_its_counts_reach_the_state() {
    let router = Router::new(
        policy(json!({"kind": "split", "arms": ["m/1", "m/2"], "weights": [0.25, 0.75]})),
        None,
    );
    assert!(router.stateless());
    let chosen = router.choose(4000, None, &[]);
    let second = chosen.iter().filter(|c| c.arm == 1).count();
    assert!((2800..3200).contains(&second), "{second}");
    assert!(chosen.iter().all(|c| c.propensity == [0.25, 0.75][c.arm]));
    router.observe_latency(1, 0.0003);
    router.observe_latency(1, 0.2);
    let state = router.snapshot();
    assert_eq!(
        state.arms.iter().map(|a| a.requests).sum::<u64>(),
        4000,
        "every choice counted"
    );
    assert_eq!(state.arms[1].requests, second as u64);
    assert_eq!(state.arms[1].latency.iter().sum::<u64>(), 2);
    // What is still to report holds them too, once.
    let (_, delta) = router.outgoing().expect("something to report");
    assert_eq!(delta.arms.iter().map(|a| a.requests).sum::<u64>(), 4000);
    assert_eq!(router.snapshot().arms[1].requests, second as u64);
    // A canary's share is read without the lock as well.
    let canary = Router::new(
        policy(
            json!({"kind": "canary", "arms": ["m/1", "m/2"], "steps": [0.1, 1.0], "step_seconds": 60}),
        ),
        None,
    );
    canary.set_canary_share(0.0);
    assert!(canary.choose(100, None, &[]).iter().all(|c| c.arm == 0));
}
