//! Dataset versions through the real server: content-addressed (the same file twice is one
//! version), profiled, audited; bad files are refused with nothing stored.

mod common;
use common::{client, Server};
use serde_json::Value;
use std::path::PathBuf;

fn golden(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_dataset_added_twice_is_one_version_and_bad_files_store_nothing() {
    let server = Server::start();
    let add = |file: &str, extra: &[&str]| {
        server.mltrail(
            &[
                &[
                    "data",
                    "add",
                    file,
                    "--name",
                    "credit",
                    "--tracking-uri",
                    &server.url,
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let first = add(&golden("reference.csv"), &["--target", "label"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "credit@1");
    let again = add(&golden("reference.csv"), &[]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "credit@1");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already stored"));
    let second = add(&golden("current.csv"), &[]);
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), "credit@2");

    // `data show`: a summary and a line per column for people, the whole version with --json.
    let show = |extra: &[&str]| {
        let out = server.mltrail(
            &[
                &["data", "show", "credit@1", "--tracking-uri", &server.url][..],
                extra,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = show(&[]);
    assert!(table.starts_with("credit@1  "), "{table}");
    assert!(table.contains("target label"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("region ") && l.contains("top ")),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&show(&["--json"])).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["target"], "label");
    assert!(json["profile"]["columns"].as_array().unwrap().len() > 1);

    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ragged.csv", "a,b\n1,2\n3\n"),
        ("empty.csv", ""),
        ("header.csv", "a,b\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = add(path.to_str().unwrap(), &[]);
        assert_ne!(out.status.code(), Some(0), "{name} must be refused");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Declared schemas: PII tags and types are recorded; an unknown type or column stores nothing.
    let schema = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    for (toml, expect) in [
        ("[columns.region]\ntype = \"geo\"\n", "unknown type `geo`"),
        (
            "[columns.zip]\ntype = \"text\"\n",
            "column `zip` is not in the data",
        ),
        ("[columns.region]\ntype = \"numeric\"\n", "holds text"),
    ] {
        let out = add(
            &golden("current.csv"),
            &["--schema", &schema("bad.toml", toml)],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expect),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tagged = server.mltrail(&[
        "data",
        "add",
        &golden("current.csv"),
        "--name",
        "people",
        "--schema",
        &schema(
            "ok.toml",
            "[columns.sex]\npii = true\n[columns.age]\ntype = \"categorical\"\n",
        ),
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        tagged.status.success(),
        "{}",
        String::from_utf8_lossy(&tagged.stderr)
    );
    let people: Value = client()
        .get(format!(
            "{}/api/v1/datasets/people/versions/latest",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let cols = people["dataset_version"]["schema"]
        .as_array()
        .unwrap()
        .clone();
    let col = |n: &str| cols.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(col("sex")["pii"], true);
    assert_eq!(col("age")["type"], "categorical");
    // With the version as the reference, drift tests `age` (many distinct integers) as declared.
    let out_json = dir.path().join("declared.json");
    let drift = server.mltrail(&[
        "drift",
        "people@1",
        &golden("reference.csv"),
        "--json",
        out_json.to_str().unwrap(),
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        drift.status.success(),
        "{}",
        String::from_utf8_lossy(&drift.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let age = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "age")
        .unwrap()
        .clone();
    assert_eq!(age["column_type"], "categorical", "{age}");
    let bad_target = add(&golden("reference.csv"), &["--target", "nope"]);
    assert!(String::from_utf8_lossy(&bad_target.stderr).contains("--target `nope`"));

    let listed: Value = client()
        .get(format!("{}/api/v1/datasets?name=credit", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        listed["dataset_versions"].as_array().unwrap().len(),
        2,
        "nothing stored for refused files: {listed}"
    );
    let v1: Value = client()
        .get(format!("{}/api/v1/datasets/credit/versions/1", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let v = &v1["dataset_version"];
    assert_eq!(
        (v["rows"].as_i64(), v["target"].as_str()),
        (Some(5000), Some("label"))
    );
    let schema = v["schema"].as_array().unwrap();
    let kind = |c: &str| schema.iter().find(|s| s["name"] == c).unwrap()["type"].clone();
    assert_eq!(
        (kind("income"), kind("num_dependents"), kind("region")),
        ("numeric".into(), "categorical".into(), "categorical".into())
    );
    assert_eq!(v["profile"]["columns"].as_array().unwrap().len(), 14);
    let missing = client()
        .get(format!("{}/api/v1/datasets/credit/versions/9", server.url))
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // The file is in the artifact store under its digest, and the trail verifies (files re-hashed).
    let digest = v["digest"].as_str().unwrap();
    assert!(server
        .artifact_root()
        .join("datasets/credit")
        .join(&digest[..16])
        .join("reference.csv")
        .exists());
    server.assert_audit_verifies();

    // Drift and diff take dataset versions as well as files; the label (the version's target) is
    // left out by diff.
    let drift = server.mltrail(&[
        "drift",
        "credit@1",
        "credit@2",
        "--exclude",
        "label",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        drift.status.success(),
        "{}",
        String::from_utf8_lossy(&drift.stderr)
    );
    assert!(String::from_utf8_lossy(&drift.stdout).contains("4 of 13 columns drifted"));
    let diff = server.mltrail(&[
        "data",
        "diff",
        "credit@1",
        "credit@2",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("schema: unchanged (14 columns)") && text.contains("4 of 13 columns drifted"),
        "{text}"
    );
    let unknown = server.mltrail(&[
        "drift",
        "credit@7",
        "credit@2",
        "--tracking-uri",
        &server.url,
    ]);
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("neither a file nor a stored dataset version"));
}
