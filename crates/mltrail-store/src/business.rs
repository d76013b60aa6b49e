//! Business metrics (revenue, orders, request volume: time series the business pushes) and
//! annotations (periods a person marks as a campaign, an outage or a holiday, so the anomaly
//! monitors' baselines leave them out).
//!
//! A push of points is one audited batch (`business_points`, id `<metric>/<batch>`): a point
//! once stored is never rewritten, so a push that gives another value for a stored time is
//! refused and the trail proves which data a monitor learned from. An annotation is an audited
//! entity (`annotation`); deleting one keeps its row, marked deleted.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audited::{text_key, Audited};
use crate::error::{Conflict, Invalid, NotFound};
use crate::sql::{int, text};
use crate::{MetaStore, StoreError};

/// The latest time a point or an annotation may have: the end of year 9999.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// At most this many points per push (a request body stays reasonable; push more in turns).
pub const MAX_POINTS_PER_PUSH: usize = 100_000;

/// A metric name: 1–256 characters of letters, digits, `_`, `-` and `.`, not `.` or `..` (it is
/// one URL path segment in the API).
pub fn check_metric_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 256
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::MetricName(name.to_string()).into())
    }
}

/// A stored value: its bits, as pushed.
fn value_of(row: &AnyRow) -> Result<f64, StoreError> {
    Ok(f64::from_bits(int(row, "value_bits")? as u64))
}

/// One pushed batch of a metric's points, as the audit trail records it.
pub(crate) struct PointBatch {
    pub metric: String,
    pub batch_id: String,
}

/// A batch's recorded state: its points by time, as `[time_ms, value]`.
fn batch_state(points: &[(i64, f64)]) -> Value {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.0);
    json!(sorted
        .iter()
        .map(|(t, v)| json!([t, v]))
        .collect::<Vec<_>>())
}

impl Audited for PointBatch {
    const KIND: &'static str = "business_points";
    const LIST_IDS: &'static str =
        "SELECT DISTINCT metric || '/' || batch_id AS id FROM business_points";

    fn parse(id: &str) -> Option<Self> {
        let (metric, batch_id) = id.rsplit_once('/')?;
        Some(PointBatch {
            metric: metric.into(),
            batch_id: batch_id.into(),
        })
    }

    fn id(&self) -> String {
        format!("{}/{}", self.metric, self.batch_id)
    }

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT time_ms, value_bits FROM business_points WHERE metric = $1 AND batch_id = $2",
        )
        .bind(self.metric.clone())
        .bind(self.batch_id.clone())
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let points = rows
            .iter()
            .map(|r| Ok((int(r, "time_ms")?, value_of(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(batch_state(&points)))
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Pushed {
    /// Points stored now.
    pub added: usize,
    /// Points given again with the value already stored.
    pub unchanged: usize,
}

/// Stores `points` of `metric` (times in Unix milliseconds, finite values). A time stored
/// already must come with the same value (bit for bit): points are never rewritten.
pub async fn push_points(
    store: &MetaStore,
    actor: &str,
    metric: &str,
    points: Vec<(i64, f64)>,
) -> Result<Pushed, StoreError> {
    check_metric_name(metric)?;
    if points.len() > MAX_POINTS_PER_PUSH {
        return Err(Invalid::TooManyPoints(points.len()).into());
    }
    let mut given: HashMap<i64, f64> = HashMap::with_capacity(points.len());
    for (i, &(t, v)) in points.iter().enumerate() {
        if !v.is_finite() {
            return Err(Invalid::Point {
                index: i,
                why: "value must be a finite number".into(),
            }
            .into());
        }
        if !(0..=MAX_TIME_MS).contains(&t) {
            return Err(Invalid::Point {
                index: i,
                why: "time must be Unix milliseconds from 1970 to the end of year 9999".into(),
            }
            .into());
        }
        if let Some(other) = given.insert(t, v) {
            if other.to_bits() != v.to_bits() {
                return Err(Invalid::Point {
                    index: i,
                    why: format!("time {t} is given twice with different values"),
                }
                .into());
            }
        }
    }
    let metric = metric.to_string();
    store
        .transaction(actor, async move |tx, audit| {
            let (first, last) = (
                given.keys().min().copied().unwrap_or(0),
                given.keys().max().copied().unwrap_or(0),
            );
            let stored = sqlx::query(
                "SELECT time_ms, value_bits FROM business_points WHERE metric = $1 AND time_ms >= $2 AND time_ms <= $3",
            )
            .bind(metric.clone())
            .bind(first)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            let mut unchanged = 0;
            for row in &stored {
                let t = int(row, "time_ms")?;
                let Some(v) = given.remove(&t) else { continue };
                let old = value_of(row)?;
                if old.to_bits() != v.to_bits() {
                    return Err(Conflict::PointChanged {
                        metric: metric.clone(),
                        time_ms: t,
                        stored: old,
                        given: v,
                    }
                    .into());
                }
                unchanged += 1;
            }
            let mut new: Vec<(i64, f64)> = given.into_iter().collect();
            new.sort_by_key(|p| p.0);
            if new.is_empty() {
                return Ok(Pushed { added: 0, unchanged });
            }
            let batch_id = uuid::Uuid::now_v7().simple().to_string();
            for chunk in new.chunks(200) {
                // Another server's push of the same times may have landed since the check
                // above: those rows are left alone, and this push is refused as a whole.
                let sql = format!(
                    "INSERT INTO business_points (metric, time_ms, value_bits, batch_id) VALUES {} ON CONFLICT (metric, time_ms) DO NOTHING",
                    crate::sql::values_rows(tx, chunk.len(), 4)
                );
                // Only placeholders are formatted in; every value is bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for &(t, v) in chunk {
                    query = query
                        .bind(metric.clone())
                        .bind(t)
                        .bind(v.to_bits() as i64)
                        .bind(batch_id.clone());
                }
                let inserted = query.execute(&mut *tx).await?.rows_affected();
                if inserted != chunk.len() as u64 {
                    return Err(Conflict::ConcurrentPush(metric.clone()).into());
                }
            }
            let batch = PointBatch {
                metric: metric.clone(),
                batch_id,
            };
            audit.record(tx, "business_metric.push", &batch).await?;
            Ok(Pushed {
                added: new.len(),
                unchanged,
            })
        })
        .await
}

/// `metric`'s points with `from_ms <= time < to_ms`, by time.
pub async fn points(
    store: &MetaStore,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT time_ms, value_bits FROM business_points WHERE metric = $1 AND time_ms >= $2 AND time_ms < $3 ORDER BY time_ms",
    )
    .bind(metric.to_string())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(store.readers())
    .await?;
    rows.iter()
        .map(|r| Ok((int(r, "time_ms")?, value_of(r)?)))
        .collect()
}

/// A metric the business pushed: how many points, and their time span.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MetricSummary {
    pub name: String,
    pub points: i64,
    pub first_time: i64,
    pub last_time: i64,
}

