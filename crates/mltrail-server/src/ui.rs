//! The web UI's routes: each handler fetches what its page shows, with the caller's
//! permissions (the experiments and models a user may not read are neither listed nor shown),
//! and hands it to `mltrail_web` to render. With `--auth on` the guard has authenticated the
//! browser (HTTP Basic) before a handler runs, as for the API.

use crate::permissions::Seen;
use crate::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use mltrail_core::artifact_path::{source_artifact_path, ArtifactPath};
use mltrail_core::state::ViewType;
use mltrail_core::{tags, ExperimentId, MonitorId};
use mltrail_store::records::{Page, PageToken, Run};
use mltrail_store::{
    datasets, experiments, metrics, monitors, registry, runs, StoreError, StoreErrorKind,
};
use mltrail_web::chart::{self, Series};
use mltrail_web::runs::{ArtifactEntry, Column, ColumnKind, Comparison, Preview, RunPage};
use mltrail_web::runs::{RunsQuery, RunsTable};
use mltrail_web::{layout, Section, Viewer};
use std::sync::Arc;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/ui", get(|| async { Redirect::to("/ui/experiments") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/experiments") }))
        // Pages that are not the UI's own (a drift report) make browsers ask for an icon.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/ui/static/app.css", get(stylesheet))
        .route("/ui/static/app.js", get(script))
        .route("/ui/experiments", get(experiments_list))
        .route("/ui/experiments/{id}", get(experiment_runs))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/compare", get(compare))
        .route("/ui/models", get(models))
        .route("/ui/models/{name}", get(model))
        .route("/ui/models/{name}/versions/{version}", get(version))
        .route("/ui/login", get(sign_in_page).post(sign_in))
        .route("/ui/logout", axum::routing::post(sign_out))
        .route("/ui/audit", get(audit_trail))
        .route("/ui/audit/verify", axum::routing::post(verify_trail))
        .route("/ui/predictions", get(prediction))
        .route("/ui/datasets", get(datasets_list))
        .route("/ui/datasets/{name}", get(dataset))
        .route("/ui/datasets/{name}/drift", get(dataset_drift))
        .route("/ui/deployments", get(deployments_list))
        .route("/ui/deployments/{name}", get(deployment))
        .route("/ui/monitors", get(monitors_list))
        .route("/ui/monitors/{id}", get(monitor))
}

/// What the UI keeps between requests: the secret its forms' CSRF tokens are keyed with, and
/// the last verification of the trail run from it.
pub struct UiState {
    csrf_key: [u8; 32],
    verification: std::sync::Mutex<Option<mltrail_web::audit::Verification>>,
    /// What serving replicas reported for the live panels, by deployment (in memory: the
    /// last hour of reports since this server started).
    live: std::sync::Mutex<std::collections::HashMap<String, mltrail_web::live::LiveDeployment>>,
    /// The server speaks HTTPS itself: its session cookie is `Secure`.
    secure: bool,
}

/// Deployments whose reports are kept at most; past it the one heard from longest ago goes.
const LIVE_DEPLOYMENTS: usize = 1_000;

impl Default for UiState {
    fn default() -> Self {
        // A fresh key per start: a token outlives neither the process nor the user it names.
        UiState {
            csrf_key: crate::auth::random_key(),
            verification: std::sync::Mutex::new(None),
            live: Default::default(),
            secure: false,
        }
    }
}

impl UiState {
    /// Marks the session cookie `Secure` (for a server that serves HTTPS itself).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Keeps a replica's report of its metrics (`POST /api/v1/deployments/metrics`).
    pub fn report(
        &self,
        deployment: &str,
        replica: &str,
        boot: &str,
        sample: mltrail_web::live::LiveSample,
    ) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if !live.contains_key(deployment) && live.len() >= LIVE_DEPLOYMENTS {
            let stalest = live
                .iter()
                .min_by_key(|(_, d)| {
                    d.replicas
                        .values()
                        .filter_map(|s| s.back())
                        .map(|s| s.time_ms)
                        .max()
                })
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                live.remove(&name);
            }
        }
        live.entry(deployment.to_string())
            .or_default()
            .add(replica, boot, sample);
    }

    /// The token a form posted by `who` must carry: a keyed hash of the principal, so another
    /// site cannot forge a request the browser would send with the user's credentials.
    fn csrf_token(&self, who: &str) -> String {
        blake3::keyed_hash(&self.csrf_key, who.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Whether `token` is `who`'s (compared in constant time: `blake3::Hash`'s equality).
    fn csrf_holds(&self, who: &str, token: &str) -> bool {
        blake3::Hash::from_hex(token)
            .is_ok_and(|t| t == blake3::keyed_hash(&self.csrf_key, who.as_bytes()))
    }
}

/// Points per curve a chart receives: a 10,000-step history is cut to this many (each
/// bucket's lowest and highest value), so a comparison of 20 such runs stays light.
const CURVE_BUCKETS: usize = 400;
/// Runs per page of an experiment's table.
const RUNS_PER_PAGE: i64 = 50;
/// Runs one comparison takes at most.
const MAX_COMPARED: usize = 50;
/// Bytes of an artifact shown as text or a table.
const PREVIEW_BYTES: usize = 256 << 10;

