//! A stored prediction, looked up by id: what went in and came out, the model version that
//! answered, the feedback on it, its explanation as a waterfall, and the path from the training
//! data to it — drawn from the prediction's trace (`GET /api/v1/predictions/{id}/record`).

use crate::chart;
use crate::layout::{self, query, Section, Viewer};
use maud::{html, Markup};
use serde_json::Value;

/// A JSON value as a cell shows it: strings without quotes, the rest as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One step of the lineage path: what it is, its name, and its page when it has one.
struct Step {
    kind: &'static str,
    name: String,
    href: Option<String>,
}

fn path_of(trace: &Value) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(data) = trace["training_data"].as_str() {
        steps.push(Step {
            kind: "training data",
            name: data.to_string(),
            href: None,
        });
    }
    if let Some(run) = trace["run"]["info"]["run_id"].as_str() {
        let name = trace["run"]["info"]["run_name"].as_str().unwrap_or(run);
        steps.push(Step {
            kind: "run",
            name: name.to_string(),
            href: Some(layout::run_href(run)),
        });
    }
    let model = trace["prediction"]["model"].as_str().unwrap_or("");
    let version = trace["prediction"]["version"].as_str().unwrap_or("");
    steps.push(Step {
        kind: "model version",
        name: format!("{model} v{version}"),
        href: Some(layout::version_href(model, version)),
    });
    steps.push(Step {
        kind: "deployment",
        name: trace["deployment"].as_str().unwrap_or("").to_string(),
        href: None,
    });
    steps.push(Step {
        kind: "prediction",
        name: trace["prediction_id"].as_str().unwrap_or("").to_string(),
        href: None,
    });
    steps
}

/// The explanation's numbers for one output: its base value, each column's contribution and the
/// output, when they are plain numbers (a binary or regression model), else those of the first
/// label (a multiclass model: one map per label).
struct Explained {
    /// The label explained (empty for a single output).
    label: String,
    base: f64,
    contributions: Vec<(String, f64)>,
    output: f64,
}

fn explained(explanation: &Value) -> Option<Explained> {
    let values = explanation["values"].as_object()?;
    let numbers = |map: &serde_json::Map<String, Value>| -> Option<Vec<(String, f64)>> {
        map.iter()
            .map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
            .collect()
    };
    if let (Some(base), Some(output)) = (
        explanation["base_value"].as_f64(),
        explanation["output"].as_f64(),
    ) {
        return Some(Explained {
            label: String::new(),
            base,
            contributions: numbers(values)?,
            output,
        });
    }
    let (label, per_label) = values.iter().next()?;
    Some(Explained {
        label: label.clone(),
        base: explanation["base_value"][label].as_f64()?,
        contributions: numbers(per_label.as_object()?)?,
        output: explanation["output"][label].as_f64()?,
    })
}

/// The lookup form, and the prediction's trace when one was found (or why not).
pub fn prediction_page(
    viewer: &Viewer<'_>,
    id: &str,
    found: Option<Result<&Value, String>>,
) -> Markup {
    let body = html! {
        form.inline method="get" action="/ui/predictions" role="search" {
            label for="id" { "Prediction id" }
            input type="search" id="id" name="id" value=(id) placeholder="01a2… (a UUID from a deployment's answer)";
            button type="submit" { "Look up" }
        }
        @match found {
            None => p.muted { "Paste the " code { "prediction_id" } " a deployment answered with. Archived predictions are found here; one not archived yet is answered by its deployment (" code { "GET /api/v1/predictions/<id>" } " on " code { "mltrail serve" } ")." },
            Some(Err(why)) => p.error role="alert" { (why) },
            Some(Ok(trace)) => (trace_view(trace)),
        }
    };
    layout::page(Section::Predictions, viewer, &[], "Predictions", body)
}

/// A ranking's impression: each position's served item and score beside what the front end
/// reported displaying there (the latest report), and the items clicked.
fn ranking_view(served: &[Value], scores: &Value, feedback: Option<&Vec<Value>>) -> Markup {
    let latest = |key: &str| {
        feedback
            .into_iter()
            .flatten()
            .filter_map(|f| f[key].as_array())
            .next_back()
    };
    let displayed = latest("ranking");
    let clicked = latest("clicked");
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let clicked_text: Vec<String> = clicked.into_iter().flatten().map(text).collect();
    let rows = served.len().max(displayed.map_or(0, Vec::len));
    let in_order = displayed.is_some_and(|d| {
        let positions: Option<Vec<usize>> = d
            .iter()
            .map(|item| served.iter().position(|s| text(s) == text(item)))
            .collect();
        positions.is_some_and(|p| p.windows(2).all(|w| w[0] < w[1]))
    });
    html! {
        h2 { "Ranking" }
        p {
            @match displayed {
                None => { "The front end has not reported what it displayed (feedback " code { "displayed" } ")." },
                Some(_) if in_order => { "Displayed in the served order." },
                Some(_) => { strong { "Displayed in another order than served." } },
            }
        }
        table aria-label="Served and displayed order" {
            thead { tr { th scope="col" { "Position" } th scope="col" { "Served" } th scope="col" { "Score" } th scope="col" { "Displayed" } } }
            tbody { @for i in 0..rows { tr {
                td { (i + 1) }
                td { @if let Some(item) = served.get(i) { (text(item)) @if clicked_text.contains(&text(item)) { " " span.muted { "(clicked)" } } } }
                td { (cell(&scores[i])) }
                td { @if let Some(item) = displayed.and_then(|d| d.get(i)) { (text(item)) } }
            } } }
        }
    }
}