pub async fn list_metrics(store: &MetaStore) -> Result<Vec<MetricSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT metric, count(*) AS points, min(time_ms) AS first_time, max(time_ms) AS last_time FROM business_points GROUP BY metric ORDER BY metric",
    )
    .fetch_all(store.readers())
    .await?;
    rows.iter()
        .map(|r| summary_of(text(r, "metric")?, r))
        .collect()
}

/// A summary from a row of `points`, `first_time` and `last_time`.
fn summary_of(name: String, row: &AnyRow) -> Result<MetricSummary, StoreError> {
    Ok(MetricSummary {
        name,
        points: int(row, "points")?,
        first_time: int(row, "first_time")?,
        last_time: int(row, "last_time")?,
    })
}

/// One metric's summary; not found when nothing was pushed.
pub async fn metric_summary(store: &MetaStore, name: &str) -> Result<MetricSummary, StoreError> {
    let row = sqlx::query(
        "SELECT count(*) AS points, min(time_ms) AS first_time, max(time_ms) AS last_time FROM business_points WHERE metric = $1",
    )
    .bind(name.to_string())
    .fetch_one(store.readers())
    .await?;
    if int(&row, "points")? == 0 {
        return Err(NotFound::BusinessMetric(name.to_string()).into());
    }
    summary_of(name.to_string(), &row)
}

/// What kind of period an annotation marks.
pub const ANNOTATION_KINDS: [&str; 5] = ["campaign", "outage", "holiday", "incident", "other"];

/// A period a person marked, for the metrics it names (all metrics when none).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Annotation {
    pub id: String,
    pub name: String,
    /// `campaign`, `outage`, `holiday`, `incident` or `other`.
    pub kind: String,
    /// `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The metrics it is about; empty: every metric.
    pub metrics: Vec<String>,
    pub note: String,
    /// `active` or `deleted`.
    pub status: String,
    pub created_time: i64,
    pub created_by: String,
}

impl Annotation {
    /// Whether it is about `metric`.
    pub fn covers(&self, metric: &str) -> bool {
        self.metrics.is_empty() || self.metrics.iter().any(|m| m == metric)
    }
}

/// An annotation as a person gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnnotation {
    pub name: String,
    pub kind: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub metrics: Vec<String>,
    pub note: String,
}

fn annotation_from_row(row: &AnyRow) -> Result<Annotation, StoreError> {
    let metrics: Vec<String> = serde_json::from_str(&text(row, "metrics_json")?).map_err(|e| {
        StoreError::from(Conflict::StoredJson {
            column: "metrics_json".into(),
            source: Arc::new(e),
        })
    })?;
    Ok(Annotation {
        id: text(row, "annotation_id")?,
        name: text(row, "name")?,
        kind: text(row, "kind")?,
        from_ms: int(row, "from_ms")?,
        to_ms: int(row, "to_ms")?,
        metrics,
        note: text(row, "note")?,
        status: text(row, "status")?,
        created_time: int(row, "created_time")?,
        created_by: text(row, "created_by")?,
    })
}

