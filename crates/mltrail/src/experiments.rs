//! `mltrail experiments`: a deployment's routing policy (set, show, end) and its experiment
//! view, through the tracking server, which keeps policies and what they learned
//! (`crates/mltrail-server/src/routing.rs`); serving replicas follow it within their
//! `--policy-interval-ms`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};
use crate::tracking_client::segment as encode;

#[derive(Subcommand)]
pub enum ExperimentsCommand {
    /// Put a routing policy (a TOML file: kind, arms and the kind's keys; docs/serving.md) in
    /// force for a deployment. Its replicas load the arms and route within a policy interval;
    /// the change is an audit event.
    SetPolicy {
        /// The policy file.
        file: PathBuf,
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the routing policy in force for a deployment.
    Policy {
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a deployment's routing policy: its replicas serve their own --model alone again.
    /// What the policy learned is kept (setting it again resumes it).
    EndPolicy {
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The experiment of the policy in force: per arm requests, rewards, mean reward with its
    /// 95 % interval, current propensity, and the regret estimate.
    Show {
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn number(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

pub async fn run(command: ExperimentsCommand) -> Result<()> {
    match command {
        ExperimentsCommand::SetPolicy {
            file,
            deployment,
            client,
        } => {
            let (document, policy) = crate::serve::policy_file(&file)?;
            let got = client
                .client()?
                .put(
                    &format!("/api/v1/deployments/{}/policy", encode(&deployment)),
                    &json!({ "policy": document }),
                    "experiments set-policy",
                )
                .await?;
            println!(
                "deployment {deployment}: policy {} ({}, {} arms) version {} in force",
                policy.name,
                policy.rule.kind(),
                policy.arms.len(),
                got["version"].as_str().unwrap_or_default()
            );
        }
        ExperimentsCommand::Policy {
            deployment,
            output,
            client,
        } => {
            let got = client
                .client()?
                .get_json(
                    &format!("/api/v1/deployments/{}/policy", encode(&deployment)),
                    "experiments policy",
                )
                .await?;
            if output.json {
                println!("{got}");
            } else {
                println!(
                    "deployment {deployment}: version {} set by {} at {}",
                    got["version"].as_str().unwrap_or_default(),
                    got["actor"].as_str().unwrap_or_default(),
                    mltrail_core::time::rfc3339_seconds(got["updated_time"].as_i64().unwrap_or(0))
                );
                let table: toml::Table =
                    serde_json::from_value(got["policy"].clone()).unwrap_or_default();
                print!("{}", toml::to_string_pretty(&table)?);
            }
        }
        ExperimentsCommand::EndPolicy { deployment, client } => {
            client
                .client()?
                .delete(
                    &format!("/api/v1/deployments/{}/policy", encode(&deployment)),
                    "experiments end-policy",
                )
                .await?;
            println!("deployment {deployment}: routing policy ended");
        }
        ExperimentsCommand::Show {
            deployment,
            output,
            client,
        } => {
            let got = client
                .client()?
                .get_json(
                    &format!("/api/v1/deployments/{}/experiment", encode(&deployment)),
                    "experiments show",
                )
                .await?;
            if output.json {
                println!("{got}");
                return Ok(());
            }
            println!(
                "experiment {} · policy {} ({}) version {}",
                got["experiment"].as_str().unwrap_or_default(),
                got["policy"].as_str().unwrap_or_default(),
                got["kind"].as_str().unwrap_or_default(),
                got["version"].as_str().unwrap_or_default()
            );
            println!(
                "{:<32} {:>10} {:>9} {:>10} {:>23} {:>11}",
                "arm", "requests", "rewards", "mean", "95% interval", "propensity"
            );
            for arm in got["arms"].as_array().cloned().unwrap_or_default() {
                let interval = match arm["interval"].as_array() {
                    Some(i) if i.len() == 2 => {
                        format!("[{}, {}]", number(&i[0], 4), number(&i[1], 4))
                    }
                    _ => "-".into(),
                };
                println!(
                    "{:<32} {:>10} {:>9} {:>10} {:>23} {:>11}",
                    arm["arm"].as_str().unwrap_or_default(),
                    arm["requests"],
                    arm["rewards"],
                    number(&arm["mean_reward"], 4),
                    interval,
                    number(&arm["propensity"], 4)
                );
            }
            println!("regret estimate: {}", number(&got["regret"], 3));
            for warning in got["warnings"].as_array().cloned().unwrap_or_default() {
                println!("warning: {}", warning.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
