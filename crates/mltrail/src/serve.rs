//! `mltrail serve` and `mltrail models register`: fetch a registered ONNX model from the tracking
//! server, serve it with a durable prediction log, and follow its alias for hot swaps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mltrail_core::tags;
use mltrail_serving::deployment::follower::{
    self, DeploymentAction, DeploymentEvent, DeploymentJournal,
};
use mltrail_serving::deployment::policy_keeper::{self, PolicyStore};
use mltrail_serving::deployment::{load, Deployment, ModelRef, ModelSource};
use mltrail_serving::predlog::{Durability, LogConfig, PredictionLog, MAX_SEGMENT_BYTES};
use mltrail_serving::routing::Policy;
use mltrail_serving::runtime::Model;
use mltrail_serving::signature::{mlflow_column_names, Signature};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::args::ClientArgs;
use crate::config::ServeTable;
use crate::tracking_client::Client;
use mltrail_core::privacy::PrivacySpec;
use mltrail_explain::served::TrainingExplainers;
use mltrail_serving::catalog::{CatalogMode, CatalogSpec, CatalogState};
use mltrail_serving::explanation::ExplainMode;
use mltrail_serving::privacy::KeyCache;
use mltrail_serving::request::SealPlan;

/// When predictions are explained (`--explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainArg {
    /// Never: GET /api/v1/predictions/{id}/explanation is refused.
    Off,
    /// On the first request for a prediction's explanation, from its stored inputs; then kept.
    #[value(name = "on_request")]
    OnRequest,
    /// While serving, into each prediction's own record (costs throughput).
    Always,
}

/// How tree ensembles are explained (`--explain-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainMethodArg {
    /// SHAP values against a background sample of the training data (shap's default with data).
    Interventional,
    /// SHAP values with node covers counted from the training data.
    #[value(name = "path_dependent")]
    PathDependent,
}

/// What a request is answered with (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputArg {
    /// One prediction per row, each with its own id.
    Predictions,
    /// The rows are one impression's candidate items: their ids by descending score, under one
    /// prediction id (needs --item-column).
    Ranking,
}

/// What a ranking does with an item out of its catalog (`--catalog-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogModeArg {
    /// Serve it; the record and the answer name it (`out_of_catalog`).
    Flag,
    /// Leave it out of the answer; the record and the answer name it (`filtered`).
    Filter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// Answer once the record is written to the log segment (survives kill -9); fsync every 5 ms.
    Default,
    /// Answer only after a group-committed fsync (survives power loss).
    Fsync,
}

