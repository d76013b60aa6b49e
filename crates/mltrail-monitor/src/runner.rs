//! The monitors' engine, run by `mltrail server`: every window of each active monitor, once it
//! is `delay` old, is read from the deployment's archived prediction log, compared with the
//! reference (feature drift, prediction drift, performance once labels arrived), stored, and
//! checked against the monitor's alert rules. Alerts go to the structured log at once and to an
//! [`AlertSink`] (the server's webhooks), which must never block monitoring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mltrail_artifacts::ArtifactStore;
use mltrail_core::artifact_path::{parse_proxy_uri, ArtifactPath};
use mltrail_data::table::{self, Table, Values as Cells};
use mltrail_store::datasets::{self, VersionRef};
use mltrail_store::monitors::{self, Alert, AlertState, Monitor, MonitorResult, WindowStatus};
use mltrail_store::{registry, MetaStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::compare::{compare_prepared, prepare, CompareOptions, Comparison, PreparedReference};
use crate::performance::{self, Labelled, Outcome};
use crate::rules::{Rule, Values};
use crate::window::{prediction_table, OutputNames, Window};

/// Where alerts go besides the log. Implementations deliver in the background.
pub trait AlertSink: Send + Sync {
    fn notify(&self, alert: &Alert, webhooks: &[String]);
}

/// What a monitor's `config` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Alert rules as written (`drift_share >= 0.3 for 2`).
    #[serde(default)]
    pub alerts: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Input columns left out of feature drift (ids, timestamps).
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_drift_share() -> f64 {
    0.5
}

/// The rule every monitor has when it was given none: tell when the dataset drifts.
pub const DEFAULT_ALERT: &str = "dataset_drift == 1";

impl MonitorConfig {
    /// Checks what a user asked for; the error names the offending field.
    pub fn validate(&mut self) -> Result<Vec<Rule>, (&'static str, String)> {
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return Err((
                "drift_share",
                format!("drift_share must be in (0, 1], got {}", self.drift_share),
            ));
        }
        if self.alerts.is_empty() {
            self.alerts.push(DEFAULT_ALERT.into());
        }
        let rules = self
            .alerts
            .iter()
            .map(|a| Rule::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("alerts", e))?;
        for url in &self.webhooks {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err((
                    "webhooks",
                    format!("webhook `{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(rules)
    }
}

/// What a monitor compares with: the served version's training data, or a dataset version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSpec {
    Training,
    Dataset(VersionRef),
}

impl ReferenceSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "training" {
            return Ok(ReferenceSpec::Training);
        }
        text.parse().map(ReferenceSpec::Dataset).map_err(|_| {
            format!("reference `{text}` is neither `training` nor a dataset version NAME@VERSION")
        })
    }
}

/// Milliseconds in `90s`, `15m`, `1h` or `7d`.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration such as 30s, 15m, 1h or 1d");
    let unit = t.chars().last().ok_or_else(bad)?;
    let scale = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(bad()),
    };
    let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(scale).ok_or_else(bad)
}

