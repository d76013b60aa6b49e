//! The `mltrail` command line. It only wires crates together: configuration in, domain calls
//! out, errors to exit codes.

mod access;
mod args;
mod backup;
mod business;
mod check;
mod checkpoint;
mod config;
mod convert;
mod data;
mod drift;
mod evaluate;
mod experiments;
mod fairness;
mod gates;
mod import;
mod log_setting;
mod logging;
mod monitor;
mod openapi;
mod otlp;
mod predictions;
mod privacy;
mod progress;
mod robustness;
mod serve;
mod shell;
mod trace;
mod tracking_client;
mod verify_artifacts;

// The writer thread is the bottleneck under many concurrent clients, and glibc's allocator took
// about a sixth of its cycles (small buffers per request, freed on other threads than the ones
// that allocated them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use config::{Config, Layer, Loaded};
use mltrail_store::{MetaStore, StoreConfig};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mltrail",
    version,
    about = "Accountable MLOps: MLflow-compatible tracking and registry with a tamper-evident audit trail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking and registry server (MLflow REST API + artifact proxy).
    ///
    /// Point the mlflow client at it with MLFLOW_TRACKING_URI=http://127.0.0.1:5000.
    Server(config::ServerArgs),
    /// Serve a registered model over HTTP (MLflow scoring protocol and /api/v1/predict): ONNX,
    /// XGBoost and LightGBM read natively, scikit-learn converted once; every prediction logged
    /// durably; NAME@ALIAS deployments follow the alias.
    Serve(serve::ServeArgs),
    /// Register model versions, approve them and move their aliases (through release gates).
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Release gates: the evidence and approvals a protected alias (production) needs before it
    /// moves to a version.
    Gates {
        #[command(subcommand)]
        command: gates::GatesCommand,
    },
    /// Compare two data files column by column (Evidently's tests and thresholds); print a table,
    /// and write JSON and HTML reports on request.
    Drift(drift::DriftArgs),
    /// Whether a classifier treats groups alike: Fairlearn's MetricFrame numbers (selection
    /// rate, accuracy, TPR, FPR, FNR, TNR per group and crossed groups) and parity scalars
    /// (demographic parity, equalized odds, equal opportunity) from a file of labels and
    /// predictions; JSON and HTML reports on request.
    Fairness(fairness::FairnessArgs),
    /// One prediction and everything behind it (record, explanation, feedback, model version,
    /// run, training data, audit events with their proofs), each proof checked here; exit 1
    /// when one fails.
    Trace(trace::TraceArgs),
    /// Evaluate a model version on a labelled dataset version with the serving runtime:
    /// scikit-learn's metrics, fairness by sensitive columns, global importance and an HTML
    /// report, kept as the version's evaluation (an audit event; metrics on its run).
    Evaluate(evaluate::EvaluateArgs),
    /// Attack a classifier version within an L∞ ball (tree-threshold search and HopSkipJump),
    /// verify tree ensembles (clique method), measure noise and missing-feature accuracy, and
    /// keep the report (release gates read it as robustness.*).
    Robustness(robustness::RobustnessArgs),
    /// Dataset versions (content-addressed, with schema and profile) and file profiles.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Routing experiments: a deployment's policy (split, shadow, canary, bandits), what it
    /// learned per arm, and off-policy estimates of other policies from its logs.
    Experiments {
        #[command(subcommand)]
        command: experiments::ExperimentsCommand,
    },
    /// Business metrics (revenue, orders, request volume) that anomaly monitors watch against
    /// a seasonal baseline (`mltrail monitor create --metric`).
    Metrics {
        #[command(subcommand)]
        command: business::MetricsCommand,
    },
    Annotate(business::AnnotateArgs),
    /// The log filter and format every service follows (text, JSON or Elastic Common Schema),
    /// changed while they run.
    Logging {
        #[command(subcommand)]
        command: log_setting::LoggingCommand,
    },
    /// Contract checks a team runs in its own CI (exit 1 on the first violation).
    Check {
        #[command(subcommand)]
        command: check::CheckCommand,
    },
    /// Periods marked (campaigns, outages, holidays) that anomaly baselines leave out.
    Annotations {
        #[command(subcommand)]
        command: business::AnnotationsCommand,
    },
    /// Check a deployment's logged traffic against its reference data.
    Monitor {
        #[command(subcommand)]
        command: monitor::MonitorCommand,
    },
    /// Read back a deployment's prediction log.
    Predictions {
        #[command(subcommand)]
        command: PredictionsCommand,
    },
    /// Copy a SQLite store and its artifacts into a new folder while the server runs, and
    /// verify the copy's audit trail and artifacts. The copy runs as a store of its own.
    ///
    /// PostgreSQL stores are backed up with pg_dump (docs/operations.md).
    Backup(backup::BackupArgs),
    /// Bring another tracking server's history in, ids kept: `mltrail import mlflow SOURCE`
    /// (an MLflow database or file store, read directly), then point the client at mltrail.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Users who log in with a password when the server runs with --auth on (against the
    /// store directly: works before any server runs).
    Users {
        #[command(subcommand)]
        command: access::UsersCommand,
    },
    /// Service tokens with scopes for --auth on (against the store directly).
    Tokens {
        #[command(subcommand)]
        command: access::TokensCommand,
    },
    /// Personal data in stored predictions: a person's export and erasure (GDPR access and
    /// erasure), through the tracking server.
    Privacy {
        #[command(subcommand)]
        command: privacy::PrivacyCommand,
    },
    /// Inspect and verify the hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The configuration: defaults, mltrail.toml, MLTRAIL_* environment variables and flags.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// Print the manual page, or write a page per command with --dir.
    Man(shell::ManArgs),
    /// Print the native API's OpenAPI 3.1 document (the tracking server's; a serving
    /// process's with --serving), as /api/v1/openapi.json serves it.
    Openapi(openapi::OpenapiArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the configuration in effect: every key with its value and where the value came from
    /// (default, the config file, an environment variable, or a flag). Passwords in URIs are
    /// hidden.
    ///
    /// Add a command and its flags (`mltrail config show serve --port 7000`) to see what that
    /// command would run with.
    Show(Box<ShowArgs>),
    /// Print a mltrail.toml with every key at its default, each with its environment variables
    /// and flags.
    Example,
}