/// `mltrail serve`'s flags: each sets the key of its name in mltrail.toml's `[serve]` table
/// (`--log-format` sets `[log] format`), above the file and the environment.
#[derive(Args, Serialize)]
// The shared help lists the client commands' fallbacks; here the key's variables follow it.
#[command(mut_arg("tracking_uri", |a| a.help("Tracking server URL")))]
pub struct ServeArgs {
    /// The model to serve: NAME@ALIAS (followed: a moved alias is swapped in) or NAME/VERSION.
    #[arg(long)]
    model: Option<String>,
    /// Deployment name that logs, metrics and audit events use (default: the model's name).
    #[arg(long)]
    deployment: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    client: ClientArgs,
    /// Address to bind. A non-loopback address needs --auth on (or --insecure-no-auth).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long)]
    port: Option<u16>,
    /// on: callers authenticate (a bearer token with `predict`, `feedback` or
    /// `predictions:read`, or a user), checked with the tracking server, which must run with
    /// --auth on too. off: anyone who reaches the port may score and read stored predictions.
    #[arg(long, value_enum)]
    auth: Option<crate::config::AuthModeArg>,
    /// Allow auth off on a non-loopback address (a trusted network only; warned at every start).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_no_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Where prediction-log segments are written (default: ./mltrail-data/predictions/<deployment>).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// How often to check whether a followed alias moved, in milliseconds.
    #[arg(long)]
    poll_interval_ms: Option<u64>,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Roll the prediction-log segment after this many bytes (at most 3 GiB).
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Roll the prediction-log segment after this many seconds, at most 86400 (monitors see a
    /// window once its segments are archived, so keep this below the monitors' --delay).
    #[arg(long)]
    segment_seconds: Option<u64>,
    /// How often sealed segments are converted to Parquet and uploaded to the artifact store
    /// (predictions/<deployment>/<date>/), in milliseconds.
    #[arg(long)]
    archive_interval_ms: Option<u64>,
    /// How often the deployment's metrics are sent to the tracking server for the web UI's
    /// live panels, in milliseconds (0 sends none).
    #[arg(long)]
    report_interval_ms: Option<u64>,
    /// Prediction ids kept in memory for lookups and feedback (16 bytes each); beyond it, the
    /// ids of the oldest segments not yet archived move to index files beside them.
    #[arg(long)]
    index_entries: Option<usize>,
    /// When predictions are explained (SHAP values from the version's training data, with
    /// reason codes): off, on_request (computed on first read, then kept) or always (into every
    /// prediction's record while serving).
    #[arg(long, value_enum)]
    explain: Option<ExplainArg>,
    /// How tree ensembles are explained: interventional (against a background sample of the
    /// training data) or path_dependent (with node covers from all of it).
    #[arg(long, value_enum)]
    explain_method: Option<ExplainMethodArg>,
    /// Rows of the training data in the explanations' background sample (seeded; all of them
    /// when the dataset has that many or fewer).
    #[arg(long)]
    explain_background: Option<usize>,
    /// What a request is answered with: predictions (one per row) or ranking (the rows are one
    /// impression's candidate items, answered with their ids by descending score under one
    /// prediction id; needs --item-column).
    #[arg(long, value_enum)]
    output: Option<OutputArg>,
    /// With --output ranking: the request column holding each candidate's item id (a string or
    /// an integer; it need not be a model input).
    #[arg(long)]
    item_column: Option<String>,
    /// With --output ranking: the model output ranked by (default: a classifier's
    /// probabilities, taking the positive class, else the model's only output).
    #[arg(long)]
    score_output: Option<String>,
    /// With --output ranking: the request column naming whom an impression is for (a user id,
    /// the same on every row), logged as its request_key; a ranking monitor counts repeats by it.
    #[arg(long)]
    key_column: Option<String>,
    /// With --output ranking: the dataset whose newest version is the catalog every served item
    /// is checked against (`mltrail data add catalog.csv --name NAME`), followed while serving.
    #[arg(long)]
    catalog: Option<String>,
    /// The catalog's column of item ids (default: --item-column).
    #[arg(long)]
    catalog_item_column: Option<String>,
    /// The catalog's column saying whether an item is available (true/false or 1/0; default:
    /// every listed item is).
    #[arg(long)]
    catalog_available_column: Option<String>,
    /// What happens to an item out of the catalog: flag (served, named in the record and the
    /// answer as out_of_catalog) or filter (left out of the answer, named as filtered).
    #[arg(long, value_enum)]
    catalog_mode: Option<CatalogModeArg>,
    /// How often the catalog's newest version is looked for, in milliseconds.
    #[arg(long)]
    catalog_interval_ms: Option<u64>,
    /// A routing policy file (TOML): `kind` (single, split, shadow, canary, epsilon_greedy,
    /// thompson, ucb1, linucb), `arms` (NAME/VERSION or NAME@ALIAS) and the kind's keys
    /// (docs/experiments.md). It becomes the deployment's policy on the tracking server; without
    /// it, a policy set there (`mltrail experiments set-policy`) is followed.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// How often the routing policy is read from the tracking server (a canary's step and
    /// analysis run then too), in milliseconds.
    #[arg(long)]
    policy_interval_ms: Option<u64>,
    /// How often what the policy learned here is reported to the tracking server, in
    /// milliseconds (each report is an audit event; a kill -9 loses at most this much of it).
    #[arg(long)]
    policy_report_interval_ms: Option<u64>,
    /// Log output format, the same for every mltrail process.
    #[arg(long, value_enum)]
    log_format: Option<crate::config::LogFormat>,
    #[command(flatten)]
    #[serde(skip)]
    pub config: crate::config::ConfigArgs,
}

impl ServeArgs {
    /// The flags given, as the configuration's top layer.
    pub fn layer(&self) -> Result<crate::config::Layer> {
        crate::config::Layer::flags("serve", self)
    }
}

/// What `--model` (or `[serve] model`) names, when set.
pub fn model_ref(settings: &ServeTable) -> Result<Option<ModelRef>> {
    settings
        .model
        .as_deref()
        .map(|m| ModelRef::parse(m).map_err(anyhow::Error::from))
        .transpose()
}

/// The routing policy file `--policy` (or `[serve] policy`) names, read and checked: its JSON
/// form, as the tracking server keeps it.
pub fn policy_document(settings: &ServeTable) -> Result<Option<(Value, Policy)>> {
    settings.policy.as_deref().map(policy_file).transpose()
}

/// A routing policy file (TOML) read and checked: its JSON form and the policy.
pub fn policy_file(path: &std::path::Path) -> Result<(Value, Policy)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let document = serde_json::to_value(table)?;
    let policy = Policy::from_json(&document).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((document, policy))
}

