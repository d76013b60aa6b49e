//! Deployments as the audit trail knows them: what each serves and since when, and one
//! deployment's history of deploys, swaps (its alias moving) and stops, drawn as the version it
//! served over time.

use crate::chart::{self, Series};
use crate::layout::{self, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::audit::LoggedEvent;
use mltrail_store::deployments::DeploymentState;

pub fn deployment_href(name: &str) -> String {
    format!("/ui/deployments/{}", layout::segment(name))
}

/// The log setting every service follows, as a line above the deployments.
fn log_setting(setting: Option<&mltrail_store::settings::Setting>) -> Markup {
    html! {
        p.muted {
            "Logging: "
            @match setting {
                Some(s) => {
                    "every service logs " code { (s.value["format"].as_str().unwrap_or("")) }
                    " with filter " code { (s.value["filter"].as_str().unwrap_or("")) }
                    ", set " (layout::time(s.updated_time)) " by " (s.actor) " ("
                    a href=(crate::audit::trail_href("setting:log")) { "history" } ")"
                },
                None => { "each service logs as its own " code { "[log]" } " says (" code { "mltrail logging set --format ecs" } " changes them all)" },
            }
        }
    }
}

pub fn deployments_page(
    viewer: &Viewer<'_>,
    deployments: &[&DeploymentState],
    logging: Option<&mltrail_store::settings::Setting>,
) -> Markup {
    let body = html! {
        (log_setting(logging))
        @if deployments.is_empty() {
            p.empty { "No deployment has reported yet: " code { "mltrail serve --model NAME@production --deployment NAME-prod" } " reports each start, swap and stop here." }
        } @else {
            table.wide {
                caption { (deployments.len()) " deployments" }
                thead { tr { th scope="col" { "Deployment" } th scope="col" { "Status" } th scope="col" { "Serving" } th scope="col" { "Since" } th.num scope="col" { "Swaps" } th scope="col" { "Reported by" } } }
                tbody { @for d in deployments { tr {
                    td { a href=(deployment_href(&d.name)) { (d.name) } }
                    td { (d.status) }
                    td { a href=(layout::version_href(&d.model, &d.version)) { (d.model) " v" (d.version) } }
                    td { (layout::time(d.since)) }
                    td.num { (d.swaps) }
                    td { (d.actor) }
                } } }
            }
        }
    };
    layout::page(Section::Deployments, viewer, &[], "Deployments", body)
}

/// `events` are the deployment's, oldest first (entity ids `<deployment>:<model>/<version>`).
pub fn deployment_page(
    viewer: &Viewer<'_>,
    name: &str,
    events: &[LoggedEvent],
    live: Option<&crate::live::LiveDeployment>,
    experiment: Option<&crate::experiments::ExperimentView>,
) -> Markup {
    let served = |e: &LoggedEvent| -> Option<(String, String)> {
        let (_, rest) = e.event.entity_id.split_once(':')?;
        let (model, version) = rest.rsplit_once('/')?;
        Some((model.to_string(), version.to_string()))
    };
    // The version served over time: a step per event (a stop drops to nothing).
    let mut points = Vec::new();
    let mut previous: Option<f64> = None;
    for e in events {
        let t = e.event.time as f64;
        let now = match e.event.action.as_str() {
            "deployment.stop" => None,
            _ => served(e).and_then(|(_, v)| v.parse::<f64>().ok()),
        };
        if let Some(p) = previous {
            points.push((t, p));
        }
        if let Some(v) = now {
            points.push((t, v));
        }
        previous = now;
    }
    if let Some(p) = previous {
        points.push((mltrail_core::now_millis() as f64, p));
    }
    let body = html! {
        h2 { "Live" }
        div data-refresh="10" { (crate::live::panels(live)) }
        h2 { "Routing experiment" }
        (crate::experiments::panel(experiment))
        h2 { "Version served over time" }
        @if points.len() < 2 { p.empty { "One report so far." } } @else {
            (chart::time_chart(&format!("Model version {name} served over time"), "version", &[Series { label: "version".into(), points }], &[]))
        }
        h2 { "History (" (events.len()) " reports)" }
        table.wide {
            thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "What" } th scope="col" { "Model version" } th scope="col" { "Model digest" } th scope="col" { "By" } } }
            tbody { @for e in events.iter().rev() { tr {
                td { (layout::time(e.event.time)) }
                td { code { (e.event.action.trim_start_matches("deployment.")) } }
                td { @if let Some((model, version)) = served(e) { a href=(layout::version_href(&model, &version)) { (model) " v" (version) } } }
                td { code.muted { (e.event.state_digest.as_deref().map(|d| layout::short(d, 16)).unwrap_or("")) } }
                td { (e.event.actor) }
            } } }
        }
        p.muted { "Stored predictions are looked up by id on the " a href="/ui/predictions" { "Predictions" } " page; each monitor of this deployment is on the " a href="/ui/monitors" { "Monitors" } " page." }
    };
    layout::page(
        Section::Deployments,
        viewer,
        &[("Deployments".into(), "/ui/deployments".into())],
        name,
        body,
    )
}
