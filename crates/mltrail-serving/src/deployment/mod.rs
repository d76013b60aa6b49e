//! Deployments: a named place where one model version serves at a time, swapped without a
//! failed request, with every row it scores written to the durable prediction log before the
//! answer leaves.
//!
//! [`Deployment`] holds the model in service behind an `Arc` swapped under a short lock: a
//! request keeps the model it started with, so a swap never fails or mixes versions inside one
//! request. Models come from a [`ModelSource`] ([`load`]); [`follower`] keeps an alias-following
//! deployment on the version its alias names. The HTTP edge only decodes bodies, calls these
//! methods and encodes their answers.

mod error;
pub mod follower;
mod metrics;
mod model;
pub mod policy_keeper;
pub mod routed;
mod source;
mod store_source;

pub use error::{ExplanationError, FeedbackError, LookupError, ScoreError};
pub use metrics::{FailureKind, CONTENT_TYPE as METRICS_CONTENT_TYPE};
pub use model::LoadedModel;
pub use source::{
    compile, convertible_flavor, derived_dir, fetch, load, BoxError, BoxFuture, LineageSource,
    Listed, ModelFiles, ModelRef, ModelSource, SourceError, SourceVersion, StoredDataset,
};
pub use store_source::StoreSource;

use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Number, Value as Json};

use crate::archive::{locate_archived, SharedArchive};
use crate::catalog::CatalogMode;
use crate::explanation::{input_numbers, ExplainMode, Explainers, RowExplainer};
use crate::predlog::{Annotations, Entry, EntryKind, PredictionLog};
use crate::privacy::{open_record, subject_of, KeyCache};
use crate::record::{
    prediction_id, write_prediction, ExplanationRecord, FeedbackRecord, LogRecord,
    PredictionRecord, RequestRecord, RowSignature, SealedRow,
};
use crate::request::{self, PrivateRows, RequestKind, RowInputs};
use crate::response;
use crate::runtime::Value;
use metrics::{DeploymentMetrics, VersionMetrics};
use mltrail_core::privacy::DataKey;
pub use routed::{Routing, RoutingError};

/// The model version in service, with the metrics it counts into.
pub struct Serving {
    model: LoadedModel,
    metrics: VersionMetrics,
    /// The version's explainer, made once (from its training data) when first needed; a
    /// failure is not kept, so the next request tries again.
    explainer: tokio::sync::OnceCell<Arc<dyn RowExplainer>>,
    /// Whether serving without explanations has been logged (once per version).
    explain_warned: std::sync::atomic::AtomicBool,
}

impl Serving {
    /// The model version this serves.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    fn new(model: LoadedModel, metrics: VersionMetrics) -> Self {
        Serving {
            model,
            metrics,
            explainer: tokio::sync::OnceCell::new(),
            explain_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The version's explainer, made by `factory` on first use.
    async fn explainer_from(
        self: &Arc<Self>,
        factory: &Arc<dyn Explainers>,
    ) -> Result<Arc<dyn RowExplainer>, String> {
        let (factory, serving) = (factory.clone(), self.clone());
        self.explainer
            .get_or_try_init(
                || async move { factory.build(serving).await.map_err(|e| e.to_string()) },
            )
            .await
            .cloned()
    }

    /// Whether explanations of this version may be stored: not when it seals personal data,
    /// whose values an explanation's numbers and words would repeat in clear.
    pub fn stores_explanations(&self) -> bool {
        self.model.privacy.is_none()
    }
}

/// A prediction with its explanation (a JSON object, `crate::explanation`).
pub struct Explained {
    /// The prediction as stored, its personal data opened.
    pub record: PredictionRecord,
    pub explanation: Box<RawValue>,
}

impl Deref for Serving {
    type Target = LoadedModel;

    fn deref(&self) -> &LoadedModel {
        &self.model
    }
}

/// What a scoring request's body is: MLflow's scoring protocol takes JSON and CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// `text/csv`: a header row, then a row per record.
    Csv,
}

/// One scored request.
pub struct Scored {
    /// The version that answered.
    pub model: Arc<Serving>,
    /// The protocol shape the request used (it decides the `/invocations` answer's shape).
    pub kind: RequestKind,
    /// One prediction id per row.
    pub ids: Vec<uuid::Uuid>,
    /// Each row's outputs as a JSON object, as logged.
    pub rows: Vec<Vec<u8>>,
    /// The outputs as arrays of all rows; `None` when rows routed to different versions
    /// gave outputs of different types (the tensor-shaped answer then lists rows).
    pub outputs: Option<Vec<Value>>,
    /// Each row's arm and version, when a policy routed the request.
    pub routed: Option<RoutedRows>,
    /// The versions that answered and how many rows each.
    pub served: Vec<(Arc<Serving>, usize)>,
    /// A ranking deployment's answer: the items in served order with their scores (`ids`
    /// then holds the impression's one prediction id).
    pub ranking: Option<Ranked>,
}

/// One impression ranked: the item ids as the request gave them, by descending score.
pub struct Ranked {
    pub items: Vec<Json>,
    pub scores: Vec<f64>,
    /// What the deployment's catalog said of them.
    pub catalog: Option<RankedCatalog>,
}

/// The items of an impression the catalog in force does not hold.
pub struct RankedCatalog {
    /// `NAME@VERSION`.
    pub version: String,
    pub mode: CatalogMode,
    /// In served order; left out of `items` when the mode filters.
    pub out: Vec<Json>,
}

/// What a routing policy chose for each row of a request.
pub struct RoutedRows {
    /// The arms that answered some row: label, version and arm index, once each (not per
    /// row: a 100-row request would otherwise clone 100 labels and versions).
    answered: Vec<(String, Arc<Serving>, usize)>,
    /// Each row's place in `answered`.
    row_arm: Vec<usize>,
    pub propensities: Vec<f64>,
}

impl RoutedRows {
    /// Row `r`'s arm label.
    pub fn arm(&self, r: usize) -> &str {
        &self.answered[self.row_arm[r]].0
    }

    /// The version that answered row `r`.
    pub fn version(&self, r: usize) -> &Serving {
        &self.answered[self.row_arm[r]].1
    }

    /// The arms that answered some row, once each (policy arm indices).
    pub fn arms_used(&self) -> impl Iterator<Item = usize> + '_ {
        self.answered.iter().map(|a| a.2)
    }
}

/// The rows one arm answered, with its outputs.
struct Group {
    arm: usize,
    serving: Arc<Serving>,
    rows: Vec<usize>,
    outputs: Vec<Value>,
    explanations: Option<Vec<Vec<u8>>>,
}

impl Scored {
    /// The `/invocations` answer: one record per row for DataFrame input, a dict of output
    /// arrays for tensor input, as `mlflow models serve` answers.
    pub fn invocations_body(&self) -> Vec<u8> {
        if let Some(ranked) = &self.ranking {
            return serde_json::to_vec(&serde_json::json!({
                "predictions": ranked.items,
                "prediction_id": self.ids.first(),
            }))
            .unwrap_or_default();
        }
        match (self.kind, &self.outputs) {
            (RequestKind::Tensor, Some(outputs)) => serde_json::to_vec(
                &response::tensor_predictions(&self.model.output_names, outputs),
            )
            .unwrap_or_default(),
            _ => response::predictions_of_rows(&self.rows),
        }
    }

