//! The store's side of release gates: a protected alias or stage moves only with a pass made
//! against the policy and champion as they stand in the moving transaction; the report is kept
//! under its digest and the trail verifies; approvals follow four eyes; gates and approvals
//! move with a renamed model and leave with a deleted one, and the trail still verifies.

use mltrail_core::gate::Policy;
use mltrail_core::state::ModelStage;
use mltrail_core::ModelVersionNumber;
use mltrail_store::gates::{self, GatePass};
use mltrail_store::registry::{self, NewModelVersion};
use mltrail_store::{audit, MetaStore, StoreConfig, StoreErrorKind};
use serde_json::json;
use sqlx::Connection;

async fn store(dir: &tempfile::TempDir) -> MetaStore {
    MetaStore::open(&StoreConfig::new(format!(
        "sqlite:///{}/m.db",
        dir.path().display()
    )))
    .await
    .unwrap()
}

async fn version(store: &MetaStore, author: &str, name: &str) -> ModelVersionNumber {
    let v = registry::create_model_version(
        store,
        author,
        NewModelVersion {
            name: name.into(),
            source: "models:/m-1".into(),
            run_id: None,
            run_link: String::new(),
            description: String::new(),
            model_id: String::new(),
            tags: vec![],
        },
    )
    .await
    .unwrap();
    ModelVersionNumber(v.version.parse().unwrap())
}

fn policy() -> Policy {
    Policy::parse(&["evaluation.roc_auc >= 0.8".to_string()], 1).unwrap()
}

/// A passing report of moving `credit@production` to `version` against `champion`.
fn report(version: i64, champion: Option<i64>) -> serde_json::Value {
    json!({"model": "credit", "version": version, "alias": "production", "champion": champion, "passed": true, "override": null})
}

fn pass(champion: Option<i64>, report: serde_json::Value) -> GatePass {
    GatePass {
        report,
        requirements: policy().spelled(),
        approvals: 1,
        champion,
        overridden: false,
    }
}

