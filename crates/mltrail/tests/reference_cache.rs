//! The monitors keep at most `[monitor] reference_cache` references in memory: two monitors on
//! two references, with a cache of one, both evaluate their window (the dropped reference is read
//! again), and the server reports one reference loaded, not two.

mod common;
use common::Server;
use mltrail_serving::record::{LogRecord, PredictionRecord};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOUR_MS: i64 = 3_600_000;

fn golden(name: &str) -> String {
    format!(
        "{}/../../tests/golden/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The golden current rows as logged predictions of deployment `bench`, spread over the hour
/// that starts at `start`, archived as a serving replica archives them.
fn write_window(server: &Server, start: i64) {
    let text = std::fs::read_to_string(golden("current.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let records: Vec<LogRecord> = lines
        .enumerate()
        .map(|(i, line)| {
            let inputs: serde_json::Map<String, Value> = header
                .iter()
                .zip(line.split(','))
                .filter(|(column, _)| **column != "label")
                .map(|(column, cell)| {
                    let value = cell
                        .parse::<f64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(cell));
                    (column.to_string(), value)
                })
                .collect();
            LogRecord::Prediction(PredictionRecord {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                time_ms: start + i as i64 * 500,
                deployment: "bench".into(),
                model: "m".into(),
                version: "1".into(),
                digest: "0".repeat(64),
                arm: None,
                latency_us: 100,
                trace_id: None,
                inputs: serde_json::value::to_raw_value(&inputs).unwrap(),
                outputs: serde_json::value::to_raw_value(&json!({"label": 0})).unwrap(),
                subject: None,
                sealed: None,
                sealed_inputs: None,
                explanation: None,
                signature: None,
            })
        })
        .collect();
    let parquet = mltrail_serving::archive::to_parquet(&records).unwrap();
    let day = mltrail_core::time::utc_date(start);
    let dir = server.artifact_root().join("predictions/bench").join(day);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("r0-000000000001.parquet"), parquet).unwrap();
}

#[test]
fn monitors_keep_at_most_the_configured_references_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mltrail.toml");
    std::fs::write(&config, "[monitor]\nreference_cache = 1\n").unwrap();
    let server = Server::start_with(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--monitor-interval-ms",
            "50",
        ],
    );
    for (file, name) in [("reference.csv", "ref-a"), ("current.csv", "ref-b")] {
        let out = server.mltrail(&[
            "data",
            "add",
            &golden(file),
            "--name",
            name,
            "--target",
            "label",
            "--tracking-uri",
            &server.url,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now / HOUR_MS - 1) * HOUR_MS;
    write_window(&server, start);

    let mut ids = Vec::new();
    for reference in ["ref-a@1", "ref-b@1"] {
        let resp = common::client()
            .post(format!("{}/api/v1/monitors", server.url))
            .json(
                &json!({"deployment": "bench", "window": "1h", "delay": "0s",
                          "reference": reference, "start": start}),
            )
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().unwrap();
        ids.push(body["monitor"]["id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let results: Value = common::client()
                .get(format!("{}/api/v1/monitors/{id}/results", server.url))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if let Some(r) = results["results"].as_array().and_then(|r| r.first()) {
                assert_eq!(r["status"], "ok", "{r}");
                assert_eq!(r["rows"], 5000, "{r}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "monitor {id} evaluated no window"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let metrics = common::client()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("mltrail_monitor_references_loaded 1\n"),
        "{metrics}"
    );
}
