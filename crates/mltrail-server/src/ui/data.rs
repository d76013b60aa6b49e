//! Datasets: versions, schema and profile, and a drift report between two versions.

use super::*;

pub(super) async fn datasets_list(State(state): State<AppState>, ctx: Ctx) -> PageResult {
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

pub(super) async fn dataset(
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
pub(super) async fn dataset_drift(
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
        let path = v.file_path().map_err(|_| {
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