/// Why a page cannot be shown, as the page a browser then gets.
enum Problem {
    NotFound(String),
    BadRequest(String),
    Forbidden(String),
    Store(Box<StoreError>),
    /// A page already rendered, answered with this status.
    Rendered(StatusCode, String),
    Other(String),
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Problem::Store(Box::new(e))
    }
}

struct Shown {
    section: Section,
    viewer: Option<String>,
    /// The viewer's CSRF token, for the sign-out form in the page's header.
    csrf: String,
    problem: Problem,
}

impl IntoResponse for Shown {
    fn into_response(self) -> Response {
        let (status, title, message) = match self.problem {
            Problem::Rendered(status, page) => return (status, Html(page)).into_response(),
            Problem::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Problem::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Problem::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            Problem::Store(e) => match e.kind() {
                StoreErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found", e.to_string()),
                StoreErrorKind::InvalidParameter => {
                    (StatusCode::BAD_REQUEST, "Bad request", e.to_string())
                }
                StoreErrorKind::Unavailable | StoreErrorKind::Closed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    format!("The store cannot answer now; try again shortly ({e})."),
                ),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string()),
            },
            Problem::Other(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Error", m),
        };
        let viewer = Viewer {
            who: self.viewer.as_deref(),
            csrf: &self.csrf,
        };
        (
            status,
            Html(layout::problem(self.section, &viewer, title, &message).into_string()),
        )
            .into_response()
    }
}

/// Who is looking, and what they may see.
struct Ctx {
    viewer: Option<String>,
    admin: bool,
    seen: Seen,
    /// The token this user's forms carry.
    csrf: String,
}

impl axum::extract::FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = parts.extensions.get::<Arc<crate::auth::Caller>>();
        let viewer = caller.map(|c| c.principal.to_string());
        // With auth off there is no caller, and everyone may do everything.
        let admin = caller.is_none_or(|c| c.admin);
        let seen = Seen::from_request_parts(parts, state).await?;
        let csrf = state
            .ui
            .csrf_token(viewer.as_deref().unwrap_or("anonymous"));
        Ok(Ctx {
            viewer,
            admin,
            seen,
            csrf,
        })
    }
}

impl Ctx {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            who: self.viewer.as_deref(),
            csrf: &self.csrf,
        }
    }

    /// Who the audit records and CSRF tokens name (`anonymous` with auth off).
    fn who(&self) -> String {
        self.viewer.clone().unwrap_or_else(|| "anonymous".into())
    }

    fn fail(&self, section: Section, problem: impl Into<Problem>) -> Shown {
        Shown {
            section,
            viewer: self.viewer.clone(),
            csrf: self.csrf.clone(),
            problem: problem.into(),
        }
    }

    fn experiment_visible(&self, id: &str) -> bool {
        id.parse::<i64>()
            .is_ok_and(|id| self.seen.0.experiments.allows(&id))
    }
}

type PageResult = Result<Html<String>, Shown>;

fn html(markup: Markup) -> PageResult {
    Ok(Html(markup.into_string()))
}

