//! `mltrail backup` while the server takes writes: the copy opens as a store of its own with
//! everything acknowledged before the backup began, its artifacts byte for byte, and passes
//! `audit verify` (artifacts included) after being moved elsewhere ("restored").

mod common;
use common::{client, experiment_and_run, Server};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_backup_taken_under_write_load_restores_and_verifies() {
    let server = Server::start();
    let (_, run) = experiment_and_run(&server, "backed-up");
    let (status, _) = server.raw(
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/1/model/weights.bin",
        &[7u8; 100_000],
    );
    assert_eq!(status, 200);
    // A name the file system keeps escaped (`~` as `%7E`) comes back under its own name.
    let (status, _) = server.raw(
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/1/model/a~b.txt",
        b"tilde",
    );
    assert_eq!(status, 200);

    // A writer logs one metric step after another until told to stop (at most 5,000 steps).
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicI64::new(-1));
    let writer = {
        let (stop, acknowledged, url, run) = (
            stop.clone(),
            acknowledged.clone(),
            server.url.clone(),
            run.clone(),
        );
        std::thread::spawn(move || {
            let http = client();
            for step in 0..5_000i64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = http
                    .post(format!("{url}/api/2.0/mlflow/runs/log-metric"))
                    .json(&json!({"run_id": run, "key": "m", "value": step as f64 / 3.0, "timestamp": 1, "step": step}))
                    .send()
                    .unwrap();
                assert!(r.status().is_success());
                acknowledged.store(step, Ordering::Release);
            }
        })
    };
    while acknowledged.load(Ordering::Acquire) < 50 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before_backup = acknowledged.load(Ordering::Acquire);
    let out = tempfile::tempdir().unwrap();
    let backup_dir = out.path().join("backup");
    let artifacts = server.artifact_root();
    let backup = server.mltrail(&[
        "backup",
        backup_dir.to_str().unwrap(),
        "--backend-store-uri",
        &server.store_uri(),
        "--artifacts-destination",
        artifacts.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let said = String::from_utf8_lossy(&backup.stdout);
    assert!(said.contains("verified"), "{said}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["artifact_files"], 2);
    assert_eq!(manifest["artifact_bytes"], 100_005);
    assert!(!out.path().join("backup.partial").exists());

    // A second backup into the same folder is refused with one line saying what to do.
    let again = server.mltrail(&[
        "backup",
        backup_dir.to_str().unwrap(),
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("choose a new folder"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Restore: the copy moved to where a server runs from.
    let restored = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(restored.path().join("store")).unwrap();
    std::fs::copy(
        backup_dir.join("mltrail.db"),
        restored.path().join("store").join("mltrail.db"),
    )
    .unwrap();
    copy_dir(
        &backup_dir.join("artifacts"),
        &restored.path().join("store").join("artifacts"),
    );
    let restored = Server::start_in(restored);
    let (status, history) = restored.get(
        "metrics/get-history",
        &[
            ("run_id", &run),
            ("metric_key", "m"),
            ("max_results", "25000"),
        ],
    );
    assert_eq!(status, 200, "{history}");
    let steps: Vec<i64> = history["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert!(steps.len() as i64 > before_backup, "{} steps", steps.len());
    // The copy is one snapshot: a prefix of the steps, none missing in between.
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..steps.len() as i64).collect::<Vec<_>>());
    let bytes = client()
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/model/weights.bin",
            restored.url
        ))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&bytes[..], &[7u8; 100_000][..]);
    let tilde = client()
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/model/a~b.txt",
            restored.url
        ))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&tilde[..], b"tilde");
    let verified = restored.mltrail(&[
        "audit",
        "verify",
        "--backend-store-uri",
        &restored.store_uri(),
        "--artifacts-destination",
        restored.artifact_root().to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("2 artifacts re-hashed"));
}

#[test]
fn a_missing_or_postgresql_source_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    let missing = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["backup", out.to_str().unwrap(), "--backend-store-uri"])
        .arg(format!("sqlite:///{}/nowhere/m.db", dir.path().display()))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("names no existing SQLite database"), "{err}");
    assert!(!dir.path().join("nowhere").exists(), "a store was created");
    assert!(!out.exists() && !dir.path().join("backup.partial").exists());

    // Refused before any connection is tried: no server listens here.
    let postgres = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["backup", out.to_str().unwrap(), "--backend-store-uri"])
        .arg("postgresql://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(postgres.status.code(), Some(2));
    let err = String::from_utf8_lossy(&postgres.stderr);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!out.exists() && !dir.path().join("backup.partial").exists());
}
