//! `/api/v1/monitors` (create, list, read, delete; each monitor's window results and alerts) and
//! `/api/v1/alerts`. The rules of a monitor are mltrail-monitor's (`Engine::create`); these
//! handlers decode and encode.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use mltrail_core::MonitorId;
use mltrail_monitor::runner::{self, ConfigError, MonitorError, NewMonitor};
use mltrail_store::monitors;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}"))
}

/// A duration given as `"1h"` or as a number of seconds; `None` when not given.
fn duration_ms(body: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => runner::parse_duration_ms(s)
            .map(Some)
            .map_err(|e| bad(field, e)),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Some((s * 1000.0) as i64))
            .ok_or_else(|| bad(field, "must be a non-negative number of seconds")),
        Some(_) => Err(bad(
            field,
            "must be a duration such as \"1h\" or a number of seconds",
        )),
    }
}

fn strings(body: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(field, "must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(bad(field, "must be a list of strings")),
    }
}

/// A business metric monitor's baseline: `season` a duration ("7d") or seconds, `seasons` and
/// `horizon` whole numbers, `z` a number; what is left out takes its default.
fn seasonal_settings(
    fields: &serde_json::Map<String, Value>,
) -> Result<runner::SeasonalSettings, ApiError> {
    let mut settings = runner::SeasonalSettings::default();
    let whole = |field: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(&format!("seasonal.{field}"), "must be a whole number"))
    };
    for (key, value) in fields {
        match key.as_str() {
            "season" => {
                let wrapped = json!({"season": value});
                settings.season_ms = duration_ms(&wrapped, "season")
                    .map_err(|_| {
                        bad(
                            "seasonal.season",
                            "must be a duration such as \"7d\" or a number of seconds",
                        )
                    })?
                    .unwrap_or(settings.season_ms);
            }
            "seasons" => settings.seasons = whole("seasons", value)?,
            "horizon" => settings.horizon = whole("horizon", value)?,
            "z" => {
                settings.z = value
                    .as_f64()
                    .ok_or_else(|| bad("seasonal.z", "must be a number"))?
            }
            other => {
                return Err(bad(
                    &format!("seasonal.{other}"),
                    "is not a setting (season, seasons, z, horizon)",
                ))
            }
        }
    }
    Ok(settings)
}

/// A ranking monitor's settings: `true` (the defaults) or `{"k": 10, "repeat_lookback": "1d"}`.
fn ranking_settings(value: &Value) -> Result<Option<runner::RankingSettings>, ApiError> {
    let mut settings = runner::RankingSettings::default();
    match value {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Bool(true) => {}
        Value::Object(fields) => {
            for (key, value) in fields {
                match key.as_str() {
                    "k" => {
                        settings.k = value
                            .as_u64()
                            .and_then(|n| usize::try_from(n).ok())
                            .ok_or_else(|| bad("ranking.k", "must be a whole number"))?
                    }
                    "repeat_lookback" => {
                        let wrapped = json!({"repeat_lookback": value});
                        settings.repeat_lookback_ms = duration_ms(&wrapped, "repeat_lookback")
                            .map_err(|_| {
                                bad(
                                    "ranking.repeat_lookback",
                                    "must be a duration such as \"1d\" or a number of seconds",
                                )
                            })?;
                    }
                    other => {
                        return Err(bad(
                            &format!("ranking.{other}"),
                            "is not a setting (k, repeat_lookback)",
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(bad(
                "ranking",
                "must be true or an object (k, repeat_lookback)",
            ))
        }
    }
    Ok(Some(settings))
}

async fn create(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<Value>> {
    let metric = match body.get("metric") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(bad("metric", "must be a business metric's name")),
    };
    let deployment = match (body.get("deployment"), &metric) {
        (Some(Value::String(d)), _) => d.clone(),
        (None | Some(Value::Null), Some(_)) => String::new(),
        (None | Some(Value::Null), None) => {
            return Err(bad(
                "deployment",
                "a deployment name (or a business `metric`) is required",
            ))
        }
        (Some(_), _) => return Err(bad("deployment", "must be a deployment's name")),
    };
    let seasonal = match body.get("seasonal") {
        None | Some(Value::Null) => None,
        Some(Value::Object(fields)) => Some(seasonal_settings(fields)?),
        Some(_) => {
            return Err(bad(
                "seasonal",
                "must be an object (season, seasons, z, horizon)",
            ))
        }
    };
    let window_ms =
        duration_ms(&body, "window")?.ok_or_else(|| bad("window", "is required (e.g. \"1h\")"))?;
    let drift_share = match body.get("drift_share") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| bad("drift_share", "must be a number"))?,
        ),
    };
    let start = match body.get("start") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| bad("start", "must be a past time in Unix milliseconds"))?,
        ),
    };
    let ranking = ranking_settings(body.get("ranking").unwrap_or(&Value::Null))?;
    let new = NewMonitor {
        deployment,
        metric,
        seasonal,
        ranking,
        window_ms,
        delay_ms: duration_ms(&body, "delay")?,
        reference: body
            .get("reference")
            .and_then(Value::as_str)
            .map(str::to_string),
        drift_share,
        alerts: strings(&body, "alerts")?,
        webhooks: strings(&body, "webhooks")?,
        exclude: strings(&body, "exclude")?,
        sensitive: strings(&body, "sensitive")?,
        start,
    };
    let monitor = state
        .monitors
        .create(&actor, new, mltrail_core::now_millis())
        .await
        .map_err(|e| match e {
            MonitorError::Rule(ConfigError { field, message }) => bad(field, message),
            other => other.into(),
        })?;
    Ok(Json(json!({"monitor": monitor})))
}

