//! Per-resource permissions of users who are not admins, as MLflow 3.17's basic-auth app
//! decides them: a user's level on an experiment or a registered model is what their grants
//! (their own and their roles', by id or `*`) give on top of the server's default permission
//! ([`Permission::resolve`]); a request needs READ to view, EDIT to change, MANAGE to delete,
//! restore or grant. Runs, logged models and artifacts count as their experiment's; model
//! versions and aliases as their registered model's.
//!
//! [`check`] runs in the auth middleware after the coarse route check, for those users only
//! (admins and tokens never reach it, so their requests carry no cost from it). It reads the
//! request's parameters as the handler will (query string and JSON body), resolves the resource
//! and refuses with 403 what the user may not do. Unlike MLflow, searches are filtered in SQL
//! ([`Visibility`]), so pages come back full and page tokens stay exact.
//!
//! A run or logged model that does not exist is refused with 403 rather than 404, so ids cannot
//! be probed (MLflow does the same); an experiment or registered model that does not exist gets
//! the default permission, and then the handler's 404.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use mltrail_core::{Action, Permission, ResourceType};
use mltrail_store::access::permissions::{self, Grant, Owner, Visibility, Visible};
use mltrail_store::MetaStore;

use crate::error::ApiError;
use crate::req::Req;
use serde_json::Value;

/// The experiment of each run and logged model seen, kept: neither ever moves to another
/// experiment, and asking the store on every logging request of a user who is not an admin
/// halved their log-metric throughput. Bounded; emptied when full.
/// (Runs and logged models in maps of their own, so a lookup borrows the id rather than
/// building a key.)
#[derive(Default)]
pub struct Owners(std::sync::Mutex<[std::collections::HashMap<String, i64>; 2]>);

const OWNERS_CAPACITY: usize = 100_000;

impl Owners {
    fn get(&self, owner: Owner, key: &str) -> Option<i64> {
        let kind = usize::from(owner == Owner::Run);
        self.0.lock().ok()?[kind].get(key).copied()
    }

    fn put(&self, owner: Owner, key: &str, experiment: i64) {
        let kind = usize::from(owner == Owner::Run);
        if let Ok(mut maps) = self.0.lock() {
            let map = &mut maps[kind];
            if map.len() >= OWNERS_CAPACITY {
                map.clear();
            }
            map.insert(key.to_string(), experiment);
        }
    }
}

/// A user's grants and the default they apply on top of, loaded with their credentials (and
/// cached with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub default: Permission,
    pub grants: Vec<Grant>,
}

impl Grants {
    /// The user's level on one resource.
    pub fn level(&self, resource_type: ResourceType, id: &str) -> Permission {
        Permission::resolve(
            self.grants
                .iter()
                .filter(|g| {
                    g.resource_type == resource_type
                        && (g.resource_pattern == id || g.resource_pattern == "*")
                })
                .map(|g| g.permission),
            self.default,
        )
    }

    /// The resources of one kind the user may read: all but those whose own grants deny it,
    /// or, when nothing is readable by default, only those granted.
    fn visible(&self, resource_type: ResourceType) -> Visible<String> {
        let everyone = self.level(resource_type, "*").allows(Action::Read);
        let mut named: Vec<String> = self
            .grants
            .iter()
            .filter(|g| g.resource_type == resource_type && g.resource_pattern != "*")
            .map(|g| g.resource_pattern.clone())
            .collect();
        named.sort();
        named.dedup();
        named.retain(|id| self.level(resource_type, id).allows(Action::Read) != everyone);
        if everyone {
            if named.is_empty() {
                Visible::All
            } else {
                Visible::AllBut(named)
            }
        } else {
            Visible::Only(named)
        }
    }

    pub fn visibility(&self) -> Visibility {
        let experiments = match self.visible(ResourceType::Experiment) {
            Visible::All => Visible::All,
            Visible::AllBut(ids) => {
                Visible::AllBut(ids.iter().filter_map(|i| i.parse().ok()).collect())
            }
            Visible::Only(ids) => {
                Visible::Only(ids.iter().filter_map(|i| i.parse().ok()).collect())
            }
        };
        Visibility {
            experiments,
            registered_models: self.visible(ResourceType::RegisteredModel),
        }
    }
}

