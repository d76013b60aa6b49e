//! The tracking server's `/metrics`: every monitor's latest window as gauges, alerts fired and
//! webhook deliveries as counters, through the `prometheus-client` crate (OpenMetrics text).
//!
//! Besides: requests and latency by route and status (`http_metrics.rs`), the store's writer
//! (group sizes and durations, queue depth) and the database's size on disk.
//!
//! The monitor gauges are read from the store at each scrape (the store holds the latest
//! window of every monitor; nothing is cached in the server), into a registry built for that
//! scrape.

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use mltrail_store::monitors;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ApiResult;
use crate::AppState;

/// The exposition format of `/metrics` (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MonitorLabels {
    deployment: String,
    monitor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabels {
    deployment: String,
    monitor: String,
    feature: String,
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    deployment: String,
    monitor: String,
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PerformanceLabels {
    deployment: String,
    monitor: String,
    metric: String,
}

/// A business metric monitor's window value (`drops`, `expected`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BusinessLabels {
    business_metric: String,
    monitor: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FairnessLabels {
    deployment: String,
    monitor: String,
    /// `demographic_parity_difference`, `equalized_odds_ratio`, …
    metric: String,
    /// The sensitive column, or crossed columns (`sex_x_age_group`).
    sensitive: String,
}

type Score = Gauge<f64, AtomicU64>;

pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&state).await?,
    ))
}

