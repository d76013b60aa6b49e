//! `/api/v1/audit`: the trail as JSON — events filtered and paged as the web UI's trail page
//! filters them (`GET /api/v1/audit/events`), and a whole verification (`POST
//! /api/v1/audit/verify`, an admin's: it reads every event and every audited row).

use axum::extract::{RawQuery, State};
use axum::Json;
use mltrail_store::audit::{BrokenLink, LoggedEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::Req;
use crate::AppState;

/// Events a page holds unless `limit` says fewer or more.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(verify))
}

/// The filters of a page of events (read as MLflow's parameters are, by [`Req`]).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read through `Req`; declared for the document.
struct EventsQuery {
    /// An entity (`run:abc`) or a kind (`run`).
    entity: Option<String>,
    /// Who acted.
    actor: Option<String>,
    /// An action or its start (`run.`).
    action: Option<String>,
    /// A time, a date or a duration ago (`6h`).
    since: Option<String>,
    /// As `since`.
    until: Option<String>,
    /// Events before this sequence number (the previous page's `next_before`).
    before: Option<i64>,
    /// 1 to 1000; 100 when left out.
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct Events {
    /// Newest first.
    events: Vec<LoggedEvent>,
    /// The next page's `before`, when this page was full.
    next_before: Option<i64>,
}

/// `?entity=run:abc&actor=alice&action=run.&since=6h&until=…&before=SEQ&limit=100`: events
/// newest first; `next_before` names the next page's `before` when this page was full.
#[utoipa::path(get, path = "/events", tag = "audit", params(EventsQuery),
    responses((status = 200, description = "A page of the trail", body = Events)))]
async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Events>> {
    let req = Req::from_parts(String::new(), query.as_deref(), b"")?;
    let now = mltrail_core::now_millis();
    let instant = |field: &str| -> ApiResult<Option<i64>> {
        match req.opt_str(field)? {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => mltrail_core::time::parse_since(text.trim(), now)
                .map(Some)
                .map_err(|e| ApiError::invalid(format!("`{field}`: {e}"))),
        }
    };
    let limit = match req.opt_i64("limit")? {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, got {n}"
            )))
        }
    };
    let query = mltrail_store::audit::EventQuery {
        entity: req
            .opt_str("entity")?
            .unwrap_or_default()
            .trim()
            .to_string(),
        actor: req.opt_str("actor")?.unwrap_or_default().trim().to_string(),
        action: req
            .opt_str("action")?
            .unwrap_or_default()
            .trim()
            .to_string(),
        since: instant("since")?,
        until: instant("until")?,
        before_seq: req.opt_i64("before")?,
    };
    let events = mltrail_store::audit::search_events(&state.store, &query, limit).await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.event.seq))
        .flatten();
    Ok(Json(Events {
        events,
        next_before,
    }))
}

#[derive(Serialize, ToSchema)]
struct Verified {
    /// Whether the chain and every entity's state match.
    intact: bool,
    events: i64,
    entities_checked: usize,
    /// The first problem found.
    broken: Option<BrokenLink>,
}

/// Recomputes the chain and every entity's state (`mltrail audit verify`'s check).
#[utoipa::path(post, path = "/verify", tag = "audit",
    responses((status = 200, description = "The whole trail checked (admins only when auth is on)", body = Verified)))]
async fn verify(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
) -> ApiResult<Json<Verified>> {
    let report = mltrail_store::audit::verify(&state.store).await?;
    tracing::info!(events = report.events, intact = report.broken.is_none(), by = %actor, "audit trail verified over the API");
    Ok(Json(Verified {
        intact: report.broken.is_none(),
        events: report.events,
        entities_checked: report.entities_checked,
        broken: report.broken,
    }))
}
