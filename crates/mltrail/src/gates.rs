//! `mltrail gates set|show|check|delete` and the release steps of `mltrail models`: `approve`,
//! `set-alias` (gated, with an admin's `--override-reason`) and `gate-reports`. All talk to the
//! tracking server, which checks and keeps everything (`crates/mltrail-server/src/gates.rs`).

use crate::tracking_client::segment as encode;
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};

/// `NAME/VERSION` split at the last `/` (names may hold one).
fn name_version(text: &str) -> Result<(String, String)> {
    let (name, version) = text
        .rsplit_once('/')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| anyhow!("`{text}` is not NAME/VERSION (e.g. credit/3)"))?;
    Ok((name.to_string(), version.to_string()))
}

#[derive(Subcommand)]
pub enum GatesCommand {
    /// Protect an alias of NAME: it moves only to a version that meets every requirement and
    /// has enough approvals. Replaces the alias's gate, if any. An admin's (with auth on).
    ///
    /// A requirement is VALUE OP BOUND. VALUE: evaluation.METRIC (roc_auc, accuracy, f1, rmse,
    /// … from `mltrail evaluate`), fairness.COLUMN.METRIC (Fairlearn's parity scalars between
    /// groups, e.g. fairness.sex.demographic_parity_difference; fairness.COLUMN.to_overall.METRIC
    /// for the gap to the whole population), robustness.FIELD, drift.FIELD. OP: >=, <=, >, <.
    /// BOUND: a number, or champion.VALUE [+|- N] (the version the alias points at now; on a
    /// first release such requirements hold and the report says so). A value the trail does not
    /// hold fails its requirement.
    ///
    /// The gate of `production` also guards MLflow's stage Production, `staging` Staging.
    Set {
        /// The registered model.
        name: String,
        #[arg(long)]
        alias: String,
        /// A requirement; repeat for more.
        #[arg(long = "require")]
        requirements: Vec<String>,
        /// Approvals a version needs (users with the approver role other than its author);
        /// 0 for a development registry.
        #[arg(long, default_value_t = 1)]
        approvals: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print NAME's gates (or one alias's).
    Show {
        name: String,
        #[arg(long)]
        alias: Option<String>,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What the gate would say now about moving the alias to NAME/VERSION, without moving it.
    /// Exits 1 when it would refuse.
    Check {
        /// NAME/VERSION.
        model: String,
        #[arg(long)]
        alias: String,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove the gate of an alias (an admin's; recorded in the trail).
    Delete {
        name: String,
        #[arg(long)]
        alias: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct ApproveArgs {
    /// NAME/VERSION.
    model: String,
    /// The protected alias the approval is for.
    #[arg(long, default_value = "production")]
    alias: String,
    /// Why (kept with the approval, the report and the model card).
    #[arg(long, default_value = "")]
    comment: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct SetAliasArgs {
    /// NAME/VERSION.
    model: String,
    #[arg(long)]
    alias: String,
    /// An admin's move of a protected alias past a failed gate: the reason is kept in the
    /// report, the trail and the model card, and the move is flagged as an override.
    #[arg(long)]
    override_reason: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct GateReportsArgs {
    /// The registered model.
    name: String,
    /// Only reports of moves to this version.
    #[arg(long)]
    version: Option<String>,
    #[arg(long, default_value_t = 20)]
    max_results: i64,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

fn print_policy(gate: &Value) {
    let approvals = gate["approvals"].as_u64().unwrap_or(0);
    println!(
        "{} (approvals: {approvals})",
        gate["alias"].as_str().unwrap_or("?")
    );
    for r in gate["requirements"].as_array().into_iter().flatten() {
        println!("  require {}", r.as_str().unwrap_or("?"));
    }
}

/// One line per requirement and the approvals, as `gates check` and `models set-alias` print.
fn print_report(report: &Value) {
    for r in report["requirements"].as_array().into_iter().flatten() {
        let verdict = r["verdict"].as_str().unwrap_or("?");
        let detail = match (
            r["value"].as_f64(),
            r["bound"].as_f64(),
            r["reason"].as_str(),
        ) {
            (_, _, Some(reason)) => reason.to_string(),
            (Some(v), Some(b), None) => format!("value {v}, bound {b}"),
            _ => String::new(),
        };
        println!(
            "{verdict:<7} {}  {detail}",
            r["requirement"].as_str().unwrap_or("?")
        );
    }
    let given = report["approvals"]["given"].as_array().map_or(0, Vec::len);
    let required = report["approvals"]["required"].as_u64().unwrap_or(0);
    let mark = if given as u64 >= required {
        "pass"
    } else {
        "fail"
    };
    println!("{mark:<7} approvals {given} of {required}");
    for a in report["approvals"]["given"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "          {} {}",
            a["approver"].as_str().unwrap_or("?"),
            a["comment"].as_str().unwrap_or("")
        );
    }
}

pub async fn run(command: GatesCommand) -> Result<()> {
    match command {
        GatesCommand::Set {
            name,
            alias,
            requirements,
            approvals,
            client,
        } => {
            let c = client.client()?;
            let body = json!({"requirements": requirements, "approvals": approvals});
            let got = c
                .put(
                    &format!("/api/v1/models/{}/gates/{}", encode(&name), encode(&alias)),
                    &body,
                    "gates set",
                )
                .await?;
            print_policy(&got["gate"]);
        }
        GatesCommand::Show {
            name,
            alias,
            output,
            client,
        } => {
            let c = client.client()?;
            let path = match &alias {
                Some(a) => format!("/api/v1/models/{}/gates/{}", encode(&name), encode(a)),
                None => format!("/api/v1/models/{}/gates", encode(&name)),
            };
            let got = c.get_json(&path, "gates show").await?;
            if output.json {
                println!("{got}");
            } else if let Some(gate) = got.get("gate") {
                print_policy(gate);
            } else {
                let gates = got["gates"].as_array().cloned().unwrap_or_default();
                if gates.is_empty() {
                    println!("{name} has no release gates");
                }
                gates.iter().for_each(print_policy);
            }
        }
        GatesCommand::Check {
            model,
            alias,
            output,
            client,
        } => {
            let (name, version) = name_version(&model)?;
            let c = client.client()?;
            let got = c
                .get_json(
                    &format!(
                        "/api/v1/models/{}/gates/{}/check?version={version}",
                        encode(&name),
                        encode(&alias)
                    ),
                    "gates check",
                )
                .await?;
            let passed = got["report"]["passed"].as_bool() == Some(true);
            if output.json {
                println!("{}", got["report"]);
            } else {
                print_report(&got["report"]);
                println!(
                    "{name}/{version} {} the gate of {name}@{alias}",
                    if passed { "passes" } else { "fails" }
                );
            }
            if !passed {
                std::process::exit(1);
            }
        }
        GatesCommand::Delete {
            name,
            alias,
            client,
        } => {
            let c = client.client()?;
            c.delete(
                &format!("/api/v1/models/{}/gates/{}", encode(&name), encode(&alias)),
                "gates delete",
            )
            .await?;
            println!("removed the gate of {name}@{alias}");
        }
    }
    Ok(())
}

pub async fn approve(args: ApproveArgs) -> Result<()> {
    let (name, version) = name_version(&args.model)?;
    let c = args.client.client()?;
    let got = c
        .post(
            &format!(
                "/api/v1/models/{}/versions/{version}/approvals",
                encode(&name)
            ),
            &json!({"alias": args.alias, "comment": args.comment}),
            "models approve",
        )
        .await?;
    let count = got["approvals"].as_array().map_or(0, Vec::len);
    println!(
        "approved {name}/{version} for {}; it has {count} approval(s)",
        args.alias
    );
    Ok(())
}

pub async fn set_alias(args: SetAliasArgs) -> Result<()> {
    let (name, version) = name_version(&args.model)?;
    let c = args.client.client()?;
    let mut body = json!({"version": version});
    if let Some(reason) = &args.override_reason {
        body["override_reason"] = json!(reason);
    }
    let got = c
        .post(
            &format!(
                "/api/v1/models/{}/aliases/{}",
                encode(&name),
                encode(&args.alias)
            ),
            &body,
            "models set-alias",
        )
        .await?;
    match got["gate_report"].as_str() {
        Some(digest) => println!(
            "{name}@{} -> {version} (gate report {digest}{})",
            args.alias,
            if got["overridden"] == true {
                ", OVERRIDDEN"
            } else {
                ""
            }
        ),
        None => println!("{name}@{} -> {version} (no gate)", args.alias),
    }
    Ok(())
}

pub async fn gate_reports(args: GateReportsArgs) -> Result<()> {
    let c = args.client.client()?;
    let mut path = format!(
        "/api/v1/models/{}/gate-reports?max_results={}",
        encode(&args.name),
        args.max_results
    );
    if let Some(v) = &args.version {
        path.push_str(&format!("&version={}", encode(v)));
    }
    let got = c.get_json(&path, "models gate-reports").await?;
    let reports = got["gate_reports"]
        .as_array()
        .context("the server answered without `gate_reports`")?;
    if args.output.json {
        println!("{}", Value::Array(reports.clone()));
        return Ok(());
    }
    if reports.is_empty() {
        println!("no gated moves of {} yet", args.name);
    }
    for r in reports {
        let report = &r["report"];
        let time = r["created_time"]
            .as_i64()
            .map(mltrail_core::time::rfc3339_millis)
            .unwrap_or_default();
        let flag = if report["override"].is_object() {
            " OVERRIDE"
        } else {
            ""
        };
        println!(
            "{time}  {}@{} -> {}  by {}{flag}  {}",
            args.name,
            r["alias"].as_str().unwrap_or("?"),
            r["version"],
            report["checked_by"].as_str().unwrap_or("?"),
            r["digest"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// `[gates] policies`: each listed gate replaces its alias's stored gate when they differ. A
/// requirement that does not parse stops the start, naming the entry.
pub async fn apply_configured(
    store: &mltrail_store::MetaStore,
    entries: &[crate::config::GatePolicyEntry],
) -> Result<()> {
    use mltrail_store::{gates as stored, registry, StoreErrorKind};
    let actor = mltrail_core::Principal::Local("config".into()).to_string();
    let mut configured = Vec::new();
    for entry in entries {
        let policy = mltrail_core::gate::Policy::parse(&entry.require, entry.approvals)
            .with_context(|| {
                format!(
                    "[gates] policies: the gate of {}@{}",
                    entry.model, entry.alias
                )
            })?;
        configured.push(stored::ConfiguredGate {
            model: entry.model.clone(),
            alias: entry.alias.clone(),
            policy: policy.clone(),
        });
        let current = stored::policy(store, &entry.model, &entry.alias).await?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.requirements == policy.spelled() && c.approvals == policy.approvals);
        if same {
            continue;
        }
        match registry::set_gate(
            store,
            &actor,
            entry.model.clone(),
            entry.alias.clone(),
            policy,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(model = %entry.model, alias = %entry.alias, "release gate set from the configuration")
            }
            Err(e) if e.kind() == StoreErrorKind::NotFound => tracing::info!(
                model = %entry.model,
                alias = %entry.alias,
                "[gates] policies names a registered model that does not exist yet: it gets its gate when it is created"
            ),
            Err(e) => return Err(e.into()),
        }
    }
    store.configure_gates(configured);
    Ok(())
}

#[derive(Args)]
pub struct CardArgs {
    /// NAME/VERSION.
    model: String,
    /// md (Markdown), html (a self-contained page) or json (Model Card Toolkit v0.0.2 layout).
    #[arg(long, default_value = "md", value_parser = ["md", "html", "json"])]
    format: String,
    /// Write the card here instead of standard output.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `mltrail models card`: the tracking server builds the card from the trail and records its
/// digest; it is rendered here in the format asked for.
pub async fn card(args: CardArgs) -> Result<()> {
    let (name, version) = name_version(&args.model)?;
    let c = args.client.client()?;
    let got = c
        .post(
            &format!("/api/v1/models/{}/versions/{version}/card", encode(&name)),
            &json!({}),
            "models card",
        )
        .await?;
    let digest = got["digest"].as_str().unwrap_or_default();
    let card = &got["card"];
    let text = match args.format.as_str() {
        "json" => serde_json::to_string_pretty(card)?,
        "html" => mltrail_web::card::standalone(card, digest),
        _ => mltrail_web::card::markdown(card, digest),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} (card digest {digest}, recorded in the audit trail)",
                path.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(())
}
