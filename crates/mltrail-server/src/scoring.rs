//! The scoring edge of a deployment: `/invocations` (MLflow's protocol), `/api/v1/predict`,
//! `/api/v1/feedback`, `/api/v1/predictions/{id}` (and its `/explanation`), `/health` and
//! `/metrics`. Each handler
//! decodes the request, calls the [`Deployment`] (mltrail-serving owns scoring, logging, swaps
//! and lookups) and encodes its answer; errors become HTTP in `error.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mltrail_serving::deployment::{
    BodyFormat, Deployment, FailureKind, Feedback, FeedbackError, Scored, METRICS_CONTENT_TYPE,
};
use mltrail_serving::record::{FeedbackRecord, PredictionRecord, RecordKind};
use serde_json::{json, Value};
use utoipa::{IntoParams, OpenApi as _, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};

fn json_response(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// What the body of a scoring request is, from its `Content-Type`: JSON or CSV, as MLflow's
/// scoring server takes; anything else is refused with 415 before the body is read.
fn format_of(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    use crate::req::{content_type, is_media};
    match content_type(headers) {
        Some(sent) if is_media(sent, "application/json") => Ok(BodyFormat::Json),
        Some(sent) if is_media(sent, "text/csv") => Ok(BodyFormat::Csv),
        sent => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
            format!(
                "Content-Type {} is not supported: send application/json or text/csv",
                sent.map_or("(none)".to_string(), |s| format!("'{s}'"))
            ),
        )),
    }
}

/// One scored request as an observer hears of it.
pub struct ScoredRequest<'a> {
    pub deployment: &'a str,
    /// `/api/v1/predict` or `/invocations`.
    pub route: &'static str,
    /// The caller's W3C `traceparent` header, as sent.
    pub traceparent: Option<&'a str>,
    pub started: SystemTime,
    pub duration: std::time::Duration,
    pub prediction_ids: &'a [uuid::Uuid],
    pub rows: usize,
    /// Why it was refused, when it was.
    pub error: Option<&'a str>,
}

