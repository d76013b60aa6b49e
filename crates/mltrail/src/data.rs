//! `mltrail data profile FILE`: what a dataset version will store as its monitoring reference,
//! for any CSV or Parquet file.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use mltrail_data::profile::{profile, Summary};
use mltrail_data::table;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Profile a CSV or Parquet file: per column the count, missing and distinct values, and the
    /// numeric summary (min, max, mean, std, quantiles, histogram) or the top categories.
    Profile(ProfileArgs),
}

#[derive(Args)]
pub struct ProfileArgs {
    /// A .csv (header row) or .parquet file.
    file: PathBuf,
    /// Print the profile as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn as_json(p: &mltrail_data::profile::ColumnProfile) -> Value {
    let summary = match &p.summary {
        Some(Summary::Numeric(s)) => json!({
            "kind": "numeric", "min": s.min, "max": s.max, "mean": s.mean, "std": s.std,
            "quantiles": s.quantiles.iter().map(|(q, v)| json!({"q": q, "value": v})).collect::<Vec<_>>(),
            "histogram": s.histogram.iter().map(|(edge, n)| json!({"from": edge, "count": n})).collect::<Vec<_>>(),
        }),
        Some(Summary::Categorical { top }) => json!({
            "kind": "categorical",
            "top": top.iter().map(|(v, n)| json!({"value": v, "count": n})).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    };
    json!({"column": p.name, "count": p.count, "missing": p.missing, "distinct": p.distinct, "summary": summary})
}

pub fn run(command: DataCommand) -> Result<()> {
    let DataCommand::Profile(args) = command;
    let t = table::read(&args.file).map_err(|e| anyhow!("{e}"))?;
    let columns = profile(&t);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"rows": t.rows, "columns": columns.iter().map(as_json).collect::<Vec<_>>()})
            )?
        );
        return Ok(());
    }
    println!("{} rows", t.rows);
    println!(
        "{:<24} {:>9} {:>9}  summary",
        "column", "missing", "distinct"
    );
    for c in &columns {
        let summary = match &c.summary {
            Some(Summary::Numeric(s)) => {
                let median = s
                    .quantiles
                    .iter()
                    .find(|(q, _)| *q == 0.5)
                    .map_or(f64::NAN, |(_, v)| *v);
                format!(
                    "min {:.4} median {:.4} max {:.4} mean {:.4} std {:.4}",
                    s.min, median, s.max, s.mean, s.std
                )
            }
            Some(Summary::Categorical { top }) => top
                .iter()
                .take(5)
                .map(|(v, n)| format!("{v} ({n})"))
                .collect::<Vec<_>>()
                .join(", "),
            None => "all missing".into(),
        };
        println!(
            "{:<24} {:>9} {:>9}  {}",
            c.name, c.missing, c.distinct, summary
        );
    }
    Ok(())
}
