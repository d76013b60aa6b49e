//! Personal data end to end: a model version registered with PII columns and a subject column
//! is served by the real `mltrail serve`; its predictions are stored sealed per subject (no
//! recognizable value anywhere under the store, the artifact store or the log directory, Parquet
//! pages decoded included), read back opened by a lookup and by `mltrail privacy export`, and
//! erased by crypto-shredding: the export then shows `<erased>`, the other subject's data stays
//! readable, the monitor keeps evaluating windows and `mltrail audit verify` passes.

mod common;
use common::scorer::{add_gbc_training_data, register, rows, Scorer};
use common::{client, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Values nobody else writes: if any of them is found on disk in the clear, sealing failed.
const ADA: &str = "ada-lovelace-7f3a9c21";
const BOB: &str = "bob-babbage-51e0d4b8";
/// f1 and f2 are personal data; these doubles print as these texts.
const F1: f64 = 4.918_273_645_1;
const F2: f64 = 77.031_415_926_5;

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every place a marker could be: each file's bytes and, for Parquet files, every decoded
/// cell (pages are compressed, so the raw bytes alone would prove little).
fn plaintext_found(dirs: &[&Path], markers: &[String]) -> Vec<String> {
    let mut files = Vec::new();
    for dir in dirs {
        files_under(dir, &mut files);
    }
    assert!(!files.is_empty());
    let mut found = Vec::new();
    let mut parquet_files = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        let mut texts = vec![bytes.clone()];
        if file.extension().is_some_and(|e| e == "parquet") {
            parquet_files += 1;
            let records = mltrail_serving::archive::from_parquet(bytes).expect("archive file");
            for record in records {
                texts.push(serde_json::to_vec(&record).unwrap());
            }
        }
        for marker in markers {
            if texts
                .iter()
                .any(|t| t.windows(marker.len()).any(|w| w == marker.as_bytes()))
            {
                found.push(format!("{marker} in {}", file.display()));
            }
        }
    }
    assert!(parquet_files > 0, "no archived file was scanned");
    found
}

