//! Deployments: what each serves, its history, and the live panels its replicas report to.

use super::*;

pub(super) async fn deployments_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let all = mltrail_store::deployments::current(&state.store)
        .await
        .map_err(|e| ctx.fail(Section::Deployments, e))?;
    let listed: Vec<&mltrail_store::deployments::DeploymentState> = all.values().collect();
    let logging = mltrail_store::settings::get(&state.store, "log")
        .await
        .map_err(|e| ctx.fail(Section::Deployments, e))?;
    html(mltrail_web::deployments::deployments_page(
        &ctx.viewer(),
        &listed,
        logging.as_ref(),
    ))
}

/// Reports a deployment page lists at most (the newest).
pub(super) const DEPLOYMENT_EVENTS: i64 = 2_000;

pub(super) async fn deployment(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PageResult {
    // A deployment's events are `deployment:<name>:<model>/<version>`: its own are those whose
    // id starts with its name and a colon (a name has no colon of its own).
    let mut events = mltrail_store::audit::search_events(
        &state.store,
        &mltrail_store::audit::EventQuery {
            entity: format!("{}:{name}:*", mltrail_store::deployments::DEPLOYMENT_KIND),
            ..Default::default()
        },
        DEPLOYMENT_EVENTS,
    )
    .await
    .map_err(|e| ctx.fail(Section::Deployments, e))?;
    if events.is_empty() {
        return Err(ctx.fail(
            Section::Deployments,
            Problem::NotFound(format!("No deployment {name} has reported.")),
        ));
    }
    events.reverse();
    // The experiment panel is one part of the page: a policy that cannot be read is logged
    // and the panel left out, not the page.
    let experiment = match crate::routing::experiment_view(&state, &name).await {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!(deployment = %name, error = %e.message, "cannot show the deployment's experiment");
            None
        }
    };
    let live = state.ui.live.lock().unwrap_or_else(|p| p.into_inner());
    html(mltrail_web::deployments::deployment_page(
        &ctx.viewer(),
        &name,
        &events,
        live.get(&name),
        experiment.as_ref(),
    ))
}
