//! `mltrail fairness FILE`: whether a classifier's predictions treat groups alike —
//! Fairlearn's `MetricFrame` numbers per group and crossed groups, and its parity scalars —
//! printed as a table, and written as JSON (the layout of Fairlearn's golden file) and HTML on
//! request.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_data::table::{self, Table, Values, MISSING};
use mltrail_explain::fairness::{self, FairnessReport, Grouping, Method};

#[derive(Args)]
pub struct FairnessArgs {
    /// Predictions with their true labels: a .csv (header row) or .parquet file.
    pub file: PathBuf,
    /// The column of true labels: 0/1 (or true/false); 1 is the positive class.
    #[arg(long)]
    label: String,
    /// The column of predicted labels: 0/1 (or true/false).
    #[arg(long)]
    prediction: String,
    /// A column of scores for the positive class: adds ROC AUC and the mean score per group.
    #[arg(long)]
    score: Option<String>,
    /// The sensitive columns (comma-separated): each is reported alone, and all of them crossed
    /// (`sex_x_age_group`, groups `F & 18-30`).
    #[arg(long, value_delimiter = ',', required = true)]
    sensitive: Vec<String>,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long)]
    html: Option<PathBuf>,
}

pub fn run(args: FairnessArgs) -> Result<()> {
    let table =
        table::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let truth = binary(&table, &args.label, "--label")?;
    let predicted = binary(&table, &args.prediction, "--prediction")?;
    let sensitive: Vec<Grouping> = args
        .sensitive
        .iter()
        .map(|name| Ok((name.clone(), groups(&table, name)?)))
        .collect::<Result<_>>()?;
    let report = FairnessReport::new(&sensitive, &truth, &predicted);
    let mut body = report.to_json();
    if let Some(score) = &args.score {
        let scores = numbers(&table, score, "--score")?;
        body["score_metrics"] = fairness::score_metrics(&sensitive, &truth, &scores);
    }
    body["meta"] = serde_json::json!({
        "input": args.file.display().to_string(),
        "rows": table.rows,
        "label": args.label,
        "prediction": args.prediction,
        "score": args.score,
        "sensitive": args.sensitive,
    });
    print_summary(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&body)? + "\n";
        if path.as_os_str() == "-" {
            print!("{text}");
        } else {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if let Some(path) = &args.html {
        let title = args.file.display().to_string();
        std::fs::write(path, fairness::html(&title, &report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn column<'t>(table: &'t Table, name: &str, flag: &str) -> Result<&'t Values> {
    table.column(name).map(|c| &c.values).ok_or_else(|| {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        anyhow!(
            "{flag} {name}: no such column (the file has {})",
            names.join(", ")
        )
    })
}

/// A 0/1 column as booleans; anything else is refused with its row (rows count from 1, after
/// the header).
fn binary(table: &Table, name: &str, flag: &str) -> Result<Vec<bool>> {
    let refuse = |row: usize, value: String| {
        anyhow!("{flag} {name}: row {} holds {value}; labels and predictions must be 0 or 1 (or true/false)", row + 1)
    };
    match column(table, name, flag)? {
        Values::Numeric { values, .. } => values
            .iter()
            .enumerate()
            .map(|(r, v)| match *v {
                1.0 => Ok(true),
                0.0 => Ok(false),
                v if v.is_nan() => Err(refuse(r, "nothing".into())),
                v => Err(refuse(r, v.to_string())),
            })
            .collect(),
        Values::Text { labels, codes } => codes
            .iter()
            .enumerate()
            .map(|(r, code)| {
                if *code == MISSING {
                    return Err(refuse(r, "nothing".into()));
                }
                match labels[*code as usize].as_str() {
                    "1" | "true" | "True" => Ok(true),
                    "0" | "false" | "False" => Ok(false),
                    other => Err(refuse(r, format!("`{other}`"))),
                }
            })
            .collect(),
    }
}

fn numbers(table: &Table, name: &str, flag: &str) -> Result<Vec<f64>> {
    match column(table, name, flag)? {
        Values::Numeric { values, .. } => {
            if let Some(r) = values.iter().position(|v| !v.is_finite()) {
                bail!("{flag} {name}: row {} holds no number", r + 1);
            }
            Ok(values.clone())
        }
        Values::Text { .. } => bail!("{flag} {name}: the column holds text, not scores"),
    }
}

/// Each row's group in a sensitive column: its text, or its number as written.
fn groups(table: &Table, name: &str) -> Result<Vec<Option<String>>> {
    let groups = column(table, name, "--sensitive")?.categories();
    if let Some(r) = groups.iter().position(Option::is_none) {
        bail!(
            "--sensitive {name}: row {} has no value; every row needs its group",
            r + 1
        );
    }
    Ok(groups)
}

fn print_summary(report: &FairnessReport) {
    let pct = |v: f64| {
        if v.is_finite() {
            format!("{:>7.1}%", v * 100.0)
        } else {
            format!("{:>8}", "—")
        }
    };
    for (name, frame) in &report.frames {
        println!("{name}");
        println!(
            "  {:<24} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "group", "count", "selected", "accuracy", "TPR", "FPR"
        );
        for (group, c) in std::iter::once(("(overall)".to_string(), frame.overall))
            .chain(frame.groups.iter().cloned())
        {
            println!(
                "  {:<24} {:>8} {} {} {} {}",
                group,
                c.metric("count"),
                pct(c.metric("selection_rate")),
                pct(c.metric("accuracy")),
                pct(c.metric("true_positive_rate")),
                pct(c.metric("false_positive_rate")),
            );
        }
        let scalars = frame.scalars(Method::BetweenGroups);
        let pick = |k: &str| {
            scalars
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(f64::NAN, |(_, v)| *v)
        };
        println!(
            "  demographic parity: difference {:.4}, ratio {:.4}; equalized odds: difference {:.4}, ratio {:.4}\n",
            pick("demographic_parity_difference"),
            pick("demographic_parity_ratio"),
            pick("equalized_odds_difference"),
            pick("equalized_odds_ratio"),
        );
    }
}
