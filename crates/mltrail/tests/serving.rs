//! `mltrail serve` end to end: a model registered on a real tracking server, served by the real
//! binary on a free loopback port. Answers match onnxruntime's, bad requests name the column and
//! row, every acknowledged prediction survives `kill -9`, and an alias swap under load fails no
//! request.

mod common;
use common::scorer::{expected, fixture, register, rows, Scorer};
use common::{client, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The audit trail's deployment events, one JSON object per line.
fn deployment_events(server: &Server) -> String {
    let out = server.mltrail(&[
        "audit",
        "log",
        "--backend-store-uri",
        &server.store_uri(),
        "--entity",
        "deployment",
        "--json",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn set_alias(server: &Server, name: &str, alias: &str, version: &str) {
    server.ok(
        "registered-models/alias",
        json!({"name": name, "alias": alias, "version": version}),
    );
}

fn close(a: &Value, b: &Value) -> bool {
    (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-5
}

#[test]
fn a_registered_model_is_served_in_every_mlflow_format_and_every_prediction_is_logged() {
    let server = Server::start();
    assert_eq!(register(&server, "credit", "gbc.onnx", &[]), "1");
    set_alias(&server, "credit", "production", "1");
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit@production",
        logs.path(),
        &["--deployment", "credit-prod"],
    );

    let spec = expected("gbc");
    let want = spec["outputs"]["output_probability"]["data"]
        .as_array()
        .unwrap()
        .clone();
    let want_labels = spec["outputs"]["output_label"]["data"]
        .as_array()
        .unwrap()
        .clone();
    let data = rows("gbc");
    let columns: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let records: Vec<Value> = data
        .iter()
        .map(|r| Value::Object(columns.iter().cloned().zip(r.iter().cloned()).collect()))
        .collect();

    // DataFrame formats answer one record per row.
    for body in [
        json!({"dataframe_split": {"columns": columns, "data": data}}),
        json!({"dataframe_records": records}),
    ] {
        let (status, answer) = scorer.post("/invocations", &body);
        assert_eq!(status, 200, "{answer}");
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), data.len());
        for (i, p) in predictions.iter().enumerate() {
            assert_eq!(p["output_label"], want_labels[i]);
            assert!(
                close(&p["output_probability"]["1"], &want[i]["1"]),
                "row {i}: {p}"
            );
        }
    }
    // Tensor formats answer a dict of output arrays.
    for body in [json!({"instances": data}), json!({"inputs": data})] {
        let (status, answer) = scorer.post("/invocations", &body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["predictions"]["output_label"].as_array().unwrap(),
            &want_labels
        );
        assert!(close(
            &answer["predictions"]["output_probability"][3]["0"],
            &want[3]["0"]
        ));
    }

    let (status, answer) = scorer.post("/api/v1/predict", &json!({"instances": data[..2]}));
    assert_eq!(status, 200);
    let first = &answer["predictions"][0];
    assert_eq!(first["model"], "credit");
    assert_eq!(first["version"], "1");
    assert_eq!(first["digest"].as_str().unwrap().len(), 64);
    let id = first["prediction_id"].as_str().unwrap().to_string();

    // Late feedback attaches to the prediction; unknown ids are 404.
    let (status, _) = scorer.post(
        "/api/v1/feedback",
        &json!({"prediction_id": id, "label": 1}),
    );
    assert_eq!(status, 200);
    let (status, _) = scorer.post(
        "/api/v1/feedback",
        &json!({"prediction_id": "01900000-0000-7000-8000-000000000000", "label": 1}),
    );
    assert_eq!(status, 404);
    let (status, text) = scorer.get(&format!("/api/v1/predictions/{id}"));
    assert_eq!(status, 200);
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["deployment"], "credit-prod");
    assert_eq!(record["version"], "1");
    assert_eq!(record["inputs"]["f0"], data[0][0]);
    assert_eq!(record["feedback"][0]["label"], 1);

    let (status, metrics) = scorer.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "mltrail_requests_total{deployment=\"credit-prod\",model=\"credit\",version=\"1\"} 5"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "mltrail_predictions_total{{deployment=\"credit-prod\",model=\"credit\",version=\"1\"}} {}",
        4 * data.len() + 2
    )));
    assert!(metrics.contains("mltrail_request_duration_seconds_bucket"));

    let log = deployment_events(&server);
    assert!(
        log.contains("deployment.deploy") && log.contains("credit-prod:credit/1"),
        "{log}"
    );
    server.assert_audit_verifies();
}

