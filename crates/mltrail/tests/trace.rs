//! One call from a prediction to everything behind it, through the real binaries: a deployment
//! answers for the records it has not archived; once archived, the tracking server answers
//! with the proof that the record is in its segment and the segment in the trail, and
//! `mltrail trace` checks every proof; a record rewritten in the archive afterwards is caught.

mod common;

use std::time::{Duration, Instant};

use common::scorer::{credit_from_a_run, rows, Scorer};
use common::{parquet_under, Server};
use serde_json::{json, Value};

const SIGNATURE: &str = "f0,f1,f2,f3,f4,f5";

fn trace(server: &Server, id: &str, extra: &[&str]) -> (bool, Value, String) {
    let out = server.mltrail(
        &[
            &["trace", id, "--json", "--tracking-uri", &server.url][..],
            extra,
        ]
        .concat(),
    );
    let body = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        body,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_prediction_traces_to_its_run_data_and_trail_and_a_rewritten_record_is_caught() {
    let server = Server::start();
    let data = tempfile::tempdir().unwrap();
    let run_id = credit_from_a_run(&server, data.path());
    let logs = tempfile::tempdir().unwrap();
    let scorer = Scorer::start(
        &server,
        "credit/1",
        logs.path(),
        &[
            "--deployment",
            "traced",
            "--explain",
            "always",
            "--segment-seconds",
            "1",
            "--archive-interval-ms",
            "200",
        ],
    );
    let data: Vec<Vec<Value>> = rows("gbc").into_iter().take(3).collect();
    let (status, body) = scorer.post(
        "/api/v1/predict",
        &json!({"dataframe_split": {"columns": SIGNATURE.split(',').collect::<Vec<_>>(), "data": data}}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["predictions"][1]["prediction_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Feedback whose label is `null` (Parquet keeps it as a missing cell) still traces.
    let (status, body) = scorer.post(
        "/api/v1/feedback",
        &json!({"prediction_id": id, "label": null, "reward": 1}),
    );
    assert_eq!(status, 200, "{body}");

    // Not archived yet: the deployment answers, with the lineage the tracking server proves.
    let (status, text) = scorer.get(&format!("/api/v1/predictions/{id}/record"));
    if status == 200 {
        let local: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(local["segment"]["in_trail"], "not archived yet");
        assert_eq!(local["model_version"]["run_id"], run_id.as_str());
        assert_eq!(local["explanation"]["method"], "tree_interventional");
    } else {
        // The archiver was quicker than this request.
        assert_eq!(status, 404, "{text}");
    }

    let archive = server.artifact_root().join("predictions/traced");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (ok, t, stderr) = loop {
        let (ok, t, stderr) = trace(&server, &id, &[]);
        if ok {
            break (ok, t, stderr);
        }
        assert!(Instant::now() < deadline, "never traced: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ok && !stderr.contains("FAILED"), "{stderr}");
    assert_eq!(t["format"], "mltrail.trace/1");
    assert_eq!(t["prediction_id"], id.as_str());
    assert_eq!(t["deployment"], "traced");
    assert_eq!(t["prediction"]["model"], "credit");
    assert_eq!(t["inputs"]["f0"], data[1][0]);
    assert!(!t["explanation"]["reasons"].as_array().unwrap().is_empty());
    assert_eq!(t["model_version"]["name"], "credit");
    assert_eq!(t["run"]["info"]["run_id"], run_id.as_str());
    let tags = t["run"]["data"]["tags"].as_array().unwrap();
    assert!(tags
        .iter()
        .any(|t| t["key"] == "mlflow.source.git.commit" && t["value"] == "4f1c2e9"));
    assert_eq!(t["run"]["data"]["params"][0]["key"], "max_depth");
    assert_eq!(t["dataset"]["name"], "train");
    assert_eq!(t["dataset"]["digest"].as_str().unwrap().len(), 64);
    assert_eq!(t["segment"]["in_trail"], "recorded");
    assert!(t["audit"]["checkpoint"]
        .as_str()
        .unwrap()
        .contains("\n\n\u{2014} "));
    let about: Vec<&str> = t["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["about"].as_str().unwrap())
        .collect();
    for needed in [
        "archived segment",
        "model_version",
        "run",
        "run params",
        "run metrics",
        "training dataset",
        "deployment",
    ] {
        assert!(about.contains(&needed), "{needed} missing from {about:?}");
    }
    for line in [
        "checkpoint of",
        "audit events",
        "whose summary is in the trail",
        "the model file that answered",
    ] {
        assert!(stderr.contains(line), "{line:?} not in {stderr}");
    }
    // With the verifier key an auditor holds, the checkpoint's signer is known.
    let key = server.mltrail(&[
        "audit",
        "verifier-key",
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    let key = String::from_utf8(key.stdout).unwrap();
    let (ok, _, stderr) = trace(&server, &id, &["--verifier-key", key.trim()]);
    assert!(ok && stderr.contains("your verifier key"), "{stderr}");
    // A saved trace is checked offline, and what it shows beside its proofs must agree with
    // them: each tampered copy fails, naming what is wrong.
    let saved = tempfile::tempdir().unwrap();
    let check_saved = |trace: &Value, id: &str, extra: &[&str]| {
        let file = saved.path().join("trace.json");
        std::fs::write(&file, serde_json::to_vec(trace).unwrap()).unwrap();
        let out =
            server.mltrail(&[&["trace", id, "--file", file.to_str().unwrap()][..], extra].concat());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stderr) = check_saved(&t, &id, &["--verifier-key", key.trim()]);
    assert!(ok && stderr.contains("your verifier key"), "{stderr}");
    let (ok, stderr) = check_saved(&t, "0190a0a0-0000-7000-8000-000000000000", &[]);
    assert!(!ok && stderr.contains("not 0190a0a0"), "{stderr}");
    let tampered = |change: &dyn Fn(&mut Value)| {
        let mut copy = t.clone();
        change(&mut copy);
        copy
    };
    for (change, says) in [
        (
            &(|t: &mut Value| t["inputs"]["f0"] = json!(123.0)) as &dyn Fn(&mut Value),
            "inputs shown are not",
        ),
        (
            &|t: &mut Value| t["dataset"]["digest"] = json!("0".repeat(64)),
            "training data shown",
        ),
        (
            &|t: &mut Value| t["model_version"]["source"] = json!("elsewhere"),
            "model version shown",
        ),
        (
            &|t: &mut Value| t["run"]["data"]["params"][0]["value"] = json!("99"),
            "params shown",
        ),
        (
            &|t: &mut Value| {
                let entities = t["entities"].as_array_mut().unwrap();
                let mv = entities
                    .iter_mut()
                    .find(|e| e["about"] == "model_version")
                    .unwrap();
                mv["entity_id"] = json!("credit/9");
            },
            "not this",
        ),
        (
            &|t: &mut Value| t["explanation"]["values"]["f0"] = json!(0.5),
            "explanation shown",
        ),
        (
            &|t: &mut Value| t["explanation"]["reasons"][0] = json!("income raised the score"),
            "reason codes",
        ),
        (
            &|t: &mut Value| t["deployment"] = json!("other"),
            "deployment shown",
        ),
        (
            &|t: &mut Value| t["model_version"]["version"] = json!("9"),
            "model version shown",
        ),
        (
            &|t: &mut Value| t["dataset"]["name"] = json!("other"),
            "training data shown",
        ),
    ] {
        let (ok, stderr) = check_saved(&tampered(change), &id, &[]);
        assert!(!ok && stderr.contains(says), "{says}: {stderr}");
    }
    let unsigned = tampered(&|t: &mut Value| t["audit"]["checkpoint"] = Value::Null);
    let (ok, stderr) = check_saved(&unsigned, &id, &[]);
    assert!(ok && stderr.contains("no signed checkpoint"), "{stderr}");
    let (ok, stderr) = check_saved(&unsigned, &id, &["--verifier-key", key.trim()]);
    assert!(
        !ok && stderr.contains("--verifier-key checks nothing"),
        "{stderr}"
    );

    // The trail itself holds one event per archived segment.
    let log = server.mltrail(&[
        "audit",
        "log",
        "--entity",
        "prediction_segment",
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("predictions.archive"));

    // The trail records a segment only as the archived file is: not one that was never
    // uploaded, nor a summary the file's records do not make.
    let file = parquet_under(&archive)
        .into_iter()
        .next()
        .expect("an archived file");
    let artifact = file
        .strip_prefix(server.artifact_root())
        .unwrap()
        .to_string_lossy()
        .to_string();
    let summary = |artifact: &str, root: &str| {
        json!({"artifact": artifact, "deployment": "traced", "records": 1000,
               "first_id": id, "last_id": id, "root": root})
    };
    let record_segment = |body: Value| {
        let resp = common::client()
            .post(format!("{}/api/v1/deployments/segments", server.url))
            .json(&body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (status, body) = record_segment(summary(
        "predictions/traced/2030-01-01/squat-1.parquet",
        &"ab".repeat(32),
    ));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("upload"),
        "{body}"
    );
    // Its name announces the start of its root: another root is refused.
    let (status, body) = record_segment(summary(&artifact, &"ab".repeat(32)));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`root`"),
        "{body}"
    );
    let announced = artifact
        .trim_end_matches(".parquet")
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let (status, body) = record_segment(summary(
        &artifact,
        &format!("{announced}{}", "0".repeat(48)),
    ));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`records`"),
        "{body}"
    );
    let not_parquet = server
        .artifact_root()
        .join("predictions/traced/2030-01-01/x.parquet");
    std::fs::create_dir_all(not_parquet.parent().unwrap()).unwrap();
    std::fs::write(&not_parquet, b"not parquet").unwrap();
    let (status, body) = record_segment(summary(
        "predictions/traced/2030-01-01/x.parquet",
        &"ab".repeat(32),
    ));
    assert_eq!(status, 400, "{body}");
    std::fs::remove_file(&not_parquet).unwrap();

    // Someone with write access to the archive rewrites the served output.
    let file = parquet_under(&archive)
        .into_iter()
        .find(|f| {
            let records =
                mltrail_serving::archive::from_parquet(std::fs::read(f).unwrap()).unwrap();
            records.iter().any(|r| r.id().to_string() == id)
        })
        .expect("the archived file holding the prediction");
    let mut records =
        mltrail_serving::archive::from_parquet(std::fs::read(&file).unwrap()).unwrap();
    for r in &mut records {
        if let mltrail_serving::record::LogRecord::Prediction(p) = r {
            if p.id.to_string() == id {
                p.latency_us += 1;
            }
        }
    }
    std::fs::write(
        &file,
        mltrail_serving::archive::to_parquet(&records).unwrap(),
    )
    .unwrap();
    let (ok, t, stderr) = trace(&server, &id, &[]);
    assert!(!ok, "a rewritten record passed: {stderr}");
    assert_eq!(
        t["segment"]["in_trail"],
        "differs from the recorded summary"
    );
    assert!(stderr.contains("FAILED"), "{stderr}");

    // Unknown and malformed ids.
    let (ok, _, stderr) = trace(&server, "0190a0a0-0000-7000-8000-000000000000", &[]);
    assert!(!ok && stderr.contains("--serving"), "{stderr}");
    let (ok, _, stderr) = trace(&server, "not-an-id", &[]);
    assert!(!ok && stderr.contains("UUID"), "{stderr}");
}
