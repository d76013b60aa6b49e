//! Routing a deployment's requests between model versions: the policy as written
//! ([`policy`]), what it learned ([`state`]), each rule's choice ([`choice`]), and the
//! [`Router`] a deployment asks for each row's arm and tells each reward.
//!
//! Every choice comes with its propensity, the probability with which the policy made it, so
//! the records it leaves can evaluate another policy (inverse propensity weighting) and can be
//! weighted or filtered before training a model on them.

pub mod canary;
pub mod choice;
pub mod offpolicy;
pub mod policy;
pub mod report;
pub mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

pub use policy::{Canary, Likelihood, Policy, PolicyError, RewardSource, Rule};
pub use state::{ArmState, RoutingState, StateError};

/// z of a two-sided 95 % normal interval (the experiment view's and off-policy estimates').
pub(crate) const Z95: f64 = 1.959_963_984_540_054;

/// One row's routing decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The arm's index in the policy.
    pub arm: usize,
    /// The probability the policy chose that arm with, for that row, at that moment.
    pub propensity: f64,
}

/// A policy at work: its choices, what it learns, and what it has not yet reported.
pub struct Router {
    policy: Arc<Policy>,
    live: Mutex<Live>,
    /// Per-request counts kept outside the lock (requests chosen, latency buckets), added into
    /// `live` whenever it is taken: every request used to take the lock twice, and with two
    /// runtime threads the contention showed as context switches (40 % more per request in a
    /// 1-row split than without a policy, bench/serving_ab.py --policy-b split).
    counts: Vec<ArmCounts>,
    /// A canary's candidate share, as f64 bits: read without the lock by `choose`.
    share: AtomicU64,
}

/// One arm's requests and latency buckets since `live` last took them.
struct ArmCounts {
    requests: AtomicU64,
    latency: [AtomicU64; state::LATENCY_BUCKETS.len() + 1],
}