/// Who hears of every scored request: an OTLP exporter (a span per request), when the log
/// setting names one.
pub trait ScoringObserver: Send + Sync {
    fn scored(&self, request: &ScoredRequest<'_>);
}

/// Whether an observer is set: a request reads only this flag when none is.
static OBSERVING: AtomicBool = AtomicBool::new(false);
static OBSERVER: RwLock<Option<Arc<dyn ScoringObserver>>> = RwLock::new(None);

/// Sets (or, with `None`, removes) the process's scoring observer.
pub fn observe_scoring(observer: Option<Arc<dyn ScoringObserver>>) {
    let on = observer.is_some();
    *OBSERVER.write().unwrap_or_else(|p| p.into_inner()) = observer;
    OBSERVING.store(on, Ordering::Release);
}

fn observer() -> Option<Arc<dyn ScoringObserver>> {
    if !OBSERVING.load(Ordering::Acquire) {
        return None;
    }
    OBSERVER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// [`scored_request`], told to the observer when one is set.
async fn scored(
    dep: &Deployment,
    route: &'static str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Scored> {
    let Some(observer) = observer() else {
        return scored_request(dep, headers, body).await;
    };
    let (started, clock) = (SystemTime::now(), Instant::now());
    let result = scored_request(dep, headers, body).await;
    let error = result.as_ref().err().map(|e| e.message.clone());
    let ids = result.as_ref().map(|s| s.ids.as_slice()).unwrap_or(&[]);
    observer.scored(&ScoredRequest {
        deployment: dep.name(),
        route,
        traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()),
        started,
        duration: clock.elapsed(),
        prediction_ids: ids,
        rows: result
            .as_ref()
            .map_or(0, |s| s.served.iter().map(|(_, n)| n).sum()),
        error: error.as_deref(),
    });
    result
}

/// The shared front of both scoring endpoints: the content type (415 unless JSON or CSV), the
/// body (413 above the limit), then the model.
async fn scored_request(
    dep: &Deployment,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Scored> {
    let started = Instant::now();
    let format = format_of(headers).inspect_err(|_| dep.refused(FailureKind::bad_request))?;
    let body = body.map_err(|rejection| {
        dep.refused(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            FailureKind::too_large
        } else {
            FailureKind::bad_request
        });
        ApiError::body_rejected(rejection, "BAD_REQUEST")
    })?;
    // W3C trace context: the trace id is stored in every record of the request, so a log line,
    // a trace and the stored prediction join on it. A header the W3C rules say to ignore is.
    let trace_id = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(mltrail_serving::record::trace_id_of);
    let scored = dep.score_traced(format, &body, started, trace_id).await?;
    if let Some(trace) = trace_id {
        tracing::debug!(trace.id = trace, prediction.id = %scored.ids.first().map(ToString::to_string).unwrap_or_default(), rows = scored.ids.len(), "scored");
    }
    Ok(scored)
}

/// A scoring request in one of MLflow's layouts, as JSON (`Content-Type: application/json`),
/// or as CSV with a header row (`text/csv`). Inputs are checked against the model's signature;
/// a wrong input is refused naming its `column` (and `row`). Read by mltrail-serving's own
/// parser (the hot path, `decode_table`), whose layouts these are.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The schema of the body the scoring path parses.
enum ScoringIn {
    Split(SplitIn),
    Records(RecordsIn),
    Instances(InstancesIn),
    Inputs(InputsIn),
}

/// `{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `ScoringIn`'s schema.
struct SplitIn {
    dataframe_split: DataframeSplit,
}

/// Pandas' `split` orientation.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `ScoringIn`'s schema.
struct DataframeSplit {
    /// The column names; the signature's order when left out.
    columns: Option<Vec<String>>,
    /// One list of values per row.
    data: Vec<Vec<Value>>,
}

/// `{"dataframe_records": [{"column": value, ...}, ...]}`.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `ScoringIn`'s schema.
struct RecordsIn {
    #[schema(value_type = Vec<Object>)]
    dataframe_records: Vec<Value>,
}

/// `{"instances": [...]}`: rows as objects, or as lists in the signature's order.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `ScoringIn`'s schema.
struct InstancesIn {
    instances: Vec<Value>,
}

/// `{"inputs": ...}`: named columns (`{"a": [1, 2], ...}`) or rows.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `ScoringIn`'s schema.
struct InputsIn {
    inputs: Value,
}

/// MLflow's answer.
#[derive(ToSchema)]
#[allow(dead_code)] // The schema of what `invocations` writes (by hand: it runs per request).
struct InvocationsOut {
    /// DataFrame input: one entry per row (a value, or an object of the model's outputs).
    /// Tensor input (`instances`, `inputs`): an object of output arrays, as `mlflow models
    /// serve` answers. A ranking deployment: the ranked items.
    predictions: Value,
    /// A ranking deployment's request id.
    prediction_id: Option<String>,
}

/// One row's answer with where it came from.
#[derive(ToSchema)]
#[allow(dead_code)] // Part of `PredictOut`'s schema.
struct RowPrediction {
    /// The id feedback, explanations and traces name it by (UUIDv7).
    prediction_id: String,
    model: String,
    version: String,
    /// The served model file's digest.
    digest: String,
    /// The model's outputs for the row.
    outputs: Value,
    /// With a routing policy: the arm that answered.
    arm: Option<String>,
    /// With a routing policy: the probability of that arm (for off-policy evaluation).
    propensity: Option<f64>,
}

/// mltrail's answer: each row's prediction with its id and model version, or for a ranking
/// deployment the ranked items.
#[derive(ToSchema)]
#[allow(dead_code)] // The schema of what `predict` writes (by hand: it runs per request).
struct PredictOut {
    deployment: String,
    /// One per row (not for a ranking deployment).
    predictions: Option<Vec<RowPrediction>>,
    /// A ranking deployment's request id.
    prediction_id: Option<String>,
    /// A ranking deployment's model version.
    model: Option<String>,
    version: Option<String>,
    digest: Option<String>,
    /// A ranking deployment's items, best first.
    items: Option<Vec<Value>>,
    /// Their scores, in the same order.
    scores: Option<Vec<f64>>,
    /// The catalog version the items were checked against.
    catalog: Option<String>,
    /// Items not in the catalog, answered anyway (catalog mode `flag`).
    out_of_catalog: Option<Vec<Value>>,
    /// Items not in the catalog, left out (catalog mode `filter`).
    filtered: Option<Vec<Value>>,
}

#[utoipa::path(post, path = "/invocations", tag = "scoring", request_body(description = "Rows to score, as JSON or as CSV with a header row",
        content((ScoringIn = "application/json"), (String = "text/csv"))),
    responses((status = 200, description = "One prediction per row (MLflow's protocol)", body = InvocationsOut)))]
