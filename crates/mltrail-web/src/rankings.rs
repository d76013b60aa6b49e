//! A ranking monitor's page: per window, how many impressions the front end displayed in the
//! served order, Kendall τ and nDCG of both orders, which sort key the display follows, one
//! impression that was displayed otherwise, and the monitor's alerts.

use crate::chart::{self, Guide, Series};
use crate::layout::{self, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::monitors::{Alert, Monitor, MonitorResult, WindowStatus};
use serde_json::Value;

/// What a ranking window says in one line.
pub fn verdict(result: &MonitorResult) -> String {
    let v = &result.result["values"];
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    if result.status == WindowStatus::NoData {
        return "no impressions in the window".into();
    }
    let mut line = format!(
        "{} impressions, {} displayed reported",
        n("impressions"),
        n("displayed_impressions")
    );
    if let Some(agreement) = v["ranking.agreement"].as_f64() {
        line.push_str(&format!("; {:.0} % in served order", agreement * 100.0));
    }
    if let Some(finding) = result.result["ranking"]["finding"].as_str() {
        line.push_str(&format!("; {finding}"));
    }
    line
}

fn series(results: &[&MonitorResult], key: &str, label: &str) -> Series {
    Series {
        label: label.into(),
        points: results
            .iter()
            .filter_map(|r| {
                r.result["values"][key]
                    .as_f64()
                    .map(|v| (r.window_start as f64, v))
            })
            .collect(),
    }
}

/// The threshold of the monitor's first rule on `metric`, as a guide line.
fn guide(monitor: &Monitor, metric: &str) -> Vec<Guide> {
    monitor
        .spec
        .config
        .get("alerts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|rule| {
            let words: Vec<&str> = rule.split_whitespace().collect();
            match words.as_slice() {
                [m, _, t, ..] if *m == metric => t.parse::<f64>().ok().map(|t| Guide {
                    value: t,
                    label: rule.to_string(),
                }),
                _ => None,
            }
        })
        .take(1)
        .collect()
}

/// A ranking monitor's page. `results` are oldest first.
pub fn ranking_monitor_page(
    viewer: &Viewer<'_>,
    monitor: &Monitor,
    results: &[MonitorResult],
    alerts: &[Alert],
) -> Markup {
    let ok: Vec<&MonitorResult> = results
        .iter()
        .filter(|r| r.status == WindowStatus::Ok)
        .collect();
    let agreement = [
        series(&ok, "ranking.agreement", "displayed in served order"),
        series(&ok, "reported_share", "impressions reported"),
    ];
    let quality = [
        series(&ok, "ranking.kendall_tau", "Kendall τ"),
        series(&ok, "ranking.ndcg_served", "nDCG@k, served order"),
        series(&ok, "ranking.ndcg_displayed", "nDCG@k, displayed order"),
    ];
    let catalog = [
        series(&ok, "catalog.out_of_catalog_share", "items out of catalog"),
        series(&ok, "catalog.coverage", "catalog coverage"),
        series(&ok, "catalog.gini", "concentration (Gini)"),
        series(&ok, "ranking.repeat_share", "repeats for returning keys"),
    ];
    let latest = ok.last().map(|r| &r.result["ranking"]);
    let signature: Vec<(String, f64)> = latest
        .and_then(|r| r["signature"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["describes"].as_str()?.to_string(), s["share"].as_f64()?)))
        .collect();
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let body = html! {
        table { tbody {
            tr { th scope="row" { "Deployment" } td { (monitor.spec.deployment) } }
            tr { th scope="row" { "Compares" } td { "each impression's served order with the order its front end reported displaying (feedback " code { "displayed" } ", " code { "clicked" } ")" } }
            (crate::monitors::window_row(monitor))
            (crate::monitors::monitor_rows(monitor))
        } }
        h2 { "Served against displayed" }
        @if agreement[0].points.is_empty() { p.empty { "No window with reported displays yet." } } @else {
            (chart::time_chart("Share of impressions displayed in the served order, per window", "share", &agreement, &guide(monitor, "ranking.agreement")))
            (chart::time_chart("Kendall τ and nDCG@k per window", "value", &quality, &[]))
        }
        h2 { "Catalog and repeats" }
        @if catalog.iter().all(|s| s.points.is_empty()) {
            p.empty { "No catalog checks or returning request keys yet (" code { "mltrail serve --catalog NAME --key-column COLUMN" } ")." }
        } @else {
            (chart::time_chart("Out-of-catalog share, coverage, concentration and repeat share per window", "share", &catalog, &guide(monitor, "catalog.out_of_catalog_share")))
            @if let Some(top) = latest.and_then(|l| l["catalog"]["top_out_of_catalog"].as_array()).filter(|t| !t.is_empty()) {
                p { "Served out of catalog " (latest.and_then(|l| l["catalog"]["catalog"].as_str()).unwrap_or("")) " in the latest window: "
                    @for (i, t) in top.iter().enumerate() { @if i > 0 { ", " } code { (text(&t[0])) } " ×" (t[1]) } }
            }
        }
        @if let Some(latest) = latest {
            h2 { "What the display follows (latest window)" }
            @if let Some(finding) = latest["finding"].as_str() { p { strong { (finding) } } }
            @if !signature.is_empty() {
                table { thead { tr { th scope="col" { "Order" } th.num scope="col" { "Impressions it explains" } } }
                    tbody { @for (describes, share) in &signature { tr { td { (describes) } td.num { (format!("{:.1} %", share * 100.0)) } } } } }
            }
            @if let (Some(served), Some(displayed)) = (latest["example"]["served"].as_array(), latest["example"]["displayed"].as_array()) {
                h3 { "One impression displayed otherwise" }
                table { thead { tr { th scope="col" { "Position" } th scope="col" { "Served" } th scope="col" { "Displayed" } } }
                    tbody { @for i in 0..served.len().max(displayed.len()) { tr {
                        td { (i + 1) }
                        td { (served.get(i).map(text).unwrap_or_default()) }
                        td { (displayed.get(i).map(text).unwrap_or_default()) }
                    } } } }
            }
        }
        (crate::monitors::alerts_section(alerts, None))
        (crate::monitors::windows_section(results, "Impressions", verdict, None))
    };
    layout::page(
        Section::Monitors,
        viewer,
        &[("Monitors".into(), "/ui/monitors".into())],
        &format!("Rankings of {}", monitor.spec.deployment),
        body,
    )
}
