//! A model served by the real `mltrail serve` binary for tests: registration from the ONNX
//! fixtures, a scorer process on a free loopback port, and the fixtures' input rows.

use super::{client, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx")
        .join(name)
}

pub fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap())
        .unwrap()
}

pub struct Scorer {
    child: Option<Child>,
    pub url: String,
}

impl Scorer {
    pub fn start(tracking: &Server, model: &str, log_dir: &Path, extra: &[&str]) -> Scorer {
        Self::start_with_env(tracking, model, log_dir, extra, &[])
    }

    /// Starts with extra flags and environment variables (credentials, for instance).
    pub fn start_with_env(
        tracking: &Server,
        model: &str,
        log_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Scorer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args([
                "serve",
                "--model",
                model,
                "--tracking-uri",
                &tracking.url,
                "--port",
                "0",
            ])
            .args(["--log-dir", log_dir.to_str().unwrap()])
            .args(extra)
            .env("MLTRAIL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mltrail serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("banner");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "mltrail serve did not start: {line:?}"
        );
        Scorer {
            child: Some(child),
            url,
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = client()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = client()
            .get(format!("{}{path}", self.url))
            .send()
            .expect("request");
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }

    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Scorer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn register(server: &Server, name: &str, file: &str, extra: &[&str]) -> String {
    let out = server.mltrail(
        &[
            &[
                "models",
                "register",
                name,
                fixture(file).to_str().unwrap(),
                "--tracking-uri",
                &server.url,
            ][..],
            extra,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The gbc fixture's rows with the model's own labels as `label`, added as dataset `train`
/// (version 1): the training data monitors compare with.
pub fn add_gbc_training_data(server: &Server, dir: &Path) {
    let data = rows("gbc");
    let labels = expected("gbc")["outputs"]["output_label"]["data"].clone();
    let training = dir.join("train.csv");
    let mut csv = String::from("f0,f1,f2,f3,f4,f5,label\n");
    for (row, label) in data.iter().zip(labels.as_array().unwrap()) {
        let cells: Vec<String> = row.iter().map(Value::to_string).collect();
        csv.push_str(&format!("{},{label}\n", cells.join(",")));
    }
    std::fs::write(&training, csv).unwrap();
    add_dataset(server, &training, "train", &["--target", "label"]);
}

/// `mltrail data add FILE --name NAME` (version 1 of a new name), with `extra` flags.
pub fn add_dataset(server: &Server, file: &Path, name: &str, extra: &[&str]) {
    let args = [
        &[
            "data",
            "add",
            file.to_str().unwrap(),
            "--name",
            name,
            "--tracking-uri",
            &server.url,
        ][..],
        extra,
    ]
    .concat();
    let added = server.mltrail(&args);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}

pub fn rows(name: &str) -> Vec<Vec<Value>> {
    let spec = expected(name);
    let input = &spec["inputs"]["input"];
    let width = input["shape"][1].as_u64().unwrap() as usize;
    input["data"]
        .as_array()
        .unwrap()
        .chunks(width)
        .map(|c| c.to_vec())
        .collect()
}

/// A training run (a param, a metric, the git commit MLflow records) and the gbc fixture
/// registered as `credit` version 1 from it, trained on `train@1` (added here). Returns the
/// run's id.
pub fn credit_from_a_run(server: &Server, dir: &Path) -> String {
    add_gbc_training_data(server, dir);
    let (_, run_id) = super::experiment_and_run(server, "credit-training");
    server.ok(
        "runs/log-batch",
        serde_json::json!({"run_id": run_id,
               "params": [{"key": "max_depth", "value": "3"}],
               "metrics": [{"key": "auc", "value": 0.91, "timestamp": 1, "step": 0}],
               "tags": [{"key": "mlflow.source.git.commit", "value": "4f1c2e9"}]}),
    );
    register(
        server,
        "credit",
        "gbc.onnx",
        &[
            "--signature",
            "f0,f1,f2,f3,f4,f5",
            "--training-data",
            "train@1",
            "--run-id",
            &run_id,
        ],
    );
    run_id
}
