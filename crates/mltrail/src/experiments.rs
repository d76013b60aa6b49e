//! `mltrail experiments`: a deployment's routing policy (set, show, end) and its experiment
//! view, through the tracking server, which keeps policies and what they learned
//! (`crates/mltrail-server/src/routing.rs`); serving replicas follow it within their
//! `--policy-interval-ms`.

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Subcommand;
use mltrail_serving::record::LogRecord;
use mltrail_serving::routing::offpolicy::{self, Estimator, Round};
use mltrail_serving::routing::{Policy, Router, RoutingState, Rule};
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};
use crate::tracking_client::segment as encode;

#[derive(Subcommand)]
pub enum ExperimentsCommand {
    /// Put a routing policy (a TOML file: kind, arms and the kind's keys; docs/experiments.md) in
    /// force for a deployment. Its replicas load the arms and route within a policy interval;
    /// the change is an audit event.
    SetPolicy {
        /// The policy file.
        file: PathBuf,
        /// The deployment, as `mltrail serve --deployment` names it.
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the routing policy in force for a deployment.
    Policy {
        /// The deployment, as `mltrail serve --deployment` names it.
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
        /// The deployment, as `mltrail serve --deployment` names it.
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Estimate another policy's value from a deployment's logged records (off-policy
    /// evaluation, Open Bandit Pipeline's estimators): each returned prediction with a
    /// positive propensity and a reward is a round; the target policy's probability of the
    /// logged arm over the propensity weighs its reward.
    ///
    /// A learning target (epsilon_greedy, thompson, ucb1, linucb) is evaluated as the
    /// stationary policy it would be after learning from these records, cross-fitted (from the
    /// even rounds for the odd ones and the other way round); a split by its weights; DR's
    /// reward model is each arm's mean logged reward.
    Evaluate {
        /// The deployment, as `mltrail serve --deployment` names it.
        #[arg(long)]
        deployment: String,
        /// The target policy (a policy file; its arms as the logs name them).
        #[arg(long)]
        target_policy: PathBuf,
        /// Only records at or after this time: 2026-11-27, 2026-11-27T10:00:00Z, or a duration
        /// ago (90m, 6h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// ips, snips or dr; repeat for several (default: all three).
        #[arg(long = "estimator", value_parser = ["ips", "snips", "dr"])]
        estimators: Vec<String>,
        /// Local segments not archived yet (default: ./mltrail-data/predictions/<deployment>
        /// if it exists).
        #[arg(long)]
        log_dir: Option<PathBuf>,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The experiment of the policy in force: per arm requests, rewards, mean reward with its
    /// 95 % interval, current propensity, and the regret estimate.
    Show {
        /// The deployment, as `mltrail serve --deployment` names it.
        #[arg(long)]
        deployment: String,
        #[command(flatten)]
        output: JsonArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The rounds a deployment's records give a target policy, and how many records were not
/// rounds (no propensity, no reward, not returned).
fn rounds(records: &[LogRecord], target: &Arc<Policy>) -> Result<(Vec<Round>, usize, f64)> {
    use std::collections::HashMap;
    let mut rewards: HashMap<uuid::Uuid, f64> = HashMap::new();
    for r in records {
        if let LogRecord::Feedback(f) = r {
            if let Ok(Some(reward)) = target.reward_of(f.reward.as_ref(), f.label.as_deref()) {
                rewards.insert(f.id, reward);
            }
        }
    }
    let labels: Vec<String> = target.arms.iter().map(ToString::to_string).collect();
    let context_columns: Vec<String> = match &target.rule {
        Rule::LinUcb { context, .. } => context.clone(),
        _ => Vec::new(),
    };
    struct Logged {
        arm: usize,
        propensity: f64,
        reward: f64,
        context: Option<Vec<f64>>,
    }
    let mut logged = Vec::new();
    let mut skipped = 0;
    for r in records {
        let LogRecord::Prediction(p) = r else {
            continue;
        };
        let (Some(signature), Some(arm), Some(reward)) = (
            p.signature.as_ref().filter(|s| s.returned),
            p.arm.as_deref(),
            rewards.get(&p.id),
        ) else {
            skipped += 1;
            continue;
        };
        let Some(propensity) = signature.propensity.filter(|v| *v > 0.0) else {
            skipped += 1;
            continue;
        };
        let Some(arm) = labels.iter().position(|l| l == arm) else {
            bail!(
                "the logs chose arm `{arm}`, which the target policy does not list ({}): a target policy is evaluated over the logged arms",
                labels.join(", ")
            );
        };
        let context = if context_columns.is_empty() {
            None
        } else {
            let inputs: serde_json::Map<String, Value> =
                serde_json::from_str(p.inputs.get()).unwrap_or_default();
            let values: Option<Vec<f64>> = context_columns
                .iter()
                .map(|c| inputs.get(c).and_then(Value::as_f64))
                .collect();
            match values {
                Some(v) => Some(v),
                None => {
                    skipped += 1;
                    continue;
                }
            }
        };
        logged.push(Logged {
            arm,
            propensity,
            reward: *reward,
            context,
        });
    }
    // A learning target, as it would stand after learning from these rounds; cross-fitted (it
    // learns from the even rounds to be evaluated on the odd ones, and the other way round),
    // so no round's own reward decides what the target would have done with it.
    let fitted: Vec<Router> = (0..2)
        .map(|half| {
            let mut learned = RoutingState::empty(&target.digest, labels.len());
            for l in logged.iter().skip(half).step_by(2) {
                learned.arms[l.arm].requests += 1;
                learned.arms[l.arm].observe(l.reward, l.context.as_deref());
            }
            Router::new(target.clone(), Some(learned))
        })
        .collect();
    let mut out: Vec<Round> = logged
        .iter()
        .enumerate()
        .map(|(i, l)| Round {
            arm: l.arm,
            propensity: l.propensity,
            reward: l.reward,
            target: fitted[1 - i % 2].probabilities_for(l.context.as_deref()),
            estimated: Vec::new(),
        })
        .collect();
    let means = offpolicy::arm_means(&out, labels.len());
    for r in &mut out {
        r.estimated = means.clone();
    }
    let logged_value = if out.is_empty() {
        f64::NAN
    } else {
        out.iter().map(|r| r.reward).sum::<f64>() / out.len() as f64
    };
    Ok((out, skipped, logged_value))
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
        ExperimentsCommand::Evaluate {
            deployment,
            target_policy,
            since,
            estimators,
            log_dir,
            output,
            client,
        } => {
            let since = since
                .as_deref()
                .map(|s| crate::predictions::parse_since(s, mltrail_core::now_millis()))
                .transpose()?;
            let (_, target) = crate::serve::policy_file(&target_policy)?;
            let target = Arc::new(target);
            let client = client.client()?;
            let range = mltrail_serving::archive_read::TimeRange { since, until: None };
            let records = crate::predictions::collect(&client, &deployment, range, log_dir).await?;
            let (rounds, skipped, logged_value) = rounds(&records, &target)?;
            if rounds.is_empty() {
                bail!(
                    "deployment `{deployment}` has no logged rounds to evaluate from: {skipped} predictions lack a positive propensity, a reward, or were not returned (route with a policy that explores, and send rewards to /api/v1/feedback)"
                );
            }
            let chosen: Vec<Estimator> = if estimators.is_empty() {
                vec![Estimator::Ips, Estimator::Snips, Estimator::Dr]
            } else {
                estimators
                    .iter()
                    .filter_map(|e| Estimator::parse(e))
                    .collect()
            };
            let estimates = chosen
                .iter()
                .map(|e| offpolicy::estimate(*e, &rounds))
                .collect::<Result<Vec<_>, _>>()?;
            if output.json {
                println!(
                    "{}",
                    json!({"deployment": deployment, "target_policy": target.name, "target_version": target.version(),
                           "rounds": rounds.len(), "skipped": skipped, "logged_value": logged_value,
                           "estimates": estimates})
                );
            } else {
                println!(
                    "{} rounds ({skipped} records without a positive propensity, a reward, or not returned); the logging policy's value (mean reward): {logged_value:.4}",
                    rounds.len()
                );
                println!(
                    "{:<9} {:>10} {:>10} {:>25} {:>16}",
                    "estimator", "value", "std err", "95% interval", "effective rounds"
                );
                for e in &estimates {
                    println!(
                        "{:<9} {:>10.4} {:>10.4} {:>25} {:>16.1}",
                        format!("{:?}", e.estimator).to_lowercase(),
                        e.value,
                        e.std_error,
                        format!("[{:.4}, {:.4}]", e.interval[0], e.interval[1]),
                        e.effective_rounds
                    );
                }
            }
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
