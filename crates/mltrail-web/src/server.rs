//! The tracking server's own health, from its `/metrics` text: requests and latency by route
//! (cumulative since the server started), the writer's group commits, its queue, and the
//! database's size on disk.

use mltrail_store::import::sessions::ImportSession;
use std::collections::BTreeMap;

use maud::{html, Markup};

use crate::chart;
use crate::layout::{self, Section, Viewer};
use crate::live::{label, quantile};

/// One route and method: requests answered since start, by outcome, and latency.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteStat {
    pub method: String,
    pub route: String,
    pub requests: f64,
    /// Answers 400–499 (refused: bad input, unknown ids, missing rights).
    pub refused: f64,
    /// Answers 500 and above.
    pub failed: f64,
    pub seconds_sum: f64,
    /// Cumulative latency buckets (upper bound, count), summed over statuses.
    pub buckets: Vec<(f64, f64)>,
}

impl RouteStat {
    pub fn mean(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.seconds_sum / self.requests)
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.buckets, q)
    }
}

/// The writer's group commits since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    pub groups: f64,
    pub writes: f64,
    pub failed: f64,
    pub seconds_sum: f64,
    /// Cumulative (upper bound, count) of writes per group.
    pub size_buckets: Vec<(f64, f64)>,
    /// Cumulative (upper bound, count) of a group's seconds.
    pub seconds_buckets: Vec<(f64, f64)>,
}

/// What the page shows, read from the server's `/metrics` text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerHealth {
    pub routes: Vec<RouteStat>,
    pub groups: Groups,
    pub queue_depth: Option<f64>,
    pub database_bytes: Option<f64>,
    pub wal_bytes: Option<f64>,
}

fn bound(labels: &str) -> Option<f64> {
    match label(labels, "le").as_deref() {
        Some("+Inf") => Some(f64::INFINITY),
        Some(text) => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        None => None,
    }
}

fn add_bucket(buckets: &mut Vec<(f64, f64)>, le: f64, value: f64) {
    match buckets
        .iter_mut()
        .find(|(b, _)| b.to_bits() == le.to_bits())
    {
        Some((_, count)) => *count += value,
        None => buckets.push((le, value)),
    }
}

