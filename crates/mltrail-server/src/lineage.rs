//! One call from a prediction to everything behind it, in a form its receiver can check without
//! the server: `GET /api/v1/predictions/{id}/record` (an archived prediction) and
//! `GET /api/v1/lineage?model=&version=[&deployment=]` (what stands behind a model version;
//! `mltrail serve` adds it to the records it still holds itself).
//!
//! Every claim comes with the audit events that recorded it, each with the chain hash before
//! it (so its own hash can be recomputed from its content) and its RFC 9162 inclusion path to
//! the trail's root, which a signed checkpoint pins. An entity whose state lives in the
//! database comes with that state, whose digest its latest event carries. An archived
//! prediction comes with the proof that its record is in its segment's Merkle tree, whose
//! summary is an event. docs/audit.md specifies all of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use mltrail_core::merkle::{self, Hash};
use mltrail_core::{tags, LoggedModelId, ModelVersionNumber};
use mltrail_serving::archive::{locate_archived, ArtifactArchive, Located};
use mltrail_serving::record::{FeedbackRecord, LogRecord, PredictionRecord};
use mltrail_serving::segment_tree::{self, SEGMENT_KIND};
use mltrail_store::audit::{self, LoggedEvent};
use mltrail_store::datasets::VersionRef;
use mltrail_store::{datasets, logged_models, registry, runs, MetaStore};
use serde_json::value::RawValue;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Signs checkpoints of the trail for traces (the binary holds the key; the server crate only
/// asks). `None` in [`AppState`] when no key is at hand: traces then carry the root unsigned.
pub trait CheckpointSigner: Send + Sync {
    /// A signed checkpoint of the tree whose leaves are `leaves`, and the verifier key that
    /// checks it.
    fn sign(&self, leaves: &[Hash])
        -> Result<SignedTree, Box<dyn std::error::Error + Send + Sync>>;
}

/// A signed checkpoint (C2SP signed note) and the verifier key of its signer.
pub struct SignedTree {
    pub checkpoint: String,
    pub verifier_key: String,
}

pub type SharedSigner = Arc<dyn CheckpointSigner>;

/// The entities a trace names and the audit events that prove them.
#[derive(Default)]
struct Trail {
    entities: Vec<Value>,
    events: BTreeMap<i64, LoggedEvent>,
}

impl Trail {
    /// Adds an entity (`about` says what it is to the trace) with its events and, when its
    /// state lives in the database, that state.
    async fn entity(
        &mut self,
        store: &MetaStore,
        about: &str,
        kind: &str,
        id: &str,
    ) -> ApiResult<()> {
        let events =
            audit::list_events(store, Some(&format!("{kind}:{id}")), None, i64::MAX).await?;
        let state = audit::entity_state(store, kind, id).await?;
        self.add(about, kind, id, state, events);
        Ok(())
    }

    fn add(
        &mut self,
        about: &str,
        kind: &str,
        id: &str,
        state: Option<Value>,
        events: Vec<LoggedEvent>,
    ) {
        let seqs: Vec<i64> = events.iter().map(|e| e.event.seq).collect();
        let mut entity =
            json!({"about": about, "entity_type": kind, "entity_id": id, "events": seqs});
        if let Some(state) = state {
            // The exact bytes the digest covers: a state's doubles are spelled as serde_json
            // spells them, not as RFC 8785 does, so a verifier hashes these bytes and checks
            // that they parse to `state`.
            let canonical = mltrail_core::canonical_json(&state);
            entity["state_digest"] = json!(blake3::hash(canonical.as_bytes()).to_hex().to_string());
            entity["state_json"] = json!(canonical);
            entity["state"] = state;
        }
        self.entities.push(entity);
        for e in events {
            self.events.insert(e.event.seq, e);
        }
    }

    /// The `audit` section: the tree today, its signed checkpoint, and every named event with
    /// its previous chain hash and inclusion path.
    async fn finish(self, state: &AppState) -> ApiResult<Value> {
        let leaves = audit::leaves(&state.store).await?;
        let seqs: Vec<i64> = leaves.iter().map(|(s, _)| *s).collect();
        let leaves: Vec<Hash> = leaves.into_iter().map(|(_, l)| l).collect();
        let root = merkle::root(&leaves);
        let mut events = Vec::with_capacity(self.events.len());
        for (seq, logged) in self.events {
            let Ok(index) = seqs.binary_search(&seq) else {
                continue; // appended after the leaves were read: the next trace proves it
            };
            let path = merkle::inclusion_proof(&leaves, index).unwrap_or_default();
            let mut body = serde_json::to_value(&logged).map_err(ApiError::internal)?;
            body["previous_hash"] = json!(audit::previous_hash(&state.store, seq).await?);
            body["leaf_index"] = json!(index);
            body["audit_path"] = json!(path.iter().map(hex::encode).collect::<Vec<_>>());
            events.push(body);
        }
        let signed = match &state.checkpoints {
            Some(signer) => {
                let signer = signer.clone();
                let leaves = leaves.clone();
                match tokio::task::spawn_blocking(move || signer.sign(&leaves)).await {
                    Ok(Ok(signed)) => Some(signed),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a trace goes out without a signed checkpoint");
                        None
                    }
                    Err(e) => return Err(ApiError::internal(e)),
                }
            }
            None => None,
        };
        Ok(json!({
            "tree_size": leaves.len(),
            "root": hex::encode(root),
            "checkpoint": signed.as_ref().map(|s| s.checkpoint.clone()),
            "verifier_key": signed.as_ref().map(|s| s.verifier_key.clone()),
            "events": events,
        }))
    }
}