#[derive(Args)]
#[command(mut_arg("json", |a| a.help(
    "Print JSON: tables.<table>.<key> is {value, source, from}"
)))]
struct ShowArgs {
    #[command(flatten)]
    config: config::ConfigArgs,
    #[command(flatten)]
    output: args::JsonArgs,
    #[command(subcommand)]
    command: Option<ShowFor>,
}

#[derive(Subcommand)]
enum ShowFor {
    /// With `mltrail server`'s flags.
    Server(config::ServerArgs),
    /// With `mltrail serve`'s flags.
    Serve(Box<serve::ServeArgs>),
}

// `audit verify --artifacts-destination`: sets `[store] artifacts_destination` like the server's
// flag of the same name.
#[derive(Args, Serialize)]
struct VerifyArtifactsArgs {
    /// Also re-hash every artifact the trail records (same forms as the server's flag;
    /// default: the config file's, then ./mltrail-data/artifacts when it exists).
    #[arg(long)]
    artifacts_destination: Option<String>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Register an ONNX file as a new version of NAME; prints the version number. The model is
    /// compiled first: one that cannot be served is refused, naming the operator.
    Register(serve::RegisterArgs),
    /// Approve NAME/VERSION for a protected alias (four eyes: a user with the approver role
    /// who did not create the version; needs the server's --auth on).
    Approve(gates::ApproveArgs),
    /// Point an alias at NAME/VERSION; a protected alias moves only when its gate passes
    /// (`mltrail gates check` says why not), and the move keeps the gate's report.
    SetAlias(gates::SetAliasArgs),
    /// List the reports of NAME's gated moves, newest first.
    GateReports(gates::GateReportsArgs),
    /// Convert a version logged with mlflow.sklearn.log_model to ONNX ahead of serving (skl2onnx
    /// in the Python environment, checked on the logged input example to 1e-5), and keep the
    /// file as the version's derived artifact; `mltrail serve` otherwise does it on first serve.
    Convert(convert::ConvertArgs),
    /// The model card of NAME/VERSION, made only from the trail (registry, training data,
    /// evaluation, fairness, robustness, explanations, gate reports, deployments, alerts);
    /// its digest is recorded in the audit trail.
    Card(gates::CardArgs),
}