async fn invocations(
    State(dep): State<Arc<Deployment>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let scored = scored(&dep, "/invocations", &headers, body).await?;
    Ok(json_response(scored.invocations_body()))
}

#[utoipa::path(post, path = "/api/v1/predict", tag = "scoring", request_body(description = "Rows to score, as JSON or as CSV with a header row",
        content((ScoringIn = "application/json"), (String = "text/csv"))),
    responses((status = 200, description = "Each row's prediction with its id and model version", body = PredictOut)))]
async fn predict(
    State(dep): State<Arc<Deployment>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let scored = scored(&dep, "/api/v1/predict", &headers, body).await?;
    Ok(json_response(scored.predict_body(dep.name())))
}

fn parse_id(text: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::from(FeedbackError::BadId(text.to_string())))
}

/// Feedback on a prediction: at least one of `label`, `reward`, `displayed` and `clicked`.
/// Read by mltrail-serving (`Feedback::parse`), which keeps each value's JSON as sent.
#[derive(ToSchema)]
#[allow(dead_code)] // The schema of the body `Feedback::parse` reads.
struct FeedbackIn {
    /// The prediction's id.
    prediction_id: String,
    /// The true outcome, any JSON value (kept as sent).
    label: Option<Value>,
    /// A bandit's reward.
    reward: Option<f64>,
    /// The items displayed, in display order (`ranking` is its first name).
    displayed: Option<Vec<Value>>,
    /// The items clicked.
    clicked: Option<Vec<Value>>,
}

#[derive(serde::Serialize, ToSchema)]
struct FeedbackRecorded {
    #[schema(value_type = String)]
    prediction_id: uuid::Uuid,
    recorded: bool,
}

#[utoipa::path(post, path = "/api/v1/feedback", tag = "scoring", request_body = FeedbackIn,
    responses((status = 200, description = "The feedback is in the log", body = FeedbackRecorded)))]
async fn feedback(
    State(dep): State<Arc<Deployment>>,
    crate::req::Body(body): crate::req::Body<Value>,
) -> ApiResult<Json<FeedbackRecorded>> {
    let prediction_id = dep.feedback(Feedback::parse(&body)?).await?;
    Ok(Json(FeedbackRecorded {
        prediction_id,
        recorded: true,
    }))
}

/// A prediction as logged (`docs/prediction-log.md`), with the feedback on it.
#[derive(serde::Serialize, ToSchema)]
struct LoggedPrediction {
    /// `prediction`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: PredictionRecord,
    /// Oldest first.
    feedback: Vec<LoggedFeedback>,
}

/// Feedback as logged.
#[derive(serde::Serialize, ToSchema)]
struct LoggedFeedback {
    /// `feedback`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: FeedbackRecord,
}

/// A stored prediction.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct PredictionPath {
    /// The prediction's id (a UUID).
    id: String,
}

#[utoipa::path(get, path = "/api/v1/predictions/{id}", tag = "predictions", params(PredictionPath),
    responses((status = 200, description = "The prediction as logged, with its feedback", body = LoggedPrediction)))]
