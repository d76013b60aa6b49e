//! Damage that opening the store must not paper over (found by the `audit_verify` fuzz target).

use mltrail_store::{audit, MetaStore, StoreConfig};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_default_experiment_is_reported_not_silently_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let uri = format!("sqlite:///{}", path.display());
    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    assert!(audit::verify(&store).await.unwrap().broken.is_none());
    store.close().await;

    let mut conn = sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM experiments WHERE experiment_id = 0")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    let report = audit::verify(&store).await.unwrap();
    let broken = report.broken.expect("the deletion is reported");
    assert_eq!(
        (broken.entity_type.as_str(), broken.entity_id.as_str()),
        ("experiment", "0")
    );
    store.close().await;
}
