//! The scoring edge of a deployment: `/invocations` (MLflow's protocol), `/api/v1/predict`,
//! `/api/v1/feedback`, `/api/v1/predictions/{id}`, `/health` and `/metrics`.
//!
//! Every served row is appended to the prediction log before the response leaves; a request whose
//! records cannot be logged fails (503) instead of answering unrecorded. The current model sits
//! behind an `Arc` swapped under a short lock: a request keeps the model it started with, so a
//! swap never fails or mixes versions inside one request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mltrail_serving::archive::{find_archived, SharedArchive};
use mltrail_serving::predlog::{Entry, EntryKind, PredictionLog};
use mltrail_serving::request::{self, RequestError};
use mltrail_serving::response;
use mltrail_serving::runtime::Model;
use mltrail_serving::signature::Signature;
use serde_json::{json, Value};

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const ERROR_KINDS: [&str; 4] = ["bad_request", "too_large", "model", "log"];

/// Counters for one model version of a deployment (Prometheus naming).
pub struct VersionMetrics {
    pub version: String,
    requests: AtomicU64,
    rows: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl VersionMetrics {
    fn new(version: &str) -> Self {
        Self {
            version: version.to_string(),
            requests: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            errors: Default::default(),
            buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        // One counter per observation (its own bucket); the scrape makes them cumulative.
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A model version ready to serve.
pub struct LoadedModel {
    pub name: String,
    pub version: String,
    /// BLAKE3 of the ONNX file.
    pub digest: String,
    pub model: Model,
    pub signature: Signature,
    pub output_names: Vec<String>,
    output_keys: Vec<Vec<u8>>,
    metrics: Arc<VersionMetrics>,
}

impl LoadedModel {
    pub fn new(
        name: String,
        version: String,
        digest: String,
        model: Model,
        signature: Signature,
    ) -> Self {
        let output_names = model.output_names();
        let output_keys = response::json_keys(&output_names);
        let metrics = Arc::new(VersionMetrics::new(&version));
        Self {
            name,
            version,
            digest,
            model,
            signature,
            output_names,
            output_keys,
            metrics,
        }
    }
}

pub struct Deployment {
    pub name: String,
    current: RwLock<Arc<LoadedModel>>,
    log: Arc<PredictionLog>,
    all_metrics: Mutex<Vec<Arc<VersionMetrics>>>,
    swaps: AtomicU64,
    archive: Option<SharedArchive>,
}

impl Deployment {
    pub fn new(name: String, model: LoadedModel, log: Arc<PredictionLog>) -> Self {
        let metrics = model.metrics.clone();
        Self {
            name,
            current: RwLock::new(Arc::new(model)),
            log,
            all_metrics: Mutex::new(vec![metrics]),
            swaps: AtomicU64::new(0),
            archive: None,
        }
    }

    /// Where sealed segments are archived; lookups fall back to it.
    pub fn with_archive(mut self, archive: SharedArchive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The prediction and all its feedback, from local segments or the archive.
    async fn lookup(&self, id: uuid::Uuid) -> Result<Option<(Value, Vec<Value>)>, String> {
        let log = self.log.clone();
        let local =
            tokio::task::spawn_blocking(move || log.get(id.as_u128()).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())??;
        if local.is_some() {
            return Ok(local);
        }
        let Some(archive) = &self.archive else {
            return Ok(None);
        };
        let Some((record, mut feedback)) = find_archived(archive.as_ref(), &self.name, id).await?
        else {
            return Ok(None);
        };
        feedback.extend(
            self.log
                .local_feedback(id.as_u128())
                .map_err(|e| e.to_string())?,
        );
        Ok(Some((record, feedback)))
    }

    pub fn current(&self) -> Arc<LoadedModel> {
        self.current
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts `next` in place; requests already running finish on the model they started with.
    pub fn swap(&self, next: LoadedModel) -> Arc<LoadedModel> {
        if let Ok(mut all) = self.all_metrics.lock() {
            all.push(next.metrics.clone());
        }
        let next = Arc::new(next);
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut *guard, next);
        self.swaps.fetch_add(1, Ordering::Relaxed);
        previous
    }

    pub fn log(&self) -> &Arc<PredictionLog> {
        &self.log
    }
}

struct ScoringError {
    status: StatusCode,
    code: &'static str,
    kind: &'static str,
    message: String,
    column: Option<String>,
    row: Option<usize>,
}

impl ScoringError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            kind: "bad_request",
            message: message.into(),
            column: None,
            row: None,
        }
    }
}

impl From<RequestError> for ScoringError {
    fn from(e: RequestError) -> Self {
        Self {
            column: e.column().map(str::to_string),
            row: e.row(),
            ..Self::bad(e.to_string())
        }
    }
}

impl IntoResponse for ScoringError {
    fn into_response(self) -> Response {
        let mut body = json!({"error_code": self.code, "message": self.message});
        if let Some(c) = self.column {
            body["column"] = json!(c);
        }
        if let Some(r) = self.row {
            body["row"] = json!(r);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A UUIDv7 for a prediction: the millisecond timestamp plus 74 bits from a per-thread
/// generator seeded from the OS once (no syscall and no shared state per id).
fn prediction_id(time_ms: u64) -> uuid::Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    }
    let next = || {
        STATE.with(|s| {
            // splitmix64
            let mut z = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&next().to_le_bytes());
    random[8..].copy_from_slice(&next().to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis(time_ms, &random).into_uuid()
}

fn push_quoted_id(out: &mut Vec<u8>, id: &uuid::Uuid) {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Served {
    model: Arc<LoadedModel>,
    kind: request::RequestKind,
    ids: Vec<uuid::Uuid>,
    /// Each row's outputs as JSON text.
    rows: Vec<Vec<u8>>,
    outputs: Vec<mltrail_serving::runtime::Value>,
}

/// Decode, validate, run, and log one request; the shared path of both scoring endpoints.
async fn score(dep: &Deployment, body: &[u8], started: Instant) -> Result<Served, ScoringError> {
    let model = dep.current();
    let result = score_with(dep, &model, body, started).await;
    let metrics = &model.metrics;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    match &result {
        Ok(served) => {
            metrics
                .rows
                .fetch_add(served.ids.len() as u64, Ordering::Relaxed);
        }
        Err(e) => metrics.error(e.kind),
    }
    metrics.observe(started);
    result
}

async fn score_with(
    dep: &Deployment,
    model: &Arc<LoadedModel>,
    body: &[u8],
    started: Instant,
) -> Result<Served, ScoringError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ScoringError::bad(format!("the body is not valid JSON: {e}")))?;
    let decoded = request::decode(json, &model.model, &model.signature)?;
    let outputs = model.model.run(decoded.tensors).map_err(|e| ScoringError {
        status: StatusCode::BAD_REQUEST,
        code: "BAD_REQUEST",
        kind: "model",
        message: format!("the model could not score this input: {e}"),
        column: None,
        row: None,
    })?;
    let n = decoded.rows;
    let rows: Vec<Vec<u8>> = (0..n)
        .map(|r| {
            let mut out = Vec::with_capacity(64);
            response::row_json(&model.output_keys, &outputs, r, n, &mut out);
            out
        })
        .collect();
    let time = now_ms();
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| prediction_id(time)).collect();
    let latency_us = started.elapsed().as_micros() as u64;
    // Everything but the id, inputs and outputs is the same for every row of a request.
    let text = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let shared = format!(
        ",\"time_ms\":{time},\"deployment\":{},\"model\":{},\"version\":{},\"digest\":{},\"arm\":null,\"latency_us\":{latency_us},\"inputs\":",
        text(&dep.name),
        text(&model.name),
        text(&model.version),
        text(&model.digest)
    );
    let entries = ids
        .iter()
        .zip(&decoded.row_inputs)
        .zip(&rows)
        .map(|((id, inputs), outputs)| {
            let mut payload = Vec::with_capacity(shared.len() + inputs.len() + outputs.len() + 64);
            payload.extend_from_slice(b"{\"type\":\"prediction\",\"id\":");
            push_quoted_id(&mut payload, id);
            payload.extend_from_slice(shared.as_bytes());
            payload.extend_from_slice(inputs);
            payload.extend_from_slice(b",\"outputs\":");
            payload.extend_from_slice(outputs);
            payload.push(b'}');
            Entry {
                id: id.as_u128(),
                kind: EntryKind::Prediction,
                payload,
            }
        })
        .collect();
    dep.log.append(entries).await.map_err(|e| ScoringError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "TEMPORARILY_UNAVAILABLE",
        kind: "log",
        message: format!("the prediction could not be recorded, so it is not returned: {e}"),
        column: None,
        row: None,
    })?;
    Ok(Served {
        model: model.clone(),
        kind: decoded.kind,
        ids,
        rows,
        outputs,
    })
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The shared front of both scoring endpoints: the body (413 above the limit), then [`score`].
async fn scored(
    dep: &Deployment,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Served, ScoringError> {
    let started = Instant::now();
    let body = body.map_err(too_large)?;
    score(dep, &body, started).await
}

async fn invocations(
    State(dep): State<Arc<Deployment>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ScoringError> {
    let served = scored(&dep, body).await?;
    if served.kind == request::RequestKind::DataFrame {
        let mut out =
            Vec::with_capacity(served.rows.iter().map(|r| r.len() + 1).sum::<usize>() + 20);
        out.extend_from_slice(b"{\"predictions\":[");
        for (i, row) in served.rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(row);
        }
        out.extend_from_slice(b"]}");
        return Ok(json_response(out));
    }
    Ok(Json(response::tensor_predictions(
        &served.model.output_names,
        &served.outputs,
    ))
    .into_response())
}

async fn predict(
    State(dep): State<Arc<Deployment>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ScoringError> {
    let served = scored(&dep, body).await?;
    let m = &served.model;
    let text = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let shared = format!(
        ",\"model\":{},\"version\":{},\"digest\":{},\"outputs\":",
        text(&m.name),
        text(&m.version),
        text(&m.digest)
    );
    let mut out = Vec::with_capacity(
        served
            .rows
            .iter()
            .map(|r| r.len() + shared.len() + 64)
            .sum::<usize>()
            + 64,
    );
    out.extend_from_slice(
        format!("{{\"deployment\":{},\"predictions\":[", text(&dep.name)).as_bytes(),
    );
    for (i, (id, row)) in served.ids.iter().zip(&served.rows).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"prediction_id\":");
        push_quoted_id(&mut out, id);
        out.extend_from_slice(shared.as_bytes());
        out.extend_from_slice(row);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(json_response(out))
}

fn too_large(e: axum::extract::rejection::BytesRejection) -> ScoringError {
    let status = e.status();
    ScoringError {
        status,
        code: if status == StatusCode::PAYLOAD_TOO_LARGE {
            "RESOURCE_LIMIT_EXCEEDED"
        } else {
            "BAD_REQUEST"
        },
        kind: "too_large",
        message: e.body_text(),
        column: None,
        row: None,
    }
}

fn internal(message: String) -> ScoringError {
    ScoringError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "INTERNAL_ERROR",
        kind: "log",
        ..ScoringError::bad(message)
    }
}

fn parse_id(text: &str) -> Result<uuid::Uuid, ScoringError> {
    uuid::Uuid::parse_str(text).map_err(|_| ScoringError {
        column: Some("prediction_id".into()),
        ..ScoringError::bad(format!("`{text}` is not a prediction id"))
    })
}

async fn feedback(
    State(dep): State<Arc<Deployment>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ScoringError> {
    let id_text = body
        .get("prediction_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ScoringError {
            column: Some("prediction_id".into()),
            ..ScoringError::bad("`prediction_id` (a string) is required")
        })?;
    let id = parse_id(id_text)?;
    let mut record =
        json!({"type": "feedback", "id": id, "time_ms": now_ms(), "deployment": dep.name});
    let mut any = false;
    for field in ["label", "reward", "ranking"] {
        if let Some(v) = body.get(field) {
            if field == "reward" && !v.is_number() {
                return Err(ScoringError {
                    column: Some("reward".into()),
                    ..ScoringError::bad("`reward` must be a number")
                });
            }
            if field == "ranking" && !v.is_array() {
                return Err(ScoringError {
                    column: Some("ranking".into()),
                    ..ScoringError::bad("`ranking` must be the list of items displayed, in order")
                });
            }
            record[field] = v.clone();
            any = true;
        }
    }
    if !any {
        return Err(ScoringError::bad(
            "feedback needs at least one of `label`, `reward`, `ranking`",
        ));
    }
    let known = dep.log.contains(id.as_u128()) || dep.lookup(id).await.map_err(internal)?.is_some();
    if !known {
        return Err(ScoringError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            kind: "bad_request",
            message: format!(
                "prediction {id} was not served by deployment `{}`",
                dep.name
            ),
            column: Some("prediction_id".into()),
            row: None,
        });
    }
    let payload = serde_json::to_vec(&record).unwrap_or_default();
    dep.log
        .append(vec![Entry {
            id: id.as_u128(),
            kind: EntryKind::Feedback,
            payload,
        }])
        .await
        .map_err(|e| ScoringError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "TEMPORARILY_UNAVAILABLE",
            kind: "log",
            ..ScoringError::bad(e.to_string())
        })?;
    Ok(Json(json!({"prediction_id": id, "recorded": true})))
}

async fn prediction(
    State(dep): State<Arc<Deployment>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ScoringError> {
    let id = parse_id(&id)?;
    let found = dep.lookup(id).await.map_err(internal)?;
    let Some((mut record, feedback)) = found else {
        return Err(ScoringError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            ..ScoringError::bad(format!("prediction {id} is not in this deployment's log"))
        });
    };
    record["feedback"] = Value::Array(feedback);
    Ok(Json(record))
}

async fn health(State(dep): State<Arc<Deployment>>) -> Json<Value> {
    let m = dep.current();
    Json(json!({"status": "ok", "deployment": dep.name, "model": m.name, "version": m.version}))
}

async fn info(State(dep): State<Arc<Deployment>>) -> Json<Value> {
    let m = dep.current();
    Json(json!({
        "deployment": dep.name,
        "model": m.name,
        "version": m.version,
        "digest": m.digest,
        "engine": m.model.engine_name(),
        "signature": {"inputs": m.signature.to_mlflow_json(), "outputs": m.output_names},
        "accepts_missing_values": m.model.accepts_missing_values(),
        "swaps": dep.swaps.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(dep): State<Arc<Deployment>>) -> impl IntoResponse {
    let current = dep.current();
    let all = dep
        .all_metrics
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut out = String::new();
    let d = &dep.name;
    let model = &current.name;
    let counter =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&VersionMetrics) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for m in &all {
                let _ = writeln!(
                    out,
                    "{name}{{deployment=\"{d}\",model=\"{model}\",version=\"{}\"}} {}",
                    m.version,
                    value(m)
                );
            }
        };
    counter(
        &mut out,
        "mltrail_requests_total",
        "Scoring requests received, per model version.",
        &|m| m.requests.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "mltrail_predictions_total",
        "Rows scored and logged.",
        &|m| m.rows.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP mltrail_request_errors_total Failed scoring requests by kind.\n# TYPE mltrail_request_errors_total counter");
    for m in &all {
        for (i, kind) in ERROR_KINDS.iter().enumerate() {
            let _ = writeln!(out, "mltrail_request_errors_total{{deployment=\"{d}\",model=\"{model}\",version=\"{}\",kind=\"{kind}\"}} {}", m.version, m.errors[i].load(Ordering::Relaxed));
        }
    }
    let _ = writeln!(out, "# HELP mltrail_request_duration_seconds Scoring latency, logging included.\n# TYPE mltrail_request_duration_seconds histogram");
    for m in &all {
        let labels = format!(
            "deployment=\"{d}\",model=\"{model}\",version=\"{}\"",
            m.version
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += m.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mltrail_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = m.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "mltrail_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "mltrail_request_duration_seconds_sum{{{labels}}} {}",
            m.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "mltrail_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    let _ = writeln!(out, "# HELP mltrail_deployment_info The version a deployment serves now.\n# TYPE mltrail_deployment_info gauge");
    let _ = writeln!(out, "mltrail_deployment_info{{deployment=\"{d}\",model=\"{model}\",version=\"{}\",digest=\"{}\"}} 1", current.version, current.digest);
    let _ = writeln!(out, "# HELP mltrail_deployment_swaps_total Model swaps since start.\n# TYPE mltrail_deployment_swaps_total counter");
    let _ = writeln!(
        out,
        "mltrail_deployment_swaps_total{{deployment=\"{d}\"}} {}",
        dep.swaps.load(Ordering::Relaxed)
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

/// A no-op that parses the body as JSON and answers, the ceiling for scoring benchmarks.
async fn noop(body: Bytes) -> Result<Json<Value>, ScoringError> {
    let v: Value = serde_json::from_slice(&body).map_err(|e| ScoringError::bad(e.to_string()))?;
    Ok(Json(json!({"ok": v.is_object()})))
}

pub fn routes(dep: Arc<Deployment>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/invocations", post(invocations))
        .route("/api/v1/predict", post(predict))
        .route("/api/v1/feedback", post(feedback))
        .route("/api/v1/predictions/{id}", get(prediction))
        .route("/api/v1/deployment", get(info))
        .route("/api/v1/noop", post(noop))
        .route("/health", get(health))
        .route("/ping", get(|| async { "" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(dep)
}
