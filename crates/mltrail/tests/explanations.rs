//! Explanations through the real binaries: `mltrail serve --explain always` stores each
//! prediction's SHAP values in its own record (and they survive archiving), `on_request`
//! computes them on first read and keeps them, `off` refuses, and a version without training
//! data cannot be served with `always`.

mod common;

use std::time::{Duration, Instant};

use common::scorer::{add_gbc_training_data, register, rows, Scorer};
use common::{parquet_under, Server};
use serde_json::{json, Value};

const SIGNATURE: &str = "f0,f1,f2,f3,f4,f5";

/// Registers the gbc fixture as `credit` version 1, trained on dataset `train@1` (added here),
/// with `extra` registration flags.
fn credit_with_training_data(server: &Server, extra: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    add_gbc_training_data(server, data.path());
    let flags = [
        &["--signature", SIGNATURE, "--training-data", "train@1"][..],
        extra,
    ]
    .concat();
    register(server, "credit", "gbc.onnx", &flags);
}

fn predict(scorer: &Scorer, n: usize) -> Vec<(String, f64)> {
    let data: Vec<Vec<Value>> = rows("gbc").into_iter().take(n).collect();
    let (status, body) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": SIGNATURE.split(',').collect::<Vec<_>>(), "data": data}}),
    );
    assert_eq!(status, 200, "{body}");
    body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let probability = p["outputs"]["output_probability"]["1"]
                .as_f64()
                .expect("probability of class 1");
            (
                p["prediction_id"].as_str().unwrap().to_string(),
                probability,
            )
        })
        .collect()
}

