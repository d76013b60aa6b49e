//! `mltrail evaluate` through the real binaries: a version is run over a labelled dataset
//! version, its metrics, fairness and importance are kept as the version's evaluation (an audit
//! event whose digest pins the kept JSON), logged on its run, shown in its report (rendered by
//! headless Chromium) and in the trace of its predictions; a kept evaluation changed afterwards
//! is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scorer::{add_dataset, credit_from_a_run, expected, rows, Scorer};
use common::{assert_renders, chromium, client, Server};
use serde_json::{json, Value};

const SIGNATURE: &str = "f0,f1,f2,f3,f4,f5";

/// The gbc fixture's rows with its own labels, every fourth flipped, and a `group` column.
fn evaluation_set(dir: &Path) -> (PathBuf, Vec<(u8, u8, &'static str)>) {
    let labels = expected("gbc")["outputs"]["output_label"]["data"].clone();
    let mut csv = String::from("f0,f1,f2,f3,f4,f5,label,group\n");
    let mut truth = Vec::new();
    for (i, (row, predicted)) in rows("gbc")
        .iter()
        .zip(labels.as_array().unwrap())
        .enumerate()
    {
        let predicted = predicted.as_u64().unwrap() as u8;
        let label = if i % 4 == 0 { 1 - predicted } else { predicted };
        let group = if i % 3 == 0 { "b" } else { "a" };
        let cells: Vec<String> = row.iter().map(Value::to_string).collect();
        csv.push_str(&format!("{},{label},{group}\n", cells.join(",")));
        truth.push((label, predicted, group));
    }
    let file = dir.join("eval.csv");
    std::fs::write(&file, csv).unwrap();
    (file, truth)
}

#[test]
fn an_evaluation_is_kept_logged_on_the_run_reported_and_traced() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let run_id = credit_from_a_run(&server, dir.path());
    let (file, truth) = evaluation_set(dir.path());
    add_dataset(&server, &file, "holdout", &["--target", "label"]);
    let html = dir.path().join("report.html");
    let out = server.mltrail(&[
        "evaluate",
        "credit/1",
        "--data",
        "holdout@1",
        "--sensitive",
        "group",
        "--json",
        "--html",
        html.to_str().unwrap(),
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["format"], "mltrail.evaluation/1");
    assert_eq!(
        (e["model"].as_str(), e["version"].as_str()),
        (Some("credit"), Some("1"))
    );
    assert_eq!(e["dataset"], "holdout@1");
    assert_eq!(e["dataset_digest"].as_str().unwrap().len(), 64);
    // The counts the metrics come from, from the rows themselves.
    let count = |f: &dyn Fn(&(u8, u8, &str)) -> bool| truth.iter().filter(|r| f(r)).count() as f64;
    let tp = count(&|(l, p, _)| *l == 1 && *p == 1);
    let accuracy = count(&|(l, p, _)| l == p) / truth.len() as f64;
    let precision = tp / count(&|(_, p, _)| *p == 1);
    let recall = tp / count(&|(l, _, _)| *l == 1);
    let m = &e["classification"];
    assert_eq!(m["example_count"], truth.len());
    assert_eq!(m["accuracy"].as_f64().unwrap(), accuracy);
    assert_eq!(m["precision"].as_f64().unwrap(), precision);
    assert_eq!(m["recall"].as_f64().unwrap(), recall);
    let f1 = 2.0 * precision * recall / (precision + recall);
    assert!((m["f1"].as_f64().unwrap() - f1).abs() < 1e-15);
    for key in ["roc_auc", "log_loss", "brier"] {
        assert!(m[key].as_f64().unwrap() > 0.0, "{key}: {m}");
    }
    assert!(m["calibration"]["prob_true"].as_array().unwrap().len() > 1);
    // Fairness by group, in Fairlearn's layout.
    let by_group = &e["fairness"]["metric_frames"]["group"]["by_group"];
    assert_eq!(
        by_group["b"]["count"].as_f64().unwrap(),
        count(&|(_, _, g)| *g == "b")
    );
    // Global importance over the six columns, largest first.
    let importance = e["importance"]["columns"].as_array().unwrap();
    assert_eq!(importance.len(), 6);
    assert!(importance[0][1].as_f64().unwrap() >= importance[5][1].as_f64().unwrap());

    // Kept: the server answers the same evaluation, pinned by its event.
    let digest = e["digest"].as_str().unwrap();
    let kept: Value = client()
        .get(format!(
            "{}/api/v1/models/credit/versions/1/evaluation",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(kept["digest"], digest);
    assert_eq!(kept["event"]["action"], "model_version.evaluate");
    assert_eq!(kept["evaluation"]["classification"], e["classification"]);
    // MLflow clients see the metrics on the version's run.
    let run: Value = client()
        .get(format!(
            "{}/api/2.0/mlflow/runs/get?run_id={run_id}",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let logged: Vec<(&str, f64)> = run["run"]["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["key"].as_str().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    assert!(logged.contains(&("accuracy_score", accuracy)), "{logged:?}");
    assert!(logged.iter().any(|(k, _)| *k == "roc_auc"));

    // The report: self-contained, and Chromium renders its pictures.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let dom = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // ROC, calibration, two group charts, importance: each parsed into an <svg>.
    assert_eq!(dom.matches("<svg").count(), 5, "{dom}");
    assert!(dom.contains("Global importance") && dom.contains("ROC curve"));
    assert_renders(&html, "1280,1100");

    // A prediction's trace names the evaluation, proven like everything else.
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &["--deployment", "evaluated"],
    );
    let data: Vec<Vec<Value>> = rows("gbc").into_iter().take(1).collect();
    let (status, body) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": SIGNATURE.split(',').collect::<Vec<_>>(), "data": data}}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["predictions"][0]["prediction_id"].as_str().unwrap();
    let out = server.mltrail(&[
        "trace",
        id,
        "--json",
        "--serving",
        &scorer.url,
        "--tracking-uri",
        &server.url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("evaluation credit/1: its state is what its latest event recorded"),
        "{stderr}"
    );
    let trace: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trace["evaluation"]["classification"], e["classification"]);

    // The kept JSON changed behind the server's back is refused, not served.
    let stored = server
        .artifact_root()
        .join(format!("evaluations/credit/1/{digest}.json"));
    let text = std::fs::read_to_string(&stored).unwrap();
    std::fs::write(&stored, text.replace("\"accuracy\":", "\"accuracy\":1e-9+")).unwrap();
    let refused = client()
        .get(format!(
            "{}/api/v1/models/credit/versions/1/evaluation",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);

    // Bad input: one line that says what to do.
    let out = server.mltrail(&[
        "evaluate",
        "credit/1",
        "--data",
        "holdout@1",
        "--label",
        "nope",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--label `nope`"));
    let out = server.mltrail(&[
        "evaluate",
        "credit/1",
        "--data",
        "holdout",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATASET@VERSION"));
}
