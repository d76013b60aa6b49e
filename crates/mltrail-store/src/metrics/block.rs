//! How metric values are stored. History is stored in blocks: one row per (run, key, model id) and request, holding
//! that request's points packed. A 1,000-value `log-batch` over ten keys writes ten rows instead
//! of a thousand; per-row B-tree work (a table insert and two index inserts with 32-character
//! keys) was most of what such a request cost. Every point is still kept.
//!
//! Layout: one version byte, then per point `step: i64`, `timestamp: i64`, `value: f64` bits,
//! little-endian. The value keeps its exact bits, so NaN and the infinities need no side flag.

use super::NewMetric;
use crate::error::DatabaseError;
use crate::StoreError;

const VERSION: u8 = 1;
const POINT_BYTES: usize = 24;

/// One logged value of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub step: i64,
    pub timestamp: i64,
    pub value: f64,
}

impl From<&NewMetric> for Point {
    fn from(m: &NewMetric) -> Self {
        Point {
            step: m.step,
            timestamp: m.timestamp,
            value: m.value,
        }
    }
}

/// Packs points in the order given.
pub(crate) fn encode(points: impl ExactSizeIterator<Item = Point>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + points.len() * POINT_BYTES);
    bytes.push(VERSION);
    for p in points {
        bytes.extend_from_slice(&p.step.to_le_bytes());
        bytes.extend_from_slice(&p.timestamp.to_le_bytes());
        bytes.extend_from_slice(&p.value.to_bits().to_le_bytes());
    }
    bytes
}

/// Unpacks a block; a block that is not one this version wrote is an error, never a guess.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Point>, StoreError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DatabaseError::EmptyMetricBlock.into());
    };
    if version != VERSION || body.len() % POINT_BYTES != 0 {
        return Err(DatabaseError::UnreadableMetricBlock {
            version,
            bytes: body.len(),
        }
        .into());
    }
    Ok(body
        .chunks_exact(POINT_BYTES)
        .map(|p| {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&p[i * 8..i * 8 + 8]);
                b
            };
            Point {
                step: i64::from_le_bytes(word(0)),
                timestamp: i64::from_le_bytes(word(1)),
                value: f64::from_bits(u64::from_le_bytes(word(2))),
            }
        })
        .collect())
}

/// The points of one request for one (key, model id), ready to insert.
pub(crate) struct Block<'a> {
    pub run_id: &'a str,
    pub key: &'a str,
    pub model_id: Option<&'a str>,
    pub batch_id: &'a str,
    pub count: i64,
    pub points: Vec<u8>,
}

