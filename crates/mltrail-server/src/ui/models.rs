//! The registry: models, a model's versions, and a version with its signature and evaluation.

use super::*;

pub(super) async fn models(State(state): State<AppState>, ctx: Ctx) -> PageResult {
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

pub(super) fn model_missing(ctx: &Ctx, name: &str) -> Shown {
    ctx.fail(
        Section::Models,
        Problem::NotFound(format!("No registered model {name} that you may read.")),
    )
}

pub(super) async fn model(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> PageResult {
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
    let gates = mltrail_store::gates::policies(&state.store, &name)
        .await
        .map_err(|e| ctx.fail(Section::Models, e))?;
    let reports =
        mltrail_store::gates::reports(&state.store, &name, None, model.creation_timestamp, 20)
            .await
            .map_err(|e| ctx.fail(Section::Models, e))?;
    html(mltrail_web::registry::model_page(
        &ctx.viewer(),
        &model,
        &versions,
        &gates,
        &reports,
    ))
}

pub(super) async fn version(
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
    let robustness = crate::evaluations::latest_robustness(&state, &name, parsed)
        .await
        .ok()
        .flatten()
        .map(|(r, _)| r);
    // What each gate would say about this version now (the dry run `gates check` makes).
    let policies = mltrail_store::gates::policies(&state.store, &name)
        .await
        .map_err(|e| ctx.fail(Section::Models, e))?;
    let mut gates = Vec::new();
    for policy in policies {
        let to = crate::gates::Move {
            name: &name,
            alias: &policy.alias,
            stage: None,
            version: parsed.0,
        };
        // Unreadable evidence is a failed requirement inside the check; what is left (the
        // store unreachable) fails the page as any other read would.
        match crate::gates::check(&state, "ui", to).await {
            Ok(Some(checked)) => gates.push(mltrail_web::registry::GatePanel {
                policy,
                check: checked.report,
            }),
            Ok(None) => {}
            Err(e) => return Err(ctx.fail(Section::Models, Problem::Other(e.message))),
        }
    }
    let created = registry::get_registered_model(&state.store, &name)
        .await
        .map_err(|e| ctx.fail(Section::Models, e))?
        .creation_timestamp;
    let reports = mltrail_store::gates::reports(&state.store, &name, Some(parsed.0), created, 20)
        .await
        .map_err(|e| ctx.fail(Section::Models, e))?;
    html(mltrail_web::registry::version_page(
        &ctx.viewer(),
        &mltrail_web::registry::VersionPage {
            version: &mv,
            signature,
            evaluation,
            robustness,
            gates,
            reports,
        },
    ))
}

/// The version's model card, built now from the trail (`mltrail models card` keeps one).
pub(super) async fn card(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((name, number)): Path<(String, String)>,
) -> PageResult {
    if !ctx.seen.0.registered_models.allows(&name) {
        return Err(model_missing(&ctx, &name));
    }
    let parsed = registry::parse_version(&number).map_err(|_| {
        ctx.fail(
            Section::Models,
            Problem::NotFound(format!("No version {number} of {name} that you may read.")),
        )
    })?;
    let card = match crate::cards::build(&state, &name, parsed).await {
        Ok(card) => card,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(ctx.fail(
                Section::Models,
                Problem::NotFound(format!("No version {number} of {name} that you may read.")),
            ))
        }
        Err(e) => return Err(ctx.fail(Section::Models, Problem::Other(e.message))),
    };
    html(mltrail_web::card::page(
        &ctx.viewer(),
        &name,
        &parsed.0.to_string(),
        &card,
    ))
}

/// The `signature:` block of the version's MLmodel file, when the file can be read.
pub(super) async fn mlmodel_signature(state: &AppState, ctx: &Ctx, source: &str) -> Option<String> {
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
