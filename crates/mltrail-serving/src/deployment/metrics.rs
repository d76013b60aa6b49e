//! A deployment's Prometheus metrics, through the `prometheus-client` crate: requests, rows,
//! failures by kind and latency per model version, which version serves now, and swaps.
//!
//! Each model version gets its counters and histogram once, when it is put in service, so a
//! request only adds to atomics (and takes the histogram's short lock); nothing is looked up
//! by label on the request path.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::model::LoadedModel;

/// The exposition format `render` writes (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why a scoring request failed, as the `kind` label of `mltrail_request_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FailureKind {
    /// The request could not be decoded or did not fit the signature.
    bad_request,
    /// The body was over the size limit.
    too_large,
    /// The model refused the input.
    model,
    /// The prediction could not be logged, so it was not answered.
    log,
}

impl FailureKind {
    const ALL: [FailureKind; 4] = [
        FailureKind::bad_request,
        FailureKind::too_large,
        FailureKind::model,
        FailureKind::log,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    deployment: String,
    model: String,
    version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    deployment: String,
    model: String,
    version: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InfoLabels {
    deployment: String,
    model: String,
    version: String,
    digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeploymentLabels {
    deployment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ArmLabels {
    deployment: String,
    experiment: String,
    policy: String,
    arm: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The routing policy's gauges: the experiment's totals as this replica last learned them from
/// the tracking server (every replica's reports, so not to be summed across replicas).
struct ArmGauges {
    requests: Family<ArmLabels, FloatGauge>,
    rewards: Family<ArmLabels, FloatGauge>,
    mean_reward: Family<ArmLabels, FloatGauge>,
    propensity: Family<ArmLabels, FloatGauge>,
    errors: Family<ArmLabels, FloatGauge>,
    shadows_skipped: Family<DeploymentLabels, FloatGauge>,
    shadow_failures: Family<DeploymentLabels, FloatGauge>,
}

/// One arm's numbers for [`DeploymentMetrics::set_arms`].
pub struct ArmNumbers<'a> {
    pub experiment: &'a str,
    pub policy: &'a str,
    pub arm: &'a str,
    pub requests: u64,
    pub rewards: u64,
    pub mean_reward: Option<f64>,
    pub propensity: Option<f64>,
    pub errors: u64,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The deployment's metric families and their registry.
pub struct DeploymentMetrics {
    deployment: String,
    registry: Registry,
    requests: Family<VersionLabels, Counter>,
    rows: Family<VersionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    latency: Family<VersionLabels, Histogram, fn() -> Histogram>,
    info: Family<InfoLabels, Gauge>,
    swaps: Counter,
    arms: ArmGauges,
}

/// One model version's metrics, taken from the families once.
pub struct VersionMetrics {
    requests: Counter,
    rows: Counter,
    failures: [Counter; FailureKind::ALL.len()],
    latency: Histogram,
}

impl VersionMetrics {
    /// Counters in no registry: a version loaded only to explain its past predictions serves
    /// nothing, so it shows in no exposition.
    pub(crate) fn detached() -> Self {
        VersionMetrics {
            requests: Counter::default(),
            rows: Counter::default(),
            failures: std::array::from_fn(|_| Counter::default()),
            latency: latency_histogram(),
        }
    }

    /// One request: its rows on success, its failure kind otherwise, and its latency.
    pub fn observe(&self, outcome: Result<usize, FailureKind>, seconds: f64) {
        self.requests.inc();
        match outcome {
            Ok(rows) => {
                self.rows.inc_by(rows as u64);
            }
            Err(kind) => self.failed(kind),
        }
        self.latency.observe(seconds);
    }

    /// A request refused before it reached the model (e.g. a body over the limit).
    pub fn failed(&self, kind: FailureKind) {
        if let Some(i) = FailureKind::ALL.iter().position(|k| *k == kind) {
            self.failures[i].inc();
        }
    }
}

impl DeploymentMetrics {
    pub fn new(deployment: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<VersionLabels, Counter>::default();
        let rows = Family::<VersionLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let latency = Family::<VersionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "mltrail_requests",
            "Scoring requests received, per model version.",
            requests.clone(),
        );
        registry.register(
            "mltrail_predictions",
            "Rows scored and logged.",
            rows.clone(),
        );
        registry.register(
            "mltrail_request_errors",
            "Failed scoring requests by kind.",
            failures.clone(),
        );
        registry.register(
            "mltrail_request_duration_seconds",
            "Scoring latency, logging included.",
            latency.clone(),
        );
        registry.register(
            "mltrail_deployment_info",
            "The version a deployment serves now.",
            info.clone(),
        );
        let swaps_family = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "mltrail_deployment_swaps",
            "Model swaps since start.",
            swaps_family.clone(),
        );
        let swaps_counter = swaps_family
            .get_or_create(&DeploymentLabels {
                deployment: deployment.to_string(),
            })
            .clone();
        let arms = ArmGauges {
            requests: Family::default(),
            rewards: Family::default(),
            mean_reward: Family::default(),
            propensity: Family::default(),
            errors: Family::default(),
            shadows_skipped: Family::default(),
            shadow_failures: Family::default(),
        };
        for (name, help, family) in [
            (
                "mltrail_arm_requests",
                "Rows the routing policy chose each arm for (the experiment's total).",
                &arms.requests,
            ),
            (
                "mltrail_arm_rewards",
                "Rewards observed per arm (the experiment's total).",
                &arms.rewards,
            ),
            (
                "mltrail_arm_mean_reward",
                "Mean reward per arm (the experiment's total).",
                &arms.mean_reward,
            ),
            (
                "mltrail_arm_propensity",
                "The probability the policy gives each arm now (a request without context).",
                &arms.propensity,
            ),
            (
                "mltrail_arm_errors",
                "Rows each arm's model could not answer (the experiment's total).",
                &arms.errors,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "mltrail_shadow_skipped",
            "Shadow scorings dropped because the shadow worker was behind (this replica).",
            arms.shadows_skipped.clone(),
        );
        registry.register(
            "mltrail_shadow_failures",
            "Shadow scorings whose model failed (this replica).",
            arms.shadow_failures.clone(),
        );
        DeploymentMetrics {
            deployment: deployment.to_string(),
            registry,
            requests,
            rows,
            failures,
            latency,
            info,
            swaps: swaps_counter,
            arms,
        }
    }

    /// Sets the routing gauges to `arms` (none: the policy ended) and the shadows skipped.
    pub fn set_arms(&self, arms: &[ArmNumbers<'_>], shadows_skipped: u64, shadow_failures: u64) {
        let g = &self.arms;
        for family in [
            &g.requests,
            &g.rewards,
            &g.mean_reward,
            &g.propensity,
            &g.errors,
        ] {
            family.clear();
        }
        for a in arms {
            let labels = ArmLabels {
                deployment: self.deployment.clone(),
                experiment: a.experiment.to_string(),
                policy: a.policy.to_string(),
                arm: a.arm.to_string(),
            };
            g.requests.get_or_create(&labels).set(a.requests as f64);
            g.rewards.get_or_create(&labels).set(a.rewards as f64);
            g.errors.get_or_create(&labels).set(a.errors as f64);
            if let Some(m) = a.mean_reward {
                g.mean_reward.get_or_create(&labels).set(m);
            }
            if let Some(p) = a.propensity {
                g.propensity.get_or_create(&labels).set(p);
            }
        }
        g.shadows_skipped
            .get_or_create(&DeploymentLabels {
                deployment: self.deployment.clone(),
            })
            .set(shadows_skipped as f64);
        g.shadow_failures
            .get_or_create(&DeploymentLabels {
                deployment: self.deployment.clone(),
            })
            .set(shadow_failures as f64);
    }

    /// The metrics of a version put in service; it becomes the one `mltrail_deployment_info`
    /// names (the previous one, if any, is `previous`).
    pub fn serve(&self, model: &LoadedModel, previous: Option<&LoadedModel>) -> VersionMetrics {
        let labels = VersionLabels {
            deployment: self.deployment.clone(),
            model: model.name.clone(),
            version: model.version.clone(),
        };
        let failures = FailureKind::ALL.map(|kind| {
            self.failures
                .get_or_create(&FailureLabels {
                    deployment: labels.deployment.clone(),
                    model: labels.model.clone(),
                    version: labels.version.clone(),
                    kind,
                })
                .clone()
        });
        if let Some(previous) = previous {
            self.info.remove(&self.info_labels(previous));
            self.swaps.inc();
        }
        self.info.get_or_create(&self.info_labels(model)).set(1);
        VersionMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            rows: self.rows.get_or_create(&labels).clone(),
            failures,
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }

    fn info_labels(&self, model: &LoadedModel) -> InfoLabels {
        InfoLabels {
            deployment: self.deployment.clone(),
            model: model.name.clone(),
            version: model.version.clone(),
            digest: model.digest.clone(),
        }
    }

    pub fn swaps(&self) -> u64 {
        self.swaps.get()
    }

    /// The exposition text ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
