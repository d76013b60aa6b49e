//! Business metrics: the list, one metric's series with the baseline its monitors expected and
//! the annotated periods they left out, and a business metric monitor's windows.

use crate::chart::{self, Series};
use crate::layout::{self, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::business::{Annotation, MetricSummary};
use mltrail_store::monitors::{Alert, Monitor, MonitorResult, WindowStatus};
use serde_json::Value;

pub fn metric_href(name: &str) -> String {
    format!("/ui/metrics/{}", layout::segment(name))
}

/// A business metric monitor's window in one line.
pub fn verdict(result: &MonitorResult) -> String {
    let v = &result.result["values"];
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    if result.status == WindowStatus::NoData {
        return match n("received") {
            0.0 => "no points in the window".into(),
            received => format!(
                "{received} points, none judged ({} annotated, {} without a baseline)",
                n("annotated_points"),
                n("unjudged_points")
            ),
        };
    }
    let mut line = format!(
        "{} drops, {} spikes of {} points judged",
        n("drops"),
        n("spikes"),
        n("points")
    );
    if let (Some(o), Some(e)) = (v["observed"].as_f64(), v["expected"].as_f64()) {
        line.push_str(&format!(
            "; observed {} against an expected {}",
            chart::short_number(o),
            chart::short_number(e)
        ));
    }
    if n("annotated_points") > 0.0 {
        line.push_str(&format!("; {} points annotated", n("annotated_points")));
    }
    line
}

fn annotations_table(annotations: &[Annotation]) -> Markup {
    html! {
        @if annotations.is_empty() {
            p.empty { "No annotated period: " code { "mltrail annotate --name \"spring campaign\" --kind campaign --from 2026-03-02 --to 2026-03-16 --metrics revenue" } }
        } @else {
            table.wide {
                thead { tr { th scope="col" { "Period" } th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Metrics" } th scope="col" { "By" } th scope="col" { "Note" } } }
                tbody { @for a in annotations { tr {
                    td { (layout::time(a.from_ms)) " – " (layout::time(a.to_ms)) }
                    td { a href=(crate::audit::trail_href(&format!("annotation:{}", a.id))) { (a.name) } }
                    td { (a.kind) }
                    td { @if a.metrics.is_empty() { span.muted { "every metric" } } @else { (a.metrics.join(", ")) } }
                    td { (a.created_by) }
                    td { (a.note) }
                } } }
            }
        }
    }
}

pub fn metrics_page(
    viewer: &Viewer<'_>,
    metrics: &[MetricSummary],
    annotations: &[Annotation],
) -> Markup {
    let body = html! {
        p { "Time series the business pushes (revenue, orders, request volume), watched by anomaly monitors against a seasonal baseline that leaves annotated periods out (docs/monitoring.md, “Business metrics and annotated periods”)." }
        @if metrics.is_empty() {
            p.empty { "No business metric yet: " code { "mltrail metrics push revenue --file revenue.csv" } }
        } @else {
            table.wide {
                caption { (metrics.len()) " metrics" }
                thead { tr { th scope="col" { "Metric" } th.num scope="col" { "Points" } th scope="col" { "First" } th scope="col" { "Last" } } }
                tbody { @for m in metrics { tr {
                    td { a href=(metric_href(&m.name)) { (m.name) } }
                    td.num { (m.points) }
                    td { (layout::time(m.first_time)) }
                    td { (layout::time(m.last_time)) }
                } } }
            }
        }
        h2 { "Annotated periods" }
        (annotations_table(annotations))
    };
    layout::page(
        Section::Monitors,
        viewer,
        &[("Monitors".into(), "/ui/monitors".into())],
        "Business metrics",
        body,
    )
}

/// A judged point that strayed, from a monitor's stored window.
struct Stray<'a> {
    monitor: &'a str,
    point: &'a Value,
}

/// One metric's page: `points` in time order, each of `monitors` with its windows (oldest first).
pub fn metric_page(
    viewer: &Viewer<'_>,
    summary: &MetricSummary,
    points: &[(i64, f64)],
    annotations: &[Annotation],
    monitors: &[(Monitor, Vec<MonitorResult>)],
) -> Markup {
    let values: Vec<(f64, f64)> = points.iter().map(|(t, v)| (*t as f64, *v)).collect();
    let mut series = vec![Series {
        label: summary.name.clone(),
        points: chart::downsample(&values, 400),
    }];
    let mut strays: Vec<Stray<'_>> = Vec::new();
    for (monitor, results) in monitors {
        let mut expected = Vec::new();
        for r in results {
            for p in r.result["points"].as_array().into_iter().flatten() {
                if let (Some(t), Some(e)) = (p["time_ms"].as_i64(), p["expected"].as_f64()) {
                    expected.push((t as f64, e));
                }
                if p.get("anomaly").is_some() {
                    strays.push(Stray {
                        monitor: monitor.id.as_str(),
                        point: p,
                    });
                }
            }
        }
        if !expected.is_empty() {
            series.push(Series {
                label: format!("expected by monitor {}", monitor.id.as_str()),
                points: chart::downsample(&expected, 400),
            });
        }
    }
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Points" } td { (summary.points) ", " (layout::time(summary.first_time)) " – " (layout::time(summary.last_time)) } }
            tr { th scope="row" { "Pushes" } td { a href=(crate::audit::trail_href("business_points")) { "audit trail of pushed points" } } }
        } }
        h2 { "Series" }
        (chart::time_chart(&format!("{} and the baseline its monitors expected", summary.name), &summary.name, &series, &[]))
        @if !annotations.is_empty() {
            p.muted { "Annotated periods (left out of every baseline): "
                @for (i, a) in annotations.iter().enumerate() {
                    @if i > 0 { "; " }
                    (a.name) " (" (layout::time(a.from_ms)) " – " (layout::time(a.to_ms)) ")"
                }
            }
        }
        h2 { "Annotated periods" }
        (annotations_table(annotations))
        h2 { "Monitors" }
        @if monitors.is_empty() {
            p.empty { "No monitor watches this metric: " code { "mltrail monitor create --metric " (summary.name) " --window 6h" } }
        } @else {
            ul { @for (m, results) in monitors {
                li { a href=(crate::monitors::monitor_href(m.id.as_str())) { code { (m.id.as_str()) } } ", "
                    (mltrail_core::time::duration_text(m.spec.window_ms)) " windows, " (results.len()) " evaluated" }
            } }
        }
        h2 { "Drops and spikes (" (strays.len()) ")" }
        @if strays.is_empty() { p.empty { "No point has strayed from its baseline." } } @else {
            table.wide {
                thead { tr { th scope="col" { "Time" } th scope="col" { "What" } th.num scope="col" { "Value" } th.num scope="col" { "Expected" } th scope="col" { "Range" } th.num scope="col" { "z" } th scope="col" { "Monitor" } } }
                tbody { @for s in strays.iter().rev().take(500) { tr {
                    td { (layout::time(s.point["time_ms"].as_i64().unwrap_or(0))) }
                    td { (s.point["anomaly"].as_str().unwrap_or("")) }
                    td.num { (s.point["value"]) }
                    td.num { (chart::short_number(s.point["expected"].as_f64().unwrap_or(f64::NAN))) }
                    td { (chart::short_number(s.point["lower"].as_f64().unwrap_or(f64::NAN))) " – " (chart::short_number(s.point["upper"].as_f64().unwrap_or(f64::NAN))) }
                    td.num { (chart::short_number(s.point["z"].as_f64().unwrap_or(f64::NAN))) }
                    td { a href=(crate::monitors::monitor_href(s.monitor)) { code { (s.monitor) } } }
                } } }
            }
        }
    };
    layout::page(
        Section::Monitors,
        viewer,
        &[
            ("Monitors".into(), "/ui/monitors".into()),
            ("Business metrics".into(), "/ui/metrics".into()),
        ],
        &summary.name,
        body,
    )
}

