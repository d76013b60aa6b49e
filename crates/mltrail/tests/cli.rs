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

fn mltrail(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn config_show_prints_every_key_with_its_value_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mltrail.toml");
    std::fs::write(
        &config,
        "[serve]\nport = 6001\n\n[server]\nlog_format = \"json\"\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let env = [
        ("MLTRAIL_SERVER_PORT", "6000"),
        (
            "MLTRAIL_BACKEND_STORE_URI",
            "postgresql://u:secret@db:5432/m",
        ),
        ("MLTRAIL_SOMETHING_ELSE", "1"),
    ];
    let args = [
        "config",
        "show",
        "--config",
        path,
        "--json",
        "serve",
        "--deployment",
        "from-flag",
    ];
    let out = mltrail(&args, &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("secret"), "{stdout}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let tables = &shown["tables"];
    assert_eq!(
        tables["serve"]["port"],
        serde_json::json!({"value": 6001, "source": "file", "from": path})
    );
    assert_eq!(tables["log"]["format"]["value"], "json");
    assert_eq!(tables["log"]["format"]["as"], "[server] log_format");
    assert_eq!(
        tables["server"]["port"],
        serde_json::json!({"value": 6000, "source": "env", "from": "MLTRAIL_SERVER_PORT"})
    );
    assert_eq!(
        tables["serve"]["deployment"],
        serde_json::json!({"value": "from-flag", "source": "flag", "from": "--deployment"})
    );
    assert_eq!(
        tables["store"]["backend_store_uri"]["value"],
        "postgresql://u:***@db:5432/m"
    );
    assert_eq!(
        tables["store"]["artifacts_destination"]["source"],
        "default"
    );
    assert_eq!(shown["file"]["path"], path);
    assert!(shown["ignored_env"]
        .as_array()
        .unwrap()
        .contains(&"MLTRAIL_SOMETHING_ELSE".into()));

    // The text form is a mltrail.toml with each source as a comment.
    let out = mltrail(&args[..4], &env);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("secret"), "{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
            .to_string()
    };
    assert!(line("port = 6001").ends_with(&format!("# {path}")));
    assert!(line("port = 6000").ends_with("# environment variable MLTRAIL_SERVER_PORT"));
    assert!(line("host = \"127.0.0.1\"").ends_with("# default"));
    assert!(text.contains("MLTRAIL_SOMETHING_ELSE"), "{text}");
}

#[test]
fn unknown_config_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mltrail.toml");
    std::fs::write(&config, "[serve]\nprot = 5001\n").unwrap();
    let path = config.to_str().unwrap();
    for args in [
        vec!["serve", "--config", path, "--model", "m@a"],
        vec!["server", "--config", path, "--port", "0"],
        vec!["config", "show", "--config", path],
    ] {
        let out = mltrail(&args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            error_lines[0].contains(&format!("unknown key `[serve] prot` in {path}")),
            "{stderr}"
        );
        assert!(error_lines[0].contains("did you mean `port`?"), "{stderr}");
    }
    // Checks beyond a value's type name the key and where the value came from too.
    let out = mltrail(&["server", "--backend-store-uri", "", "--port", "0"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`[store] backend_store_uri` (from flag --backend-store-uri): is empty"),
        "{stderr}"
    );
    // A model is needed from somewhere; the error says where it can come from.
    let out = mltrail(&["serve", "--port", "0"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`[serve] model`"), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
}

/// Stops a child process when the test ends, even when it fails.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_takes_its_settings_from_the_config_file() {
    let server = common::Server::start();
    assert_eq!(
        common::scorer::register(&server, "credit", "gbc.onnx", &[]),
        "1"
    );
    server.ok(
        "registered-models/alias",
        serde_json::json!({"name": "credit", "alias": "production", "version": "1"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\nmodel = \"credit@production\"\ndeployment = \"from-config\"\n\
             tracking_uri = \"{}\"\nport = 0\nlog_dir = \"{}\"\n\n[log]\nfilter = \"warn\"\n",
            server.url,
            dir.path().join("predictions").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("MLTRAIL_SERVE_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Stop(child);
    let mut banner = String::new();
    BufReader::new(stdout).read_line(&mut banner).unwrap();
    let url = banner.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{banner:?}");
    let info: serde_json::Value = common::client()
        .get(format!("{url}/api/v1/deployment"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["deployment"], "from-config");
    assert_eq!(info["model"], "credit");
    assert_eq!(info["version"], "1");
    let predicted = common::client()
        .post(format!("{url}/api/v1/predict"))
        .json(&serde_json::json!({"instances": [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]}))
        .send()
        .unwrap();
    assert_eq!(predicted.status().as_u16(), 200);
    drop(child);
    // The prediction went to the log folder the file named.
    assert!(dir
        .path()
        .join("predictions")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

/// `[gates] policies` (here from the environment, as JSON) sets a model's gate at start, as
/// actor `local:config`, and only when it differs; a requirement that does not parse stops the
/// start with the entry named.
#[test]
fn configured_gates_are_set_at_start() {
    let mut server = common::Server::start();
    server.ok(
        "registered-models/create",
        serde_json::json!({"name": "credit"}),
    );
    server.stop();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let gates = r#"[{"model": "credit", "alias": "production", "require": ["evaluation.roc_auc>=0.8"], "approvals": 2}, {"model": "later", "alias": "production"}]"#;
    let server = common::Server::start_with_env(dir, &[], &[("MLTRAIL_GATES_POLICIES", gates)]);
    let body: serde_json::Value = common::client()
        .get(format!(
            "{}/api/v1/models/credit/gates/production",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        body["gate"],
        serde_json::json!({"alias": "production", "requirements": ["evaluation.roc_auc >= 0.8"], "approvals": 2})
    );
    let log = server.mltrail(&[
        "audit",
        "log",
        "--entity",
        "registered_model:credit",
        "--json",
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    let text = String::from_utf8_lossy(&log.stdout);
    let set: Vec<&str> = text.lines().filter(|l| l.contains("set_gate")).collect();
    assert_eq!(set.len(), 1, "{text}");
    assert!(set[0].contains("\"actor\":\"local:config\""), "{}", set[0]);
    // Started again with the same list: nothing to record.
    let mut server = server;
    server.stop();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = common::Server::start_with_env(dir, &[], &[("MLTRAIL_GATES_POLICIES", gates)]);
    let log = server.mltrail(&[
        "audit",
        "log",
        "--entity",
        "registered_model:credit",
        "--json",
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    let text = String::from_utf8_lossy(&log.stdout);
    assert_eq!(text.lines().filter(|l| l.contains("set_gate")).count(), 1);
    server.assert_audit_verifies();

    let bad = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args([
            "server",
            "--port",
            "0",
            "--backend-store-uri",
            &server.store_uri(),
            // Not the default ./mltrail-data/artifacts: other tests' `audit verify` reads it.
            "--artifacts-destination",
            server.artifact_root().to_str().unwrap(),
        ])
        .env(
            "MLTRAIL_GATES_POLICIES",
            r#"[{"model": "credit", "alias": "production", "require": ["roc_auc > 0.8"]}]"#,
        )
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("credit@production") && err.contains("evaluation.METRIC"),
        "{err}"
    );
}
