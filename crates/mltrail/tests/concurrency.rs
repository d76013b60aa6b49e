//! 16 clients logging at once on SQLite: no "database is locked", no error, every value stored.

mod common;
use common::{client, experiment_and_run, Server};
use serde_json::json;

const CLIENTS: usize = 16;
const VALUES_PER_CLIENT: usize = 60;

#[test]
fn sixteen_concurrent_clients_lose_nothing() {
    let server = Server::start();
    let (exp_id, shared_run) = experiment_and_run(&server, "concurrency");
    let url = server.url.clone();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            let exp_id = exp_id.clone();
            let shared_run = shared_run.clone();
            std::thread::spawn(move || {
                let http = client();
                let post = |path: &str, body: serde_json::Value| {
                    let resp = http.post(format!("{url}/api/2.0/mlflow/{path}")).json(&body).send().expect("send");
                    let status = resp.status().as_u16();
                    let text = resp.text().unwrap_or_default();
                    assert_eq!(status, 200, "client {c} {path}: {text}");
                    text
                };
                let own: serde_json::Value = serde_json::from_str(&post("runs/create", json!({"experiment_id": exp_id}))).unwrap();
                let own_run = own["run"]["info"]["run_id"].as_str().unwrap().to_string();
                for i in 0..VALUES_PER_CLIENT {
                    post("runs/log-metric", json!({"run_id": shared_run, "key": format!("c{c}"), "value": i as f64, "timestamp": i, "step": i}));
                    if i % 10 == 0 {
                        post("runs/log-parameter", json!({"run_id": own_run, "key": format!("p{i}"), "value": "x"}));
                        let batch: Vec<_> = (0..10).map(|k| json!({"key": "batch", "value": k as f64, "timestamp": i, "step": i * 10 + k})).collect();
                        post("runs/log-batch", json!({"run_id": own_run, "metrics": batch}));
                    }
                }
                own_run
            })
        })
        .collect();
    let own_runs: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    for c in 0..CLIENTS {
        let key = format!("c{c}");
        let (status, body) = server.get(
            "metrics/get-history",
            &[("run_id", &shared_run), ("metric_key", &key)],
        );
        assert_eq!(status, 200);
        let values: Vec<f64> = body["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_f64().unwrap())
            .collect();
        assert_eq!(
            values,
            (0..VALUES_PER_CLIENT).map(|v| v as f64).collect::<Vec<_>>(),
            "client {c}"
        );
    }
    for run in &own_runs {
        let (_, body) = server.get(
            "metrics/get-history",
            &[("run_id", run), ("metric_key", "batch")],
        );
        assert_eq!(
            body["metrics"].as_array().unwrap().len(),
            VALUES_PER_CLIENT / 10 * 10
        );
        let (_, body) = server.get("runs/get", &[("run_id", run)]);
        assert_eq!(
            body["run"]["data"]["params"].as_array().unwrap().len(),
            VALUES_PER_CLIENT / 10
        );
    }
    server.assert_audit_verifies();
}