async fn verifies(store: &MetaStore) {
    let report = audit::verify(store).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_moves_need_a_pass_made_against_what_stands() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    registry::create_registered_model(&store, "user:ana", "credit".into(), String::new(), vec![])
        .await
        .unwrap();
    let v1 = version(&store, "user:ana", "credit").await;
    let v2 = version(&store, "user:ana", "credit").await;
    registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v1,
        None,
    )
    .await
    .unwrap();
    registry::set_gate(
        &store,
        "user:admin",
        "credit".into(),
        "production".into(),
        policy(),
    )
    .await
    .unwrap();

    // Without a pass: refused, on both paths, and nothing moved.
    let err = registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v2,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidState, "{err}");
    let err = registry::transition_stage(
        &store,
        "user:ana",
        "credit".into(),
        v2,
        ModelStage::Production,
        false,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidState, "{err}");
    let at = registry::get_version_by_alias(&store, "credit", "production")
        .await
        .unwrap();
    assert_eq!(at.version, "1");

    // A pass made against another champion (the alias moved since) is refused too.
    let stale = pass(None, report(2, None));
    let err = registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v2,
        Some(stale),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while the move was checked"),
        "{err}"
    );

    // Four eyes: the author's approval is refused, another user's kept.
    let own = registry::approve(
        &store,
        "user:ana",
        "credit".into(),
        v2,
        "production".into(),
        "mine".into(),
    )
    .await
    .unwrap_err();
    assert!(own.to_string().contains("cannot approve"), "{own}");
    // ...however the author was established.
    let own = registry::approve(
        &store,
        "local:ana",
        "credit".into(),
        v2,
        "production".into(),
        "mine".into(),
    )
    .await
    .unwrap_err();
    assert!(own.to_string().contains("cannot approve"), "{own}");
    registry::approve(
        &store,
        "user:bo",
        "credit".into(),
        v2,
        "production".into(),
        "ok".into(),
    )
    .await
    .unwrap();
    assert_eq!(
        gates::approvals(&store, "credit", 2, "production")
            .await
            .unwrap()
            .len(),
        1
    );

    // A pass against what stands: moved, the report kept under its digest, the trail whole.
    // A report that failed (and no override) is no pass, whatever brings it.
    let mut failed = report(2, Some(1));
    failed["passed"] = json!(false);
    let err = registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v2,
        Some(pass(Some(1), failed)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a passing"), "{err}");
    let good = pass(Some(1), report(2, Some(1)));
    let digest = good.digest();
    registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v2,
        Some(good),
    )
    .await
    .unwrap();
    let kept = gates::report(&store, &digest).await.unwrap();
    assert_eq!((kept.version, kept.alias.as_str()), (2, "production"));
    assert_eq!(mltrail_core::audit::state_digest(&kept.report), digest);
    // Emptying the alias does not make the next move a first release: the champion is then
    // the version the newest report admitted.
    registry::delete_alias(&store, "user:ana", "credit".into(), "production".into())
        .await
        .unwrap();
    let err = registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v2,
        Some(pass(None, report(2, None))),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("changed while"), "{err}");
    // The stage path, guarded by the same gate: no version is in Production, so the champion
    // is the one the alias's newest report admitted.
    let staged = pass(Some(2), report(2, Some(2)));
    registry::transition_stage(
        &store,
        "user:ana",
        "credit".into(),
        v2,
        ModelStage::Production,
        false,
        Some(staged),
    )
    .await
    .unwrap();
    verifies(&store).await;

    // A policy changed after the check: the pass no longer fits it.
    let v3 = version(&store, "user:ana", "credit").await;
    let looser = Policy::parse(&["evaluation.roc_auc >= 0.5".to_string()], 0).unwrap();
    registry::set_gate(
        &store,
        "user:admin",
        "credit".into(),
        "production".into(),
        looser,
    )
    .await
    .unwrap();
    let err = registry::set_alias(
        &store,
        "user:ana",
        "credit".into(),
        "production".into(),
        v3,
        Some(pass(Some(2), report(3, Some(2)))),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while the move was checked"),
        "{err}"
    );

    // Renamed, the model keeps its gate and approvals; deleted, they go; the reports stay.
    registry::rename_registered_model(&store, "user:ana", "credit".into(), "credit-2".into())
        .await
        .unwrap();
    assert!(gates::policy(&store, "credit-2", "production")
        .await
        .unwrap()
        .is_some());
    assert!(gates::policy(&store, "credit", "production")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        gates::approvals(&store, "credit-2", 2, "production")
            .await
            .unwrap()
            .len(),
        1
    );
    verifies(&store).await;
    registry::delete_model_version(&store, "user:ana", "credit-2".into(), v2)
        .await
        .unwrap();
    assert!(gates::approvals(&store, "credit-2", 2, "production")
        .await
        .unwrap()
        .is_empty());
    verifies(&store).await;
    registry::delete_registered_model(&store, "user:ana", "credit-2".into())
        .await
        .unwrap();
    assert!(gates::policy(&store, "credit-2", "production")
        .await
        .unwrap()
        .is_none());
    assert!(
        gates::report(&store, &digest).await.is_ok(),
        "evidence outlives the model"
    );
    verifies(&store).await;

    // A report rewritten in the database no longer digests to what its event recorded.
    store.close().await;
    let raw = format!("sqlite://{}/m.db", dir.path().display());
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&raw).await.unwrap();
    sqlx::query("UPDATE gate_reports SET report = '{\"passed\":true}' WHERE digest = $1")
        .bind(&digest)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = self::store(&dir).await;
    let broken = audit::verify(&store).await.unwrap().broken.expect("caught");
    assert_eq!(
        (broken.entity_type.as_str(), broken.entity_id.as_str()),
        ("gate_report", digest.as_str())
    );
}