async fn prediction(
    State(dep): State<Arc<Deployment>>,
    Path(PredictionPath { id }): Path<PredictionPath>,
) -> ApiResult<Json<LoggedPrediction>> {
    let id = parse_id(&id)?;
    let Some((record, feedback)) = dep.lookup(id).await? else {
        return Err(ApiError::not_found(format!(
            "prediction {id} is not in this deployment's log"
        )));
    };
    Ok(Json(LoggedPrediction {
        kind: RecordKind::Prediction.as_str(),
        record,
        feedback: feedback
            .into_iter()
            .map(|record| LoggedFeedback {
                kind: RecordKind::Feedback.as_str(),
                record,
            })
            .collect(),
    }))
}

/// A prediction this deployment has not archived yet, with everything behind it: the
/// record as stored, its inputs opened, feedback and explanation, and its model version's
/// lineage from the tracking server (whose own `/api/v1/predictions/{id}/record` answers once
/// the record is archived, with the proof that its segment is in the trail).
#[utoipa::path(get, path = "/api/v1/predictions/{id}/record", tag = "predictions", params(PredictionPath),
    responses((status = 200, description = "The unarchived prediction's trace", body = crate::lineage::Trace)))]
async fn record(
    State(dep): State<Arc<Deployment>>,
    Path(PredictionPath { id }): Path<PredictionPath>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let Some((stored, opened, annotations)) = dep.local_record(id).await? else {
        return Err(ApiError::not_found(format!(
            "prediction {id} is not in this deployment's unarchived log; once archived, the tracking server answers (GET /api/v1/predictions/{id}/record there, or `mltrail trace {id}`)"
        )));
    };
    let mut body = crate::lineage::prediction_body(
        dep.name(),
        &stored,
        &opened,
        &annotations.feedback,
        annotations.explanation.as_ref().map(|e| &*e.explanation),
    )?;
    let lineage = dep.lineage(&stored).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "TEMPORARILY_UNAVAILABLE",
            format!(
                "cannot read the lineage of {}/{}: {e}",
                stored.model, stored.version
            ),
        )
    })?;
    if let (Value::Object(into), Value::Object(from)) = (&mut body, lineage) {
        into.extend(from);
    }
    body["segment"] = json!({"in_trail": "not archived yet"});
    Ok(Json(body))
}

/// Why the model answered as it did: the stored (or now computed) explanation, with reason
/// codes rendered from the prediction's inputs.
#[utoipa::path(get, path = "/api/v1/predictions/{id}/explanation", tag = "predictions", params(PredictionPath),
    responses((status = 200, description = "The explanation (SHAP values, base value) with reason codes", body = Explanation)))]
async fn explanation(
    State(dep): State<Arc<Deployment>>,
    Path(PredictionPath { id }): Path<PredictionPath>,
) -> ApiResult<Json<Explanation>> {
    let id = parse_id(&id)?;
    let Some(explained) = dep.explanation(id).await? else {
        return Err(ApiError::not_found(format!(
            "prediction {id} is not in this deployment's log"
        )));
    };
    let body: Value =
        serde_json::from_str(explained.explanation.get()).map_err(ApiError::internal)?;
    let reasons = mltrail_serving::explanation::reasons(&body, explained.record.inputs.get());
    let Value::Object(explanation) = body else {
        return Err(ApiError::internal(
            "a kept explanation is not a JSON object",
        ));
    };
    Ok(Json(Explanation {
        explanation,
        reasons,
        prediction_id: id,
        model: explained.record.model,
        version: explained.record.version,
    }))
}

/// An explanation (docs/explanations.md): the method's attributions with reason codes.
#[derive(serde::Serialize, ToSchema)]
struct Explanation {
    /// The explanation as computed and kept: `method`, `base_value`, `output`, `output_space`,
    /// `values` (feature → contribution) and what it was computed against
    /// (`background_digest`).
    #[serde(flatten)]
    #[schema(value_type = ExplanationFields)]
    explanation: serde_json::Map<String, Value>,
    /// The features that pushed the decision most, in words.
    reasons: Vec<String>,
    #[schema(value_type = String, format = "uuid")]
    prediction_id: uuid::Uuid,
    model: String,
    version: String,
}

