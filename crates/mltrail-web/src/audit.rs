//! The audit trail: events filtered by entity, actor, action and time, newest first, each
//! linked to the page of what it changed; and the trail's verification.

use crate::layout::{self, query, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::audit::LoggedEvent;

/// The filters of the trail page, as its URL carries them.
#[derive(Debug, Clone, Default)]
pub struct TrailQuery {
    pub entity: String,
    pub actor: String,
    pub action: String,
    pub since: String,
    pub until: String,
}

/// The link to the trail of one entity (`run:<id>`, `registered_model:<name>`, …).
pub fn trail_href(entity: &str) -> String {
    format!("/ui/audit{}", query([("entity", entity)]))
}

/// The last verification this server ran.
pub struct Verification {
    pub time_ms: i64,
    pub by: String,
    pub events: i64,
    /// `None` when every link and state held; otherwise what broke.
    pub broken: Option<String>,
}

/// What the verify button needs: shown to admins only, with the form's CSRF token.
pub struct VerifyForm<'a> {
    pub csrf: &'a str,
}

/// The page of the entity an event is about, when there is one.
fn entity_href(kind: &str, id: &str) -> Option<String> {
    let run = |id: &str| {
        let run = id.split('/').next().unwrap_or("");
        (run.len() == 32 && run.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| layout::run_href(run))
    };
    match kind {
        "run" => Some(layout::run_href(id)),
        "experiment" => Some(layout::experiment_href(id)),
        "registered_model" => Some(layout::model_href(id)),
        "model_version" => id
            .rsplit_once('/')
            .map(|(name, version)| layout::version_href(name, version)),
        "metrics" | "params" => run(id),
        // `<experiment>/<run>/artifacts/…`: the run's page lists them.
        "artifact" => id.split_once('/').and_then(|(_, rest)| run(rest)),
        "monitor" => Some(crate::monitors::monitor_href(id)),
        "deployment" => id
            .split_once(':')
            .map(|(name, _)| crate::deployments::deployment_href(name)),
        "dataset_version" => id.rsplit_once('/').map(|(name, version)| {
            format!(
                "{}{}",
                crate::datasets::dataset_href(name),
                query([("version", version)])
            )
        }),
        _ => None,
    }
}

pub struct TrailPage<'a> {
    pub events: &'a [LoggedEvent],
    pub query: &'a TrailQuery,
    /// The `before` of the next page (the last event's sequence number), when there may be one.
    pub next_before: Option<i64>,
    pub error: Option<&'a str>,
    pub verification: Option<&'a Verification>,
    pub verify: Option<VerifyForm<'a>>,
}

pub fn trail_page(viewer: &Viewer<'_>, page: &TrailPage<'_>) -> Markup {
    let q = page.query;
    let next = page.next_before.map(|before| {
        let before = before.to_string();
        format!(
            "/ui/audit{}",
            query([
                ("entity", q.entity.as_str()),
                ("actor", q.actor.as_str()),
                ("action", q.action.as_str()),
                ("since", q.since.as_str()),
                ("until", q.until.as_str()),
                ("before", before.as_str()),
            ])
        )
    });
    let body = html! {
        section.verification aria-label="Verification" {
            @match page.verification {
                None => p { span.badge { "not verified" } " since this server started. "
                    "Anyone can verify offline: " code { "mltrail audit verify" } "." },
                Some(v) => p {
                    @match &v.broken {
                        None => span.badge.ok { "✔ verified" },
                        Some(_) => span.badge.broken { "✘ broken" },
                    }
                    " " (v.events) " events checked at " (layout::time(v.time_ms)) " UTC by " (v.by) "."
                    @if let Some(why) = &v.broken { " " span.error { (why) } }
                },
            }
            @if let Some(form) = &page.verify {
                form.inline method="post" action="/ui/audit/verify" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    button type="submit" { "Verify the trail now" }
                    span.muted { "Recomputes every link of the chain and every entity's state." }
                }
            }
        }
        form.inline method="get" action="/ui/audit" role="search" {
            label for="entity" { "Entity" }
            input type="text" id="entity" name="entity" value=(q.entity) placeholder="run:<id> or registered_model";
            label for="actor" { "Actor" }
            input type="text" id="actor" name="actor" value=(q.actor) placeholder="alice or token:ci";
            label for="action" { "Action" }
            input type="text" id="action" name="action" value=(q.action) placeholder="registered_model.set_alias or run.";
            label for="since" { "Since" }
            input type="text" id="since" name="since" value=(q.since) placeholder="6h or 2026-12-01";
            label for="until" { "Until" }
            input type="text" id="until" name="until" value=(q.until) placeholder="2026-12-02T10:00:00Z";
            button type="submit" { "Filter" }
        }
        @if let Some(error) = page.error { p.error role="alert" { (error) } }
        @if page.events.is_empty() { p.empty { "No events match." } } @else {
            table.wide {
                caption { (page.events.len()) " events, newest first" }
                thead { tr { th.num scope="col" { "#" } th scope="col" { "Time (UTC)" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Entity" } th scope="col" { "State digest" } } }
                tbody { @for e in page.events {
                    @let ev = &e.event;
                    tr {
                        td.num { (ev.seq) }
                        td { (layout::time(ev.time)) }
                        td { a href={ "/ui/audit" (query([("actor", ev.actor.as_str())])) } { (ev.actor) } }
                        td { code { (ev.action) } }
                        td {
                            span.muted { (ev.entity_type) " " }
                            @match entity_href(&ev.entity_type, &ev.entity_id) {
                                Some(href) => a href=(href) { (ev.entity_id) },
                                None => (ev.entity_id),
                            }
                            " " a.muted href=(trail_href(&format!("{}:{}", ev.entity_type, ev.entity_id))) title="Every event of this entity" { "(trail)" }
                        }
                        td { code.muted title=(ev.state_digest.as_deref().unwrap_or("")) { (ev.state_digest.as_deref().map(|d| layout::short(d, 12)).unwrap_or("")) } }
                    }
                } }
            }
        }
        @if let Some(next) = next { nav.pager aria-label="Pages" { a href=(next) rel="next" { "Older events" } } }
    };
    layout::page(Section::Audit, viewer, &[], "Audit trail", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_link_to_what_they_changed() {
        let run = "0123456789abcdef0123456789abcdef";
        assert_eq!(entity_href("run", run), Some(format!("/ui/runs/{run}")));
        assert_eq!(
            entity_href("metrics", &format!("{run}/{run}")),
            Some(format!("/ui/runs/{run}"))
        );
        assert_eq!(
            entity_href("artifact", &format!("1/{run}/artifacts/model.pkl")),
            Some(format!("/ui/runs/{run}"))
        );
        assert_eq!(
            entity_href("model_version", "team/credit/3"),
            Some("/ui/models/team%2Fcredit/versions/3".into())
        );
        assert_eq!(entity_href("artifact", "predictions/x.parquet"), None);
    }
}
