//! The writer's durability settings are what the README promises.

use mltrail_store::{MetaStore, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_fsyncs_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:///{}/m.db", dir.path().display());
    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    let (journal, synchronous) = store
        .write("test", |tx, _| {
            Box::pin(async move {
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut *tx)
                    .await?;
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(&mut *tx)
                    .await?;
                Ok((journal, synchronous))
            })
        })
        .await
        .unwrap();
    assert_eq!(journal.to_lowercase(), "wal");
    assert_eq!(
        synchronous, 2,
        "synchronous must be FULL (2): every acknowledged commit is fsynced"
    );
    store.close().await;
}