/// The query's values, each key possibly repeated (`col=…&col=…`).
fn pairs(query: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn all(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

async fn stylesheet() -> Response {
    asset(layout::STYLESHEET, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(layout::SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// `/`: the experiments list; the script there turns the mlflow client's `/#/…` links into
/// the matching page.
async fn home(state: State<AppState>, ctx: Ctx) -> PageResult {
    experiments_list(state, ctx).await
}

async fn experiments_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let page = experiments::search_experiments(
        &state.store,
        ViewType::ActiveOnly,
        "",
        &[],
        50_000,
        PageToken::default(),
        &ctx.seen.0.experiments,
    )
    .await
    .map_err(|e| ctx.fail(Section::Experiments, e))?;
    html(mltrail_web::runs::experiments_page(
        &ctx.viewer(),
        &page.items,
    ))
}

async fn experiment_runs(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let fail = |p: Problem| ctx.fail(Section::Experiments, p);
    let experiment_id = ExperimentId::parse(&id)
        .filter(|_| ctx.experiment_visible(&id))
        .ok_or_else(|| {
            fail(Problem::NotFound(format!(
                "No experiment {id} that you may read."
            )))
        })?;
    let experiment = experiments::get_experiment(&state.store, experiment_id)
        .await
        .map_err(|e| fail(e.into()))?;
    let q = pairs(&raw);
    let query = RunsQuery {
        filter: first(&q, "filter"),
        order_by: first(&q, "order_by"),
        columns: all(&q, "col")
            .iter()
            .filter_map(|c| Column::parse(c))
            .collect(),
        page_token: first(&q, "page_token"),
    };
    let token = PageToken::parse(Some(&query.page_token)).map_err(|_| {
        fail(Problem::BadRequest(
            "That page link is not valid any more; start from the first page.".into(),
        ))
    })?;
    let order: Vec<String> = [query.order_by.clone()]
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    let found = runs::search_runs(
        &state.store,
        &[experiment_id],
        &query.filter,
        ViewType::ActiveOnly,
        RUNS_PER_PAGE,
        &order,
        token,
    )
    .await;
    // A filter that does not parse is said above an empty table, with the search box kept.
    let (page, error) = match found {
        Ok(page) => (page, None),
        Err(e) if e.kind() == StoreErrorKind::InvalidParameter => (
            Page {
                items: Vec::new(),
                next_page_token: None,
            },
            Some(e.to_string()),
        ),
        Err(e) => return Err(fail(e.into())),
    };
    html(mltrail_web::runs::runs_page(
        &ctx.viewer(),
        &RunsTable {
            experiment: &experiment,
            runs: &page.items,
            query: &query,
            next_page_token: page.next_page_token.as_deref(),
            error: error.as_deref(),
        },
    ))
}

/// A run the caller may read, or the page saying there is none.
async fn visible_run(state: &AppState, ctx: &Ctx, id: &str) -> Result<Run, Shown> {
    let missing = || {
        ctx.fail(
            Section::Experiments,
            Problem::NotFound(format!("No run {id} that you may read.")),
        )
    };
    let run_id = runs::parse_run_id(id).map_err(|_| missing())?;
    match runs::get_run(&state.store, &run_id).await {
        Ok(run) if ctx.experiment_visible(&run.info.experiment_id) => Ok(run),
        Ok(_) => Err(missing()),
        Err(e) if e.kind() == StoreErrorKind::NotFound => Err(missing()),
        Err(e) => Err(ctx.fail(Section::Experiments, e)),
    }
}

/// Whether a history has values at two steps or more (MLflow 3 can log one value twice at a
/// step: once for the run, once for the model it logged).
fn spans_steps(points: &[(f64, f64)]) -> bool {
    points
        .first()
        .is_some_and(|f| points.iter().any(|p| p.0 != f.0))
}

/// Each metric's whole history for one run, as (step, value) in step order.
async fn history(state: &AppState, run: &Run, key: &str) -> Result<Vec<(f64, f64)>, StoreError> {
    let run_id = runs::parse_run_id(&run.info.run_id)?;
    let mut points = Vec::new();
    let mut token = PageToken::default();
    loop {
        let page = metrics::metric_history(&state.store, &run_id, key, 25_000, token).await?;
        points.extend(page.items.iter().map(|m| (m.step as f64, m.value.0)));
        match page.next_page_token {
            Some(next) => token = PageToken::parse(Some(&next))?,
            None => break,
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(points)
}

async fn run(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let run = visible_run(&state, &ctx, &id).await?;
    let fail = |p: Problem| ctx.fail(Section::Experiments, p);
    let experiment_id = ExperimentId::parse(&run.info.experiment_id)
        .ok_or_else(|| fail(Problem::Other("the run names no experiment".into())))?;
    let experiment = experiments::get_experiment(&state.store, experiment_id)
        .await
        .map_err(|e| fail(e.into()))?;
    let mut histories = Vec::new();
    for m in &run.data.metrics {
        let points = history(&state, &run, &m.key)
            .await
            .map_err(|e| fail(e.into()))?;
        // A value logged at one step is in the metrics table; a curve needs two steps.
        if spans_steps(&points) {
            histories.push((m.key.clone(), chart::downsample(&points, CURVE_BUCKETS)));
        }
    }
    let versions = versions_from(&state, &ctx, &run)
        .await
        .map_err(|e| fail(e.into()))?;
    let q = pairs(&raw);
    let folder = first(&q, "path");
    let (artifacts, preview, folder) = browse(&state, &run, &folder).await;
    html(mltrail_web::runs::run_page(
        &ctx.viewer(),
        &RunPage {
            run: &run,
            experiment: &experiment,
            histories,
            versions: &versions,
            folder: &folder,
            artifacts,
            preview,
        },
    ))
}

/// The registered versions made from a run: those naming it, and (MLflow 3) those made from a
/// model the run logged, whose source is `models:/<model id>`.
async fn versions_from(
    state: &AppState,
    ctx: &Ctx,
    run: &Run,
) -> Result<Vec<mltrail_store::ModelVersion>, StoreError> {
    // Run and logged-model ids are hex (and `m-`); an id a client made up with anything else
    // in it is left out rather than spliced into a filter.
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let filters = std::iter::once(run.info.run_id.as_str())
        .filter(|id| plain(id))
        .map(|id| format!("run_id = '{id}'"))
        .chain(
            run.outputs
                .model_outputs
                .iter()
                .filter(|m| plain(&m.model_id))
                .map(|m| format!("source_path = 'models:/{}'", m.model_id)),
        );
    let mut found: Vec<mltrail_store::ModelVersion> = Vec::new();
    for filter in filters {
        let page = registry::search_model_versions(
            &state.store,
            &filter,
            200,
            &[],
            PageToken::default(),
            &ctx.seen.0.registered_models,
        )
        .await?;
        for v in page.items {
            if !found
                .iter()
                .any(|f| f.name == v.name && f.version == v.version)
            {
                found.push(v);
            }
        }
    }
    Ok(found)
}

/// The listing of `path` under a run's artifacts, or, when `path` names a file, its folder's
/// listing and a preview of the file. Returns the folder listed.
async fn browse(
    state: &AppState,
    run: &Run,
    path: &str,
) -> (Result<Vec<ArtifactEntry>, String>, Preview, String) {
    let Some(root) = source_artifact_path(&run.info.artifact_uri, state.artifacts.uri()) else {
        return (
            Err(format!(
                "the run keeps its artifacts at {}, outside this server's artifact store",
                run.info.artifact_uri
            )),
            Preview::None,
            String::new(),
        );
    };
    let path = path.trim_matches('/');
    let join = |rel: &str| -> Result<ArtifactPath, String> {
        let full = match (root.as_str(), rel) {
            (r, "") => r.to_string(),
            ("", rel) => rel.to_string(),
            (r, rel) => format!("{r}/{rel}"),
        };
        ArtifactPath::parse(&full).map_err(|e| e.to_string())
    };
    let list = |rel: String| async move {
        let dir = join(&rel)?;
        let listed = state
            .artifacts
            .list(&dir)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            listed
                .into_iter()
                .map(|f| ArtifactEntry {
                    path: if rel.is_empty() {
                        f.path
                    } else {
                        format!("{rel}/{}", f.path)
                    },
                    is_dir: f.is_dir,
                    size: f.file_size,
                })
                .collect::<Vec<_>>(),
        )
    };
    let here = list(path.to_string()).await;
    if path.is_empty() || !matches!(&here, Ok(entries) if entries.is_empty()) {
        return (here, Preview::None, path.to_string());
    }
    // An empty listing of a named path: it is a file (or nothing); list its folder.
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p).to_string();
    let siblings = list(parent.clone()).await;
    let size = siblings
        .as_ref()
        .ok()
        .and_then(|s| s.iter().find(|e| e.path == path && !e.is_dir))
        .and_then(|e| e.size);
    let preview = match (size, join(path)) {
        (Some(size), Ok(file)) => preview_of(state, path, &file, size).await,
        _ => Preview::None,
    };
    (siblings, preview, parent)
}

async fn preview_of(state: &AppState, rel: &str, file: &ArtifactPath, size: u64) -> Preview {
    let src = format!(
        "/api/2.0/mlflow-artifacts/artifacts/{}",
        file.as_str()
            .split('/')
            .map(layout::segment)
            .collect::<Vec<_>>()
            .join("/")
    );
    let name = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
    let path = rel.to_string();
    if matches!(extension, "png" | "jpg" | "jpeg" | "gif" | "webp") {
        return Preview::Image { path, src };
    }
    let textual = matches!(
        extension,
        "txt"
            | "log"
            | "json"
            | "yaml"
            | "yml"
            | "md"
            | "py"
            | "toml"
            | "cfg"
            | "ini"
            | "csv"
            | "tsv"
            | ""
    ) || name == "mlmodel";
    // Larger files are offered for download rather than read whole into a page.
    if !textual || size > PREVIEW_BYTES as u64 {
        return Preview::Binary { path, src, size };
    }
    let Ok(bytes) = state.artifacts.get(file).await else {
        return Preview::Binary { path, src, size };
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Preview::Binary { path, src, size };
    };
    if matches!(extension, "csv" | "tsv") {
        let delimiter = if extension == "tsv" { b'\t' } else { b',' };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .unwrap_or_default();
        let mut rows = Vec::new();
        let mut truncated = false;
        for record in reader.records() {
            let Ok(record) = record else { break };
            if rows.len() == 50 {
                truncated = true;
                break;
            }
            rows.push(record.iter().map(str::to_string).collect());
        }
        return Preview::Table {
            path,
            header,
            rows,
            truncated,
        };
    }
    let cut = text.len().min(64 << 10);
    let cut = (0..=cut)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    Preview::Text {
        path,
        text: text[..cut].to_string(),
        truncated: cut < text.len(),
    }
}

async fn compare(State(state): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> PageResult {
    let q = pairs(&raw);
    let ids = all(&q, "run");
    if ids.len() > MAX_COMPARED {
        return Err(ctx.fail(
            Section::Experiments,
            Problem::BadRequest(format!(
                "{} runs were selected; a comparison takes at most {MAX_COMPARED}.",
                ids.len()
            )),
        ));
    }
    let mut runs = Vec::new();
    for id in ids.iter().filter(|i| !i.is_empty()) {
        if !runs.iter().any(|r: &Run| &r.info.run_id == id) {
            runs.push(visible_run(&state, &ctx, id).await?);
        }
    }
    let keys: std::collections::BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.clone()))
        .collect();
    let mut histories = Vec::new();
    for key in keys {
        let mut series = Vec::new();
        for r in runs
            .iter()
            .filter(|r| r.data.metrics.iter().any(|m| m.key == key))
        {
            let points = history(&state, r, &key)
                .await
                .map_err(|e| ctx.fail(Section::Experiments, e))?;
            series.push(Series {
                label: if r.info.run_name.is_empty() {
                    r.info.run_id.clone()
                } else {
                    r.info.run_name.clone()
                },
                points: chart::downsample(&points, CURVE_BUCKETS),
            });
        }
        // Values logged once per run are compared in the table and the scatter, not as curves.
        if series.iter().any(|s| spans_steps(&s.points)) {
            histories.push((key, series));
        }
    }
    let axis = |k: &str| Column::parse(&first(&q, k)).filter(|c| c.kind != ColumnKind::Tag);
    html(mltrail_web::runs::compare_page(
        &ctx.viewer(),
        &Comparison {
            runs: &runs,
            histories,
            x: axis("x"),
            y: axis("y"),
        },
    ))
}

async fn models(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let page = registry::search_registered_models(
        &state.store,
        "",
        1_000,
        &["name ASC".to_string()],
        PageToken::default(),
        &ctx.seen.0.registered_models,
    )
    .await
    .map_err(|e| ctx.fail(Section::Models, e))?;
    html(mltrail_web::registry::models_page(
        &ctx.viewer(),
        &page.items,
    ))
}

fn model_missing(ctx: &Ctx, name: &str) -> Shown {
    ctx.fail(
        Section::Models,
        Problem::NotFound(format!("No registered model {name} that you may read.")),
    )
}

async fn model(State(state): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> PageResult {
    if !ctx.seen.0.registered_models.allows(&name) {
        return Err(model_missing(&ctx, &name));
    }
    let model = match registry::get_registered_model(&state.store, &name).await {
        Ok(m) => m,
        Err(e) if e.kind() == StoreErrorKind::NotFound => return Err(model_missing(&ctx, &name)),
        Err(e) => return Err(ctx.fail(Section::Models, e)),
    };
    // Restricted to this model by visibility rather than a filter: any name works, quotes and
    // backslashes included, with no quoting to get wrong (the caller may read it: checked above).
    let mut versions = registry::search_model_versions(
        &state.store,
        "",
        10_000,
        &[],
        PageToken::default(),
        &mltrail_store::access::permissions::Visible::Only(vec![name.clone()]),
    )
    .await
    .map_err(|e| ctx.fail(Section::Models, e))?
    .items;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version.parse::<i64>().unwrap_or(0)));
    html(mltrail_web::registry::model_page(
        &ctx.viewer(),
        &model,
        &versions,
    ))
}

async fn version(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((name, number)): Path<(String, String)>,
) -> PageResult {
    if !ctx.seen.0.registered_models.allows(&name) {
        return Err(model_missing(&ctx, &name));
    }
    let missing = || {
        ctx.fail(
            Section::Models,
            Problem::NotFound(format!("No version {number} of {name} that you may read.")),
        )
    };
    let parsed = registry::parse_version(&number).map_err(|_| missing())?;
    let mut mv = match registry::get_model_version(&state.store, &name, parsed).await {
        Ok(v) => v,
        Err(e) if e.kind() == StoreErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(ctx.fail(Section::Models, e)),
    };
    // A version registered from a logged model (MLflow 3) names its run through that model,
    // and its source (`models:/m-…`) is where that model keeps its files.
    let mut files = mv.source.clone();
    if let Ok((logged, run_id)) = crate::lineage::run_of(&state.store, &mv).await {
        mv.run_id = run_id;
        if let Some(logged) = logged {
            files = logged.info.artifact_uri;
        }
    }
    let signature = match mv.tags.iter().find(|t| t.key == tags::SIGNATURE) {
        Some(tag) => Some(
            serde_json::from_str::<serde_json::Value>(&tag.value)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| tag.value.clone()),
        ),
        None => mlmodel_signature(&state, &ctx, &files).await,
    };
    // An evaluation that cannot be read (or was changed) is left out here; its API says why.
    let evaluation = crate::evaluations::latest(&state, &name, parsed)
        .await
        .ok()
        .flatten()
        .map(|(e, _)| e);
    html(mltrail_web::registry::version_page(
        &ctx.viewer(),
        &mltrail_web::registry::VersionPage {
            version: &mv,
            signature,
            evaluation,
        },
    ))
}

/// The `signature:` block of the version's MLmodel file, when the file can be read.
async fn mlmodel_signature(state: &AppState, ctx: &Ctx, source: &str) -> Option<String> {
    let root = source_artifact_path(source, state.artifacts.uri())?;
    // A version's source may name another experiment's files: read them only for a viewer
    // who may read that experiment, as the artifact route would.
    let experiment = root.as_str().split('/').next().unwrap_or("");
    if !ctx.experiment_visible(experiment) {
        return None;
    }
    let file = ArtifactPath::parse(&format!("{}/MLmodel", root.as_str())).ok()?;
    let bytes = state.artifacts.get(&file).await.ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut block = Vec::new();
    for line in text.lines().skip_while(|l| !l.starts_with("signature:")) {
        if !block.is_empty() && !line.starts_with(' ') && !line.is_empty() {
            break;
        }
        block.push(line);
    }
    (!block.is_empty()).then(|| block.join("\n"))
}

async fn monitors_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let all = monitors::list_monitors(&state.store, None, false)
        .await
        .map_err(fail)?;
    let mut latest = Vec::with_capacity(all.len());
    let mut fired = Vec::with_capacity(all.len());
    for m in &all {
        latest.push(
            monitors::list_results(&state.store, &m.id, 1)
                .await
                .map_err(fail)?
                .pop(),
        );
        fired.push(
            monitors::count_alerts(&state.store, &m.id)
                .await
                .map_err(fail)?,
        );
    }
    let rows: Vec<mltrail_web::monitors::MonitorRow<'_>> = all
        .iter()
        .zip(&latest)
        .zip(&fired)
        .map(
            |((monitor, latest), alerts)| mltrail_web::monitors::MonitorRow {
                monitor,
                latest: latest.as_ref(),
                alerts: *alerts,
            },
        )
        .collect();
    html(mltrail_web::monitors::monitors_page(&ctx.viewer(), &rows))
}

