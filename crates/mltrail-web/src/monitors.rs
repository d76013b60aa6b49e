//! Monitors and alerts: every monitor with its latest window, and one monitor's history —
//! drift share over time, a feature × window heat map of the drift statistics, performance
//! against the reference, its alerts, and each window linked to its report.

use crate::chart::{self, Cell, Guide, Series};
use crate::layout::{self, query, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::monitors::{Alert, Monitor, MonitorResult, WindowStatus};
use serde_json::Value;
use std::collections::BTreeMap;

pub fn monitor_href(id: &str) -> String {
    format!("/ui/monitors/{}", layout::segment(id))
}

fn report_href(monitor: &str, window_start: i64) -> String {
    format!(
        "/api/v1/monitors/{}/windows/{window_start}/report",
        layout::segment(monitor)
    )
}

/// The rows every monitor's facts table ends with: when it was created and by whom, its status,
/// its audit trail and its alert rules.
pub(crate) fn monitor_rows(monitor: &Monitor) -> Markup {
    let id = monitor.id.as_str();
    html! {
        tr { th scope="row" { "Created" } td { (layout::time(monitor.created_time)) " by " (monitor.created_by) } }
        tr { th scope="row" { "Status" } td { (monitor.status) } }
        tr { th scope="row" { "History" } td { a href=(crate::audit::trail_href(&format!("monitor:{id}"))) { "audit trail of this monitor" } } }
        @if let Some(rules) = monitor.spec.config.get("alerts").and_then(Value::as_array) {
            tr { th scope="row" { "Alert rules" } td { @for r in rules { code.badge { (r.as_str().unwrap_or("")) } } } }
        }
    }
}

/// The row saying how long a monitor's windows are and when each is evaluated.
pub(crate) fn window_row(monitor: &Monitor) -> Markup {
    html! {
        tr { th scope="row" { "Window" } td { (mltrail_core::time::duration_text(monitor.spec.window_ms)) ", evaluated " (mltrail_core::time::duration_text(monitor.spec.delay_ms)) " after it closes" } }
    }
}

/// A monitor's alerts, newest first; with `reports`, each alert's window links to its report.
pub(crate) fn alerts_section(alerts: &[Alert], reports: Option<&str>) -> Markup {
    html! {
        h2 { "Alerts (" (alerts.len()) ")" }
        @if alerts.is_empty() { p.empty { "No alert has fired." } } @else {
            table.wide {
                thead { tr { th scope="col" { "Fired" } th scope="col" { "Rule" } th scope="col" { "State" } th scope="col" { "Window" } th scope="col" { "What" } } }
                tbody { @for a in alerts { tr {
                    td { (layout::time(a.fired_time)) }
                    td { code { (a.rule) } }
                    td { (format!("{:?}", a.state).to_lowercase()) }
                    td { @match reports {
                        Some(monitor) => a href=(report_href(monitor, a.window_start)) { (layout::time(a.window_start)) },
                        None => (layout::time(a.window_start)),
                    } }
                    td { (a.details.get("message").and_then(Value::as_str).unwrap_or("")) }
                } } }
            }
        }
    }
}

/// A monitor's windows, newest first: start, how many `rows` (predictions, points,
/// impressions), status and `verdict`; with `reports`, an evaluated window links its report.
pub(crate) fn windows_section(
    results: &[MonitorResult],
    rows: &str,
    verdict: fn(&MonitorResult) -> String,
    reports: Option<&str>,
) -> Markup {
    html! {
        h2 { "Windows (" (results.len()) ")" }
        table.wide {
            thead { tr {
                th scope="col" { "Window start" } th.num scope="col" { (rows) } th scope="col" { "Status" } th scope="col" { "Result" }
                @if reports.is_some() { th scope="col" { "Report" } }
            } }
            tbody { @for r in results.iter().rev().take(200) { tr {
                td { (layout::time(r.window_start)) }
                td.num { (r.rows) }
                td { (r.status.as_str()) }
                td { (verdict(r)) }
                @if let Some(monitor) = reports {
                    td { @if r.status == WindowStatus::Ok { a href=(report_href(monitor, r.window_start)) { "drift report" } } }
                }
            } } }
        }
        @if let Some(first) = results.first() {
            p.muted { "The same numbers as JSON: " a href={ "/api/v1/monitors/" (layout::segment(first.monitor_id.as_str())) "/results" (query([("limit", "1000")])) } { "results" } "." }
        }
    }
}

/// A monitor in the list, with its newest window and how many alerts it fired.
pub struct MonitorRow<'a> {
    pub monitor: &'a Monitor,
    pub latest: Option<&'a MonitorResult>,
    pub alerts: i64,
}

