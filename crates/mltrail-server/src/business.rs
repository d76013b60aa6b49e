//! `/api/v1/metrics` (business metrics: push points, read them back) and `/api/v1/annotations`
//! (periods baselines leave out). The rules are mltrail-store's (`business`); these handlers
//! decode and encode, naming the field at fault.

use axum::extract::{Path, Query, State};
use axum::Json;
use mltrail_store::business::{self, Annotation, MetricSummary, NewAnnotation, Pushed};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::{not_expected, text_or_number, Body, TextOrNumber};
use crate::AppState;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}")).at_column(Some(field), None)
}

/// The latest time taken: the end of year 9999, as far as the time helpers print.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A time as Unix milliseconds (a whole number) or as text: an RFC 3339 time or a UTC date.
fn time_of(value: &TimeIn, field: &str) -> Result<i64, ApiError> {
    let ms = match value {
        TimeIn::Millis(ms) => *ms,
        TimeIn::Text(text) => {
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

/// A time: Unix milliseconds, or an RFC 3339 time or UTC date as text.
#[derive(ToSchema)]
// For the schema (one of the variants); it is read by `req::text_or_number`, below.
#[serde(untagged)]
enum TimeIn {
    Millis(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for TimeIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTING: &str =
            "a whole number of Unix milliseconds, or an RFC 3339 time such as \"2026-12-01T10:00:00Z\"";
        match text_or_number(deserializer, EXPECTING)? {
            TextOrNumber::Text(text) => Ok(TimeIn::Text(text)),
            TextOrNumber::Number(n) => n
                .as_i64()
                .map(TimeIn::Millis)
                .ok_or_else(|| not_expected(&n, EXPECTING)),
        }
    }
}

/// One point of a business metric.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Part of `PushIn`'s schema.
struct PointIn {
    time: TimeIn,
    /// A finite number a double holds exactly (one that does not is refused, not rounded).
    value: f64,
}

/// Points of a business metric. The handler reads each value's text itself, so a value a
/// double cannot hold is refused rather than rounded.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The schema of the body `push` reads.
struct PushIn {
    /// Up to 100,000 points; a time stored already must come with the same value.
    points: Vec<PointIn>,
}

/// The business metric a route is about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MetricPath {
    /// The metric's name.
    name: String,
}

#[utoipa::path(post, path = "/{name}", tag = "business metrics", params(MetricPath),
    request_body = PushIn,
    responses((status = 200, description = "What the push stored", body = Pushed)))]
async fn push(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(MetricPath { name }): Path<MetricPath>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Pushed>> {
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
        let time: TimeIn = serde_json::from_str(time.get()).map_err(|e| bad(&field("time"), e))?;
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
    Ok(Json(pushed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PointsQuery {
    /// Unix milliseconds, a time, a date, or a duration ago (`7d`); the first point when
    /// left out.
    since: Option<String>,
    /// As `since`, exclusive; after the last point when left out.
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct Point {
    /// Unix milliseconds.
    time: i64,
    value: f64,
}

#[derive(Serialize, ToSchema)]
struct MetricPoints {
    metric: MetricSummary,
    points: Vec<Point>,
    /// The annotated periods that overlap.
    annotations: Vec<Annotation>,
}

#[utoipa::path(get, path = "/{name}", tag = "business metrics", params(MetricPath, PointsQuery),
    responses((status = 200, description = "The metric's points and annotations in the range", body = MetricPoints)))]
async fn read(
    State(state): State<AppState>,
    Path(MetricPath { name }): Path<MetricPath>,
    Query(q): Query<PointsQuery>,
) -> ApiResult<Json<MetricPoints>> {
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
    Ok(Json(MetricPoints {
        metric: summary,
        points: points
            .into_iter()
            .map(|(time, value)| Point { time, value })
            .collect(),
        annotations,
    }))
}

#[derive(Serialize, ToSchema)]
struct Metrics {
    metrics: Vec<MetricSummary>,
}

#[utoipa::path(get, path = "/", tag = "business metrics",
    responses((status = 200, description = "Every business metric with its point count and span", body = Metrics)))]
async fn list(State(state): State<AppState>) -> ApiResult<Json<Metrics>> {
    Ok(Json(Metrics {
        metrics: business::list_metrics(&state.store).await?,
    }))
}

/// A period to annotate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AnnotationIn {
    name: String,
    /// `campaign`, `outage`, `holiday`, `incident` or `other` (the default).
    kind: Option<String>,
    /// The period's start.
    from: TimeIn,
    /// Its end (exclusive).
    to: TimeIn,
    /// The metrics it is about; every metric when left out.
    metrics: Option<Vec<String>>,
    note: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct AnnotationRead {
    annotation: Annotation,
}

#[utoipa::path(post, path = "/", tag = "annotations", request_body = AnnotationIn,
    responses((status = 200, description = "The annotation made", body = AnnotationRead)))]
