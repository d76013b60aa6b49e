//! Monitors: the list, and one monitor's windows and alerts.

use super::*;

pub(super) async fn monitors_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let all = monitors::list_monitors(&state.store, None, false)
        .await
        .map_err(fail)?;
    let mut latest = Vec::with_capacity(all.len());
    let mut fired = Vec::with_capacity(all.len());
    for m in &all {
        latest.push(
            monitors::list_results(&state.store, &m.id, 1)
                .await
                .map_err(fail)?
                .pop(),
        );
        fired.push(
            monitors::count_alerts(&state.store, &m.id)
                .await
                .map_err(fail)?,
        );
    }
    let rows: Vec<mltrail_web::monitors::MonitorRow<'_>> = all
        .iter()
        .zip(&latest)
        .zip(&fired)
        .map(
            |((monitor, latest), alerts)| mltrail_web::monitors::MonitorRow {
                monitor,
                latest: latest.as_ref(),
                alerts: *alerts,
            },
        )
        .collect();
    html(mltrail_web::monitors::monitors_page(&ctx.viewer(), &rows))
}

/// Windows a monitor's page draws at most (the newest).
pub(super) const MONITOR_WINDOWS: i64 = 1_000;

pub(super) async fn monitor(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let id = MonitorId::from(id);
    let monitor = monitors::get_monitor(&state.store, &id)
        .await
        .map_err(fail)?;
    let mut results = monitors::list_results(&state.store, &id, MONITOR_WINDOWS)
        .await
        .map_err(fail)?;
    results.reverse();
    let alerts = monitors::list_alerts(&state.store, Some(&id), 500)
        .await
        .map_err(fail)?;
    html(mltrail_web::monitors::monitor_page(
        &ctx.viewer(),
        &monitor,
        &results,
        &alerts,
    ))
}

/// Windows of each monitor a metric's page reads at most (the newest).
const METRIC_WINDOWS: i64 = 2_000;

pub(super) async fn metrics_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let metrics = business::list_metrics(&state.store).await.map_err(fail)?;
    let annotations = business::list_annotations(&state.store, None, i64::MIN, i64::MAX, false)
        .await
        .map_err(fail)?;
    html(mltrail_web::business::metrics_page(
        &ctx.viewer(),
        &metrics,
        &annotations,
    ))
}

pub(super) async fn metric(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let summary = business::metric_summary(&state.store, &name)
        .await
        .map_err(fail)?;
    let points = business::points(
        &state.store,
        &name,
        summary.first_time,
        summary.last_time.saturating_add(1),
    )
    .await
    .map_err(fail)?;
    let annotations =
        business::list_annotations(&state.store, Some(&name), i64::MIN, i64::MAX, false)
            .await
            .map_err(fail)?;
    let mut watching = Vec::new();
    for m in monitors::list_monitors(&state.store, None, false)
        .await
        .map_err(fail)?
    {
        if m.spec.metric.as_deref() == Some(name.as_str()) {
            let mut results = monitors::list_results(&state.store, &m.id, METRIC_WINDOWS)
                .await
                .map_err(fail)?;
            results.reverse();
            watching.push((m, results));
        }
    }
    html(mltrail_web::business::metric_page(
        &ctx.viewer(),
        &summary,
        &points,
        &annotations,
        &watching,
    ))
}

/// The server's own health: requests by route, the writer's group commits, the database's size.
pub(super) async fn server_health(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let text = crate::metrics::own_text(&state).await;
    let imports = mltrail_store::import::sessions::list(&state.store, 20)
        .await
        .map_err(|e| ctx.fail(Section::Server, e))?;
    html(mltrail_web::server::server_page(
        &ctx.viewer(),
        &mltrail_web::server::ServerHealth::parse(&text),
        &imports,
    ))
}

/// The native API's reference, from the document `/api/v1/openapi.json` serves (rendered once:
/// it is fixed when the binary is built).
pub(super) async fn api_reference(ctx: Ctx) -> PageResult {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        serde_json::to_value(crate::openapi_document()).unwrap_or(serde_json::Value::Null)
    });
    html(mltrail_web::api::api_page(&ctx.viewer(), document))
}