fn trace_view(trace: &Value) -> Markup {
    let p = &trace["prediction"];
    let id = trace["prediction_id"].as_str().unwrap_or("");
    let steps = path_of(trace);
    let explanation = &trace["explanation"];
    html! {
        h2 { "Where it came from" }
        ol.lineage aria-label="Lineage, from the training data to this prediction" {
            @for s in &steps {
                li {
                    span.kind { (s.kind) }
                    @match &s.href { Some(h) => a href=(h) { (s.name) }, None => span { (s.name) } }
                }
            }
        }
        table { tbody {
            tr { th scope="row" { "Time" } td { (p["time_ms"].as_i64().map(layout::time).unwrap_or_default()) " UTC" } }
            tr { th scope="row" { "Model" } td { (cell(&p["model"])) " version " (cell(&p["version"])) " " span.muted { "digest " code { (p["digest"].as_str().map(|d| layout::short(d, 16)).unwrap_or("")) } } } }
            tr { th scope="row" { "Latency" } td { (p["latency_us"].as_i64().map(|us| format!("{:.2} ms", us as f64 / 1000.0)).unwrap_or_default()) } }
            @if !p["arm"].is_null() { tr { th scope="row" { "Arm" } td { (cell(&p["arm"])) } } }
            tr { th scope="row" { "In the trail" } td {
                (trace["segment"]["in_trail"].as_str().unwrap_or("unknown"))
                " " span.muted { "(its archived segment's Merkle root, recorded as an audit event)" }
            } }
        } }
        h2 { "Inputs" }
        @match trace["inputs"].as_object() {
            Some(inputs) => table { tbody { @for (k, v) in inputs { tr { th scope="row" { (k) } td { (cell(v)) } } } } },
            None => pre.preview { (trace["inputs"].to_string()) },
        }
        @if let Some(served) = p["outputs"]["items"].as_array() {
            (ranking_view(served, &p["outputs"]["scores"], trace["feedback"].as_array()))
        }
        h2 { "Outputs" }
        @match p["outputs"].as_object() {
            Some(outputs) => table { tbody { @for (k, v) in outputs { tr { th scope="row" { (k) } td { (cell(v)) } } } } },
            None => pre.preview { (p["outputs"].to_string()) },
        }
        h2 { "Why" }
        @match explained(explanation) {
            None => p.empty { "Not explained: the deployment explains on request (" code { "GET /api/v1/predictions/" (id) "/explanation" } " on it) or always (" code { "--explain always" } ")." },
            Some(Explained { label, base, contributions, output }) => {
                p { (cell(&explanation["method"])) ", in " (cell(&explanation["output_space"]))
                    @if !label.is_empty() { " for " code { (label) } } "." }
                (chart::waterfall("How each input moved the output from the base value", base, &contributions, output))
                @if let Some(reasons) = explanation["reasons"].as_array() {
                    @if !reasons.is_empty() {
                        h3 { "Reason codes" }
                        ol { @for r in reasons { li { (cell(r)) } } }
                    }
                }
            },
        }
        h2 { "Feedback (" (trace["feedback"].as_array().map_or(0, Vec::len)) ")" }
        @match trace["feedback"].as_array() {
            Some(list) if !list.is_empty() => table {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Label" } th scope="col" { "Other" } } }
                tbody { @for f in list { tr {
                    td { (f["time_ms"].as_i64().map(layout::time).unwrap_or_default()) }
                    td { (cell(&f["label"])) }
                    td.muted { @for (k, v) in f.as_object().into_iter().flatten().filter(|(k, _)| !matches!(k.as_str(), "type" | "id" | "time_ms" | "label" | "deployment")) { (k) "=" (cell(v)) " " } }
                } } }
            },
            _ => p.empty { "No feedback on this prediction." },
        }
        p.muted { "The whole trace, as " code { "mltrail trace" } " checks it: "
            a href={ "/api/v1/predictions/" (layout::segment(id)) "/record" (query([("deployment", trace["deployment"].as_str().unwrap_or(""))])) } { "JSON" } "." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_binary_explanation_and_a_multiclass_one_give_their_numbers() {
        let binary = json!({"base_value": -0.4, "output": 0.1, "values": {"a": 0.2, "b": 0.3}});
        let e = explained(&binary).unwrap();
        assert_eq!((e.label.as_str(), e.base, e.output), ("", -0.4, 0.1));
        assert_eq!(e.contributions.len(), 2);
        let multi = json!({"base_value": {"x": 0.3, "y": 0.7}, "output": {"x": 0.1, "y": 0.9},
                           "values": {"x": {"a": -0.2}, "y": {"a": 0.2}}});
        let e = explained(&multi).unwrap();
        assert_eq!((e.label.as_str(), e.base, e.output), ("x", 0.3, 0.1));
        assert!(explained(&Value::Null).is_none());
    }
}