/// Serves the deployment `args` (the merged `[serve]` table) describes.
/// `--output ranking` checked against the served version: an item column, a score output the
/// model has, no routing policy, no explanations while serving.
fn ranking_output(
    args: &ServeTable,
    loaded: &mltrail_serving::deployment::LoadedModel,
    routed: bool,
) -> Result<Option<mltrail_serving::ranking::RankingOutput>> {
    if args.output == OutputArg::Predictions {
        if args.item_column.is_some()
            || args.score_output.is_some()
            || args.key_column.is_some()
            || args.catalog.is_some()
        {
            bail!("--item-column, --score-output, --key-column and --catalog are for --output ranking; give --output ranking, or leave them out");
        }
        return Ok(None);
    }
    if args.catalog.is_none()
        && (args.catalog_item_column.is_some()
            || args.catalog_available_column.is_some()
            || args.catalog_mode != CatalogModeArg::Flag)
    {
        bail!("--catalog-item-column, --catalog-available-column and --catalog-mode describe a catalog: give --catalog NAME too");
    }
    if args.catalog.is_some() && args.catalog_interval_ms < 100 {
        bail!(
            "--catalog-interval-ms {} is below 100: the catalog is looked for at most every 100 ms",
            args.catalog_interval_ms
        );
    }
    let item_column = args.item_column.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
        anyhow!("--output ranking needs --item-column: the request column holding each candidate's item id")
    })?;
    mltrail_serving::ranking::score_output_index(
        &loaded.output_names,
        args.score_output.as_deref(),
    )
    .map_err(|e| anyhow!("--score-output: {e}"))?;
    if routed || args.policy.is_some() {
        bail!("--output ranking serves one version: a routing policy chooses per row, and a ranking's rows are one impression (end the deployment's policy with `mltrail experiments end-policy`, or serve predictions)");
    }
    if args.explain == ExplainArg::Always {
        bail!("--output ranking stores no explanations while serving: use --explain on_request or off");
    }
    if args.key_column.as_deref() == Some(item_column.as_str()) {
        bail!("--key-column names whom an impression is for; it cannot be --item-column `{item_column}`");
    }
    Ok(Some(mltrail_serving::ranking::RankingOutput {
        item_column,
        score_output: args.score_output.clone(),
        key_column: args.key_column.clone().filter(|c| !c.is_empty()),
    }))
}

/// The catalog `--catalog` names, loaded once before serving (a deployment never serves
/// unchecked items because its catalog was slow to come).
async fn catalog_of(
    args: &ServeTable,
    ranking: &mltrail_serving::ranking::RankingOutput,
    source: &dyn mltrail_serving::deployment::ModelSource,
) -> Result<Option<Arc<CatalogState>>> {
    let Some(name) = args.catalog.clone().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let state = Arc::new(CatalogState::new(CatalogSpec {
        name: name.clone(),
        item_column: args
            .catalog_item_column
            .clone()
            .unwrap_or_else(|| ranking.item_column.clone()),
        available_column: args.catalog_available_column.clone(),
        mode: match args.catalog_mode {
            CatalogModeArg::Flag => CatalogMode::Flag,
            CatalogModeArg::Filter => CatalogMode::Filter,
        },
    }));
    let loaded = state
        .refresh(source)
        .await
        .with_context(|| format!("--catalog {name}: cannot load its newest version (add one with `mltrail data add FILE --name {name}`)"))?;
    if let Some(c) = loaded {
        tracing::info!(catalog = %c.version, listed = c.listed, available = c.available(), mode = state.spec.mode.as_str(), "catalog in force");
    }
    Ok(Some(state))
}

