//! `/api/v1/settings/log`: the log filter and format every service follows (`mltrail logging`).
//! A change is an audit event (`settings.set` on `setting:log`); each `mltrail serve` and the
//! server itself put it in force within seconds, without a restart.

use axum::extract::State;
use axum::Json;
use mltrail_store::settings::{self, Setting};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::Body;
use crate::AppState;

/// The formats a service can write its log lines in.
pub const LOG_FORMATS: [&str; 3] = ["text", "json", "ecs"];

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}")).at_column(Some(field), None)
}

#[derive(Serialize, ToSchema)]
struct LogSetting {
    /// The setting in force (`value`: `{"filter", "format", "otlp_endpoint"}`); null when the
    /// services follow their own flags.
    log: Option<Setting>,
}

#[utoipa::path(get, path = "/log", tag = "settings",
    responses((status = 200, description = "The log setting every service follows", body = LogSetting)))]
async fn get_log(State(state): State<AppState>) -> ApiResult<Json<LogSetting>> {
    let log = settings::get(&state.store, "log").await?;
    Ok(Json(LogSetting { log }))
}

/// A log setting; what is left out stays as the server holds it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LogIn {
    /// A tracing filter such as `info,sqlx=warn`.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    filter: Option<String>,
    /// `text`, `json` or `ecs`.
    #[serde(default, deserialize_with = "crate::req::non_null")]
    #[schema(nullable = false)]
    format: Option<String>,
    /// An OTLP/HTTP collector (`http://127.0.0.1:4318`); empty or null stops exporting.
    #[serde(default, deserialize_with = "crate::req::present")]
    #[schema(value_type = Option<String>)]
    otlp_endpoint: Option<Option<String>>,
}

#[utoipa::path(put, path = "/log", tag = "settings", request_body = LogIn,
    responses((status = 200, description = "The setting now in force (within seconds everywhere)", body = LogSetting)))]
async fn put_log(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<LogIn>,
) -> ApiResult<Json<LogSetting>> {
    // What is not given stays as the server holds it (or takes the services' default).
    let current = settings::get(&state.store, "log").await?.map(|s| s.value);
    let held = |key: &str| current.as_ref().and_then(|c| c.get(key)).cloned();
    let filter = match body.filter {
        Some(f) => f,
        None => held("filter")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "info,sqlx=warn".into()),
    };
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| bad("filter", format!("`{filter}` is not a tracing filter: {e}")))?;
    let format = match body.format {
        Some(f) if LOG_FORMATS.contains(&f.as_str()) => f,
        Some(other) => {
            return Err(bad(
                "format",
                format!("must be one of {}, got `{other}`", LOG_FORMATS.join(", ")),
            ))
        }
        None => held("format")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "text".into()),
    };
    // An empty string or null stops exporting; not given, it stays as held.
    let otlp_endpoint = match body.otlp_endpoint {
        Some(None) => None,
        Some(Some(e)) if e.is_empty() => None,
        Some(Some(e)) => {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| {
                r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace)
            }) {
                return Err(bad(
                    "otlp_endpoint",
                    format!("`{e}` is not an http:// or https:// URL (an OTLP/HTTP collector, e.g. http://127.0.0.1:4318)"),
                ));
            }
            Some(e)
        }
        None => held("otlp_endpoint").and_then(|v| v.as_str().map(str::to_string)),
    };
    let mut value = json!({"filter": filter, "format": format});
    if let Some(endpoint) = otlp_endpoint {
        value["otlp_endpoint"] = endpoint.into();
    }
    let setting = settings::set(&state.store, &actor, "log", value).await?;
    Ok(Json(LogSetting { log: Some(setting) }))
}

#[utoipa::path(delete, path = "/log", tag = "settings",
    responses((status = 200, description = "The services go back to their own flags", body = crate::openapi::Done)))]
async fn delete_log(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
) -> ApiResult<Json<crate::openapi::Done>> {
    settings::delete(&state.store, &actor, "log").await?;
    Ok(Json(crate::openapi::Done {}))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_log, put_log, delete_log))
}
