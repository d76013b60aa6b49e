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