/// The schema of a kept explanation's fields (docs/explanations.md). A model of several
/// outputs has `base_value`, `values` and `output` per label.
#[derive(ToSchema)]
#[allow(dead_code)] // A schema only: the explanation is kept and answered as computed.
struct ExplanationFields {
    /// `tree_interventional`, `tree_path_dependent`, `linear` or `sampling`.
    method: String,
    /// The space the contributions add up in (`log_odds`, `value`, …).
    output_space: String,
    /// The expected output over the background data (per label for several outputs).
    base_value: Value,
    /// Each feature's contribution (per label for several outputs).
    values: Value,
    /// The output explained: the base value plus the contributions.
    output: Value,
    /// Sampling's standard error of each value.
    standard_error: Option<Value>,
    /// BLAKE3 of the background sample the values were computed against.
    background_digest: Option<String>,
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CounterfactualQuery {
    /// The inputs a person could change, comma-separated (required).
    #[param(required)]
    features: Option<String>,
    /// `NAME:LOW..HIGH`, comma-separated; either end may be left out.
    ranges: Option<String>,
}

/// The smallest change that flips the decision, or why there is none within the ranges.
#[derive(serde::Serialize, ToSchema)]
struct Counterfactual {
    #[serde(flatten)]
    #[schema(value_type = CounterfactualFields)]
    search: serde_json::Map<String, Value>,
    #[schema(value_type = String, format = "uuid")]
    prediction_id: uuid::Uuid,
    model: String,
    version: String,
}

/// The schema of a counterfactual search's answer (`mltrail_explain::served`).
#[derive(ToSchema)]
#[allow(dead_code)] // A schema only: the search answers a JSON object.
struct CounterfactualFields {
    /// The features the search could change.
    features: Vec<String>,
    /// Each feature's range, `[low, high]`.
    ranges: std::collections::BTreeMap<String, Vec<f64>>,
    /// The model's decision about the prediction.
    decision: String,
    /// How the search went (`tree cells (exhaustive)`, an attack, HopSkipJump).
    method: String,
    distance_unit: String,
    /// Whether a change that flips the decision was found.
    found: bool,
    /// The change found: `decision`, `changes` (`feature`, `from`, `to`), `inputs`,
    /// `distance`, `rescored`.
    #[schema(value_type = Option<Object>)]
    counterfactual: Option<Value>,
    /// Whether no closer change exists (`certified: …`) or it is the closest found.
    minimal: Option<String>,
    /// Why none was found.
    reason: Option<String>,
}

/// `?features=a,b&ranges=a:0..0.5,b:1000..`: the features a person could act on and, for any
/// of them, the values it may take (an open end: the training data's least or greatest value).
fn counterfactual_request(
    q: &CounterfactualQuery,
    columns: &[String],
) -> ApiResult<mltrail_serving::explanation::CounterfactualRequest> {
    let bad = |field: &'static str, message: String| {
        ApiError::invalid(message).at_column(Some(field), None)
    };
    let features: Vec<String> = q
        .features
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    if features.is_empty() {
        return Err(bad("features", "`features` names the inputs a person could change, comma-separated (e.g. features=debt_ratio,savings)".into()));
    }
    for f in &features {
        if !columns.contains(f) {
            return Err(bad(
                "features",
                format!(
                    "`{f}` is not an input of the model ({})",
                    columns.join(", ")
                ),
            ));
        }
    }
    let mut ranges: Vec<(String, Option<f64>, Option<f64>)> =
        features.iter().map(|f| (f.clone(), None, None)).collect();
    for item in q
        .ranges
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        let parsed = item.split_once(':').and_then(|(name, span)| {
            let (a, b) = span.split_once("..")?;
            let end = |t: &str| -> Option<Option<f64>> {
                let t = t.trim();
                if t.is_empty() {
                    Some(None)
                } else {
                    t.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some)
                }
            };
            Some((name.trim().to_string(), end(a)?, end(b)?))
        });
        let Some((name, from, to)) = parsed else {
            return Err(bad("ranges", format!("`{item}` is not NAME:LOW..HIGH (either end may be left out, e.g. savings:1000..)")));
        };
        let Some(slot) = ranges.iter_mut().find(|r| r.0 == name) else {
            return Err(bad(
                "ranges",
                format!("`{name}` has a range but is not in `features`"),
            ));
        };
        if let (Some(a), Some(b)) = (from, to) {
            if a >= b {
                return Err(bad(
                    "ranges",
                    format!("the range of `{name}` is {a}..{b}: give LOW < HIGH"),
                ));
            }
        }
        *slot = (name, from, to);
    }
    Ok(mltrail_serving::explanation::CounterfactualRequest { features: ranges })
}

