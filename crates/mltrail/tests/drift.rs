//! `mltrail drift` end to end on the golden credit data: the numbers and verdicts Evidently's
//! DataDriftPreset gives, the HTML report rendered by headless Chromium, clear failures on bad
//! files.

mod common;

use common::assert_renders;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn mltrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(args)
        .output()
        .expect("run mltrail")
}

fn data(name: &str) -> String {
    golden()
        .join("data")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `mltrail drift` on the golden pair (label excluded) with extra flags; must succeed.
fn golden_drift(extra: &[&str]) -> Output {
    let (reference, current) = (data("reference.csv"), data("current.csv"));
    let base = [
        "drift",
        reference.as_str(),
        current.as_str(),
        "--exclude",
        "label",
    ];
    let out = mltrail(&[&base[..], extra].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn golden_files_give_evidentlys_tests_values_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("drift.json");
    let out = golden_drift(&["--json", json.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("4 of 13 columns drifted"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden().join("golden/drift.json")).unwrap())
            .unwrap();
    let preset = &golden["evidently_default_5000"];
    for want in preset["columns"].as_array().unwrap() {
        let name = want["column"].as_str().unwrap();
        let got = report["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["column"] == name)
            .unwrap();
        assert_eq!(got["method"], want["method"], "{name}");
        let (g, w) = (
            got["statistic"].as_f64().unwrap(),
            want["statistic"].as_f64().unwrap(),
        );
        assert!(((g - w) / w).abs() <= 1e-9, "{name}: {g} vs {w}");
        assert_eq!(got["drifted"], want["drifted"], "{name}");
    }
    assert_eq!(
        report["dataset"]["drifted_columns"],
        preset["dataset"]["number_of_drifted_columns"]
    );
    assert_eq!(
        report["dataset"]["drift"],
        preset["dataset"]["dataset_drift"]
    );
}

#[test]
fn fail_on_drift_exits_one_when_the_dataset_drifts() {
    let drifted = mltrail(&[
        "drift",
        &data("reference.csv"),
        &data("current.csv"),
        "--columns",
        "income,debt_ratio,region,age",
        "--fail-on-drift",
    ]);
    assert_eq!(
        drifted.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&drifted.stdout)
    );
    assert!(String::from_utf8_lossy(&drifted.stdout).contains("DATASET DRIFT"));
    let stable = mltrail(&[
        "drift",
        &data("reference.csv"),
        &data("current.csv"),
        "--columns",
        "age,sex",
        "--fail-on-drift",
    ]);
    assert_eq!(stable.status.code(), Some(0));
}

#[test]
fn bad_files_fail_with_a_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write("good.csv", "a,b\n1.5,x\n2.5,y\n3.5,x\n");
    let cases = [
        (write("ragged.csv", "a,b\n1,2\n3\n"), "ragged.csv"),
        (write("empty.csv", ""), "empty.csv"),
        (write("header_only.csv", "a,b\n"), "no rows"),
        (write("data.txt", "a,b\n1,2\n"), "unknown file type"),
        (
            write("text_a.csv", "a,b\nfoo,x\nbar,y\n"),
            "text in the current data",
        ),
    ];
    for (path, expect) in cases {
        let out = mltrail(&["drift", &good, &path]);
        assert_ne!(out.status.code(), Some(0), "{path} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(expect), "{path}: {err}");
    }
    let out = mltrail(&["drift", &good, &good, "--method", "magic"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--method `magic`"));
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    golden_drift(&["--html", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("No dataset drift") && page.contains("4 of 13 columns drifted"));
    assert_eq!(page.matches("<svg").count(), 13, "one histogram per column");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "self-contained: nothing loaded from the network"
    );
    assert_renders(&html, "1280,1400");
}

#[test]
fn a_profile_gives_numpys_summary_and_the_top_categories() {
    let out = mltrail(&["data", "profile", &data("reference.csv"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["rows"], 5000);
    let col = |name: &str| {
        p["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["column"] == name)
            .unwrap()
            .clone()
    };
    let income = col("income");
    let close = |v: &Value, want: f64| ((v.as_f64().unwrap() - want) / want).abs() < 1e-12;
    // pandas/numpy on the same file: mean, std(ddof=0), percentile 50 and 99.
    assert!(close(&income["summary"]["mean"], 45_818.940_418));
    assert!(close(&income["summary"]["std"], 26_605.871_232_511_912));
    let q = |q: f64| {
        income["summary"]["quantiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["q"] == q)
            .unwrap()["value"]
            .clone()
    };
    assert!(close(&q(0.5), 39_800.82) && close(&q(0.99), 141_005.219_9));
    let region = col("region");
    assert_eq!(
        region["summary"]["top"][0],
        serde_json::json!({"value": "north", "count": 1474})
    );
    assert_eq!(region["distinct"], 5);
}
