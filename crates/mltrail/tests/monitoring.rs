//! Continuous monitoring end to end: a model registered with its training data is served by the
//! real `mltrail serve`; the tracking server's monitor evaluates one window of reference-like
//! traffic and one where two features are shifted, flags exactly those two, computes accuracy
//! from the labels fed back, exports gauges, and delivers the alert to a webhook receiver this
//! test runs (which fails the first attempt, so the retry is exercised), while a dead webhook is
//! given up on without stopping the monitor.

mod common;
use common::scorer::{add_dataset, add_gbc_training_data, register, rows, Scorer};
use common::{client, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WINDOW_MS: u64 = 4_000;

/// A webhook receiver on a free loopback port: answers 503 to the first POST and 200 after,
/// keeping every body it was sent.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let (b, a) = (bodies.clone(), attempts.clone());
        std::thread::spawn(move || {
            // Bounded: the test never needs more than a few dozen deliveries.
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).ok();
                let first = {
                    let mut n = a.lock().unwrap();
                    *n += 1;
                    *n == 1
                };
                let status = if first {
                    "503 Service Unavailable"
                } else {
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Receiver {
            url,
            bodies,
            attempts,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sleeps until just after the next window boundary, so a burst of traffic lands in one window.
fn wait_for_next_window() {
    let now = now_ms();
    let next = (now / WINDOW_MS + 1) * WINDOW_MS + 150;
    std::thread::sleep(Duration::from_millis(next - now));
}

/// Scores `rows`, then feeds back a label for each: the predicted one, or the other class.
fn traffic(scorer: &Scorer, rows: &[Vec<Value>], labels_correct: bool) {
    let (status, answer) = scorer.post("/api/v1/predict", &json!({ "instances": rows }));
    assert_eq!(status, 200, "{answer}");
    for p in answer["predictions"].as_array().unwrap() {
        let predicted = p["outputs"]["output_label"].as_i64().unwrap();
        let label = if labels_correct {
            predicted
        } else {
            1 - predicted
        };
        let (status, body) = scorer.post(
            "/api/v1/feedback",
            &json!({"prediction_id": p["prediction_id"], "label": label}),
        );
        assert_eq!(status, 200, "{body}");
    }
}

fn api(server: &Server, path: &str) -> Value {
    let resp = client()
        .get(format!("{}{path}", server.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.json().unwrap()
}

/// A monitor's latest results once the window starting at `start` is among them (or after 40 s,
/// for the caller to find it missing).
fn results_with(server: &Server, id: &str, start: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = api(server, &format!("/api/v1/monitors/{id}/results?limit=50"));
        let results = r["results"].as_array().unwrap().clone();
        if results.iter().any(|w| w["window_start"] == json!(start)) || Instant::now() > deadline {
            return results;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn drifted_columns(result: &Value) -> Vec<String> {
    result["result"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == true)
        .map(|c| c["column"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_monitor_flags_exactly_the_drifted_columns_and_the_alert_reaches_the_webhook() {
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        &[
            "--monitor-interval-ms",
            "200",
            "--webhook-attempts",
            "3",
            "--webhook-backoff-ms",
            "100",
        ],
    );
    // The training data: the fixture's rows with the model's own labels as the target.
    let data = rows("gbc");
    let dir = tempfile::tempdir().unwrap();
    add_gbc_training_data(&server, dir.path());
    register(
        &server,
        "credit",
        "gbc.onnx",
        &[
            "--signature",
            "f0,f1,f2,f3,f4,f5",
            "--training-data",
            "train@1",
        ],
    );

    // Bad monitor requests are refused naming the field, and store nothing.
    for (body, field) in [
        (json!({"deployment": "credit-prod"}), "window"),
        (
            json!({"deployment": "credit-prod", "window": "4x"}),
            "window",
        ),
        (
            json!({"deployment": "credit-prod", "window": "4s", "alerts": ["speed > 1"]}),
            "alerts",
        ),
        (
            json!({"deployment": "credit-prod", "window": "4s", "webhooks": ["file:///etc/passwd"]}),
            "webhooks",
        ),
        (
            json!({"deployment": "credit-prod", "window": "4s", "reference": "nope@3"}),
            "reference",
        ),
    ] {
        let resp = client()
            .post(format!("{}/api/v1/monitors", server.url))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let answer: Value = resp.json().unwrap();
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("`{field}`")),
            "{answer}"
        );
    }
    assert_eq!(api(&server, "/api/v1/monitors")["monitors"], json!([]));

    let receiver = Receiver::start();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", l.local_addr().unwrap())
    };
    let created = server.mltrail(&[
        "monitor",
        "create",
        "--deployment",
        "credit-prod",
        "--window",
        "4s",
        "--delay",
        "2s",
        "--reference",
        "training",
        "--alert",
        "drift_share >= 0.3",
        "--alert",
        "accuracy < 0.5",
        "--webhook",
        &receiver.url,
        "--webhook",
        &dead,
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let id = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    // A second monitor against data that shares no column with the model's inputs: its windows
    // cannot be compared, which is itself worth an alert.
    let unrelated = server.mltrail(&[
        "data",
        "add",
        &format!(
            "{}/../../tests/golden/data/reference.csv",
            env!("CARGO_MANIFEST_DIR")
        ),
        "--name",
        "unrelated",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        unrelated.status.success(),
        "{}",
        String::from_utf8_lossy(&unrelated.stderr)
    );
    let broken: Value = client()
        .post(format!("{}/api/v1/monitors", server.url))
        .json(
            &json!({"deployment": "credit-prod", "window": "4s", "delay": "2s",
                      "reference": "unrelated@1", "alerts": ["error == 1"]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let broken_id = broken["monitor"]["id"].as_str().unwrap().to_string();

    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &[
            "--deployment",
            "credit-prod",
            "--segment-seconds",
            "1",
            "--archive-interval-ms",
            "200",
        ],
    );
    // Window A: the training rows themselves, labelled as predicted.
    wait_for_next_window();
    let calm_start = now_ms() / WINDOW_MS * WINDOW_MS;
    traffic(&scorer, &data, true);
    // Window B: f0 and f2 shifted far out of range; every label contradicts the model.
    wait_for_next_window();
    let shifted_start = now_ms() / WINDOW_MS * WINDOW_MS;
    let shifted: Vec<Vec<Value>> = data
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = v.as_f64().unwrap();
                    json!(if i == 0 || i == 2 { x + 50.0 } else { x })
                })
                .collect()
        })
        .collect();
    traffic(&scorer, &shifted, false);

    // Both windows are evaluated WINDOW + delay after they start.
    let results = results_with(&server, &id, shifted_start);
    let window = |start: u64| {
        results
            .iter()
            .find(|w| w["window_start"] == json!(start))
            .unwrap_or_else(|| panic!("no result for the window at {start}: {results:?}"))
            .clone()
    };
    let calm = window(calm_start);
    assert_eq!(calm["status"], "ok", "{calm}");
    assert_eq!(calm["rows"], 40);
    assert_eq!(calm["result"]["reference"], "train@1");
    assert!(drifted_columns(&calm).is_empty(), "{calm}");
    assert_eq!(calm["result"]["dataset"]["drift"], false);
    assert_eq!(calm["result"]["prediction"]["drifted"], false);
    assert_eq!(calm["result"]["performance"]["metrics"]["accuracy"], 1.0);
    assert_eq!(calm["result"]["performance"]["reference"]["accuracy"], 1.0);
    assert_eq!(
        calm["result"]["features"].as_array().unwrap().len(),
        6,
        "the target is not a feature"
    );

    let drifted = window(shifted_start);
    assert_eq!(drifted["status"], "ok", "{drifted}");
    assert_eq!(drifted_columns(&drifted), ["f0", "f2"], "{drifted}");
    assert_eq!(drifted["result"]["performance"]["metrics"]["accuracy"], 0.0);
    assert_eq!(
        drifted["result"]["performance"]["labelled_rows"], 40,
        "every label arrived within the delay"
    );

    // Both rules fired on window B only; the receiver got them after one failed attempt.
    let alerts = api(&server, &format!("/api/v1/monitors/{id}/alerts"))["alerts"].clone();
    let rules: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 2, "{alerts}");
    assert!(rules.contains(&"drift_share >= 0.3") && rules.contains(&"accuracy < 0.5"));
    assert!(alerts
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["window_start"] == json!(shifted_start)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.bodies.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(*receiver.attempts.lock().unwrap() >= 3, "one retry");
    let drift_alert = bodies
        .iter()
        .find(|b| b["alert"]["rule"] == "drift_share >= 0.3")
        .unwrap();
    assert_eq!(
        drift_alert["alert"]["details"]["drifted_columns"],
        json!(["f0", "f2"])
    );
    assert!(drift_alert["text"]
        .as_str()
        .unwrap()
        .contains("credit-prod"));
    // The alert links the window's HTML report, served by the tracking server.
    let report_path = drift_alert["alert"]["details"]["report"].as_str().unwrap();
    let page = client()
        .get(format!("{}{report_path}", server.url))
        .send()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = page.text().unwrap();
    assert!(page.contains("<svg") && page.contains("f0 — drift") && page.contains("f1 — no drift"));
    let missing = client()
        .get(format!(
            "{}/api/v1/monitors/{id}/windows/12345/report",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // The gauges of the latest window.
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let gauge = |feature: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("mltrail_feature_drifted{")
                    && l.contains(&format!("feature=\"{feature}\""))
            })
            .unwrap_or_else(|| panic!("no gauge for {feature}:\n{metrics}"))
            .to_string()
    };
    assert!(gauge("f0").ends_with(" 1") && gauge("f1").ends_with(" 0"));
    assert!(
        metrics.contains("mltrail_feature_drift{deployment=\"credit-prod\""),
        "{metrics}"
    );
    assert!(metrics.contains("mltrail_model_performance{deployment=\"credit-prod\""));
    assert!(
        metrics.contains(&format!(
            "mltrail_monitor_window_error{{deployment=\"credit-prod\",monitor=\"{broken_id}\"}} 1"
        )),
        "{metrics}"
    );
    let broken_alerts = api(&server, &format!("/api/v1/monitors/{broken_id}/alerts"))["alerts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(broken_alerts.len(), 1, "fires once for a lasting failure");
    assert_eq!(broken_alerts[0]["window_start"], json!(calm_start));
    assert!(broken_alerts[0]["details"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be compared: no column to compare"));

    // Window C: the training rows again, labelled as predicted. Both rules resolve, and the
    // receiver is told; the lasting failure of the second monitor does not.
    wait_for_next_window();
    let recovered_start = now_ms() / WINDOW_MS * WINDOW_MS;
    traffic(&scorer, &data, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let alerts = loop {
        let alerts = api(&server, &format!("/api/v1/monitors/{id}/alerts"))["alerts"]
            .as_array()
            .unwrap()
            .clone();
        if alerts.len() >= 4 || Instant::now() > deadline {
            break alerts;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let resolved: Vec<&Value> = alerts.iter().filter(|a| a["state"] == "resolved").collect();
    assert_eq!(resolved.len(), 2, "{alerts:?}");
    assert!(resolved
        .iter()
        .all(|a| a["window_start"] == json!(recovered_start)));
    assert!(alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .all(|a| a["window_start"] == json!(shifted_start)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.bodies.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let bodies = receiver.bodies.lock().unwrap().clone();
    let told: Vec<&str> = bodies
        .iter()
        .filter(|b| b["alert"]["state"] == "resolved")
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(told.len(), 2, "{bodies:?}");
    assert!(told
        .iter()
        .all(|t| t.starts_with("credit-prod: resolved: ")));
    assert_eq!(
        api(&server, &format!("/api/v1/monitors/{broken_id}/alerts"))["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The dead webhook is given up on, and the monitor keeps evaluating windows after it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let out = server.mltrail(&[
            "audit",
            "log",
            "--backend-store-uri",
            &server.store_uri(),
            "--json",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let later = api(&server, &format!("/api/v1/monitors/{id}/results?limit=1"))["results"][0]
            ["window_start"]
            .as_u64()
            .unwrap_or(0);
        if (text.contains("alert.undelivered") && later > shifted_start)
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for action in [
        "monitor.create",
        "monitor.result",
        "alert.fire",
        "alert.resolve",
        "alert.delivered",
        "alert.undelivered",
    ] {
        assert!(events.contains(action), "no {action} event:\n{events}");
    }
    let summary = server.mltrail(&["monitor", "results", &id, "--tracking-uri", &server.url]);
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("(f0, f2)"), "{text}");

    // The report of the drifted window: the stored verdicts as a table and JSON, and the HTML the
    // server recomputes from the archived rows, with the same verdict for every column.
    let report_json = dir.path().join("report.json");
    let report_html = dir.path().join("report.html");
    let report = server.mltrail(&[
        "monitor",
        "report",
        &id,
        "--window",
        "drift",
        "--json",
        report_json.to_str().unwrap(),
        "--html",
        report_html.to_str().unwrap(),
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let table = String::from_utf8_lossy(&report.stdout);
    assert!(
        table.contains("dataset: 2 of 6 columns drifted (33.3%)"),
        "{table}"
    );
    let reported: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_json).unwrap()).unwrap();
    assert_eq!(reported["window_start"], json!(shifted_start));
    let html = std::fs::read_to_string(&report_html).unwrap();
    assert!(html.contains("<svg") && html.contains("2 of 6 columns drifted"));
    let stored = drifted["result"]["features"].as_array().unwrap();
    assert_eq!(stored.len(), reported["columns"].as_array().unwrap().len());
    for (stored, again) in stored.iter().zip(reported["columns"].as_array().unwrap()) {
        assert_eq!(stored["column"], again["column"]);
        assert_eq!(stored["drifted"], again["drifted"]);
        assert_eq!(stored["statistic"], again["statistic"]);
        let column = stored["column"].as_str().unwrap();
        let verdict = if stored["drifted"] == true {
            "drift"
        } else {
            "no drift"
        };
        assert!(
            html.contains(&format!("{column} — {verdict}</h2>")),
            "{column}: {verdict}"
        );
    }
    drop(scorer);
    server.assert_audit_verifies();
}

/// A monitor with a sensitive column: each window reports demographic parity over the
/// predictions and equalized odds over the labelled ones across the column's groups, as values
/// alert rules read and as Prometheus gauges.
#[test]
fn a_monitor_measures_fairness_across_a_sensitive_column() {
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        &["--monitor-interval-ms", "200"],
    );
    let case = common::scorer::expected("columns_onehot");
    let inputs = &case["inputs"];
    let n = inputs["region"]["data"].as_array().unwrap().len();
    let cell = |name: &str, r: usize| inputs[name]["data"][r].clone();
    let dir = tempfile::tempdir().unwrap();
    let training = dir.path().join("regions.csv");
    let mut csv = String::from("region,income,age\n");
    for r in 0..n {
        csv.push_str(&format!(
            "{},{},{}\n",
            cell("region", r).as_str().unwrap(),
            cell("income", r),
            cell("age", r)
        ));
    }
    std::fs::write(&training, csv).unwrap();
    add_dataset(&server, &training, "regions", &[]);
    register(
        &server,
        "loans",
        "columns_onehot.onnx",
        &["--training-data", "regions@1"],
    );
    let monitor: Value = client()
        .post(format!("{}/api/v1/monitors", server.url))
        .json(
            &json!({"deployment": "loans", "window": "4s", "delay": "2s", "sensitive": ["region"],
                      "alerts": ["demographic_parity_difference.region > 0.1"]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = monitor["monitor"]["id"].as_str().unwrap().to_string();
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "loans/1",
        logs.path(),
        &["--segment-seconds", "1", "--archive-interval-ms", "200"],
    );
    wait_for_next_window();
    let start = now_ms() / WINDOW_MS * WINDOW_MS;
    let rows: Vec<Value> = (0..n)
        .map(|r| json!({"region": cell("region", r), "income": cell("income", r), "age": cell("age", r)}))
        .collect();
    let (status, answer) = scorer.post("/api/v1/predict", &json!({"dataframe_records": rows}));
    assert_eq!(status, 200, "{answer}");
    // Every other prediction gets feedback: the truth is the prediction's opposite.
    let mut selected: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (r, p) in answer["predictions"].as_array().unwrap().iter().enumerate() {
        let predicted = p["outputs"]["output_label"].as_i64().unwrap();
        let region = cell("region", r).as_str().unwrap().to_string();
        let entry = selected.entry(region).or_default();
        entry.0 += predicted as f64;
        entry.1 += 1.0;
        if r % 2 == 0 {
            let (status, body) = scorer.post(
                "/api/v1/feedback",
                &json!({"prediction_id": p["prediction_id"], "label": 1 - predicted}),
            );
            assert_eq!(status, 200, "{body}");
        }
    }
    let rates: Vec<f64> = selected.values().map(|(s, c)| s / c).collect();
    let gap = rates.iter().cloned().fold(f64::MIN, f64::max)
        - rates.iter().cloned().fold(f64::MAX, f64::min);

    let results = results_with(&server, &id, start);
    let window = results
        .iter()
        .find(|w| w["window_start"] == json!(start))
        .unwrap_or_else(|| panic!("no window evaluated: {results:?}"));
    assert_eq!(window["status"], "ok", "{window}");
    let values = &window["result"]["values"];
    let dp = values["demographic_parity_difference.region"]
        .as_f64()
        .unwrap();
    assert!((dp - gap).abs() < 1e-12, "{dp} vs {gap}: {window}");
    assert!(
        values["equalized_odds_difference.region"].is_number(),
        "{values}"
    );
    let groups = window["result"]["fairness"]["groupings"]["region"]["by_group"]
        .as_object()
        .unwrap();
    assert_eq!(groups.len(), selected.len());
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("mltrail_fairness{")
            && metrics.contains("metric=\"demographic_parity_difference\""),
        "{metrics}"
    );
    // The fixture's rows select a third of one region and none of the others.
    assert!(gap > 0.1, "{gap}");
    let alerts = api(&server, &format!("/api/v1/monitors/{id}/alerts"))["alerts"].clone();
    assert!(
        alerts.as_array().unwrap().iter().any(|a| a["rule"]
            .as_str()
            .unwrap_or_default()
            .starts_with("demographic_parity_difference.region")),
        "{alerts}"
    );
}
