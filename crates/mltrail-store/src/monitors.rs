//! Monitors (what to watch on which deployment, against which reference), their per-window
//! results and the alerts they fired. Creating and deleting a monitor, every stored result and
//! every alert are audit events, so "was the drift seen, and who was told" can be proven later.
//! How far a monitor has got (`next_window_start`) is bookkeeping, outside the audited state.

use crate::error::{Conflict, Invalid, NotFound};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use std::sync::Arc;

use crate::audited::{text_key, Audited};
use crate::sql::{int, text};
use crate::{MetaStore, StoreError};
use mltrail_core::{now_millis, AlertId, MonitorId};

/// What a monitor watches. `config` holds what the monitor engine interprets (drift share,
/// alert rules, webhooks); the store keeps it as given.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonitorSpec {
    /// The deployment watched; empty for a monitor of a business metric.
    pub deployment: String,
    /// The business metric watched (`business`), instead of a deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub window_ms: i64,
    pub delay_ms: i64,
    /// `training` (the served version's training data) or a dataset version `NAME@VERSION`.
    pub reference: String,
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Monitor {
    #[schema(value_type = String)]
    pub id: MonitorId,
    #[serde(flatten)]
    pub spec: MonitorSpec,
    /// `active` or `deleted`.
    pub status: String,
    pub created_time: i64,
    pub created_by: String,
    /// The start of the next window to evaluate.
    pub next_window_start: i64,
}

/// How a window's evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    /// Compared; the verdicts are in the result.
    Ok,
    /// No prediction in the window.
    NoData,
    /// The window could not be compared; the reason is in the result.
    Error,
}

impl WindowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowStatus::Ok => "ok",
            WindowStatus::NoData => "no_data",
            WindowStatus::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "ok" => Ok(WindowStatus::Ok),
            "no_data" => Ok(WindowStatus::NoData),
            "error" => Ok(WindowStatus::Error),
            other => Err(Conflict::StoredValue {
                what: "window status",
                value: other.to_string(),
                expected: "ok, no_data or error",
            }
            .into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonitorResult {
    #[schema(value_type = String)]
    pub monitor_id: MonitorId,
    pub window_start: i64,
    pub window_end: i64,
    pub rows: i64,
    pub status: WindowStatus,
    pub result: serde_json::Value,
    pub computed_time: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    #[schema(value_type = String)]
    pub id: AlertId,
    #[schema(value_type = String)]
    pub monitor_id: MonitorId,
    pub deployment: String,
    /// The rule as written, e.g. `drift_share >= 0.3 for 2`.
    pub rule: String,
    /// Whether the rule started firing or stopped.
    pub state: AlertState,
    pub window_start: i64,
    pub window_end: i64,
    /// What fired: the message, the values, the drifted columns and the report path. Webhook
    /// URLs stay out: every receiver gets this, and a URL may carry a secret token.
    pub details: serde_json::Value,
    pub fired_time: i64,
}

/// An alert is sent when a rule starts firing, and again when its condition stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(Conflict::StoredValue {
                what: "alert state",
                value: other.to_string(),
                expected: "firing or resolved",
            }
            .into()),
        }
    }
}

fn json_col(row: &AnyRow, col: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&text(row, col)?).map_err(|e| {
        StoreError::from(Conflict::StoredJson {
            column: col.to_string(),
            source: Arc::new(e),
        })
    })
}

pub(crate) fn monitor_from_row(row: &AnyRow) -> Result<Monitor, StoreError> {
    Ok(Monitor {
        id: text(row, "monitor_id")?.into(),
        spec: MonitorSpec {
            deployment: text(row, "deployment")?,
            metric: crate::sql::opt_text(row, "metric")?,
            window_ms: int(row, "window_ms")?,
            delay_ms: int(row, "delay_ms")?,
            reference: text(row, "reference")?,
            config: json_col(row, "config_json")?,
        },
        status: text(row, "status")?,
        created_time: int(row, "created_time")?,
        created_by: text(row, "created_by")?,
        next_window_start: int(row, "next_window_start")?,
    })
}

pub(crate) fn result_from_row(row: &AnyRow) -> Result<MonitorResult, StoreError> {
    Ok(MonitorResult {
        monitor_id: text(row, "monitor_id")?.into(),
        window_start: int(row, "window_start")?,
        window_end: int(row, "window_end")?,
        rows: int(row, "row_count")?,
        status: WindowStatus::parse(&text(row, "status")?)?,
        result: json_col(row, "result_json")?,
        computed_time: int(row, "computed_time")?,
    })
}