/// Splits one request's metrics into blocks, one per (key, model id), in first-seen order.
pub(crate) fn blocks_of<'a>(
    run_id: &'a str,
    batch_id: &'a str,
    metrics: &'a [NewMetric],
) -> Vec<Block<'a>> {
    // (key, model id) → its points; a Vec keeps first-seen order, the map finds the slot.
    type Series<'m> = (&'m str, Option<&'m str>);
    let mut groups: Vec<(Series, Vec<Point>)> = Vec::new();
    let mut index: std::collections::HashMap<Series, usize> = std::collections::HashMap::new();
    for m in metrics {
        let id = (m.key.as_str(), m.model_id.as_deref());
        let slot = *index.entry(id).or_insert_with(|| {
            groups.push((id, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(Point::from(m));
    }
    groups
        .into_iter()
        .map(|((key, model_id), points)| Block {
            run_id,
            key,
            model_id,
            batch_id,
            count: points.len() as i64,
            points: encode(points.into_iter()),
        })
        .collect()
}

/// Rows per multi-row INSERT; keeps bound parameters far below SQLite's limit.
const BLOCKS_PER_INSERT: usize = 100;

/// Inserts blocks with multi-row INSERTs (the portable path; SQLite's hot path is `native`).
pub(crate) async fn insert_blocks(
    conn: &mut sqlx::AnyConnection,
    blocks: &[Block<'_>],
) -> Result<(), StoreError> {
    for chunk in blocks.chunks(BLOCKS_PER_INSERT) {
        let values = crate::sql::values_rows(conn, chunk.len(), 6);
        let sql = format!(
            "INSERT INTO metric_blocks (run_uuid, key, model_id, batch_id, point_count, points) VALUES {values}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in chunk {
            query = query
                .bind(b.run_id.to_string())
                .bind(b.key.to_string())
                .bind(b.model_id.map(str::to_string))
                .bind(b.batch_id.to_string())
                .bind(b.count)
                .bind(b.points.clone());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// (run id, batch id, value) of one metric row to insert.
pub(crate) type MetricInsert<'a> = (&'a str, &'a str, &'a NewMetric);

/// The latest value per (run, key) among `rows`: max step, then max timestamp, then max value,
/// as in MLflow.
pub(crate) fn latest_per_key<'a>(
    rows: &[MetricInsert<'a>],
) -> Vec<((&'a str, &'a str), &'a NewMetric)> {
    let mut latest: std::collections::HashMap<(&str, &str), &NewMetric> =
        std::collections::HashMap::new();
    for (run_id, _, m) in rows {
        let slot = latest.entry((*run_id, m.key.as_str())).or_insert(*m);
        if newer(m, slot) {
            *slot = *m;
        }
    }
    latest.into_iter().collect()
}

fn newer(m: &NewMetric, old: &NewMetric) -> bool {
    (m.step, m.timestamp) > (old.step, old.timestamp)
        || ((m.step, m.timestamp) == (old.step, old.timestamp) && m.value > old.value)
}

/// The latest-value upsert; a value replaces the stored one only when it is newer.
pub(crate) const UPSERT_LATEST_TAIL: &str = "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step \
             WHERE excluded.step > latest_metrics.step \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp) \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp AND COALESCE(excluded.value, 0) > COALESCE(latest_metrics.value, 0))";

/// Moves each (run, key)'s latest value forward to the newest of `rows` (portable path).
pub(crate) async fn upsert_latest(
    conn: &mut sqlx::AnyConnection,
    rows: &[MetricInsert<'_>],
) -> Result<(), StoreError> {
    let latest = latest_per_key(rows);
    for chunk in latest.chunks(BLOCKS_PER_INSERT) {
        let values = crate::sql::values_rows(conn, chunk.len(), 6);
        let sql = format!(
            "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES {values} {UPSERT_LATEST_TAIL}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((run_id, key), m) in chunk {
            let (value, nan) = stored_value(m.value);
            query = query
                .bind(run_id.to_string())
                .bind(key.to_string())
                .bind(value)
                .bind(nan)
                .bind(m.timestamp)
                .bind(m.step);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// NaN cannot be stored in SQLite (it becomes NULL), so a flag column keeps it.
pub(crate) fn stored_value(v: f64) -> (Option<f64>, i64) {
    if v.is_nan() {
        (None, 1)
    } else {
        (Some(v), 0)
    }
}

/// MLflow's history order: step, then timestamp, then value.
pub(crate) fn sort_history(points: &mut [Point]) {
    points.sort_by(|a, b| {
        a.step
            .cmp(&b.step)
            .then(a.timestamp.cmp(&b.timestamp))
            .then(a.value.total_cmp(&b.value))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(key: &str, step: i64, value: f64, model: Option<&str>) -> NewMetric {
        NewMetric {
            key: key.into(),
            value,
            timestamp: 1_700_000_000_000 + step,
            step,
            model_id: model.map(str::to_string),
        }
    }

    #[test]
    fn points_round_trip_with_their_exact_bits() {
        let points = vec![
            Point {
                step: -3,
                timestamp: i64::MAX,
                value: f64::NAN,
            },
            Point {
                step: 0,
                timestamp: 0,
                value: f64::NEG_INFINITY,
            },
            Point {
                step: i64::MIN,
                timestamp: 5,
                value: -0.0,
            },
            Point {
                step: 7,
                timestamp: 8,
                value: 0.1 + 0.2,
            },
        ];
        let decoded = decode(&encode(points.clone().into_iter())).expect("decodes");
        assert_eq!(decoded.len(), points.len());
        for (a, b) in decoded.iter().zip(&points) {
            assert_eq!((a.step, a.timestamp), (b.step, b.timestamp));
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[2]).is_err());
        assert!(decode(&[VERSION, 1, 2, 3]).is_err());
        assert_eq!(decode(&[VERSION]).expect("empty block").len(), 0);
    }

    #[test]
    fn a_request_becomes_one_block_per_key_and_model() {
        let metrics = vec![
            metric("loss", 1, 0.5, None),
            metric("acc", 1, 0.9, None),
            metric("loss", 2, 0.4, None),
            metric("loss", 2, 0.3, Some("m-1")),
        ];
        let blocks = blocks_of("run", "batch", &metrics);
        let shape: Vec<_> = blocks
            .iter()
            .map(|b| (b.key, b.model_id, b.count))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("loss", None, 2),
                ("acc", None, 1),
                ("loss", Some("m-1"), 1)
            ]
        );
        let loss = decode(&blocks[0].points).expect("decodes");
        assert_eq!(
            loss.iter().map(|p| (p.step, p.value)).collect::<Vec<_>>(),
            vec![(1, 0.5), (2, 0.4)]
        );
    }
}