    /// The native `/api/v1/predict` answer: each row's prediction id, the version that answered
    /// and its outputs.
    pub fn predict_body(&self, deployment: &str) -> Vec<u8> {
        if let Some(ranked) = &self.ranking {
            let mut answer = serde_json::json!({
                "deployment": deployment,
                "prediction_id": self.ids.first(),
                "model": self.model.name,
                "version": self.model.version,
                "digest": self.model.digest,
                "items": ranked.items,
                "scores": ranked.scores.iter().map(|s| Number::from_f64(*s)).collect::<Vec<_>>(),
            });
            if let Some(catalog) = &ranked.catalog {
                answer["catalog"] = catalog.version.clone().into();
                let key = match catalog.mode {
                    CatalogMode::Flag => "out_of_catalog",
                    CatalogMode::Filter => "filtered",
                };
                answer[key] = catalog.out.clone().into();
            }
            return serde_json::to_vec(&answer).unwrap_or_default();
        }
        match &self.routed {
            None => response::native_predictions(
                deployment,
                &self.model.name,
                &self.model.version,
                &self.model.digest,
                &self.ids,
                &self.rows,
            ),
            Some(routed) => {
                response::native_routed_predictions(deployment, &self.ids, &self.rows, |r| {
                    let version = routed.version(r);
                    response::RowOrigin {
                        model: &version.name,
                        version: &version.version,
                        digest: &version.digest,
                        arm: routed.arm(r),
                        propensity: routed.propensities[r],
                    }
                })
            }
        }
    }
}

/// Feedback on a prediction, as the caller sent it.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub prediction_id: uuid::Uuid,
    pub label: Option<Box<RawValue>>,
    pub reward: Option<Number>,
    /// The items displayed, in display order (`displayed`, or its first name `ranking`).
    pub ranking: Option<Box<RawValue>>,
    /// The items the user clicked (any order).
    pub clicked: Option<Box<RawValue>>,
}

/// A list of item ids as feedback carries it: strings or integers, each once.
fn item_list(value: &Json, field: &'static str) -> Result<Box<RawValue>, FeedbackError> {
    let bad = |why: String| FeedbackError::BadItems { field, why };
    let Json::Array(items) = value else {
        return Err(bad(format!("must be a list of item ids, got {value}")));
    };
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let text = crate::ranking::item_text(item).ok_or_else(|| {
            bad(format!(
                "item {k} must be an item id (a string or an integer), got {item}"
            ))
        })?;
        if !seen.insert(text.into_owned()) {
            return Err(bad(format!("item {item} is listed twice")));
        }
    }
    RawValue::from_string(value.to_string()).map_err(|e| bad(e.to_string()))
}

impl Feedback {
    /// Reads `{"prediction_id", "label"?, "reward"?, "displayed"?, "clicked"?}` (`ranking` is
    /// `displayed`'s first name); at least one of them.
    pub fn parse(body: &Json) -> Result<Self, FeedbackError> {
        let id_text = body
            .get("prediction_id")
            .and_then(Json::as_str)
            .ok_or(FeedbackError::MissingId)?;
        let prediction_id = uuid::Uuid::parse_str(id_text)
            .map_err(|_| FeedbackError::BadId(id_text.to_string()))?;
        let raw = |v: &Json| RawValue::from_string(v.to_string()).ok();
        let label = body.get("label").and_then(raw);
        let reward = match body.get("reward") {
            None => None,
            Some(Json::Number(n)) => Some(n.clone()),
            Some(_) => return Err(FeedbackError::BadReward),
        };
        let ranking = match (body.get("displayed"), body.get("ranking")) {
            (Some(_), Some(_)) => {
                return Err(FeedbackError::BadItems {
                    field: "ranking",
                    why: "give `displayed` (or its first name `ranking`), not both".into(),
                })
            }
            (Some(v), None) => Some(item_list(v, "displayed")?),
            (None, Some(v)) => Some(item_list(v, "ranking")?),
            (None, None) => None,
        };
        let clicked = body
            .get("clicked")
            .map(|v| item_list(v, "clicked"))
            .transpose()?;
        if label.is_none() && reward.is_none() && ranking.is_none() && clicked.is_none() {
            return Err(FeedbackError::Empty);
        }
        Ok(Feedback {
            prediction_id,
            label,
            reward,
            ranking,
            clicked,
        })
    }
}

pub struct Deployment {
    name: String,
    current: RwLock<Arc<Serving>>,
    log: Arc<PredictionLog>,
    metrics: DeploymentMetrics,
    archive: Option<SharedArchive>,
    /// Where subjects' keys come from, for versions that seal personal data.
    keys: Option<Arc<KeyCache>>,
    explain_mode: ExplainMode,
    explainers: Option<Arc<dyn Explainers>>,
    lineage: Option<Arc<dyn LineageSource>>,
    /// Where versions come from, to explain predictions of versions no longer in service.
    source: Option<Arc<dyn ModelSource>>,
    /// The versions swapped out most recently (newest last), kept with their explainers:
    /// their predictions are explained by the version that answered them.
    retired: std::sync::Mutex<Vec<Arc<Serving>>>,
    /// Counterfactual searches running at once: each may take a core for a while, and scoring
    /// must keep the rest.
    counterfactuals: tokio::sync::Semaphore,
    /// The routing policy in force, with its arms' versions; `None` serves `current` alone.
    routing: RwLock<Option<Arc<Routing>>>,
    /// The thread that scores shadows, started with the first shadow policy.
    shadows: std::sync::OnceLock<Option<routed::ShadowWorker>>,
    /// The shadows' own prediction log (`<log dir>/shadow`), opened with the first shadow
    /// policy or when an earlier run left one: the shadow thread never holds the primary's
    /// log, whose lock the primary's requests wait on.
    /// One cell, shared with the shadow thread, so the log is opened once whoever comes first.
    shadow_log: Arc<std::sync::OnceLock<Option<Arc<PredictionLog>>>>,
    /// How the shadow log is configured (the primary's, in its own folder).
    shadow_config: Option<crate::predlog::LogConfig>,
    /// Requests in progress under a shadow policy: a shadow is scored only while they are
    /// few enough to leave a core spare (`ShadowWorker::has_room`).
    shadowed_in_flight: std::sync::atomic::AtomicUsize,
    /// Set when the deployment's answer is a ranking of each request's rows.
    ranking: Option<crate::ranking::RankingOutput>,
    /// The catalog a ranking's items are checked against.
    catalog: Option<Arc<crate::catalog::CatalogState>>,
}

/// What a piece of feedback teaches the policy in force.
enum Lesson {
    /// A learning policy's reward.
    Reward {
        arm: usize,
        reward: f64,
        context: Option<Vec<f64>>,
    },
    /// A canary's label: whether the arm answered right.
    Label { arm: usize, correct: bool },
}

