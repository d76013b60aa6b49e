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
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::{not_expected, text_or_number, TextOrNumber};
use crate::AppState;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}"))
}

/// A duration: `"30m"`, `"1h"`, `"7d"`, or a number of seconds.
#[derive(ToSchema)]
// For the schema (one of the variants); it is read by `req::text_or_number`, below.
#[serde(untagged)]
enum DurationIn {
    Text(String),
    Seconds(f64),
}

impl<'de> Deserialize<'de> for DurationIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a duration such as \"1h\" or a number of seconds";
        match text_or_number(deserializer, EXPECTING)? {
            TextOrNumber::Text(text) => Ok(DurationIn::Text(text)),
            TextOrNumber::Number(n) => n
                .as_f64()
                .map(DurationIn::Seconds)
                .ok_or_else(|| not_expected(&n, EXPECTING)),
        }
    }
}

impl DurationIn {
    /// In milliseconds; `field` names it in a refusal.
    fn millis(&self, field: &str) -> Result<i64, ApiError> {
        match self {
            DurationIn::Text(text) => runner::parse_duration_ms(text).map_err(|e| bad(field, e)),
            DurationIn::Seconds(s) if s.is_finite() && *s >= 0.0 => Ok((s * 1000.0) as i64),
            DurationIn::Seconds(_) => Err(bad(field, "must be a non-negative number of seconds")),
        }
    }
}

/// A business metric monitor's seasonal baseline; what is left out takes its default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SeasonalIn {
    /// The season's length, e.g. `"7d"` (a week when left out or null).
    season: Option<DurationIn>,
    /// How many past seasons make the baseline.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    seasons: Option<usize>,
    /// How many robust spreads away a point is a drop or a spike.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    z: Option<f64>,
    /// How many windows ahead to forecast.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    horizon: Option<usize>,
}

impl SeasonalIn {
    fn settings(self) -> Result<runner::SeasonalSettings, ApiError> {
        let mut settings = runner::SeasonalSettings::default();
        if let Some(season) = &self.season {
            settings.season_ms = season.millis("seasonal.season")?;
        }
        settings.seasons = self.seasons.unwrap_or(settings.seasons);
        settings.z = self.z.unwrap_or(settings.z);
        settings.horizon = self.horizon.unwrap_or(settings.horizon);
        Ok(settings)
    }
}

/// A ranking monitor's settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RankingIn {
    /// The cut-off of precision@k and friends (10 when left out).
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    k: Option<usize>,
    /// How far back a repeated recommendation counts, e.g. `"1d"` (the window's length when
    /// left out or null).
    repeat_lookback: Option<DurationIn>,
}

/// `true` for the ranking defaults (`false` or null: not a ranking monitor), or the settings.
#[derive(ToSchema)]
#[serde(untagged)]
enum RankingChoice {
    Defaults(bool),
    Settings(RankingIn),
}

// By hand rather than `#[serde(untagged)]`, whose refusal would hide the settings' own
// (`ranking.k`, an unknown setting).
impl<'de> Deserialize<'de> for RankingChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(deserializer)? {
            Value::Bool(on) => Ok(RankingChoice::Defaults(on)),
            fields @ Value::Object(_) => RankingIn::deserialize(fields)
                .map(RankingChoice::Settings)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "must be true or an object (k, repeat_lookback)",
            )),
        }
    }
}

impl RankingChoice {
    fn settings(self) -> Result<Option<runner::RankingSettings>, ApiError> {
        let mut settings = runner::RankingSettings::default();
        match self {
            RankingChoice::Defaults(false) => return Ok(None),
            RankingChoice::Defaults(true) => {}
            RankingChoice::Settings(given) => {
                settings.k = given.k.unwrap_or(settings.k);
                settings.repeat_lookback_ms = given
                    .repeat_lookback
                    .map(|d| d.millis("ranking.repeat_lookback"))
                    .transpose()?;
            }
        }
        Ok(Some(settings))
    }
}