/// Windows a monitor's page draws at most (the newest).
const MONITOR_WINDOWS: i64 = 1_000;

async fn monitor(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let fail = |e: StoreError| ctx.fail(Section::Monitors, e);
    let id = MonitorId::from(id);
    let monitor = monitors::get_monitor(&state.store, &id)
        .await
        .map_err(fail)?;
    let mut results = monitors::list_results(&state.store, &id, MONITOR_WINDOWS)
        .await
        .map_err(fail)?;
    results.reverse();
    let alerts = monitors::list_alerts(&state.store, Some(&id), 500)
        .await
        .map_err(fail)?;
    html(mltrail_web::monitors::monitor_page(
        &ctx.viewer(),
        &monitor,
        &results,
        &alerts,
    ))
}

/// Events per page of the trail.
const EVENTS_PER_PAGE: i64 = 100;

async fn audit_trail(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(&raw);
    let query = mltrail_web::audit::TrailQuery {
        entity: first(&q, "entity").trim().to_string(),
        actor: first(&q, "actor").trim().to_string(),
        action: first(&q, "action").trim().to_string(),
        since: first(&q, "since").trim().to_string(),
        until: first(&q, "until").trim().to_string(),
    };
    let now = mltrail_core::now_millis();
    let instant = |field: &str, text: &str| -> Result<Option<i64>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        mltrail_core::time::parse_since(text, now)
            .map(Some)
            .map_err(|e| format!("`{field}`: {e}"))
    };
    let before = first(&q, "before");
    let (since, until, before_seq) = match (
        instant("since", &query.since),
        instant("until", &query.until),
        if before.is_empty() {
            Ok(None)
        } else {
            before
                .parse::<i64>()
                .map(Some)
                .map_err(|_| "`before`: not a sequence number".to_string())
        },
    ) {
        (Ok(s), Ok(u), Ok(b)) => (s, u, b),
        (s, u, b) => {
            let error = [s.err(), u.err(), b.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            return html(mltrail_web::audit::trail_page(
                &ctx.viewer(),
                &mltrail_web::audit::TrailPage {
                    events: &[],
                    query: &query,
                    next_before: None,
                    error: Some(&error),
                    verification: None,
                    verify: None,
                },
            ));
        }
    };
    let events = mltrail_store::audit::search_events(
        &state.store,
        &mltrail_store::audit::EventQuery {
            entity: query.entity.clone(),
            actor: query.actor.clone(),
            action: query.action.clone(),
            since,
            until,
            before_seq,
        },
        EVENTS_PER_PAGE,
    )
    .await
    .map_err(|e| ctx.fail(Section::Audit, e))?;
    let next_before = (events.len() as i64 == EVENTS_PER_PAGE)
        .then(|| events.last().map(|e| e.event.seq))
        .flatten();
    let admin = ctx.admin;
    let csrf = ctx.csrf.clone();
    let verification = state
        .ui
        .verification
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    html(mltrail_web::audit::trail_page(
        &ctx.viewer(),
        &mltrail_web::audit::TrailPage {
            events: &events,
            query: &query,
            next_before,
            error: None,
            verification: verification.as_ref(),
            verify: admin.then_some(mltrail_web::audit::VerifyForm { csrf: &csrf }),
        },
    ))
}

