//! Datasets: every dataset with its latest version, and one dataset's versions, with the chosen
//! version's schema, per-column profile (histograms and top categories), the runs that used it,
//! and a form that compares two versions for drift (`mltrail drift --html`'s report).

use crate::chart;
use crate::layout::{self, query, run_href, Section, Viewer};
use maud::{html, Markup};
use mltrail_store::datasets::DatasetVersion;
use serde_json::Value;

pub fn dataset_href(name: &str) -> String {
    format!("/ui/datasets/{}", layout::segment(name))
}

/// Every dataset's newest version.
pub fn datasets_page(viewer: &Viewer<'_>, latest: &[&DatasetVersion]) -> Markup {
    let body = html! {
        @if latest.is_empty() {
            p.empty { "No datasets yet: " code { "mltrail data add train.csv --name credit-train" } ", or log one with " code { "mlflow.log_input" } "." }
        } @else {
            table.wide {
                caption { (latest.len()) " datasets" }
                thead { tr { th scope="col" { "Name" } th.num scope="col" { "Versions" } th.num scope="col" { "Rows (latest)" } th scope="col" { "File" } th scope="col" { "Last added" } th scope="col" { "By" } } }
                tbody { @for v in latest { tr {
                    td { a href=(dataset_href(&v.name)) { (v.name) } }
                    td.num { (v.version) }
                    td.num { (v.file.rows) }
                    td { (v.file.file_name) }
                    td { (layout::time(v.created_time)) }
                    td { (v.created_by) }
                } } }
            }
        }
    };
    layout::page(Section::Datasets, viewer, &[], "Datasets", body)
}

/// One dataset: its versions, and the chosen one's schema, profile and runs.
pub struct DatasetPage<'a> {
    pub versions: &'a [DatasetVersion],
    pub chosen: &'a DatasetVersion,
    pub runs: &'a [String],
}

/// A list stored either as it is or under `columns` (the profile's layout).
fn listed(value: &Value) -> Option<&Vec<Value>> {
    value.as_array().or_else(|| value["columns"].as_array())
}

fn profile_of<'a>(profile: &'a Value, column: &str) -> Option<&'a Value> {
    listed(profile)?
        .iter()
        .find(|p| p["column"].as_str() == Some(column))
}

fn picture(column: &str, profile: &Value) -> Markup {
    let summary = &profile["summary"];
    match summary["kind"].as_str() {
        Some("numeric") => {
            let bins = summary["histogram"].as_array().cloned().unwrap_or_default();
            let labels: Vec<String> = bins
                .iter()
                .map(|b| {
                    format!(
                        "from {}",
                        chart::short_number(b["from"].as_f64().unwrap_or(f64::NAN))
                    )
                })
                .collect();
            let counts: Vec<u64> = bins
                .iter()
                .map(|b| b["count"].as_u64().unwrap_or(0))
                .collect();
            chart::bars(&format!("Histogram of {column}"), &labels, &counts)
        }
        Some("categorical") => {
            let top = summary["top"].as_array().cloned().unwrap_or_default();
            let labels: Vec<String> = top
                .iter()
                .map(|t| t["value"].as_str().unwrap_or("").to_string())
                .collect();
            let counts: Vec<u64> = top
                .iter()
                .map(|t| t["count"].as_u64().unwrap_or(0))
                .collect();
            chart::bars(
                &format!("Most frequent values of {column}"),
                &labels,
                &counts,
            )
        }
        _ => html! { span.muted { "no values" } },
    }
}