/// What a route needs of a user, and where the resource is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Any authenticated user (the routes of mltrail's own API, which the coarse check
    /// decided; the user and permission routes, whose handlers decide).
    Open,
    /// Creating one of a kind: anyone without a DENY on all of it (the creator then MANAGEs it).
    Create(ResourceType),
    /// `experiment_id`.
    Experiment(Action),
    /// `experiment_name`.
    ExperimentByName(Action),
    /// `run_id` (or `run_uuid`), counted as its experiment.
    Run(Action),
    /// The logged model in the path, counted as its experiment.
    LoggedModel(Action),
    /// `name`.
    RegisteredModel(Action),
    /// The registered model named in mltrail's own `/v1/models/{name}/…` routes (evaluations,
    /// gates, approvals, gated alias moves).
    ModelInPath(Action),
    /// `name` for EDIT, and the experiment of `run_id` (if given) for READ.
    NewModelVersion,
    /// The artifact path in the URL: its first segment is the experiment id.
    Artifact(Action),
    /// The `path` query parameter of a listing.
    ArtifactListing,
    /// A search: filtered to what the user may read.
    Search,
    /// An MLflow route this table does not know: refused (fail closed, as MLflow 3).
    Unknown,
}

/// The run-logging routes whose handlers decode the body anyway (`runs/log-metric`,
/// `runs/log-batch`, the tracking hot path): a user's check of them is left to the handler
/// ([`RunCheck`]), which checks the run and linked models it decoded, so the body is read and
/// parsed once and the request needs no future of the guard's. (Reading it in the guard too
/// cost a user who is not an admin 14 % of log-metric throughput; docs/benchmarks.md.)
pub fn deferred(method: &Method, path: &str) -> bool {
    method == Method::POST
        && path
            .strip_prefix("/ajax-api")
            .or_else(|| path.strip_prefix("/api"))
            .and_then(|p| p.strip_prefix("/2.0/mlflow/"))
            .is_some_and(|route| matches!(route, "runs/log-metric" | "runs/log-batch"))
}

/// In a request's extensions: the guard left the caller's permission check to the
/// run-logging handler ([`deferred`]), which makes it with [`run_logging_allowed`].
#[derive(Clone)]
pub struct RunCheck {
    pub caller: Arc<crate::auth::Caller>,
    /// For the log line of a refusal (a `Uri` clone shares its bytes).
    pub uri: axum::http::Uri,
}

/// Whether `user` (with `grants`) may log to `run` and link the logged models `models` (UPDATE
/// on their experiments): what the guard decides for the other run routes.
pub async fn run_logging_allowed(
    store: &MetaStore,
    artifacts_uri: &str,
    owners: &Owners,
    user: &str,
    grants: &Grants,
    run: &str,
    models: impl Iterator<Item = &str>,
) -> Result<(), ApiError> {
    let checker = Checker {
        store,
        user,
        grants,
        artifacts_uri,
        owners,
    };
    checker
        .run_and_models(run, models, Action::Update)
        .await
        .map_err(refusal_error)
}

