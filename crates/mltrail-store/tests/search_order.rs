//! Runs ordered by one metric, param or tag key are read in two parts (those with a value, then
//! the others): every page, at every size and offset, must be exactly MLflow's order — by the
//! value, then (whatever the direction) runs whose metric is NaN, then runs without the key;
//! ties newest first, then by id. Runs ordered by two keys take the single query: the same.

use mltrail_core::state::ViewType;
use mltrail_store::metrics::{self, Batch, NewMetric};
use mltrail_store::records::PageToken;
use mltrail_store::runs::{self, NewRun};
use mltrail_store::{KeyValue, MetaStore, StoreConfig};
use std::cmp::Ordering;

/// What one run holds: its start time, its metric `m` (`None`: not logged) and its param `p`.
struct Made {
    id: String,
    start: i64,
    metric: Option<f64>,
    param: Option<String>,
}

async fn pages(
    store: &MetaStore,
    exp: mltrail_core::ExperimentId,
    order: &[&str],
    size: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = PageToken::default();
    loop {
        let page = runs::search_runs(
            store,
            &[exp],
            "",
            ViewType::ActiveOnly,
            size,
            &order.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            token,
        )
        .await
        .unwrap();
        out.extend(page.items.iter().map(|r| r.info.run_id.clone()));
        match page.next_page_token {
            Some(next) => token = PageToken::parse(Some(&next)).unwrap(),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_ordered_by_one_key_follow_mlflows_order_at_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&StoreConfig::new(format!(
        "sqlite:///{}/m.db",
        dir.path().display()
    )))
    .await
    .unwrap();
    let exp = mltrail_store::experiments::create_experiment(&store, "t", "e".into(), None, vec![])
        .await
        .unwrap();
    let mut made = Vec::new();
    for i in 0..23i64 {
        // Ties in value (i % 5), in start time (i / 2), missing values and NaN.
        let metric = match i % 7 {
            0 => None,
            1 => Some(f64::NAN),
            _ => Some((i % 5) as f64 - 1.5),
        };
        let param = (i % 4 != 0).then(|| format!("v{}", i % 3));
        let start = 1_000 + i / 2;
        let run = runs::create_run(
            &store,
            "t",
            NewRun {
                experiment_id: exp,
                user_id: "t".into(),
                start_time: Some(start),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let id = run.info.run_id.clone();
        let metrics = metric
            .map(|value| {
                vec![NewMetric {
                    key: "m".into(),
                    value,
                    timestamp: 1,
                    step: 0,
                    model_id: None,
                }]
            })
            .unwrap_or_default();
        let params = param
            .iter()
            .map(|v| KeyValue {
                key: "p".into(),
                value: v.clone(),
            })
            .collect();
        if let Some(batch) = Batch::new(metrics, params, vec![]).unwrap() {
            metrics::log_batch(&store, "t", mltrail_core::RunId::parse(&id).unwrap(), batch)
                .await
                .unwrap();
        }
        made.push(Made {
            id,
            start,
            metric,
            param,
        });
    }
    // MLflow's order for one key, written out.
    let expected = |by_metric: bool, ascending: bool| -> Vec<String> {
        let mut runs: Vec<&Made> = made.iter().collect();
        runs.sort_by(|a, b| {
            let value = |m: &Made| -> Option<Result<f64, String>> {
                if by_metric {
                    m.metric.filter(|v| !v.is_nan()).map(Ok)
                } else {
                    m.param.clone().map(Err)
                }
            };
            // MLflow's rank: a value, then a NaN metric, then no key.
            let rank = |m: &Made| match (by_metric, m.metric, &m.param) {
                (true, Some(v), _) if v.is_nan() => 1,
                (true, None, _) | (false, _, None) => 2,
                _ => 0,
            };
            let by_value = match (value(a), value(b)) {
                (None, None) => rank(a).cmp(&rank(b)),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = match (x, y) {
                        (Ok(x), Ok(y)) => x.total_cmp(&y),
                        (Err(x), Err(y)) => x.cmp(&y),
                        _ => unreachable!("one kind per key"),
                    };
                    if ascending {
                        o
                    } else {
                        o.reverse()
                    }
                }
            };
            by_value.then(b.start.cmp(&a.start)).then(a.id.cmp(&b.id))
        });
        runs.iter().map(|m| m.id.clone()).collect()
    };
    for (order, by_metric, ascending) in [
        ("metrics.m DESC", true, false),
        ("metrics.m ASC", true, true),
        ("params.p DESC", false, false),
        ("params.p ASC", false, true),
    ] {
        let want = expected(by_metric, ascending);
        for size in [1, 2, 3, 5, 7, 23, 50] {
            assert_eq!(
                pages(&store, exp, &[order], size).await,
                want,
                "{order}, pages of {size}"
            );
        }
        // With a second term (start_time, which the order ends with anyway) the query is the
        // single one: the same order.
        let two = [order, "attributes.start_time DESC"];
        assert_eq!(
            pages(&store, exp, &two, 4).await,
            want,
            "{order} then start_time"
        );
    }
}
