//! Starts the real `mltrail` binary on a free loopback port with a fresh data folder.
#![allow(dead_code)]

pub mod scorer;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Server {
        Self::start_with(dir, &[])
    }

    /// Starts with extra `mltrail server` flags.
    pub fn start_with(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::start_with_env(dir, extra, &[])
    }

    /// Starts with extra flags and environment variables.
    pub fn start_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args(["server", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .envs(env.iter().copied())
            .args(["--backend-store-uri", &Self::store_uri_of(dir.path())])
            .args([
                "--artifacts-destination",
                dir.path().join("store").join("artifacts").to_str().unwrap(),
            ])
            .env("MLTRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mltrail");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read banner");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("url in banner")
            .to_string();
        // https with --tls-cert.
        let addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .filter(|addr| addr.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_string();
        Server {
            child: Some(child),
            url,
            addr,
            dir,
        }
    }

    pub fn store_uri_of(dir: &Path) -> String {
        format!(
            "sqlite:///{}",
            dir.join("store").join("mltrail.db").display()
        )
    }

    pub fn store_uri(&self) -> String {
        Self::store_uri_of(self.dir.path())
    }

    pub fn artifact_root(&self) -> PathBuf {
        self.dir.path().join("store").join("artifacts")
    }

    /// SIGTERM, then wait: the server drains its writes before exiting.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL: no drain, no shutdown hooks, as in a crash.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server process on the same data folder (after a stop or a crash).
    pub fn restart(self) -> Server {
        let mut old = self;
        old.stop();
        let dir = std::mem::replace(&mut old.dir, tempfile::tempdir().expect("temp dir"));
        Server::start_in(dir)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = client()
            .post(format!("{}/api/2.0/mlflow/{path}", self.url))
            .json(&body)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let resp = client()
            .get(format!("{}/api/2.0/mlflow/{path}", self.url))
            .query(query)
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    pub fn ok(&self, path: &str, body: Value) -> Value {
        let (status, json) = self.post(path, body.clone());
        assert_eq!(status, 200, "{path} {body} -> {json}");
        json
    }

    /// Sends bytes exactly as given, so no client library can normalise `..` away.
    pub fn raw(&self, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.addr, body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    /// Runs `mltrail audit verify` on this server's store and fails the test if it does not pass.
    pub fn assert_audit_verifies(&self) {
        let out = self.mltrail(&["audit", "verify", "--backend-store-uri", &self.store_uri()]);
        assert!(
            out.status.success(),
            "audit verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn mltrail(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args(args)
            .output()
            .expect("run mltrail")
    }

    /// The same, with environment variables set.
    pub fn mltrail_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run mltrail")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Creates an experiment and a run in it; returns (experiment_id, run_id).
pub fn experiment_and_run(server: &Server, name: &str) -> (String, String) {
    let exp = server.ok("experiments/create", serde_json::json!({"name": name}));
    let exp_id = exp["experiment_id"].as_str().unwrap().to_string();
    let run = server.ok(
        "runs/create",
        serde_json::json!({"experiment_id": exp_id, "start_time": 1}),
    );
    (
        exp_id,
        run["run"]["info"]["run_id"].as_str().unwrap().to_string(),
    )
}

/// Every `.parquet` file under `dir` (an archive folder), at any depth.
pub fn parquet_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out
}

/// Headless Chromium, for the tests that check an HTML report renders.
pub fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("headless Chromium is needed to check the HTML report: run scripts/setup.sh (installs Debian's chromium)");
}

/// Renders `html` in headless Chromium and checks the picture is one (a PNG of some size, not
/// a blank page).
pub fn assert_renders(html: &Path, window: &str) {
    let shot = html.with_extension("png");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={window}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture, not a blank page: {} bytes",
        png.len()
    );
}