fn explanation(scorer: &Scorer, id: &str) -> (u16, Value) {
    let (status, text) = scorer.get(&format!("/api/v1/predictions/{id}/explanation"));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The explanation adds up to its output, which is the log-odds of the probability served.
fn check_adds_up(e: &Value, probability: f64) {
    let values = e["values"].as_object().expect("one map of column → value");
    assert_eq!(values.len(), 6);
    let total: f64 = e["base_value"].as_f64().unwrap()
        + values.values().map(|v| v.as_f64().unwrap()).sum::<f64>();
    let output = e["output"].as_f64().unwrap();
    assert!((total - output).abs() < 1e-9, "{total} vs {output}");
    let served = 1.0 / (1.0 + (-output).exp());
    assert!(
        (served - probability).abs() < 1e-6,
        "{served} vs {probability}"
    );
    assert_eq!(e["output_space"], "log_odds");
    assert_eq!(e["background_digest"].as_str().unwrap().len(), 64);
    let reasons = e["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty() && reasons.len() <= 3, "{reasons:?}");
    // The first reason names the largest contribution, with the row's value.
    let (top, value) = values
        .iter()
        .max_by(|a, b| {
            a.1.as_f64()
                .unwrap()
                .abs()
                .total_cmp(&b.1.as_f64().unwrap().abs())
        })
        .unwrap();
    let first = reasons[0].as_str().unwrap();
    assert!(first.starts_with(&format!("{top} = ")), "{first}");
    let verb = if value.as_f64().unwrap() > 0.0 {
        "raised"
    } else {
        "lowered"
    };
    assert!(first.contains(&format!("{verb} the score by ")), "{first}");
}

#[test]
fn explanations_while_serving_are_stored_in_the_record_and_survive_archiving() {
    let server = Server::start();
    credit_with_training_data(&server, &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &[
            "--deployment",
            "explained",
            "--explain",
            "always",
            "--segment-seconds",
            "1",
            "--archive-interval-ms",
            "200",
        ],
    );
    let (_, info) = scorer.get("/api/v1/deployment");
    assert!(info.contains(r#""explain":"always""#), "{info}");
    let served = predict(&scorer, 3);
    let mut first = Vec::new();
    for (id, probability) in &served {
        let (_, record) = scorer.get(&format!("/api/v1/predictions/{id}"));
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(record["explanation"]["method"], "tree_interventional");
        let (status, e) = explanation(&scorer, id);
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["prediction_id"], id.as_str());
        assert_eq!(e["method"], "tree_interventional");
        assert_eq!(e["values"], record["explanation"]["values"]);
        check_adds_up(&e, *probability);
        first.push(e);
    }
    // Archived as Parquet, the explanations read back the same.
    let archive = server.artifact_root().join("predictions/explained");
    let deadline = Instant::now() + Duration::from_secs(20);
    while parquet_under(&archive).is_empty() {
        assert!(Instant::now() < deadline, "no segment was archived");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    for ((id, _), before) in served.iter().zip(&first) {
        let (status, after) = explanation(&scorer, id);
        assert_eq!(status, 200, "{after}");
        assert_eq!(&after, before);
    }
}

#[test]
fn explanations_on_request_are_computed_once_and_kept_and_off_refuses() {
    let server = Server::start();
    credit_with_training_data(&server, &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &[
            "--deployment",
            "asked",
            "--explain-method",
            "path_dependent",
        ],
    );
    let served = predict(&scorer, 2);
    let (id, probability) = &served[0];
    let (_, record) = scorer.get(&format!("/api/v1/predictions/{id}"));
    assert!(!record.contains("explanation"), "{record}");
    let (status, e) = explanation(&scorer, id);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["method"], "tree_path_dependent");
    check_adds_up(&e, *probability);
    let (_, again) = explanation(&scorer, id);
    assert_eq!(again, e);
    // Kept in the log as its own record.
    let kept = std::fs::read_dir(logs.path())
        .unwrap()
        .flatten()
        .map(|f| std::fs::read(f.path()).unwrap_or_default())
        .any(|bytes| String::from_utf8_lossy(&bytes).contains(r#""type":"explanation""#));
    assert!(kept, "no explanation record in the log");

    let (status, body) = explanation(&scorer, "0190a0a0-0000-7000-8000-000000000000");
    assert_eq!(status, 404, "{body}");
    let (status, body) = explanation(&scorer, "not-an-id");
    assert_eq!(status, 400, "{body}");

    let off_logs = tempfile::tempdir().unwrap();
    let off = Scorer::start(
        &server,
        "credit/1",
        off_logs.path(),
        &["--deployment", "silent", "--explain", "off"],
    );
    let (id, _) = &predict(&off, 1)[0];
    let (status, body) = explanation(&off, id);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("--explain"),
        "{body}"
    );
}

#[test]
fn a_version_without_training_data_cannot_be_served_explaining_everything() {
    let server = Server::start();
    register(&server, "bare", "gbc.onnx", &["--signature", SIGNATURE]);
    let logs = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["serve", "--model", "bare/1", "--tracking-uri", &server.url])
        .args(["--port", "0", "--explain", "always"])
        .args(["--log-dir", logs.path().to_str().unwrap()])
        .env("MLTRAIL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--training-data"), "{stderr}");
    assert!(stderr.contains("--explain on_request"), "{stderr}");
}

#[test]
fn a_version_that_seals_personal_data_is_explained_but_its_explanations_are_not_stored() {
    let server = Server::start();
    credit_with_training_data(&server, &["--pii", "f1,f2", "--subject", "customer"]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &["--deployment", "sealed", "--explain", "always"],
    );
    let mut columns: Vec<&str> = SIGNATURE.split(',').collect();
    columns.push("customer");
    let mut row = rows("gbc")[0].clone();
    row.push(json!("C-77"));
    let (status, body) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": columns, "data": [row]}}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["predictions"][0]["prediction_id"].as_str().unwrap();
    let probability = body["predictions"][0]["outputs"]["output_probability"]["1"]
        .as_f64()
        .unwrap();
    let (_, record) = scorer.get(&format!("/api/v1/predictions/{id}"));
    assert!(!record.contains("\"explanation\""), "{record}");
    for _ in 0..2 {
        let (status, e) = explanation(&scorer, id);
        assert_eq!(status, 200, "{e}");
        check_adds_up(&e, probability);
    }
    // Contributions of sealed columns would repeat their values in clear: nothing is kept.
    let logged = std::fs::read_dir(logs.path())
        .unwrap()
        .flatten()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned())
        .collect::<String>();
    assert!(!logged.contains("explanation"), "an explanation was stored");
}

/// The deployment's version and number of swaps, as `/api/v1/deployment` reports them.
fn serving_version(scorer: &Scorer) -> String {
    let (_, info) = scorer.get("/api/v1/deployment");
    let info: Value = serde_json::from_str(&info).unwrap();
    info["version"].as_str().unwrap_or_default().to_string()
}

#[test]
fn after_a_swap_a_prediction_is_explained_by_the_version_that_answered_it() {
    let server = Server::start();
    let data = tempfile::tempdir().unwrap();
    add_gbc_training_data(&server, data.path());
    let flags = ["--signature", SIGNATURE, "--training-data", "train@1"];
    register(&server, "credit", "gbc.onnx", &flags);
    register(&server, "credit", "rf.onnx", &flags);
    let alias = |version: &str| {
        server.ok(
            "registered-models/alias",
            json!({"name": "credit", "alias": "production", "version": version}),
        )
    };
    alias("1");
    let logs = tempfile::tempdir().unwrap();
    let args = ["--deployment", "swapped", "--poll-interval-ms", "100"];
    let scorer = Scorer::start(&server, "credit@production", logs.path(), &args);
    let (old, probability) = predict(&scorer, 1).remove(0);
    alias("2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while serving_version(&scorer) != "2" {
        assert!(Instant::now() < deadline, "the alias move was not followed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (new, _) = predict(&scorer, 1).remove(0);
    // Asked only after the swap, the old prediction is explained by version 1 (a boosted
    // model: log-odds adding up to what it served), the new one by version 2 (a forest).
    let (status, e) = explanation(&scorer, &old);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["version"], "1");
    check_adds_up(&e, probability);
    let (status, e) = explanation(&scorer, &new);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["version"], "2");
    assert_ne!(e["output_space"], "log_odds");
    drop(scorer);
    // A new process never served version 1: it loads it again, checked by its file's digest.
    let restarted = Scorer::start(&server, "credit@production", logs.path(), &args);
    let (status, e) = explanation(&restarted, &old);
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["version"], "1");
    check_adds_up(&e, probability);
}