/// What a window's result says in one line.
fn verdict(result: &MonitorResult) -> String {
    if result.result.get("metric").is_some() {
        return crate::business::verdict(result);
    }
    if result.result.get("ranking").is_some() {
        return crate::rankings::verdict(result);
    }
    match result.status {
        WindowStatus::NoData => "no predictions in the window".into(),
        WindowStatus::Error => result
            .result
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("could not be compared")
            .to_string(),
        WindowStatus::Ok => {
            let dataset = &result.result["dataset"];
            let share = dataset["share"].as_f64().unwrap_or(f64::NAN);
            let drift = dataset["drift"].as_bool().unwrap_or(false);
            format!(
                "{}: {:.0} % of columns drifted",
                if drift {
                    "dataset drift"
                } else {
                    "no dataset drift"
                },
                share * 100.0
            )
        }
    }
}

pub fn monitors_page(viewer: &Viewer<'_>, rows: &[MonitorRow<'_>]) -> Markup {
    let body = html! {
        @if rows.is_empty() {
            p.empty { "No monitors yet: " code { "mltrail monitor create --deployment NAME --window 1h --reference training" } }
        } @else {
            p { a href="/ui/metrics" { "Business metrics and annotated periods" } }
            table.wide {
                caption { (rows.len()) " monitors" }
                thead { tr { th scope="col" { "Monitor" } th scope="col" { "Deployment" } th scope="col" { "Window" } th scope="col" { "Reference" } th scope="col" { "Latest window" } th.num scope="col" { "Alerts fired" } } }
                tbody { @for r in rows { tr {
                    td { a href=(monitor_href(r.monitor.id.as_str())) { code { (r.monitor.id.as_str()) } } }
                    td { @match &r.monitor.spec.metric {
                        Some(metric) => { "business metric " a href=(crate::business::metric_href(metric)) { (metric) } },
                        None => (r.monitor.spec.deployment),
                    } }
                    td { (mltrail_core::time::duration_text(r.monitor.spec.window_ms)) }
                    td { (r.monitor.spec.reference) }
                    td { @match r.latest {
                        Some(w) => { (layout::time(w.window_start)) " — " (verdict(w)) },
                        None => span.muted { "not evaluated yet" },
                    } }
                    td.num { (r.alerts) }
                } } }
            }
        }
    };
    layout::page(Section::Monitors, viewer, &[], "Monitors", body)
}

/// How far a feature's statistic is from its threshold: 1 at the threshold, more beyond it.
/// Tests with a p-value drift when it falls below the threshold (the level is
/// `log p / log threshold`); distances when they reach it (`score / threshold`).
fn level(feature: &Value) -> Option<f64> {
    let threshold = feature["threshold"].as_f64()?;
    let drifted = feature["drifted"].as_bool().unwrap_or(false);
    let raw = match feature["p_value"].as_f64() {
        Some(p) if threshold > 0.0 && threshold < 1.0 => {
            if p <= 0.0 {
                f64::INFINITY
            } else {
                p.ln() / threshold.ln()
            }
        }
        Some(_) => return None,
        None => {
            let score = feature["score"]
                .as_f64()
                .or(feature["statistic"].as_f64())?;
            if threshold > 0.0 {
                score / threshold
            } else {
                return None;
            }
        }
    };
    // The verdict stored is the one shown: the colour never contradicts it.
    Some(if drifted { raw.max(1.0) } else { raw.min(0.99) }.max(0.0))
}

/// A window's start as short as tells windows apart: seconds for windows under a minute, the
/// date for windows of a day or more.
fn window_label(start: i64, window_ms: i64) -> String {
    let time = layout::time(start);
    match window_ms {
        w if w < 60_000 => time[11..19].to_string(),
        w if w < 86_400_000 => time[11..16].to_string(),
        _ => time[..10].to_string(),
    }
}

/// A performance metric per window, and its value on the reference when known.
type MetricHistory = (Vec<(f64, f64)>, Option<f64>);