pub async fn serve(
    args: ServeTable,
    auth: crate::config::AuthTable,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let model_ref = model_ref(&args)?;
    let policy_file = policy_document(&args)?;
    let tls = crate::config::tls_acceptor(&args.tls_cert, &args.tls_key, "serve")?;
    let deployment = args
        .deployment
        .clone()
        .or_else(|| model_ref.as_ref().map(|m| m.name().to_string()))
        .or_else(|| {
            policy_file
                .as_ref()
                .map(|(_, p)| p.arms[0].name().to_string())
        })
        .ok_or_else(|| {
            anyhow!("not set: `[serve] model` (give --model NAME@ALIAS or NAME/VERSION, or MLTRAIL_SERVE_MODEL), or `[serve] policy` (--policy FILE.toml), or --deployment NAME whose routing policy the tracking server holds")
        })?;
    let client = Arc::new(Client::new(
        args.tracking_uri.trim_end_matches('/').to_string(),
    )?);
    let guard = match auth.mode {
        crate::config::AuthModeArg::On => {
            client.check_tracking_auth().await?;
            Some(Arc::new(mltrail_server::scoring_auth::ServeAuth::new(
                client.as_ref().clone(),
            )))
        }
        crate::config::AuthModeArg::Off => None,
    };
    if let Some((document, policy)) = &policy_file {
        client
            .put(
                &format!(
                    "/api/v1/deployments/{}/policy",
                    crate::tracking_client::segment(&deployment)
                ),
                &json!({ "policy": document }),
                "set the deployment's routing policy",
            )
            .await?;
        tracing::info!(deployment, policy = %policy.name, version = policy.version(), "routing policy set on the tracking server");
    }
    let policy_in_force = PolicyStore::policy(client.as_ref(), &deployment).await?;
    // The deployment's own model: --model, else the policy's first arm.
    let own = match (&model_ref, &policy_in_force) {
        (Some(m), _) => m.clone(),
        (None, Some(in_force)) => Policy::from_json(&in_force.document)
            .map_err(|e| anyhow!("the deployment's routing policy on the tracking server: {e}"))?
            .arms[0]
            .clone(),
        (None, None) => bail!(
            "not set: `[serve] model` (give --model NAME@ALIAS or NAME/VERSION, or MLTRAIL_SERVE_MODEL), or `[serve] policy` (--policy FILE.toml); deployment `{deployment}` has no routing policy on the tracking server either"
        ),
    };
    let version = client.version(&own).await?;
    let loaded = load(client.as_ref(), &version).await?;
    let ranking = ranking_output(&args, &loaded, policy_in_force.is_some())?;
    let catalog = match &ranking {
        Some(ranking) => catalog_of(&args, ranking, client.as_ref()).await?,
        None => None,
    };
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("mltrail-data/predictions").join(&deployment));
    let durability = match args.durability {
        DurabilityArg::Default => Durability::Default,
        DurabilityArg::Fsync => Durability::Fsync,
    };
    let mut log_config = LogConfig::new(&log_dir, durability);
    log_config.segment_bytes = args.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
    // Archived predictions are looked for in the files of their own day and the day before
    // (a file is named by its first record's day): a segment may stay open a day at most.
    if args.segment_seconds > 86_400 {
        bail!(
            "--segment-seconds {} is more than a day (86400): archived predictions are found by the day of their segment's first record and the day before",
            args.segment_seconds
        );
    }
    log_config.segment_age = Duration::from_secs(args.segment_seconds.max(1));
    log_config.index_entries = args.index_entries.max(1);
    let log = PredictionLog::open(log_config.clone())
        .with_context(|| format!("cannot open the prediction log in {}", log_dir.display()))?;
    let rec = log.recovery().clone();
    tracing::info!(dir = %log_dir.display(), segments = rec.segments, records = rec.records, truncated_bytes = rec.truncated_bytes, "prediction log opened");
    client
        .record(&DeploymentEvent {
            deployment: deployment.clone(),
            action: DeploymentAction::Deploy,
            model: loaded.name.clone(),
            version: loaded.version.clone(),
            digest: loaded.digest.clone(),
        })
        .await?;
    tracing::info!(deployment, model = %loaded.name, version = %loaded.version, engine = loaded.model.engine_name(), "model loaded");
    let log = Arc::new(log);
    let explain_mode = match args.explain {
        ExplainArg::Off => ExplainMode::Off,
        ExplainArg::OnRequest => ExplainMode::OnRequest,
        ExplainArg::Always => ExplainMode::Always,
    };
    let explain_method = match args.explain_method {
        ExplainMethodArg::Interventional => mltrail_explain::Method::Interventional,
        ExplainMethodArg::PathDependent => mltrail_explain::Method::PathDependent,
    };
    let explainers = Arc::new(TrainingExplainers::new(
        client.clone(),
        explain_method,
        args.explain_background.max(1),
    ));
    let mut built = Deployment::new(deployment.clone(), loaded, log.clone())
        .with_shadow_log(log_config.clone())
        .with_archive(client.clone())
        .with_lineage(client.clone())
        .with_source(client.clone())
        .with_subject_keys(Arc::new(KeyCache::new(client.clone())))
        .with_explanations(explain_mode, explainers);
    if let Some(ranking) = ranking {
        tracing::info!(deployment, item_column = %ranking.item_column, "the answer is a ranking of each request's rows");
        built = built.with_ranking(ranking);
    }
    if let Some(catalog) = &catalog {
        built = built.with_catalog(catalog.clone());
    }
    let dep = Arc::new(built);
    crate::otlp::identify(
        "mltrail-serve",
        vec![
            ("mltrail.deployment".into(), deployment.clone()),
            ("service.instance.id".into(), log.replica().to_string()),
        ],
    );
    crate::otlp::export_metrics({
        let dep = dep.clone();
        Arc::new(move || dep.render_metrics())
    });
    crate::logging::start_otlp();
    let catalog_follower = catalog.map(|c| {
        c.follow(
            client.clone(),
            Duration::from_millis(args.catalog_interval_ms.max(100)),
        )
    });
    if explain_mode == ExplainMode::Always {
        dep.prepare_explainer().await.map_err(|why| {
            anyhow!("--explain always: {why} (or serve with --explain on_request or off)")
        })?;
        tracing::info!(
            deployment,
            "explainer ready: every prediction is stored with its explanation"
        );
    }
    let archiver = dep.spawn_archiver(Duration::from_millis(args.archive_interval_ms.max(100)));
    // The web UI's live panels: this replica's counters, sent as its /metrics text. A failed
    // report is only logged: the panels have a gap, serving goes on.
    let reporter = (args.report_interval_ms > 0).then(|| {
        let (dep, client) = (dep.clone(), client.clone());
        let replica = log.replica().to_string();
        // This process, so the tracking server knows a restart counts from zero.
        let boot = uuid::Uuid::new_v4().simple().to_string();
        let every = Duration::from_millis(args.report_interval_ms.max(200));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // After a stall, one report, not a burst (a burst reads as a spike of rates).
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let body = json!({"deployment": dep.name(), "replica": replica, "boot": boot, "metrics": dep.render_metrics()});
                if let Err(e) = client.post("/api/v1/deployments/metrics", &body, "report metrics").await {
                    tracing::debug!(error = %e, "could not report metrics to the tracking server");
                }
            }
        })
    });
    if let Some(in_force) = &policy_in_force {
        policy_keeper::apply(
            &dep,
            in_force,
            client.as_ref(),
            client.as_ref(),
            client.as_ref(),
        )
        .await
        .with_context(|| {
            format!("cannot put deployment `{deployment}`'s routing policy in force")
        })?;
    }
    let keeper = policy_keeper::spawn(
        dep.clone(),
        client.clone(),
        client.clone(),
        client.clone(),
        Duration::from_millis(args.policy_interval_ms.max(100)),
        Duration::from_millis(args.policy_report_interval_ms.max(100)),
    );
    // The log setting the tracking server holds for every service, followed while serving.
    let log_follower = {
        let client = client.clone();
        crate::logging::follow(move || {
            let client = client.clone();
            async move {
                let answer = client
                    .get_json("/api/v1/settings/log", "the log setting")
                    .await?;
                Ok(match &answer["log"] {
                    serde_json::Value::Null => None,
                    held => Some(serde_json::from_value::<crate::logging::Setting>(
                        held["value"].clone(),
                    )?),
                })
            }
        })
    };
    let follower = follower::spawn(
        dep.clone(),
        client.clone(),
        client.clone(),
        Some(own.clone()),
        Duration::from_millis(args.poll_interval_ms.max(50)),
    );

    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    crate::access::check_bind(&auth, local, "serve")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("mltrail serve listening on {scheme}://{local}");
    tracing::info!(address = %local, deployment, "serving");
    mltrail_server::serve_router(
        listener,
        tls,
        mltrail_server::scoring::routes(dep.clone(), args.max_body_bytes, guard),
        shutdown,
    )
    .await?;
    archiver.abort();
    follower.abort();
    if let Some(f) = catalog_follower {
        f.abort();
    }
    log_follower.abort();
    keeper.abort();
    // Spans and log lines queued for the collector go out before the process ends.
    crate::logging::stop_otlp();
    // What the policy learned since its last report is sent before stopping (a `kill -9`
    // loses at most one interval of it; the feedback itself is in the log).
    match tokio::time::timeout(
        Duration::from_secs(5),
        policy_keeper::report(&dep, client.as_ref()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(deployment, error = %e, "could not report what the routing policy learned")
        }
        Err(_) => tracing::warn!(
            deployment,
            "the tracking server did not take the routing report within 5 s"
        ),
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    // Every prediction is on disk before anything else is tried.
    log.close();
    dep.close_shadow_log();
    // The trail says the deployment stopped (with the version it served last), so the web UI
    // and `GET /api/v1/deployments` do not show it serving. A tracking server out of reach
    // must not hold the shutdown: the report gets a few seconds, and a failure is logged.
    let last = dep.current();
    let stopped = DeploymentEvent {
        deployment: deployment.clone(),
        action: DeploymentAction::Stop,
        model: last.model().name.clone(),
        version: last.model().version.clone(),
        digest: last.model().digest.clone(),
    };
    match tokio::time::timeout(Duration::from_secs(5), client.record(&stopped)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(deployment, error = %e, "could not report the stop to the tracking server")
        }
        Err(_) => tracing::warn!(
            deployment,
            "the tracking server did not take the stop report within 5 s"
        ),
    }
    Ok(())
}

