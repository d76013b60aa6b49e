//! The audit trail: every API mutation is an event, `audit verify` passes on an untouched store
//! and names the first broken link when a row is edited or deleted behind the server's back.

mod common;
use common::{experiment_and_run, Server};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Performs one of every mutation the API offers; returns the run id.
fn exercise(server: &Server) -> String {
    let (exp_id, run_id) = experiment_and_run(server, "audited");
    server.ok(
        "experiments/set-experiment-tag",
        json!({"experiment_id": exp_id, "key": "k", "value": "v"}),
    );
    server.ok(
        "experiments/update",
        json!({"experiment_id": exp_id, "new_name": "audited-2"}),
    );
    server.ok(
        "runs/log-metric",
        json!({"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}),
    );
    server.ok(
        "runs/log-parameter",
        json!({"run_id": run_id, "key": "lr", "value": "0.1"}),
    );
    server.ok(
        "runs/set-tag",
        json!({"run_id": run_id, "key": "t", "value": "1"}),
    );
    server.ok("runs/delete-tag", json!({"run_id": run_id, "key": "t"}));
    server.ok(
        "runs/log-batch",
        json!({"run_id": run_id, "metrics": [{"key": "acc", "value": 0.9, "timestamp": 2, "step": 1}, {"key": "acc", "value": 0.95, "timestamp": 3, "step": 2}]}),
    );
    server.ok(
        "runs/update",
        json!({"run_id": run_id, "status": "FINISHED", "end_time": 10}),
    );
    let (status, _) = server.raw(
        "PUT",
        &format!("/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/a.txt"),
        b"data",
    );
    assert_eq!(status, 200);
    server.ok("registered-models/create", json!({"name": "credit"}));
    server.ok("model-versions/create", json!({"name": "credit", "source": format!("mlflow-artifacts:/{exp_id}/{run_id}/artifacts")}));
    server.ok(
        "registered-models/alias",
        json!({"name": "credit", "alias": "production", "version": "1"}),
    );
    server.ok(
        "model-versions/transition-stage",
        json!({"name": "credit", "version": "1", "stage": "Staging"}),
    );
    server.ok("runs/delete", json!({"run_id": run_id}));
    server.ok("runs/restore", json!({"run_id": run_id}));
    run_id
}

fn events(server: &Server, entity: Option<&str>) -> Vec<Value> {
    let mut args = vec!["audit", "log", "--json"];
    let uri = server.store_uri();
    args.extend(["--backend-store-uri", &uri]);
    if let Some(e) = entity {
        args.extend(["--entity", e]);
    }
    let out = server.mltrail(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(server: &Server) -> (bool, String) {
    let root = server.artifact_root().display().to_string();
    succeeded(server.mltrail(&[
        "audit",
        "verify",
        "--backend-store-uri",
        &server.store_uri(),
        "--artifacts-destination",
        &root,
    ]))
}

/// Whether a command succeeded, and what it printed (stdout, then stderr).
fn succeeded(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sqlite(server: &Server, sql: &str) {
    let path = server.dir.path().join("store").join("mltrail.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

#[test]
fn every_mutation_is_an_event_and_the_chain_verifies() {
    let mut server = Server::start();
    exercise(&server);
    server.stop();
    let all = events(&server, None);
    let mut actions: HashMap<String, usize> = HashMap::new();
    for e in &all {
        *actions
            .entry(e["action"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for action in [
        "experiment.create",
        "experiment.set_tag",
        "experiment.rename",
        "run.create",
        "run.log_metrics",
        "run.log_params",
        "run.set_tags",
        "run.delete_tag",
        "run.update",
        "artifact.put",
        "registered_model.create",
        "model_version.create",
        "registered_model.set_alias",
        "model_version.transition_stage",
        "run.delete",
        "run.restore",
    ] {
        assert!(
            actions.contains_key(action),
            "no {action} event in {actions:?}"
        );
    }
    assert_eq!(
        actions["run.log_metrics"], 2,
        "one event per metric request"
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let (ok, out) = verify(&server);
    assert!(ok, "{out}");
    assert!(out.contains("audit trail intact"));
}

fn tampered(edit: impl Fn(&Server, &str) -> (String, i64)) -> (String, i64) {
    let mut server = Server::start();
    let run_id = exercise(&server);
    server.stop();
    assert!(verify(&server).0);
    let (sql, expected_seq) = edit(&server, &run_id);
    sqlite(&server, &sql);
    let (ok, out) = verify(&server);
    assert!(!ok, "verify passed after: {sql}");
    (out, expected_seq)
}

fn last_seq(server: &Server, entity: &str) -> i64 {
    events(server, Some(entity)).last().unwrap()["seq"]
        .as_i64()
        .unwrap()
}

#[test]
fn editing_a_param_breaks_verify_at_the_event_that_logged_it() {
    let (out, seq) = tampered(|s, run| {
        let logged = events(s, Some("params"))
            .iter()
            .find(|e| e["entity_id"].as_str().unwrap().starts_with(run))
            .unwrap()["seq"]
            .as_i64()
            .unwrap();
        (
            format!("UPDATE params SET value = '0.9' WHERE run_uuid = '{run}'"),
            logged,
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
    assert!(out.contains("edited"), "{out}");
}

#[test]
fn editing_a_runs_status_breaks_verify_at_the_runs_last_event() {
    let (out, seq) = tampered(|s, run| {
        (
            format!("UPDATE runs SET status = 'FAILED' WHERE run_uuid = '{run}'"),
            last_seq(s, &format!("run:{run}")),
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
}

#[test]
fn deleting_a_metric_row_breaks_verify_at_its_batch() {
    let (out, seq) = tampered(|s, run| {
        let batch = events(s, Some("metrics"))
            .iter()
            .find(|e| e["entity_id"].as_str().unwrap().starts_with(run))
            .unwrap()["seq"]
            .as_i64()
            .unwrap();
        (
            format!("DELETE FROM metric_blocks WHERE run_uuid = '{run}' AND key = 'loss'"),
            batch,
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
    assert!(out.contains("deleted"), "{out}");
}

#[test]
fn dropping_values_from_a_metric_block_breaks_verify_at_its_batch() {
    let (out, seq) = tampered(|s, run| {
        let batch = events(s, Some("metrics"))
            .iter()
            .rfind(|e| e["entity_id"].as_str().unwrap().starts_with(run))
            .unwrap()["seq"]
            .as_i64()
            .unwrap();
        // The log-batch logged two `acc` values; keep the version byte and the first point only.
        (
            format!(
                "UPDATE metric_blocks SET points = substr(points, 1, 25), point_count = 1 \
                 WHERE run_uuid = '{run}' AND key = 'acc'"
            ),
            batch,
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
}

#[test]
fn editing_an_event_breaks_the_chain_at_that_event() {
    let (out, seq) = tampered(|_, _| {
        (
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5".into(),
            5,
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
}

#[test]
fn deleting_an_event_is_detected() {
    let (out, seq) = tampered(|_, _| ("DELETE FROM audit_log WHERE seq = 7".into(), 8));
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
    assert!(out.contains("missing"), "{out}");
}

#[test]
fn moving_an_alias_behind_the_servers_back_is_detected() {
    let (out, seq) = tampered(|s, _| {
        (
            "UPDATE registered_model_aliases SET version = 7".into(),
            last_seq(s, "registered_model:credit"),
        )
    });
    assert!(out.contains(&format!("BROKEN at event {seq} ")), "{out}");
}

#[test]
fn a_row_inserted_without_an_event_is_detected() {
    let (out, _) = tampered(|_, _| {
        ("INSERT INTO registered_models (name, creation_time, last_updated_time, description) VALUES ('ghost', 1, 1, '')".into(), 0)
    });
    assert!(
        out.contains("ghost") && out.contains("no audit event"),
        "{out}"
    );
}

#[test]
fn modifying_or_removing_an_artifact_is_detected() {
    let mut server = Server::start();
    let run_id = exercise(&server);
    server.stop();
    let (ok, out) = verify(&server);
    assert!(ok && out.contains("1 artifacts re-hashed"), "{out}");
    let put = events(&server, Some("artifact")).last().unwrap().clone();
    let path = put["entity_id"].as_str().unwrap().to_string();
    assert!(path.ends_with(&format!("{run_id}/artifacts/a.txt")));
    let file = server.artifact_root().join(&path);
    std::fs::write(&file, b"DATA").unwrap();
    let (ok, out) = verify(&server);
    assert!(
        !ok && out.contains(&format!("BROKEN at event {} ", put["seq"]))
            && out.contains("modified"),
        "{out}"
    );
    std::fs::remove_file(&file).unwrap();
    let (ok, out) = verify(&server);
    assert!(!ok && out.contains("removed from storage"), "{out}");
}

/// `runs/create` answers with the run it stored, and the state it digests without reading it
/// back is the state `verify` reads: duplicate tag keys (the last wins), a run name given as a
/// tag, non-ASCII keys.
#[test]
fn a_created_run_answers_what_is_stored_and_verifies() {
    let mut server = Server::start();
    let exp_id = server.ok("experiments/create", json!({"name": "created"}))["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let created = server.ok(
        "runs/create",
        json!({"experiment_id": exp_id, "user_id": "ana", "start_time": 1234, "tags": [
            {"key": "a", "value": "1"},
            {"key": "ключ", "value": "значение"},
            {"key": "mlflow.runName", "value": "named-by-tag"},
            {"key": "a", "value": "2"},
        ]}),
    )["run"]
        .clone();
    let run_id = created["info"]["run_id"].as_str().unwrap().to_string();
    let (status, fetched) = server.get("runs/get", &[("run_id", &run_id)]);
    assert_eq!(status, 200, "{fetched}");
    let tags = |run: &Value| {
        let mut tags: Vec<(String, String)> = run["data"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap().to_string(),
                    t["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags(&created), tags(&fetched["run"]));
    assert!(tags(&created).contains(&("a".into(), "2".into())));
    assert_eq!(created["info"], fetched["run"]["info"]);
    assert_eq!(created["info"]["run_name"], "named-by-tag");
    assert_eq!(created["info"]["start_time"], 1234);
    // Refused creations answer alone and leave no row and no event behind.
    let (status, body) = server.post("runs/create", json!({"experiment_id": "987654"}));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{body}"
    );
    server.ok("experiments/delete", json!({"experiment_id": exp_id}));
    let (status, body) = server.post("runs/create", json!({"experiment_id": exp_id}));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_STATE")),
        "{body}"
    );
    let creations = events(&server, None)
        .iter()
        .filter(|e| e["action"] == "run.create")
        .count();
    assert_eq!(creations, 1, "only the run that was created has an event");
    server.stop();
    let (ok, out) = verify(&server);
    assert!(ok, "{out}");
}

/// Rewrites every event with `edit` and re-hashes the whole chain, as someone with write access
/// to the database could: the chain then verifies.
fn rewrite_and_rehash(server: &Server, edit: impl Fn(&mut mltrail_core::AuditEvent)) {
    let path = server.dir.path().join("store").join("mltrail.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let mut prev = mltrail_core::GENESIS_HASH;
        for row in rows {
            let mut event = mltrail_core::AuditEvent {
                seq: row.get("seq"),
                time: row.get("time"),
                actor: row.get("actor"),
                action: row.get("action"),
                entity_type: row.get("entity_type"),
                entity_id: row.get("entity_id"),
                state_digest: row.get("state_digest"),
            };
            edit(&mut event);
            prev = prev.next(&event);
            sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = $3")
                .bind(&event.actor)
                .bind(prev.to_hex())
                .bind(event.seq)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
}

fn checkpoint(server: &Server) -> std::path::PathBuf {
    let out = server.mltrail(&[
        "audit",
        "checkpoint",
        "--backend-store-uri",
        &server.store_uri(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let note = String::from_utf8(out.stdout).unwrap();
    assert!(note.starts_with("mltrail-audit\n"), "{note}");
    let file = server
        .dir
        .path()
        .join(format!("checkpoint-{}.txt", note.len()));
    std::fs::write(&file, &note).unwrap();
    file
}

fn verify_against(server: &Server, file: &std::path::Path) -> (bool, String) {
    succeeded(server.mltrail(&[
        "audit",
        "verify",
        "--backend-store-uri",
        &server.store_uri(),
        "--checkpoint",
        &file.display().to_string(),
    ]))
}

#[test]
fn a_checkpoint_catches_a_trail_rewritten_and_rehashed_after_it() {
    let server = Server::start();
    exercise(&server);
    let file = checkpoint(&server);
    // Events after the checkpoint are fine.
    server.ok("registered-models/create", json!({"name": "later"}));
    let (ok, out) = verify_against(&server, &file);
    assert!(
        ok && out.contains("consistent with the checkpoint"),
        "{out}"
    );

    // Any event proves its inclusion against a signed root.
    let uri = server.store_uri();
    let out = server.mltrail(&["audit", "prove", "3", "--backend-store-uri", &uri]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proof: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hash = |v: &Value| -> [u8; 32] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let path: Vec<[u8; 32]> = proof["audit_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    let leaf = mltrail_core::merkle::leaf_hash(
        &hex::decode(proof["event"]["hash"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(leaf, hash(&proof["leaf_hash"]));
    assert!(mltrail_core::merkle::verify_inclusion(
        &leaf,
        proof["leaf_index"].as_u64().unwrap(),
        proof["tree_size"].as_u64().unwrap(),
        &path,
        &hash(&proof["root"]),
    ));

    // Someone rewrites who did the first change and re-hashes the chain: the chain verifies,
    // the checkpoint does not.
    rewrite_and_rehash(&server, |e| {
        if e.seq == 1 {
            e.actor = "user:mallory".into();
        }
    });
    assert!(verify(&server).0, "a re-hashed chain verifies on its own");
    let (ok, out) = verify_against(&server, &file);
    assert!(!ok && out.contains("rewritten"), "{out}");
    // And the key no longer signs: a log never signs two inconsistent checkpoints.
    let out = server.mltrail(&["audit", "checkpoint", "--backend-store-uri", &uri]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("refusing to sign"),
        "{err}"
    );
}

#[test]
fn an_auditor_checks_a_checkpoint_with_the_verifier_key_alone() {
    let server = Server::start();
    exercise(&server);
    let file = checkpoint(&server);
    let uri = server.store_uri();
    let out = server.mltrail(&["audit", "verifier-key", "--backend-store-uri", &uri]);
    assert!(out.status.success());
    let verifier = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(verifier.starts_with("mltrail-audit+"), "{verifier}");
    // The auditor's copy of the store has no signing key beside it: the verifier key suffices.
    std::fs::remove_file(
        server
            .dir
            .path()
            .join("store")
            .join("mltrail.db.audit-signing-key"),
    )
    .unwrap();
    let check = |key: &str| {
        server.mltrail(&[
            "audit",
            "verify",
            "--backend-store-uri",
            &uri,
            "--checkpoint",
            &file.display().to_string(),
            "--verifier-key",
            key,
        ])
    };
    let out = check(&verifier);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !server
            .dir
            .path()
            .join("store")
            .join("mltrail.db.audit-signing-key")
            .exists(),
        "verifying made a key"
    );
    // Another key's verifier refuses the checkpoint.
    let other = server.dir.path().join("other-key");
    let out = server.mltrail_env(
        &["audit", "verifier-key", "--backend-store-uri", &uri],
        &[("MLTRAIL_AUDIT_SIGNING_KEY", &other.display().to_string())],
    );
    let other = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = check(&other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no signature by the key"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_catches_a_trail_cut_short() {
    let server = Server::start();
    exercise(&server);
    server.ok("registered-models/create", json!({"name": "tail"}));
    let file = checkpoint(&server);
    // The last event and its row go: on its own the trail still reads as intact.
    let last = last_seq(&server, "registered_model:tail");
    sqlite(
        &server,
        &format!("DELETE FROM audit_log WHERE seq = {last}"),
    );
    sqlite(&server, "DELETE FROM registered_models WHERE name = 'tail'");
    let (ok, out) = verify_against(&server, &file);
    assert!(!ok && out.contains("cut short"), "{out}");
    // A checkpoint edited by hand, or signed by another key, is refused.
    let note = std::fs::read_to_string(&file).unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let forged = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size - 1), 1);
    std::fs::write(&file, forged).unwrap();
    let (ok, out) = verify_against(&server, &file);
    assert!(!ok && out.contains("signature"), "{out}");
}