/// The smallest change of the features asked about that changes the model's decision about a
/// stored prediction, re-scored by the model; or why there is none within the ranges.
#[utoipa::path(get, path = "/api/v1/predictions/{id}/counterfactual", tag = "predictions",
    params(PredictionPath, CounterfactualQuery),
    responses((status = 200, description = "The counterfactual, re-scored by the model", body = Counterfactual)))]
async fn counterfactual(
    State(dep): State<Arc<Deployment>>,
    Path(PredictionPath { id }): Path<PredictionPath>,
    axum::extract::Query(q): axum::extract::Query<CounterfactualQuery>,
) -> ApiResult<Json<Counterfactual>> {
    let id = parse_id(&id)?;
    let request = counterfactual_request(&q, &dep.current().signature.column_names())?;
    let Some((record, body)) = dep.counterfactual(id, request).await? else {
        return Err(ApiError::not_found(format!(
            "prediction {id} is not in this deployment's log"
        )));
    };
    let Value::Object(search) = body else {
        return Err(ApiError::internal(
            "a counterfactual search answered no JSON object",
        ));
    };
    Ok(Json(Counterfactual {
        search,
        prediction_id: id,
        model: record.model,
        version: record.version,
    }))
}

async fn health(State(dep): State<Arc<Deployment>>) -> Json<Value> {
    let m = dep.current();
    Json(json!({"status": "ok", "deployment": dep.name(), "model": m.name, "version": m.version}))
}

/// What a deployment serves (its model version, signature, explanation mode, routing output).
#[derive(serde::Serialize, ToSchema)]
struct DeploymentInfo {
    deployment: String,
    model: String,
    version: String,
    /// BLAKE3 of the served model file.
    digest: String,
    /// `native` (mltrail's own evaluator: tree ensembles, linear models) or `onnxruntime`.
    engine: &'static str,
    signature: ServedSignature,
    accepts_missing_values: bool,
    /// When predictions are explained: `off`, `on_request` or `always`.
    explain: &'static str,
    /// `predictions` or `ranking`.
    output: &'static str,
    /// A ranking deployment's item column.
    item_column: Option<String>,
    /// The model output a ranking sorts by.
    score_output: Option<String>,
    /// The request key column of a ranking.
    key_column: Option<String>,
    /// A ranking deployment's catalog.
    catalog: Option<CatalogInfo>,
    /// How many times the model was swapped.
    swaps: u64,
}

/// The served version's signature.
#[derive(serde::Serialize, ToSchema)]
struct ServedSignature {
    /// MLflow's column specs: `[{"name", "type", "required"}, …]`.
    #[schema(value_type = Vec<Object>)]
    inputs: Value,
    /// The model's output names.
    outputs: Vec<String>,
}

/// A ranking deployment's catalog as loaded now.
#[derive(serde::Serialize, ToSchema)]
struct CatalogInfo {
    name: String,
    /// The dataset version in force; null before one was read.
    version: Option<String>,
    /// Items available in it.
    available: Option<usize>,
    /// `flag` (out-of-catalog items answered and named) or `filter` (left out).
    mode: &'static str,
}

#[utoipa::path(get, path = "/api/v1/deployment", tag = "deployment",
    responses((status = 200, description = "What this process serves", body = DeploymentInfo)))]
