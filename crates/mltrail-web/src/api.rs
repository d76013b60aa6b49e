//! The native API's reference, drawn from the server's own OpenAPI document: each operation by
//! area (method, path, what it takes and answers) and each body's fields, linked to each other.

use maud::{html, Markup};
use serde_json::Value;

use crate::layout::{self, Section, Viewer};

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// One operation of the document.
struct Operation<'a> {
    method: &'a str,
    path: &'a str,
    op: &'a Value,
}

/// The schema a `$ref` names (`#/components/schemas/Name` → `Name`).
fn ref_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

/// A schema as a short type: a linked name, `list of …`, `a or b`, a JSON type.
fn type_of(schema: &Value) -> Markup {
    if let Some(name) = ref_name(schema) {
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            return html! { @for (i, o) in options.iter().enumerate() { @if i > 0 { " or " } (type_of(o)) } };
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return html! { @for (i, p) in parts.iter().enumerate() { @if i > 0 { " and " } (type_of(p)) } };
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let nullable = kinds.contains(&"null");
    let html = html! {
        @for (i, kind) in kinds.iter().filter(|k| **k != "null").enumerate() {
            @if i > 0 { " or " }
            @if *kind == "array" { "list of " (type_of(&schema["items"])) } @else { (kind) }
        }
        @if kinds.is_empty() { "any JSON" }
        @if let Some(format) = schema["format"].as_str() { " (" (format) ")" }
        @if nullable { ", or null" }
    };
    html
}

/// The handler's own words, else what its answer is.
fn what_it_does(op: &Value) -> &str {
    op["summary"]
        .as_str()
        .or(op["description"].as_str())
        .or(op["responses"]["200"]["description"].as_str())
        .unwrap_or("")
}

/// What an operation takes: its parameters, then its body.
fn takes(op: &Value) -> Markup {
    let params = op["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let body = op["requestBody"]["content"].as_object();
    html! {
        @for p in params {
            @let name = p["name"].as_str().unwrap_or("");
            @let required = p["required"].as_bool().unwrap_or(false);
            span.param title=(p["description"].as_str().unwrap_or("")) {
                code { (name) @if p["in"] == "query" && !required { "?" } }
                " (" (p["in"].as_str().unwrap_or("")) ")"
            }
            " "
        }
        @if let Some(content) = body {
            @for (kind, media) in content {
                span.param { "body: " (type_of(&media["schema"])) " " small { (kind) } } " "
            }
        }
    }
}

/// What an operation answers when it succeeds.
fn answers(op: &Value) -> Markup {
    let ok = &op["responses"]["200"];
    html! {
        @if let Some(content) = ok["content"].as_object() {
            @for (kind, media) in content {
                (type_of(&media["schema"])) @if kind != "application/json" { " " small { (kind) } }
            }
        }
    }
}

/// The reference page of `document` (the server's `/api/v1/openapi.json`).
pub fn api_page(viewer: &Viewer<'_>, document: &Value) -> Markup {
    let mut by_tag: Vec<(String, Vec<Operation<'_>>)> = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let op = &item[method];
                if op.is_null() {
                    continue;
                }
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                let operation = Operation { method, path, op };
                match by_tag.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, ops)) => ops.push(operation),
                    None => by_tag.push((tag, vec![operation])),
                }
            }
        }
    }
    let count: usize = by_tag.iter().map(|(_, ops)| ops.len()).sum();
    let schemas = document["components"]["schemas"].as_object();
    let body = html! {
        p {
            "This server's native API (" code { "/api/v1/…" } "), from its OpenAPI "
            (document["openapi"].as_str().unwrap_or("")) " document "
            a href="/api/v1/openapi.json" { "/api/v1/openapi.json" }
            ": " (count) " operations. Each " code { "mltrail serve" } " answers its own (scoring, feedback, predictions) at the same path. "
            "A client can be generated from either (" code { "openapi-generator" } ", " code { "openapi-python-client" } "), "
            "or use the Python client (" code { "pip install ./python" } "). Errors are "
            code { "{\"error_code\", \"message\"}" } " with a 4xx or 5xx status; a server that authenticates takes a bearer token or a user's password (HTTP Basic)."
        }
        nav aria-label="Areas" {
            ul.inline { @for (tag, ops) in &by_tag {
                li { a href={ "#tag-" (tag.replace(' ', "-")) } { (tag) } " (" (ops.len()) ")" }
            } }
        }
        @for (tag, ops) in &by_tag {
            h2 id={ "tag-" (tag.replace(' ', "-")) } { (tag) }
            table.wide {
                thead { tr {
                    th scope="col" { "Method" } th scope="col" { "Path" } th scope="col" { "What it does" }
                    th scope="col" { "Takes" } th scope="col" { "Answers" }
                } }
                tbody { @for o in ops { tr id=(o.op["operationId"].as_str().unwrap_or("")) {
                    td { code { (o.method.to_uppercase()) } }
                    td { code { (o.path) } }
                    td { (what_it_does(o.op)) }
                    td { (takes(o.op)) }
                    td { (answers(o.op)) }
                } } }
            }
        }
        h2 id="schemas" { "Bodies" }
        @if let Some(schemas) = schemas {
            @for (name, schema) in schemas {
                h3 id={ "schema-" (name) } { (name) }
                @if let Some(text) = schema["description"].as_str() { p { (text) } }
                (fields(schema))
            }
        }
    };
    let crumbs = [("Server".to_string(), "/ui/server".to_string())];
    layout::page(Section::Server, viewer, &crumbs, "Native API", body)
}