#[derive(Subcommand)]
enum PredictionsCommand {
    /// Export predictions and feedback (archived Parquet plus local segments) as Parquet or CSV.
    Export(predictions::ExportArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the chain and check stored state against it; exits 1 at the first broken link.
    ///
    /// Opens the store directly, so it works with the server stopped.
    #[command(mut_arg("json", |a| a.help("Print the report as JSON")))]
    Verify {
        #[command(flatten)]
        store: config::StoreArgs,
        #[command(flatten)]
        artifacts: VerifyArtifactsArgs,
        /// Also check that the trail still holds what this signed checkpoint (from `audit
        /// checkpoint`) saw: a trail rewritten and re-hashed after it, or cut short, fails.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// The key that signed the checkpoint (`<name>+<hash>+<key>`, as `audit verifier-key`
        /// prints it); default [audit] verifier_key, else the store's own signing key.
        #[arg(long, requires = "checkpoint")]
        verifier_key: Option<String>,
        #[command(flatten)]
        output: args::JsonArgs,
    },
    /// Print a signed checkpoint of the trail: its size and Merkle root (RFC 9162), signed with
    /// Ed25519. Keep it somewhere the database's owner cannot rewrite (a ticket, a git
    /// repository, a colleague's mailbox); `audit verify --checkpoint FILE` checks against it.
    ///
    /// The key is made on first use ([audit] signing_key_file, MLTRAIL_AUDIT_SIGNING_KEY;
    /// default beside a SQLite store) and its public half is printed to stderr then.
    Checkpoint {
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Print the verifier key of the store's audit signing key (`<name>+<hash>+<key>`): what
    /// an auditor checks checkpoints with (`audit verify --checkpoint F --verifier-key K`).
    VerifierKey {
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// Print the inclusion proof of event SEQ in today's trail (its Merkle audit path), as JSON.
    Prove {
        /// The event's sequence number (`audit log` lists them).
        seq: i64,
        #[command(flatten)]
        store: config::StoreArgs,
    },
    /// List audit events in order.
    #[command(mut_arg("limit", |a| a.help("At most this many events").default_value("1000")))]
    #[command(mut_arg("json", |a| a.help("One JSON object per line instead of a table")))]
    Log {
        #[command(flatten)]
        store: config::StoreArgs,
        /// Only events of one entity: `run:<id>`, `experiment:<id>`, `registered_model:<name>`,
        /// `model_version:<name>/<version>`, or a bare type such as `artifact`.
        #[arg(long)]
        entity: Option<String>,
        /// Only events of one actor: a name (`alice`, `ci-pipeline`) or a whole spelling
        /// (`user:alice`, `token:ci-pipeline`, `local:root`, `anonymous`).
        #[arg(long)]
        actor: Option<String>,
        #[command(flatten)]
        limit: args::LimitArgs,
        #[command(flatten)]
        output: args::JsonArgs,
    },
}

fn main() -> ExitCode {
    // Built by hand rather than `Cli::parse()` so each flag's help shows the default and the
    // environment variables of the config key it sets.
    let matches = config::annotate_help(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Commands that print reports end quietly when their reader goes away (`mltrail drift … | head`),
/// like other command-line tools. Servers keep Rust's default (SIGPIPE ignored), where a closed
/// socket must never kill the process.
fn exit_quietly_on_closed_stdout() {
    // SAFETY: restoring the default disposition of one signal before any output is written.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Drift(_)
            | Command::Fairness(_)
            | Command::Trace(_)
            | Command::Evaluate(_)
            | Command::Data { .. }
            | Command::Audit { .. }
            | Command::Backup(_)
            | Command::Import { .. }
            | Command::Predictions { .. }
            | Command::Monitor { .. }
            | Command::Metrics { .. }
            | Command::Check { .. }
            | Command::Logging { .. }
            | Command::Annotations { .. }
            | Command::Config { .. }
            | Command::Users { .. }
            | Command::Tokens { .. }
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Openapi(_)
    ) {
        exit_quietly_on_closed_stdout();
        // Progress lines only where a person watches.
        mltrail_data::table::show_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    }
    match cli.command {
        Command::Completions(args) => {
            shell::completions(&args, Cli::command());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => {
            shell::man(&args, Cli::command())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi(args) => {
            openapi::print(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Server(args) => {
            let loaded = Loaded::load(&args.config, args.layer()?)?;
            loaded.check("store", "backend_store_uri", |c| {
                if c.store.backend_store_uri.trim().is_empty() {
                    bail!("is empty");
                }
                Ok(())
            })?;
            loaded.check("log", "otlp_endpoint", check_otlp)?;
            logging::init(&loaded.config.log);
            serve(&loaded.config).await?;
            logging::stop_otlp();
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command } => {
            show_config(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit(command).await,
        Command::Users { command } => {
            access::users(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens { command } => {
            access::tokens(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy { command } => {
            privacy::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => backup::run(args, audit_artifacts).await,
        Command::Import { command } => {
            import::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data { command } => {
            data::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Monitor { command } => {
            let fail = monitor::run(command).await?;
            Ok(if fail {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Drift(mut args) => {
            let downloads = tempfile::tempdir()?;
            drift::resolve_inputs(&mut args, downloads.path()).await?;
            let outcome = tokio::task::spawn_blocking(move || drift::run(args)).await??;
            Ok(if outcome.fail {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Evaluate(args) => {
            evaluate::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Robustness(args) => {
            robustness::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace(args) => Ok(if trace::run(args).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Command::Fairness(args) => {
            tokio::task::spawn_blocking(move || fairness::run(args)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let loaded = Loaded::load(&args.config, args.layer()?)?;
            loaded.check("serve", "model", |c| serve::model_ref(&c.serve))?;
            loaded.check("serve", "policy", |c| serve::policy_document(&c.serve))?;
            loaded.check("log", "otlp_endpoint", check_otlp)?;
            logging::init(&loaded.config.log);
            serve::serve(loaded.config.serve, loaded.config.auth, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Predictions {
            command: PredictionsCommand::Export(args),
        } => {
            let count = predictions::export(args).await?;
            eprintln!("exported {count} records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::Register(args),
        } => {
            println!("{}", serve::register(args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::Approve(args),
        } => {
            gates::approve(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::SetAlias(args),
        } => {
            gates::set_alias(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::GateReports(args),
        } => {
            gates::gate_reports(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::Convert(args),
        } => {
            convert::convert(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models {
            command: ModelsCommand::Card(args),
        } => {
            gates::card(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gates { command } => {
            gates::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Experiments { command } => {
            experiments::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics { command } => {
            business::run_metrics(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Annotate(args) => {
            business::annotate(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logging { command } => {
            log_setting::run(command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { command } => Ok(if check::run(command)? {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }),
        Command::Annotations { command } => {
            business::run_annotations(command).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show_config(command: ConfigCommand) -> Result<()> {
    let show = match command {
        ConfigCommand::Example => {
            print!("{}", config::example(&Cli::command())?);
            return Ok(());
        }
        ConfigCommand::Show(show) => show,
    };
    // The command's own --config wins over the one given to `show`.
    let (file, flags) = match &show.command {
        None => (None, Layer::default()),
        Some(ShowFor::Server(args)) => (args.config.config.clone(), args.layer()?),
        Some(ShowFor::Serve(args)) => (args.config.config.clone(), args.layer()?),
    };
    let file = file.or(show.config.config);
    let loaded = Loaded::load_with(file.as_deref(), &config::Env::from_process(), flags)?;
    if show.output.json {
        println!("{}", serde_json::to_string_pretty(&loaded.show_json()?)?);
    } else {
        print!("{}", loaded.show_text()?);
    }
    Ok(())
}

async fn serve(config: &Config) -> Result<()> {
    let (server, store_uri, destination) = (
        &config.server,
        &config.store.backend_store_uri,
        &config.store.artifacts_destination,
    );
    let store = MetaStore::open(&StoreConfig::new(store_uri))
        .await
        .with_context(|| format!("cannot open backend store {store_uri}"))?;
    // Checked before anything else is opened or made: a refused start leaves nothing behind.
    let privacy = match privacy::server_master_key(config, &store).await {
        Ok(master) => master.map(|m| {
            std::sync::Arc::new(mltrail_serving::privacy::StoreKeys::new(store.clone(), m))
        }),
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let artifacts = mltrail_artifacts::ArtifactStore::open(destination)?;
    let tls = config::tls_acceptor(&server.tls_cert, &server.tls_key, "server")?;
    let addr = format!("{}:{}", server.host, server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let ready = match access::check_bind(&config.auth, local, "server") {
        Ok(()) if config.auth.mode == config::AuthModeArg::On => {
            access::ensure_first_admin(&store).await
        }
        other => other,
    };
    let ready = match ready {
        Ok(()) => gates::apply_configured(&store, &config.gates.policies).await,
        failed => failed,
    };
    if let Err(e) = ready {
        store.close().await;
        return Err(e);
    }
    tracing::info!(
        address = %local,
        auth = ?config.auth.mode,
        backend_store_uri = %config::redact(store_uri),
        artifacts_destination = %destination,
        "mltrail server listening"
    );
    // Scripts and tests read this line to learn the port when started with --port 0.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("mltrail server listening on {scheme}://{local}");
    let webhooks = std::sync::Arc::new(mltrail_server::webhooks::WebhookSink::new(
        store.clone(),
        config.monitor.retry_policy(),
    ));
    let mut engine = mltrail_monitor::runner::Engine::new(
        store.clone(),
        artifacts.clone(),
        webhooks.clone(),
        config.monitor.reference_cache,
    );
    if let Some(keys) = &privacy {
        engine = engine.with_subject_keys(keys.clone());
    }
    let engine = std::sync::Arc::new(engine);
    let (stop_monitors, monitors_stopped) = tokio::sync::watch::channel(false);
    let monitoring = tokio::spawn(
        engine
            .clone()
            .run(config.monitor.interval(), monitors_stopped),
    );
    let state = mltrail_server::AppState {
        store: store.clone(),
        artifacts,
        webhooks,
        monitors: engine,
        auth: std::sync::Arc::new(
            mltrail_server::auth::Auth::new(config.auth.mode.into())
                .with_default_permission(config.auth.default_permission.into()),
        ),
        privacy,
        checkpoints: trail_signer(config, store_uri),
        // Over HTTPS the session cookie is marked Secure (never sent over plain HTTP).
        ui: std::sync::Arc::new(
            mltrail_server::ui::UiState::default().secure_cookies(tls.is_some()),
        ),
        http: Default::default(),
    };
    let limits = mltrail_server::Limits {
        max_artifact_bytes: server.max_artifact_bytes,
        max_json_bytes: server.max_json_bytes,
    };
    // Over OTLP the server's gauges go out as `/metrics` shows them, read from the store every
    // export interval while an exporter is in force.
    let metrics_text = std::sync::Arc::new(std::sync::RwLock::new(String::new()));
    otlp::identify("mltrail-server", Vec::new());
    otlp::export_metrics({
        let text = metrics_text.clone();
        std::sync::Arc::new(move || text.read().map(|t| t.clone()).unwrap_or_default())
    });
    let metrics_reader = {
        let (state, text) = (state.clone(), metrics_text.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(otlp::METRICS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !logging::otlp_active() {
                    continue;
                }
                match mltrail_server::metrics::render(&state).await {
                    Ok(rendered) => {
                        if let Ok(mut t) = text.write() {
                            *t = rendered;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e.message, "cannot read the server's metrics for OTLP")
                    }
                }
            }
        })
    };
    logging::start_otlp();
    // The server follows the log setting it holds for every service, as each `serve` does.
    let log_follower = {
        let store = store.clone();
        logging::follow(move || {
            let store = store.clone();
            async move {
                let held = mltrail_store::settings::get(&store, "log").await?;
                Ok(held
                    .map(|s| serde_json::from_value::<logging::Setting>(s.value))
                    .transpose()?)
            }
        })
    };
    mltrail_server::serve(listener, tls, state, limits, shutdown_signal()).await?;
    log_follower.abort();
    metrics_reader.abort();
    let _ = stop_monitors.send(true);
    let _ = monitoring.await;
    tracing::info!("draining writes and closing the store");
    store.close().await;
    Ok(())
}

/// `[log] otlp_endpoint`, when set, is an http(s) URL.
fn check_otlp(config: &config::Config) -> Result<()> {
    match config
        .log
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        Some(endpoint) => otlp::check_endpoint(endpoint),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

async fn open_store(uri: &str) -> Result<MetaStore> {
    MetaStore::open(&StoreConfig::new(uri))
        .await
        .with_context(|| format!("cannot open backend store {}", config::redact(uri)))
}

/// Where the audit signing key is: `[audit] signing_key_file` (MLTRAIL_AUDIT_SIGNING_KEY), else
/// beside a SQLite store's file.
fn key_path(config: &Config, store_uri: &str) -> Result<std::path::PathBuf> {
    match &config.audit.signing_key_file {
        Some(path) if path.to_string_lossy().starts_with("PRIVATE+KEY+") => bail!(
            "MLTRAIL_AUDIT_SIGNING_KEY and [audit] signing_key_file name the key's file, not the key: write the key to a file and name that"
        ),
        Some(path) => Ok(path.clone()),
        None => checkpoint::default_key_path(store_uri),
    }
}

/// What signs the checkpoints traces carry: the audit signing key, made beside a SQLite store
/// on first use as `mltrail audit checkpoint` makes it. Without one (a PostgreSQL store and no
/// `[audit] signing_key_file`), traces carry the trail's root unsigned.
fn trail_signer(config: &Config, store_uri: &str) -> Option<mltrail_server::lineage::SharedSigner> {
    let made = key_path(config, store_uri).and_then(|path| {
        let (key, made) = checkpoint::load_or_create(&path, &config.audit.origin)?;
        Ok((key, path, made))
    });
    match made {
        Ok((key, path, made)) => {
            if made {
                tracing::info!(key = %path.display(), verifier_key = %key.verifying(), "made the audit signing key (keep it private and backed up; hand the verifier key to auditors)");
            }
            Some(std::sync::Arc::new(checkpoint::TrailSigner::new(key, path)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "traces will carry the audit trail's root unsigned");
            None
        }
    }
}

/// The audit signing key and its file; made (and its verifier key printed to stderr) on first
/// use.
fn signing_key(
    loaded: &Loaded,
    store_uri: &str,
) -> Result<(checkpoint::SigningKey, std::path::PathBuf)> {
    let path = key_path(&loaded.config, store_uri)?;
    let (key, made) = checkpoint::load_or_create(&path, &loaded.config.audit.origin)?;
    if made {
        eprintln!(
            "made the audit signing key {} (keep it private, out of reach of whoever can write the database; back it up). Verifier key, for others to check checkpoints: {}",
            path.display(),
            key.verifying()
        );
    }
    Ok((key, path))
}

/// What checks a checkpoint: `--verifier-key` or `[audit] verifier_key` (what an auditor holds),
/// else the public half of the store's signing key when it exists (never made here).
fn checkpoint_verifier(
    loaded: &Loaded,
    store_uri: &str,
    given: Option<&str>,
) -> Result<checkpoint::Verifier> {
    if let Some(text) = given.or(loaded.config.audit.verifier_key.as_deref()) {
        return checkpoint::Verifier::parse(text);
    }
    let path = key_path(&loaded.config, store_uri)?;
    match checkpoint::load(&path)? {
        Some(key) => Ok(key.verifying()),
        None => bail!(
            "no key to check the checkpoint with: pass --verifier-key (`mltrail audit verifier-key` prints it where the signing key is), or set [audit] verifier_key"
        ),
    }
}

/// The trail against a signed checkpoint: `Ok(size)` when its first events are unchanged,
/// `Err(reason)` when not; the outer error when the checkpoint does not check.
async fn checked_against(
    store: &MetaStore,
    verifier: &checkpoint::Verifier,
    text: &str,
) -> Result<std::result::Result<u64, String>> {
    let checkpoint = checkpoint::open(text, verifier)?;
    let leaves: Vec<_> = match mltrail_store::audit::leaves(store).await {
        Ok(leaves) => leaves.into_iter().map(|(_, leaf)| leaf).collect(),
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(checkpoint::consistent(&leaves, &checkpoint).map(|()| checkpoint.size))
}

/// Where `audit verify` finds artifacts: the configured destination, or the default folder when
/// it exists (a store that never received an artifact has none to check).
fn audit_artifacts(loaded: &Loaded) -> Option<String> {
    let destination = &loaded.config.store.artifacts_destination;
    let configured = config::Key::find("store", "artifacts_destination")
        .is_some_and(|key| *loaded.source(key) != config::Source::Default);
    (configured || std::path::Path::new(destination).exists()).then(|| destination.clone())
}

async fn audit(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            store,
            artifacts,
            checkpoint,
            verifier_key,
            output,
        } => {
            let json = output.json;
            let loaded = Loaded::load(
                &store.config,
                store.layer()?.then(Layer::flags("store", &artifacts)?),
            )?;
            let destination = audit_artifacts(&loaded);
            let uri = loaded.config.store.backend_store_uri.clone();
            // The checkpoint and its key are read first: a bad file fails before the long part.
            let against = match &checkpoint {
                None => None,
                Some(file) => {
                    let text = std::fs::read_to_string(file).with_context(|| {
                        format!("cannot read the checkpoint {}", file.display())
                    })?;
                    let verifier = checkpoint_verifier(&loaded, &uri, verifier_key.as_deref())?;
                    checkpoint::open(&text, &verifier)?;
                    Some((text, verifier))
                }
            };
            let store = MetaStore::open(&StoreConfig::new(&uri))
                .await
                .with_context(|| format!("cannot open backend store {}", config::redact(&uri)))?;
            let artifacts = destination
                .map(|d| mltrail_artifacts::ArtifactStore::open(&d))
                .transpose()?;
            let verified = verify_artifacts::verify_store(&store, artifacts.as_ref()).await;
            // Against a checkpoint: the trail's first leaves must still have its root.
            let against = match &against {
                None => Ok(None),
                Some((text, verifier)) => checked_against(&store, verifier, text).await.map(Some),
            };
            store.close().await;
            let (report, artifacts_checked) = verified?;
            let against = against?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "report": report,
                        "artifacts_checked": artifacts_checked,
                        "checkpoint": against.as_ref().map(|a| match a {
                            Ok(size) => serde_json::json!({"consistent": true, "size": size}),
                            Err(why) => serde_json::json!({"consistent": false, "reason": why}),
                        }),
                    }))?
                );
            }
            if let Some(Err(why)) = &against {
                eprintln!("audit trail BROKEN against the checkpoint: {why}");
                return Ok(ExitCode::from(1));
            }
            if let (Some(Ok(size)), false) = (&against, json) {
                println!("consistent with the checkpoint: its {size} events are unchanged");
            }
            match report.broken {
                None => {
                    if !json {
                        let artifacts = artifacts_checked
                            .map(|n| format!(", {n} artifacts re-hashed"))
                            .unwrap_or_else(|| {
                                ", artifacts not checked (no artifact destination)".into()
                            });
                        println!(
                            "audit trail intact: {} events, {} entities checked against their recorded state{artifacts}",
                            report.events, report.entities_checked
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    eprintln!(
                        "audit trail BROKEN at event {} ({} {}): {}",
                        b.seq, b.entity_type, b.entity_id, b.reason
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Checkpoint { store } => {
            let loaded = Loaded::load(&store.config, store.layer()?)?;
            let uri = loaded.config.store.backend_store_uri.clone();
            let (key, path) = signing_key(&loaded, &uri)?;
            let store = open_store(&uri).await?;
            let leaves = mltrail_store::audit::leaves(&store).await;
            store.close().await;
            let leaves: Vec<_> = leaves?.into_iter().map(|(_, leaf)| leaf).collect();
            let note =
                checkpoint::sign_consistently(&key, &path, &leaves, mltrail_core::now_millis())?;
            print!("{note}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifierKey { store } => {
            let loaded = Loaded::load(&store.config, store.layer()?)?;
            let uri = loaded.config.store.backend_store_uri.clone();
            let (key, _) = signing_key(&loaded, &uri)?;
            println!("{}", key.verifying());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove { seq, store } => {
            let loaded = Loaded::load(&store.config, store.layer()?)?;
            let uri = loaded.config.store.backend_store_uri.clone();
            let (key, key_path) = signing_key(&loaded, &uri)?;
            let store = open_store(&uri).await?;
            let read = async {
                Ok::<_, mltrail_store::StoreError>((
                    mltrail_store::audit::leaves(&store).await?,
                    mltrail_store::audit::event(&store, seq).await?,
                ))
            }
            .await;
            store.close().await;
            let (leaves, event) = read?;
            let (Some(event), Some(index)) = (event, leaves.iter().position(|(s, _)| *s == seq))
            else {
                bail!("no audit event {seq}: `mltrail audit log` lists them");
            };
            let leaves: Vec<_> = leaves.into_iter().map(|(_, leaf)| leaf).collect();
            let root = mltrail_core::merkle::root(&leaves);
            let path = mltrail_core::merkle::inclusion_proof(&leaves, index).unwrap_or_default();
            let note = checkpoint::sign_consistently(
                &key,
                &key_path,
                &leaves,
                mltrail_core::now_millis(),
            )?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "event": event,
                    "leaf_index": index,
                    "tree_size": leaves.len(),
                    "leaf_hash": hex::encode(leaves[index]),
                    "root": hex::encode(root),
                    "audit_path": path.iter().map(hex::encode).collect::<Vec<_>>(),
                    "checkpoint": note,
                    "verifier_key": key.verifying().to_string(),
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Log {
            store,
            entity,
            actor,
            limit,
            output,
        } => {
            let (limit, json) = (limit.limit, output.json);
            let uri = Loaded::load(&store.config, store.layer()?)?
                .config
                .store
                .backend_store_uri;
            let store = MetaStore::open(&StoreConfig::new(&uri))
                .await
                .with_context(|| format!("cannot open backend store {}", config::redact(&uri)))?;
            let events = mltrail_store::audit::list_events(
                &store,
                entity.as_deref(),
                actor.as_deref(),
                limit,
            )
            .await?;
            store.close().await;
            for e in events {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{:>6}  {}  {:<20} {:<32} {}:{}  {}",
                        e.event.seq,
                        mltrail_core::time::rfc3339_millis(e.event.time),
                        e.event.actor,
                        e.event.action,
                        e.event.entity_type,
                        e.event.entity_id,
                        e.event
                            .state_digest
                            .as_deref()
                            .map(|d| &d[..16.min(d.len())])
                            .unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
