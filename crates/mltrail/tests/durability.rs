//! A 200 means the write is on disk: `kill -9` under load loses nothing that was acknowledged,
//! and the audit chain still verifies after the restart.

mod common;
use common::{client, experiment_and_run, Server};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn kill_dash_nine_loses_no_acknowledged_write() {
    let mut server = Server::start();
    let (_, run_id) = experiment_and_run(&server, "crash");
    let acknowledged = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, run_id, acknowledged, stop) = (server.url.clone(), run_id.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = client();
                let started = Instant::now();
                for step in 0..100_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    let body = json!({"run_id": run_id, "key": format!("w{w}"), "value": step as f64, "timestamp": step, "step": step});
                    match http.post(format!("{url}/api/2.0/mlflow/runs/log-metric")).json(&body).send() {
                        Ok(resp) if resp.status().is_success() => acknowledged.lock().unwrap().push((w, step)),
                        _ => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.crash();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "too little load before the crash: {}",
        acknowledged.len()
    );

    let server = server.restart();
    for w in 0..8 {
        let key = format!("w{w}");
        let (status, body) = server.get(
            "metrics/get-history",
            &[("run_id", &run_id), ("metric_key", &key)],
        );
        assert_eq!(status, 200);
        let stored: std::collections::HashSet<i64> = body["metrics"]
            .as_array()
            .map(|m| m.iter().map(|v| v["step"].as_i64().unwrap()).collect())
            .unwrap_or_default();
        for (_, step) in acknowledged.iter().filter(|(writer, _)| *writer == w) {
            assert!(
                stored.contains(&(*step as i64)),
                "acknowledged value w{w}/{step} was lost"
            );
        }
    }
    server.assert_audit_verifies();
}
