//! A model card (the Model Card Toolkit's v0.0.2 layout, as the tracking server builds it from
//! the trail) as a page of the UI, as a self-contained HTML file, and as Markdown.

use crate::layout::{self, model_href, version_href, Section, Viewer};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

fn items<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The card's sections, as the UI page and the HTML file show them.
pub fn body(card: &Value) -> Markup {
    let details = &card["model_details"];
    let parameters = &card["model_parameters"];
    let considerations = &card["considerations"];
    let metrics = items(&card["quantitative_analysis"], "performance_metrics");
    html! {
        section.card {
            h2 { "Model details" }
            p { (text(details, "overview")) }
            table { tbody {
                tr { th scope="row" { "Version" } td { (text(&details["version"], "name")) " (" (text(&details["version"], "date")) ")" } }
                tr { th scope="row" { "Owners" } td { @for o in items(details, "owners") { (text(o, "name")) " " } } }
                @if !text(details, "path").is_empty() { tr { th scope="row" { "Source" } td { code { (text(details, "path")) } } } }
                @for l in items(details, "licenses") { tr { th scope="row" { "License" } td { (text(l, "identifier")) (text(l, "custom_text")) } } }
            } }
            h3 { "From the trail" }
            ul { @for line in text(details, "documentation").lines() { li { (line) } } }
        }
        section.card {
            h2 { "Model parameters" }
            @if parameters.as_object().is_none_or(|p| p.is_empty()) { p.empty { "Nothing recorded: no training data, evaluation or signature names them." } }
            @if !text(parameters, "model_architecture").is_empty() { p { (text(parameters, "model_architecture")) } }
            @for d in items(parameters, "data") {
                h3 { "Data: " (text(d, "name")) }
                p { (text(d, "description")) }
                @let sensitive = items(&d["sensitive"], "sensitive_data");
                @if !sensitive.is_empty() { p { "Personal data: " @for s in &sensitive { code { (s.as_str().unwrap_or("")) } " " } } }
            }
            @let inputs = items(parameters, "input_format_map");
            @if !inputs.is_empty() {
                h3 { "Inputs" }
                table { tbody { @for i in &inputs { tr { td { (text(i, "key")) } td { (text(i, "value")) } } } } }
            }
        }
        section.card {
            h2 { "Quantitative analysis" }
            @if metrics.is_empty() { p.empty { "No evaluation or robustness assessment is recorded." } } @else {
                table.wide {
                    thead { tr { th scope="col" { "Metric" } th scope="col" { "Slice" } th scope="col" { "Value" } } }
                    tbody { @for m in &metrics { tr {
                        td { (text(m, "type")) } td { (text(m, "slice")) } td.num { (text(m, "value")) }
                    } } }
                }
            }
        }
        section.card {
            h2 { "Considerations" }
            @for (key, title) in [("users", "Users"), ("use_cases", "Intended use"), ("limitations", "Limitations"), ("tradeoffs", "Trade-offs")] {
                @let list = items(considerations, key);
                @if !list.is_empty() { h3 { (title) } ul { @for x in &list { li { (text(x, "description")) } } } }
            }
            @let risks = items(considerations, "ethical_considerations");
            @if !risks.is_empty() {
                h3 { "Ethical considerations" }
                table.wide {
                    thead { tr { th scope="col" { "Consideration" } th scope="col" { "Mitigation" } } }
                    tbody { @for r in &risks { tr { td { (text(r, "name")) } td { (text(r, "mitigation_strategy")) } } } }
                }
            }
        }
        section.card {
            h2 { "References" }
            ul { @for r in items(details, "references") { li { code { (text(r, "reference")) } } } }
        }
    }
}

/// The card as a page of the UI, for version `version` of `name`.
pub fn page(viewer: &Viewer<'_>, name: &str, version: &str, card: &Value) -> Markup {
    let body = html! {
        p.muted { "Built now from the trail. " code { "mltrail models card " (name) "/" (version) " --format html" } " keeps it with its digest in the audit trail." }
        (body(card))
    };
    layout::page(
        Section::Models,
        viewer,
        &[
            ("Models".into(), "/ui/models".into()),
            (name.to_string(), model_href(name)),
            (format!("version {version}"), version_href(name, version)),
        ],
        &format!("Model card: {name} version {version}"),
        body,
    )
}