/// The verify button (admins; the guard asked for it): recomputes the chain and every entity's
/// state, keeps the result for the badge, and returns to the trail.
async fn verify_trail(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, Shown> {
    let who = ctx.who();
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !same_origin(&headers) || !state.ui.csrf_holds(&who, &token) {
        return Err(Shown {
            section: Section::Audit,
            viewer: ctx.viewer.clone(),
            csrf: ctx.csrf.clone(),
            problem: Problem::Forbidden(
                "This form did not come from this server's page (its CSRF token is missing or stale): reload the audit page and try again.".into(),
            ),
        });
    }
    let report = mltrail_store::audit::verify(&state.store)
        .await
        .map_err(|e| ctx.fail(Section::Audit, e))?;
    let verification = mltrail_web::audit::Verification {
        time_ms: mltrail_core::now_millis(),
        by: who,
        events: report.events,
        broken: report.broken.map(|b| format!("{b:?}")),
    };
    tracing::info!(events = verification.events, intact = verification.broken.is_none(), by = %verification.by, "audit trail verified from the web UI");
    *state
        .ui
        .verification
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(verification);
    Ok(Redirect::to("/ui/audit").into_response())
}

/// Whether a browser's POST came from a page of this server: its `Origin` (or, without one,
/// `Referer`) names the host the request was sent to. Requests with neither (not a browser's
/// form) are judged by the CSRF token alone.
///
/// Behind a reverse proxy that rewrites `Host`, the proxy's `X-Forwarded-Host` names the host
/// the browser used; it counts too (another site's page cannot set that header on a browser's
/// request without the server's consent to a preflight, which it never gives).
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin_host) = origin
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
    else {
        return false;
    };
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(',').next())
        .map(str::trim);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    [host, forwarded]
        .into_iter()
        .flatten()
        .any(|h| h == origin_host)
}

