//! Business metrics and annotations in the store: a push is one audited batch, a stored point is
//! never rewritten, values come back bit for bit, annotations are audited and deleting one keeps
//! its row; the trail verifies, and a point rewritten in the database is caught.

use mltrail_store::business::{self, NewAnnotation, Pushed};
use mltrail_store::{audit, MetaStore, StoreConfig, StoreErrorKind};
use sqlx::Connection;

async fn store(dir: &tempfile::TempDir) -> MetaStore {
    MetaStore::open(&StoreConfig::new(format!(
        "sqlite:///{}/m.db",
        dir.path().display()
    )))
    .await
    .unwrap()
}

async fn verifies(store: &MetaStore) {
    let report = audit::verify(store).await.unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_are_kept_exactly_and_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let points = vec![(3_000, 0.1 + 0.2), (1_000, -0.0), (2_000, 1e-300)];
    let pushed = business::push_points(&store, "user:ana", "revenue", points.clone())
        .await
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            added: 3,
            unchanged: 0
        }
    );
    let back = business::points(&store, "revenue", 0, 10_000)
        .await
        .unwrap();
    let bits = |p: &[(i64, f64)]| p.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
    let mut sorted = points.clone();
    sorted.sort_by_key(|p| p.0);
    assert_eq!(bits(&back), bits(&sorted));
    // Again, plus one new point: only the new one is stored.
    let mut again = points.clone();
    again.push((4_000, 5.0));
    assert_eq!(
        business::push_points(&store, "user:ana", "revenue", again)
            .await
            .unwrap(),
        Pushed {
            added: 1,
            unchanged: 3
        }
    );
    // Another value for a stored time (0.0 is not -0.0) is refused, and changes nothing.
    let refused = business::push_points(&store, "user:ana", "revenue", vec![(1_000, 0.0)])
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::InvalidState);
    assert!(refused.to_string().contains("never rewritten"), "{refused}");
    for bad in [
        vec![(1, f64::NAN)],
        vec![(-1, 1.0)],
        vec![(1, 1.0), (1, 2.0)],
    ] {
        let e = business::push_points(&store, "user:ana", "revenue", bad)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::InvalidParameter, "{e}");
    }
    assert!(
        business::push_points(&store, "user:ana", "re/venue", vec![])
            .await
            .is_err()
    );
    let listed = business::list_metrics(&store).await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].points, listed[0].first_time),
        (1, 4, 1_000)
    );
    let events = audit::list_events(&store, None, None, 100).await.unwrap();
    let pushes: Vec<_> = events
        .iter()
        .filter(|e| e.event.action == "business_metric.push")
        .collect();
    assert_eq!(pushes.len(), 2, "one event per push that stored points");
    verifies(&store).await;

    // An annotation, deleted: the row stays, marked, and both changes are events.
    let made = business::create_annotation(
        &store,
        "user:ana",
        NewAnnotation {
            name: "spring campaign".into(),
            kind: "campaign".into(),
            from_ms: 1_500,
            to_ms: 2_500,
            metrics: vec!["revenue".into()],
            note: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        business::list_annotations(&store, Some("revenue"), 0, 2_000, false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        business::list_annotations(&store, Some("orders"), 0, 2_000, false)
            .await
            .unwrap()
            .is_empty(),
        "about revenue only"
    );
    assert!(
        business::list_annotations(&store, Some("revenue"), 2_500, 9_000, false)
            .await
            .unwrap()
            .is_empty(),
        "[from, to): it ends where 2_500 starts"
    );
    let bad = NewAnnotation {
        name: "x".into(),
        kind: "party".into(),
        from_ms: 1,
        to_ms: 2,
        metrics: vec![],
        note: String::new(),
    };
    let e = business::create_annotation(&store, "user:ana", bad)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`kind`"), "{e}");
    business::delete_annotation(&store, "user:bo", &made.id)
        .await
        .unwrap();
    assert!(business::list_annotations(&store, None, 0, 9_000, false)
        .await
        .unwrap()
        .is_empty());
    let kept = business::get_annotation(&store, &made.id).await.unwrap();
    assert_eq!(kept.status, "deleted");
    assert!(business::delete_annotation(&store, "user:bo", &made.id)
        .await
        .is_err());
    verifies(&store).await;

    // A point rewritten in the database no longer digests to what its push recorded.
    store.close().await;
    let raw = format!("sqlite://{}/m.db", dir.path().display());
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&raw).await.unwrap();
    sqlx::query("UPDATE business_points SET value_bits = 4621537642612260864 WHERE time_ms = 4000")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = self::store(&dir).await;
    let broken = audit::verify(&store).await.unwrap().broken.expect("caught");
    assert_eq!(broken.entity_type, "business_points");
    assert!(broken.entity_id.starts_with("revenue/"));
}
