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
}

/// Shadow jobs waiting at most; more are dropped.
const SHADOW_QUEUE: usize = 64;

impl ShadowWorker {
    /// Starts the thread, which opens the shadows' log into `cell` (unless it is open
    /// already) at idle priority, so the log's own writer thread inherits that priority.
    pub(crate) fn start(
        cell: Arc<std::sync::OnceLock<Option<Arc<PredictionLog>>>>,
        config: crate::predlog::LogConfig,
    ) -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<ShadowJob>(SHADOW_QUEUE);
        let runtime = tokio::runtime::Handle::try_current().ok()?;
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
                // Threads inherit their creator's scheduling policy: the log's writer thread,
                // made here, runs at idle priority too. (Whoever opens the cell first opens
                // the log; the other waits for it, so it is never opened twice.)
                let Some(log) = cell.get_or_init(|| open_shadow_log(config)).clone() else {
                    return;
                };
                while let Ok(job) = queue.recv() {
                    let Ok(Some(entries)) =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    else {
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
        Some(ShadowWorker { jobs })
    }

    /// Queues a job; `false` when the queue is full (the job is dropped).
    pub(crate) fn offer(&self, job: ShadowJob) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}
