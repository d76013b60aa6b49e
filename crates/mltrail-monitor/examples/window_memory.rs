//! Peak memory of one monitor window, stage by stage, for a window the size of the soak's
//! (2.2 million one-row predictions of the 6-feature logistic-regression fixture). Not a test:
//! run it after changing `Window` and compare with docs/reliability.md.
//!   cargo run --release -p mltrail-monitor --example window_memory [ROWS]

use mltrail_monitor::window::{OutputNames, Window};
use mltrail_serving::archive::RecordView;

/// Peak and current resident memory in MiB, from /proc (Linux).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn report(stage: &str) {
    let (peak, now) = memory();
    println!("{stage:<28} peak {peak:>6} MiB   now {now:>6} MiB");
}

fn main() {
    let rows: u128 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_200_000);
    report("start");
    let inputs = r#"{"a":0.5,"b":-1.2,"c":0.3,"d":2.0,"e":0.1,"f":-0.7}"#;
    let outputs = r#"{"output_label":[1],"output_probability":[{"0":0.2993,"1":0.7007}]}"#;
    let mut window = Window::new(0, i64::MAX, i64::MAX);
    for i in 0..rows {
        // A UUIDv7 made at time 1 ms, as the serving log stamps them.
        let id = uuid::Uuid::from_u128((1u128 << 80) | (7 << 76) | i).to_string();
        window.visit(RecordView {
            kind: Some("prediction"),
            id: Some(&id),
            time_ms: Some(1),
            deployment: Some("soak"),
            model: Some("logreg"),
            version: Some("1"),
            digest: None,
            arm: None,
            latency_us: Some(40),
            inputs: Some(inputs),
            outputs: Some(outputs),
            label: None,
            ranking: None,
            clicked: None,
            reward: None,
            subject: None,
            sealed: None,
            sealed_inputs: None,
            explanation: None,
            ..RecordView::default()
        });
    }
    report(&format!("{rows} records visited"));
    let table = window.take_inputs();
    report(&format!("inputs ({} columns)", table.columns.len()));
    let names = OutputNames {
        prediction: "output_label".into(),
        score: Some("output_probability".into()),
    };
    let predictions = window.predictions(&names);
    report(&format!("predictions ({} rows)", predictions.rows));
}