/// A business metric monitor's page: observed and expected per window, its alerts and windows.
/// `results` are oldest first.
pub fn metric_monitor_page(
    viewer: &Viewer<'_>,
    monitor: &Monitor,
    metric: &str,
    results: &[MonitorResult],
    alerts: &[Alert],
) -> Markup {
    let per_window = |key: &str| -> Vec<(f64, f64)> {
        results
            .iter()
            .filter_map(|r| Some((r.window_start as f64, r.result["values"][key].as_f64()?)))
            .collect()
    };
    let series = [
        Series {
            label: "observed (window mean)".into(),
            points: chart::downsample(&per_window("observed"), 400),
        },
        Series {
            label: "expected (window mean)".into(),
            points: chart::downsample(&per_window("expected"), 400),
        },
    ];
    let latest = results
        .iter()
        .rev()
        .find(|r| r.status == WindowStatus::Ok)
        .map(|r| &r.result["learned_from"]);
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Business metric" } td { a href=(metric_href(metric)) { (metric) } } }
            (crate::monitors::window_row(monitor))
            @if let Some(s) = monitor.spec.config.get("seasonal") {
                tr { th scope="row" { "Baseline" } td {
                    "median of the last " (s["seasons"]) " seasons of " (mltrail_core::time::duration_text(s["season_ms"].as_i64().unwrap_or(0)))
                    " (reaching back " (s["horizon"]) " past annotated periods); a drop or a spike beyond " (s["z"]) " robust spreads"
                } }
            }
            @if let Some(l) = latest {
                tr { th scope="row" { "Latest window learned from" } td {
                    (l["points"]) " points, " (l["excluded_points"]) " of them annotated and left out; spread "
                    (chart::short_number(l["spread"].as_f64().unwrap_or(f64::NAN))) " from " (l["spread_points"]) " points"
                } }
            }
            (crate::monitors::monitor_rows(monitor))
        } }
        h2 { "Observed and expected" }
        (chart::time_chart(&format!("{metric}: observed and expected per window"), metric, &series, &[]))
        (crate::monitors::alerts_section(alerts, None))
        (crate::monitors::windows_section(results, "Points", verdict, None))
    };
    layout::page(
        Section::Monitors,
        viewer,
        &[("Monitors".into(), "/ui/monitors".into())],
        &format!("Monitor of business metric {metric}"),
        body,
    )
}
