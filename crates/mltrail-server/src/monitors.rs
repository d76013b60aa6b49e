//! `/api/v1/monitors` (create, list, read, delete; each monitor's window results and alerts) and
//! `/api/v1/alerts`. The rules of a monitor are mltrail-monitor's (`Engine::create`); these
//! handlers decode and encode.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use mltrail_core::MonitorId;
use mltrail_monitor::runner::{self, ConfigError, MonitorError, NewMonitor};
use mltrail_store::monitors::{self, Alert, Monitor, MonitorResult};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

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

/// A duration: `"30m"`, `"1h"`, `"7d"`, or a number of seconds.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Part of `MonitorIn`'s schema.
enum DurationIn {
    Text(String),
    Seconds(f64),
}

/// A business metric monitor's seasonal baseline; what is left out takes its default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Part of `MonitorIn`'s schema.
struct SeasonalIn {
    /// The season's length, e.g. `"7d"`.
    #[schema(nullable = false)]
    season: Option<DurationIn>,
    /// How many past seasons make the baseline.
    #[schema(nullable = false)]
    seasons: Option<u64>,
    /// How many standard deviations away is an anomaly.
    #[schema(nullable = false)]
    z: Option<f64>,
    /// How many windows ahead to forecast.
    #[schema(nullable = false)]
    horizon: Option<u64>,
}

/// A ranking monitor's settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Part of `MonitorIn`'s schema.
struct RankingIn {
    /// The cut-off of precision@k and friends.
    #[schema(nullable = false)]
    k: Option<u64>,
    /// How far back a repeated recommendation counts, e.g. `"1d"`.
    #[schema(nullable = false)]
    repeat_lookback: Option<DurationIn>,
}

/// `true` for the ranking defaults, or the settings.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Part of `MonitorIn`'s schema.
enum RankingChoice {
    Defaults(bool),
    Settings(RankingIn),
}

/// A monitor to create. The handler reads it field by field and names each wrong one
/// (`seasonal.z`, `ranking.k`); the monitor's rules are checked as the engine reads them.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // The schema of the body `create` reads.
struct MonitorIn {
    /// The deployment watched; required unless `metric` is given.
    deployment: Option<String>,
    /// A business metric watched instead of a deployment.
    metric: Option<String>,
    /// Each window's length (required).
    window: DurationIn,
    /// How long after a window ends it is evaluated (labels arrive late).
    delay: Option<DurationIn>,
    /// `training` (the served version's training data, the default) or a dataset version
    /// `NAME@VERSION`.
    reference: Option<String>,
    /// The share of drifted columns that counts as dataset drift.
    drift_share: Option<f64>,
    /// Alert rules, e.g. `drift_share >= 0.3 for 2`.
    alerts: Option<Vec<String>>,
    /// Webhook URLs alerts are posted to.
    webhooks: Option<Vec<String>>,
    /// Columns left out of drift.
    exclude: Option<Vec<String>>,
    /// Sensitive columns whose groups are compared (fairness).
    sensitive: Option<Vec<String>>,
    /// The first window's start, in Unix milliseconds (a past time); now when left out.
    start: Option<i64>,
    seasonal: Option<SeasonalIn>,
    ranking: Option<RankingChoice>,
}

#[derive(Serialize, ToSchema)]
struct MonitorRead {
    monitor: Monitor,
}

#[utoipa::path(post, path = "/", tag = "monitors", request_body = MonitorIn,
    responses((status = 200, description = "The monitor created", body = MonitorRead)))]
async fn create(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<MonitorRead>> {
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
        reference: match body.get("reference") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) => Some(r.clone()),
            Some(_) => {
                return Err(bad(
                    "reference",
                    "must be `training` or a dataset version NAME@VERSION",
                ))
            }
        },
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
    Ok(Json(MonitorRead { monitor }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this deployment's monitors.
    deployment: Option<String>,
    /// Deleted monitors too.
    #[serde(default)]
    include_deleted: bool,
}

#[derive(Serialize, ToSchema)]
struct Monitors {
    monitors: Vec<Monitor>,
}

#[utoipa::path(get, path = "/", tag = "monitors", params(ListQuery),
    responses((status = 200, description = "The monitors", body = Monitors)))]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Monitors>> {
    let monitors =
        monitors::list_monitors(&state.store, q.deployment.as_deref(), q.include_deleted).await?;
    Ok(Json(Monitors { monitors }))
}

