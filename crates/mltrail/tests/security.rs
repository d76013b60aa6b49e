//! Artifact path traversal (MLflow's CVE history) and model-version sources: every pattern is
//! refused, and nothing outside the artifact store is read or written.

mod common;
use common::Server;
use serde_json::json;

const TRAVERSALS: &[&str] = &[
    "../outside.txt",
    "../../outside.txt",
    "1/../../outside.txt",
    "%2e%2e/outside.txt",
    "%2E%2E%2Foutside.txt",
    "..%2foutside.txt",
    "%252e%252e/outside.txt",
    "%252e%252e%252foutside.txt",
    "..%5coutside.txt",
    "..%255coutside.txt",
    "/outside.txt",
    "%2Foutside.txt",
    "%2fetc%2fpasswd",
    "a/%00/outside.txt",
    "./../outside.txt",
    "C:/outside.txt",
    "file:/outside.txt",
];

#[test]
fn artifact_traversal_is_refused_everywhere() {
    let server = Server::start();
    let outside = server.dir.path().join("store").join("outside.txt");
    for pattern in TRAVERSALS {
        let target = format!("/api/2.0/mlflow-artifacts/artifacts/{pattern}");
        let (status, body) = server.raw("PUT", &target, b"pwned");
        assert!(
            (400..500).contains(&status),
            "PUT {pattern} answered {status}: {body}"
        );
        let (status, body) = server.raw("GET", &target, b"");
        assert!(
            (400..500).contains(&status),
            "GET {pattern} answered {status}: {body}"
        );
        assert!(!body.contains("root:"), "GET {pattern} leaked a file");
        let (status, _) = server.raw("DELETE", &target, b"");
        assert!(
            (400..500).contains(&status),
            "DELETE {pattern} answered {status}"
        );
        let list = format!("/api/2.0/mlflow-artifacts/artifacts?path={pattern}");
        let (status, body) = server.raw("GET", &list, b"");
        assert!(
            (400..500).contains(&status),
            "LIST {pattern} answered {status}: {body}"
        );
    }
    // Absolute and parent paths that would reach real files.
    for target in [
        "/api/2.0/mlflow-artifacts/artifacts//etc/passwd",
        "/api/2.0/mlflow-artifacts/artifacts/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/2.0/mlflow-artifacts/artifacts?path=/etc",
    ] {
        let (status, body) = server.raw("GET", target, b"");
        assert!((400..500).contains(&status), "{target} answered {status}");
        assert!(!body.contains("root:"));
    }
    assert!(
        !outside.exists(),
        "a traversal wrote outside the artifact store"
    );
    assert!(!server.dir.path().join("outside.txt").exists());
    // A plain path still works, and lands inside the store.
    let (status, _) = server.raw(
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/ok.txt",
        b"fine",
    );
    assert_eq!(status, 200);
    assert_eq!(
        std::fs::read(server.artifact_root().join("1/run/artifacts/ok.txt")).unwrap(),
        b"fine"
    );
}

#[test]
fn model_version_sources_outside_the_store_are_refused() {
    let server = Server::start();
    server.ok("registered-models/create", json!({"name": "m"}));
    let store_dir = server.artifact_root().display().to_string();
    for source in [
        "file:///etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        "../../etc".to_string(),
        store_dir.clone(),
        format!("file://{store_dir}"),
        "s3://another-bucket/model".into(),
        "mlflow-artifacts:/../../../etc/passwd".into(),
        "mlflow-artifacts:/%2e%2e/%2e%2e/etc".into(),
        "runs:/abc/../../../../etc".into(),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let (status, body) = server.post(
            "model-versions/create",
            json!({"name": "m", "source": source}),
        );
        assert_eq!(status, 400, "source {source} answered {status}: {body}");
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    }
    let (status, _) = server.post(
        "model-versions/create",
        json!({"name": "m", "source": "mlflow-artifacts:/1/abc/artifacts/model"}),
    );
    assert_eq!(status, 200);
    let (status, body) = server.post(
        "experiments/create",
        json!({"name": "e", "artifact_location": "/etc"}),
    );
    assert_eq!(status, 400, "{body}");
}
