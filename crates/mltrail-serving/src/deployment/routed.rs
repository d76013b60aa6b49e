//! A deployment with a routing policy: the versions its arms serve, the [`Router`] that
//! chooses an arm per row, and the shadow worker that scores a shadow policy's other arms off
//! the request's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value as Json;

use super::{LoadedModel, Serving};
use crate::predlog::{Entry, PredictionLog};
use crate::request::{Decoded, RequestError};
use crate::routing::{Choice, Policy, Router, RoutingState, Rule};

/// Why a policy cannot be put in force with the versions its arms name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("a ranking deployment (item column `{column}`) serves one version: a routing policy chooses per row, and a ranking's rows are one impression")]
    Ranking { column: String },
    #[error("the policy has {policy} arms but {loaded} versions were loaded")]
    Arms { policy: usize, loaded: usize },
    #[error("arm `{arm}` ({model}/{version}) takes other inputs than arm `{first}`: every arm must take the same columns, so any row can go to any arm")]
    Inputs {
        arm: String,
        first: String,
        model: String,
        version: String,
    },
    #[error("arm `{arm}` ({model}/{version}) stores personal data otherwise than arm `{first}` (its privacy spec differs): every arm's rows are decoded and sealed by one plan, so every arm must seal the same columns under the same subject")]
    Privacy {
        arm: String,
        first: String,
        model: String,
        version: String,
    },
    #[error("context column `{column}` is not an input column of the models (they take: {takes}); LinUCB learns from the columns its predictions log")]
    Context { column: String, takes: String },
    #[error(
        "column `{column}` is personal data sealed in the log: a policy may not read it as {what}"
    )]
    Sealed { column: String, what: &'static str },
    #[error("a shadow policy's arms store personal data sealed; shadows of such versions are not supported yet (use a split with a small weight)")]
    SealedShadow,
}

/// Whether two versions seal the same columns under the same subject (or none): a request is
/// decoded, and its personal data sealed, with the first arm's plan whichever arm answers.
pub(crate) fn same_privacy(a: &LoadedModel, b: &LoadedModel) -> bool {
    a.privacy.as_ref().map(|p| p.spec()) == b.privacy.as_ref().map(|p| p.spec())
}

/// A policy in force.
pub struct Routing {
    pub(crate) router: Router,
    arms: Vec<RwLock<Arc<Serving>>>,
    /// Each arm as the policy names it (`credit@challenger`).
    labels: Vec<String>,
    /// Each arm's [`crate::record::Signature::group_json`] (a shadow's says not returned).
    groups: Vec<Vec<u8>>,
    /// Whether the key column is sealed, so its value is not logged in clear.
    key_sealed: bool,
    pub(crate) shadows_skipped: AtomicU64,
    pub(crate) shadow_failures: AtomicU64,
}