/// What `feedback` teaches the policy in force about the arm that answered `record`, when that
/// policy chose the arm and no earlier feedback on it taught the same (a prediction teaches
/// once). A reward the policy cannot take is refused before anything is recorded.
fn lesson_of(
    routing: &Routing,
    record: &PredictionRecord,
    earlier: &[FeedbackRecord],
    feedback: &Feedback,
) -> Result<Option<Lesson>, FeedbackError> {
    let policy = routing.policy();
    if let crate::routing::Rule::Canary(canary) = &policy.rule {
        let (Some(label), Some(arm)) = (&feedback.label, routed_arm(routing, record)) else {
            return Ok(None);
        };
        if earlier.iter().any(|f| f.label.is_some()) {
            return Ok(None);
        }
        let outputs: serde_json::Map<String, Json> =
            serde_json::from_str(record.outputs.get()).unwrap_or_default();
        let said = outputs.get(&canary.label_output);
        let given: Option<Json> = serde_json::from_str(label.get()).ok();
        let correct = match (said, &given) {
            (Some(Json::Number(a)), Some(Json::Number(b))) => a.as_f64() == b.as_f64(),
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        return Ok(Some(Lesson::Label { arm, correct }));
    }
    // Feedback on a prediction this policy did not route is only recorded.
    let Some(arm) = routed_arm(routing, record) else {
        return Ok(None);
    };
    let Some(reward) = policy
        .reward_of(feedback.reward.as_ref(), feedback.label.as_deref())
        .map_err(FeedbackError::Reward)?
    else {
        return Ok(None);
    };
    if earlier.iter().any(|f| {
        matches!(
            policy.reward_of(f.reward.as_ref(), f.label.as_deref()),
            Ok(Some(_))
        )
    }) {
        return Ok(None);
    }
    let context = match &policy.rule {
        crate::routing::Rule::LinUcb { context, .. } => {
            let inputs: serde_json::Map<String, Json> =
                serde_json::from_str(record.inputs.get()).unwrap_or_default();
            let values: Option<Vec<f64>> = context
                .iter()
                .map(|c| inputs.get(c).and_then(Json::as_f64))
                .collect();
            match values {
                Some(v) => Some(v),
                None => return Ok(None),
            }
        }
        _ => None,
    };
    Ok(Some(Lesson::Reward {
        arm,
        reward,
        context,
    }))
}

/// The arm of the policy in force that answered `record`: `None` when another policy (or
/// version of it) routed it, or it was a shadow's.
fn routed_arm(routing: &Routing, record: &PredictionRecord) -> Option<usize> {
    let signature = record.signature.as_ref()?;
    if signature.policy_version != routing.policy().version() || !signature.returned {
        return None;
    }
    routing.arm_of(record.arm.as_deref()?)
}

/// Counterfactual searches a deployment runs at once; more wait their turn.
const COUNTERFACTUALS_AT_ONCE: usize = 1;

/// Whether `serving` is model `name` version `version` from the file with `digest`.
fn same_version(serving: &Serving, name: &str, version: &str, digest: &str) -> bool {
    serving.digest == digest && serving.version == version && serving.name == name
}

/// Versions kept after a swap for explaining their predictions; older ones are loaded again
/// when asked.
const RETIRED_VERSIONS: usize = 3;

impl Deployment {
    pub fn new(name: String, model: LoadedModel, log: Arc<PredictionLog>) -> Self {
        let metrics = DeploymentMetrics::new(&name);
        let version_metrics = metrics.serve(&model, None);
        let serving = Serving::new(model, version_metrics);
        Self {
            name,
            current: RwLock::new(Arc::new(serving)),
            log,
            metrics,
            archive: None,
            keys: None,
            explain_mode: ExplainMode::Off,
            explainers: None,
            lineage: None,
            source: None,
            retired: std::sync::Mutex::new(Vec::new()),
            counterfactuals: tokio::sync::Semaphore::new(COUNTERFACTUALS_AT_ONCE),
            routing: RwLock::new(None),
            shadows: std::sync::OnceLock::new(),
            shadow_log: Arc::new(std::sync::OnceLock::new()),
            shadow_config: None,
            shadowed_in_flight: std::sync::atomic::AtomicUsize::new(0),
            ranking: None,
            catalog: None,
        }
    }

    /// Checks every item a ranking serves against `catalog` (`crate::catalog`).
    pub fn with_catalog(mut self, catalog: Arc<crate::catalog::CatalogState>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The catalog a ranking's items are checked against.
    pub fn catalog(&self) -> Option<&Arc<crate::catalog::CatalogState>> {
        self.catalog.as_ref()
    }

    /// Answers each request with its rows (the candidate items of one impression) ranked by
    /// the model's score, under one prediction id (`crate::ranking`).
    pub fn with_ranking(mut self, output: crate::ranking::RankingOutput) -> Self {
        self.ranking = Some(output);
        self
    }

    /// How the deployment ranks, when its answer is a ranking.
    pub fn ranking(&self) -> Option<&crate::ranking::RankingOutput> {
        self.ranking.as_ref()
    }

    /// Whether `model` could answer this deployment's requests: a ranking needs the output it
    /// ranks by and inputs that are not sealed. Checked before a followed alias's new version
    /// is swapped in (what the outputs hold per row shows only when it runs).
    pub fn can_serve(&self, model: &LoadedModel) -> Result<(), String> {
        let Some(ranking) = &self.ranking else {
            return Ok(());
        };
        crate::ranking::score_output_index(&model.output_names, ranking.score_output.as_deref())
            .map_err(|e| e.to_string())?;
        if model.privacy.is_some() {
            return Err(format!(
                "version {} seals personal data in its inputs; a ranking's candidates are items, logged as they come",
                model.version
            ));
        }
        Ok(())
    }

    /// The routing policy in force.
    pub fn routing(&self) -> Option<Arc<Routing>> {
        self.routing
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts `policy` in force with its arms' versions (`models`, in the policy's order),
    /// resuming from `learned`. Requests already running finish under the policy they
    /// started with.
    pub fn route(
        &self,
        policy: Arc<crate::routing::Policy>,
        models: Vec<LoadedModel>,
        learned: Option<crate::routing::RoutingState>,
    ) -> Result<Arc<Routing>, RoutingError> {
        if let Some(ranking) = &self.ranking {
            return Err(RoutingError::Ranking {
                column: ranking.item_column.clone(),
            });
        }
        let servings = models
            .into_iter()
            .map(|m| {
                let metrics = self.metrics.serve(&m, None);
                Arc::new(Serving::new(m, metrics))
            })
            .collect();
        let shadow = policy.rule == crate::routing::Rule::Shadow;
        let routing = Arc::new(Routing::new(policy, servings, learned)?);
        if shadow {
            self.shadows.get_or_init(|| {
                routed::ShadowWorker::start(self.shadow_log.clone(), self.shadow_config())
            });
        }
        if self.explain_mode == ExplainMode::Always {
            for serving in routing.servings() {
                self.prepare_in_background(serving);
            }
        }
        let previous = {
            let mut guard = self.routing.write().unwrap_or_else(|p| p.into_inner());
            guard.replace(routing.clone())
        };
        if let Some(previous) = previous {
            for serving in previous.servings() {
                self.retire(serving);
            }
        }
        Ok(routing)
    }

    /// How the shadows' log is configured: the primary's configuration, whose folder is
    /// replaced by `<log dir>/shadow`.
    pub fn with_shadow_log(mut self, mut config: crate::predlog::LogConfig) -> Self {
        config.dir = self.log.dir().join("shadow");
        self.shadow_config = Some(config);
        self
    }

    fn shadow_config(&self) -> crate::predlog::LogConfig {
        self.shadow_config.clone().unwrap_or_else(|| {
            crate::predlog::LogConfig::new(
                self.log.dir().join("shadow"),
                crate::predlog::Durability::Default,
            )
        })
    }

    /// The shadows' log: opened by the shadow thread with the first shadow policy, or here
    /// when an earlier run left one (to archive it, and find its records).
    fn shadow_log(&self) -> Option<Arc<PredictionLog>> {
        if let Some(opened) = self.shadow_log.get() {
            return opened.clone();
        }
        let config = self.shadow_config();
        if !config.dir.exists() {
            return None;
        }
        self.shadow_log
            .get_or_init(|| routed::open_shadow_log(config))
            .clone()
    }

    /// Writes out and closes the shadows' log (at shutdown, after the primary's).
    pub fn close_shadow_log(&self) {
        if let Some(Some(log)) = self.shadow_log.get() {
            log.close();
        }
    }

    /// Ends the routing policy: `current` serves alone again.
    pub fn unroute(&self) -> Option<Arc<Routing>> {
        let mut guard = self.routing.write().unwrap_or_else(|p| p.into_inner());
        guard.take()
    }

    /// Puts `next` in service on arm `arm` of the policy in force (its alias moved).
    pub fn swap_arm(&self, arm: usize, next: LoadedModel) -> Option<Arc<Serving>> {
        let routing = self.routing()?;
        if arm >= routing.policy().arms.len() {
            return None;
        }
        let previous = routing.serving(arm);
        // Every arm must take the inputs the others take (any row may go to any arm): a
        // version an alias moved to that takes others keeps the arm on the version it had.
        // (A one-arm policy has no other arm to match.)
        let other = routing
            .servings()
            .into_iter()
            .enumerate()
            .find(|(i, _)| *i != arm)
            .map(|(_, s)| s);
        if other.is_some_and(|other| {
            next.signature != other.signature
                || next.model.accepts_missing_values() != other.model.model.accepts_missing_values()
                || !routed::same_privacy(&next, &other.model)
        }) {
            tracing::warn!(deployment = %self.name, arm = routing.label(arm), version = %next.version, "the version the arm's alias names takes other inputs, or seals other columns, than the other arms: not swapped in");
            return None;
        }
        let metrics = self.metrics.serve(&next, Some(&previous.model));
        let next = Arc::new(Serving::new(next, metrics));
        if self.explain_mode == ExplainMode::Always {
            self.prepare_in_background(next.clone());
        }
        let replaced = routing.swap(arm, next);
        self.retire(replaced.clone());
        Some(replaced)
    }

    /// Makes a version's explainer beside serving (`--explain always`), so its first
    /// requests do not wait for it.
    fn prepare_in_background(&self, serving: Arc<Serving>) {
        if let (Some(factory), Ok(runtime)) =
            (&self.explainers, tokio::runtime::Handle::try_current())
        {
            let factory = factory.clone();
            runtime.spawn(async move {
                if let Err(why) = serving.explainer_from(&factory).await {
                    tracing::warn!(version = %serving.version, error = %why, "the new version cannot be explained; its predictions are stored without explanations");
                }
            });
        }
    }

    /// Where this deployment's versions come from, so a prediction of a version no longer in
    /// service is still explained by that version.
    pub fn with_source(mut self, source: Arc<dyn ModelSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Keeps a version just swapped out (and its explainer) for explaining its predictions.
    fn retire(&self, serving: Arc<Serving>) {
        // Kept only to explain their predictions: without explanations a swapped-out model
        // would be memory held for nothing.
        if self.explain_mode == ExplainMode::Off {
            return;
        }
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|r| !same_version(r, &serving.name, &serving.version, &serving.digest));
        retired.push(serving);
        if retired.len() > RETIRED_VERSIONS {
            retired.remove(0);
        }
    }

    /// The version that answered `record`: the one in service, a recently retired one, or
    /// (through the model source) that version loaded again, its file checked by digest.
    async fn serving_of(
        &self,
        record: &PredictionRecord,
    ) -> Result<Arc<Serving>, ExplanationError> {
        // The same file registered as two versions may have two training datasets, so two
        // backgrounds: the version must match, not only the file.
        let answered =
            |s: &Serving| same_version(s, &record.model, &record.version, &record.digest);
        let current = self.current();
        if answered(&current) {
            return Ok(current);
        }
        if let Some(arm) = self
            .routing()
            .and_then(|r| r.servings().into_iter().find(|s| answered(s)))
        {
            return Ok(arm);
        }
        let kept = {
            let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            retired.iter().find(|r| answered(r)).cloned()
        };
        if let Some(kept) = kept {
            return Ok(kept);
        }
        let other = || ExplanationError::OtherModel {
            id: record.id,
            model: record.model.clone(),
            version: record.version.clone(),
            digest: record.digest.clone(),
        };
        let source = self.source.as_ref().ok_or_else(other)?;
        let reference = ModelRef::parse(&format!("{}/{}", record.model, record.version))
            .map_err(|_| other())?;
        let version = source.version(&reference).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot load the version that answered a prediction");
            other()
        })?;
        let loaded = load(source.as_ref(), &version).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot load the version that answered a prediction");
            other()
        })?;
        if loaded.digest != record.digest {
            return Err(other());
        }
        let serving = Arc::new(Serving::new(loaded, VersionMetrics::detached()));
        self.retire(serving.clone());
        Ok(serving)
    }

    /// Where what stands behind a model version comes from (the tracking server).
    pub fn with_lineage(mut self, lineage: Arc<dyn LineageSource>) -> Self {
        self.lineage = Some(lineage);
        self
    }

    /// What stands behind `record`'s model version, as the lineage source proves it.
    pub async fn lineage(&self, record: &PredictionRecord) -> Result<Json, SourceError> {
        match &self.lineage {
            Some(source) => {
                source
                    .lineage(&self.name, &record.model, &record.version)
                    .await
            }
            None => Err(SourceError::unavailable(
                "the lineage of a model version",
                "this deployment has no tracking server to ask",
            )),
        }
    }

    /// A prediction still in this deployment's own log (not yet archived): as stored, with
    /// its personal data opened, and what was appended about it. `None` when the local log
    /// does not hold it.
    pub async fn local_record(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(PredictionRecord, PredictionRecord, Annotations)>, LookupError> {
        let Some((stored, annotations)) = self
            .read_log(move |log| log.get_annotated(id.as_u128()))
            .await?
        else {
            return Ok(None);
        };
        let mut opened = stored.clone();
        self.open(&mut opened).await?;
        Ok(Some((stored, opened, annotations)))
    }

    /// Opens a record's sealed inputs with its subject's key, when the key still exists.
    async fn open(&self, record: &mut PredictionRecord) -> Result<(), LookupError> {
        if let Some(subject) = subject_of(record) {
            let key = match &self.keys {
                Some(cache) => cache.for_hashes(&[subject]).await?.pop().flatten(),
                None => None,
            };
            open_record(record, key.as_deref());
        }
        Ok(())
    }

    /// How predictions are explained, and who makes each version's explainer.
    pub fn with_explanations(mut self, mode: ExplainMode, explainers: Arc<dyn Explainers>) -> Self {
        self.explain_mode = mode;
        self.explainers = Some(explainers);
        self
    }

    pub fn explain_mode(&self) -> ExplainMode {
        self.explain_mode
    }

    /// The explainer of `serving`, made on first use.
    async fn explainer(&self, serving: &Arc<Serving>) -> Result<Arc<dyn RowExplainer>, String> {
        match &self.explainers {
            Some(factory) => serving.explainer_from(factory).await,
            None => Err("this process makes no explainers".into()),
        }
    }

    /// Makes the explainer of the version in service now (`mltrail serve --explain always`
    /// checks at start that its version can be explained).
    pub async fn prepare_explainer(&self) -> Result<(), String> {
        self.explainer(&self.current()).await.map(|_| ())
    }

    /// Where the keys that seal personal data come from. A version with a privacy spec is
    /// not served without them: its requests answer 503.
    pub fn with_subject_keys(mut self, keys: Arc<KeyCache>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Where sealed segments are archived; lookups fall back to it.
    pub fn with_archive(mut self, archive: SharedArchive) -> Self {
        self.archive = Some(archive);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Arc<PredictionLog> {
        &self.log
    }

    /// The version in service now: under a routing policy, its first arm's.
    pub fn current(&self) -> Arc<Serving> {
        if let Some(routing) = self.routing() {
            return routing.serving(0);
        }
        self.current
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts `next` in service; requests already running finish on the model they started with.
    /// Returns the version it replaced.
    pub fn swap(&self, next: LoadedModel) -> Arc<Serving> {
        // The metrics are set up before the lock: requests read `current` on every call.
        // (Swaps come one at a time from the alias follower.)
        let previous = self.current();
        let metrics = self.metrics.serve(&next, Some(&previous.model));
        let next = Arc::new(Serving::new(next, metrics));
        if self.explain_mode == ExplainMode::Always {
            // The new version's explainer is made beside serving, not by its first request.
            self.prepare_in_background(next.clone());
        }
        let replaced = {
            let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *guard, next)
        };
        self.retire(replaced.clone());
        replaced
    }

    /// Model swaps since start.
    pub fn swaps(&self) -> u64 {
        self.metrics.swaps()
    }

    /// The Prometheus exposition of the deployment's metrics ([`METRICS_CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> String {
        match self.routing() {
            Some(routing) => {
                let policy = routing.policy();
                let learned = routing.router().snapshot();
                let propensities = routing.router().current_probabilities();
                let arms: Vec<metrics::ArmNumbers<'_>> = learned
                    .arms
                    .iter()
                    .enumerate()
                    .map(|(i, a)| metrics::ArmNumbers {
                        experiment: &policy.experiment,
                        policy: &policy.name,
                        arm: routing.label(i),
                        requests: a.requests,
                        rewards: a.rewards,
                        mean_reward: a.mean(),
                        propensity: propensities.get(i).copied(),
                        errors: a.errors,
                    })
                    .collect();
                self.metrics
                    .set_arms(&arms, routing.shadows_skipped(), routing.shadow_failures());
            }
            None => self.metrics.set_arms(&[], 0, 0),
        }
        self.metrics.render()
    }

    /// Counts a request refused before it was decoded (a body over the limit) under its
    /// failure kind; it never reached a model, so it adds to no request count or latency.
    pub fn refused(&self, kind: FailureKind) {
        self.current().metrics.failed(kind);
    }

    /// Decodes, validates, runs and logs one request. `started` is when the request arrived:
    /// the logged latency and the latency metric count from it.
    pub async fn score(
        &self,
        format: BodyFormat,
        body: &[u8],
        started: Instant,
    ) -> Result<Scored, ScoreError> {
        self.score_traced(format, body, started, None).await
    }

    /// [`Deployment::score`] of a request that carried a W3C trace id
    /// (`crate::record::trace_id_of`), stored in each of its records.
    pub async fn score_traced(
        &self,
        format: BodyFormat,
        body: &[u8],
        started: Instant,
        trace_id: Option<&str>,
    ) -> Result<Scored, ScoreError> {
        let routing = self.routing();
        let primary = match &routing {
            Some(r) => r.serving(0),
            None => self.current(),
        };
        let shadowed = routing
            .as_ref()
            .is_some_and(|r| r.policy().rule == crate::routing::Rule::Shadow);
        let _in_flight = shadowed.then(|| routed::InFlight::enter(&self.shadowed_in_flight));
        let result = self
            .score_with(routing.as_ref(), &primary, format, body, started, trace_id)
            .await;
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(scored) => {
                for (serving, rows) in &scored.served {
                    serving.metrics.observe(Ok(*rows), seconds);
                }
                if let (Some(routing), Some(routed)) = (&routing, &scored.routed) {
                    for arm in routed.arms_used() {
                        routing.router().observe_latency(arm, seconds);
                    }
                }
            }
            Err(e) => primary.metrics.observe(Err(e.kind()), seconds),
        }
        result
    }

    async fn score_with(
        &self,
        routing: Option<&Arc<Routing>>,
        primary: &Arc<Serving>,
        format: BodyFormat,
        body: &[u8],
        started: Instant,
        trace_id: Option<&str>,
    ) -> Result<Scored, ScoreError> {
        let json: Json = match format {
            BodyFormat::Json => serde_json::from_slice(body).map_err(ScoreError::Json)?,
            BodyFormat::Csv => {
                // Ids are kept as written: a subject, an item or a request key `007` is not 7.
                let text: Vec<&str> = primary
                    .model
                    .privacy
                    .as_ref()
                    .map(|p| p.spec().subject())
                    .into_iter()
                    .chain(self.ranking.iter().flat_map(|r| {
                        std::iter::once(r.item_column.as_str()).chain(r.key_column.as_deref())
                    }))
                    .collect();
                request::csv_body(body, &text)?
            }
        };
        let columns = match (routing, &self.ranking) {
            (Some(r), _) => r.policy().request_columns(),
            (None, Some(ranking)) => std::iter::once(ranking.item_column.as_str())
                .chain(ranking.key_column.as_deref())
                .collect(),
            (None, None) => Vec::new(),
        };
        let mut decoded = request::decode_with(
            json,
            &primary.model.model,
            &primary.signature,
            primary.model.privacy.as_ref(),
            &columns,
        )?;
        if let (None, Some(ranking)) = (routing, &self.ranking) {
            return self
                .rank(ranking, primary, decoded, started, trace_id)
                .await;
        }
        let n = decoded.rows;
        let plan = routing.map(|r| r.plan(&decoded)).transpose()?;
        // Rows by the arm that answers them (one group without a policy).
        let arms = routing.map_or(1, |r| r.policy().arms.len());
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); arms];
        match &plan {
            Some(plan) => {
                for (r, c) in plan.choices.iter().enumerate() {
                    members[c.arm].push(r);
                }
            }
            None => members[0] = (0..n).collect(),
        }
        let shadow =
            routing.filter(|r| r.policy().rule == crate::routing::Rule::Shadow && arms > 1);
        // A shadow takes only spare capacity: while other requests are in progress, or its
        // queue is full, this request's shadow is skipped (counted), without copying its
        // inputs for it.
        let shadow = shadow.filter(|routing| {
            let busy = self
                .shadowed_in_flight
                .load(std::sync::atomic::Ordering::Relaxed);
            let room = self
                .shadows
                .get()
                .and_then(Option::as_ref)
                .is_some_and(|worker| worker.has_room(busy));
            if !room {
                routing
                    .shadows_skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            room
        });
        let shadow_tensors = shadow.map(|_| decoded.tensors.clone());
        let mut groups: Vec<Group> = Vec::new();
        let whole = members.iter().filter(|m| !m.is_empty()).count() == 1;
        for (arm, rows) in members.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let serving = match routing {
                Some(r) => r.serving(arm),
                None => primary.clone(),
            };
            let tensors = if whole {
                std::mem::take(&mut decoded.tensors)
            } else {
                decoded.tensors.iter().map(|t| t.take_rows(&rows)).collect()
            };
            let explain_rows = match (&tensors[..], self.explain_mode) {
                ([tensor], ExplainMode::Always) if serving.stores_explanations() => {
                    tensor.to_f64("explanation").ok()
                }
                _ => None,
            };
            let outputs = serving.model.model.run(tensors).map_err(|e| {
                if let Some(routing) = routing {
                    routing.router().count_errors(arm, rows.len() as u64);
                }
                ScoreError::Model(e)
            })?;
            let explanations = match explain_rows {
                Some(values) => self.explain_served(&serving, &values, rows.len()).await,
                None => None,
            };
            groups.push(Group {
                arm,
                serving,
                rows,
                outputs,
                explanations,
            });
        }
        // Each row's group and place in it.
        let mut place = vec![(0, 0); n];
        for (g, group) in groups.iter().enumerate() {
            for (i, &r) in group.rows.iter().enumerate() {
                place[r] = (g, i);
            }
        }
        let rows: Vec<Vec<u8>> = place
            .iter()
            .map(|&(g, i)| {
                let group = &groups[g];
                let mut out = Vec::with_capacity(64);
                response::row_json(
                    &group.serving.output_keys,
                    &group.outputs,
                    i,
                    group.rows.len(),
                    &mut out,
                );
                out
            })
            .collect();
        let time = mltrail_core::now_millis();
        let ids: Vec<uuid::Uuid> = (0..n)
            .map(|_| prediction_id(u64::try_from(time).unwrap_or(0)))
            .collect();
        let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        // Everything but the id, inputs, outputs and the signature's per-row part is the same
        // for every row an arm answers.
        let shared: Vec<Vec<u8>> = groups
            .iter()
            .map(|group| {
                RequestRecord {
                    time_ms: time,
                    deployment: &self.name,
                    model: &group.serving.name,
                    version: &group.serving.version,
                    digest: &group.serving.digest,
                    arm: routing.map(|r| r.label(group.arm)),
                    latency_us,
                    trace_id,
                }
                .shared_json()
            })
            .collect();
        let signature_of = |r: usize| -> Option<RowSignature<'_>> {
            let (routing, plan) = (routing?, plan.as_ref()?);
            Some(RowSignature {
                group: routing.group_json(groups[place[r].0].arm),
                propensity: Some(plan.choices[r].propensity),
                request_key: plan.logged_keys.as_ref().map(|k| k[r].as_str()),
                shadow_of: None,
            })
        };
        let entries = match &decoded.inputs {
            RowInputs::Plain(inputs) => (0..n)
                .map(|r| {
                    let (g, i) = place[r];
                    Entry {
                        id: ids[r].as_u128(),
                        kind: EntryKind::Prediction,
                        payload: write_prediction(
                            &ids[r],
                            &shared[g],
                            &inputs[r],
                            &rows[r],
                            None,
                            groups[g].explanations.as_ref().map(|e| e[i].as_slice()),
                            signature_of(r),
                        ),
                    }
                })
                .collect(),
            RowInputs::Sealed(private) => {
                self.sealed_entries(private, &ids, &rows, |r| {
                    (&shared[place[r].0][..], signature_of(r))
                })
                .await?
            }
        };
        self.log.append(entries).await.map_err(ScoreError::Log)?;
        if let (Some(routing), Some(tensors), RowInputs::Plain(_)) =
            (shadow, shadow_tensors, &decoded.inputs)
        {
            self.shadow(routing, tensors, &ids, plan.as_ref(), trace_id);
        }
        let outputs = if groups.len() == 1 {
            // The rows are written: the one group's outputs are the answer's, moved, not copied.
            Some(std::mem::take(&mut groups[0].outputs))
        } else {
            let parts = groups.len();
            let picks: Vec<(usize, usize)> = place.clone();
            (0..groups[0].outputs.len())
                .map(|o| {
                    let values: Vec<(&Value, usize)> = (0..parts)
                        .map(|g| groups[g].outputs.get(o).map(|v| (v, groups[g].rows.len())))
                        .collect::<Option<_>>()?;
                    Value::interleave(&values, &picks)
                })
                .collect::<Option<Vec<Value>>>()
        };
        let routed = match (routing, plan) {
            (Some(routing), Some(plan)) => Some(RoutedRows {
                answered: groups
                    .iter()
                    .map(|g| (routing.label(g.arm).to_string(), g.serving.clone(), g.arm))
                    .collect(),
                row_arm: place.iter().map(|&(g, _)| g).collect(),
                propensities: plan.choices.iter().map(|c| c.propensity).collect(),
            }),
            _ => None,
        };
        let model = groups[place.first().map_or(0, |p| p.0)].serving.clone();
        Ok(Scored {
            model,
            kind: decoded.kind,
            ids,
            rows,
            outputs,
            routed,
            served: groups
                .into_iter()
                .map(|g| (g.serving, g.rows.len()))
                .collect(),
            ranking: None,
        })
    }

    /// Scores a ranking deployment's request: its rows are one impression's candidates, logged
    /// as one prediction whose inputs are the candidates and whose outputs are the items in
    /// served order with their scores.
    async fn rank(
        &self,
        ranking: &crate::ranking::RankingOutput,
        serving: &Arc<Serving>,
        mut decoded: request::Decoded,
        started: Instant,
        trace_id: Option<&str>,
    ) -> Result<Scored, ScoreError> {
        use crate::ranking;
        let n = decoded.rows;
        let cells = std::mem::take(&mut decoded.policy_cells);
        // The request's extra cells, row after row: the item id, then the request key.
        let (items, key) = match &ranking.key_column {
            None => (cells, None),
            Some(column) => {
                let (mut items, mut keys) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for (k, cell) in cells.into_iter().enumerate() {
                    if k % 2 == 0 {
                        items.push(cell);
                    } else {
                        keys.push(cell);
                    }
                }
                (items, Some(ranking::request_key(&keys, column)?))
            }
        };
        let items = ranking::item_ids(items, &ranking.item_column)?;
        let inputs = match &decoded.inputs {
            RowInputs::Plain(inputs) => inputs,
            RowInputs::Sealed(_) => {
                return Err(ScoreError::Ranking(ranking::RankingError::Score(format!(
                    "version {} seals personal data in its inputs; a ranking's candidates are items, logged as they come",
                    serving.version
                ))))
            }
        };
        let at =
            ranking::score_output_index(&serving.output_names, ranking.score_output.as_deref())?;
        let outputs = serving
            .model
            .model
            .run(std::mem::take(&mut decoded.tensors))
            .map_err(ScoreError::Model)?;
        let output = outputs.get(at).ok_or_else(|| {
            ScoreError::Ranking(ranking::RankingError::Score(format!(
                "the model gave {} outputs, not {}",
                outputs.len(),
                at + 1
            )))
        })?;
        let scores = ranking::scores(output, &serving.output_names[at], n)?;
        let mut order = ranking::served_order(&scores);
        let catalog = self.catalog.as_ref().and_then(|state| {
            let current = state.current()?;
            Some((state.spec.mode, current))
        });
        let check = catalog.as_ref().map(|(mode, current)| {
            let out: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&r| ranking::item_text(&items[r]).is_some_and(|id| !current.contains(&id)))
                .collect();
            ranking::CatalogCheck {
                version: &current.version,
                available: current.available(),
                mode: *mode,
                out,
            }
        });
        if let Some(check) = check.as_ref().filter(|c| c.mode == CatalogMode::Filter) {
            order.retain(|r| !check.out.contains(r));
        }
        let record_outputs = ranking::Impression {
            items: &items,
            scores: &scores,
            order: &order,
            catalog: check.as_ref(),
            request_key: key.as_ref(),
        }
        .outputs_json();
        let is_input = serving
            .signature
            .columns
            .iter()
            .any(|c| c.name == ranking.item_column);
        let record_inputs = ranking::inputs_json(inputs, &items, &ranking.item_column, is_input);
        let time = mltrail_core::now_millis();
        let id = prediction_id(u64::try_from(time).unwrap_or(0));
        let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let shared = RequestRecord {
            time_ms: time,
            deployment: &self.name,
            model: &serving.name,
            version: &serving.version,
            digest: &serving.digest,
            arm: None,
            latency_us,
            trace_id,
        }
        .shared_json();
        let payload = write_prediction(
            &id,
            &shared,
            &record_inputs,
            &record_outputs,
            None,
            None,
            None,
        );
        self.log
            .append(vec![Entry {
                id: id.as_u128(),
                kind: EntryKind::Prediction,
                payload,
            }])
            .await
            .map_err(ScoreError::Log)?;
        let catalog_answer = check.map(|c| RankedCatalog {
            version: c.version.to_string(),
            mode: c.mode,
            out: c.out.iter().map(|&r| items[r].clone()).collect(),
        });
        let mut ordered_items = Vec::with_capacity(n);
        let mut slots: Vec<Option<Json>> = items.into_iter().map(Some).collect();
        for &r in &order {
            ordered_items.push(slots[r].take().unwrap_or(Json::Null));
        }
        Ok(Scored {
            model: serving.clone(),
            kind: decoded.kind,
            ids: vec![id],
            rows: vec![record_outputs],
            outputs: None,
            routed: None,
            served: vec![(serving.clone(), n)],
            ranking: Some(Ranked {
                items: ordered_items,
                scores: order.iter().map(|&r| scores[r]).collect(),
                catalog: catalog_answer,
            }),
        })
    }

    /// Queues a shadow policy's other arms on the rows its first arm answered: their
    /// predictions are logged (not returned) under their own ids, each naming the answered
    /// prediction it shadows, whose record holds the inputs (a shadow's record leaves them
    /// out: repeating them doubled the bytes a shadow policy writes). Dropped, and counted,
    /// while the shadow worker is behind.
    fn shadow(
        &self,
        routing: &Arc<Routing>,
        tensors: Vec<crate::runtime::Tensor>,
        primary_ids: &[uuid::Uuid],
        plan: Option<&routed::Plan>,
        trace_id: Option<&str>,
    ) {
        let Some(worker) = self.shadows.get().and_then(Option::as_ref) else {
            return;
        };

        let counted = routing.clone();
        let routing = routing.clone();
        let primary_ids = primary_ids.to_vec();
        let keys = plan.and_then(|p| p.logged_keys.clone());
        let trace_id = trace_id.map(str::to_string);
        let deployment = self.name.clone();
        let job: routed::ShadowJob = Box::new(move || {
            let n = primary_ids.len();
            let mut entries = Vec::new();
            for arm in 1..routing.policy().arms.len() {
                let serving = routing.serving(arm);
                let started = Instant::now();
                let outputs = match serving.model.model.run(tensors.clone()) {
                    Ok(o) => o,
                    Err(e) => {
                        routing
                            .shadow_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(arm = routing.label(arm), error = %e, "a shadow could not score a request");
                        continue;
                    }
                };
                // The shadow's own scoring time (its request's wait in the queue is not in it).
                let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
                let time = mltrail_core::now_millis();
                let shared = RequestRecord {
                    time_ms: time,
                    deployment: &deployment,
                    model: &serving.name,
                    version: &serving.version,
                    digest: &serving.digest,
                    arm: Some(routing.label(arm)),
                    latency_us,
                    trace_id: trace_id.as_deref(),
                }
                .shared_json();
                for r in 0..n {
                    let mut row = Vec::with_capacity(64);
                    response::row_json(&serving.output_keys, &outputs, r, n, &mut row);
                    let id = prediction_id(u64::try_from(time).unwrap_or(0));
                    entries.push(Entry {
                        id: id.as_u128(),
                        kind: EntryKind::Prediction,
                        payload: write_prediction(
                            &id,
                            &shared,
                            // The inputs are the shadowed prediction's (`shadow_of`).
                            b"{}",
                            &row,
                            None,
                            None,
                            Some(RowSignature {
                                group: routing.group_json(arm),
                                propensity: None,
                                request_key: keys.as_ref().map(|k| k[r].as_str()),
                                shadow_of: Some(&primary_ids[r]),
                            }),
                        ),
                    });
                }
            }
            Some(entries)
        });
        if !worker.offer(job) {
            counted
                .shadows_skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Each served row's explanation (`--explain always`), or none when the version cannot be
    /// explained: the prediction is still served and stored, and the reason logged once.
    async fn explain_served(
        &self,
        serving: &Arc<Serving>,
        rows: &[f64],
        n: usize,
    ) -> Option<Vec<Vec<u8>>> {
        // Never waits for an explainer being made (after a swap, beside serving): until it is
        // ready, predictions are stored without explanations.
        let ready = serving
            .explainer
            .get()
            .cloned()
            .ok_or_else(|| "the version's explainer is not ready yet".to_string());
        let explained = match ready {
            Ok(explainer) => explainer
                .explain(&serving.model.model, rows)
                .map_err(|e| e.to_string())
                .and_then(|e| {
                    if e.len() == n {
                        Ok(e)
                    } else {
                        Err(format!("{} explanations for {n} rows", e.len()))
                    }
                }),
            Err(why) => Err(why),
        };
        match explained {
            Ok(e) => Some(e),
            Err(why) => {
                if !serving
                    .explain_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(version = %serving.version, error = %why, "predictions are stored without explanations");
                }
                None
            }
        }
    }

    /// A prediction's explanation: the one stored with it (`--explain always`), else one kept
    /// from an earlier request, else computed now from its stored inputs by the version that
    /// answered it (in service, recently swapped out, or loaded again) and kept. `None`: no such prediction here.
    pub async fn explanation(&self, id: uuid::Uuid) -> Result<Option<Explained>, ExplanationError> {
        if self.explain_mode == ExplainMode::Off {
            return Err(ExplanationError::Off);
        }
        let Some((mut record, annotations)) = self.lookup_annotated(id).await? else {
            return Ok(None);
        };
        if let Some(explanation) = record.explanation.take() {
            return Ok(Some(Explained {
                record,
                explanation,
            }));
        }
        if let Some(kept) = annotations.explanation {
            return Ok(Some(Explained {
                record,
                explanation: kept.explanation,
            }));
        }
        let (serving, explainer, row) = self.explainable(&record).await?;
        let model = serving.clone();
        let mut made =
            tokio::task::spawn_blocking(move || explainer.explain(&model.model.model, &row))
                .await
                .map_err(|e| ExplanationError::Failed(Box::new(e)))?
                .map_err(ExplanationError::Failed)?;
        let json = made
            .pop()
            .ok_or_else(|| ExplanationError::Failed("the explainer answered nothing".into()))?;
        let explanation = RawValue::from_string(String::from_utf8_lossy(&json).into_owned())
            .map_err(|e| ExplanationError::Failed(Box::new(e)))?;
        if serving.stores_explanations() {
            let kept = LogRecord::Explanation(ExplanationRecord {
                id,
                time_ms: mltrail_core::now_millis(),
                deployment: self.name.clone(),
                explanation: explanation.clone(),
            });
            self.log
                .append(vec![Entry {
                    id: id.as_u128(),
                    kind: EntryKind::Annotation,
                    payload: serde_json::to_vec(&kept).unwrap_or_default(),
                }])
                .await
                .map_err(ExplanationError::Log)?;
        }
        Ok(Some(Explained {
            record,
            explanation,
        }))
    }

    /// What explaining a stored prediction needs: the version that answered it, its explainer,
    /// and the prediction's inputs as numbers in that version's column order.
    async fn explainable(
        &self,
        record: &PredictionRecord,
    ) -> Result<(Arc<Serving>, Arc<dyn RowExplainer>, Vec<f64>), ExplanationError> {
        let serving = self.serving_of(record).await?;
        let explainer = self
            .explainer(&serving)
            .await
            .map_err(ExplanationError::Unavailable)?;
        let row = input_numbers(record.inputs.get(), &serving.signature.column_names())
            .map_err(ExplanationError::Inputs)?;
        Ok((serving, explainer, row))
    }

    /// A counterfactual of prediction `id` (`RowExplainer::counterfactual`), computed now from
    /// its stored inputs with the version that answered it; with the record.
    pub async fn counterfactual(
        &self,
        id: uuid::Uuid,
        request: crate::explanation::CounterfactualRequest,
    ) -> Result<Option<(PredictionRecord, serde_json::Value)>, ExplanationError> {
        let Some((record, _)) = self.lookup_annotated(id).await? else {
            return Ok(None);
        };
        let (serving, explainer, row) = self.explainable(&record).await?;
        // The semaphore is never closed, so a permit always comes.
        let _turn = self
            .counterfactuals
            .acquire()
            .await
            .map_err(|e| ExplanationError::Failed(Box::new(e)))?;
        let made = tokio::task::spawn_blocking(move || {
            explainer.counterfactual(&serving.model.model, &row, &request)
        })
        .await
        .map_err(|e| ExplanationError::Failed(Box::new(e)))?
        .map_err(|e| match e {
            crate::explanation::CounterfactualError::Request { field, message } => {
                ExplanationError::Request { field, message }
            }
            crate::explanation::CounterfactualError::Failed(e) => ExplanationError::Failed(e),
        })?;
        Ok(Some((record, made)))
    }

    /// Log entries whose personal data is sealed with each row's subject key.
    /// `shared_of(row)` is the record's part its arm's rows share and the row's signature.
    async fn sealed_entries<'a>(
        &self,
        private: &PrivateRows,
        ids: &[uuid::Uuid],
        rows: &[Vec<u8>],
        shared_of: impl Fn(usize) -> (&'a [u8], Option<RowSignature<'a>>),
    ) -> Result<Vec<Entry>, ScoreError> {
        let cache = self
            .keys
            .as_ref()
            .ok_or_else(|| ScoreError::Seal("this process has no source of subject keys".into()))?;
        let keys = cache
            .for_subjects(private.subjects())
            .await
            .map_err(|e| ScoreError::Seal(e.into()))?;
        let data_keys: Vec<&DataKey> = keys.iter().map(|k| k.key.as_ref()).collect();
        let inputs = private
            .write(ids, &data_keys)
            .map_err(|e| ScoreError::Seal(e.into()))?;
        Ok(ids
            .iter()
            .zip(&inputs)
            .zip(rows)
            .zip(&keys)
            .enumerate()
            .map(|(r, (((id, inputs), outputs), key))| {
                let (shared, signature) = shared_of(r);
                Entry {
                    id: id.as_u128(),
                    kind: EntryKind::Prediction,
                    payload: write_prediction(
                        id,
                        shared,
                        &inputs.open,
                        outputs,
                        Some(SealedRow {
                            subject: key.subject_hex(),
                            sealed_json: private.sealed_json(),
                            sealed_inputs: &inputs.sealed,
                        }),
                        None,
                        signature,
                    ),
                }
            })
            .collect())
    }

    /// The prediction and all its feedback, its personal data opened (a lookup answers only
    /// those who may read stored inputs).
    pub async fn lookup(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(PredictionRecord, Vec<FeedbackRecord>)>, LookupError> {
        Ok(self
            .lookup_annotated(id)
            .await?
            .map(|(r, a)| (r, a.feedback)))
    }

    /// The prediction and what was appended about it, its personal data opened.
    async fn lookup_annotated(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(PredictionRecord, Annotations)>, LookupError> {
        let Some((mut record, annotations)) = self.lookup_stored(id).await? else {
            return Ok(None);
        };
        self.open(&mut record).await?;
        Ok(Some((record, annotations)))
    }

    /// The prediction and what was appended about it as stored, from local segments or the
    /// archive.
    async fn lookup_stored(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<(PredictionRecord, Annotations)>, LookupError> {
        let local = self
            .read_log(move |log| log.get_annotated(id.as_u128()))
            .await?;
        if local.is_some() {
            return Ok(local);
        }
        if let Some(shadows) = self.shadow_log() {
            let found = tokio::task::spawn_blocking(move || shadows.get_annotated(id.as_u128()))
                .await
                .map_err(|e| {
                    LookupError::Log(crate::predlog::LogError::Io(std::io::Error::other(e)))
                })??;
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(archive) = &self.archive else {
            return Ok(None);
        };
        // A damaged file in this deployment's own archive is reported, not taken for absence.
        let Some(mut found) = locate_archived(archive.as_ref(), Some(&self.name), id).await? else {
            return Ok(None);
        };
        let mut annotations = self
            .read_log(move |log| log.local_annotations(id.as_u128()))
            .await?;
        annotations.feedback.splice(0..0, found.feedback);
        // An explanation kept locally is newer than any archived one.
        if annotations.explanation.is_none() {
            annotations.explanation = found.explanations.pop();
        }
        Ok(Some((found.prediction, annotations)))
    }

    /// Runs a read of the log's files off the async workers.
    async fn read_log<T: Send + 'static>(
        &self,
        read: impl FnOnce(&PredictionLog) -> Result<T, crate::predlog::LogError> + Send + 'static,
    ) -> Result<T, LookupError> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || read(&log))
            .await
            .map_err(|e| LookupError::Log(crate::predlog::LogError::Io(std::io::Error::other(e))))?
            .map_err(LookupError::from)
    }

    /// Records feedback on a prediction this deployment served (locally or archived).
    pub async fn feedback(&self, feedback: Feedback) -> Result<uuid::Uuid, FeedbackError> {
        let id = feedback.prediction_id;
        let unknown = || FeedbackError::Unknown {
            id,
            deployment: self.name.clone(),
        };
        let learning = self.routing().filter(|r| {
            r.policy().rule.learns() || matches!(r.policy().rule, crate::routing::Rule::Canary(_))
        });
        let lesson = match &learning {
            Some(routing) => {
                let (record, earlier) = self.lookup_stored(id).await?.ok_or_else(unknown)?;
                lesson_of(routing, &record, &earlier.feedback, &feedback)?
            }
            None => {
                let known =
                    self.log.contains(id.as_u128()) || self.lookup_stored(id).await?.is_some();
                if !known {
                    return Err(unknown());
                }
                None
            }
        };
        let record = LogRecord::Feedback(FeedbackRecord {
            id,
            time_ms: mltrail_core::now_millis(),
            deployment: self.name.clone(),
            label: feedback.label,
            reward: feedback.reward,
            ranking: feedback.ranking,
            clicked: feedback.clicked,
        });
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        self.log
            .append(vec![Entry {
                id: id.as_u128(),
                kind: EntryKind::Annotation,
                payload,
            }])
            .await
            .map_err(FeedbackError::Log)?;
        if let (Some(routing), Some(lesson)) = (learning, lesson) {
            match lesson {
                Lesson::Reward {
                    arm,
                    reward,
                    context,
                } => routing.router().reward(arm, reward, context.as_deref()),
                Lesson::Label { arm, correct } => routing.router().observe_label(arm, correct),
            }
        }
        Ok(id)
    }

    /// Keeps the log's in-memory id index within its budget, seals an idle segment that
    /// outlived its age and archives every sealed segment; a failed upload leaves its segment in
    /// place for the next round.
    pub async fn archive_sealed(&self) {
        self.archive_log(self.log.clone()).await;
        if let Some(shadows) = self.shadow_log() {
            self.archive_log(shadows).await;
        }
    }

    /// [`Self::archive_sealed`] of one log.
    async fn archive_log(&self, log: Arc<PredictionLog>) {
        // Without an archive (or while it fails), sealed segments stay: their ids go to disk.
        let primary = log.clone();
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.spill_index()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot move old prediction ids to disk"),
            Err(e) => tracing::warn!(error = %e, "cannot move old prediction ids to disk"),
            Ok(Ok(_)) => {}
        }
        let Some(archive) = &self.archive else {
            return;
        };
        if let Err(e) = primary.seal_if_due() {
            tracing::warn!(error = %e, "cannot seal the idle prediction-log segment");
        }
        let sealed = match primary.sealed_segments() {
            Ok(s) => s,
            Err(e) => {
                return tracing::warn!(error = %e, "cannot list sealed prediction-log segments")
            }
        };
        for seq in sealed {
            match primary
                .archive_segment(seq, &self.name, archive.as_ref())
                .await
            {
                Ok(Some(path)) => {
                    tracing::info!(segment = seq, artifact = %path, "prediction-log segment archived as Parquet")
                }
                Ok(None) => tracing::debug!(segment = seq, "empty prediction-log segment removed"),
                Err(e) => {
                    tracing::warn!(segment = seq, error = %e, "archiving a prediction-log segment failed; will retry");
                    return;
                }
            }
        }
    }

    /// Archives sealed segments every `every` until the task is dropped.
    pub fn spawn_archiver(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let dep = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                dep.archive_sealed().await;
            }
        })
    }
}