#[derive(Deserialize)]
struct ListQuery {
    deployment: Option<String>,
    #[serde(default)]
    include_deleted: bool,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let list =
        monitors::list_monitors(&state.store, q.deployment.as_deref(), q.include_deleted).await?;
    Ok(Json(json!({"monitors": list})))
}

async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = MonitorId::from(id);
    Ok(Json(
        json!({"monitor": monitors::get_monitor(&state.store, &id).await?}),
    ))
}

async fn delete(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = MonitorId::from(id);
    monitors::delete_monitor(&state.store, &actor, &id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<i64>,
}

impl LimitQuery {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=10_000).contains(&n) => Ok(n),
            Some(n) => Err(bad("limit", format!("must be 1..10000, got {n}"))),
        }
    }
}

async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Value>> {
    let id = MonitorId::from(id);
    monitors::get_monitor(&state.store, &id).await?;
    let results = monitors::list_results(&state.store, &id, q.limit()?).await?;
    Ok(Json(json!({"results": results})))
}

async fn monitor_alerts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Value>> {
    let id = MonitorId::from(id);
    monitors::get_monitor(&state.store, &id).await?;
    let alerts = monitors::list_alerts(&state.store, Some(&id), q.limit()?).await?;
    Ok(Json(json!({"alerts": alerts})))
}

async fn all_alerts(
    State(state): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Value>> {
    let alerts = monitors::list_alerts(&state.store, None, q.limit()?).await?;
    Ok(Json(json!({"alerts": alerts})))
}

/// The HTML drift report of one evaluated window.
async fn window_report(
    State(state): State<AppState>,
    Path((id, start)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let start: i64 = start.parse().map_err(|_| {
        bad(
            "window_start",
            format!("`{start}` is not a Unix time in milliseconds"),
        )
    })?;
    let id = MonitorId::from(id);
    let monitor = monitors::get_monitor(&state.store, &id).await?;
    let result = monitors::get_result(&state.store, &id, start).await?;
    let html = state.monitors.window_report(&monitor, &result).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list).post(create))
        .route("/{id}", get(get_one).delete(delete))
        .route("/{id}/results", get(results))
        .route("/{id}/windows/{start}/report", get(window_report))
        .route("/{id}/alerts", get(monitor_alerts))
}

pub fn alert_routes() -> Router<AppState> {
    Router::new().route("/", get(all_alerts))
}