/// What stands behind `model/version` (and its deployment's events when `deployment` is
/// given): the version, its run, its training dataset, its evaluation, each with its events.
async fn lineage_of(
    state: &AppState,
    trail: &mut Trail,
    model: &str,
    version: &str,
    deployment: Option<&str>,
) -> ApiResult<Value> {
    let store = &state.store;
    let number = ModelVersionNumber::parse(version).ok_or_else(|| {
        ApiError::invalid(format!(
            "`version` must be a model version number, got `{version}`"
        ))
    })?;
    let mv = registry::get_model_version(store, model, number).await?;
    trail
        .entity(
            store,
            "model_version",
            "model_version",
            &format!("{model}/{}", number.0),
        )
        .await?;
    let (logged_model, run_id) = run_of(store, &mv).await?;
    if logged_model.is_some() {
        trail
            .entity(store, "logged model", "logged_model", &mv.model_id)
            .await?;
    }
    let run = match run_id.as_str() {
        "" => None,
        run_id => match runs::parse_run_id(run_id) {
            Ok(id) => {
                let run = runs::get_run(store, &id).await.ok();
                if run.is_some() {
                    trail.entity(store, "run", "run", run_id).await?;
                    // Params and metrics are recorded per logging request.
                    let batches = audit::run_batch_events(store, run_id).await?;
                    let mut by_entity: BTreeMap<(String, String), Vec<LoggedEvent>> =
                        BTreeMap::new();
                    for e in batches {
                        by_entity
                            .entry((e.event.entity_type.clone(), e.event.entity_id.clone()))
                            .or_default()
                            .push(e);
                    }
                    for ((kind, id), events) in by_entity {
                        let state = audit::entity_state(store, &kind, &id).await?;
                        trail.add(&format!("run {kind}"), &kind, &id, state, events);
                    }
                }
                run
            }
            Err(_) => None,
        },
    };
    let training = mv
        .tags
        .iter()
        .find(|t| t.key == tags::TRAINING_DATA)
        .map(|t| t.value.clone());
    let dataset = match training.as_deref().map(str::parse::<VersionRef>) {
        Some(Ok(version)) => match datasets::get_version(store, &version).await {
            Ok(found) => {
                trail
                    .entity(
                        store,
                        "training dataset",
                        "dataset_version",
                        &format!("{}/{}", version.name, version.version),
                    )
                    .await?;
                Some(found)
            }
            Err(e) if e.kind() == mltrail_store::StoreErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    let evaluation = match crate::evaluations::latest(state, model, number).await {
        Ok(Some((evaluation, event))) => {
            let id = format!("{model}/{}", number.0);
            let events = vec![event];
            trail.add(
                "evaluation",
                mltrail_store::evaluations::EVALUATION_KIND,
                &id,
                Some(evaluation.clone()),
                events,
            );
            evaluation
        }
        Ok(None) => Value::Null,
        // A kept evaluation that no longer matches its event is reported, not hidden.
        Err(e) => json!({"unreadable": e.message}),
    };
    if let Some(deployment) = deployment {
        trail
            .entity(
                store,
                "deployment",
                mltrail_store::deployments::DEPLOYMENT_KIND,
                &format!("{deployment}:{model}/{}", number.0),
            )
            .await?;
    }
    Ok(json!({
        "model_version": mv,
        "logged_model": logged_model,
        "run": run,
        "training_data": training,
        "dataset": dataset,
        "evaluation": evaluation,
    }))
}

/// The run behind a model version: its own `run_id`, else (MLflow 3 registers a logged model)
/// the logged model's source run; empty when neither names one.
pub(crate) async fn run_of(
    store: &MetaStore,
    mv: &mltrail_store::ModelVersion,
) -> ApiResult<(Option<mltrail_store::LoggedModel>, String)> {
    let mut run_id = mv.run_id.clone();
    let Some(id) = LoggedModelId::parse(&mv.model_id) else {
        return Ok((None, run_id));
    };
    match logged_models::get_logged_model(store, &id).await {
        Ok(found) => {
            if run_id.is_empty() {
                run_id = found.info.source_run_id.clone().unwrap_or_default();
            }
            Ok((Some(found), run_id))
        }
        Err(e) if e.kind() == mltrail_store::StoreErrorKind::NotFound => Ok((None, run_id)),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LineageQuery {
    /// A registered model's name (required).
    #[param(required)]
    model: Option<String>,
    /// Its version number (required).
    #[param(required)]
    version: Option<String>,
    /// A deployment, whose events serving the version are added.
    deployment: Option<String>,
}

/// The audit section of a trace: the trail's Merkle tree today and the events that prove
/// the trace's claims (docs/audit.md).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Part of `Trace`'s schema.
pub(crate) struct TraceAudit {
    tree_size: u64,
    /// The tree's root, hex.
    root: String,
    /// A signed checkpoint (C2SP signed note) of the tree; null without a signing key.
    checkpoint: Option<String>,
    verifier_key: Option<String>,
    /// Each named event with `previous_hash`, `leaf_index` and `audit_path` (RFC 9162).
    #[schema(value_type = Vec<Object>)]
    events: Vec<Value>,
}

/// A trace, `mltrail.trace/1` (docs/audit.md): what is claimed, the entities behind it with
/// their states, and the audit events that prove each, checkable without the server. The
/// handlers assemble it part by part (`trace`, `lineage_of`, `prediction_body`,
/// `segment_part`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The schema of what `lineage` and `record` answer.
pub(crate) struct Trace {
    /// `mltrail.trace/1`.
    format: String,
    /// The model version (as the MLflow API answers it).
    #[schema(value_type = Object)]
    model_version: Value,
    /// The logged model it was registered from (MLflow 3), if any.
    #[schema(value_type = Option<Object>)]
    logged_model: Option<Value>,
    /// The run that trained it, with its params and metrics.
    #[schema(value_type = Option<Object>)]
    run: Option<Value>,
    /// The training data the version names (`NAME@VERSION`), if any.
    training_data: Option<String>,
    /// That dataset version, or `{"unreadable": why}`.
    #[schema(value_type = Option<Object>)]
    dataset: Option<Value>,
    /// The version's newest evaluation, if any.
    #[schema(value_type = Option<Object>)]
    evaluation: Option<Value>,
    /// Each entity (`about`, `entity_type`, `entity_id`, `events`, and where its state is in
    /// the database, `state`, `state_json` and `state_digest`).
    #[schema(value_type = Vec<Object>)]
    entities: Vec<Value>,
    audit: TraceAudit,
    /// A prediction's trace: its id.
    prediction_id: Option<String>,
    /// A prediction's trace: the deployment that served it.
    deployment: Option<String>,
    /// A prediction's trace: the record as stored (the leaf of its segment).
    #[schema(value_type = Option<Object>)]
    prediction: Option<Value>,
    /// A prediction's trace: its inputs, opened where they were sealed and the key exists.
    #[schema(value_type = Option<Object>)]
    inputs: Option<Value>,
    /// A prediction's trace: its explanation, if one was kept.
    #[schema(value_type = Option<Object>)]
    explanation: Option<Value>,
    /// A prediction's trace: the feedback on it.
    #[schema(value_type = Option<Vec<Object>>)]
    feedback: Option<Vec<Value>>,
    /// A prediction's trace: its segment's summary, the record's inclusion proof in it, and
    /// whether the summary is in the trail (`in_trail`; `not archived yet` from `mltrail
    /// serve`).
    #[schema(value_type = Option<Object>)]
    segment: Option<Value>,
}

/// `GET /api/v1/lineage?model=NAME&version=N[&deployment=D]`.
#[utoipa::path(get, path = "/api/v1/lineage", tag = "lineage", params(LineageQuery),
    responses((status = 200, description = "What stands behind the version, with its proofs", body = Trace)))]
pub(crate) async fn lineage(
    State(state): State<AppState>,
    Query(q): Query<LineageQuery>,
) -> ApiResult<Json<Value>> {
    let model = q
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("`model` (a registered model's name) is required"))?;
    let version = q
        .version
        .ok_or_else(|| ApiError::invalid("`version` (a model version number) is required"))?;
    let mut trail = Trail::default();
    let mut body = lineage_of(
        &state,
        &mut trail,
        &model,
        &version,
        q.deployment.as_deref(),
    )
    .await?;
    body["entities"] = Value::Array(std::mem::take(&mut trail.entities));
    body["audit"] = trail.finish(&state).await?;
    body["format"] = json!(TRACE_FORMAT);
    Ok(Json(body))
}

/// The version of a trace's layout (docs/audit.md).
pub const TRACE_FORMAT: &str = "mltrail.trace/1";

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordQuery {
    /// The deployment that served it (found faster when given).
    deployment: Option<String>,
}

/// `GET /api/v1/predictions/{id}/record[?deployment=D]`: an archived prediction and everything
/// behind it.
#[utoipa::path(get, path = "/api/v1/predictions/{id}/record", tag = "lineage",
    params(("id" = String, Path, description = "The prediction's id (a UUID)"), RecordQuery),
    responses((status = 200, description = "The archived prediction's trace", body = Trace)))]