/// `/ui/predictions?id=…`: the guard asked for `predictions:read` (inputs may be personal data).
async fn prediction(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(&raw);
    let id = first(&q, "id").trim().to_string();
    let deployment = first(&q, "deployment");
    if id.is_empty() {
        return html(mltrail_web::predictions::prediction_page(
            &ctx.viewer(),
            "",
            None,
        ));
    }
    let deployment = (!deployment.is_empty()).then_some(deployment.as_str());
    let trace = crate::lineage::trace(&state, &id, deployment).await;
    let (status, found) = match &trace {
        Ok(trace) => (StatusCode::OK, Ok(trace)),
        Err(e) => (e.status, Err(e.message.clone())),
    };
    let page = mltrail_web::predictions::prediction_page(&ctx.viewer(), &id, Some(found));
    // A lookup that finds nothing answers with the API's status, on the same page.
    if status == StatusCode::OK {
        html(page)
    } else {
        Err(Shown {
            section: Section::Predictions,
            viewer: ctx.viewer.clone(),
            csrf: ctx.csrf.clone(),
            problem: Problem::Rendered(status, page.into_string()),
        })
    }
}

async fn datasets_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let all = datasets::list_versions(&state.store, None)
        .await
        .map_err(|e| ctx.fail(Section::Datasets, e))?;
    // The newest version of each name.
    let mut latest: Vec<&datasets::DatasetVersion> = Vec::new();
    for v in &all {
        match latest.iter_mut().find(|l| l.name == v.name) {
            Some(l) if l.version < v.version => *l = v,
            Some(_) => {}
            None => latest.push(v),
        }
    }
    latest.sort_by(|a, b| a.name.cmp(&b.name));
    html(mltrail_web::datasets::datasets_page(&ctx.viewer(), &latest))
}