impl Routing {
    /// `models` are the arms' versions, in the policy's order; `learned` what the tracking
    /// server holds for this policy.
    pub(crate) fn new(
        policy: Arc<Policy>,
        servings: Vec<Arc<Serving>>,
        learned: Option<RoutingState>,
    ) -> Result<Self, RoutingError> {
        if servings.len() != policy.arms.len() {
            return Err(RoutingError::Arms {
                policy: policy.arms.len(),
                loaded: servings.len(),
            });
        }
        let first: &LoadedModel = &servings[0].model;
        for (arm, s) in policy.arms.iter().zip(&servings).skip(1) {
            if s.signature != first.signature
                || s.model.model.accepts_missing_values() != first.model.accepts_missing_values()
            {
                return Err(RoutingError::Inputs {
                    arm: arm.to_string(),
                    first: policy.arms[0].to_string(),
                    model: s.name.clone(),
                    version: s.version.clone(),
                });
            }
            if !same_privacy(&s.model, first) {
                return Err(RoutingError::Privacy {
                    arm: arm.to_string(),
                    first: policy.arms[0].to_string(),
                    model: s.name.clone(),
                    version: s.version.clone(),
                });
            }
        }
        let names = first.signature.column_names();
        let sealed = |column: &str| {
            servings.iter().any(|s| {
                s.model.privacy.as_ref().is_some_and(|p| {
                    p.spec().subject() == column || p.spec().pii().iter().any(|c| c == column)
                })
            })
        };
        if let Rule::LinUcb { context, .. } = &policy.rule {
            for column in context {
                if !names.iter().any(|n| n == column) {
                    return Err(RoutingError::Context {
                        column: column.clone(),
                        takes: names.join(", "),
                    });
                }
                if sealed(column) {
                    return Err(RoutingError::Sealed {
                        column: column.clone(),
                        what: "context",
                    });
                }
            }
        }
        if policy.rule == Rule::Shadow && servings.iter().any(|s| s.model.privacy.is_some()) {
            return Err(RoutingError::SealedShadow);
        }
        let labels: Vec<String> = policy.arms.iter().map(ToString::to_string).collect();
        let groups = (0..labels.len())
            .map(|arm| {
                crate::record::Signature::group_json(
                    &policy.experiment,
                    &policy.name,
                    policy.version(),
                    !(policy.rule == Rule::Shadow && arm > 0),
                )
            })
            .collect();
        let key_sealed = policy.key.as_deref().is_some_and(sealed);
        Ok(Routing {
            router: Router::new(policy, learned),
            arms: servings.into_iter().map(RwLock::new).collect(),
            labels,
            groups,
            key_sealed,
            shadows_skipped: AtomicU64::new(0),
            shadow_failures: AtomicU64::new(0),
        })
    }