fn rule(method: &Method, path: &str) -> Rule {
    use Action::*;
    // The web UI's pages list and show only what the user may read (`ui.rs` asks the
    // visibility, as a search does).
    if path == "/" || path == "/ui" || path.starts_with("/ui/") {
        return Rule::Search;
    }
    let Some(p) = path
        .strip_prefix("/ajax-api")
        .or_else(|| path.strip_prefix("/api"))
    else {
        return Rule::Open;
    };
    if let Some(artifact) = p.strip_prefix("/2.0/mlflow-artifacts/artifacts") {
        return match (method, artifact) {
            // axum answers HEAD with the GET handler, so a HEAD lists too.
            (&Method::GET | &Method::HEAD, "" | "/") => Rule::ArtifactListing,
            (&Method::GET | &Method::HEAD, _) => Rule::Artifact(Read),
            (&Method::PUT, _) => Rule::Artifact(Update),
            // Deleting a stored artifact needs MANAGE, as in MLflow.
            (&Method::DELETE, _) => Rule::Artifact(Manage),
            _ => Rule::Unknown,
        };
    }
    if let Some(rest) = p.strip_prefix("/v1/models/") {
        let tail = rest.split_once('/').map(|(_, t)| t).unwrap_or_default();
        return Rule::ModelInPath(match (method, tail) {
            (&Method::GET | &Method::HEAD, _) => Read,
            // An approval is the approver role's; reading the model is all it asks here.
            (&Method::POST, t)
                if matches!(
                    t.split('/').collect::<Vec<_>>().as_slice(),
                    ["versions", _, "approvals"]
                ) =>
            {
                Read
            }
            (_, t) if t.starts_with("gates/") => Manage,
            _ => Update,
        });
    }
    let Some(route) = p.strip_prefix("/2.0/mlflow/") else {
        // mltrail's own routes (/v1/…: the coarse check decided) and the 3.0 user,
        // permission and role routes (their handlers decide).
        return Rule::Open;
    };
    if let Some(rest) = route.strip_prefix("logged-models/") {
        if rest == "search" {
            return Rule::Search;
        }
        let tail = rest.split_once('/').map(|(_, t)| t);
        return match (method, tail) {
            (&Method::GET, None) => Rule::LoggedModel(Read),
            (&Method::PATCH, None | Some("tags")) | (&Method::POST, Some("params")) => {
                Rule::LoggedModel(Update)
            }
            (&Method::DELETE, None) => Rule::LoggedModel(Delete),
            (&Method::DELETE, Some(t)) if t.starts_with("tags/") => Rule::LoggedModel(Delete),
            _ => Rule::Unknown,
        };
    }
    match route {
        "experiments/create" => Rule::Create(ResourceType::Experiment),
        "registered-models/create" => Rule::Create(ResourceType::RegisteredModel),
        "logged-models" => Rule::Experiment(Update),
        "experiments/get" => Rule::Experiment(Read),
        "experiments/get-by-name" => Rule::ExperimentByName(Read),
        "experiments/search"
        | "experiments/list"
        | "runs/search"
        | "registered-models/search"
        | "model-versions/search" => Rule::Search,
        "experiments/update"
        | "experiments/set-experiment-tag"
        | "experiments/delete-experiment-tag" => Rule::Experiment(Update),
        "experiments/delete" | "experiments/restore" => Rule::Experiment(Delete),
        "runs/create" => Rule::Experiment(Update),
        "runs/get" | "metrics/get-history" => Rule::Run(Read),
        "runs/update" | "runs/set-tag" | "runs/delete-tag" | "runs/log-parameter"
        | "runs/log-metric" | "runs/log-batch" | "runs/log-inputs" | "runs/outputs"
        | "runs/log-model" => Rule::Run(Update),
        "runs/delete" | "runs/restore" => Rule::Run(Delete),
        "registered-models/get"
        | "registered-models/get-latest-versions"
        | "model-versions/get"
        | "model-versions/get-download-uri" => Rule::RegisteredModel(Read),
        "registered-models/alias" => Rule::RegisteredModel(match *method {
            Method::GET => Read,
            Method::DELETE => Delete,
            _ => Update,
        }),
        "registered-models/update"
        | "registered-models/rename"
        | "registered-models/set-tag"
        | "registered-models/delete-tag"
        | "model-versions/update"
        | "model-versions/transition-stage"
        | "model-versions/set-tag" => Rule::RegisteredModel(Update),
        "registered-models/delete" | "model-versions/delete" | "model-versions/delete-tag" => {
            Rule::RegisteredModel(Delete)
        }
        "model-versions/create" => Rule::NewModelVersion,
        r if r.starts_with("users/") => Rule::Open,
        r if r.starts_with("experiments/permissions/")
            || r.starts_with("registered-models/permissions/") =>
        {
            Rule::Open
        }
        _ => Rule::Unknown,
    }
}

/// Why a request is refused: 403 with the reason, or a request the handler would refuse too
/// (a missing or malformed parameter), answered as the handler would.
pub enum Refusal {
    Denied(String),
    Invalid(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Invalid(e)
    }
}

fn lacks(user: &str, level: Permission, action: Action, what: &str) -> Refusal {
    let needs = match action {
        Action::Read => "READ",
        Action::Update => "EDIT",
        Action::Delete | Action::Manage => "MANAGE",
    };
    Refusal::Denied(format!(
        "user `{user}` has {level} on {what}; this request needs {needs}"
    ))
}