/// One monitor's page. `results` are oldest first.
pub fn monitor_page(
    viewer: &Viewer<'_>,
    monitor: &Monitor,
    results: &[MonitorResult],
    alerts: &[Alert],
) -> Markup {
    if let Some(metric) = &monitor.spec.metric {
        return crate::business::metric_monitor_page(viewer, monitor, metric, results, alerts);
    }
    if monitor.spec.config.get("ranking").is_some() {
        return crate::rankings::ranking_monitor_page(viewer, monitor, results, alerts);
    }
    let id = monitor.id.as_str();
    let ok: Vec<&MonitorResult> = results
        .iter()
        .filter(|r| r.status == WindowStatus::Ok)
        .collect();
    let threshold = ok
        .iter()
        .rev()
        .find_map(|r| r.result["dataset"]["drift_share"].as_f64());
    let share = Series {
        label: "share of drifted columns".into(),
        points: ok
            .iter()
            .filter_map(|r| {
                r.result["dataset"]["share"]
                    .as_f64()
                    .map(|s| (r.window_start as f64, s))
            })
            .collect(),
    };
    // Features in the order the newest window lists them; windows oldest first.
    let mut features: Vec<String> = Vec::new();
    for r in ok.iter().rev() {
        for f in r.result["features"].as_array().into_iter().flatten() {
            if let Some(c) = f["column"].as_str() {
                if !features.iter().any(|k| k == c) {
                    features.push(c.to_string());
                }
            }
        }
    }
    let shown: Vec<&MonitorResult> = ok.iter().rev().take(120).rev().copied().collect();
    let columns: Vec<String> = shown
        .iter()
        .map(|r| window_label(r.window_start, monitor.spec.window_ms))
        .collect();
    let cells: Vec<Vec<Option<Cell>>> = features
        .iter()
        .map(|name| {
            shown
                .iter()
                .map(|r| {
                    let f = r.result["features"]
                        .as_array()?
                        .iter()
                        .find(|f| f["column"].as_str() == Some(name))?;
                    Some(Cell {
                        level: level(f)?,
                        label: format!(
                            "{name} at {}: {} {} (threshold {}){}",
                            layout::time(r.window_start),
                            f["method"].as_str().unwrap_or(""),
                            chart::short_number(
                                f["p_value"]
                                    .as_f64()
                                    .or(f["score"].as_f64())
                                    .or(f["statistic"].as_f64())
                                    .unwrap_or(f64::NAN)
                            ),
                            chart::short_number(f["threshold"].as_f64().unwrap_or(f64::NAN)),
                            if f["drifted"].as_bool() == Some(true) {
                                ", drifted"
                            } else {
                                ""
                            }
                        ),
                    })
                })
                .collect()
        })
        .collect();
    // Performance: each metric over time, with its value on the reference as a guide.
    let mut performance: BTreeMap<String, MetricHistory> = BTreeMap::new();
    for r in &ok {
        let perf = &r.result["performance"];
        for (k, v) in perf["metrics"].as_object().into_iter().flatten() {
            if let Some(v) = v.as_f64() {
                let entry = performance.entry(k.clone()).or_default();
                entry.0.push((r.window_start as f64, v));
                if let Some(reference) = perf["reference"][k].as_f64() {
                    entry.1 = Some(reference);
                }
            }
        }
    }
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Deployment" } td { (monitor.spec.deployment) } }
            (window_row(monitor))
            tr { th scope="row" { "Reference" } td { (monitor.spec.reference) } }
            (monitor_rows(monitor))
        } }
        h2 { "Drift share over time" }
        @if share.points.is_empty() { p.empty { "No window has been compared yet." } } @else {
            (chart::time_chart("Share of drifted columns per window", "share drifted", &[share],
                &threshold.map(|t| vec![Guide { value: t, label: format!("dataset drift at {}", chart::short_number(t)) }]).unwrap_or_default()))
        }
        h2 { "Drift by feature and window" }
        (chart::heat_map("Drift statistic of each feature in each window", &features, &columns, &cells))
        h2 { "Performance against the reference" }
        @if performance.is_empty() { p.empty { "No labelled predictions yet (feedback with a label)." } } @else {
            div.charts {
                @for (metric, (points, reference)) in &performance {
                    figure.chart {
                        h3 { (metric) }
                        (chart::time_chart(&format!("{metric} per window"), metric,
                            &[Series { label: metric.clone(), points: points.clone() }],
                            &reference.map(|r| vec![Guide { value: r, label: format!("reference {}", chart::short_number(r)) }]).unwrap_or_default()))
                    }
                }
            }
        }
        (alerts_section(alerts, Some(id)))
        (windows_section(results, "Rows", verdict, Some(id)))
    };
    layout::page(
        Section::Monitors,
        viewer,
        &[("Monitors".into(), "/ui/monitors".into())],
        &format!("Monitor of {}", monitor.spec.deployment),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_put_the_threshold_at_one_and_follow_the_stored_verdict() {
        let p =
            |p: f64, drifted: bool| json!({"p_value": p, "threshold": 0.05, "drifted": drifted});
        assert_eq!(level(&p(0.05, true)), Some(1.0));
        assert!((level(&p(0.0025, true)).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(level(&p(1.0, false)), Some(0.0));
        // A verdict never contradicted by the colour.
        assert_eq!(level(&p(0.04, false)), Some(0.99));
        let distance = json!({"p_value": null, "score": 0.3, "threshold": 0.1, "drifted": true});
        assert!((level(&distance).unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(level(&json!({"drifted": true})), None);
    }
}