impl ArmCounts {
    fn new() -> Self {
        ArmCounts {
            requests: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

struct Live {
    /// Everything known: the total last received plus what was learned here since.
    total: RoutingState,
    /// Learned here and not yet reported.
    pending: RoutingState,
    rng: SmallRng,
    /// Bumped by each change of what was learned (a request count is not one).
    revision: u64,
    thompson: Option<(u64, Vec<f64>)>,
    linear: Option<(u64, Vec<choice::LinearArm>)>,
    /// When the cached estimates were last made: they are remade at most every
    /// [`REESTIMATE_EVERY`] however fast rewards come.
    estimated_at: Option<std::time::Instant>,
    /// A report sent and not yet acknowledged, with its id: resent as is until it is, so a
    /// report the server applied but whose answer was lost is not applied twice.
    outbox: Option<(uuid::Uuid, RoutingState)>,
    /// A canary's candidate share now (its schedule's step, 0 once rolled back).
    canary_share: f64,
}

/// A request key's place in [0, 1): BLAKE3 of the policy's name and the key, so a key keeps
/// its arm across restarts, replicas and new versions of the policy that keep the weights.
pub fn key_position(policy_name: &str, key: &str) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(policy_name.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    // 53 bits: every value is a double, and the largest is below 1.
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

impl Router {
    /// A router for `policy`, resuming from `learned` when it belongs to this policy.
    pub fn new(policy: Arc<Policy>, learned: Option<RoutingState>) -> Self {
        let arms = policy.arms.len();
        let total = learned
            .filter(|s| {
                s.check(&policy.digest, arms, policy.context_width())
                    .is_ok()
            })
            .unwrap_or_else(|| RoutingState::empty(&policy.digest, arms));
        let rng = match policy.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::seed_from_u64(uuid::Uuid::new_v4().as_u64_pair().0),
        };
        let share = match &policy.rule {
            Rule::Canary(c) => c.steps[0],
            _ => 0.0,
        };
        Router {
            counts: (0..arms).map(|_| ArmCounts::new()).collect(),
            share: AtomicU64::new(share.to_bits()),
            live: Mutex::new(Live {
                pending: RoutingState::empty(&policy.digest, arms),
                total,
                rng,
                revision: 0,
                thompson: None,
                linear: None,
                estimated_at: None,
                outbox: None,
                canary_share: match &policy.rule {
                    Rule::Canary(c) => c.steps[0],
                    _ => 0.0,
                },
            }),
            policy,
        }
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The learned state, with every count kept outside the lock added in.
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for (arm, counts) in self.counts.iter().enumerate() {
            let requests = counts.requests.swap(0, Ordering::Relaxed);
            let buckets: Vec<u64> = counts
                .latency
                .iter()
                .map(|b| b.swap(0, Ordering::Relaxed))
                .collect();
            if requests == 0 && buckets.iter().all(|b| *b == 0) {
                continue;
            }
            let live = &mut *live;
            for state in [&mut live.total, &mut live.pending] {
                if let Some(a) = state.arms.get_mut(arm) {
                    a.requests += requests;
                    a.add_latency(&buckets);
                }
            }
        }
        live
    }

    /// Whether the rule's choice reads nothing learned (split, canary, single, shadow) and no
    /// seed asks for one reproducible sequence of draws: such choices take no lock.
    fn stateless(&self) -> bool {
        self.policy.seed.is_none()
            && matches!(
                self.policy.rule,
                Rule::Split { .. } | Rule::Canary(_) | Rule::Single | Rule::Shadow
            )
    }

    /// [`Router::choose`] without the lock: probabilities from the policy (and the canary's
    /// share), draws from this thread's generator.
    fn choose_stateless(&self, rows: usize, keys: Option<&[String]>) -> Vec<Choice> {
        thread_local! {
            static RNG: std::cell::RefCell<SmallRng> = std::cell::RefCell::new(
                SmallRng::seed_from_u64(uuid::Uuid::new_v4().as_u64_pair().0),
            );
        }
        let policy = &self.policy;
        let share = f64::from_bits(self.share.load(Ordering::Relaxed));
        let p = match &policy.rule {
            Rule::Canary(_) => vec![1.0 - share, share],
            Rule::Split { weights } => weights.clone(),
            _ => {
                let mut p = vec![0.0; policy.arms.len()];
                p[0] = 1.0;
                p
            }
        };
        let chosen: Vec<Choice> = (0..rows)
            .map(|row| {
                let u = match (&policy.rule, keys) {
                    (Rule::Split { .. } | Rule::Canary(_), Some(keys)) => {
                        key_position(&policy.name, &keys[row])
                    }
                    _ => RNG.with(|r| r.borrow_mut().random::<f64>()),
                };
                let arm = choice::pick(&p, u);
                Choice {
                    arm,
                    propensity: p[arm],
                }
            })
            .collect();
        for c in &chosen {
            if let Some(counts) = self.counts.get(c.arm) {
                counts.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        chosen
    }

    /// Each row's arm: `keys` are the rows' request keys (when the policy names a key),
    /// `contexts` their context vectors, `width` values each (LinUCB).
    pub fn choose(&self, rows: usize, keys: Option<&[String]>, contexts: &[f64]) -> Vec<Choice> {
        if self.stateless() {
            return self.choose_stateless(rows, keys);
        }
        let policy = &self.policy;
        let width = policy.context_width();
        let mut live = self.live();
        let live = &mut *live;
        refresh(policy, live);
        let thompson = live.thompson.as_ref().map_or(&[][..], |t| &t.1[..]);
        let linear = live.linear.as_ref().map_or(&[][..], |l| &l.1[..]);
        let mut chosen = Vec::with_capacity(rows);
        // Without context the probabilities are the same for every row of the request.
        let shared = (width == 0).then(|| {
            choice::probabilities(
                policy,
                &live.total,
                None,
                thompson,
                linear,
                live.canary_share,
            )
        });
        for row in 0..rows {
            let p = match &shared {
                Some(p) => std::borrow::Cow::Borrowed(p),
                None => std::borrow::Cow::Owned(choice::probabilities(
                    policy,
                    &live.total,
                    contexts.get(row * width..(row + 1) * width),
                    thompson,
                    linear,
                    live.canary_share,
                )),
            };
            // A split and a canary keep a key on its arm (a canary's growing share only adds
            // keys to the candidate).
            let u = match (&policy.rule, keys) {
                (Rule::Split { .. } | Rule::Canary(_), Some(keys)) => {
                    key_position(&policy.name, &keys[row])
                }
                _ => live.rng.random::<f64>(),
            };
            let arm = choice::pick(&p, u);
            chosen.push(Choice {
                arm,
                propensity: p[arm],
            });
        }
        for c in &chosen {
            live.total.arms[c.arm].requests += 1;
            live.pending.arms[c.arm].requests += 1;
        }
        chosen
    }

    /// Learns one reward for `arm`, earned in `context` (LinUCB).
    pub fn reward(&self, arm: usize, reward: f64, context: Option<&[f64]>) {
        let mut live = self.live();
        if arm >= live.total.arms.len() {
            return;
        }
        live.total.arms[arm].observe(reward, context);
        live.pending.arms[arm].observe(reward, context);
        live.revision += 1;
    }

    /// Sets a canary's candidate share (its schedule's step, or 0 after a rollback).
    pub fn set_canary_share(&self, share: f64) {
        let share = share.clamp(0.0, 1.0);
        let mut live = self.live();
        live.canary_share = share;
        self.share.store(share.to_bits(), Ordering::Relaxed);
    }

    /// The canary's candidate share now.
    pub fn canary_share(&self) -> f64 {
        self.live().canary_share
    }

    /// Adds to what `arm` did, in the total and in what is still to report.
    fn on_arm(&self, arm: usize, add: impl Fn(&mut ArmState)) {
        let mut live = self.live();
        let live = &mut *live;
        for state in [&mut live.total, &mut live.pending] {
            if let Some(a) = state.arms.get_mut(arm) {
                add(a);
            }
        }
    }

    /// `rows` rows of `arm` its model could not answer.
    pub fn count_errors(&self, arm: usize, rows: u64) {
        self.on_arm(arm, |a| a.errors += rows);
    }

    /// A request `arm` answered in `seconds`.
    pub fn observe_latency(&self, arm: usize, seconds: f64) {
        if let Some(counts) = self.counts.get(arm) {
            counts.latency[state::latency_bucket(seconds)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A label came back for a prediction of `arm`: whether the arm's answer was right.
    pub fn observe_label(&self, arm: usize, correct: bool) {
        self.on_arm(arm, |a| {
            a.labelled += 1;
            a.correct += u64::from(correct);
        });
    }

    /// The report to send: the one sent and not acknowledged, if any (the same id, the same
    /// delta), else what was learned since the last one under a new id; `None` when there is
    /// nothing to report.
    pub fn outgoing(&self) -> Option<(uuid::Uuid, RoutingState)> {
        let mut live = self.live();
        if live.outbox.is_none() && !live.pending.is_empty() {
            let empty = RoutingState::empty(&self.policy.digest, self.policy.arms.len());
            let delta = std::mem::replace(&mut live.pending, empty);
            live.outbox = Some((uuid::Uuid::new_v4(), delta));
        }
        live.outbox.clone()
    }

    /// The server acknowledged report `id` with `total` (every replica's reports, this one
    /// included): what this replica knows is that plus what it learned since it sent it.
    pub fn delivered(&self, id: uuid::Uuid, total: RoutingState) {
        let mut live = self.live();
        if live.outbox.as_ref().is_some_and(|(sent, _)| *sent == id) {
            live.outbox = None;
        }
        drop(live);
        self.resume(total);
    }

    /// The total the tracking server holds (every replica's acknowledged reports): what this
    /// replica knows is that plus what it has not had acknowledged.
    pub fn resume(&self, total: RoutingState) {
        if total
            .check(
                &self.policy.digest,
                self.policy.arms.len(),
                self.policy.context_width(),
            )
            .is_err()
        {
            return;
        }
        let mut live = self.live();
        let mut known = total;
        if let Some((_, unacknowledged)) = &live.outbox {
            known.add(unacknowledged);
        }
        known.add(&live.pending);
        live.total = known;
        live.revision += 1;
    }

    /// Everything this replica knows now.
    pub fn snapshot(&self) -> RoutingState {
        self.live().total.clone()
    }

    /// The probability of each arm for one request with `context`, as the policy stands now
    /// (what off-policy evaluation reads of a target policy). A split's are its weights, keyed
    /// or not: a key's arm is fixed by its hash, but which keys a weighting sends where is the
    /// randomness its value is estimated over (taken per key, a split evaluated against its
    /// own logs would count every key's reward as certain).
    pub fn probabilities_for(&self, context: Option<&[f64]>) -> Vec<f64> {
        let policy = &self.policy;
        let mut live = self.live();
        let live = &mut *live;
        refresh(policy, live);
        let thompson = live.thompson.as_ref().map_or(&[][..], |t| &t.1[..]);
        let linear = live.linear.as_ref().map_or(&[][..], |l| &l.1[..]);
        choice::probabilities(
            policy,
            &live.total,
            context,
            thompson,
            linear,
            live.canary_share,
        )
    }

    /// The probability of each arm for a request with no context, as the policy stands now
    /// (the experiment view's "current propensities").
    pub fn current_probabilities(&self) -> Vec<f64> {
        // LinUCB's depend on each row's context: there is no one answer.
        if self.policy.context_width() > 0 {
            return Vec::new();
        }
        self.probabilities_for(None)
    }
}

/// Estimates (Thompson's draws, LinUCB's inverses) are remade when this long has passed since
/// the last, or [`REESTIMATE_REWARDS`] rewards per arm came: rewards arriving at request rate
/// would otherwise remake them, under the lock every request takes, for each request. Choices
/// are drawn from the cached estimate, so propensities stay exact.
const REESTIMATE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
const REESTIMATE_REWARDS: u64 = 8;

/// Remakes the policy's cached estimates when what it learned changed and they are old enough.
fn refresh(policy: &Policy, live: &mut Live) {
    let stale = |cached: Option<u64>| cached != Some(live.revision);
    let since = live
        .thompson
        .as_ref()
        .map(|t| t.0)
        .or(live.linear.as_ref().map(|l| l.0))
        .map_or(u64::MAX, |r| live.revision.saturating_sub(r));
    let due = since >= REESTIMATE_REWARDS * policy.arms.len() as u64
        || live
            .estimated_at
            .is_none_or(|t| t.elapsed() >= REESTIMATE_EVERY);
    match policy.rule {
        Rule::Thompson { likelihood, draws }
            if live.thompson.is_none() || (due && stale(live.thompson.as_ref().map(|t| t.0))) =>
        {
            let p = choice::thompson_estimate(likelihood, draws, &live.total, &mut live.rng);
            live.thompson = Some((live.revision, p));
            live.estimated_at = Some(std::time::Instant::now());
        }
        Rule::LinUcb { .. }
            if live.linear.is_none() || (due && stale(live.linear.as_ref().map(|l| l.0))) =>
        {
            live.linear = Some((
                live.revision,
                choice::linear_arms(&live.total, policy.context_width()),
            ));
            live.estimated_at = Some(std::time::Instant::now());
        }
        _ => {}
    }
}

impl Policy {
    /// How many context values each row gives the policy (LinUCB's columns; 0 otherwise).
    pub fn context_width(&self) -> usize {
        match &self.rule {
            Rule::LinUcb { context, .. } => context.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod simulation;