#[test]
fn requests_are_validated_against_the_signature_before_inference() {
    let server = Server::start();
    register(&server, "by-columns", "columns_onehot.onnx", &[]);
    register(
        &server,
        "trees",
        "gbc.onnx",
        &["--signature", "income,age,debt,accounts,history,loan"],
    );
    let logs = tempfile::tempdir().unwrap();
    let columns = Scorer::start(
        &server,
        "by-columns/1",
        &logs.path().join("a"),
        &["--max-body-bytes", "4096"],
    );
    let trees = Scorer::start(&server, "trees/1", &logs.path().join("b"), &[]);

    let ok = json!({"dataframe_records": [{"region": "north", "income": 51.0, "age": 30}]});
    assert_eq!(columns.post("/invocations", &ok).0, 200);

    let cases = [
        (
            json!({"dataframe_records": [{"region": "north", "income": 51.0}]}),
            Some("age"),
            None,
        ),
        (
            json!({"dataframe_split": {"columns": ["region", "income", "age", "zip"], "data": [["north", 1.0, 2.0, "x"]]}}),
            Some("zip"),
            None,
        ),
        (
            json!({"dataframe_records": [{"region": "north", "income": 51.0, "age": 30}, {"region": "south", "income": "lots", "age": 40}]}),
            Some("income"),
            Some(1),
        ),
        (
            json!({"dataframe_records": [{"region": "north", "income": null, "age": 30}]}),
            Some("income"),
            Some(0),
        ),
        (
            json!({"dataframe_records": [{"region": 7, "income": 1.0, "age": 30}]}),
            None,
            Some(0),
        ),
    ];
    for (body, column, row) in cases {
        let (status, answer) = columns.post("/invocations", &body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error_code"], "BAD_REQUEST");
        if let Some(c) = column {
            assert_eq!(answer["column"], c, "{answer}");
            assert!(answer["message"].as_str().unwrap().contains(c));
        }
        if let Some(r) = row {
            assert_eq!(answer["row"], r, "{answer}");
        }
    }
    // Named tensor model: names come from --signature; wrong shape and missing columns are refused.
    let (status, answer) = trees.post("/invocations", &json!({"instances": [[1.0, 2.0, 3.0]]}));
    assert_eq!((status, answer["row"].clone()), (400, json!(0)), "{answer}");
    let (status, answer) = trees.post(
        "/invocations",
        &json!({"dataframe_records": [{"income": 1.0}]}),
    );
    assert_eq!(status, 400);
    assert_eq!(answer["column"], "age");
    let (status, answer) = trees.post(
        "/invocations",
        &json!({"instances": [[1.0, 2.0, "NaN", 4.0, 5.0, 6.0]]}),
    );
    assert_eq!(
        (status, answer["column"].clone()),
        (400, json!("debt")),
        "{answer}"
    );
    // Not JSON, no known format, too large.
    let (status, answer) = trees.post("/invocations", &json!({"rows": []}));
    assert_eq!(status, 400, "{answer}");
    let big = json!({"dataframe_records": vec![json!({"region": "north", "income": 51.0, "age": 30}); 200]});
    let (status, answer) = columns.post("/invocations", &big);
    assert_eq!(
        (status, answer["error_code"].clone()),
        (413, json!("RESOURCE_LIMIT_EXCEEDED")),
        "{answer}"
    );
    let (_, metrics) = columns.get("/metrics");
    assert!(metrics.contains("kind=\"bad_request\"} 5"), "{metrics}");
}

#[test]
fn a_model_that_cannot_be_run_is_refused_at_registration_naming_the_operator() {
    let server = Server::start();
    let out = server.mltrail(&[
        "models",
        "register",
        "odd",
        fixture("unsupported_op.onnx").to_str().unwrap(),
        "--tracking-uri",
        &server.url,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("com.example:Frobnicate"), "{err}");
    let (status, _) = server.get("registered-models/get", &[("name", "odd")]);
    assert_eq!(status, 404, "nothing is registered for a refused model");
}

/// Per worker: acknowledged prediction ids, the version that answered each, and failed requests.
type LoadResult = (Vec<String>, Vec<String>, usize);

fn load(
    url: &str,
    threads: usize,
    seconds: u64,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<LoadResult>> {
    let data = rows("gbc");
    (0..threads)
        .map(|t| {
            let (url, stop, data) = (url.to_string(), stop.clone(), data.clone());
            std::thread::spawn(move || {
                let http = client();
                let started = Instant::now();
                let (mut ids, mut versions, mut failures) = (Vec::new(), Vec::new(), 0);
                for i in 0..50_000 {
                    if stop.load(Ordering::Relaxed)
                        || started.elapsed() > Duration::from_secs(seconds)
                    {
                        break;
                    }
                    let body = json!({"instances": [data[(i + t) % data.len()]]});
                    match http
                        .post(format!("{url}/api/v1/predict"))
                        .json(&body)
                        .send()
                    {
                        Ok(r) if r.status().is_success() => {
                            let v: Value = r.json().unwrap();
                            ids.push(
                                v["predictions"][0]["prediction_id"]
                                    .as_str()
                                    .unwrap()
                                    .to_string(),
                            );
                            versions
                                .push(v["predictions"][0]["version"].as_str().unwrap().to_string());
                        }
                        Ok(_) => failures += 1,
                        Err(_) => break, // the process is gone
                    }
                }
                (ids, versions, failures)
            })
        })
        .collect()
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_prediction() {
    let server = Server::start();
    register(&server, "credit", "gbc.onnx", &[]);
    let logs = tempfile::tempdir().unwrap();
    let mut scorer = Scorer::start(&server, "credit/1", logs.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&scorer.url, 8, 20, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    scorer.crash();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap().0)
        .collect();
    assert!(
        acknowledged.len() > 200,
        "too little load before the crash: {}",
        acknowledged.len()
    );

    let restarted = Scorer::start(&server, "credit/1", logs.path(), &[]);
    let http = client();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| {
            !http
                .get(format!("{}/api/v1/predictions/{id}", restarted.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged predictions lost, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
}

#[test]
fn an_alias_swap_under_load_fails_no_request() {
    let server = Server::start();
    register(&server, "credit", "gbc.onnx", &[]);
    register(&server, "credit", "rf.onnx", &[]);
    set_alias(&server, "credit", "production", "1");
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit@production",
        logs.path(),
        &["--poll-interval-ms", "100"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&scorer.url, 4, 20, stop.clone());
    std::thread::sleep(Duration::from_millis(1000));
    set_alias(&server, "credit", "production", "2");
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (mut versions, mut failures, mut served) = (Vec::new(), 0, 0);
    for w in workers {
        let (ids, v, f) = w.join().unwrap();
        served += ids.len();
        versions.extend(v);
        failures += f;
    }
    assert_eq!(failures, 0, "requests failed during the swap");
    assert!(served > 100, "too little load: {served}");
    assert!(
        versions.iter().any(|v| v == "1") && versions.iter().any(|v| v == "2"),
        "both versions must have answered"
    );
    // After the swap the last answers come from version 2.
    assert_eq!(versions.last().map(String::as_str), Some("2"));
    let (_, info) = scorer.get("/api/v1/deployment");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        (info["version"].clone(), info["swaps"].clone()),
        (json!("2"), json!(1))
    );
    assert!(deployment_events(&server).contains("deployment.swap"));
    let listed: Value = client()
        .get(format!("{}/api/v1/deployments", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["deployments"][0]["name"], "credit");
    assert_eq!(listed["deployments"][0]["version"], "2");
    assert_eq!(listed["deployments"][0]["swaps"], 1);
    assert_eq!(listed["deployments"][0]["status"], "serving");
}

#[test]
fn sealed_segments_become_parquet_in_the_artifact_store_and_stay_readable() {
    let server = Server::start();
    register(&server, "credit", "gbc.onnx", &[]);
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &[
            "--deployment",
            "credit-prod",
            "--segment-bytes",
            "4000",
            "--archive-interval-ms",
            "200",
        ],
    );
    let data = rows("gbc");
    let mut ids = Vec::new();
    for row in data.iter().take(30) {
        let (status, answer) = scorer.post("/api/v1/predict", &json!({"instances": [row]}));
        assert_eq!(status, 200);
        ids.push(
            answer["predictions"][0]["prediction_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (status, _) = scorer.post(
        "/api/v1/feedback",
        &json!({"prediction_id": ids[0], "label": 0, "reward": 1.5}),
    );
    assert_eq!(status, 200);
    // One more write rolls the segment holding the feedback; then wait for the archiver.
    scorer.post("/api/v1/predict", &json!({"instances": [data[0]]}));
    for _ in 0..20 {
        scorer.post("/api/v1/predict", &json!({"instances": [data[1]]}));
    }
    let root = server
        .artifact_root()
        .join("predictions")
        .join("credit-prod");
    let deadline = Instant::now() + Duration::from_secs(15);
    let parquet_files = loop {
        let files: Vec<PathBuf> = walk(&root)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        if files.len() >= 3 || Instant::now() > deadline {
            break files;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        parquet_files.len() >= 3,
        "expected archived segments, found {parquet_files:?}"
    );
    assert!(std::fs::read(&parquet_files[0])
        .unwrap()
        .starts_with(b"PAR1"));
    // The first prediction is no longer local but still answers, with its feedback.
    let (status, text) = scorer.get(&format!("/api/v1/predictions/{}", ids[0]));
    assert_eq!(status, 200, "{text}");
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["feedback"][0]["reward"], 1.5);
    assert_eq!(record["version"], "1");

    let export = |extra: &[&str]| {
        let base = [
            "predictions",
            "export",
            "--deployment",
            "credit-prod",
            "--log-dir",
            logs.path().to_str().unwrap(),
            "--tracking-uri",
            &server.url,
        ];
        let out = server.mltrail(&[&base[..], extra].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let csv = export(&["--format", "csv", "--since", "1h"]);
    assert!(csv.starts_with("type,id,deployment"));
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("prediction,")).count(),
        51,
        "every prediction exported once"
    );
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("feedback,")).count(),
        1
    );
    let parquet = logs.path().join("export.parquet");
    export(&["--output", parquet.to_str().unwrap()]);
    assert!(std::fs::read(&parquet).unwrap().starts_with(b"PAR1"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Logged traffic checked against the reference dataset version: traffic like the reference
/// shows no drift, shifted traffic drifts in every feature.
#[test]
fn monitor_check_compares_logged_inputs_with_the_reference_version() {
    let server = Server::start();
    register(
        &server,
        "credit",
        "gbc.onnx",
        &["--signature", "f0,f1,f2,f3,f4,f5"],
    );
    let data = rows("gbc");
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let mut csv = String::from("f0,f1,f2,f3,f4,f5\n");
    for row in &data {
        csv.push_str(
            &row.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    std::fs::write(&reference, csv).unwrap();
    let added = server.mltrail(&[
        "data",
        "add",
        reference.to_str().unwrap(),
        "--name",
        "train",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let check = |log: &Path| {
        server.mltrail(&[
            "monitor",
            "check",
            "--deployment",
            "credit",
            "--reference",
            "train@1",
            "--log-dir",
            log.to_str().unwrap(),
            "--fail-on-drift",
            "--tracking-uri",
            &server.url,
        ])
    };
    // Serves `rows` once from a scorer logging into `logs`, then stops it.
    let serve_rows = |logs: &Path, rows: Value| {
        let scorer = Scorer::start(&server, "credit/1", logs, &[]);
        let (status, _) = scorer.post("/invocations", &json!({ "instances": rows }));
        assert_eq!(status, 200);
    };
    let calm_logs = dir.path().join("calm");
    serve_rows(&calm_logs, json!(data));
    let calm = check(&calm_logs);
    assert_eq!(
        calm.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&calm.stdout),
        String::from_utf8_lossy(&calm.stderr)
    );
    assert!(String::from_utf8_lossy(&calm.stdout).contains("0 of 6 columns drifted"));

    let shifted_logs = dir.path().join("shifted");
    let shifted: Vec<Vec<f64>> = data
        .iter()
        .map(|r| r.iter().map(|v| v.as_f64().unwrap() + 3.0).collect())
        .collect();
    serve_rows(&shifted_logs, json!(shifted));
    let drifted = check(&shifted_logs);
    assert_eq!(
        drifted.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&drifted.stdout)
    );
    assert!(String::from_utf8_lossy(&drifted.stdout).contains("6 of 6 columns drifted"));
}