async fn find_annotation(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Annotation>, StoreError> {
    sqlx::query("SELECT * FROM annotations WHERE annotation_id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(annotation_from_row)
        .transpose()
}

/// An annotation, as the audit trail records it: the whole row.
pub(crate) struct AnnotationRef(pub String);

impl Audited for AnnotationRef {
    const KIND: &'static str = "annotation";
    const LIST_IDS: &'static str = "SELECT annotation_id AS id FROM annotations";

    text_key!(AnnotationRef);

    async fn state(&self, conn: &mut AnyConnection) -> Result<Option<Value>, StoreError> {
        find_annotation(conn, &self.0)
            .await?
            .as_ref()
            .map(crate::monitors::row_state)
            .transpose()
    }
}

/// Stores an annotation; every field is checked (the error names it).
pub async fn create_annotation(
    store: &MetaStore,
    actor: &str,
    new: NewAnnotation,
) -> Result<Annotation, StoreError> {
    let bad = |field: &'static str, why: String| Invalid::Annotation { field, why };
    if new.name.trim().is_empty() || new.name.chars().count() > 256 {
        return Err(bad("name", "must be 1 to 256 characters".into()).into());
    }
    if !ANNOTATION_KINDS.contains(&new.kind.as_str()) {
        return Err(bad(
            "kind",
            format!(
                "must be one of {}, got `{}`",
                ANNOTATION_KINDS.join(", "),
                new.kind
            ),
        )
        .into());
    }
    if !(0..=MAX_TIME_MS).contains(&new.from_ms) {
        return Err(bad(
            "from",
            "must be a time from 1970 to the end of year 9999".into(),
        )
        .into());
    }
    if new.to_ms > MAX_TIME_MS {
        return Err(bad("to", "must be a time before the end of year 9999".into()).into());
    }
    if new.to_ms <= new.from_ms {
        return Err(bad("to", "must be after `from`".into()).into());
    }
    for metric in &new.metrics {
        check_metric_name(metric)
            .map_err(|_| bad("metrics", format!("`{metric}` is not a metric name")))?;
    }
    if new.note.chars().count() > 10_000 {
        return Err(bad("note", "must be at most 10000 characters".into()).into());
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    let user = actor.to_string();
    store
        .audited(
            actor,
            "annotation.create",
            AnnotationRef(id.clone()),
            async move |tx| {
                sqlx::query("INSERT INTO annotations (annotation_id, name, kind, from_ms, to_ms, metrics_json, note, status, created_time, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9)")
                    .bind(id.clone())
                    .bind(new.name)
                    .bind(new.kind)
                    .bind(new.from_ms)
                    .bind(new.to_ms)
                    .bind(serde_json::to_string(&new.metrics).unwrap_or_else(|_| "[]".into()))
                    .bind(new.note)
                    .bind(mltrail_core::now_millis())
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                find_annotation(tx, &id)
                    .await?
                    .ok_or_else(|| NotFound::Annotation(id.clone()).into())
            },
        )
        .await
}

/// Active annotations overlapping `[from_ms, to_ms)` that are about `metric` (every one when
/// `None`), oldest first; deleted ones too when asked.
pub async fn list_annotations(
    store: &MetaStore,
    metric: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    include_deleted: bool,
) -> Result<Vec<Annotation>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM annotations WHERE from_ms < $1 AND to_ms > $2 AND ($3 = 1 OR status = 'active') ORDER BY from_ms, annotation_id",
    )
    .bind(to_ms)
    .bind(from_ms)
    .bind(i64::from(include_deleted))
    .fetch_all(store.readers())
    .await?;
    let all = rows
        .iter()
        .map(annotation_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(all
        .into_iter()
        .filter(|a| metric.is_none_or(|m| a.covers(m)))
        .collect())
}

pub async fn get_annotation(store: &MetaStore, id: &str) -> Result<Annotation, StoreError> {
    let mut conn = store.readers().acquire().await?;
    find_annotation(&mut conn, id)
        .await?
        .ok_or_else(|| NotFound::Annotation(id.to_string()).into())
}

/// Marks an annotation deleted: baselines learn from its period again. Its row stays.
pub async fn delete_annotation(store: &MetaStore, actor: &str, id: &str) -> Result<(), StoreError> {
    let id = id.to_string();
    store
        .audited(
            actor,
            "annotation.delete",
            AnnotationRef(id.clone()),
            async move |tx| {
                let changed = sqlx::query(
                    "UPDATE annotations SET status = 'deleted' WHERE annotation_id = $1 AND status = 'active'",
                )
                .bind(id.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Err(NotFound::Annotation(id.clone()).into());
                }
                Ok(())
            },
        )
        .await
}