/// A monitor to create; its rules are checked as the engine reads them.
#[derive(Deserialize, ToSchema)]
struct MonitorIn {
    /// The deployment watched; required unless `metric` is given.
    deployment: Option<String>,
    /// A business metric watched instead of a deployment.
    metric: Option<String>,
    /// Each window's length.
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
    crate::req::Body(body): crate::req::Body<MonitorIn>,
) -> ApiResult<Json<MonitorRead>> {
    let deployment = match (body.deployment, &body.metric) {
        (Some(d), _) => d,
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(bad(
                "deployment",
                "a deployment name (or a business `metric`) is required",
            ))
        }
    };
    let new = NewMonitor {
        deployment,
        metric: body.metric,
        seasonal: body.seasonal.map(SeasonalIn::settings).transpose()?,
        ranking: match body.ranking {
            Some(choice) => choice.settings()?,
            None => None,
        },
        window_ms: body.window.millis("window")?,
        delay_ms: body.delay.map(|d| d.millis("delay")).transpose()?,
        reference: body.reference,
        drift_share: body.drift_share,
        alerts: body.alerts.unwrap_or_default(),
        webhooks: body.webhooks.unwrap_or_default(),
        exclude: body.exclude.unwrap_or_default(),
        sensitive: body.sensitive.unwrap_or_default(),
        start: body.start,
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
struct MonitorPath {
    /// The monitor's id.
    id: String,
}

#[utoipa::path(get, path = "/{id}", tag = "monitors", params(MonitorPath),
    responses((status = 200, description = "The monitor", body = MonitorRead)))]
async fn get_one(
    State(state): State<AppState>,
    Path(MonitorPath { id }): Path<MonitorPath>,
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
    Path(MonitorPath { id }): Path<MonitorPath>,
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
    Path(MonitorPath { id }): Path<MonitorPath>,
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
    Path(MonitorPath { id }): Path<MonitorPath>,
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

#[cfg(test)]
mod body_tests {
    use super::*;
    use crate::req::decode_body;

    fn refused(body: &str) -> ApiError {
        match decode_body::<MonitorIn>(body.as_bytes()) {
            Ok(_) => panic!("{body} was taken"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_monitor_body_is_read_as_documented() {
        let body: MonitorIn = decode_body(
            br#"{"deployment": "d", "window": 3600, "delay": "5m", "seasonal": {"season": null, "z": 3},
                 "ranking": {"k": 5, "repeat_lookback": "1d"}, "reference": null}"#,
        )
        .expect("a whole body");
        assert_eq!(body.window.millis("window").ok(), Some(3_600_000));
        let seasonal = body
            .seasonal
            .map(SeasonalIn::settings)
            .transpose()
            .ok()
            .flatten();
        assert_eq!(
            seasonal.map(|s| (s.z, s.season_ms)),
            Some((3.0, runner::SeasonalSettings::default().season_ms))
        );
        let ranking = body
            .ranking
            .map(RankingChoice::settings)
            .transpose()
            .ok()
            .flatten()
            .flatten();
        assert_eq!(
            ranking.map(|r| (r.k, r.repeat_lookback_ms)),
            Some((5, Some(86_400_000)))
        );
        assert_eq!(
            refused(r#"{"deployment": "d"}"#).column.as_deref(),
            Some("window")
        );
        let e = refused(r#"{"deployment": "d", "window": true}"#);
        assert!(e.message.contains("a duration such as"), "{}", e.message);
        assert_eq!(
            refused(r#"{"deployment": "d", "window": "1h", "seasonal": {"period": "7d"}}"#)
                .column
                .as_deref(),
            Some("seasonal.period")
        );
        assert_eq!(
            refused(r#"{"deployment": "d", "window": "1h", "ranking": {"k": 5, "x": 1}}"#)
                .column
                .as_deref(),
            Some("ranking.x")
        );
        assert_eq!(
            refused(r#"{"deployment": "d", "window": "1h", "seasonal": {"z": null}}"#)
                .column
                .as_deref(),
            Some("seasonal.z")
        );
        assert_eq!(
            refused(r#"{"deployment": "d", "window": "1h", "ranking": 3}"#)
                .column
                .as_deref(),
            Some("ranking")
        );
        let negative: MonitorIn =
            decode_body(br#"{"deployment": "d", "window": -1}"#).expect("a number");
        assert!(negative.window.millis("window").is_err());
    }
}
