//! What the writer does with a bad member of a group or a batch: fails it alone, or refuses the batch whole.

use mltrail_core::{ExperimentId, RunId};
use mltrail_store::metrics::{Batch, NewMetric};
use mltrail_store::{KeyValue, MetaStore, StoreConfig};

/// A batch the store's rules accept, to log.
fn batch(metrics: Vec<NewMetric>, params: Vec<KeyValue>, tags: Vec<KeyValue>) -> Batch {
    Batch::new(metrics, params, tags)
        .expect("a valid batch")
        .expect("a batch with something to log")
}

/// The id of a run the store created.
fn run_id(raw: &str) -> RunId {
    RunId::parse(raw).expect("a run id")
}

/// A fresh file-backed store (so the native SQLite path is on) with one experiment.
async fn store_with_experiment() -> (tempfile::TempDir, MetaStore, ExperimentId) {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:///{}/m.db", dir.path().display());
    let store = MetaStore::open(&StoreConfig::new(&uri)).await.unwrap();
    let exp = mltrail_store::experiments::create_experiment(&store, "t", "e".into(), None, vec![])
        .await
        .unwrap();
    (dir, store, exp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_metric_logs_fails_only_the_logs_for_bad_runs() {
    use mltrail_core::state::LifecycleStage;
    use mltrail_store::metrics;
    use mltrail_store::runs::{self, NewRun};

    let (_dir, store, exp) = store_with_experiment().await;
    let new_run = || NewRun {
        experiment_id: exp,
        user_id: "t".into(),
        ..Default::default()
    };
    let live = runs::create_run(&store, "t", new_run())
        .await
        .unwrap()
        .info
        .run_id;
    let dead = runs::create_run(&store, "t", new_run())
        .await
        .unwrap()
        .info
        .run_id;
    runs::set_run_stage(&store, "t", run_id(&dead), LifecycleStage::Deleted)
        .await
        .unwrap();
    let metric = |step: i64| NewMetric {
        key: "m".into(),
        value: step as f64,
        timestamp: step,
        step,
        model_id: None,
    };
    // Submitted together, so the writer takes them as one group.
    let mut tasks = Vec::new();
    for step in 0..50 {
        let (store, run) = (
            store.clone(),
            if step % 5 == 0 {
                dead.clone()
            } else {
                live.clone()
            },
        );
        tasks.push(tokio::spawn(async move {
            metrics::log_batch(
                &store,
                "t",
                run_id(&run),
                batch(vec![metric(step)], vec![], vec![]),
            )
            .await
        }));
    }
    let missing = {
        let store = store.clone();
        tokio::spawn(async move {
            metrics::log_batch(
                &store,
                "t",
                run_id(&"0".repeat(32)),
                batch(vec![metric(0)], vec![], vec![]),
            )
            .await
        })
    };
    let mut failures = 0;
    for (step, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => assert_ne!(step % 5, 0),
            Err(mltrail_store::StoreError::InvalidState(_)) => {
                assert_eq!(step % 5, 0);
                failures += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failures, 10);
    assert!(matches!(
        missing.await.unwrap(),
        Err(mltrail_store::StoreError::NotFound(_))
    ));
    let history = metrics::metric_history(&store, &run_id(&live), "m", 1000, Default::default())
        .await
        .unwrap();
    assert_eq!(history.items.len(), 40);
    assert!(
        metrics::metric_history(&store, &run_id(&dead), "m", 1000, Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let report = mltrail_store::audit::verify(&store).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_param_key_twice_is_refused_whole_unless_the_values_agree() {
    use mltrail_store::metrics;
    use mltrail_store::runs::{self, NewRun};

    let (_dir, store, exp) = store_with_experiment().await;
    let run = runs::create_run(
        &store,
        "t",
        NewRun {
            experiment_id: exp,
            user_id: "t".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .info
    .run_id;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: v.into(),
    };
    let conflicting = vec![kv("a", "1"), kv("lr", "0.1"), kv("lr", "0.2")];
    let err = metrics::log_batch(
        &store,
        "t",
        run_id(&run),
        batch(vec![], conflicting, vec![]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, mltrail_store::StoreError::InvalidParameter(ref m) if m.to_string().contains("'lr'")),
        "{err:?}"
    );
    assert!(
        runs::get_run(&store, &run_id(&run))
            .await
            .unwrap()
            .data
            .params
            .is_empty(),
        "a refused batch stores nothing"
    );
    metrics::log_batch(
        &store,
        "t",
        run_id(&run),
        batch(vec![], vec![kv("lr", "0.1"), kv("lr", "0.1")], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(
        runs::get_run(&store, &run_id(&run))
            .await
            .unwrap()
            .data
            .params,
        vec![kv("lr", "0.1")]
    );
    assert!(mltrail_store::audit::verify(&store)
        .await
        .unwrap()
        .broken
        .is_none());
    store.close().await;
}