/// Checks a request of a user who is not an admin against their grants; returns the request
/// (rebuilt around its body when the body had to be read) with the user's [`Visibility`] added
/// for searches.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    store: &MetaStore,
    artifacts_uri: &str,
    owners: &Owners,
    user: &str,
    grants: &Grants,
    request: Request,
    max_body: usize,
) -> Result<Request, Response> {
    let rule = rule(request.method(), request.uri().path());
    match rule {
        Rule::Create(resource_type) => {
            // As MLflow: a DENY on all of a kind forbids creating one.
            if grants.level(resource_type, "*") == Permission::Deny {
                return Err(refusal(Refusal::Denied(format!(
                    "user `{user}` holds DENY on every {resource_type}: they may not create one"
                ))));
            }
            return Ok(request);
        }
        Rule::Open => return Ok(request),
        Rule::Unknown => {
            return Err(refusal(Refusal::Denied(format!(
                "user `{user}` may not call this route (not an admin)"
            ))))
        }
        Rule::Search => {
            let mut request = request;
            request
                .extensions_mut()
                .insert(Arc::new(grants.visibility()));
            return Ok(request);
        }
        _ => {}
    }
    // Artifacts are named in the URL; everything else in the query or the JSON body, which is
    // read here and handed on to the handler unchanged.
    let (parts, body) = request.into_parts();
    let reads_body = !matches!(
        rule,
        Rule::Artifact(_) | Rule::ArtifactListing | Rule::LoggedModel(_)
    );
    let (bytes, body) = if reads_body {
        match axum::body::to_bytes(body, max_body).await {
            Ok(bytes) => (bytes.clone(), Body::from(bytes)),
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "the request body is unreadable or larger than {max_body} bytes"
                ))
                .into_response())
            }
        }
    } else {
        (Default::default(), body)
    };
    if let Err(refused) = decide(
        store,
        artifacts_uri,
        owners,
        user,
        grants,
        rule,
        &parts,
        &bytes,
    )
    .await
    {
        return Err(refusal(refused));
    }
    Ok(Request::from_parts(parts, body))
}

/// What a run's logging request names, borrowed from its body: the run and the logged models
/// it links to (`Checker::linked_models` reads the same fields from a built request).
#[derive(serde::Deserialize)]
struct RunFields<'a> {
    #[serde(borrow, default)]
    run_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    run_uuid: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    model_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    metrics: Option<Vec<LinkedModel<'a>>>,
    #[serde(borrow, default)]
    models: Option<Vec<LinkedModel<'a>>>,
}

#[derive(serde::Deserialize)]
struct LinkedModel<'a> {
    #[serde(borrow, default)]
    model_id: Option<std::borrow::Cow<'a, str>>,
}

impl RunFields<'_> {
    /// `run_id`, else `run_uuid`, as `Req::run_id` chooses.
    fn run(&self) -> Option<&str> {
        match self.run_id.as_deref().filter(|r| !r.is_empty()) {
            Some(run) => Some(run),
            None => self.run_uuid.as_deref(),
        }
    }

    fn model_ids(&self) -> impl Iterator<Item = &str> {
        let lists = self.metrics.iter().chain(&self.models).flatten();
        self.model_id
            .as_deref()
            .into_iter()
            .chain(lists.filter_map(|m| m.model_id.as_deref()))
            .filter(|id| !id.is_empty())
    }
}

fn refusal(refused: Refusal) -> Response {
    refusal_error(refused).into_response()
}

fn refusal_error(refused: Refusal) -> ApiError {
    match refused {
        Refusal::Denied(why) => {
            ApiError::new(axum::http::StatusCode::FORBIDDEN, "PERMISSION_DENIED", why)
        }
        Refusal::Invalid(e) => e,
    }
}

/// Decides one request's resources against one user's grants.
struct Checker<'a> {
    store: &'a MetaStore,
    user: &'a str,
    grants: &'a Grants,
    /// The artifact store's URI: a version's source may name a place under it.
    artifacts_uri: &'a str,
    owners: &'a Owners,
}

