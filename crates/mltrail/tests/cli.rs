//! The command line: settings from a config file, JSON logs, clear one-line errors.

mod common;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[test]
fn config_file_sets_limits_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\nlog_format = \"json\"\nmax_artifact_bytes = 1000\nbackend_store_uri = \"sqlite:///{}/m.db\"\nartifacts_destination = \"{}/artifacts\"\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["server", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner.trim().rsplit(' ').next().unwrap().to_string();
    let http = common::client();
    let small = http
        .put(format!(
            "{url}/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a.bin"
        ))
        .body(vec![0u8; 900])
        .send()
        .unwrap();
    assert_eq!(small.status().as_u16(), 200);
    let big = http
        .put(format!(
            "{url}/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/b.bin"
        ))
        .body(vec![0u8; 2000])
        .send()
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    let body: serde_json::Value = big.json().unwrap();
    assert_eq!(body["error_code"], "RESOURCE_LIMIT_EXCEEDED");
    assert!(dir.path().join("artifacts/1/r/artifacts/a.bin").exists());
    assert!(!dir.path().join("artifacts/1/r/artifacts/b.bin").exists());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let first: serde_json::Value =
        serde_json::from_str(logs.lines().next().expect("a log line")).expect("JSON log lines");
    assert!(first["fields"]["message"].is_string(), "{first}");
    assert!(logs.contains("shutdown signal received"), "{logs}");
}

#[test]
fn bad_settings_fail_with_one_line_and_nonzero_exit() {
    for args in [
        vec![
            "server",
            "--backend-store-uri",
            "mysql://u@h/db",
            "--port",
            "0",
        ],
        vec![
            "server",
            "--artifacts-destination",
            "ftp://somewhere",
            "--port",
            "0",
            "--backend-store-uri",
            "sqlite::memory:",
        ],
        vec![
            "audit",
            "verify",
            "--backend-store-uri",
            "postgresql://nobody@127.0.0.1:1/none",
        ],
        vec!["server", "--config", "/nonexistent/mltrail.toml"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{args:?}: {stderr}");
    }
}