#[derive(Args)]
pub struct RegisterArgs {
    /// Registered model name (created if it does not exist).
    name: String,
    /// The ONNX file to register.
    file: PathBuf,
    /// Input column names: an MLflow signature JSON list (`[{"name": "income", "type": "double"}, …]`)
    /// or a comma-separated list of names, in the model's input order.
    #[arg(long)]
    signature: Option<String>,
    /// The dataset version the model was trained on (DATASET@VERSION), recorded on the version.
    /// Its schema's `pii` and `subject` columns count as if given with --pii and --subject.
    #[arg(long)]
    training_data: Option<String>,
    /// The MLflow run that trained the model: the version links to it (its params, metrics and
    /// tags, the git commit among them, are then part of every trace of its predictions).
    #[arg(long)]
    run_id: Option<String>,
    /// Input columns holding personal data, comma-separated: deployments store their values
    /// sealed with the key of the row's subject (see --subject), erasable per person.
    #[arg(long, value_delimiter = ',')]
    pii: Vec<String>,
    /// The column naming the person each row is about (a customer id). It may be a model input
    /// or a column requests carry beside the inputs; it is sealed too.
    #[arg(long)]
    subject: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn register(args: RegisterArgs) -> Result<String> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let checked = bytes.clone();
    let model = tokio::task::spawn_blocking(move || Model::load(&checked))
        .await?
        .map_err(|e| {
            anyhow!(
                "{} cannot be served, so it is not registered: {e}",
                args.file.display()
            )
        })?;
    let signature_json = match &args.signature {
        None => None,
        Some(s) if s.trim_start().starts_with('[') => Some(s.clone()),
        Some(s) => Some(
            Value::Array(
                s.split(',')
                    .map(|n| json!({"name": n.trim(), "type": "double"}))
                    .collect(),
            )
            .to_string(),
        ),
    };
    let names = signature_json
        .as_deref()
        .map(mlflow_column_names)
        .transpose()
        .map_err(|e| anyhow!("--signature: {e}"))?
        .flatten();
    let signature =
        Signature::from_model(&model, names).map_err(|e| anyhow!("--signature: {e}"))?;
    let client = args.client.client()?;
    // The training data must be a stored dataset version: the link is what monitoring uses as
    // the reference, so it is checked before anything is registered.
    let mut training_digest = None;
    let mut training_schema = None;
    if let Some(td) = &args.training_data {
        let training: mltrail_store::datasets::VersionRef =
            td.parse().map_err(|e| anyhow!("--training-data: {e}"))?;
        let found = client
            .get_json(
                &format!("/api/v1/datasets/{}/versions/{}", training.name, training.version),
                &format!("dataset {td}"),
            )
            .await
            .map_err(|e| anyhow!("--training-data {td} is not a stored dataset version ({e:#}); add it with `mltrail data add`"))?;
        training_digest = found
            .pointer("/dataset_version/digest")
            .and_then(Value::as_str)
            .map(str::to_string);
        training_schema = found.pointer("/dataset_version/schema").cloned();
    }
    let privacy = privacy_spec(&args, &signature, training_schema.as_ref())?;
    match client
        .post(
            "/api/2.0/mlflow/registered-models/create",
            &json!({"name": args.name}),
            "create registered model",
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.to_string().contains("RESOURCE_ALREADY_EXISTS") => {}
        Err(e) => return Err(e),
    }
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let dir = format!("registered/{}/{}", args.name, &digest[..16]);
    let file_name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".onnx"))
        .unwrap_or("model.onnx");
    client
        .upload_shown(
            &format!("{dir}/{file_name}"),
            bytes,
            &format!("uploading {file_name}"),
        )
        .await?;
    let mut version_tags = vec![
        json!({"key": tags::ONNX_DIGEST, "value": digest}),
        json!({"key": tags::SIGNATURE, "value": signature.to_mlflow_json().to_string()}),
        json!({"key": tags::ENGINE, "value": model.engine_name()}),
    ];
    if let Some(spec) = &privacy {
        version_tags.push(json!({"key": tags::PRIVACY, "value": spec.to_json()}));
    }
    if let Some(td) = &args.training_data {
        version_tags.push(json!({"key": tags::TRAINING_DATA, "value": td}));
        if let Some(digest) = &training_digest {
            version_tags.push(json!({"key": tags::TRAINING_DATA_DIGEST, "value": digest}));
        }
    }
    let created = client
        .post(
            "/api/2.0/mlflow/model-versions/create",
            &json!({"name": args.name, "source": format!("mlflow-artifacts:/{dir}"), "tags": version_tags,
                    "run_id": args.run_id.as_deref().unwrap_or("")}),
            "create model version",
        )
        .await?;
    created
        .pointer("/model_version/version")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the server did not return a version number"))
}