    pub fn policy(&self) -> &Arc<Policy> {
        self.router.policy()
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The version arm `arm` serves now.
    pub fn serving(&self, arm: usize) -> Arc<Serving> {
        self.arms[arm]
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Every arm's version, in the policy's order.
    pub fn servings(&self) -> Vec<Arc<Serving>> {
        (0..self.arms.len()).map(|a| self.serving(a)).collect()
    }

    /// Puts `next` in service on arm `arm` (its alias moved); returns the version it replaced.
    pub(crate) fn swap(&self, arm: usize, next: Arc<Serving>) -> Arc<Serving> {
        let mut guard = self.arms[arm].write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, next)
    }

    pub fn label(&self, arm: usize) -> &str {
        &self.labels[arm]
    }

    /// The arm a record's `arm` names.
    pub fn arm_of(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    pub(crate) fn group_json(&self, arm: usize) -> &[u8] {
        &self.groups[arm]
    }

    /// Shadow predictions not made because the shadow worker was busy.
    pub fn shadows_skipped(&self) -> u64 {
        self.shadows_skipped.load(Ordering::Relaxed)
    }

    /// Shadow predictions whose model failed.
    pub fn shadow_failures(&self) -> u64 {
        self.shadow_failures.load(Ordering::Relaxed)
    }

    /// Each row's request key (logged unless sealed) and arm.
    pub(crate) fn plan(&self, decoded: &Decoded) -> Result<Plan, RequestError> {
        let policy = self.router.policy();
        let columns = policy.request_columns();
        let width = columns.len();
        let n = decoded.rows;
        let keys = match &policy.key {
            None => None,
            Some(column) => Some(
                (0..n)
                    .map(|r| match &decoded.policy_cells[r * width] {
                        Json::String(s) => Ok(s.clone()),
                        Json::Number(v) => Ok(v.to_string()),
                        _ => Err(RequestError::Cell {
                            column: column.clone(),
                            row: r,
                            why: "the routing policy's request key must be a string or a number"
                                .into(),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let skip = usize::from(policy.key.is_some());
        let context_width = policy.context_width();
        let mut contexts = Vec::with_capacity(n * context_width);
        for r in 0..n {
            for (c, column) in columns.iter().enumerate().skip(skip) {
                match decoded.policy_cells[r * width + c].as_f64() {
                    Some(v) if v.is_finite() => contexts.push(v),
                    _ => {
                        return Err(RequestError::Cell {
                            column: column.to_string(),
                            row: r,
                            why: "the routing policy reads it as a number".into(),
                        })
                    }
                }
            }
        }
        let choices = self.router.choose(n, keys.as_deref(), &contexts);
        Ok(Plan {
            logged_keys: if self.key_sealed { None } else { keys },
            choices,
        })
    }
}

/// A request's routing: each row's choice and the key logged with it.
pub(crate) struct Plan {
    pub(crate) logged_keys: Option<Vec<String>>,
    pub(crate) choices: Vec<Choice>,
}

/// Opens the shadows' log; a failure is logged, and shadows are then not scored.
pub(crate) fn open_shadow_log(config: crate::predlog::LogConfig) -> Option<Arc<PredictionLog>> {
    match PredictionLog::open(config) {
        Ok(log) => Some(Arc::new(log)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the shadows' prediction log; shadows are not scored");
            None
        }
    }
}

/// A shadow scoring job: run off the request's path, its records appended when done.
pub(crate) type ShadowJob = Box<dyn FnOnce() -> Option<Vec<Entry>> + Send>;

/// One thread, at idle priority, that scores shadows and writes their records to the shadows'
/// own log: a slow or failing shadow never holds a request, and under load its jobs are
/// dropped (counted) rather than queued without bound.
pub(crate) struct ShadowWorker {
    jobs: std::sync::mpsc::SyncSender<ShadowJob>,
    /// Jobs queued and not yet taken: a request checks it before copying its inputs for a
    /// shadow that would only be dropped.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// The most requests in progress (the asking one included) at which a shadow is still
    /// scored: half the cores, at least one. Scoring a shadow doubles a request's work (and
    /// the bytes logged), and even at idle priority that work is not free to the primary: the
    /// page cache, the disk and the memory bus are shared. With a 2-core machine saturated by
    /// 100-row requests, shadows of every request that found the queue free cost the
    /// primary 42 % of its throughput and a third more p99 (bench/serving_ab.py --policy-b
    /// shadow); shadows are for comparing on real traffic, and a sample taken when the
    /// deployment has a core to spare is one (mltrail_shadow_skipped counts the rest).
    spare: usize,
    /// Set when the shadow thread found no spare core: shadows wait it out.
    pause: Arc<Pause>,
}

/// When shadows are paused: the idle-priority shadow thread measures what it got. A job
/// that took more than twice its own CPU time (and 0.2 ms more) waited for a core the whole
/// machine was using, wrk's, the kernel's writeback and other processes' included, which the
/// requests in progress alone do not show; offering more would only add work the primary
/// then shares the page cache, disk and memory with. Shadows pause for twenty times that
/// job's time, from 50 ms to 1 s, then try again.
struct Pause {
    epoch: std::time::Instant,
    /// Milliseconds after `epoch` until which no shadow is offered.
    until_ms: AtomicU64,
}

impl Pause {
    fn new() -> Self {
        Pause {
            epoch: std::time::Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> bool {
        self.elapsed_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    fn after_job(&self, wall: std::time::Duration, cpu: std::time::Duration) {
        let waited = wall.saturating_sub(cpu);
        if waited > cpu && waited > std::time::Duration::from_micros(200) {
            let pause = (wall * 20).clamp(
                std::time::Duration::from_millis(50),
                std::time::Duration::from_secs(1),
            );
            let until = self
                .elapsed_ms()
                .saturating_add(u64::try_from(pause.as_millis()).unwrap_or(1000));
            self.until_ms.store(until, Ordering::Relaxed);
        }
    }
}

/// The calling thread's CPU time so far.
fn thread_cpu_time() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass, which lives on this stack frame.
    // On failure it stays zero: every job then looks as if it waited, and shadows pause (the
    // primary's side).
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
    }
    std::time::Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Counts a request in progress while it lives.
pub(crate) struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shadow jobs waiting at most; more are dropped. Shadows run on spare capacity, so the
/// queue only smooths a burst: a long one would keep the idle thread scoring old requests
/// after the machine got busy.
const SHADOW_QUEUE: usize = 16;

impl ShadowWorker {
    /// Opens the shadows' log into `cell` (unless it is open already) and starts the idle
    /// thread that scores shadows and appends to it; `None` when the log cannot be opened.
    pub(crate) fn start(
        cell: Arc<std::sync::OnceLock<Option<Arc<PredictionLog>>>>,
        config: crate::predlog::LogConfig,
    ) -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<ShadowJob>(SHADOW_QUEUE);
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // The log is opened here, at normal priority, so its writer thread is not idle: an
        // idle writer can be kept off the CPU while the file system waits on it (its journal
        // is the primary log's too).
        let log = cell.get_or_init(|| open_shadow_log(config)).clone()?;
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = waiting.clone();
        let pause = Arc::new(Pause::new());
        let paused = pause.clone();
        std::thread::Builder::new()
            .name("mltrail-shadow".into())
            .spawn(move || {
                // SCHED_IDLE for this thread only: it runs when no other thread of the machine
                // wants the core, and a waking request preempts it at once (nice 19 alone
                // still let it delay the primary's wake-ups: its median rose by a third in
                // tests/compat/test_routing.py's measure).
                // SAFETY: sched_setscheduler reads the param struct we pass and changes only
                // the calling thread (pid 0); a failure leaves it at normal priority.
                unsafe {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                }
                while let Ok(job) = queue.recv() {
                    taken.fetch_sub(1, Ordering::Relaxed);
                    let (started, cpu) = (std::time::Instant::now(), thread_cpu_time());
                    let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    paused.after_job(started.elapsed(), thread_cpu_time().saturating_sub(cpu));
                    let Ok(Some(entries)) = scored else {
                        continue;
                    };
                    // The shadows' own log: appending holds its lock, which no primary request
                    // waits on, so this thread may be kept off the CPU meanwhile (appending to
                    // the primary's log from here raised the primary's p99 by a third on 100-row
                    // requests; appending on the runtime's threads instead cost it 40 % of its
                    // throughput: bench/serving_ab.py --policy-b shadow).
                    if let Err(e) = runtime.block_on(log.append(entries)) {
                        tracing::warn!(error = %e, "shadow predictions could not be logged");
                    }
                }
            })
            .ok()?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Some(ShadowWorker {
            jobs,
            waiting,
            spare: (cores / 2).max(1),
            pause,
        })
    }

    /// Whether a shadow should be offered now, with `in_flight` requests in progress (the
    /// asking one included): only when they leave a spare core and the queue has room (the
    /// job may still be dropped by a race).
    pub(crate) fn has_room(&self, in_flight: usize) -> bool {
        in_flight <= self.spare
            && self.waiting.load(Ordering::Relaxed) < SHADOW_QUEUE
            && !self.pause.now()
    }

    /// Queues a job; `false` when the queue is full (the job is dropped).
    pub(crate) fn offer(&self, job: ShadowJob) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let queued = self.jobs.try_send(job).is_ok();
        if !queued {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pause;

    #[test]
    fn shadows_pause_only_after_a_job_that_waited_for_a_core() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // Ran nearly all the time it took: a core was free.
        let pause = Pause::new();
        pause.after_job(ms(10), ms(9));
        assert!(!pause.now());
        // Waited more than it ran, but by less than 0.2 ms: a short job's noise.
        pause.after_job(us(150), us(10));
        assert!(!pause.now());
        // Waited more than it ran: paused, for twenty times the job, at least 50 ms.
        pause.after_job(us(400), us(100));
        assert!(pause.now());
        let until = pause.until_ms.load(std::sync::atomic::Ordering::Relaxed);
        assert!((50..=60).contains(&until), "{until}");
        // At most a second, however long the job waited.
        let pause = Pause::new();
        pause.after_job(Duration::from_secs(5), ms(1));
        let until = pause.until_ms.load(std::sync::atomic::Ordering::Relaxed);
        assert!((1000..=1010).contains(&until), "{until}");
    }
}