impl Checker<'_> {
    /// (`what` is only worded for a refusal: an allowed request, the tracking hot path for a
    /// user who is not an admin, formats nothing.)
    fn needs(
        &self,
        level: Permission,
        action: Action,
        what: impl FnOnce() -> String,
    ) -> Result<(), Refusal> {
        if level.allows(action) {
            Ok(())
        } else {
            Err(lacks(self.user, level, action, &what()))
        }
    }

    fn experiment(&self, id: i64, action: Action) -> Result<(), Refusal> {
        let mut digits = itoa::Buffer::new();
        let level = self
            .grants
            .level(ResourceType::Experiment, digits.format(id));
        self.needs(level, action, || format!("experiment {id}"))
    }

    fn model(&self, name: &str, action: Action) -> Result<(), Refusal> {
        let level = self.grants.level(ResourceType::RegisteredModel, name);
        self.needs(level, action, || format!("registered model `{name}`"))
    }

    /// `action` on a run, and UPDATE on each logged model a request links to it.
    async fn run_and_models(
        &self,
        run: &str,
        models: impl Iterator<Item = &str>,
        action: Action,
    ) -> Result<(), Refusal> {
        self.owned(Owner::Run, run, action).await?;
        for id in models.filter(|id| !id.is_empty()) {
            self.owned(Owner::LoggedModel, id, Action::Update).await?;
        }
        Ok(())
    }

    /// A run or logged model counts as its experiment; one that does not exist is refused
    /// like one the user may not see.
    async fn owned(&self, owner: Owner, key: &str, action: Action) -> Result<(), Refusal> {
        // Experiments can be renamed, so a name is always asked; runs and logged models stay.
        let kept = (owner != Owner::ExperimentName)
            .then(|| self.owners.get(owner, key))
            .flatten();
        let found = match kept {
            Some(id) => Some(id),
            None => {
                let found = permissions::experiment_of(self.store, owner, key)
                    .await
                    .map_err(|e| Refusal::Invalid(ApiError::from(e)))?;
                if let (Some(id), true) = (found, owner != Owner::ExperimentName) {
                    self.owners.put(owner, key, id);
                }
                found
            }
        };
        let what = match owner {
            Owner::Run => "run",
            Owner::LoggedModel => "logged model",
            Owner::ExperimentName => "experiment",
        };
        match found {
            Some(id) => self.experiment(id, action),
            None if owner == Owner::ExperimentName => Ok(()),
            None => Err(Refusal::Denied(format!(
                "user `{}` may not use {what} {key}",
                self.user
            ))),
        }
    }

    /// The logged models a logging request links to (`model_id` of a metric, of a batch's
    /// metrics, of `runs/outputs`' models): each needs EDIT on its experiment, as in MLflow.
    async fn linked_models(&self, req: &Req) -> Result<(), Refusal> {
        let mut ids: Vec<&str> = Vec::new();
        ids.extend(req.value("model_id").and_then(Value::as_str));
        for list in ["metrics", "models"] {
            if let Some(Value::Array(items)) = req.value(list) {
                ids.extend(items.iter().filter_map(|i| i.get("model_id")?.as_str()));
            }
        }
        for id in ids.into_iter().filter(|id| !id.is_empty()) {
            self.owned(Owner::LoggedModel, id, Action::Update).await?;
        }
        Ok(())
    }

    /// What a new model version is made from must be readable: `run_id`, `model_id`, and a
    /// `runs:/…` or `models:/…` source.
    async fn version_sources(&self, req: &Req) -> Result<(), Refusal> {
        if let Some(run) = req.opt_str("run_id")?.filter(|r| !r.is_empty()) {
            self.owned(Owner::Run, &run, Action::Read).await?;
        }
        if let Some(id) = req.opt_str("model_id")?.filter(|m| !m.is_empty()) {
            self.owned(Owner::LoggedModel, &id, Action::Read).await?;
        }
        let source = req.opt_str("source")?.unwrap_or_default();
        // A place in the artifact store (`mlflow-artifacts:/5/…`, or under the store's own
        // URI): the deployment will read those files with the server's access, so the user
        // must be able to read them. Never the prediction archive (callers' inputs).
        if let Some(path) =
            mltrail_core::artifact_path::source_artifact_path(&source, self.artifacts_uri)
        {
            if in_archive(path.as_str()) {
                return Err(Refusal::Denied(format!(
                    "user `{}` may not make a model version from the prediction archive",
                    self.user
                )));
            }
            return artifact(self, path.as_str(), Action::Read);
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let run = rest
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            self.owned(Owner::Run, run, Action::Read).await?;
        } else if let Some(rest) = source.strip_prefix("models:/") {
            let rest = rest.trim_start_matches('/');
            match rest.split_once('/') {
                // models:/NAME/VERSION (or a stage): another registered model's version.
                Some((name, _)) => self.model(name, Action::Read)?,
                None => match rest.split_once('@') {
                    Some((name, _)) => self.model(name, Action::Read)?,
                    // models:/<logged model id>
                    None => self.owned(Owner::LoggedModel, rest, Action::Read).await?,
                },
            }
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    store: &MetaStore,
    artifacts_uri: &str,
    owners: &Owners,
    user: &str,
    grants: &Grants,
    rule: Rule,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<(), Refusal> {
    let checker = Checker {
        store,
        user,
        grants,
        artifacts_uri,
        owners,
    };
    let params = || Req::from_parts(String::new(), parts.uri.query(), body);
    match rule {
        Rule::Experiment(action) => {
            let req = params()?;
            // `runs/create` without an experiment logs to the default one (0), as its handler.
            let id = match req.opt_str("experiment_id")?.filter(|s| !s.is_empty()) {
                Some(raw) => crate::req::parse_experiment_id(&raw)?.0,
                None if parts.uri.path().ends_with("/runs/create") => 0,
                None => return Err(ApiError::missing("experiment_id").into()),
            };
            checker.experiment(id, action)?;
            // A logged model made from a run must be able to read that run.
            match req.opt_str("source_run_id")?.filter(|r| !r.is_empty()) {
                Some(run) => checker.owned(Owner::Run, &run, Action::Read).await,
                None => Ok(()),
            }
        }
        Rule::ExperimentByName(action) => {
            let name = params()?.str("experiment_name")?;
            checker.owned(Owner::ExperimentName, &name, action).await
        }
        Rule::Run(action) => {
            // The tracking hot path (log-metric, log-batch): the run and linked models read
            // from the body without building it as JSON values. Anything unusual (a query, a
            // field of the wrong type) takes the general path, which words the error.
            let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            if parts.uri.query().is_none() && object {
                if let Ok(fields) = serde_json::from_slice::<RunFields>(body) {
                    if let Some(run) = fields.run() {
                        return checker
                            .run_and_models(run, fields.model_ids(), action)
                            .await;
                    }
                }
            }
            let req = params()?;
            checker.owned(Owner::Run, &req.run_id()?, action).await?;
            checker.linked_models(&req).await
        }
        Rule::LoggedModel(action) => {
            let id = parts
                .uri
                .path()
                .split("/logged-models/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default();
            let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
            checker.owned(Owner::LoggedModel, &id, action).await
        }
        Rule::RegisteredModel(action) => checker.model(&params()?.str("name")?, action),
        Rule::ModelInPath(action) => {
            let path = parts.uri.path();
            let rest = path
                .split_once("/v1/models/")
                .map(|(_, r)| r)
                .unwrap_or_default();
            let name = rest.split('/').next().unwrap_or_default();
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            checker.model(&name, action)
        }
        Rule::NewModelVersion => {
            let req = params()?;
            checker.model(&req.str("name")?, Action::Update)?;
            checker.version_sources(&req).await
        }
        Rule::Artifact(action) => {
            let path = parts
                .uri
                .path()
                .split_once("/mlflow-artifacts/artifacts/")
                .map(|(_, p)| p)
                .unwrap_or_default();
            artifact(&checker, path, action)
        }
        Rule::ArtifactListing => {
            artifact(&checker, &listed_folder(parts.uri.query()), Action::Read)
        }
        Rule::Open | Rule::Create(_) | Rule::Search | Rule::Unknown => Ok(()),
    }
}

/// The first folder of an artifact path as the store resolves it: percent-decoded (the router
/// decodes the URL's path), empty segments skipped (the store's path parser skips them).
fn first_folder(path: &str) -> String {
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    path.split('/')
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Whether an artifact path is in the archive of prediction logs (`predictions/…`), which
/// holds callers' inputs: its access is decided by token scopes and release roles
/// ([`crate::auth::Need::of`]), not by grants.
pub(crate) fn in_archive(path: &str) -> bool {
    // As a case-insensitive file system (or one that drops trailing dots and spaces) would
    // resolve it: `Predictions/…` is the archive there.
    first_folder(path)
        .trim_end_matches(['.', ' '])
        .eq_ignore_ascii_case("predictions")
}

/// The folder an artifact listing names: its `path` query parameter (the listing reads
/// nothing else).
pub(crate) fn listed_folder(query: Option<&str>) -> String {
    Req::from_parts(String::new(), query, b"")
        .ok()
        .and_then(|req| req.opt_str("path").ok().flatten())
        .unwrap_or_default()
}

/// The experiment an artifact path's first folder is: only an id's one spelling is (the store
/// keeps `05/` and `+5/` as the names they are, folders of no experiment).
fn experiment_folder(path: &str) -> Option<i64> {
    let first = first_folder(path);
    let canonical = first == "0"
        || (!first.is_empty()
            && !first.starts_with('0')
            && first.bytes().all(|b| b.is_ascii_digit()));
    first.parse().ok().filter(|_| canonical)
}

/// An artifact counts as the experiment its path starts with (`<experiment id>/…`, where
/// MLflow's runs and logged models keep theirs); the archive of prediction logs was decided by
/// release roles; any other path gets the default permission on experiments, as in MLflow.
fn artifact(checker: &Checker<'_>, path: &str, action: Action) -> Result<(), Refusal> {
    if in_archive(path) {
        return Ok(());
    }
    match experiment_folder(path) {
        Some(id) => checker.experiment(id, action),
        None => checker.needs(checker.grants.default, action, || {
            "artifacts outside any experiment".to_string()
        }),
    }
}

/// What the caller may see in a search: what [`check`] found for a user who is not an admin,
/// everything for anyone else.
pub(crate) struct Seen(pub Arc<Visibility>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Seen {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Seen(
            parts
                .extensions
                .get::<Arc<Visibility>>()
                .cloned()
                .unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_read_of_a_logging_body_names_what_the_general_one_does() {
        let batch = br#"{"run_id":"r1","metrics":[{"key":"m","value":1,"model_id":"m-1"},{"key":"n","value":2}],"params":[]}"#;
        let fields: RunFields = serde_json::from_slice(batch).unwrap();
        assert_eq!(fields.run(), Some("r1"));
        assert_eq!(fields.model_ids().collect::<Vec<_>>(), ["m-1"]);
        let req = Req::from_parts(String::new(), None, batch).unwrap();
        assert_eq!(req.run_id().unwrap(), "r1");
        let fields: RunFields =
            serde_json::from_slice(br#"{"run_id":"","run_uuid":"r2","model_id":"m-2"}"#).unwrap();
        assert_eq!(fields.run(), Some("r2"));
        assert_eq!(fields.model_ids().collect::<Vec<_>>(), ["m-2"]);
        // Wrong types and repeated fields are left to the general path, which words the error.
        for odd in [
            &br#"{"run_id":5}"#[..],
            br#"{"run_id":"a","run_id":"b"}"#,
            br#"{"run_id":"a","metrics":[{"model_id":7}]}"#,
        ] {
            assert!(serde_json::from_slice::<RunFields>(odd).is_err(), "{odd:?}");
        }
        // serde reads a struct from a list too (`["r1"]`): `decide` takes only objects this
        // way and leaves the rest to the general path, which refuses them.
        let list: RunFields = serde_json::from_slice(br#"["r1"]"#).unwrap();
        assert_eq!(list.run(), Some("r1"));
    }

    fn grant(rt: ResourceType, pattern: &str, permission: Permission) -> Grant {
        Grant {
            resource_type: rt,
            resource_pattern: pattern.into(),
            permission,
        }
    }

    #[test]
    fn routes_name_their_resource_and_action() {
        use Action::*;
        let cases = [
            (
                Method::POST,
                "/api/2.0/mlflow/experiments/create",
                Rule::Create(ResourceType::Experiment),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/create",
                Rule::Create(ResourceType::RegisteredModel),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/logged-models",
                Rule::Experiment(Update),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow/experiments/get",
                Rule::Experiment(Read),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/runs/log-batch",
                Rule::Run(Update),
            ),
            (
                Method::POST,
                "/ajax-api/2.0/mlflow/runs/delete",
                Rule::Run(Delete),
            ),
            (Method::POST, "/api/2.0/mlflow/runs/search", Rule::Search),
            // mltrail's model routes name the model in the path.
            (
                Method::GET,
                "/api/v1/models/credit/gate-reports",
                Rule::ModelInPath(Read),
            ),
            (
                Method::PUT,
                "/api/v1/models/credit/gates/production",
                Rule::ModelInPath(Manage),
            ),
            (
                Method::POST,
                "/api/v1/models/credit/aliases/production",
                Rule::ModelInPath(Update),
            ),
            (
                Method::POST,
                "/api/v1/models/credit/versions/2/approvals",
                Rule::ModelInPath(Read),
            ),
            (
                Method::POST,
                "/api/v1/models/credit/versions/2/evaluation",
                Rule::ModelInPath(Update),
            ),
            (
                Method::POST,
                "/api/v1/models/credit/aliases/approvals",
                Rule::ModelInPath(Update),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow/registered-models/alias",
                Rule::RegisteredModel(Delete),
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/registered-models/alias",
                Rule::RegisteredModel(Update),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow/logged-models/m-1",
                Rule::LoggedModel(Read),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow/logged-models/m-1/tags/k",
                Rule::LoggedModel(Delete),
            ),
            (
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/r/x",
                Rule::Artifact(Update),
            ),
            (
                Method::DELETE,
                "/api/2.0/mlflow-artifacts/artifacts/1/r/x",
                Rule::Artifact(Manage),
            ),
            (
                Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts",
                Rule::ArtifactListing,
            ),
            (
                Method::HEAD,
                "/api/2.0/mlflow-artifacts/artifacts/",
                Rule::ArtifactListing,
            ),
            (
                Method::POST,
                "/api/2.0/mlflow/runs/not-a-route",
                Rule::Unknown,
            ),
            (Method::POST, "/api/v1/datasets", Rule::Open),
        ];
        for (method, path, expected) in cases {
            assert_eq!(rule(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn only_an_ids_one_spelling_is_its_experiments_folder() {
        assert_eq!(experiment_folder("5/r/artifacts/x"), Some(5));
        assert_eq!(experiment_folder("%35/r"), Some(5));
        assert_eq!(experiment_folder("0/x"), Some(0));
        for path in ["05/x", "+5/x", "-0/x", "5a/x", "", "predictions/x"] {
            assert_eq!(experiment_folder(path), None, "{path}");
        }
    }

    #[test]
    fn the_archive_is_the_archive_however_it_is_spelled() {
        for path in [
            "predictions/d",
            "Predictions/d",
            "predictions./d",
            "//predictions",
            "%70redictions/x",
        ] {
            assert!(in_archive(path), "{path}");
        }
        for path in ["1/predictions", "predictionsx/d", ""] {
            assert!(!in_archive(path), "{path}");
        }
    }

    #[test]
    fn searches_see_what_grants_and_the_default_allow() {
        use Permission::*;
        use ResourceType::*;
        let g = Grants {
            default: Read,
            grants: vec![grant(Experiment, "2", Deny), grant(Experiment, "3", Edit)],
        };
        assert_eq!(g.visibility().experiments, Visible::AllBut(vec![2]));
        assert_eq!(g.visibility().registered_models, Visible::All);
        let g = Grants {
            default: NoPermissions,
            grants: vec![
                grant(Experiment, "5", Read),
                grant(RegisteredModel, "m", Manage),
                grant(RegisteredModel, "x", Deny),
            ],
        };
        assert_eq!(g.visibility().experiments, Visible::Only(vec![5]));
        assert_eq!(
            g.visibility().registered_models,
            Visible::Only(vec!["m".to_string()])
        );
        // A `*` grant counts for every id, and a DENY on one id still hides it.
        let g = Grants {
            default: NoPermissions,
            grants: vec![grant(Experiment, "*", Read), grant(Experiment, "7", Deny)],
        };
        assert_eq!(g.visibility().experiments, Visible::AllBut(vec![7]));
        assert_eq!(g.level(Experiment, "8"), Read);
    }
}