/// The version's privacy spec: --pii and --subject, plus what the training data's schema marks
/// among the model's columns, checked against the model as serving will check it. PII without a
/// subject is refused (nothing to seal it under).
fn privacy_spec(
    args: &RegisterArgs,
    signature: &Signature,
    training_schema: Option<&Value>,
) -> Result<Option<PrivacySpec>> {
    let schema: Option<mltrail_data::schema::DatasetSchema> =
        training_schema.and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut pii: Vec<String> = args.pii.iter().map(|c| c.trim().to_string()).collect();
    let mut subject = args.subject.clone();
    if let Some(schema) = &schema {
        if subject.is_none() {
            subject = schema
                .columns
                .iter()
                .find(|c| c.subject)
                .map(|c| c.name.clone());
        }
        let marked: Vec<String> = schema
            .columns
            .iter()
            .filter(|c| c.pii && !c.subject && signature.columns.iter().any(|m| m.name == c.name))
            .map(|c| c.name.clone())
            .collect();
        if subject.is_some() {
            pii.extend(marked);
        } else if !marked.is_empty() && pii.is_empty() {
            // A schema's `pii` alone keeps its meaning for monitors (no bins drawn); sealing
            // needs a subject to seal under.
            eprintln!(
                "note: the training data marks {} as personal data but names no subject column, so predictions store them unsealed; give --subject COLUMN to seal them per person",
                marked.join(", ")
            );
        }
    }
    let Some(subject) = subject else {
        if pii.is_empty() {
            return Ok(None);
        }
        bail!(
            "the columns {} hold personal data but no column names whom each row is about: give --subject COLUMN (or mark it `subject = true` in the training data's schema), so their values can be sealed and erased per person",
            pii.join(", ")
        );
    };
    let spec = PrivacySpec::new(subject, pii).map_err(|e| anyhow!("--pii/--subject: {e}"))?;
    SealPlan::new(spec.clone(), signature).map_err(|e| anyhow!("--pii/--subject: {e}"))?;
    Ok(Some(spec))
}
