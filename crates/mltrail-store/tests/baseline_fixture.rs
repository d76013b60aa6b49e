//! A store written by the code before the store refactor (commit d7f74d2; how it was written:
//! `fixtures/baseline_generator.rs`) still verifies: every state digest the old code recorded,
//! for every audited entity kind, is the digest the current code computes from the same rows.
//! The chain then continues with events of the current code.

use mltrail_store::{MetaStore, StoreConfig};
use sqlx::Connection;

/// Loads the fixture's SQL dump into a fresh SQLite file and opens a store on it.
async fn baseline_store(dir: &tempfile::TempDir) -> (MetaStore, std::path::PathBuf) {
    let file = dir.path().join("m.db");
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .expect("create the database");
    sqlx::raw_sql(include_str!("fixtures/baseline-d7f74d2.sql"))
        .execute(&mut conn)
        .await
        .expect("load the fixture");
    conn.close().await.expect("close");
    let uri = format!("sqlite:///{}", file.display());
    let store = MetaStore::open(&StoreConfig::new(&uri))
        .await
        .expect("open the store");
    (store, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_before_the_refactor_verifies_and_its_chain_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = baseline_store(&dir).await;
    let report = mltrail_store::audit::verify(&store).await.expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 83);
    assert_eq!(
        report.entities_checked, 32,
        "every entity the old events name is checked against its state"
    );

    // New events extend the old chain, whatever path writes them.
    let exp =
        mltrail_store::experiments::create_experiment(&store, "t", "new".into(), None, vec![])
            .await
            .expect("experiment");
    let run = mltrail_store::runs::create_run(
        &store,
        "t",
        mltrail_store::runs::NewRun {
            experiment_id: exp,
            user_id: "t".into(),
            ..Default::default()
        },
    )
    .await
    .expect("run")
    .info
    .run_id;
    let metric = mltrail_store::metrics::NewMetric {
        key: "loss".into(),
        value: 0.25,
        timestamp: 1,
        step: 0,
        model_id: None,
    };
    let batch = mltrail_store::metrics::Batch::new(vec![metric], vec![], vec![])
        .expect("valid")
        .expect("not empty");
    let run = mltrail_core::RunId::parse(&run).expect("run id");
    mltrail_store::metrics::log_batch(&store, "t", run, batch)
        .await
        .expect("metric");
    mltrail_store::registry::set_registered_model_tag(
        &store,
        "t",
        "credit-risk".into(),
        mltrail_store::KeyValue {
            key: "k".into(),
            value: "v".into(),
        },
    )
    .await
    .expect("tag");
    let report = mltrail_store::audit::verify(&store).await.expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 83 + 4);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_row_of_the_old_store_is_still_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, file) = baseline_store(&dir).await;
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("connect");
    sqlx::query("UPDATE model_versions SET description = 'edited' WHERE version = 2")
        .execute(&mut conn)
        .await
        .expect("edit");
    conn.close().await.expect("close");
    let store = MetaStore::open(&StoreConfig::new(format!("sqlite:///{}", file.display())))
        .await
        .expect("reopen");
    let report = mltrail_store::audit::verify(&store).await.expect("verify");
    let broken = report.broken.expect("the edit is found");
    assert_eq!(
        (broken.entity_type.as_str(), broken.entity_id.as_str()),
        ("model_version", "credit-risk/2")
    );
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
    store.close().await;
}
