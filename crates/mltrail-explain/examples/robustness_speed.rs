//! Robustness on one ONNX model and a CSV of rows (the model's columns, then `label`), in raw
//! units (no scaling): what `bench/robustness.py` runs beside ART. Prints one JSON object:
//! seconds and the report, for the verification at ART's default depth (2 levels) and at
//! mltrail's default (4).
//!
//! `cargo run --release -p mltrail-explain --example robustness_speed -- MODEL.onnx ROWS.csv
//!  EPSILON MAX_ITER MAX_EVAL`

use std::time::Instant;

use mltrail_explain::robustness::{assess, HsjaSettings, Input, Settings, VerifySettings};
use mltrail_serving::runtime::Model;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, rows, epsilon, max_iter, max_eval] = args.as_slice() else {
        eprintln!("usage: robustness_speed MODEL.onnx ROWS.csv EPSILON MAX_ITER MAX_EVAL");
        std::process::exit(2);
    };
    let model = Model::load(&std::fs::read(model).expect("model")).expect("load");
    let mut reader = csv::Reader::from_path(rows).expect("rows");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let columns: Vec<String> = header[..header.len() - 1].to_vec();
    let (mut values, mut truth) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let r = record.expect("row");
        for c in 0..columns.len() {
            values.push(r[c].parse::<f64>().expect("a number"));
        }
        truth.push(Some(r[columns.len()].to_string()));
    }
    let settings = |levels: usize| Settings {
        epsilon: epsilon.parse().expect("epsilon"),
        attacked: (0..columns.len()).collect(),
        scale: vec![1.0; columns.len()],
        sigmas: vec![],
        max_rows: usize::MAX,
        restarts: 3,
        hsja: HsjaSettings {
            max_iter: max_iter.parse().expect("max_iter"),
            max_eval: max_eval.parse().expect("max_eval"),
            max_queries: usize::MAX,
            ..HsjaSettings::default()
        },
        verify: VerifySettings {
            levels,
            ..VerifySettings::default()
        },
        seed: 0,
    };
    let quiet = |_: &'static str, _: usize, _: usize| {};
    let input = Input {
        model: &model,
        columns: &columns,
        rows: &values,
        truth: &truth,
        progress: &quiet,
    };
    let mut out = serde_json::Map::new();
    for (name, levels) in [
        ("art_depth", 2),
        ("default", VerifySettings::default().levels),
    ] {
        let started = Instant::now();
        let (report, _) = assess(&input, &settings(levels)).expect("assess");
        out.insert(
            name.into(),
            serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "report": report}),
        );
    }
    println!("{}", serde_json::Value::Object(out));
}
