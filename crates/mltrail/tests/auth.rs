//! `--auth on` against the real binary: who may do what, the actor every audit event names,
//! tokens (scopes, expiry, revocation), the first admin, and the refusal to listen on a
//! non-loopback address without authentication.

mod common;
use common::{client, Server};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const ADMIN_PASSWORD: &str = "admin-password-0001";

fn mltrail(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

fn call(server: &Server, who: &As, method: &str, path: &str, body: Value) -> (u16, Value) {
    call_at(&server.url, who, method, path, body)
}

/// A request to any server (the tracking server or a deployment) as `who`.
fn call_at(base: &str, who: &As, method: &str, path: &str, body: Value) -> (u16, Value) {
    let http = client();
    let url = format!("{base}{path}");
    let mut request = match method {
        "GET" => http.get(url),
        "PUT" => http.put(url).json(&body),
        "DELETE" => http.delete(url).json(&body),
        _ => http.post(url).json(&body),
    };
    request = match who {
        As::Nobody => request,
        As::Basic(u, p) => request.basic_auth(u, Some(p)),
        As::Bearer(t) => request.bearer_auth(t),
    };
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The tracking server's `/metrics`, read as the admin.
fn server_metrics(server: &Server) -> String {
    client()
        .get(format!("{}/metrics", server.url))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn start() -> Server {
    Server::start_with_env(
        tempfile::tempdir().unwrap(),
        &["--auth", "on"],
        &[("MLTRAIL_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
}

fn token(server: &Server, name: &str, scopes: &str, expires: Option<&str>) -> String {
    let uri = server.store_uri();
    let mut args = vec!["tokens", "create", "--name", name, "--scope", scopes];
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    args.extend(["--backend-store-uri", &uri]);
    let out = mltrail(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn requests_authenticate_and_the_trail_names_who_acted() {
    let mut server = start();
    let admin = As::Basic("admin", ADMIN_PASSWORD);
    let create = "/api/2.0/mlflow/experiments/create";

    // Anonymous and wrong credentials: 401 with a challenge, nothing written.
    for who in [
        As::Nobody,
        As::Basic("admin", "wrong-password"),
        As::Basic("nobody", ADMIN_PASSWORD),
        As::Bearer("mlt_0000"),
    ] {
        let (status, body) = call(&server, &who, "POST", create, json!({"name": "x"}));
        assert_eq!(
            (status, body["error_code"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
    }
    let response = client()
        .get(format!("{}/api/2.0/mlflow/experiments/search", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // Load balancers' checks need no credentials.
    assert_eq!(
        call(&server, &As::Nobody, "GET", "/health", json!({})).0,
        200
    );

    // The admin writes; a plain user reads but may not write.
    let (status, made) = call(&server, &admin, "POST", create, json!({"name": "by-admin"}));
    assert_eq!(status, 200, "{made}");
    let uri = server.store_uri();
    let out = mltrail(
        &[
            "users",
            "create",
            "alice",
            "--password-stdin",
            "--backend-store-uri",
            &uri,
        ],
        Some("alice-password-01\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = As::Basic("alice", "alice-password-01");
    let (status, _) = call(
        &server,
        &alice,
        "GET",
        &format!(
            "/api/2.0/mlflow/experiments/get?experiment_id={}",
            made["experiment_id"].as_str().unwrap()
        ),
        json!({}),
    );
    assert_eq!(status, 200);
    // Under the default READ she may not change the admin's experiment, but she may create
    // her own, which she then MANAGEs.
    let (status, body) = call(
        &server,
        &alice,
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        json!({"experiment_id": made["experiment_id"], "key": "k", "value": "v"}),
    );
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{body}"
    );
    let (status, own) = call(&server, &alice, "POST", create, json!({"name": "by-alice"}));
    assert_eq!(status, 200, "{own}");
    let (status, body) = call(
        &server,
        &alice,
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        json!({"experiment_id": own["experiment_id"], "key": "k", "value": "v"}),
    );
    assert_eq!(status, 200, "{body}");

    // Tokens do what their scopes say.
    let ci = token(&server, "ci-pipeline", "runs:write", Some("1d"));
    let ci = As::Bearer(&ci);
    let (status, run) = call(
        &server,
        &ci,
        "POST",
        "/api/2.0/mlflow/runs/create",
        json!({"experiment_id": made["experiment_id"], "start_time": 1}),
    );
    assert_eq!(status, 200, "{run}");
    let (status, _) = call(
        &server,
        &ci,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "m"}),
    );
    assert_eq!(status, 403);
    let scorer = token(&server, "scorer", "predict", None);
    let (status, _) = call(
        &server,
        &As::Bearer(&scorer),
        "GET",
        "/api/2.0/mlflow/experiments/search",
        json!({}),
    );
    assert_eq!(status, 403);
    // Nor the server's counters: those are for users and tokens that read.
    let (status, _) = call(&server, &As::Bearer(&scorer), "GET", "/metrics", json!({}));
    assert_eq!(status, 403);

    // Refusals are counted on /metrics.
    let metrics = server_metrics(&server);
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}_total ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    // Two wrong passwords and an unknown token; no credentials at all is not a failed login.
    assert_eq!(count("mltrail_auth_failed_logins"), 3);
    assert_eq!(count("mltrail_auth_denied"), 4);

    // The trail names each actor and how they authenticated.
    server.stop();
    let out = mltrail(
        &["audit", "log", "--json", "--backend-store-uri", &uri],
        None,
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actor_of = |action: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap().to_string())
            .collect()
    };
    let os_user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    assert_eq!(
        actor_of("user.create"),
        [format!("local:{os_user}"), format!("local:{os_user}")]
    );
    assert_eq!(actor_of("token.create").len(), 2);
    assert!(actor_of("experiment.create").contains(&"user:admin".to_string()));
    assert_eq!(actor_of("run.create"), ["token:ci-pipeline"]);
    // Refused requests left nothing behind.
    assert!(!events.iter().any(|e| e["entity_id"] == "m"));
    let out = mltrail(
        &[
            "audit",
            "log",
            "--actor",
            "ci-pipeline",
            "--json",
            "--backend-store-uri",
            &uri,
        ],
        None,
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let verify = mltrail(&["audit", "verify", "--backend-store-uri", &uri], None);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn revoked_and_expired_tokens_are_refused() {
    let server = start();
    let secret = token(&server, "short-lived", "read", None);
    let search = "/api/2.0/mlflow/experiments/search";
    assert_eq!(
        call(&server, &As::Bearer(&secret), "GET", search, json!({})).0,
        200
    );
    let uri = server.store_uri();
    let out = mltrail(
        &[
            "tokens",
            "revoke",
            "short-lived",
            "--backend-store-uri",
            &uri,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server's credential cache holds a checked token for up to 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, body) = call(&server, &As::Bearer(&secret), "GET", search, json!({}));
        if status == 401 {
            assert!(
                body["message"].as_str().unwrap().contains("revoked"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Expired: created with a lifetime of 2 s, accepted (and cached) at once, refused after,
    // though the credential cache would otherwise keep it 10 s.
    let brief = token(&server, "brief", "read", Some("2s"));
    assert_eq!(
        call(&server, &As::Bearer(&brief), "GET", search, json!({})).0,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    let (status, body) = call(&server, &As::Bearer(&brief), "GET", search, json!({}));
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[test]
fn auth_on_without_any_user_or_admin_password_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let uri = Server::store_uri_of(dir.path());
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    // MLTRAIL_AUTH=on is --auth on.
    let out = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["server", "--port", "0", "--backend-store-uri", &uri])
        .args([
            "--artifacts-destination",
            dir.path().join("a").to_str().unwrap(),
        ])
        .env("MLTRAIL_AUTH", "on")
        .env_remove("MLTRAIL_ADMIN_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MLTRAIL_ADMIN_PASSWORD"), "{stderr}");
}

#[test]
fn a_non_loopback_address_needs_auth_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let uri = Server::store_uri_of(dir.path());
    let artifacts = dir.path().join("a").to_str().unwrap().to_string();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let server = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mltrail"))
            .args([
                "server",
                "--host",
                "0.0.0.0",
                "--port",
                "0",
                "--backend-store-uri",
                &uri,
            ])
            .args(["--artifacts-destination", artifacts.as_str()])
            .args(extra)
            .env("MLTRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = server(&[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--auth on") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");

    // Explicitly insecure: it starts, and says so.
    let mut child = server(&["--insecure-no-auth"]);
    let mut banner = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        banner.starts_with("mltrail server listening on http://0.0.0.0:"),
        "{banner}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authentication is OFF"), "{stderr}");
}

#[test]
fn a_deployment_checks_its_callers_with_the_tracking_server() {
    use common::scorer::{fixture, Scorer};
    let server = start();
    let uri = server.store_uri();
    // The deployment's own token: reads the registry, reports deployments, archives its log.
    let own = token(&server, "credit-serving", "read,deployments", None);
    let registered = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args([
            "models",
            "register",
            "credit",
            fixture("gbc.onnx").to_str().unwrap(),
        ])
        .args(["--tracking-uri", &server.url])
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start_with_env(
        &server,
        "credit/1",
        logs.path(),
        &["--auth", "on"],
        &[("MLTRAIL_TRACKING_TOKEN", &own)],
    );
    let row = json!({"instances": [common::scorer::rows("gbc")[0]]});
    let predict = |who: &As| call_at(&scorer.url, who, "POST", "/api/v1/predict", row.clone());
    let scoring = token(&server, "scoring-client", "predict", None);
    let reader = token(&server, "privacy-officer", "predictions:read", None);
    assert_eq!(predict(&As::Nobody).0, 401);
    assert_eq!(predict(&As::Bearer("mlt_not-a-token")).0, 401);
    let (status, body) = predict(&As::Bearer(&scoring));
    assert_eq!(status, 200, "{body}");
    let id = body["predictions"][0]["prediction_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a prediction id in {body}"))
        .to_string();
    assert_eq!(predict(&As::Bearer(&reader)).0, 403);
    assert_eq!(predict(&As::Basic("admin", ADMIN_PASSWORD)).0, 200);
    // Reading a stored prediction (its inputs may be personal data) needs predictions:read.
    let stored = format!("/api/v1/predictions/{id}");
    let read = |who: &As| call_at(&scorer.url, who, "GET", &stored, json!({})).0;
    assert_eq!(read(&As::Bearer(&scoring)), 403);
    assert_eq!(read(&As::Bearer(&reader)), 200);
    assert_eq!(read(&As::Nobody), 401);
    // So does its explanation (reason codes quote the inputs); this version has no training
    // data to explain against, which only a caller past the check learns.
    let why = format!("/api/v1/predictions/{id}/explanation");
    let explain = |who: &As| call_at(&scorer.url, who, "GET", &why, json!({})).0;
    assert_eq!(explain(&As::Nobody), 401);
    assert_eq!(explain(&As::Bearer(&scoring)), 403);
    assert_eq!(explain(&As::Bearer(&reader)), 409);
    // Health checks stay open.
    assert_eq!(scorer.get("/health").0, 200);
    // Refusals are counted beside the deployment's own metrics.
    let metrics = client()
        .get(format!("{}/metrics", scorer.url))
        .bearer_auth(&reader)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("mltrail_auth_failed_logins_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mltrail_auth_denied_total 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains("mltrail_predictions_total") && metrics.ends_with("# EOF\n"));
    // Revoked: refused within the cache's 10 s.
    let out = mltrail(
        &[
            "tokens",
            "revoke",
            "scoring-client",
            "--backend-store-uri",
            &uri,
        ],
        None,
    );
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while predict(&As::Bearer(&scoring)).0 != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "still scoring after 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn a_deployment_with_auth_refuses_a_tracking_server_without_it() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args([
            "serve", "--model", "credit/1", "--auth", "on", "--port", "0",
        ])
        .args(["--tracking-uri", &server.url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not authenticate"), "{stderr}");
}

/// Every kind of route × every kind of caller: 401 for no, wrong, expired or revoked
/// credentials, 403 for a token without the scope, success with it; a refused request leaves
/// the trail (and so the store) as it was.
#[test]
fn each_route_kind_answers_each_kind_of_caller_as_specified() {
    let server = start();
    let admin = As::Basic("admin", ADMIN_PASSWORD);
    let (_, exp) = call(
        &server,
        &admin,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        json!({"name": "matrix"}),
    );
    let exp = exp["experiment_id"].as_str().unwrap().to_string();
    let (_, run) = call(
        &server,
        &admin,
        "POST",
        "/api/2.0/mlflow/runs/create",
        json!({"experiment_id": exp}),
    );
    let run = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    call(
        &server,
        &admin,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": "matrix-model"}),
    );

    // (method, path, body, the scope a token needs); each body succeeds when allowed.
    let routes: Vec<(&str, String, Value, &str)> = vec![
        (
            "GET",
            format!("/api/2.0/mlflow/experiments/get?experiment_id={exp}"),
            json!({}),
            "read",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search".into(),
            json!({"experiment_ids": [exp]}),
            "read",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric".into(),
            json!({"run_id": run, "key": "m", "value": 1.5, "timestamp": 1, "step": 0}),
            "runs:write",
        ),
        (
            "POST",
            "/api/2.0/mlflow/experiments/create".into(),
            json!({"name": "matrix-{n}"}),
            "runs:write",
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/set-tag".into(),
            json!({"name": "matrix-model", "key": "k", "value": "{n}"}),
            "models:register",
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/alias".into(),
            json!({"name": "matrix-model", "alias": "a{n}", "version": "1"}),
            "aliases:move",
        ),
        ("GET", "/api/v1/monitors".into(), json!({}), "read"),
        // The web UI's pages read like the API.
        ("GET", "/".into(), json!({}), "read"),
        ("GET", format!("/ui/experiments/{exp}"), json!({}), "read"),
        ("GET", format!("/ui/runs/{run}"), json!({}), "read"),
        ("GET", "/ui/models/matrix-model".into(), json!({}), "read"),
        // Artifact names a client chose decide nothing: `get` or `mlflow/users/` in a path
        // is still a write.
        (
            "PUT",
            format!("/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/get"),
            json!({"n": "{n}"}),
            "runs:write",
        ),
        (
            "PUT",
            format!("/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/mlflow/users/x"),
            json!({"n": "{n}"}),
            "runs:write",
        ),
        // Archived prediction logs hold callers' inputs.
        (
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts/predictions/d/2026-12-03/x.parquet".into(),
            json!({}),
            "predictions:read",
        ),
        // Permissions and roles: admins, and users who MANAGE the resource.
        (
            "POST",
            "/api/3.0/mlflow/users/permissions/grant".into(),
            json!({"username": "reader", "resource_type": "experiment", "resource_id": exp, "permission": "READ"}),
            "admin",
        ),
        (
            "POST",
            "/api/2.0/mlflow/registered-models/permissions/create".into(),
            json!({"name": "matrix-model", "username": "reader", "permission": "READ"}),
            "admin",
        ),
        (
            "POST",
            "/api/3.0/mlflow/roles/create".into(),
            json!({"workspace": "default", "name": "role-{n}"}),
            "admin",
        ),
        // Personal data: keys for serving processes, a subject's export, erasure, the list.
        (
            "POST",
            "/api/v1/privacy/subject-keys".into(),
            json!({"subjects": ["subject-{n}"]}),
            "deployments",
        ),
        (
            "POST",
            "/api/v1/privacy/export".into(),
            json!({"subject": "subject-{n}"}),
            "predictions:read",
        ),
        (
            "POST",
            "/api/v1/privacy/erase".into(),
            json!({"subject": "subject-{n}", "reason": "matrix"}),
            "admin",
        ),
        (
            "GET",
            "/api/v1/privacy/erasures".into(),
            json!({}),
            "audit:read",
        ),
    ];
    let (status, answer) = call(
        &server,
        &admin,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/predictions/d/2026-12-03/x.parquet",
        json!({"stands": "for a Parquet file"}),
    );
    assert_eq!(status, 200, "{answer}");
    let uri = server.store_uri();
    let out = mltrail(
        &[
            "users",
            "create",
            "reader",
            "--password-stdin",
            "--backend-store-uri",
            &uri,
        ],
        Some("reader-password-01\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_only = token(&server, "read-only", "read", None);
    let revoked = token(
        &server,
        "revoked",
        "read,runs:write,models:register,aliases:move",
        None,
    );
    assert!(mltrail(
        &["tokens", "revoke", "revoked", "--backend-store-uri", &uri],
        None
    )
    .status
    .success());
    let expired = token(
        &server,
        "expired",
        "read,runs:write,models:register,aliases:move",
        Some("1s"),
    );
    let unscoped = token(&server, "unscoped", "predict", None);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let events = |server: &Server| -> usize {
        let out = mltrail(
            &[
                "audit",
                "log",
                "--json",
                "--limit",
                "100000",
                "--backend-store-uri",
                &server.store_uri(),
            ],
            None,
        );
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    for (i, (method, path, body, scope)) in routes.iter().enumerate() {
        let body = serde_json::from_str::<Value>(&body.to_string().replace("{n}", &i.to_string()))
            .unwrap();
        let before = events(&server);
        // A `read` token may read, nothing more (stored predictions not even that). A plain
        // user holds the default READ on what others made: the same, except that anyone may
        // create an experiment (and then MANAGEs it): that is checked after the refusals.
        let reader = if *scope == "read" { 200 } else { 403 };
        let creates = path.ends_with("/experiments/create");
        let plain_user = As::Basic("reader", "reader-password-01");
        // A browser asking for a page without credentials is sent to sign in (303); the API
        // answers 401.
        let page = *method == "GET" && (path == "/" || path.starts_with("/ui/"));
        if page {
            let no_redirects = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let answer = no_redirects
                .get(format!("{}{path}", server.url))
                .send()
                .unwrap();
            assert_eq!(answer.status().as_u16(), 303, "{path}");
            let location = answer.headers()["location"].to_str().unwrap();
            assert!(location.starts_with("/ui/login?next="), "{location}");
        }
        for (who, expected) in (!page)
            .then_some((As::Nobody, 401))
            .into_iter()
            .chain([
                (As::Basic("admin", "wrong-password-0"), 401),
                (As::Bearer(&expired), 401),
                (As::Bearer(&revoked), 401),
                (As::Bearer(&unscoped), 403),
                (As::Bearer(&read_only), reader),
            ])
            .chain((!creates).then_some((plain_user, reader)))
        {
            let (status, answer) = call(&server, &who, method, path, body.clone());
            assert_eq!(status, expected, "{method} {path}: {answer}");
        }
        assert_eq!(
            events(&server),
            before,
            "a refused {method} {path} changed the store"
        );
        if creates {
            let body =
                serde_json::from_str::<Value>(&body.to_string().replace("matrix-", "by-reader-"))
                    .unwrap();
            let (status, answer) = call(&server, &plain_user, method, path, body);
            assert_eq!(status, 200, "{method} {path} by a plain user: {answer}");
        }
        // The right scope (alias moves need the version to exist: registered once, below).
        if *scope == "aliases:move" {
            let register = token(&server, &format!("register-{i}"), "models:register", None);
            let (status, answer) = call(
                &server,
                &As::Bearer(&register),
                "POST",
                "/api/2.0/mlflow/model-versions/create",
                json!({"name": "matrix-model", "source": "mlflow-artifacts:/0/x/artifacts/model"}),
            );
            assert_eq!(status, 200, "{answer}");
        }
        let right = token(&server, &format!("right-{i}"), scope, None);
        let (status, answer) = call(&server, &As::Bearer(&right), method, path, body.clone());
        assert_eq!(status, 200, "{method} {path} with {scope}: {answer}");
    }
}

/// The hot logging routes (`log-metric`, `log-batch`) leave a user's permission check to their
/// handler, which checks the run and the logged models it decoded: a user logs to their own
/// runs, and is refused another's run or a metric linked to another's logged model, by the
/// typed decoder's path and by the general one alike, with nothing stored and each refusal
/// counted.
#[test]
fn a_user_logs_to_runs_and_models_they_may_update_and_no_others() {
    let server = start();
    let admin = As::Basic("admin", ADMIN_PASSWORD);
    let post = |who: &As, path: &str, body: Value| {
        call(
            &server,
            who,
            "POST",
            &format!("/api/2.0/mlflow/{path}"),
            body,
        )
    };
    let (_, theirs) = post(&admin, "experiments/create", json!({"name": "admins"}));
    let theirs = theirs["experiment_id"].as_str().unwrap().to_string();
    let (_, run) = post(&admin, "runs/create", json!({"experiment_id": theirs}));
    let their_run = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let (status, model) = post(
        &admin,
        "logged-models",
        json!({"experiment_id": theirs, "name": "theirs"}),
    );
    assert_eq!(status, 200, "{model}");
    let their_model = model["model"]["info"]["model_id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = mltrail(
        &[
            "users",
            "create",
            "writer",
            "--password-stdin",
            "--backend-store-uri",
            &server.store_uri(),
        ],
        Some("writer-password-01\n"),
    );
    assert!(out.status.success());
    let writer = As::Basic("writer", "writer-password-01");
    let (_, mine) = post(&writer, "experiments/create", json!({"name": "writers"}));
    let mine = mine["experiment_id"].as_str().unwrap().to_string();
    let (_, run) = post(&writer, "runs/create", json!({"experiment_id": mine}));
    let my_run = run["run"]["info"]["run_id"].as_str().unwrap().to_string();

    let metric = |run: &str| json!({"run_id": run, "key": "m", "value": 1.5, "timestamp": 1});
    let batch = |run: &str| json!({"run_id": run, "metrics": [{"key": "m", "value": 2.5, "timestamp": 2, "step": 1}]});
    // With params the general parser reads the body.
    let general = |run: &str| {
        json!({"run_id": run, "metrics": [{"key": "m", "value": 3.5, "timestamp": 3, "step": 2}],
               "params": [{"key": "p", "value": "1"}]})
    };
    for (path, body) in [
        ("runs/log-metric", metric(&my_run)),
        ("runs/log-batch", batch(&my_run)),
        ("runs/log-batch", general(&my_run)),
    ] {
        let (status, answer) = post(&writer, path, body);
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let mut linked = metric(&my_run);
    linked["model_id"] = json!(their_model);
    let mut linked_in_batch = batch(&my_run);
    linked_in_batch["metrics"][0]["model_id"] = json!(their_model);
    let refused = [
        ("runs/log-metric", metric(&their_run)),
        ("runs/log-batch", batch(&their_run)),
        ("runs/log-batch", general(&their_run)),
        ("runs/log-metric", linked),
        ("runs/log-batch", linked_in_batch),
        // A run that does not exist is refused like one the user may not see.
        ("runs/log-metric", metric(&"0".repeat(32))),
    ];
    for (path, body) in refused.iter().cloned() {
        let (status, answer) = post(&writer, path, body);
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["error_code"], "PERMISSION_DENIED");
    }
    let (_, run) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/2.0/mlflow/runs/get?run_id={their_run}"),
        json!({}),
    );
    assert!(run["run"]["data"]["metrics"].is_null(), "{run}");
    let (_, run) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/2.0/mlflow/runs/get?run_id={my_run}"),
        json!({}),
    );
    assert_eq!(run["run"]["data"]["metrics"][0]["value"], 3.5, "{run}");
    let metrics = server_metrics(&server);
    assert!(
        metrics.contains(&format!("mltrail_auth_denied_total {}\n", refused.len())),
        "{metrics}"
    );
}