async fn annotate(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<AnnotationIn>,
) -> ApiResult<Json<AnnotationRead>> {
    let from = time_of(&body.from, "from")?;
    let to = time_of(&body.to, "to")?;
    let (name, kind) = (body.name, body.kind.unwrap_or_else(|| "other".into()));
    let (metrics, note) = (
        body.metrics.unwrap_or_default(),
        body.note.unwrap_or_default(),
    );
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
    Ok(Json(AnnotationRead { annotation }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AnnotationsQuery {
    /// Only annotations about this metric (those about every metric included).
    metric: Option<String>,
    /// Deleted annotations too.
    #[serde(default)]
    include_deleted: bool,
}

#[derive(Serialize, ToSchema)]
struct Annotations {
    annotations: Vec<Annotation>,
}

/// An annotation.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AnnotationPath {
    /// The annotation's id.
    id: String,
}

#[utoipa::path(get, path = "/", tag = "annotations", params(AnnotationsQuery),
    responses((status = 200, description = "The annotations", body = Annotations)))]
async fn annotations(
    State(state): State<AppState>,
    Query(q): Query<AnnotationsQuery>,
) -> ApiResult<Json<Annotations>> {
    let annotations = business::list_annotations(
        &state.store,
        q.metric.as_deref(),
        i64::MIN,
        i64::MAX,
        q.include_deleted,
    )
    .await?;
    Ok(Json(Annotations { annotations }))
}

#[utoipa::path(get, path = "/{id}", tag = "annotations", params(AnnotationPath),
    responses((status = 200, description = "The annotation", body = AnnotationRead)))]
async fn annotation(
    State(state): State<AppState>,
    Path(AnnotationPath { id }): Path<AnnotationPath>,
) -> ApiResult<Json<AnnotationRead>> {
    Ok(Json(AnnotationRead {
        annotation: business::get_annotation(&state.store, &id).await?,
    }))
}

#[utoipa::path(delete, path = "/{id}", tag = "annotations", params(AnnotationPath),
    responses((status = 200, description = "The annotation is deleted (baselines count its period again)", body = crate::openapi::Done)))]
async fn delete_annotation(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(AnnotationPath { id }): Path<AnnotationPath>,
) -> ApiResult<Json<crate::openapi::Done>> {
    business::delete_annotation(&state.store, &actor, &id).await?;
    Ok(Json(crate::openapi::Done {}))
}

/// The routes of business metrics; a push's body may be as large as `max_body` (a point is ~50
/// bytes of JSON, so the default 16 MiB holds the 100,000 a push may carry).
pub fn metric_routes(max_body: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read, push))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

pub fn annotation_routes(max_body: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(annotations, annotate))
        .routes(routes!(annotation, delete_annotation))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

#[cfg(test)]
mod time_tests {
    use super::TimeIn;

    #[test]
    fn a_time_is_whole_milliseconds_or_text() {
        let read = |text: &str| serde_json::from_str::<TimeIn>(text);
        assert!(matches!(
            read("1780000000000"),
            Ok(TimeIn::Millis(1_780_000_000_000))
        ));
        assert!(matches!(read("-5"), Ok(TimeIn::Millis(-5))));
        assert!(matches!(read(r#""2026-06-01""#), Ok(TimeIn::Text(t)) if t == "2026-06-01"));
        for refused in ["1.5", "9223372036854775808", "true", "null", "[]"] {
            let e = read(refused)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("a whole number of Unix milliseconds"),
                "{refused}: {e}"
            );
        }
    }
}