async fn dataset(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let fail = |p: Problem| ctx.fail(Section::Datasets, p);
    let versions = datasets::list_versions(&state.store, Some(&name))
        .await
        .map_err(|e| fail(e.into()))?;
    let wanted = first(&pairs(&raw), "version");
    let chosen = if wanted.is_empty() {
        versions.iter().max_by_key(|v| v.version)
    } else {
        versions.iter().find(|v| v.version.to_string() == wanted)
    }
    .ok_or_else(|| {
        fail(Problem::NotFound(format!(
            "No dataset {name}{}.",
            if wanted.is_empty() {
                String::new()
            } else {
                format!("@{wanted}")
            }
        )))
    })?;
    let runs = datasets::runs_using(&state.store, chosen)
        .await
        .map_err(|e| fail(e.into()))?;
    html(mltrail_web::datasets::dataset_page(
        &ctx.viewer(),
        &mltrail_web::datasets::DatasetPage {
            versions: &versions,
            chosen,
            runs: &runs,
        },
    ))
}

/// Two versions of a dataset compared for drift: the page `mltrail drift A B --html` writes,
/// with Evidently's default tests.
async fn dataset_drift(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Shown> {
    let fail = |p: Problem| ctx.fail(Section::Datasets, p);
    let q = pairs(&raw);
    let version = |field: &str| -> Result<i64, Shown> {
        first(&q, field).parse::<i64>().map_err(|_| {
            fail(Problem::BadRequest(format!(
                "`{field}`: a version number of {name} is required"
            )))
        })
    };
    let (reference, current) = (version("reference")?, version("current")?);
    let mut files = Vec::new();
    for n in [reference, current] {
        let v = datasets::get_version(
            &state.store,
            &datasets::VersionRef {
                name: name.clone(),
                version: n,
            },
        )
        .await
        .map_err(|e| fail(e.into()))?;
        let path = ArtifactPath::parse(&v.file.source)
            .ok()
            .filter(|p| crate::datasets::in_dataset_folder(p, &name))
            .ok_or_else(|| {
                fail(Problem::BadRequest(format!(
                    "{name}@{n} keeps no file of its own in the artifact store (`{}`): only versions added with `mltrail data add` can be compared",
                    v.file.source
                )))
            })?;
        let bytes = state.artifacts.get(&path).await.map_err(|e| {
            fail(Problem::Other(format!(
                "the file of {name}@{n} cannot be read: {e}"
            )))
        })?;
        files.push((v, bytes));
    }
    let title = format!("{name}@{reference} → {name}@{current}");
    let page = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let (current_version, current_bytes) = files.pop().ok_or("no current version")?;
        let (reference_version, reference_bytes) = files.pop().ok_or("no reference version")?;
        let read = |v: &datasets::DatasetVersion, bytes: &[u8]| {
            mltrail_data::table::read_bytes(&v.file.file_name, bytes)
                .map_err(|e| format!("{}@{}: {e}", v.name, v.version))
        };
        let mut options = mltrail_monitor::compare::CompareOptions {
            histograms: true,
            drift_share: 0.5,
            ..Default::default()
        };
        options.follow_schema(&mltrail_data::schema::DatasetSchema::from_json(
            &reference_version.file.schema,
        ));
        let comparison = mltrail_monitor::compare::compare(
            read(&reference_version, &reference_bytes)?,
            read(&current_version, &current_bytes)?,
            &options,
        )
        .map_err(|e| e.to_string())?;
        let pairs: Vec<_> = comparison
            .columns
            .iter()
            .filter_map(|c| c.histogram.clone().map(|h| (c.drift.clone(), h)))
            .collect();
        Ok(mltrail_monitor::report::html(
            &title,
            &pairs,
            &comparison.dataset,
            options.drift_share,
        ))
    })
    .await
    .map_err(|e| fail(Problem::Other(e.to_string())))?
    .map_err(|e| {
        fail(Problem::BadRequest(format!(
            "The versions cannot be compared: {e}"
        )))
    })?;
    Ok(Html(page).into_response())
}

async fn deployments_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let all = mltrail_store::deployments::current(&state.store)
        .await
        .map_err(|e| ctx.fail(Section::Deployments, e))?;
    let listed: Vec<&mltrail_store::deployments::DeploymentState> = all.values().collect();
    html(mltrail_web::deployments::deployments_page(
        &ctx.viewer(),
        &listed,
    ))
}

