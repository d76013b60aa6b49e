//! The native API's OpenAPI 3.1 document (`/api/v1/openapi.json` on the tracking server and on
//! each `mltrail serve`). Every native route is declared once, by `#[utoipa::path]` on its
//! handler, and routed through `utoipa_axum::routes!`, so a route cannot exist without its
//! entry; request and response bodies are the types the handlers decode and encode. What is
//! common to every operation (the error body, who may call) is added here once.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::error::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{OpenApi, ToSchema};

/// An answer with nothing to say beyond its status.
#[derive(Serialize, ToSchema)]
pub struct Done {}

/// The tracking server's native API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mltrail native API",
        description = "mltrail's own API beside the MLflow REST API (`/api/2.0/mlflow/…`): \
            deployments and their routing, datasets, catalogs, release gates, evaluations, \
            model cards, monitors and alerts, business metrics and annotations, the audit \
            trail, privacy requests, lineage and log settings. Errors are \
            `{\"error_code\", \"message\"}` with a 4xx or 5xx status. When the server requires \
            authentication, send a token (`Authorization: Bearer …`) or a user's password \
            (HTTP Basic).",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, Done)),
    modifiers(&Common),
)]
pub struct TrackingApi;

/// A serving process's native API (`mltrail serve`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mltrail serving API",
        description = "What one `mltrail serve` process answers: predictions (MLflow's \
            `/invocations` and mltrail's `/api/v1/predict`), feedback, each prediction's \
            record, explanation and counterfactuals, and what is deployed. Errors are \
            `{\"error_code\", \"message\"}` (with `column` and `row` when one input was \
            wrong). When the process requires authentication, send a token \
            (`Authorization: Bearer …`) or a user's password (HTTP Basic).",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, Done)),
    modifiers(&Common),
)]
pub struct ServingApi;

/// Adds to every operation what every operation shares: the error body for 4xx and 5xx, and
/// the credentials a server that authenticates accepts (none when it does not).
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "password",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        doc.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("token", Vec::<String>::new()),
            SecurityRequirement::new("password", Vec::<String>::new()),
        ]);
    }
}

/// What is added once the routes' paths are merged in (the modifier above runs before): the
/// error responses every operation can give, and operation ids unique across modules
/// (`<tag>_<handler>`: handlers are named for what they do within their module).
pub fn completed(mut doc: Document) -> Document {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let operations: [&mut Option<Operation>; 5] = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if let (Some(tag), Some(id)) = (
                operation.tags.as_ref().and_then(|t| t.first()),
                &operation.operation_id,
            ) {
                operation.operation_id = Some(format!("{tag}_{id}"));
            }
            let responses = &mut operation.responses.responses;
            responses
                .entry("4XX".into())
                .or_insert_with(|| error("The request was refused: the message says why."));
            responses
                .entry("5XX".into())
                .or_insert_with(|| error("The server could not answer."));
        }
    }
    doc
}

/// The document as served: rendered once, when the routes are built.
#[derive(Clone)]
pub struct Rendered(axum::body::Bytes);

impl Rendered {
    pub fn new(doc: &Document) -> Rendered {
        // Built from types known when the binary is (`document_tests` render both documents),
        // so serializing cannot fail: a failure is a defect of this crate, not of any input.
        let text = serde_json::to_vec(doc).expect("the OpenAPI document serializes");
        Rendered(text.into())
    }
}

impl IntoResponse for Rendered {
    fn into_response(self) -> axum::response::Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

#[cfg(test)]
mod document_tests {
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// What every operation of a document must have, and every reference must reach.
    fn check(doc: &utoipa::openapi::OpenApi) -> Value {
        let doc = serde_json::to_value(doc).expect("renders");
        assert_eq!(doc["openapi"], "3.1.0");
        let text = doc.to_string();
        // Every `$ref` names a schema the document holds.
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').expect("a closed string")];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} is referred to but not in components"
            );
        }
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let params: Vec<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(name, _)| name))
                .collect();
            for (method, op) in item.as_object().expect("a path item") {
                let id = op["operationId"].as_str().expect("an operation id");
                assert!(ids.insert(id.to_string()), "{id} is used twice");
                assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
                assert!(
                    op["responses"]["200"]["content"].is_object(),
                    "{method} {path} documents no answer"
                );
                assert!(
                    op["responses"]["4XX"].is_object(),
                    "{method} {path}: no 4XX"
                );
                for name in &params {
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == *name && p["in"] == "path")
                    });
                    assert!(declared, "{method} {path}: `{name}` is not declared");
                }
                if let Some(ps) = op["parameters"].as_array() {
                    for p in ps.iter().filter(|p| p["in"] == "path") {
                        let name = p["name"].as_str().expect("a name");
                        assert!(
                            params.contains(&name),
                            "{method} {path}: `{name}` is not in the path"
                        );
                    }
                }
            }
        }
        doc
    }

    #[test]
    fn tracking_document_is_complete() {
        let doc = check(&crate::openapi_document());
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.keys().all(|p| p.starts_with("/api/v1/")));
        // Each family of the native API is in it.
        for path in [
            "/api/v1/datasets",
            "/api/v1/deployments/{deployment}/policy",
            "/api/v1/models/{name}/gates/{alias}",
            "/api/v1/monitors/{id}/results",
            "/api/v1/alerts",
            "/api/v1/metrics/{name}",
            "/api/v1/annotations/{id}",
            "/api/v1/audit/events",
            "/api/v1/settings/log",
            "/api/v1/privacy/erase",
            "/api/v1/catalogs/{name}",
            "/api/v1/lineage",
            "/api/v1/predictions/{id}/record",
            "/api/v1/auth/whoami",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
    }

    #[test]
    fn serving_document_is_complete() {
        let doc = check(&crate::scoring::openapi_document());
        let paths = doc["paths"].as_object().expect("paths");
        for path in ["/invocations", "/api/v1/predict", "/api/v1/feedback"] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
        let csv = &doc["paths"]["/api/v1/predict"]["post"]["requestBody"]["content"]["text/csv"];
        assert!(csv.is_object(), "CSV scoring is documented");
    }
}