pub(crate) async fn record(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RecordQuery>,
) -> ApiResult<Json<Value>> {
    trace(&state, &id, q.deployment.as_deref()).await.map(Json)
}

/// The trace of an archived prediction (what `record` answers; the web UI's prediction page
/// draws it).
pub(crate) async fn trace(
    state: &AppState,
    id: &str,
    deployment: Option<&str>,
) -> ApiResult<Value> {
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::invalid(format!("`{id}` is not a prediction id (a UUID)")))?;
    let archive = ArtifactArchive(state.artifacts.clone());
    let found = match locate_archived(&archive, deployment, id).await {
        Ok(found) => found,
        // It may be in a damaged file: not found, and which files could not be read.
        Err(e @ mltrail_serving::archive::ArchiveError::Unreadable(_)) => {
            return Err(ApiError::not_found(format!("prediction {id}: {e}")))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let Some(found) = found else {
        return Err(ApiError::not_found(format!(
            "prediction {id} is not in the archive; a deployment answers for predictions it has not archived yet (GET /api/v1/predictions/{id}/record on `mltrail serve`, or `mltrail trace {id} --serving URL`)"
        )));
    };
    let mut trail = Trail::default();
    let mut body = prediction_part(state, &found).await?;
    let segment = segment_part(state, &mut trail, &found).await?;
    let lineage = lineage_of(
        state,
        &mut trail,
        &found.prediction.model,
        &found.prediction.version,
        Some(&found.deployment),
    )
    .await?;
    if let (Value::Object(into), Value::Object(from)) = (&mut body, lineage) {
        into.extend(from);
    }
    body["segment"] = segment;
    body["entities"] = Value::Array(std::mem::take(&mut trail.entities));
    body["audit"] = trail.finish(state).await?;
    body["format"] = json!(TRACE_FORMAT);
    Ok(body)
}

/// The prediction as archived (the record its leaf hashes), its inputs opened when they were
/// stored sealed and the subject's key still exists, its feedback and its explanation.
async fn prediction_part(state: &AppState, found: &Located) -> ApiResult<Value> {
    let mut opened = found.prediction.clone();
    if let Some(subject) = mltrail_serving::privacy::subject_of(&opened) {
        use mltrail_serving::privacy::SubjectKeys;
        let key = match &state.privacy {
            Some(keys) => keys
                .for_hashes(&[subject])
                .await
                .map_err(ApiError::from_keys)?
                .pop()
                .flatten(),
            None => None,
        };
        mltrail_serving::privacy::open_record(&mut opened, key.as_deref());
    }
    prediction_body(
        &found.deployment,
        &found.prediction,
        &opened,
        &found.feedback,
        found.explanations.last().map(|e| &*e.explanation),
    )
}

/// A trace's prediction part: `prediction` as stored (what its segment leaf hashes), `inputs`
/// opened, the explanation served with it (else `computed`, the newest computed on request)
/// with its reason codes, and the feedback on it.
pub fn prediction_body(
    deployment: &str,
    stored: &PredictionRecord,
    opened: &PredictionRecord,
    feedback: &[FeedbackRecord],
    computed: Option<&RawValue>,
) -> ApiResult<Value> {
    let inputs: Value = serde_json::from_str(opened.inputs.get()).map_err(ApiError::internal)?;
    let explanation = opened
        .explanation
        .as_deref()
        .or(computed)
        .map(|raw| serde_json::from_str::<Value>(raw.get()))
        .transpose()
        .map_err(ApiError::internal)?
        .map(|mut e| {
            e["reasons"] = json!(mltrail_serving::explanation::reasons(
                &e,
                opened.inputs.get()
            ));
            e
        });
    let feedback = feedback
        .iter()
        .map(|f| serde_json::to_value(LogRecord::Feedback(f.clone())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(json!({
        "prediction_id": stored.id,
        "deployment": deployment,
        "prediction": LogRecord::Prediction(stored.clone()),
        "inputs": inputs,
        "explanation": explanation,
        "feedback": feedback,
    }))
}

/// The record's place in its archived segment, and the segment's event.
async fn segment_part(state: &AppState, trail: &mut Trail, found: &Located) -> ApiResult<Value> {
    let proof = segment_tree::prove_record(
        &found.records,
        found.index,
        &found.artifact,
        &found.deployment,
    )
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::internal("the located record is not in its file"))?;
    let recorded = mltrail_store::segments::archived_event(&state.store, &found.artifact).await?;
    let digest = proof.segment.state_digest();
    let in_trail = match &recorded {
        // Archived before segments joined the trail, or its serving process could not record it.
        None => "not recorded",
        Some(e) if e.event.state_digest.as_deref() == Some(digest.as_str()) => "recorded",
        Some(_) => "differs from the recorded summary",
    };
    if let Some(event) = recorded {
        trail.add(
            "archived segment",
            SEGMENT_KIND,
            &found.artifact,
            None,
            vec![event],
        );
    }
    let mut body = serde_json::to_value(&proof).map_err(ApiError::internal)?;
    body["state_digest"] = json!(digest);
    body["in_trail"] = json!(in_trail);
    // Feedback or explanations in these may be missing from the trace: said, not hidden.
    if !found.unreadable.is_empty() {
        body["unreadable_files"] = json!(found.unreadable);
    }
    Ok(body)
}
