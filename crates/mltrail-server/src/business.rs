//! `/api/v1/metrics` (business metrics: push points, read them back) and `/api/v1/annotations`
//! (periods baselines leave out). The rules are mltrail-store's (`business`); these handlers
//! decode and encode, naming the field at fault.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use mltrail_store::business::{self, NewAnnotation};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}")).at_column(Some(field), None)
}

/// The latest time taken: the end of year 9999, as far as the time helpers print.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A time as Unix milliseconds (a whole number) or as text: an RFC 3339 time or a UTC date.
fn time_of(value: &Value, field: &str) -> Result<i64, ApiError> {
    let ms =
        match value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| bad(field, "must be a whole number of Unix milliseconds"))?,
            Value::String(text) => {
                let looks_like_duration = text
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, 's' | 'm' | 'h' | 'd'));
                if looks_like_duration {
                    return Err(bad(
                        field,
                        "must be a time (RFC 3339 or a date), not a duration",
                    ));
                }
                mltrail_core::time::parse_since(text, 0).map_err(|e| bad(field, e))?
            }
            _ => return Err(bad(
                field,
                "must be Unix milliseconds or an RFC 3339 time such as \"2026-12-01T10:00:00Z\"",
            )),
        };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(bad(field, "must be between 1970 and the end of year 9999"));
    }
    Ok(ms)
}

/// A query's time: Unix milliseconds, or what `parse_since` reads (a time, a date, a duration
/// ago).
fn query_time(text: &str, field: &str, now: i64) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(ms) => Ok(ms),
        Err(_) => mltrail_core::time::parse_since(text, now).map_err(|e| bad(field, e)),
    }
}

/// A JSON number, from its text, as a double only when the double is that number: serde_json
/// would read an integer beyond u64 as the nearest double, silently.
fn exact_f64(raw: &RawValue) -> Option<f64> {
    let text = raw.get().trim();
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        let i: i128 = text.parse().ok()?;
        let f = i as f64;
        // `-0` is the double -0.0, as a client that wrote it meant.
        let f = if i == 0 && text.starts_with('-') {
            -0.0
        } else {
            f
        };
        return (f.is_finite() && f as i128 == i).then_some(f);
    }
    serde_json::from_str::<f64>(text)
        .ok()
        .filter(|f| f.is_finite())
}

async fn push(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(name): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body.map_err(|r| ApiError::body_rejected(r, "INVALID_PARAMETER_VALUE"))?;
    // Read with each value's text kept, so a value a double cannot hold is refused, not rounded.
    type Fields = std::collections::BTreeMap<String, Box<RawValue>>;
    let body: Fields = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be a JSON object {{\"points\": [...]}}: {e}"
        ))
    })?;
    if let Some(other) = body.keys().find(|k| k.as_str() != "points") {
        return Err(bad(other, "is not a field of a push (points)"));
    }
    let items: Vec<Fields> = body
        .get("points")
        .ok_or_else(|| {
            bad(
                "points",
                "a list of {\"time\": …, \"value\": …} is required",
            )
        })
        .and_then(|raw| {
            serde_json::from_str(raw.get()).map_err(|_| {
                bad(
                    "points",
                    "must be a list of {\"time\": …, \"value\": …} objects",
                )
            })
        })?;
    let mut points = Vec::with_capacity(items.len());
    for (i, fields) in items.iter().enumerate() {
        let field = |f: &str| format!("points[{i}].{f}");
        if let Some(other) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "time" | "value"))
        {
            return Err(bad(&field(other), "is not a point's field (time, value)"));
        }
        let time = fields
            .get("time")
            .ok_or_else(|| bad(&field("time"), "is required"))?;
        let time: Value =
            serde_json::from_str(time.get()).map_err(|_| bad(&field("time"), "is not JSON"))?;
        let time = time_of(&time, &field("time"))?;
        let value = fields
            .get("value")
            .ok_or_else(|| bad(&field("value"), "is required"))?;
        let value = exact_f64(value).ok_or_else(|| {
            bad(
                &field("value"),
                "must be a finite number a double holds exactly",
            )
        })?;
        points.push((time, value));
    }
    let pushed = business::push_points(&state.store, &actor, &name, points).await?;
    Ok(Json(json!(pushed)))
}

#[derive(Deserialize)]
struct PointsQuery {
    since: Option<String>,
    until: Option<String>,
}

async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PointsQuery>,
) -> ApiResult<Json<Value>> {
    let summary = business::metric_summary(&state.store, &name).await?;
    let now = mltrail_core::now_millis();
    let since = match &q.since {
        Some(t) => query_time(t, "since", now)?,
        None => summary.first_time,
    };
    let until = match &q.until {
        Some(t) => query_time(t, "until", now)?,
        None => summary.last_time.saturating_add(1),
    };
    let points = business::points(&state.store, &name, since, until).await?;
    let annotations =
        business::list_annotations(&state.store, Some(&name), since, until, false).await?;
    Ok(Json(json!({
        "metric": summary,
        "points": points.iter().map(|(t, v)| json!({"time": t, "value": v})).collect::<Vec<_>>(),
        "annotations": annotations,
    })))
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"metrics": business::list_metrics(&state.store).await?}),
    ))
}

fn text_field(body: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

async fn annotate(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<Value>> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if let Some(other) = fields.keys().find(|k| {
        !matches!(
            k.as_str(),
            "name" | "kind" | "from" | "to" | "metrics" | "note"
        )
    }) {
        return Err(bad(
            other,
            "is not an annotation's field (name, kind, from, to, metrics, note)",
        ));
    }
    let name = text_field(&body, "name")?.ok_or_else(|| bad("name", "is required"))?;
    let kind = text_field(&body, "kind")?.unwrap_or_else(|| "other".into());
    let from = time_of(
        body.get("from").ok_or_else(|| bad("from", "is required"))?,
        "from",
    )?;
    let to = time_of(
        body.get("to").ok_or_else(|| bad("to", "is required"))?,
        "to",
    )?;
    let metrics = match body.get("metrics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("metrics", "must be a list of metric names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("metrics", "must be a list of metric names")),
    };
    let note = text_field(&body, "note")?.unwrap_or_default();
    let annotation = business::create_annotation(
        &state.store,
        &actor,
        NewAnnotation {
            name,
            kind,
            from_ms: from,
            to_ms: to,
            metrics,
            note,
        },
    )
    .await?;
    Ok(Json(json!({"annotation": annotation})))
}

#[derive(Deserialize)]
struct AnnotationsQuery {
    metric: Option<String>,
    #[serde(default)]
    include_deleted: bool,
}

async fn annotations(
    State(state): State<AppState>,
    Query(q): Query<AnnotationsQuery>,
) -> ApiResult<Json<Value>> {
    let list = business::list_annotations(
        &state.store,
        q.metric.as_deref(),
        i64::MIN,
        i64::MAX,
        q.include_deleted,
    )
    .await?;
    Ok(Json(json!({"annotations": list})))
}

async fn annotation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"annotation": business::get_annotation(&state.store, &id).await?}),
    ))
}

async fn delete_annotation(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    business::delete_annotation(&state.store, &actor, &id).await?;
    Ok(Json(json!({})))
}

/// The routes of business metrics; a push's body may be as large as `max_body` (a point is ~50
/// bytes of JSON, so the default 16 MiB holds the 100,000 a push may carry).
pub fn metric_routes(max_body: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/{name}", get(read).post(push))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

pub fn annotation_routes(max_body: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(annotations).post(annotate))
        .route("/{id}", get(annotation).delete(delete_annotation))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}