async fn info(State(dep): State<Arc<Deployment>>) -> Json<DeploymentInfo> {
    let m = dep.current();
    let ranking = dep.ranking();
    Json(DeploymentInfo {
        deployment: dep.name().to_string(),
        model: m.name.clone(),
        version: m.version.clone(),
        digest: m.digest.clone(),
        engine: m.model.engine_name(),
        signature: ServedSignature {
            inputs: m.signature.to_mlflow_json(),
            outputs: m.output_names.clone(),
        },
        accepts_missing_values: m.model.accepts_missing_values(),
        explain: dep.explain_mode().as_str(),
        output: if ranking.is_some() {
            "ranking"
        } else {
            "predictions"
        },
        item_column: ranking.map(|r| r.item_column.clone()),
        score_output: ranking.and_then(|r| r.score_output.clone()),
        key_column: ranking.and_then(|r| r.key_column.clone()),
        catalog: dep.catalog().map(|c| {
            let current = c.current();
            CatalogInfo {
                name: c.spec.name.clone(),
                version: current.as_ref().map(|v| v.version.clone()),
                available: current.as_ref().map(|v| v.available()),
                mode: c.spec.mode.as_str(),
            }
        }),
        swaps: dep.swaps(),
    })
}

fn metrics(dep: &Deployment, auth: Option<&crate::scoring_auth::ServeAuth>) -> impl IntoResponse {
    let mut text = dep.render_metrics();
    if let Some(auth) = auth {
        // One exposition: the deployment's families, then the refusal counters, then one EOF.
        if let Some(body) = text.strip_suffix("# EOF\n") {
            text = format!("{body}{}", auth.counters.render());
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        text,
    )
}

#[derive(serde::Serialize, ToSchema)]
struct Noop {
    /// Whether the body was a JSON object.
    ok: bool,
}

/// A no-op that parses the body as JSON and answers, the ceiling for scoring benchmarks.
#[utoipa::path(post, path = "/api/v1/noop", tag = "deployment",
    request_body(content = Object, description = "Any JSON"),
    responses((status = 200, description = "Parsed; nothing scored or logged (a benchmark's ceiling)", body = Noop)))]
async fn noop(body: Bytes) -> ApiResult<Json<Noop>> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(Noop { ok: v.is_object() }))
}

/// The scoring routes, each declared with its entry in the serving OpenAPI document.
fn documented() -> OpenApiRouter<Arc<Deployment>> {
    OpenApiRouter::with_openapi(crate::openapi::ServingApi::openapi())
        .routes(routes!(invocations))
        .routes(routes!(predict))
        .routes(routes!(feedback))
        .routes(routes!(prediction))
        .routes(routes!(explanation))
        .routes(routes!(counterfactual))
        .routes(routes!(record))
        .routes(routes!(info))
        .routes(routes!(noop))
}

/// The serving OpenAPI document, as `/api/v1/openapi.json` on `mltrail serve` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    crate::openapi::completed(documented().into_openapi())
}

/// The deployment's routes; with `auth`, every caller but `/health`, `/ping` and `/api/v1/openapi.json` is checked
/// ([`crate::scoring_auth`]).
pub fn routes(
    dep: Arc<Deployment>,
    max_body_bytes: usize,
    auth: Option<Arc<crate::scoring_auth::ServeAuth>>,
) -> Router {
    let (documented, document) = documented().split_for_parts();
    let document = crate::openapi::Rendered::new(&crate::openapi::completed(document));
    let router =
        Router::new()
            .merge(documented)
            .route(
                "/api/v1/openapi.json",
                get(move || std::future::ready(document.clone())),
            )
            .route("/health", get(health))
            .route("/ping", get(|| async { "" }))
            .route(
                "/metrics",
                get({
                    let auth = auth.clone();
                    move |State(dep): State<Arc<Deployment>>| async move {
                        metrics(&dep, auth.as_deref())
                    }
                }),
            )
            .fallback(crate::error::not_found_route)
            .method_not_allowed_fallback(crate::error::method_not_allowed)
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(dep);
    match auth {
        Some(auth) => router.layer(crate::guard::GuardLayer(crate::scoring_auth::ServeGuard(
            auth,
        ))),
        None => router,
    }
}