fn cli(server: &Server, args: &[&str]) -> String {
    let out = server.mltrail(&[args, &["--tracking-uri", &server.url]].concat());
    assert!(
        out.status.success(),
        "mltrail {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn monitor_results(server: &Server, id: &str) -> Vec<Value> {
    let resp = client()
        .get(format!(
            "{}/api/v1/monitors/{id}/results?limit=50",
            server.url
        ))
        .send()
        .unwrap();
    resp.json::<Value>().unwrap()["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn personal_data_is_stored_sealed_read_back_by_those_who_may_and_erased_for_good() {
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        &["--monitor-interval-ms", "200"],
    );
    // Training data (marks nothing: the flags do), for the monitor's reference.
    let data = rows("gbc");
    let dir = tempfile::tempdir().unwrap();
    add_gbc_training_data(&server, dir.path());

    // PII needs a subject to be sealed under.
    let refused = server.mltrail(&[
        "models",
        "register",
        "credit",
        common::scorer::fixture("gbc.onnx").to_str().unwrap(),
        "--signature",
        "f0,f1,f2,f3,f4,f5",
        "--pii",
        "f1,f2",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--subject"));
    register(
        &server,
        "credit",
        "gbc.onnx",
        &[
            "--signature",
            "f0,f1,f2,f3,f4,f5",
            "--training-data",
            "train@1",
            "--pii",
            "f1,f2",
            "--subject",
            "customer",
        ],
    );
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
    let created = cli(
        &server,
        &[
            "monitor",
            "create",
            "--deployment",
            "credit-prod",
            "--window",
            "2s",
            "--delay",
            "2s",
            "--reference",
            "training",
        ],
    );
    let monitor = created.trim().to_string();

    // The subject column comes beside the model's columns; it must be there, with a value.
    let columns = ["f0", "f1", "f2", "f3", "f4", "f5", "customer"];
    let row = |who: &str, r: usize| {
        let mut cells = data[r].clone();
        cells[1] = json!(F1 + r as f64);
        cells[2] = json!(F2 + r as f64);
        cells.push(json!(who));
        cells
    };
    let body = json!({"dataframe_split": {"columns": columns, "data": [row(ADA, 0), row(ADA, 1), row(BOB, 2), row(ADA, 3)]}});
    let (status, answer) = scorer.post("/api/v1/predict", &body);
    assert_eq!(status, 200, "{answer}");
    let ids: Vec<String> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prediction_id"].as_str().unwrap().to_string())
        .collect();
    let (status, refusal) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": &columns[..6], "data": [data[0]]}}),
    );
    assert_eq!(
        (status, refusal["column"].as_str()),
        (400, Some("customer")),
        "{refusal}"
    );
    let mut nameless = row(ADA, 0);
    nameless[6] = Value::Null;
    let (status, refusal) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": columns, "data": [nameless]}}),
    );
    assert_eq!(
        (status, refusal["row"].as_u64()),
        (400, Some(0)),
        "{refusal}"
    );
    let (status, _) = scorer.post(
        "/api/v1/feedback",
        &json!({"prediction_id": ids[0], "label": 1}),
    );
    assert_eq!(status, 200);

    // A lookup opens the values, bit for bit.
    let (status, text) = scorer.get(&format!("/api/v1/predictions/{}", ids[1]));
    assert_eq!(status, 200, "{text}");
    let looked: Value = serde_json::from_str(&text).unwrap();
    let inputs = &looked["inputs"];
    assert_eq!(inputs["customer"], ADA, "{looked}");
    assert_eq!(
        inputs["f1"].as_f64().unwrap().to_bits(),
        (F1 + 1.0).to_bits()
    );
    assert_eq!(inputs["f0"], data[1][0]);

    // Archived, then scanned: no marker anywhere on disk.
    let archive = server
        .artifact_root()
        .join("predictions")
        .join("credit-prod");
    wait_until("the archive", Duration::from_secs(20), || {
        let mut files = Vec::new();
        files_under(&archive, &mut files);
        let sealed_in_log = {
            let mut local = Vec::new();
            files_under(logs.path(), &mut local);
            local
                .iter()
                .any(|f| std::fs::read(f).is_ok_and(|b| b.windows(6).any(|w| w == b"\"pii1:")))
        };
        (files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "parquet"))
            && !sealed_in_log)
            .then_some(())
    });
    let mut markers = vec![ADA.to_string(), BOB.to_string()];
    for r in 0..4 {
        markers.push(serde_json::to_string(&(F1 + r as f64)).unwrap());
        markers.push(serde_json::to_string(&(F2 + r as f64)).unwrap());
    }
    let found = plaintext_found(&[server.dir.path(), logs.path()], &markers);
    assert!(
        found.is_empty(),
        "plaintext personal data on disk: {found:?}"
    );
    // The same scan finds what is not personal data (f0 of the first row): it can see values.
    let control = plaintext_found(&[server.dir.path(), logs.path()], &[data[0][0].to_string()]);
    assert!(
        control.iter().any(|f| f.contains(".parquet")),
        "the scan sees no value at all: {control:?}"
    );

    // GDPR access: everything about Ada, opened, with the feedback.
    let export: Value =
        serde_json::from_str(&cli(&server, &["privacy", "export", "--subject", ADA])).unwrap();
    let predictions = export["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3, "{export}");
    assert_eq!(predictions[0]["id"], ids[0]);
    assert_eq!(predictions[0]["inputs"]["customer"], ADA);
    assert_eq!(
        predictions[0]["inputs"]["f2"].as_f64().unwrap().to_bits(),
        F2.to_bits()
    );
    assert_eq!(predictions[0]["feedback"][0]["label"], 1);
    assert_eq!(predictions[0]["model"], "credit");

    // The monitor evaluated a window of sealed traffic: it saw the values.
    let first = wait_until("a monitor window", Duration::from_secs(30), || {
        monitor_results(&server, &monitor)
            .into_iter()
            .find(|r| r["rows"].as_u64().unwrap_or(0) > 0)
    });
    assert_eq!(first["status"], "ok", "{first}");
    let features = first["result"]["features"].as_array().unwrap();
    assert!(
        features.iter().any(|c| c["column"] == "f1"),
        "the sealed column was compared: {first}"
    );

    // GDPR erasure: the key is destroyed; the trail names who and why, never Ada.
    let erased = cli(
        &server,
        &[
            "privacy",
            "erase",
            "--subject",
            ADA,
            "--reason",
            "request #42 under Art. 17",
        ],
    );
    assert!(erased.contains("key is destroyed"), "{erased}");
    let export: Value =
        serde_json::from_str(&cli(&server, &["privacy", "export", "--subject", ADA])).unwrap();
    let predictions = export["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for p in predictions {
        assert_eq!(p["inputs"]["customer"], "<erased>", "{p}");
        assert_eq!(p["inputs"]["f1"], "<erased>");
        assert!(
            p["inputs"]["f0"].is_number(),
            "what is not personal data stays"
        );
    }
    let bob: Value =
        serde_json::from_str(&cli(&server, &["privacy", "export", "--subject", BOB])).unwrap();
    assert_eq!(bob["predictions"][0]["inputs"]["customer"], BOB);
    let trail = server.mltrail(&[
        "audit",
        "log",
        "--backend-store-uri",
        &server.store_uri(),
        "--entity",
        "subject",
        "--json",
    ]);
    let trail = String::from_utf8_lossy(&trail.stdout).into_owned();
    assert!(trail.contains("subject.erase"), "{trail}");
    assert!(!trail.contains(ADA));
    let listed = cli(&server, &["privacy", "erasures"]);
    assert!(listed.contains("request #42"), "{listed}");
    server.assert_audit_verifies();

    // The window holding Ada's rows reads again after the erasure (her values now missing),
    // and its report draws no personal data.
    let report = client()
        .get(format!(
            "{}/api/v1/monitors/{monitor}/windows/{}/report",
            server.url, first["window_start"]
        ))
        .send()
        .unwrap();
    assert_eq!(report.status().as_u16(), 200);
    let html = report.text().unwrap();
    assert!(html.contains("f0"), "the report draws the other columns");
    for marker in &markers {
        assert!(!html.contains(marker.as_str()), "{marker} in the report");
    }

    // The monitor keeps evaluating windows after the erasure, fed with new traffic.
    let erased_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = json!({"dataframe_split": {"columns": columns, "data": [row(BOB, 4), row(BOB, 5)]}});
    assert_eq!(scorer.post("/api/v1/predict", &body).0, 200);
    let later = wait_until(
        "a window after the erasure",
        Duration::from_secs(30),
        || {
            monitor_results(&server, &monitor).into_iter().find(|r| {
                r["window_end"].as_i64().unwrap_or(0) > erased_at
                    && r["rows"].as_u64().unwrap_or(0) > 0
            })
        },
    );
    assert_eq!(later["status"], "ok", "{later}");

    // An erasure is repeated by the hash the list shows (after restoring an older backup).
    let hash = export["subject_hash"].as_str().unwrap().to_string();
    let again = cli(
        &server,
        &[
            "privacy",
            "erase",
            "--subject-hash",
            &hash,
            "--reason",
            "restored backup",
        ],
    );
    assert!(again.contains("nothing was stored"), "{again}");
    server.assert_audit_verifies();

    // A server started with another master key is refused: it would hash everyone anew.
    drop(scorer);
    let mut server = server;
    server.stop();
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "cd".repeat(32))).unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args([
            "server",
            "--port",
            "0",
            "--backend-store-uri",
            &server.store_uri(),
            "--artifacts-destination",
            server.artifact_root().to_str().unwrap(),
        ])
        .env("MLTRAIL_PRIVACY_MASTER_KEY_FILE", &other)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("fingerprint"), "{said}");
}
