//! `mltrail check ranking`: the contract check a front-end team runs in its own CI. Given what
//! the model served and what the front end displayed for the same impressions, it fails with
//! exit code 1 on the first impression not displayed in the served order, naming it and the
//! sort key the display seems to follow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use mltrail_monitor::ranking::{self, Impression};

#[derive(Subcommand)]
pub enum CheckCommand {
    /// Check that a front end displays rankings in the order they were served: exit 1 with the
    /// first impression displayed otherwise (and the sort key it looks re-sorted by), 0 when
    /// every one agrees. Both files are JSON: a list of {"id", "items": [...], "clicked"?: [...]}
    /// (`prediction_id` and `ranking`, `served` or `displayed` are read too), or an object of
    /// id → list of item ids.
    Ranking(RankingArgs),
}

#[derive(Args)]
pub struct RankingArgs {
    /// What the model served, per impression.
    #[arg(long)]
    served: PathBuf,
    /// What the front end displayed, per impression (its clicks too, for nDCG).
    #[arg(long)]
    displayed: PathBuf,
    /// The k of top-k overlap and nDCG@k.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// One impression's lists as read from a file.
struct Read {
    id: String,
    items: Vec<String>,
    clicked: Vec<String>,
}

/// An item id: a string, or a number by its JSON text.
fn item(value: &Value, what: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => bail!("{what}: item ids are strings or numbers, got {other}"),
    }
}

fn items(value: &Value, what: &str) -> Result<Vec<String>> {
    let Value::Array(list) = value else {
        bail!("{what}: must be a list of item ids");
    };
    let out: Vec<String> = list
        .iter()
        .enumerate()
        .map(|(i, v)| item(v, &format!("{what}[{i}]")))
        .collect::<Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = out.iter().find(|i| !seen.insert(*i)) {
        bail!("{what}: item `{twice}` is listed twice");
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<Read>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let name = path.display().to_string();
    match json {
        Value::Object(map) => map
            .iter()
            .map(|(id, list)| {
                Ok(Read {
                    id: id.clone(),
                    items: items(list, &format!("{name}: {id}"))?,
                    clicked: Vec::new(),
                })
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let what = format!("{name}[{i}]");
                let id = entry
                    .get("id")
                    .or_else(|| entry.get("prediction_id"))
                    .map(|v| item(v, &format!("{what}.id")))
                    .transpose()?
                    .with_context(|| format!("{what}: needs an `id` (or `prediction_id`)"))?;
                let list = ["items", "ranking", "served", "displayed"]
                    .iter()
                    .find_map(|k| entry.get(*k))
                    .with_context(|| {
                        format!("{what}: needs `items` (or `ranking`, `served`, `displayed`)")
                    })?;
                Ok(Read {
                    id,
                    items: items(list, &format!("{what}.items"))?,
                    clicked: match entry.get("clicked") {
                        Some(c) => items(c, &format!("{what}.clicked"))?,
                        None => Vec::new(),
                    },
                })
            })
            .collect(),
        _ => bail!("{name}: must be a list of impressions or an object of id → items"),
    }
}

/// Runs the check; `true` when an impression was displayed out of the served order.
pub fn run(command: CheckCommand) -> Result<bool> {
    let CheckCommand::Ranking(args) = command;
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let served = read(&args.served)?;
    let displayed = read(&args.displayed)?;
    let by_id: HashMap<&str, &Read> = served.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut impressions = Vec::with_capacity(displayed.len());
    let mut first_disagreement: Option<String> = None;
    for shown in &displayed {
        let Some(got) = by_id.get(shown.id.as_str()) else {
            bail!(
                "impression `{}` is in {} but not in {}",
                shown.id,
                args.displayed.display(),
                args.served.display()
            );
        };
        let impression = Impression {
            served: got.items.iter().map(String::as_str).collect(),
            displayed: shown.items.iter().map(String::as_str).collect(),
            clicked: shown
                .clicked
                .iter()
                .chain(&got.clicked)
                .map(String::as_str)
                .collect(),
        };
        if first_disagreement.is_none()
            && !ranking::in_served_order(&impression.served, &impression.displayed)
        {
            first_disagreement = Some(disagreement(&shown.id, &impression));
        }
        impressions.push(impression);
    }
    let summary = ranking::agreement(&impressions, args.k);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} impressions; {:.1} % displayed in the served order; mean Kendall τ {}; top-{} overlap {}; nDCG@{} served {} / displayed {}",
            summary.impressions,
            summary.agreement * 100.0,
            shown(summary.kendall_tau),
            summary.k,
            shown(summary.top_k_overlap),
            summary.k,
            shown(summary.ndcg_served),
            shown(summary.ndcg_displayed),
        );
    }
    match first_disagreement {
        None => Ok(false),
        Some(first) => {
            let resorted = summary
                .resorted_by()
                .map(|(key, share)| {
                    format!(
                        " The displayed order equals {} in {:.0} % of impressions.",
                        key.describe(),
                        share * 100.0
                    )
                })
                .unwrap_or_default();
            eprintln!("error: {first}{resorted}");
            Ok(true)
        }
    }
}

fn shown(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The first place an impression's display leaves the served order.
fn disagreement(id: &str, impression: &Impression<'_>) -> String {
    let mut last: Option<usize> = None;
    for (at, item) in impression.displayed.iter().enumerate() {
        match impression.served.iter().position(|x| x == item) {
            None => {
                return format!(
                    "impression `{id}`: position {} displays `{item}`, which was not served",
                    at + 1
                )
            }
            Some(p) if last.is_some_and(|l| p < l) => {
                return format!(
                    "impression `{id}`: position {} displays `{item}`, served at {} — after an item served later (served {:?}, displayed {:?})",
                    at + 1,
                    p + 1,
                    impression.served,
                    impression.displayed
                )
            }
            Some(p) => last = Some(p),
        }
    }
    format!("impression `{id}` disagrees")
}
