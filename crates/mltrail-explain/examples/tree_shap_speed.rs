//! TreeSHAP's speed on the golden model: the 30-tree GBC export (`tests/golden/models/gbc.onnx`)
//! explaining the 10,000 rows of reference.csv and current.csv, on one thread, path-dependent
//! (covers from reference.csv) and interventional (background: reference rows 0–99).
//! Prints JSON with the median seconds of 3 runs; with `--values DIR`, writes each method's
//! values as little-endian f64 (`DIR/<method>.f64`, rows × 9) for the benchmark to compare
//! with shap's. Run by `bench/explain.py`; alone:
//! `cargo run --release -p mltrail-explain --example tree_shap_speed`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mltrail_explain::{Method, ModelExplainer};
use mltrail_serving::runtime::Model;

const COLUMNS: [&str; 9] = [
    "income",
    "age",
    "debt_ratio",
    "num_accounts",
    "credit_history_months",
    "loan_amount",
    "utilization",
    "num_dependents",
    "savings",
];

fn rows(path: &Path) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(path).expect("csv");
    let header = reader.headers().expect("header").clone();
    let index: Vec<usize> = COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == *c).expect("column"))
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.expect("record");
        out.extend(
            index
                .iter()
                .map(|i| record[*i].parse::<f64>().expect("number")),
        );
    }
    out
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut values_dir: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--values" => values_dir = args.next().map(PathBuf::from),
            other => panic!("unknown argument {other} (takes --values DIR)"),
        }
    }
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let model =
        Model::load(&std::fs::read(golden.join("models/gbc.onnx")).expect("model")).expect("load");
    let reference = rows(&golden.join("data/reference.csv"));
    let mut explained = reference.clone();
    explained.extend(rows(&golden.join("data/current.csv")));
    let n = explained.len() / COLUMNS.len();

    let mut report = Vec::new();
    for (name, method, training) in [
        ("tree_path_dependent", Method::PathDependent, &reference[..]),
        (
            "interventional_bg100",
            Method::Interventional,
            &reference[..100 * 9],
        ),
    ] {
        let explainer = ModelExplainer::new(&model, training, method, 100).expect("explainer");
        let mut runs = Vec::new();
        let mut last = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            last = explainer.explain(&model, &explained).expect("explain");
            runs.push(started.elapsed().as_secs_f64());
        }
        if let Some(dir) = &values_dir {
            let bytes: Vec<u8> = last
                .iter()
                .flat_map(|e| e.values.iter().flat_map(|v| v.to_le_bytes()))
                .collect();
            std::fs::write(dir.join(format!("{name}.f64")), bytes).expect("write values");
        }
        report.push(format!(
            "\"{name}\": {:.6}, \"{name}_runs\": [{}]",
            median(runs.clone()),
            runs.iter()
                .map(|r| format!("{r:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    println!("{{\"rows\": {n}, {}}}", report.join(", "));
}