pub(crate) fn alert_from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    Ok(Alert {
        id: text(row, "alert_id")?.into(),
        monitor_id: text(row, "monitor_id")?.into(),
        deployment: text(row, "deployment")?,
        rule: text(row, "rule")?,
        state: AlertState::parse(&text(row, "state")?)?,
        window_start: int(row, "window_start")?,
        window_end: int(row, "window_end")?,
        details: json_col(row, "details_json")?,
        fired_time: int(row, "fired_time")?,
    })
}

pub(crate) async fn find_monitor(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Monitor>, StoreError> {
    sqlx::query("SELECT * FROM monitors WHERE monitor_id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(monitor_from_row)
        .transpose()
}

pub(crate) async fn find_result(
    conn: &mut AnyConnection,
    monitor_id: &str,
    window_start: i64,
) -> Result<Option<MonitorResult>, StoreError> {
    sqlx::query("SELECT * FROM monitor_results WHERE monitor_id = $1 AND window_start = $2")
        .bind(monitor_id.to_string())
        .bind(window_start)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(result_from_row)
        .transpose()
}

pub(crate) async fn find_alert(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Alert>, StoreError> {
    sqlx::query("SELECT * FROM alerts WHERE alert_id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(alert_from_row)
        .transpose()
}

/// The audited state of a result or an alert: the whole row.
pub(crate) fn row_state<T: Serialize>(row: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(row).map_err(|e| Conflict::Unserializable(Arc::new(e)).into())
}

/// The audited state of a monitor: everything but its progress.
pub(crate) fn monitor_state(m: &Monitor) -> serde_json::Value {
    serde_json::json!({"spec": m.spec, "status": m.status, "created_time": m.created_time, "created_by": m.created_by})
}

/// A monitor, as the audit trail records it: everything but its progress.
pub(crate) struct MonitorRef(pub String);

impl Audited for MonitorRef {
    const KIND: &'static str = "monitor";
    const LIST_IDS: &'static str = "SELECT monitor_id AS id FROM monitors";

    text_key!(MonitorRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(find_monitor(conn, &self.0)
            .await?
            .as_ref()
            .map(monitor_state))
    }
}

/// One evaluated window of a monitor (`MONITOR/WINDOW_START`), recorded whole.
pub(crate) struct MonitorResultRef {
    pub monitor_id: String,
    pub window_start: i64,
}

impl Audited for MonitorResultRef {
    const KIND: &'static str = "monitor_result";
    const LIST_IDS: &'static str =
        "SELECT monitor_id || '/' || CAST(window_start AS TEXT) AS id FROM monitor_results";

    fn parse(id: &str) -> Option<Self> {
        let (monitor_id, start) = id.rsplit_once('/')?;
        Some(MonitorResultRef {
            monitor_id: monitor_id.into(),
            window_start: start.parse().ok()?,
        })
    }

    fn id(&self) -> String {
        format!("{}/{}", self.monitor_id, self.window_start)
    }

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        find_result(conn, &self.monitor_id, self.window_start)
            .await?
            .as_ref()
            .map(row_state)
            .transpose()
    }
}

/// An alert a monitor fired, recorded whole.
pub(crate) struct AlertRef(pub String);

impl Audited for AlertRef {
    const KIND: &'static str = "alert";
    const LIST_IDS: &'static str = "SELECT alert_id AS id FROM alerts";

    text_key!(AlertRef);

    async fn state(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        find_alert(conn, &self.0)
            .await?
            .as_ref()
            .map(row_state)
            .transpose()
    }
}

/// Stores a new monitor whose first window starts at `first_window_start`.
pub async fn create_monitor(
    store: &MetaStore,
    actor: &str,
    spec: MonitorSpec,
    first_window_start: i64,
) -> Result<Monitor, StoreError> {
    match &spec.metric {
        Some(metric) if spec.deployment.is_empty() => crate::business::check_metric_name(metric)?,
        Some(_) => return Err(Invalid::MonitorTarget.into()),
        None if spec.deployment.is_empty() || crate::names::chars(&spec.deployment) > 256 => {
            return Err(Invalid::Deployment.into())
        }
        None => {}
    }
    if spec.window_ms < 1000 {
        return Err(Invalid::Window(spec.window_ms).into());
    }
    if spec.delay_ms < 0 {
        return Err(Invalid::Delay.into());
    }
    let id = MonitorId::generate().into_inner();
    let user = actor.to_string();
    store
        .audited(actor, "monitor.create", MonitorRef(id.clone()), async move |tx| {
            sqlx::query("INSERT INTO monitors (monitor_id, deployment, window_ms, delay_ms, reference, config_json, status, created_time, created_by, next_window_start, metric) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10)")
                .bind(id.clone())
                .bind(spec.deployment.clone())
                .bind(spec.window_ms)
                .bind(spec.delay_ms)
                .bind(spec.reference.clone())
                .bind(spec.config.to_string())
                .bind(now_millis())
                .bind(user)
                .bind(first_window_start)
                .bind(spec.metric.clone())
                .execute(&mut *tx)
                .await?;
            find_monitor(tx, &id)
                .await?
                .ok_or_else(|| Conflict::MonitorVanished(id.clone()).into())
        })
        .await
}

pub async fn get_monitor(store: &MetaStore, id: &MonitorId) -> Result<Monitor, StoreError> {
    let id = id.as_str();
    let mut conn = store.readers().acquire().await?;
    find_monitor(&mut conn, id)
        .await?
        .ok_or_else(|| NotFound::Monitor(id.to_string()).into())
}

/// Monitors, oldest first; deleted ones only when asked.
pub async fn list_monitors(
    store: &MetaStore,
    deployment: Option<&str>,
    include_deleted: bool,
) -> Result<Vec<Monitor>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM monitors WHERE ($1 = '' OR deployment = $1) AND ($2 = 1 OR status = 'active') ORDER BY created_time, monitor_id",
    )
    .bind(deployment.unwrap_or_default().to_string())
    .bind(i64::from(include_deleted))
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(monitor_from_row).collect()
}

/// Stops a monitor. Its results and alerts stay.
pub async fn delete_monitor(
    store: &MetaStore,
    actor: &str,
    id: &MonitorId,
) -> Result<(), StoreError> {
    let id = id.as_str().to_string();
    store
        .audited(actor, "monitor.delete", MonitorRef(id.clone()), async move |tx| {
            let changed = sqlx::query("UPDATE monitors SET status = 'deleted' WHERE monitor_id = $1 AND status = 'active'")
                .bind(id.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                return Err(NotFound::ActiveMonitor(id.clone()).into());
            }
            Ok(())
        })
        .await
}

/// Stores one window's result (and the alerts it fired) and moves the monitor past the window,
/// in one transaction: a window is evaluated once, and its alerts exist only with its result.
pub async fn record_window(
    store: &MetaStore,
    result: MonitorResult,
    alerts: Vec<Alert>,
) -> Result<bool, StoreError> {
    store
        .transaction("monitor", async move |tx, audit| {
            // A claim that lapsed during a long evaluation lets a second engine evaluate the
            // same window; whichever records second changes nothing and says so.
            let inserted = sqlx::query("INSERT INTO monitor_results (monitor_id, window_start, window_end, row_count, status, result_json, computed_time) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (monitor_id, window_start) DO NOTHING")
                .bind(result.monitor_id.as_str().to_string())
                .bind(result.window_start)
                .bind(result.window_end)
                .bind(result.rows)
                .bind(result.status.as_str())
                .bind(result.result.to_string())
                .bind(result.computed_time)
                .execute(&mut *tx)
                .await?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            audit
                .record(tx, "monitor.result", &MonitorResultRef { monitor_id: result.monitor_id.as_str().to_string(), window_start: result.window_start })
                .await?;
            for alert in alerts {
                sqlx::query("INSERT INTO alerts (alert_id, monitor_id, deployment, rule, state, window_start, window_end, details_json, fired_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(alert.id.as_str().to_string())
                    .bind(alert.monitor_id.into_inner())
                    .bind(alert.deployment)
                    .bind(alert.rule)
                    .bind(alert.state.as_str())
                    .bind(alert.window_start)
                    .bind(alert.window_end)
                    .bind(alert.details.to_string())
                    .bind(alert.fired_time)
                    .execute(&mut *tx)
                    .await?;
                let action = match alert.state {
                    AlertState::Firing => "alert.fire",
                    AlertState::Resolved => "alert.resolve",
                };
                audit.record(tx, action, &AlertRef(alert.id.into_inner())).await?;
            }
            sqlx::query("UPDATE monitors SET next_window_start = $1, claimed_by = NULL, claimed_until = NULL WHERE monitor_id = $2")
                .bind(result.window_end)
                .bind(result.monitor_id.into_inner())
                .execute(&mut *tx)
                .await?;
            Ok(true)
        })
        .await
}

/// Claims the window starting at `start` for `claimant` (one monitor engine) until `until`:
/// true when it is to evaluate the window; false when the window was recorded already or
/// another engine holds an unexpired claim. An engine that dies while evaluating loses its
/// claim at `until`.
pub async fn claim_window(
    store: &MetaStore,
    monitor_id: &MonitorId,
    start: i64,
    claimant: &str,
    now: i64,
    until: i64,
) -> Result<bool, StoreError> {
    let (monitor_id, claimant) = (monitor_id.as_str().to_string(), claimant.to_string());
    store
        .transaction("monitor", async move |tx, _audit| {
            let claimed = sqlx::query("UPDATE monitors SET claimed_by = $1, claimed_until = $2 WHERE monitor_id = $3 AND next_window_start = $4 AND (claimed_until IS NULL OR claimed_until < $5 OR claimed_by = $1)")
                .bind(claimant)
                .bind(until)
                .bind(monitor_id)
                .bind(start)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Ok(claimed.rows_affected() == 1)
        })
        .await
}

/// Gives up `claimant`'s claim on the window starting at `start` (its evaluation failed), so
/// the next pass of any engine retries it. Another engine's claim is left alone.
pub async fn release_window(
    store: &MetaStore,
    monitor_id: &MonitorId,
    start: i64,
    claimant: &str,
) -> Result<(), StoreError> {
    let (monitor_id, claimant) = (monitor_id.as_str().to_string(), claimant.to_string());
    store
        .transaction("monitor", async move |tx, _audit| {
            sqlx::query("UPDATE monitors SET claimed_by = NULL, claimed_until = NULL WHERE monitor_id = $1 AND next_window_start = $2 AND claimed_by = $3")
                .bind(monitor_id)
                .bind(start)
                .bind(claimant)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
}

/// One window's result.
pub async fn get_result(
    store: &MetaStore,
    monitor_id: &MonitorId,
    window_start: i64,
) -> Result<MonitorResult, StoreError> {
    let monitor_id = monitor_id.as_str();
    let mut conn = store.readers().acquire().await?;
    find_result(&mut conn, monitor_id, window_start)
        .await?
        .ok_or_else(|| {
            NotFound::Window {
                monitor_id: monitor_id.to_string(),
                window_start,
            }
            .into()
        })
}

/// The latest results of one monitor that had predictions (what alert rules look back on),
/// newest first.
pub async fn recent_with_data(
    store: &MetaStore,
    monitor_id: &MonitorId,
    limit: i64,
) -> Result<Vec<MonitorResult>, StoreError> {
    let monitor_id = monitor_id.as_str();
    let rows = sqlx::query(
        "SELECT * FROM monitor_results WHERE monitor_id = $1 AND status <> 'no_data' ORDER BY window_start DESC LIMIT $2",
    )
    .bind(monitor_id.to_string())
    .bind(limit)
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(result_from_row).collect()
}

/// Results of one monitor, newest first.
pub async fn list_results(
    store: &MetaStore,
    monitor_id: &MonitorId,
    limit: i64,
) -> Result<Vec<MonitorResult>, StoreError> {
    let monitor_id = monitor_id.as_str();
    let rows = sqlx::query(
        "SELECT * FROM monitor_results WHERE monitor_id = $1 ORDER BY window_start DESC LIMIT $2",
    )
    .bind(monitor_id.to_string())
    .bind(limit)
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(result_from_row).collect()
}

/// How many alerts a monitor has fired (resolutions not counted).
pub async fn count_alerts(store: &MetaStore, monitor_id: &MonitorId) -> Result<i64, StoreError> {
    let monitor_id = monitor_id.as_str();
    Ok(
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM alerts WHERE monitor_id = $1 AND state = 'firing'",
        )
        .bind(monitor_id.to_string())
        .fetch_one(store.readers())
        .await?,
    )
}

/// Alerts, newest first, of one monitor or of all.
pub async fn list_alerts(
    store: &MetaStore,
    monitor_id: Option<&MonitorId>,
    limit: i64,
) -> Result<Vec<Alert>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE ($1 = '' OR monitor_id = $1) ORDER BY fired_time DESC, alert_id DESC LIMIT $2",
    )
    .bind(monitor_id.map(MonitorId::as_str).unwrap_or_default().to_string())
    .bind(limit)
    .fetch_all(store.readers())
    .await?;
    rows.iter().map(alert_from_row).collect()
}

/// Audit kind of webhook deliveries: their state is the receiver's, so only the chain link is
/// checked.
pub const DELIVERY_KIND: &str = "alert_delivery";

/// Records how telling one webhook about an alert ended (delivered, or given up after retries).
pub async fn record_delivery(
    store: &MetaStore,
    alert_id: &AlertId,
    url: &str,
    delivered: bool,
    attempts: u32,
) -> Result<(), StoreError> {
    let action = if delivered {
        "alert.delivered"
    } else {
        "alert.undelivered"
    };
    let digest = mltrail_core::audit::state_digest(
        &serde_json::json!({"alert": alert_id, "url": url, "delivered": delivered, "attempts": attempts}),
    );
    let id = alert_id.to_string();
    store
        .transaction("monitor", async move |tx, audit| {
            audit
                .record_external(tx, action, DELIVERY_KIND, &id, Some(digest))
                .await
        })
        .await
}