impl ServerHealth {
    /// Reads the series this page shows; other lines are ignored.
    pub fn parse(text: &str) -> ServerHealth {
        let mut health = ServerHealth::default();
        let mut routes: BTreeMap<(String, String), RouteStat> = BTreeMap::new();
        for (name, labels, value) in crate::live::samples(text) {
            if let Some(part) = name.strip_prefix("mltrail_http_request_duration_seconds_") {
                let key = (
                    label(labels, "route").unwrap_or_default(),
                    label(labels, "method").unwrap_or_default(),
                );
                let stat = routes.entry(key.clone()).or_insert_with(|| RouteStat {
                    route: key.0.clone(),
                    method: key.1.clone(),
                    ..RouteStat::default()
                });
                match part {
                    "count" => {
                        stat.requests += value;
                        let status = label(labels, "status")
                            .and_then(|s| s.parse::<u16>().ok())
                            .unwrap_or(0);
                        if (400..500).contains(&status) {
                            stat.refused += value;
                        } else if status >= 500 {
                            stat.failed += value;
                        }
                    }
                    "sum" => stat.seconds_sum += value,
                    "bucket" => {
                        if let Some(le) = bound(labels) {
                            add_bucket(&mut stat.buckets, le, value);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let g = &mut health.groups;
            match name {
                "mltrail_store_write_group_size_count" => g.groups = value,
                "mltrail_store_write_group_size_sum" => g.writes = value,
                "mltrail_store_write_group_size_bucket" => {
                    if let Some(le) = bound(labels) {
                        add_bucket(&mut g.size_buckets, le, value);
                    }
                }
                "mltrail_store_write_group_seconds_sum" => g.seconds_sum = value,
                "mltrail_store_write_group_seconds_bucket" => {
                    if let Some(le) = bound(labels) {
                        add_bucket(&mut g.seconds_buckets, le, value);
                    }
                }
                "mltrail_store_write_groups_failed_total" => g.failed = value,
                "mltrail_store_write_queue_depth" => health.queue_depth = Some(value),
                "mltrail_store_database_bytes" => health.database_bytes = Some(value),
                "mltrail_store_wal_bytes" => health.wal_bytes = Some(value),
                _ => {}
            }
        }
        for stat in routes.values_mut() {
            stat.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        health
            .groups
            .size_buckets
            .sort_by(|a, b| a.0.total_cmp(&b.0));
        health
            .groups
            .seconds_buckets
            .sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut routes: Vec<RouteStat> = routes.into_values().collect();
        routes.sort_by(|a, b| b.requests.total_cmp(&a.requests));
        health.routes = routes;
        health
    }
}

fn bytes(v: Option<f64>) -> String {
    // Sizes come from gauges: whole, finite and not negative (`live::samples`).
    v.map_or_else(|| "—".into(), |v| mltrail_core::units::bytes_text(v as u64))
}

fn millis(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 0.001 => format!("{:.0} µs", s * 1e6),
        Some(s) => format!("{:.2} ms", s * 1e3),
        None => "—".into(),
    }
}

/// How many groups fell in each size bucket (the buckets are cumulative).
fn per_bucket(buckets: &[(f64, f64)]) -> (Vec<String>, Vec<u64>) {
    let mut below = 0.0;
    let mut labels = Vec::new();
    let mut counts = Vec::new();
    for &(le, count) in buckets {
        labels.push(if le.is_infinite() {
            "more".to_string()
        } else {
            format!("≤ {le}")
        });
        counts.push((count - below).max(0.0) as u64);
        below = count;
    }
    (labels, counts)
}

/// The page: the store first (what every write waits for), then the routes by requests.
pub fn server_page(
    viewer: &Viewer<'_>,
    health: &ServerHealth,
    imports: &[ImportSession],
) -> Markup {
    let g = &health.groups;
    let (size_labels, size_counts) = per_bucket(&g.size_buckets);
    let body = html! {
        p { "This server's own numbers since it started, from its " a href="/metrics" { "/metrics" } " (docs/monitoring.md, “The tracking server itself”); Prometheus scraping that endpoint keeps their history." }
        p { "Its native API, operation by operation: " a href="/ui/api" { "Native API" } " (from " a href="/api/v1/openapi.json" { "/api/v1/openapi.json" } ")." }
        h2 { "Store" }
        table {
            tbody {
                tr { th scope="row" { "Database on disk" } td.num { (bytes(health.database_bytes)) } }
                tr { th scope="row" { "Write-ahead log" } td.num { (bytes(health.wal_bytes)) } }
                tr { th scope="row" { "Writes queued now" } td.num { @match health.queue_depth { Some(d) => (d), None => "—" } } }
                tr { th scope="row" { "Write groups committed" } td.num { (g.groups) } }
                tr { th scope="row" { "Writes in them" } td.num { (g.writes) } }
                tr { th scope="row" { "Writes per group (mean)" } td.num { @if g.groups > 0.0 { (format!("{:.1}", g.writes / g.groups)) } @else { "—" } } }
                tr { th scope="row" { "Group time p50 / p99" } td.num { (millis(quantile(&g.seconds_buckets, 0.5))) " / " (millis(quantile(&g.seconds_buckets, 0.99))) } }
                tr { th scope="row" { "Groups rolled back" } td.num { (g.failed) } }
            }
        }
        figure {
            (chart::bars("Write groups by size", &size_labels, &size_counts))
            figcaption { "Write groups by the number of writes they committed together (" (size_labels.join(", ")) "): concurrent clients share one commit and one fsync." }
        }
        h2 { "Requests by route" }
        @if health.routes.is_empty() {
            p.empty { "No request answered yet." }
        } @else {
            table.wide {
                caption { (health.routes.len()) " routes, most requested first" }
                thead { tr {
                    th scope="col" { "Route" } th scope="col" { "Method" } th.num scope="col" { "Requests" }
                    th.num scope="col" { "4xx" } th.num scope="col" { "5xx" } th.num scope="col" { "Mean" }
                    th.num scope="col" { "p50" } th.num scope="col" { "p99" }
                } }
                tbody { @for r in &health.routes { tr {
                    td { code { (r.route) } }
                    td { (r.method) }
                    td.num { (r.requests) }
                    td.num { (r.refused) }
                    td.num { (r.failed) }
                    td.num { (millis(r.mean())) }
                    td.num { (millis(r.quantile(0.5))) }
                    td.num { (millis(r.quantile(0.99))) }
                } } }
            }
        }
        (imports_section(imports))
    };
    layout::page(Section::Server, viewer, &[], "Server", body)
}

/// The imports of another server's history (`mltrail import mlflow`), newest first: where
/// from, when, and what each wrote; one that did not finish says so.
fn imports_section(imports: &[ImportSession]) -> Markup {
    let count = |s: &ImportSession, kind: &str, field: &str| -> String {
        s.summary[kind][field]
            .as_u64()
            .map_or_else(|| "—".to_string(), |n| n.to_string())
    };
    html! {
        h2 { "Imported history" }
        @if imports.is_empty() {
            p.empty { "Nothing imported: " code { "mltrail import mlflow SOURCE" } " brings an MLflow server's history in (README, “Moving from MLflow”)." }
        } @else {
            table.wide {
                caption { "The last " (imports.len()) " imports, newest first; each entity they wrote has an audit event naming the source." }
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "Started (UTC)" } th scope="col" { "Took" }
                    th.num scope="col" { "Experiments" } th.num scope="col" { "Runs" } th.num scope="col" { "Runs already here" }
                    th.num scope="col" { "Model versions" } th.num scope="col" { "Artifact files" }
                } }
                tbody { @for s in imports { tr {
                    td { code { (s.origin) } }
                    td { (layout::time(s.started_time)) }
                    @match (s.finished_time, s.summary["error"].as_str()) {
                        (None, _) => { td { "did not finish" } }
                        (Some(_), Some(error)) => { td { "failed: " (error) } }
                        (Some(end), None) => { td { (layout::duration(Some(s.started_time), Some(end))) } }
                    }
                    td.num { (count(s, "experiments", "imported")) }
                    td.num { (count(s, "runs", "imported")) }
                    td.num { (count(s, "runs", "already_here")) }
                    td.num { (count(s, "model_versions", "imported")) }
                    td.num { (count(s, "artifacts", "imported")) }
                } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE mltrail_http_request_duration_seconds histogram
mltrail_http_request_duration_seconds_sum{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"200\"} 0.5
mltrail_http_request_duration_seconds_count{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"200\"} 100
mltrail_http_request_duration_seconds_bucket{le=\"0.001\",method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"200\"} 90
mltrail_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"200\"} 100
mltrail_http_request_duration_seconds_sum{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"400\"} 0.1
mltrail_http_request_duration_seconds_count{method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"400\"} 4
mltrail_http_request_duration_seconds_bucket{le=\"0.001\",method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"400\"} 4
mltrail_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"POST\",route=\"/api/2.0/mlflow/runs/log-metric\",status=\"400\"} 4
mltrail_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1
mltrail_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/monitors/{id}\",status=\"200\"} 2
mltrail_store_write_group_size_sum 104.0
mltrail_store_write_group_size_count 8
mltrail_store_write_group_size_bucket{le=\"1.0\"} 6
mltrail_store_write_group_size_bucket{le=\"+Inf\"} 8
mltrail_store_write_groups_failed_total 0
mltrail_store_write_queue_depth 3
mltrail_store_database_bytes 434176
# EOF
";

    #[test]
    fn routes_are_summed_over_statuses_and_the_store_read() {
        let health = ServerHealth::parse(TEXT);
        let first = &health.routes[0];
        assert_eq!(first.route, "/api/2.0/mlflow/runs/log-metric");
        assert_eq!(
            (first.requests, first.refused, first.failed),
            (104.0, 4.0, 0.0)
        );
        assert_eq!(first.buckets, vec![(0.001, 94.0), (f64::INFINITY, 104.0)]);
        assert_eq!(health.routes[1].route, "/api/v1/monitors/{id}");
        assert_eq!(health.routes[1].requests, 2.0);
        assert_eq!(health.routes[2].route, "unmatched");
        assert_eq!((health.groups.groups, health.groups.writes), (8.0, 104.0));
        assert_eq!(per_bucket(&health.groups.size_buckets).1, vec![6, 2]);
        assert_eq!(health.queue_depth, Some(3.0));
        assert_eq!(health.database_bytes, Some(434176.0));
        assert_eq!(health.wal_bytes, None);
        assert_eq!(bytes(Some(434176.0)), "424.0 KiB");
        let page = server_page(
            &Viewer {
                who: None,
                csrf: "",
            },
            &health,
            &[],
        )
        .into_string();
        assert!(page.contains("/api/2.0/mlflow/runs/log-metric") && page.contains("424.0 KiB"));
        assert!(page.contains("Nothing imported"));
    }

    #[test]
    fn imports_say_where_from_what_they_wrote_and_whether_they_ended() {
        let session = |finished: Option<i64>, summary: serde_json::Value| ImportSession {
            import_id: "i".into(),
            origin: "mlflow sqlite:////data/<mlflow>.db".into(),
            started_time: 1_700_000_000_000,
            finished_time: finished,
            summary,
        };
        let done = session(
            Some(1_700_000_145_000),
            serde_json::json!({"runs": {"imported": 100000, "already_here": 7}, "experiments": {"imported": 10}}),
        );
        let stopped = session(None, serde_json::json!({}));
        let failed = session(
            Some(1_700_000_001_000),
            serde_json::json!({"error": "cannot import run r"}),
        );
        let page = imports_section(&[done, stopped, failed]).into_string();
        assert!(
            page.contains("mlflow sqlite:////data/&lt;mlflow&gt;.db"),
            "{page}"
        );
        assert!(
            page.contains("100000") && page.contains(">7<") && page.contains("145s"),
            "{page}"
        );
        assert!(page.contains("did not finish") && page.contains("failed: cannot import run r"));
    }
}