/// A monitor.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read through `Path<String>`; declared for the document.
struct MonitorPath {
    /// The monitor's id.
    id: String,
}

#[utoipa::path(get, path = "/{id}", tag = "monitors", params(MonitorPath),
    responses((status = 200, description = "The monitor", body = MonitorRead)))]
async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MonitorRead>> {
    let id = MonitorId::from(id);
    Ok(Json(MonitorRead {
        monitor: monitors::get_monitor(&state.store, &id).await?,
    }))
}

#[utoipa::path(delete, path = "/{id}", tag = "monitors", params(MonitorPath),
    responses((status = 200, description = "The monitor is deleted (its results and alerts stay)", body = crate::openapi::Done)))]
async fn delete(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::openapi::Done>> {
    let id = MonitorId::from(id);
    monitors::delete_monitor(&state.store, &actor, &id).await?;
    Ok(Json(crate::openapi::Done {}))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// 1 to 10000; 100 when left out.
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

#[derive(Serialize, ToSchema)]
struct Results {
    /// Newest window first.
    results: Vec<MonitorResult>,
}

#[utoipa::path(get, path = "/{id}/results", tag = "monitors", params(MonitorPath, LimitQuery),
    responses((status = 200, description = "The monitor's evaluated windows", body = Results)))]
async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Results>> {
    let id = MonitorId::from(id);
    monitors::get_monitor(&state.store, &id).await?;
    let results = monitors::list_results(&state.store, &id, q.limit()?).await?;
    Ok(Json(Results { results }))
}

#[derive(Serialize, ToSchema)]
struct Alerts {
    /// Newest first.
    alerts: Vec<Alert>,
}

#[utoipa::path(get, path = "/{id}/alerts", tag = "monitors", params(MonitorPath, LimitQuery),
    responses((status = 200, description = "The alerts the monitor's rules sent", body = Alerts)))]
async fn monitor_alerts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Alerts>> {
    let id = MonitorId::from(id);
    monitors::get_monitor(&state.store, &id).await?;
    let alerts = monitors::list_alerts(&state.store, Some(&id), q.limit()?).await?;
    Ok(Json(Alerts { alerts }))
}

#[utoipa::path(get, path = "/", tag = "alerts", params(LimitQuery),
    responses((status = 200, description = "Every monitor's alerts", body = Alerts)))]
async fn all_alerts(
    State(state): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Alerts>> {
    let alerts = monitors::list_alerts(&state.store, None, q.limit()?).await?;
    Ok(Json(Alerts { alerts }))
}

/// The HTML drift report of one evaluated window.
#[utoipa::path(get, path = "/{id}/windows/{start}/report", tag = "monitors",
    params(("id" = String, Path, description = "The monitor's id"),
           ("start" = i64, Path, description = "The window's start, Unix milliseconds")),
    responses((status = 200, description = "The window's drift report", content_type = "text/html", body = String)))]
async fn window_report(
    State(state): State<AppState>,
    Path((id, start)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let start: i64 = start.parse().map_err(|_| {
        bad(
            "start",
            format!("`{start}` is not a Unix time in milliseconds"),
        )
    })?;
    let id = MonitorId::from(id);
    let monitor = monitors::get_monitor(&state.store, &id).await?;
    let result = monitors::get_result(&state.store, &id, start).await?;
    let html = state.monitors.window_report(&monitor, &result).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, delete))
        .routes(routes!(results))
        .routes(routes!(window_report))
        .routes(routes!(monitor_alerts))
}

pub fn alert_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(all_alerts))
}