/// The start of the window that holds `time` (windows are aligned to the epoch, so hourly
/// windows start on the hour).
pub fn window_start(time_ms: i64, window_ms: i64) -> i64 {
    time_ms.div_euclid(window_ms) * window_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_windows() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert!(parse_duration_ms("1w").is_err());
        assert!(parse_duration_ms("-5m").is_err());
        assert!(parse_duration_ms("").is_err());
        assert_eq!(window_start(7_250_000, 3_600_000), 7_200_000);
    }

    #[test]
    fn configs_are_checked_field_by_field() {
        let mut c: MonitorConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c.validate().unwrap().len(), 1, "the default rule");
        assert_eq!(c.alerts, [DEFAULT_ALERT]);
        let mut c: MonitorConfig =
            serde_json::from_value(json!({"webhooks": ["ftp://x"]})).unwrap();
        assert_eq!(c.validate().unwrap_err().0, "webhooks");
        let mut c: MonitorConfig = serde_json::from_value(json!({"drift_share": 0})).unwrap();
        assert_eq!(c.validate().unwrap_err().0, "drift_share");
        assert_eq!(
            ReferenceSpec::parse("training"),
            Ok(ReferenceSpec::Training)
        );
        assert_eq!(
            ReferenceSpec::parse("credit@2"),
            Ok(ReferenceSpec::Dataset(VersionRef {
                name: "credit".into(),
                version: 2
            }))
        );
        for bad in ["credit", "credit@0", "@2", "credit@x"] {
            assert!(ReferenceSpec::parse(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("artifact store: {0}")]
    Artifacts(String),
    #[error("{0}")]
    Reference(String),
    #[error("{0}")]
    Data(String),
}

/// A dataset version loaded for comparison.
struct Reference {
    label: String,
    table: Table,
    target: Option<String>,
    schema: Json,
    /// The table prepared (typed and sorted) once per set of column options.
    prepared: Mutex<HashMap<String, Arc<PreparedReference>>>,
}

impl Reference {
    /// The reference prepared for `options`, computed on first use.
    async fn prepared(
        self: &Arc<Self>,
        options: &CompareOptions,
    ) -> Result<Arc<PreparedReference>, MonitorError> {
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}",
            options.columns, options.exclude, options.categorical, options.numerical
        );
        if let Some(hit) = self.prepared.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        let (this, opts) = (self.clone(), options.clone());
        let prepared = tokio::task::spawn_blocking(move || prepare(this.table.clone(), &opts))
            .await
            .map_err(|e| MonitorError::Data(e.to_string()))?
            .map_err(|e| MonitorError::Data(e.to_string()))?;
        let prepared = Arc::new(prepared);
        if let Ok(mut m) = self.prepared.lock() {
            m.insert(key, prepared.clone());
        }
        Ok(prepared)
    }
}

/// A model version as a monitor needs it: how to read its outputs, and what it predicts on the
/// reference (with its quality there when the reference has a target).
struct ScoredReference {
    names: OutputNames,
    /// The model's predictions on the reference, prepared for comparison.
    predictions: Arc<PreparedReference>,
    performance: Option<std::collections::BTreeMap<String, f64>>,
}

/// (model, version, reference dataset version).
type ScoredKey = (String, String, String);

/// Reference rows scored for prediction drift (the first rows of a bigger reference).
pub const MAX_SCORED_REFERENCE_ROWS: usize = 100_000;

/// Windows evaluated per monitor per pass, so a long backlog does not starve other monitors.
const MAX_WINDOWS_PER_PASS: usize = 50;

pub struct Engine {
    store: MetaStore,
    artifacts: ArtifactStore,
    sink: Arc<dyn AlertSink>,
    references: Mutex<HashMap<VersionRef, Arc<Reference>>>,
    /// Scored references; `None` when the model cannot score it.
    scored: Mutex<HashMap<ScoredKey, Option<Arc<ScoredReference>>>>,
    /// Archived file → the (min, max) record time in it, so later windows skip it unread.
    file_ranges: Mutex<HashMap<String, (i64, i64)>>,
}

fn artifacts_err(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Artifacts(e.to_string())
}

impl Engine {
    pub fn new(store: MetaStore, artifacts: ArtifactStore, sink: Arc<dyn AlertSink>) -> Self {
        Engine {
            store,
            artifacts,
            sink,
            references: Mutex::new(HashMap::new()),
            scored: Mutex::new(HashMap::new()),
            file_ranges: Mutex::new(HashMap::new()),
        }
    }

