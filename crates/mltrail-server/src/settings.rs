//! `/api/v1/settings/log`: the log filter and format every service follows (`mltrail logging`).
//! A change is an audit event (`settings.set` on `setting:log`); each `mltrail serve` and the
//! server itself put it in force within seconds, without a restart.

use axum::extract::State;
use axum::Json;
use mltrail_store::settings::{self, Setting};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
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

/// A log setting. The handler reads it field by field (what is left out stays as held) and
/// refuses fields it does not know.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The schema of the body `put_log` reads.
struct LogIn {
    /// A tracing filter such as `info,sqlx=warn`.
    #[schema(nullable = false)]
    filter: Option<String>,
    /// `text`, `json` or `ecs`.
    #[schema(nullable = false)]
    format: Option<String>,
    /// An OTLP/HTTP collector (`http://127.0.0.1:4318`); empty or null stops exporting.
    otlp_endpoint: Option<String>,
}

#[utoipa::path(put, path = "/log", tag = "settings", request_body = LogIn,
    responses((status = 200, description = "The setting now in force (within seconds everywhere)", body = LogSetting)))]
async fn put_log(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    crate::req::JsonBody(body): crate::req::JsonBody,
) -> ApiResult<Json<LogSetting>> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid(
            "the body must be a JSON object {\"filter\", \"format\", \"otlp_endpoint\"}",
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "filter" | "format" | "otlp_endpoint"))
    {
        return Err(bad(
            other,
            "is not a log setting (filter, format, otlp_endpoint)",
        ));
    }
    // What is not given stays as the server holds it (or takes the services' default).
    let current = settings::get(&state.store, "log").await?.map(|s| s.value);
    let held = |key: &str| current.as_ref().and_then(|c| c.get(key)).cloned();
    let filter = match fields.get("filter") {
        Some(Value::String(f)) => f.clone(),
        Some(_) => return Err(bad("filter", "must be a string such as \"info,sqlx=warn\"")),
        None => held("filter")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "info,sqlx=warn".into()),
    };
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| bad("filter", format!("`{filter}` is not a tracing filter: {e}")))?;
    let format = match fields.get("format") {
        Some(Value::String(f)) if LOG_FORMATS.contains(&f.as_str()) => f.clone(),
        Some(other) => {
            return Err(bad(
                "format",
                format!("must be one of {}, got {other}", LOG_FORMATS.join(", ")),
            ))
        }
        None => held("format")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "text".into()),
    };
    // An empty string or null stops exporting; not given, it stays as held.
    let otlp_endpoint = match fields.get("otlp_endpoint") {
        Some(Value::Null) => None,
        Some(Value::String(e)) if e.is_empty() => None,
        Some(Value::String(e)) => {
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
            Some(e.clone())
        }
        Some(other) => {
            return Err(bad(
                "otlp_endpoint",
                format!("must be a URL string or null, got {other}"),
            ))
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
