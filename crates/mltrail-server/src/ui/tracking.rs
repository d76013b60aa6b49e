//! Experiments and runs: the experiments list, an experiment's runs table, a run with its
//! metric histories and artifacts, and the comparison of selected runs.

use super::*;

/// Points per curve a chart receives: a 10,000-step history is cut to this many (each
/// bucket's lowest and highest value), so a comparison of 20 such runs stays light.
pub(super) const CURVE_BUCKETS: usize = 400;
/// Runs per page of an experiment's table.
pub(super) const RUNS_PER_PAGE: i64 = 50;
/// Runs one comparison takes at most.
pub(super) const MAX_COMPARED: usize = 50;
/// Bytes of an artifact shown as text or a table.
pub(super) const PREVIEW_BYTES: usize = 256 << 10;

pub(super) async fn experiments_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
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

pub(super) async fn experiment_runs(
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
pub(super) async fn visible_run(state: &AppState, ctx: &Ctx, id: &str) -> Result<Run, Shown> {
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
pub(super) fn spans_steps(points: &[(f64, f64)]) -> bool {
    points
        .first()
        .is_some_and(|f| points.iter().any(|p| p.0 != f.0))
}

/// Each metric's whole history for one run, as (step, value) in step order.
pub(super) async fn history(
    state: &AppState,
    run: &Run,
    key: &str,
) -> Result<Vec<(f64, f64)>, StoreError> {
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

pub(super) async fn run(
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
pub(super) async fn versions_from(
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
pub(super) async fn browse(
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

pub(super) async fn preview_of(
    state: &AppState,
    rel: &str,
    file: &ArtifactPath,
    size: u64,
) -> Preview {
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

pub(super) async fn compare(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> PageResult {
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