/// A schema's fields (of its parts, for one composed of others), or its type.
fn fields(schema: &Value) -> Markup {
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    };
    let rows: Vec<(&String, &Value, bool)> = parts
        .iter()
        .filter_map(|p| {
            let required: Vec<&str> = p["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            p["properties"].as_object().map(|props| {
                props
                    .iter()
                    .map(move |(k, v)| (k, v, required.contains(&k.as_str())))
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect();
    let refs: Vec<&Value> = parts
        .iter()
        .copied()
        .filter(|p| ref_name(p).is_some())
        .collect();
    html! {
        @if !refs.is_empty() {
            p { "Has every field of " @for (i, r) in refs.iter().enumerate() { @if i > 0 { ", " } (type_of(r)) } @if !rows.is_empty() { ", and:" } }
        }
        @if rows.is_empty() && refs.is_empty() {
            p { (type_of(schema)) }
        } @else if !rows.is_empty() {
            table.wide {
                thead { tr { th scope="col" { "Field" } th scope="col" { "Type" } th scope="col" { "Required" } th scope="col" { "Meaning" } } }
                tbody { @for (name, field, required) in &rows { tr {
                    td { code { (name) } }
                    td { (type_of(field)) }
                    td { @if *required { "yes" } @else { "no" } }
                    td { (field["description"].as_str().unwrap_or("")) }
                } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_grouped_and_bodies_linked() {
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "paths": {
                "/api/v1/monitors": {
                    "get": {"tags": ["monitors"], "operationId": "monitors_list", "summary": "The monitors",
                            "parameters": [{"name": "deployment", "in": "query", "required": false, "schema": {"type": "string"}}],
                            "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Monitors"}}}}}},
                    "post": {"tags": ["monitors"], "operationId": "monitors_create",
                             "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/MonitorIn"}}}},
                             "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Monitors"}}}}}}
                }
            },
            "components": {"schemas": {
                "Monitors": {"type": "object", "required": ["monitors"], "properties": {"monitors": {"type": "array", "items": {"$ref": "#/components/schemas/MonitorIn"}}}},
                "MonitorIn": {"type": "object", "properties": {"window": {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "Each window's length"}}}
            }}
        });
        let page = api_page(
            &Viewer {
                who: None,
                csrf: "",
            },
            &doc,
        )
        .into_string();
        assert!(page.contains("2 operations"));
        assert!(page.contains(r##"<h2 id="tag-monitors">monitors</h2>"##));
        assert!(page.contains("<code>deployment?</code>"));
        assert!(page.contains(r##"body: <a href="#schema-MonitorIn">MonitorIn</a>"##));
        assert!(page.contains(r##"list of <a href="#schema-MonitorIn">MonitorIn</a>"##));
        assert!(page.contains("string or number"));
        assert!(page.contains("Each window&#39;s length") || page.contains("Each window's length"));
    }
}