/// Reports a deployment page lists at most (the newest).
const DEPLOYMENT_EVENTS: i64 = 2_000;

async fn deployment(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PageResult {
    // A deployment's events are `deployment:<name>:<model>/<version>`: its own are those whose
    // id starts with its name and a colon (a name has no colon of its own).
    let mut events = mltrail_store::audit::search_events(
        &state.store,
        &mltrail_store::audit::EventQuery {
            entity: format!("{}:{name}:*", mltrail_store::deployments::DEPLOYMENT_KIND),
            ..Default::default()
        },
        DEPLOYMENT_EVENTS,
    )
    .await
    .map_err(|e| ctx.fail(Section::Deployments, e))?;
    if events.is_empty() {
        return Err(ctx.fail(
            Section::Deployments,
            Problem::NotFound(format!("No deployment {name} has reported.")),
        ));
    }
    events.reverse();
    let live = state.ui.live.lock().unwrap_or_else(|p| p.into_inner());
    html(mltrail_web::deployments::deployment_page(
        &ctx.viewer(),
        &name,
        &events,
        live.get(&name),
    ))
}

/// Where a sign-in may send the browser back to: a path of this server, never another site
/// (`//host` and `/\\host` are other sites to a browser).
fn local_next(next: &str) -> &str {
    // Browsers drop tabs and newlines from URLs and read a backslash as `/`: `/<tab>/evil` is `//evil`.
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_control());
    if local {
        next
    } else {
        "/"
    }
}

async fn sign_in_page(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Html<String> {
    let next = first(&pairs(&raw), "next");
    let off = state.auth.mode == crate::auth::AuthMode::Off;
    Html(layout::sign_in(local_next(&next), None, off).into_string())
}

/// Checks the user name and password as HTTP Basic would, and on success sets the session
/// cookie (HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it) and
/// returns to the page asked for.
async fn sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (username, password) = (first(&form, "username"), first(&form, "password"));
    let next = first(&form, "next");
    let next = local_next(&next).to_string();
    let refuse = |status: StatusCode, why: &str| {
        (
            status,
            Html(layout::sign_in(&next, Some(why), false).into_string()),
        )
            .into_response()
    };
    if state.auth.mode == crate::auth::AuthMode::Off {
        return Redirect::to(&next).into_response();
    }
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This form did not come from this server's page.",
        );
    }
    match mltrail_store::access::users::check_password(&state.store, &username, &password).await {
        Ok(Some(user)) => {
            let value = state
                .auth
                .sessions
                .issue(&user.username, mltrail_core::now_millis());
            let cookie = format!(
                "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                crate::auth::SESSION_COOKIE,
                crate::auth::Sessions::LIFETIME_MS / 1000,
                if state.ui.secure { "; Secure" } else { "" }
            );
            tracing::info!(user = %user.username, "signed in to the web UI");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(None) => {
            state
                .auth
                .counters
                .failed_logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                reason = "wrong user name or password",
                "web UI sign-in failed"
            );
            refuse(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check credentials");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Credentials cannot be checked right now; try again.",
            )
        }
    }
}

/// Ends the session: the cookie is cleared (its form carries the CSRF token).
async fn sign_out(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let who = crate::auth::session_cookie(&headers)
        .and_then(|c| state.auth.sessions.open(c, mltrail_core::now_millis()))
        .map(|(user, _)| mltrail_core::Principal::User(user).to_string());
    // Without a session there is nothing to end (a browser keeps HTTP Basic credentials
    // itself); with one, the form must be this server's.
    let forged = who
        .as_deref()
        .is_some_and(|w| !state.ui.csrf_holds(w, &token));
    if !same_origin(&headers) || forged {
        return (
            StatusCode::FORBIDDEN,
            Html(
                layout::sign_in(
                    "/",
                    Some("That sign-out did not come from this server's page."),
                    false,
                )
                .into_string(),
            ),
        )
            .into_response();
    }
    if let Some(cookie) = crate::auth::session_cookie(&headers) {
        state
            .auth
            .sessions
            .revoke(cookie, mltrail_core::now_millis());
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mltrail_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_form_counts_as_ours_only_from_our_host() {
        assert!(same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "http://ml:5000")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "null")
        ])));
        assert!(
            same_origin(&headers(&[("host", "ml:5000")])),
            "no Origin: the token decides"
        );
        // Behind a proxy that rewrites Host.
        let proxied = [
            ("host", "10.0.0.7:5000"),
            ("x-forwarded-host", "ml.example.com"),
            ("origin", "https://ml.example.com"),
        ];
        assert!(same_origin(&headers(&proxied)));
        let other = [
            ("host", "10.0.0.7:5000"),
            ("x-forwarded-host", "ml.example.com"),
            ("origin", "https://evil.example"),
        ];
        assert!(!same_origin(&headers(&other)));
    }

    #[test]
    fn sign_in_sends_back_only_to_our_own_paths() {
        assert_eq!(local_next("/ui/models?x=1"), "/ui/models?x=1");
        for elsewhere in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "https://evil.example",
            "ui/x",
        ] {
            assert_eq!(local_next(elsewhere), "/", "{elsewhere:?}");
        }
    }
}
