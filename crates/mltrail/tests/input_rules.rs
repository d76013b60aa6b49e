//! What the tracking API does with the values a client sends: doubles come back bit for bit,
//! lengths are counted in characters as MLflow counts them, wrong types are refused by name and
//! never coerced or clamped, and only JSON bodies are taken (a cross-site `text/plain` POST
//! changes nothing).

mod common;
use common::{client, experiment_and_run, Server};
use serde_json::{json, Value};

/// splitmix64: random bit patterns without a dependency.
fn bit_patterns(n: usize) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// Finite doubles from every corner: random bit patterns, subnormals, ±0, the extremes, and
/// values whose shortest text has 17 digits (Python's 28/30).
fn doubles() -> Vec<f64> {
    let mut values = vec![
        0.9333333333333333,
        28.0 / 30.0,
        0.1 + 0.2,
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1e-300,
        123456789.12345679,
        9007199254740993.0,
    ];
    values.extend(
        bit_patterns(300)
            .into_iter()
            .map(f64::from_bits)
            .filter(|v| v.is_finite()),
    );
    // Subnormals and numbers near 1 from the random bits too.
    values.extend(
        bit_patterns(40)
            .into_iter()
            .map(|b| f64::from_bits(b & 0x800f_ffff_ffff_ffff)),
    );
    values.extend(
        bit_patterns(40)
            .into_iter()
            .map(|b| f64::from_bits(0x3ff0_0000_0000_0000 | (b & 0x000f_ffff_ffff_ffff))),
    );
    values
}

/// The value a reader gets back for metric `key`, from its history.
fn history(server: &Server, run: &str, key: &str) -> Vec<(i64, f64)> {
    let (status, body) = server.get(
        "metrics/get-history",
        &[
            ("run_id", run),
            ("metric_key", key),
            ("max_results", "25000"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    body["metrics"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap()))
        .collect()
}

fn assert_same_bits(sent: &[f64], got: &[(i64, f64)], path: &str) {
    assert_eq!(got.len(), sent.len(), "{path}: every value came back");
    for (step, value) in got {
        let want = sent[usize::try_from(*step).unwrap()];
        assert_eq!(
            value.to_bits(),
            want.to_bits(),
            "{path}: step {step} sent {want:e} ({:#x}), read {value:e} ({:#x})",
            want.to_bits(),
            value.to_bits()
        );
    }
}

#[test]
fn every_double_comes_back_bit_for_bit_on_every_metric_path() {
    let server = Server::start();
    let (_, run) = experiment_and_run(&server, "exact");
    let values = doubles();
    assert!(values.len() > 300);

    // log-metric, one value per request (the typed fast path).
    for (step, v) in values.iter().enumerate() {
        server.ok(
            "runs/log-metric",
            json!({"run_id": run, "key": "single", "value": v, "timestamp": 1, "step": step}),
        );
    }
    // log-batch, metrics only (the typed fast path), 100 per request.
    for (chunk_no, chunk) in values.chunks(100).enumerate() {
        let metrics: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"key": "batch", "value": v, "timestamp": 1, "step": chunk_no * 100 + i}))
            .collect();
        server.ok("runs/log-batch", json!({"run_id": run, "metrics": metrics}));
    }
    // log-batch with a param beside the metrics (the general path).
    for (chunk_no, chunk) in values.chunks(100).enumerate() {
        let metrics: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"key": "general", "value": v, "timestamp": 1, "step": chunk_no * 100 + i}))
            .collect();
        server.ok(
            "runs/log-batch",
            json!({"run_id": run, "metrics": metrics, "params": [{"key": format!("p{chunk_no}"), "value": "x"}]}),
        );
    }
    for key in ["single", "batch", "general"] {
        assert_same_bits(&values, &history(&server, &run, key), key);
    }
    // The latest value, as runs/get and search report it.
    let last = *values.last().unwrap();
    let (_, got) = server.get("runs/get", &[("run_id", &run)]);
    for m in got["run"]["data"]["metrics"].as_array().unwrap() {
        assert_eq!(
            m["value"].as_f64().unwrap().to_bits(),
            last.to_bits(),
            "{m}"
        );
    }
    server.assert_audit_verifies();
}

