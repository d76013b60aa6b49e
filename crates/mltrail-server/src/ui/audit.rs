//! The audit trail: filtered events, and the admin's verify button.

use super::*;

/// Events per page of the trail.
pub(super) const EVENTS_PER_PAGE: i64 = 100;

pub(super) async fn audit_trail(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(&raw);
    let query = mltrail_web::audit::TrailQuery {
        entity: first(&q, "entity").trim().to_string(),
        actor: first(&q, "actor").trim().to_string(),
        action: first(&q, "action").trim().to_string(),
        since: first(&q, "since").trim().to_string(),
        until: first(&q, "until").trim().to_string(),
    };
    let now = mltrail_core::now_millis();
    let instant = |field: &str, text: &str| -> Result<Option<i64>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        mltrail_core::time::parse_since(text, now)
            .map(Some)
            .map_err(|e| format!("`{field}`: {e}"))
    };
    let before = first(&q, "before");
    let (since, until, before_seq) = match (
        instant("since", &query.since),
        instant("until", &query.until),
        if before.is_empty() {
            Ok(None)
        } else {
            before
                .parse::<i64>()
                .map(Some)
                .map_err(|_| "`before`: not a sequence number".to_string())
        },
    ) {
        (Ok(s), Ok(u), Ok(b)) => (s, u, b),
        (s, u, b) => {
            let error = [s.err(), u.err(), b.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            return html(mltrail_web::audit::trail_page(
                &ctx.viewer(),
                &mltrail_web::audit::TrailPage {
                    events: &[],
                    query: &query,
                    next_before: None,
                    error: Some(&error),
                    verification: None,
                    verify: None,
                },
            ));
        }
    };
    let events = mltrail_store::audit::search_events(
        &state.store,
        &mltrail_store::audit::EventQuery {
            entity: query.entity.clone(),
            actor: query.actor.clone(),
            action: query.action.clone(),
            since,
            until,
            before_seq,
        },
        EVENTS_PER_PAGE,
    )
    .await
    .map_err(|e| ctx.fail(Section::Audit, e))?;
    let next_before = (events.len() as i64 == EVENTS_PER_PAGE)
        .then(|| events.last().map(|e| e.event.seq))
        .flatten();
    let admin = ctx.admin;
    let csrf = ctx.csrf.clone();
    let verification = state
        .ui
        .verification
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    html(mltrail_web::audit::trail_page(
        &ctx.viewer(),
        &mltrail_web::audit::TrailPage {
            events: &events,
            query: &query,
            next_before,
            error: None,
            verification: verification.as_ref(),
            verify: admin.then_some(mltrail_web::audit::VerifyForm { csrf: &csrf }),
        },
    ))
}

/// The verify button (admins; the guard asked for it): recomputes the chain and every entity's
/// state, keeps the result for the badge, and returns to the trail.
pub(super) async fn verify_trail(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, Shown> {
    let who = ctx.who();
    let token = first(&form(&body), "csrf");
    if !same_origin(&headers) || !state.ui.csrf_holds(&who, &token) {
        return Err(Shown {
            section: Section::Audit,
            viewer: ctx.viewer.clone(),
            csrf: ctx.csrf.clone(),
            problem: Problem::Forbidden(
                "This form did not come from this server's page (its CSRF token is missing or stale): reload the audit page and try again.".into(),
            ),
        });
    }
    let report = mltrail_store::audit::verify(&state.store)
        .await
        .map_err(|e| ctx.fail(Section::Audit, e))?;
    let verification = mltrail_web::audit::Verification {
        time_ms: mltrail_core::now_millis(),
        by: who,
        events: report.events,
        broken: report.broken.map(|b| format!("{b:?}")),
    };
    tracing::info!(events = verification.events, intact = verification.broken.is_none(), by = %verification.by, "audit trail verified from the web UI");
    *state
        .ui
        .verification
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(verification);
    Ok(Redirect::to("/ui/audit").into_response())
}