fn numbers(profile: &Value) -> String {
    let s = &profile["summary"];
    match s["kind"].as_str() {
        Some("numeric") => format!(
            "min {} · mean {} · max {} · std {}",
            chart::short_number(s["min"].as_f64().unwrap_or(f64::NAN)),
            chart::short_number(s["mean"].as_f64().unwrap_or(f64::NAN)),
            chart::short_number(s["max"].as_f64().unwrap_or(f64::NAN)),
            chart::short_number(s["std"].as_f64().unwrap_or(f64::NAN)),
        ),
        Some("categorical") => {
            let top: Vec<String> = s["top"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .map(|t| format!("{} ({})", t["value"].as_str().unwrap_or(""), t["count"]))
                .collect();
            format!("most frequent: {}", top.join(", "))
        }
        _ => String::new(),
    }
}

pub fn dataset_page(viewer: &Viewer<'_>, page: &DatasetPage<'_>) -> Markup {
    let v = page.chosen;
    let name = &v.name;
    let columns = listed(&v.file.schema).cloned().unwrap_or_default();
    let version_href = |n: i64| {
        format!(
            "{}{}",
            dataset_href(name),
            query([("version", n.to_string().as_str())])
        )
    };
    let previous = page
        .versions
        .iter()
        .filter(|o| o.version < v.version)
        .map(|o| o.version)
        .max();
    let body = html! {
        h2 { "Versions (" (page.versions.len()) ")" }
        table.wide {
            thead { tr { th scope="col" { "Version" } th.num scope="col" { "Rows" } th scope="col" { "File" } th scope="col" { "Digest" } th scope="col" { "Added" } th scope="col" { "By" } } }
            tbody { @for o in page.versions.iter().rev() { tr {
                td { @if o.version == v.version { strong { (name) "@" (o.version) } " (shown)" } @else { a href=(version_href(o.version)) { (name) "@" (o.version) } } }
                td.num { (o.file.rows) }
                td { (o.file.file_name) }
                td { code.muted title=(o.file.digest) { (layout::short(&o.file.digest, 12)) } }
                td { (layout::time(o.created_time)) }
                td { (o.created_by) }
            } } }
        }
        @if page.versions.len() > 1 {
            form.inline method="get" action={ (dataset_href(name)) "/drift" } {
                label for="reference" { "Compare" }
                select id="reference" name="reference" { @for o in page.versions { option value=(o.version) selected[Some(o.version) == previous] { (name) "@" (o.version) } } }
                label for="current" { "with" }
                select id="current" name="current" { @for o in page.versions { option value=(o.version) selected[o.version == v.version] { (name) "@" (o.version) } } }
                button type="submit" { "Drift report" }
            }
        }
        h2 { "Schema and profile of " (name) "@" (v.version) }
        p.muted { (v.file.rows) " rows" @if let Some(t) = &v.file.target { ", target " code { (t) } } "." }
        table.wide {
            thead { tr { th scope="col" { "Column" } th scope="col" { "Type" } th scope="col" { "Nullable" } th scope="col" { "Personal data" } th.num scope="col" { "Missing" } th.num scope="col" { "Distinct" } th scope="col" { "Distribution" } th scope="col" { "Summary" } } }
            tbody { @for c in &columns {
                @let column = c["name"].as_str().unwrap_or("");
                @let profile = profile_of(&v.file.profile, column);
                tr {
                    th scope="row" { (column) }
                    td { (c["type"].as_str().or(c["kind"].as_str()).unwrap_or("")) }
                    td { @if c["nullable"].as_bool() == Some(true) { "yes" } @else { "no" } }
                    td { @if c["subject"].as_bool() == Some(true) { "subject id" } @else if c["pii"].as_bool() == Some(true) { "yes" } }
                    td.num { (profile.map(|p| p["missing"].to_string()).unwrap_or_default()) }
                    td.num { (profile.map(|p| p["distinct"].to_string()).unwrap_or_default()) }
                    td { @if let Some(p) = profile { (picture(column, p)) } }
                    td.muted { (profile.map(numbers).unwrap_or_default()) }
                }
            } }
        }
        h2 { "Runs that used it (" (page.runs.len()) ")" }
        @if page.runs.is_empty() { p.empty { "No run logged this version as an input (" code { "mlflow.log_input" } ")." } } @else {
            ul { @for r in page.runs { li { a href=(run_href(r)) { code { (r) } } } } }
        }
        p.muted { a href=(crate::audit::trail_href(&format!("dataset_version:{}/{}", name, v.version))) { "Audit trail of this version" } }
    };
    layout::page(
        Section::Datasets,
        viewer,
        &[("Datasets".into(), "/ui/datasets".into())],
        name,
        body,
    )
}