#[test]
fn lengths_are_counted_in_characters_as_mlflow_counts_them() {
    let server = Server::start();
    let (exp, run) = experiment_and_run(&server, "lengths");
    // 5,000 characters, 10,000 bytes: within the 6,000-character limit.
    let accented = "é".repeat(5000);
    let (status, body) = server.post(
        "runs/log-parameter",
        json!({"run_id": run, "key": "text", "value": accented}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, got) = server.get("runs/get", &[("run_id", &run)]);
    assert_eq!(got["run"]["data"]["params"][0]["value"], accented);

    let (status, body) = server.post(
        "runs/log-parameter",
        json!({"run_id": run, "key": "long", "value": "é".repeat(6001)}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("6001"), "{body}");

    // Tag values: 8,000 characters of a 3-byte character pass, 8,001 do not.
    let (status, _) = server.post(
        "runs/set-tag",
        json!({"run_id": run, "key": "t", "value": "日".repeat(8000)}),
    );
    assert_eq!(status, 200);
    let (status, _) = server.post(
        "runs/set-tag",
        json!({"run_id": run, "key": "t2", "value": "日".repeat(8001)}),
    );
    assert_eq!(status, 400);

    // Keys: 250 characters.
    let (status, body) = server.post(
        "runs/log-parameter",
        json!({"run_id": run, "key": "ü".repeat(250), "value": "v"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.post(
        "runs/log-parameter",
        json!({"run_id": run, "key": "ü".repeat(251), "value": "v"}),
    );
    assert_eq!(status, 400);

    // An alias that starts with a multibyte letter is judged, not a crash.
    let (status, body) = server.post("registered-models/create", json!({"name": "m", "tags": []}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(
        "model-versions/create",
        json!({"name": "m", "source": format!("mlflow-artifacts:/{exp}/x"), "run_id": run}),
    );
    assert_eq!(status, 200, "{body}");
    for (alias, want) in [("éte", 200), ("é", 200), ("v1", 400), ("ü99", 200)] {
        let (status, body) = server.post(
            "registered-models/alias",
            json!({"name": "m", "alias": alias, "version": "1"}),
        );
        assert_eq!(status, want, "alias {alias}: {body}");
    }
    server.assert_audit_verifies();
}

#[test]
fn wrong_types_are_refused_by_name_and_nothing_is_stored() {
    let server = Server::start();
    let (_, run) = experiment_and_run(&server, "types");
    let cases = [
        ("experiments/create", json!({"name": ["a", "b"]}), "name"),
        ("experiments/create", json!({"name": {"x": 1}}), "name"),
        (
            "runs/log-metric",
            json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1e300}),
            "timestamp",
        ),
        (
            "runs/log-metric",
            json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1, "step": 1e30}),
            "step",
        ),
        (
            "runs/log-metric",
            json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1.5}),
            "timestamp",
        ),
        (
            "runs/log-batch",
            json!({"run_id": run, "metrics": [{"key": "m", "value": 1.0, "timestamp": 1e300, "step": 0}]}),
            "timestamp",
        ),
        (
            "runs/log-metric",
            json!({"run_id": run, "key": "m", "value": [1.0], "timestamp": 1}),
            "value",
        ),
        (
            "runs/log-parameter",
            json!({"run_id": run, "key": "p", "value": ["x"]}),
            "value",
        ),
        (
            "runs/set-tag",
            json!({"run_id": ["a"], "key": "t", "value": "x"}),
            "run_id",
        ),
    ];
    // Sent as text: an integer literal beyond int64, as a client would write it.
    let beyond = format!(
        r#"{{"run_id": "{run}", "key": "m", "value": 1.0, "timestamp": 99999999999999999999}}"#
    );
    let texts = cases
        .iter()
        .map(|(path, body, field)| (*path, body.to_string(), *field))
        .chain([("runs/log-metric", beyond.clone(), "timestamp")])
        .chain([(
            "runs/log-batch",
            format!(r#"{{"run_id": "{run}", "metrics": [{{"key": "m", "value": 1.0, "timestamp": 1, "step": 18446744073709551615}}]}}"#),
            "step",
        )]);
    for (path, body, field) in texts {
        let resp = client()
            .post(format!("{}/api/2.0/mlflow/{path}", server.url))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().unwrap_or(Value::Null);
        assert_eq!(status, 400, "{path} {body} -> {answer}");
        assert_eq!(answer["error_code"], "INVALID_PARAMETER_VALUE", "{answer}");
        assert!(
            answer["message"].as_str().unwrap_or("").contains(field),
            "{path} {body}: the message names `{field}`: {answer}"
        );
    }
    let (_, experiments) = server.post("experiments/search", json!({"max_results": 100}));
    let names: Vec<&str> = experiments["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"a"), "{names:?}");
    let (_, got) = server.get("runs/get", &[("run_id", &run)]);
    assert!(
        got["run"]["data"]["metrics"].is_null() || got["run"]["data"]["metrics"] == json!([]),
        "{got}"
    );
    assert!(
        got["run"]["data"]["params"].is_null() || got["run"]["data"]["params"] == json!([]),
        "{got}"
    );
}

#[test]
fn only_json_bodies_are_taken_so_other_sites_cannot_write() {
    let server = Server::start();
    // What a page on another site can make a browser send without a preflight: text/plain or a
    // form. Neither may create anything.
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        let mut request = client()
            .post(format!("{}/api/2.0/mlflow/experiments/create", server.url))
            .body(r#"{"name": "csrf"}"#);
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        let resp = request.send().unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{content_type:?}");
        let body: Value = resp.json().unwrap();
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            body["message"].as_str().unwrap().contains("Content-Type"),
            "{body}"
        );
    }
    let (status, _) = server.get("experiments/get-by-name", &[("experiment_name", "csrf")]);
    assert_eq!(status, 404, "no experiment was created");
    // JSON with a charset is JSON.
    let resp = client()
        .post(format!("{}/api/2.0/mlflow/experiments/create", server.url))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(r#"{"name": "fine"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn a_method_a_route_does_not_take_gets_a_json_error() {
    let server = Server::start();
    let resp = client()
        .get(format!("{}/api/2.0/mlflow/runs/create", server.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().expect("a JSON body");
    assert_eq!(body["error_code"], "BAD_REQUEST");
    assert!(body["message"].as_str().unwrap().contains("GET"), "{body}");
}
