//! Fairness numbers' speed with the data in memory: the golden predictions file repeated to
//! `ROWS` rows (default 1,000,000), grouped by sex, age group and both, with every view and
//! parity scalar (the JSON report), median of 3. Run by `bench/fairness.py`; alone:
//! `cargo run --release -p mltrail-explain --example fairness_speed -- 1000000`.

use std::path::PathBuf;
use std::time::Instant;

use mltrail_explain::fairness::FairnessReport;

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a row count"))
        .unwrap_or(1_000_000);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/data/predictions.csv");
    let mut reader = csv::Reader::from_path(path).expect("predictions");
    let (mut truth, mut predicted, mut sex, mut age) = (vec![], vec![], vec![], vec![]);
    for record in reader.records() {
        let r = record.expect("row");
        truth.push(&r[0] == "1");
        predicted.push(&r[1] == "1");
        sex.push(Some(r[3].to_string()));
        age.push(Some(r[4].to_string()));
    }
    let n = truth.len();
    let cycle = |v: &Vec<Option<String>>| (0..rows).map(|i| v[i % n].clone()).collect::<Vec<_>>();
    let sensitive = vec![
        ("sex".to_string(), cycle(&sex)),
        ("age_group".to_string(), cycle(&age)),
    ];
    let truth: Vec<bool> = (0..rows).map(|i| truth[i % n]).collect();
    let predicted: Vec<bool> = (0..rows).map(|i| predicted[i % n]).collect();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let report = FairnessReport::new(&sensitive, &truth, &predicted).to_json();
        std::hint::black_box(report);
        runs.push(started.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    println!("{{\"rows\": {rows}, \"seconds\": {:.6}}}", runs[1]);
}