/// A self-contained HTML file (its own style, no scripts, nothing fetched).
pub fn standalone(card: &Value, digest: &str) -> String {
    let details = &card["model_details"];
    let title = format!(
        "Model card: {} version {}",
        text(details, "name"),
        text(&details["version"], "name")
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                p.muted { "Made from the mltrail audit trail; card digest " code { (digest) } " (BLAKE3 of its canonical JSON)." }
                (body(card))
            }
        }
    }
    .into_string()
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1d2330}\
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #dde;padding:.25em .75em;text-align:left;vertical-align:top}\
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#5a6275}code{font-size:90%}\
section.card{border-top:2px solid #2f5bd3;margin-top:1.5em}";

/// The card as Markdown.
pub fn markdown(card: &Value, digest: &str) -> String {
    let details = &card["model_details"];
    let mut out = format!(
        "# Model card: {} version {}\n\nMade from the mltrail audit trail; card digest `{digest}`.\n\n## Model details\n\n{}\n\n",
        text(details, "name"),
        text(&details["version"], "name"),
        text(details, "overview")
    );
    out.push_str(&format!(
        "- Version: {} ({})\n",
        text(&details["version"], "name"),
        text(&details["version"], "date")
    ));
    for o in items(details, "owners") {
        out.push_str(&format!("- Owner: {}\n", text(o, "name")));
    }
    if !text(details, "path").is_empty() {
        out.push_str(&format!("- Source: `{}`\n", text(details, "path")));
    }
    out.push_str("\n### From the trail\n\n");
    for line in text(details, "documentation").lines() {
        out.push_str(&format!("- {line}\n"));
    }
    let parameters = &card["model_parameters"];
    out.push_str("\n## Model parameters\n\n");
    if !text(parameters, "model_architecture").is_empty() {
        out.push_str(&format!("{}\n\n", text(parameters, "model_architecture")));
    }
    for d in items(parameters, "data") {
        out.push_str(&format!(
            "- **{}**: {}\n",
            text(d, "name"),
            text(d, "description")
        ));
        let sensitive: Vec<&str> = items(&d["sensitive"], "sensitive_data")
            .iter()
            .filter_map(|s| s.as_str())
            .collect();
        if !sensitive.is_empty() {
            out.push_str(&format!("  personal data: {}\n", sensitive.join(", ")));
        }
    }
    out.push_str("\n## Quantitative analysis\n\n| metric | slice | value |\n|---|---|---|\n");
    for m in items(&card["quantitative_analysis"], "performance_metrics") {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            cell(text(m, "type")),
            cell(text(m, "slice")),
            text(m, "value")
        ));
    }
    let considerations = &card["considerations"];
    out.push_str("\n## Considerations\n");
    for (key, title) in [
        ("users", "Users"),
        ("use_cases", "Intended use"),
        ("limitations", "Limitations"),
        ("tradeoffs", "Trade-offs"),
    ] {
        let list = items(considerations, key);
        if !list.is_empty() {
            out.push_str(&format!("\n### {title}\n\n"));
            for x in list {
                out.push_str(&format!("- {}\n", text(x, "description")));
            }
        }
    }
    let risks = items(considerations, "ethical_considerations");
    if !risks.is_empty() {
        out.push_str("\n### Ethical considerations\n\n");
        for r in risks {
            out.push_str(&format!(
                "- {} Mitigation: {}\n",
                text(r, "name"),
                text(r, "mitigation_strategy")
            ));
        }
    }
    out.push_str("\n## References\n\n");
    for r in items(details, "references") {
        out.push_str(&format!("- `{}`\n", text(r, "reference")));
    }
    out
}

/// A table cell's text: pipes escaped so a column name cannot split the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}