/// The server's gauges as OpenMetrics text, read from the store now: what `/metrics` answers
/// and what an OTLP exporter sends.
pub async fn render(state: &AppState) -> ApiResult<String> {
    let mut registry = Registry::default();
    let features = Family::<FeatureLabels, Score>::default();
    let drifted = Family::<FeatureLabels, Gauge>::default();
    let share = Family::<MonitorLabels, Score>::default();
    let dataset = Family::<MonitorLabels, Gauge>::default();
    let prediction = Family::<MethodLabels, Score>::default();
    let performance = Family::<PerformanceLabels, Score>::default();
    let fairness = Family::<FairnessLabels, Score>::default();
    let rows = Family::<MonitorLabels, Gauge>::default();
    let window_error = Family::<MonitorLabels, Gauge>::default();
    let window_end = Family::<MonitorLabels, Gauge>::default();
    let alerts = Family::<MonitorLabels, Counter>::default();
    let business = Family::<BusinessLabels, Score>::default();
    for m in monitors::list_monitors(&state.store, None, false).await? {
        let base = MonitorLabels {
            deployment: m.spec.deployment.clone(),
            monitor: m.id.as_str().to_string(),
        };
        let fired = monitors::count_alerts(&state.store, &m.id).await?;
        alerts
            .get_or_create(&base)
            .inc_by(u64::try_from(fired).unwrap_or(0));
        let Some(latest) = monitors::list_results(&state.store, &m.id, 1)
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        rows.get_or_create(&base).set(latest.rows);
        let failed = latest.status == monitors::WindowStatus::Error;
        window_error.get_or_create(&base).set(i64::from(failed));
        window_end
            .get_or_create(&base)
            .set(latest.window_end / 1000);
        let r = &latest.result;
        if let Some(metric) = &m.spec.metric {
            for (value, v) in r["values"].as_object().into_iter().flatten() {
                if let Some(v) = v.as_f64() {
                    business
                        .get_or_create(&BusinessLabels {
                            business_metric: metric.clone(),
                            monitor: base.monitor.clone(),
                            value: value.clone(),
                        })
                        .set(v);
                }
            }
            continue;
        }
        for c in r["features"].as_array().into_iter().flatten() {
            let labels = FeatureLabels {
                deployment: base.deployment.clone(),
                monitor: base.monitor.clone(),
                feature: c["column"].as_str().unwrap_or_default().to_string(),
                method: c["method"].as_str().unwrap_or_default().to_string(),
            };
            if let Some(score) = c["score"].as_f64() {
                features.get_or_create(&labels).set(score);
            }
            drifted
                .get_or_create(&labels)
                .set(i64::from(c["drifted"] == true));
        }
        if let Some(s) = r["dataset"]["share"].as_f64() {
            share.get_or_create(&base).set(s);
            dataset
                .get_or_create(&base)
                .set(i64::from(r["dataset"]["drift"] == true));
        }
        if let Some(score) = r["prediction"]["score"].as_f64() {
            prediction
                .get_or_create(&MethodLabels {
                    deployment: base.deployment.clone(),
                    monitor: base.monitor.clone(),
                    method: r["prediction"]["method"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
                .set(score);
        }
        for (name, value) in r["values"].as_object().into_iter().flatten() {
            let Some((metric, sensitive)) = name.split_once('.') else {
                continue;
            };
            if let (true, Some(v)) = (
                mltrail_monitor::rules::FAIRNESS_METRICS.contains(&metric),
                value.as_f64(),
            ) {
                fairness
                    .get_or_create(&FairnessLabels {
                        deployment: base.deployment.clone(),
                        monitor: base.monitor.clone(),
                        metric: metric.to_string(),
                        sensitive: sensitive.to_string(),
                    })
                    .set(v);
            }
        }
        for (metric, value) in r["performance"]["metrics"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if let Some(v) = value.as_f64() {
                performance
                    .get_or_create(&PerformanceLabels {
                        deployment: base.deployment.clone(),
                        monitor: base.monitor.clone(),
                        metric: metric.clone(),
                    })
                    .set(v);
            }
        }
    }
    registry.register(
        "mltrail_fairness",
        "Fairness across the groups of a sensitive column in the latest window: demographic parity over all predictions, equalized odds and equal opportunity over labelled ones (differences and ratios between groups).",
        fairness,
    );
    registry.register(
        "mltrail_business_metric_window",
        "A business metric monitor's latest window: points judged, anomalies, drops, spikes, observed and expected (means), deviation, annotated and unjudged points, received.",
        business,
    );
    registry.register("mltrail_feature_drift", "Drift score of an input feature in the latest window: the p-value for statistical tests, the distance otherwise.", features);
    registry.register(
        "mltrail_feature_drifted",
        "1 when the feature drifted in the latest window.",
        drifted,
    );
    registry.register(
        "mltrail_dataset_drift_share",
        "Share of input features that drifted in the latest window.",
        share,
    );
    registry.register(
        "mltrail_dataset_drift",
        "1 when the share of drifted features reached the monitor's drift share.",
        dataset,
    );
    registry.register(
        "mltrail_prediction_drift",
        "Drift score of the model's predictions in the latest window.",
        prediction,
    );
    registry.register(
        "mltrail_model_performance",
        "Model quality on the latest window's labelled predictions.",
        performance,
    );
    registry.register(
        "mltrail_monitor_window_rows",
        "Predictions in the monitor's latest window.",
        rows,
    );
    registry.register(
        "mltrail_monitor_window_error",
        "1 when the monitor's latest window could not be compared (the reason is in its result).",
        window_error,
    );
    registry.register(
        "mltrail_monitor_window_end_seconds",
        "End of the monitor's latest evaluated window (Unix time).",
        window_end,
    );
    registry.register(
        "mltrail_alerts_fired",
        "Alerts the monitor has fired (resolutions not counted).",
        alerts,
    );
    let loaded = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    loaded.set(i64::try_from(state.monitors.loaded_references()).unwrap_or(i64::MAX));
    registry.register(
        "mltrail_monitor_references_loaded",
        "Reference datasets the monitors keep in memory (at most [monitor] reference_cache).",
        loaded,
    );
    state.webhooks.counters().register(&mut registry);
    state.auth.counters.register(&mut registry);
    register_own(state, &mut registry).await;
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    Ok(out)
}

/// The server's own series (requests by route, the writer, the database's size) into
/// `registry`: part of `/metrics`, and all of the web UI's server page.
async fn register_own(state: &AppState, registry: &mut Registry) {
    state.http.register(registry);
    state.store.register_metrics(registry);
    let size = state.store.storage_size().await;
    for (name, help, bytes) in [
        (
            "mltrail_store_database",
            "Size of the metadata database on disk (the SQLite file; PostgreSQL's pg_database_size)",
            size.database_bytes,
        ),
        (
            "mltrail_store_wal",
            "Size of the write-ahead log (SQLite's -wal file; PostgreSQL's pg_wal folder, readable by a superuser or pg_monitor)",
            size.wal_bytes,
        ),
    ] {
        if let Some(bytes) = bytes {
            let gauge = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
            registry.register_with_unit(name, help, prometheus_client::registry::Unit::Bytes, gauge);
        }
    }
}

/// The server's own series alone, as OpenMetrics text (the web UI's server page).
pub async fn own_text(state: &AppState) -> String {
    let mut registry = Registry::default();
    register_own(state, &mut registry).await;
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
