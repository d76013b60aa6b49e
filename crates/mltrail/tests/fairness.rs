//! `mltrail fairness` through the real binary: Fairlearn's numbers from the golden predictions
//! file, the JSON and HTML reports, and one-line refusals of bad input.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(rel)
}

fn fairness(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .arg("fairness")
        .args(args)
        .output()
        .expect("run mltrail fairness")
}

#[test]
fn the_report_carries_fairlearns_numbers_in_its_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("f.json"), dir.path().join("f.html"));
    let input = golden("data/predictions.csv");
    let out = fairness(&[
        input.to_str().unwrap(),
        "--label",
        "y_true",
        "--prediction",
        "y_pred",
        "--score",
        "y_score",
        "--sensitive",
        "sex,age_group",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("sex_x_age_group") && table.contains("F & 18-30"),
        "{table}"
    );
    let ours: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let theirs: Value =
        serde_json::from_str(&std::fs::read_to_string(golden("golden/fairness.json")).unwrap())
            .unwrap();
    for by in ["sex", "age_group", "sex_x_age_group"] {
        let (a, b) = (&ours["metric_frames"][by], &theirs["metric_frames"][by]);
        assert_eq!(
            a["by_group"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            b["by_group"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
        for (metric, value) in b["difference_between_groups"].as_object().unwrap() {
            let got = a["difference_between_groups"][metric].as_f64().unwrap();
            assert!(
                (got - value.as_f64().unwrap()).abs() < 1e-12,
                "{by} {metric}"
            );
        }
        let dp = ours["scalar"][by]["between_groups"]["demographic_parity_difference"]
            .as_f64()
            .unwrap();
        let want = theirs["scalar"][by]["between_groups"]["demographic_parity_difference"]
            .as_f64()
            .unwrap();
        assert!((dp - want).abs() < 1e-12);
    }
    let auc = ours["score_metrics"]["sex"]["overall"]["roc_auc"]
        .as_f64()
        .unwrap();
    assert!(auc > 0.5 && auc < 1.0, "{auc}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("F &amp; 18-30"));
}

#[test]
fn labels_that_are_not_binary_and_unknown_columns_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "y,p,g\n1,1,a\n2,0,b\n").unwrap();
    let out = fairness(&[
        bad.to_str().unwrap(),
        "--label",
        "y",
        "--prediction",
        "p",
        "--sensitive",
        "g",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--label y: row 2 holds 2"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let good = dir.path().join("good.csv");
    std::fs::write(&good, "y,p,g\n1,1,a\n0,0,b\n").unwrap();
    let out = fairness(&[
        good.to_str().unwrap(),
        "--label",
        "y",
        "--prediction",
        "p",
        "--sensitive",
        "sex",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sensitive sex: no such column (the file has y, p, g)"),
        "{stderr}"
    );
}
