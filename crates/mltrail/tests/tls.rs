//! HTTPS with certificates made in the test (openssl: a private CA and a server certificate): the server answers over TLS,
//! a client trusting the certificate gets through, the CLI trusts it through
//! MLTRAIL_TRACKING_CA (or MLflow's MLFLOW_TRACKING_SERVER_CERT_PATH) and refuses it without.

mod common;
use common::Server;
use std::path::Path;
use std::process::Command;

/// A private CA and a server certificate it signed for 127.0.0.1: (CA, server cert, server key).
fn certificates(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca-key.pem"),
        path("ca.pem"),
        path("key.pem"),
        path("server.csr"),
        path("cert.pem"),
        path("server.ext"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=mltrail test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca, cert, key)
}

#[test]
fn the_server_speaks_https_and_the_cli_trusts_a_given_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let url = server.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let health = trusting.get(format!("{url}/health")).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let made = trusting
        .post(format!("{url}/api/2.0/mlflow/experiments/create"))
        .json(&serde_json::json!({"name": "over-tls"}))
        .send()
        .unwrap();
    assert_eq!(made.status().as_u16(), 200);
    // Plain HTTP to the TLS port is not served.
    let plain = url.replacen("https://", "http://", 1);
    assert!(reqwest::blocking::get(format!("{plain}/health")).is_err());

    let cli = |ca: Option<(&str, &str)>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mltrail"));
        command.args(["data", "list", "--tracking-uri", &url]);
        command
            .env_remove("MLTRAIL_TRACKING_CA")
            .env_remove("MLFLOW_TRACKING_SERVER_CERT_PATH");
        if let Some((name, value)) = ca {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    for variable in ["MLTRAIL_TRACKING_CA", "MLFLOW_TRACKING_SERVER_CERT_PATH"] {
        let out = cli(Some((variable, &ca)));
        assert!(
            out.status.success(),
            "{variable}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli(None);
    assert!(
        !out.status.success(),
        "a private CA is not trusted by default"
    );
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = certificates(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(["server", "--port", "0", "--tls-cert", &cert])
        .args([
            "--artifacts-destination",
            dir.path().join("a").to_str().unwrap(),
        ])
        .args([
            "--backend-store-uri",
            &format!("sqlite:///{}", dir.path().join("m.db").display()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls_cert and tls_key go together"),
        "{stderr}"
    );
}

/// Over HTTPS the web UI's session cookie is `Secure`: a browser never sends it over plain HTTP.
#[test]
fn the_session_cookie_of_an_https_server_is_secure() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let server = Server::start_with_env(
        tempfile::tempdir().unwrap(),
        &["--tls-cert", &cert, "--tls-key", &key, "--auth", "on"],
        &[("MLTRAIL_ADMIN_PASSWORD", "tls-admin-password-1")],
    );
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = trusting
        .post(format!("{}/ui/login", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=tls-admin-password-1&next=%2F")
        .send()
        .unwrap();
    assert_eq!(signed.status().as_u16(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("; Secure"),
        "{cookie}"
    );
}