#[test]
fn always_and_on_request_give_identical_values_and_both_survive_archiving() {
    let server = Server::start();
    credit_with_training_data(&server, &[]);
    let (always_logs, asked_logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archived = ["--segment-seconds", "1", "--archive-interval-ms", "200"];
    let always = Scorer::start(
        &server,
        "credit/1",
        always_logs.path(),
        &[
            &["--deployment", "always", "--explain", "always"][..],
            &archived,
        ]
        .concat(),
    );
    let asked = Scorer::start(
        &server,
        "credit/1",
        asked_logs.path(),
        &[&["--deployment", "asked"][..], &archived].concat(),
    );
    let (a, b) = (predict(&always, 4), predict(&asked, 4));
    let mut before = Vec::new();
    for ((id_a, _), (id_b, _)) in a.iter().zip(&b) {
        let (_, ea) = explanation(&always, id_a);
        let (_, eb) = explanation(&asked, id_b);
        assert_eq!(ea["values"], eb["values"], "the same row, the same values");
        assert_eq!(
            (&ea["base_value"], &ea["output"]),
            (&eb["base_value"], &eb["output"])
        );
        before.push(eb);
    }
    // Once archived, the explanation computed on request is read back as it was kept.
    let archive = server.artifact_root().join("predictions/asked");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = parquet_under(&archive);
        let holds_explanations = files.iter().any(|f| {
            mltrail_serving::archive::from_parquet(std::fs::read(f).unwrap())
                .unwrap()
                .iter()
                .any(|r| matches!(r, mltrail_serving::record::LogRecord::Explanation(_)))
        });
        if holds_explanations {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the explanations were never archived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    for ((id, _), kept) in b.iter().zip(&before) {
        let (status, e) = explanation(&asked, id);
        assert_eq!(status, 200, "{e}");
        assert_eq!(&e, kept);
    }
}