    /// Evaluates every due window until `shutdown` resolves, checking every `poll`.
    pub async fn run(
        self: Arc<Self>,
        poll: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut shutdown = shutdown;
        loop {
            if let Err(e) = self.pass(mltrail_core::now_millis()).await {
                tracing::warn!(error = %e, "monitor pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass: evaluates the windows that are due at `now`. Returns how many were evaluated.
    pub async fn pass(&self, now: i64) -> Result<usize, MonitorError> {
        let mut evaluated = 0;
        for monitor in monitors::list_monitors(&self.store, None, false).await? {
            let mut start = monitor.next_window_start;
            for _ in 0..MAX_WINDOWS_PER_PASS {
                let end = start + monitor.spec.window_ms;
                if end + monitor.spec.delay_ms > now {
                    break;
                }
                // A monitor whose storage fails is retried next pass; the others go on.
                if let Err(e) = self.evaluate(&monitor, start, end).await {
                    tracing::warn!(monitor = %monitor.id, deployment = %monitor.spec.deployment, window_start = start, error = %e, "monitor window not evaluated; retrying next pass");
                    break;
                }
                evaluated += 1;
                start = end;
            }
        }
        Ok(evaluated)
    }

    /// Evaluates one window, stores the result with its alerts, and hands the alerts on.
    async fn evaluate(&self, monitor: &Monitor, start: i64, end: i64) -> Result<(), MonitorError> {
        let mut config: MonitorConfig = serde_json::from_value(monitor.spec.config.clone())
            .map_err(|e| MonitorError::Data(format!("monitor config: {e}")))?;
        let rules = config.validate().map_err(|(_, e)| MonitorError::Data(e))?;
        let labels_until = end + monitor.spec.delay_ms;
        let mut window = self
            .read_window(&monitor.spec.deployment, start, end, labels_until)
            .await?;
        let rows = window.rows() as i64;
        let (status, result) = if rows == 0 {
            (WindowStatus::NoData, json!({"values": {"rows": 0}}))
        } else {
            match self.compare_window(monitor, &config, &mut window).await {
                Ok(result) => (WindowStatus::Ok, result),
                Err(e) => {
                    tracing::warn!(monitor = %monitor.id, deployment = %monitor.spec.deployment, window_start = start, error = %e, "monitor window could not be compared");
                    (
                        WindowStatus::Error,
                        json!({"error": e.to_string(), "values": {"rows": rows, "error": 1}}),
                    )
                }
            }
        };
        let values = values_of(&result);
        // The windows with data before this one, newest first, for "for N" rules: windows
        // without predictions (a quiet night) neither count nor break a streak.
        let longest = rules.iter().map(|r| r.windows).max().unwrap_or(1) as i64;
        let history = monitors::recent_with_data(&self.store, &monitor.id, longest).await?;
        let history_values: Vec<Option<Values>> =
            history.iter().map(|r| Some(values_of(&r.result))).collect();
        let previous: Vec<Option<&Values>> = history_values.iter().map(Option::as_ref).collect();
        let now = mltrail_core::now_millis();
        let alerts: Vec<Alert> = rules
            .iter()
            .zip(&config.alerts)
            .filter(|_| status != WindowStatus::NoData)
            .filter_map(|(rule, text)| {
                let state = if rule.fires(&values, &previous) {
                    AlertState::Firing
                } else if rule.resolves(&values, &previous) {
                    AlertState::Resolved
                } else {
                    return None;
                };
                let value = values.get(&rule.metric).copied();
                let drifted: Vec<&str> = result["features"]
                    .as_array()
                    .map(|cols| {
                        cols.iter()
                            .filter(|c| c["drifted"] == true)
                            .filter_map(|c| c["column"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Alert {
                    id: uuid::Uuid::now_v7().simple().to_string().into(),
                    monitor_id: monitor.id.clone(),
                    deployment: monitor.spec.deployment.clone(),
                    rule: text.clone(),
                    state,
                    window_start: start,
                    window_end: end,
                    details: json!({
                        "message": format!(
                            "{}: {}{} (value {}) in the window {} – {}{}",
                            monitor.spec.deployment,
                            if state == AlertState::Resolved { "resolved: " } else { "" },
                            text,
                            value.map_or("-".into(), |v| format!("{v:.4}")),
                            mltrail_serving::archive::utc_timestamp(start),
                            mltrail_serving::archive::utc_timestamp(end),
                            match (result["error"].as_str(), drifted.is_empty()) {
                                (Some(e), _) => format!("; the window could not be compared: {e}"),
                                (None, false) => format!("; drifted: {}", drifted.join(", ")),
                                (None, true) => String::new(),
                            },
                        ),
                        "metric": rule.metric, "value": value, "threshold": rule.threshold,
                        "windows": rule.windows, "drifted_columns": drifted,
                        "reference": result["reference"], "rows": rows,
                        "report": format!("/api/v1/monitors/{}/windows/{start}/report", monitor.id),
                    }),
                    fired_time: now,
                })
            })
            .collect();
        let stored = MonitorResult {
            monitor_id: monitor.id.clone(),
            window_start: start,
            window_end: end,
            rows,
            status,
            result,
            computed_time: now,
        };
        monitors::record_window(&self.store, stored, alerts.clone()).await?;
        for alert in &alerts {
            match alert.state {
                AlertState::Firing => tracing::warn!(
                    target: "mltrail::alert",
                    alert = %alert.id, monitor = %alert.monitor_id, deployment = %alert.deployment,
                    rule = %alert.rule, window_start = alert.window_start, window_end = alert.window_end,
                    value = %alert.details["value"], drifted_columns = %alert.details["drifted_columns"],
                    "alert fired"
                ),
                AlertState::Resolved => tracing::info!(
                    target: "mltrail::alert",
                    alert = %alert.id, monitor = %alert.monitor_id, deployment = %alert.deployment,
                    rule = %alert.rule, window_start = alert.window_start, window_end = alert.window_end,
                    value = %alert.details["value"],
                    "alert resolved"
                ),
            }
            if !config.webhooks.is_empty() {
                self.sink.notify(alert, &config.webhooks);
            }
        }
        Ok(())
    }

    /// Feature drift, prediction drift and performance of one window with predictions.
    async fn compare_window(
        &self,
        monitor: &Monitor,
        config: &MonitorConfig,
        window: &mut Window,
    ) -> Result<Json, MonitorError> {
        let (model, version) = window
            .main_version()
            .ok_or_else(|| MonitorError::Data("no prediction names its model".into()))?;
        let spec =
            ReferenceSpec::parse(&monitor.spec.reference).map_err(MonitorError::Reference)?;
        let reference_version = self.resolve(&spec, &model, &version).await?;
        let reference = self.reference(&reference_version).await?;

        let options = feature_options(config, &reference, false);
        let current = window.take_inputs();
        let prepared = reference.prepared(&options).await?;
        let features =
            tokio::task::spawn_blocking(move || compare_prepared(&prepared, current, &options))
                .await
                .map_err(|e| MonitorError::Data(e.to_string()))?
                .map_err(|e| MonitorError::Data(e.to_string()))?;

        let mut values = Values::new();
        values.insert("rows".into(), window.rows() as f64);
        values.insert("error".into(), 0.0);
        values.insert("drift_share".into(), features.dataset.share);
        values.insert(
            "drifted_columns".into(),
            features.dataset.drifted_columns as f64,
        );
        values.insert(
            "dataset_drift".into(),
            f64::from(u8::from(features.dataset.drift)),
        );
        for c in &features.columns {
            values.insert(
                format!("feature_drift.{}", c.drift.column),
                c.drift.p_value.unwrap_or(c.drift.statistic),
            );
            values.insert(
                format!("feature_drifted.{}", c.drift.column),
                f64::from(u8::from(c.drift.drifted)),
            );
        }

        // Scored only once the window's inputs compared: a reference the inputs do not match
        // is not worth running the model on.
        let scored = self.scored_reference(&model, &version, &reference).await;
        let mut prediction = Json::Null;
        let mut performance = Json::Null;
        if let Some(scored) = &scored {
            let current = window.predictions(&scored.names);
            let reference_predictions = scored.predictions.clone();
            let drift = tokio::task::spawn_blocking(move || {
                compare_prepared(&reference_predictions, current, &CompareOptions::default())
            })
            .await
            .map_err(|e| MonitorError::Data(e.to_string()))?;
            match drift {
                Ok(Comparison { columns, .. }) if !columns.is_empty() => {
                    let c = &columns[0];
                    values.insert(
                        "prediction_drift".into(),
                        c.drift.p_value.unwrap_or(c.drift.statistic),
                    );
                    values.insert(
                        "prediction_drifted".into(),
                        f64::from(u8::from(c.drift.drifted)),
                    );
                    prediction = column_json(c);
                }
                Ok(_) => {}
                Err(e) => prediction = json!({"error": e.to_string()}),
            }
            let labelled: Vec<Labelled> = window.labelled(&scored.names);
            values.insert("labelled_rows".into(), labelled.len() as f64);
            if !labelled.is_empty() {
                let current = performance::metrics(&labelled);
                for (k, v) in &current {
                    values.insert(k.clone(), *v);
                    if let Some(r) = scored.performance.as_ref().and_then(|p| p.get(k)) {
                        values.insert(format!("{k}_delta"), v - r);
                    }
                }
                performance = json!({
                    "labelled_rows": labelled.len(),
                    "metrics": current,
                    "reference": scored.performance,
                });
            }
        }
        Ok(json!({
            "reference": reference.label,
            "model": model,
            "versions": window.versions(),
            "features": features.columns.iter().map(column_json).collect::<Vec<_>>(),
            "dataset": {
                "drifted_columns": features.dataset.drifted_columns,
                "share": features.dataset.share,
                "drift": features.dataset.drift,
                "drift_share": config.drift_share,
            },
            "not_logged": features.only_in_reference,
            "prediction": prediction,
            "performance": performance,
            "values": values,
        }))
    }

    /// One evaluated window as the HTML drift report (a histogram per input column), recomputed
    /// from the archived log against the reference the window was compared with.
    pub async fn window_report(
        &self,
        monitor: &Monitor,
        result: &MonitorResult,
    ) -> Result<String, MonitorError> {
        let reference_name = result.result["reference"].as_str().ok_or_else(|| {
            MonitorError::Reference("the window was not compared with a reference".into())
        })?;
        let reference_version: VersionRef =
            reference_name.parse().map_err(MonitorError::Reference)?;
        let config: MonitorConfig = serde_json::from_value(monitor.spec.config.clone())
            .map_err(|e| MonitorError::Data(format!("monitor config: {e}")))?;
        let reference = self.reference(&reference_version).await?;
        let labels_until = result.window_end + monitor.spec.delay_ms;
        let mut window = self
            .read_window(
                &monitor.spec.deployment,
                result.window_start,
                result.window_end,
                labels_until,
            )
            .await?;
        let options = feature_options(&config, &reference, true);
        let current = window.take_inputs();
        let prepared = reference.prepared(&options).await?;
        let comparison =
            tokio::task::spawn_blocking(move || compare_prepared(&prepared, current, &options))
                .await
                .map_err(|e| MonitorError::Data(e.to_string()))?
                .map_err(|e| MonitorError::Data(e.to_string()))?;
        let pairs: Vec<_> = comparison
            .columns
            .into_iter()
            .filter_map(|c| c.histogram.map(|h| (c.drift, h)))
            .collect();
        let title = format!(
            "{reference_name} → {} window {} – {} ({} predictions)",
            monitor.spec.deployment,
            mltrail_serving::archive::utc_timestamp(result.window_start),
            mltrail_serving::archive::utc_timestamp(result.window_end),
            window.rows()
        );
        Ok(crate::report::html(
            &title,
            &pairs,
            &comparison.dataset,
            config.drift_share,
        ))
    }

    /// Checks that a monitor's reference can be compared with, as far as can be known now: a
    /// dataset version must exist with its rows stored; `training` is checked against the model
    /// version the deployment serves, when it serves one already.
    pub async fn check_reference(
        &self,
        spec: &ReferenceSpec,
        served: Option<(&str, &str)>,
    ) -> Result<(), MonitorError> {
        let version = match (spec, served) {
            (ReferenceSpec::Dataset(v), _) => v.clone(),
            (ReferenceSpec::Training, Some((model, version))) => {
                self.resolve(spec, model, version).await?
            }
            (ReferenceSpec::Training, None) => return Ok(()),
        };
        self.stored_rows(&version).await.map(|_| ())
    }

    /// The dataset version a window is compared with: `training` becomes the one the served
    /// model version was trained on.
    async fn resolve(
        &self,
        spec: &ReferenceSpec,
        model: &str,
        version: &str,
    ) -> Result<VersionRef, MonitorError> {
        if let ReferenceSpec::Dataset(v) = spec {
            return Ok(v.clone());
        }
        let number = registry::parse_version(version)?;
        let mv = registry::get_model_version(&self.store, model, number).await?;
        let tag = mv
            .tags
            .iter()
            .find(|t| t.key == registry::TRAINING_DATA_TAG)
            .ok_or_else(|| {
                MonitorError::Reference(format!(
                    "model version {model}/{version} records no training data; register it with --training-data NAME@VERSION or give the monitor a dataset version as reference"
                ))
            })?;
        tag.value.parse().map_err(MonitorError::Reference)
    }

    /// A dataset version whose rows are stored (versions logged by `mlflow.log_input` have none).
    async fn stored_rows(
        &self,
        version: &VersionRef,
    ) -> Result<datasets::DatasetVersion, MonitorError> {
        let dv = datasets::get_version(&self.store, version).await?;
        if !dv.file.has_rows() {
            return Err(MonitorError::Reference(format!(
                "dataset version {version} was logged by mlflow.log_input, so its rows are not stored; add the file with `mltrail data add` and use that version (register the model with --training-data, or give it as the monitor's reference)"
            )));
        }
        Ok(dv)
    }

    async fn reference(&self, version: &VersionRef) -> Result<Arc<Reference>, MonitorError> {
        if let Some(r) = self
            .references
            .lock()
            .ok()
            .and_then(|m| m.get(version).cloned())
        {
            return Ok(r);
        }
        let dv = self.stored_rows(version).await?;
        let path = ArtifactPath::parse(&dv.file.source).map_err(artifacts_err)?;
        let bytes = self.artifacts.get(&path).await.map_err(artifacts_err)?;
        let file_name = dv.file.file_name.clone();
        let table = tokio::task::spawn_blocking(move || -> Result<Table, MonitorError> {
            let dir = tempfile::tempdir().map_err(|e| MonitorError::Data(e.to_string()))?;
            let local = dir.path().join(&file_name);
            std::fs::write(&local, &bytes).map_err(|e| MonitorError::Data(e.to_string()))?;
            table::read(&local).map_err(|e| MonitorError::Data(e.to_string()))
        })
        .await
        .map_err(|e| MonitorError::Data(e.to_string()))??;
        let reference = Arc::new(Reference {
            label: version.to_string(),
            table,
            target: dv.file.target.clone(),
            schema: dv.file.schema.clone(),
            prepared: Mutex::new(HashMap::new()),
        });
        if let Ok(mut m) = self.references.lock() {
            m.insert(version.clone(), reference.clone());
        }
        Ok(reference)
    }

    /// The served model version's predictions on the reference, computed once per pair. A
    /// model that cannot be loaded or scored leaves prediction drift and performance out (the
    /// reason is logged once).
    async fn scored_reference(
        &self,
        model: &str,
        version: &str,
        reference: &Arc<Reference>,
    ) -> Option<Arc<ScoredReference>> {
        let key = (
            model.to_string(),
            version.to_string(),
            reference.label.clone(),
        );
        if let Some(hit) = self.scored.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let scored = match self
            .score_reference(model, version, reference.clone())
            .await
        {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(model, version, reference = %reference.label, error = %e, "prediction drift and performance are off for this model version");
                None
            }
        };
        if let Ok(mut m) = self.scored.lock() {
            m.insert(key, scored.clone());
        }
        scored
    }

    async fn score_reference(
        &self,
        model: &str,
        version: &str,
        reference: Arc<Reference>,
    ) -> Result<ScoredReference, MonitorError> {
        let number = registry::parse_version(version)?;
        let mv = registry::get_model_version(&self.store, model, number).await?;
        let uri = registry::resolve_source(&self.store, &mv.source).await?;
        let root = parse_proxy_uri(&uri)
            .ok_or_else(|| {
                MonitorError::Reference(format!(
                    "model files at `{uri}` are outside the artifact store"
                ))
            })?
            .map_err(artifacts_err)?;
        let (onnx, mlmodel) = self.find_model_files(&root).await?;
        let bytes = self.artifacts.get(&onnx).await.map_err(artifacts_err)?;
        let mut names = None;
        if let Some(mlmodel) = mlmodel {
            let text = self.artifacts.get(&mlmodel).await.map_err(artifacts_err)?;
            if let Some(inputs) = mltrail_serving::signature::mlmodel_signature_inputs(
                &String::from_utf8_lossy(&text),
            ) {
                names = mltrail_serving::signature::mlflow_column_names(&inputs)
                    .map_err(MonitorError::Data)?;
            }
        }
        if let Some(tag) = mv.tags.iter().find(|t| t.key == "mltrail.signature") {
            names = mltrail_serving::signature::mlflow_column_names(&tag.value)
                .map_err(MonitorError::Data)?;
        }
        tokio::task::spawn_blocking(move || score(&bytes, names, &reference))
            .await
            .map_err(|e| MonitorError::Data(e.to_string()))?
    }

    /// The `.onnx` file (and `MLmodel`) directly under a model's root or one folder down.
    async fn find_model_files(
        &self,
        root: &ArtifactPath,
    ) -> Result<(ArtifactPath, Option<ArtifactPath>), MonitorError> {
        let join = |dir: &ArtifactPath, name: &str| {
            ArtifactPath::parse(&format!("{}/{name}", dir.as_str())).map_err(artifacts_err)
        };
        let mut dirs = vec![root.clone()];
        let mut depth = 0;
        while depth < 2 && !dirs.is_empty() {
            let mut next = Vec::new();
            for dir in &dirs {
                let listing = self.artifacts.list(dir).await.map_err(artifacts_err)?;
                if let Some(f) = listing
                    .iter()
                    .find(|f| !f.is_dir && f.path.ends_with(".onnx"))
                {
                    let mlmodel = listing
                        .iter()
                        .find(|f| !f.is_dir && f.path.ends_with("MLmodel"))
                        .map(|f| join(dir, &f.path))
                        .transpose()?;
                    return Ok((join(dir, &f.path)?, mlmodel));
                }
                for f in listing.iter().filter(|f| f.is_dir) {
                    next.push(join(dir, &f.path)?);
                }
            }
            dirs = next;
            depth += 1;
        }
        Err(MonitorError::Reference(format!(
            "no .onnx file under {root}"
        )))
    }

    /// A deployment's window, read from the archived files of its days (and the day before,
    /// for segments that crossed midnight). Each file is decoded on a blocking thread and folded
    /// into the window, so memory follows the window's columns, not its JSON.
    async fn read_window(
        &self,
        deployment: &str,
        start: i64,
        end: i64,
        labels_until: i64,
    ) -> Result<Window, MonitorError> {
        let root =
            ArtifactPath::parse(&format!("predictions/{deployment}")).map_err(artifacts_err)?;
        let first_day = mltrail_serving::archive::utc_date((start - 86_400_000).max(0) as u64);
        let last_day = mltrail_serving::archive::utc_date(labels_until.max(0) as u64);
        let mut files = Vec::new();
        for day in self.artifacts.list(&root).await.map_err(artifacts_err)? {
            if !day.is_dir || day.path < first_day || day.path > last_day {
                continue;
            }
            let dir =
                ArtifactPath::parse(&format!("{root}/{}", day.path)).map_err(artifacts_err)?;
            for f in self.artifacts.list(&dir).await.map_err(artifacts_err)? {
                if !f.is_dir && f.path.ends_with(".parquet") {
                    files.push(format!("{dir}/{}", f.path));
                }
            }
        }
        let mut window = Window::new(start, end, labels_until);
        for file in files {
            let known = self
                .file_ranges
                .lock()
                .ok()
                .and_then(|m| m.get(&file).copied());
            if let Some((min, max)) = known {
                if max < start || min >= labels_until {
                    continue;
                }
            }
            let path = ArtifactPath::parse(&file).map_err(artifacts_err)?;
            let bytes = self.artifacts.get(&path).await.map_err(artifacts_err)?;
            let name = file.clone();
            let (w, range) = tokio::task::spawn_blocking(move || {
                let mut range = (i64::MAX, i64::MIN);
                let mut w = window;
                mltrail_serving::archive::visit_parquet(bytes, |r| {
                    if let Some(t) = r.time_ms {
                        range = (range.0.min(t), range.1.max(t));
                    }
                    w.visit(r);
                })
                .map(|_| (w, range))
                .map_err(|e| MonitorError::Data(format!("{name}: {e}")))
            })
            .await
            .map_err(|e| MonitorError::Data(e.to_string()))??;
            window = w;
            if let Ok(mut m) = self.file_ranges.lock() {
                m.insert(file, range);
            }
        }
        Ok(window)
    }
}

/// How a monitor compares inputs with its reference: the monitor's settings, the reference's
/// declared column types, and its target left out.
fn feature_options(
    config: &MonitorConfig,
    reference: &Reference,
    histograms: bool,
) -> CompareOptions {
    let mut options = CompareOptions {
        drift_share: config.drift_share,
        exclude: config.exclude.clone(),
        histograms,
        ..Default::default()
    };
    options.follow_schema(&reference.schema);
    options.exclude.extend(reference.target.clone());
    options
}

/// A stored result's `values` (what rules and gauges read).
fn values_of(result: &Json) -> Values {
    result["values"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn column_json(c: &crate::compare::ColumnComparison) -> Json {
    json!({
        "column": c.drift.column, "column_type": c.kind.name(), "method": c.drift.method.name(),
        "statistic": c.drift.statistic, "p_value": c.drift.p_value,
        "score": c.drift.p_value.unwrap_or(c.drift.statistic),
        "threshold": c.drift.threshold, "drifted": c.drift.drifted,
    })
}

/// One reference cell as the scoring request carries it.
fn cell(values: &Cells, row: usize) -> Json {
    match values {
        Cells::Numeric { values, integer } => {
            let v = values[row];
            if !v.is_finite() {
                Json::Null
            } else if *integer && v.fract() == 0.0 && v.abs() < 9e15 {
                Json::from(v as i64)
            } else {
                Json::from(v)
            }
        }
        Cells::Text { labels, codes } => match codes[row] {
            table::MISSING => Json::Null,
            c => Json::from(labels[c as usize].clone()),
        },
    }
}

/// Runs the model on the reference rows (the serving path: same decoding, same kernels).
fn score(
    onnx: &[u8],
    names: Option<Vec<String>>,
    reference: &Reference,
) -> Result<ScoredReference, MonitorError> {
    use mltrail_serving::runtime::Model;
    use mltrail_serving::signature::Signature;
    let data = |e: String| MonitorError::Data(e);
    let model = Model::load(onnx).map_err(|e| data(e.to_string()))?;
    let signature = Signature::from_model(&model, names).map_err(data)?;
    let output_names = model.output_names();
    let names = OutputNames::from_model_outputs(&output_names)
        .ok_or_else(|| data("the model has no outputs".into()))?;
    let columns = signature.column_names();
    let source: Vec<&Cells> = columns
        .iter()
        .map(|c| {
            reference
                .table
                .column(c)
                .map(|col| &col.values)
                .ok_or_else(|| {
                    data(format!(
                        "the reference has no column `{c}`, which the model reads"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let rows = reference.table.rows.min(MAX_SCORED_REFERENCE_ROWS);
    let keys = mltrail_serving::response::json_keys(&output_names);
    let mut outputs_per_row: Vec<Map<String, Json>> = Vec::with_capacity(rows);
    // Batches keep the request tables small.
    for chunk_start in (0..rows).step_by(10_000) {
        let chunk_end = (chunk_start + 10_000).min(rows);
        let data_rows: Vec<Json> = (chunk_start..chunk_end)
            .map(|r| Json::Array(source.iter().map(|v| cell(v, r)).collect()))
            .collect();
        let body = json!({"dataframe_split": {"columns": columns, "data": data_rows}});
        let decoded = mltrail_serving::request::decode(body, &model, &signature)
            .map_err(|e| data(format!("scoring the reference: {e}")))?;
        let n = decoded.rows;
        let outputs = model
            .run(decoded.tensors)
            .map_err(|e| data(format!("scoring the reference: {e}")))?;
        for r in 0..n {
            let mut text = Vec::new();
            mltrail_serving::response::row_json(&keys, &outputs, r, n, &mut text);
            let row: Map<String, Json> =
                serde_json::from_slice(&text).map_err(|e| data(e.to_string()))?;
            outputs_per_row.push(row);
        }
    }
    let predictions = prepare(
        prediction_table(outputs_per_row.iter().map(|o| names.prediction(o))),
        &CompareOptions::default(),
    )
    .map_err(|e| data(e.to_string()))?;
    let performance = reference
        .target
        .as_ref()
        .and_then(|t| reference.table.column(t))
        .map(|target| {
            let labelled: Vec<Labelled> = outputs_per_row
                .iter()
                .enumerate()
                .filter_map(|(r, o)| {
                    Some(Labelled {
                        predicted: Outcome::from_json(&names.prediction(o)?)?,
                        score: names.score(o),
                        actual: Outcome::from_json(&cell(&target.values, r))?,
                    })
                })
                .collect();
            performance::metrics(&labelled)
        });
    Ok(ScoredReference {
        names,
        predictions: Arc::new(predictions),
        performance,
    })
}
