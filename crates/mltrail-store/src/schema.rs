//! One schema for SQLite and PostgreSQL. Types are the common subset (TEXT, BIGINT,
//! DOUBLE PRECISION) so every statement runs unchanged on both; ids are assigned by the single
//! writer rather than by backend-specific sequences.

use crate::error::DatabaseError;
use crate::sql::Backend;
use crate::StoreError;
use sqlx::AnyConnection;
use std::sync::Arc;

/// Ordered migrations; a migration is never edited once released, only appended to.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
    (9, V9),
    (10, V10),
    (11, V11),
    (12, V12),
    (13, V13),
    (14, V14),
    (15, V15),
    (16, V16),
];

/// Each `mltrail import`: where it read from, when it started and ended, what it wrote
/// (`import/sessions.rs`).
const V16: &str = r#"
CREATE TABLE imports (
    import_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    started_time BIGINT NOT NULL,
    finished_time BIGINT,
    summary TEXT NOT NULL
)
"#;

/// The values logged for a logged model (MLflow 3's `LoggedModel.metrics`), found by its id;
/// partial, so the run-only values most blocks hold add nothing to it.
const V15: &str = r#"
CREATE INDEX metric_blocks_by_model ON metric_blocks (model_id) WHERE model_id IS NOT NULL
"#;

/// Settings the tracking server holds for every service (the log filter and format), by name,
/// as JSON.
const V14: &str = r#"
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_time BIGINT NOT NULL,
    actor TEXT NOT NULL
)
"#;

/// Business metrics (points pushed in audited batches; a point is never rewritten; a value is
/// kept as its IEEE 754 bits, since SQLite gives -0.0 back as 0),
/// annotations of periods baselines leave out, and monitors that watch a business metric
/// rather than a deployment (`deployment` is then '').
const V13: &str = r#"
CREATE TABLE business_points (
    metric TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    value_bits BIGINT NOT NULL,
    batch_id TEXT NOT NULL,
    PRIMARY KEY (metric, time_ms)
);
CREATE INDEX business_points_batch ON business_points (batch_id);
CREATE TABLE annotations (
    annotation_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    metrics_json TEXT NOT NULL,
    note TEXT NOT NULL,
    status TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
ALTER TABLE monitors ADD COLUMN metric TEXT
"#;

/// Routing policies of deployments (the canonical JSON in force, under its digest, and for a
/// canary why it was rolled back; every policy a deployment had, whose replicas may still
/// report), what each policy learned, summed over every serving replica's reports, and the
/// ids of reports taken (a report resent after a lost answer is not added twice).
const V12: &str = r#"
CREATE TABLE routing_policies (
    deployment TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    rolled_back TEXT
);
CREATE TABLE routing_states (
    deployment TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    digest TEXT NOT NULL,
    reports BIGINT NOT NULL,
    updated_time BIGINT NOT NULL,
    PRIMARY KEY (deployment, policy_digest)
);
CREATE TABLE routing_policy_versions (
    deployment TEXT NOT NULL,
    digest TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (deployment, digest)
);
CREATE TABLE routing_reports (
    report_id TEXT PRIMARY KEY,
    reported_time BIGINT NOT NULL
)
"#;

/// Release gates: a protected alias's policy (requirements in canonical spelling, as a JSON
/// array, and the approvals a version needs), approvals of a version for an alias, and the
/// reports of checked moves (their canonical JSON, kept under its digest, which the move's
/// alias row or version row points at).
const V11: &str = r#"
CREATE TABLE gate_policies (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    requirements TEXT NOT NULL,
    approvals BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE model_approvals (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    alias TEXT NOT NULL,
    approver TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    PRIMARY KEY (name, version, alias, approver)
);
CREATE TABLE gate_reports (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_time BIGINT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX gate_reports_by_model ON gate_reports (name, created_time);
ALTER TABLE registered_model_aliases ADD COLUMN gate_report TEXT;
ALTER TABLE model_versions ADD COLUMN stage_gate_report TEXT
"#;

/// Personal data in stored predictions: each subject's data key, wrapped by the master key and
/// stored under the subject's keyed hash (never the raw id), the erasures (audited; the key row
/// is deleted in the same transaction), and the master key's fingerprint.
const V10: &str = r#"
CREATE TABLE privacy_subject_keys (
    subject_hash TEXT PRIMARY KEY,
    wrapped_key TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE TABLE privacy_erasures (
    subject_hash TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    erased_time BIGINT NOT NULL,
    keys_destroyed BIGINT NOT NULL
);
CREATE TABLE privacy_master (
    id BIGINT PRIMARY KEY,
    fingerprint TEXT NOT NULL
)
"#;

/// MLflow's permissions as MLflow 3 stores them: roles (named, in workspace `default`)
/// holding permissions on resources by id or `*`, assigned to users; a user's own grants are a
/// hidden role `__user_<id>__`. And release roles (approver, deployer, auditor) on users.
const V9: &str = r#"
CREATE TABLE roles (
    role_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    workspace TEXT NOT NULL,
    description TEXT,
    UNIQUE (workspace, name)
);
CREATE TABLE role_permissions (
    permission_id BIGINT PRIMARY KEY,
    role_id BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_pattern TEXT NOT NULL,
    permission TEXT NOT NULL,
    UNIQUE (role_id, resource_type, resource_pattern)
);
CREATE INDEX role_permissions_by_resource ON role_permissions (resource_type, resource_pattern);
CREATE TABLE role_assignments (
    assignment_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    role_id BIGINT NOT NULL,
    UNIQUE (user_id, role_id)
);
ALTER TABLE users ADD COLUMN release_roles TEXT NOT NULL DEFAULT ''
"#;

/// Users (MLflow's basic-auth users: integer id, argon2id PHC hash) and service tokens (the
/// BLAKE3 digest of the secret; a name stays taken after revocation). Both audited.
const V8: &str = r#"
CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    expires_time BIGINT,
    revoked_time BIGINT,
    secret_digest TEXT NOT NULL UNIQUE
)
"#;

/// A monitor's next window claimed by one server (`claimed_by`) until a time (several servers
/// on one database evaluate each window once). Progress, not audited state.
const V7: &str = r#"
ALTER TABLE monitors ADD COLUMN claimed_by TEXT;
ALTER TABLE monitors ADD COLUMN claimed_until BIGINT;
"#;

/// On SQLite only ([`audit_seq_as_rowid`]): nothing common to both backends.
const V6: &str = "";

/// Metric history in blocks (see `metrics/block.rs`). The rows of `metrics` are packed into blocks
/// by [`pack_legacy_metrics`] in the same transaction, then `metrics` is dropped.
/// `BYTEA` is PostgreSQL's binary type; SQLite stores blobs unchanged in any column.
const V5: &str = r#"
CREATE TABLE metric_blocks (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    model_id TEXT,
    batch_id TEXT NOT NULL,
    point_count BIGINT NOT NULL,
    points BYTEA NOT NULL
);
CREATE INDEX metric_blocks_by_run_key ON metric_blocks (run_uuid, key);
CREATE INDEX metric_blocks_by_batch ON metric_blocks (batch_id)
"#;

/// Alerts record whether a rule started firing or stopped.
const V4: &str = r#"
ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'firing'
"#;

/// Monitors over deployments' prediction logs, their per-window results, and fired alerts.
const V3: &str = r#"
CREATE TABLE monitors (
    monitor_id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    window_ms BIGINT NOT NULL,
    delay_ms BIGINT NOT NULL,
    reference TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    next_window_start BIGINT NOT NULL
);
CREATE TABLE monitor_results (
    monitor_id TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    status TEXT NOT NULL,
    result_json TEXT NOT NULL,
    computed_time BIGINT NOT NULL,
    PRIMARY KEY (monitor_id, window_start)
);
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY,
    monitor_id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    rule TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    details_json TEXT NOT NULL,
    fired_time BIGINT NOT NULL
);
CREATE INDEX alerts_by_monitor ON alerts (monitor_id, fired_time);
"#;

/// Dataset versions (content-addressed snapshots with schema and profile).
const V2: &str = r#"
CREATE TABLE dataset_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    file_name TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    target TEXT,
    schema_json TEXT NOT NULL,
    profile_json TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX dataset_versions_by_digest ON dataset_versions (name, digest);
"#;

const V1: &str = r#"
CREATE TABLE experiments (
    experiment_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    run_uuid TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    run_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    artifact_uri TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    deleted_time BIGINT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time);
CREATE TABLE params (
    run_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, batch_id TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX params_by_batch ON params (batch_id);
CREATE INDEX params_by_key ON params (key, value);
CREATE TABLE tags (
    run_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE TABLE metrics (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value DOUBLE PRECISION,
    is_nan BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    model_id TEXT,
    batch_id TEXT NOT NULL
);
CREATE INDEX metrics_by_run_key ON metrics (run_uuid, key, step);
CREATE INDEX metrics_by_batch ON metrics (batch_id);
CREATE TABLE latest_metrics (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value DOUBLE PRECISION,
    is_nan BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
CREATE INDEX latest_metrics_by_key_value ON latest_metrics (key, value);
CREATE TABLE run_inputs (
    run_uuid TEXT NOT NULL,
    dataset_name TEXT NOT NULL,
    dataset_digest TEXT NOT NULL,
    dataset_json TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    PRIMARY KEY (run_uuid, dataset_name, dataset_digest)
);
CREATE TABLE run_outputs (
    run_uuid TEXT NOT NULL, model_id TEXT NOT NULL, step BIGINT NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
);
CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    status TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    source_run_id TEXT,
    model_type TEXT,
    lifecycle_stage TEXT NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, name);
CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
CREATE TABLE registered_models (
    name TEXT PRIMARY KEY,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE registered_model_tags (
    name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description TEXT NOT NULL,
    user_id TEXT NOT NULL,
    current_stage TEXT NOT NULL,
    source TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_link TEXT NOT NULL,
    status TEXT NOT NULL,
    model_id TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE model_version_tags (
    name TEXT NOT NULL, version BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE registered_model_aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    state_digest TEXT,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_entity ON audit_log (entity_type, entity_id, seq);
"#;

pub(crate) async fn migrate(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    if backend != Backend::Postgres {
        return migrate_through(conn, backend, i64::MAX).await;
    }
    // Servers starting together on one database take turns: the second finds the migrations
    // applied.
    sqlx::query(crate::sql::TAKE_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let migrated = migrate_through(conn, backend, i64::MAX).await;
    let unlocked = sqlx::query(crate::sql::RELEASE_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    migrated?;
    unlocked?;
    Ok(())
}

/// Applies the migrations not applied yet, up to and including `last`.
async fn migrate_through(
    conn: &mut AnyConnection,
    backend: Backend,
    last: i64,
) -> Result<(), StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS mltrail_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM mltrail_migrations")
        .fetch_one(&mut *conn)
        .await?;
    let applied = applied.unwrap_or(0);
    for (version, script) in MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > applied && *v <= last)
    {
        let begin = if backend == Backend::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        sqlx::query(begin).execute(&mut *conn).await?;
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if let Err(e) = sqlx::query(statement).execute(&mut *conn).await {
                sqlx::query("ROLLBACK").execute(&mut *conn).await.ok();
                return Err(DatabaseError::Migration {
                    version: *version,
                    source: Arc::new(e),
                }
                .into());
            }
        }
        // Steps SQL alone cannot express, in the migration's transaction.
        let step = match (*version, backend) {
            (5, _) => pack_legacy_metrics(conn).await,
            (6, Backend::Sqlite) => audit_seq_as_rowid(conn).await,
            _ => Ok(()),
        };
        if let Err(e) = step {
            sqlx::query("ROLLBACK").execute(&mut *conn).await.ok();
            return Err(DatabaseError::Migration {
                version: *version,
                source: Arc::new(e),
            }
            .into());
        }
        sqlx::query("INSERT INTO mltrail_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(mltrail_core::now_millis())
            .execute(&mut *conn)
            .await?;
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

/// Rebuilds SQLite's `audit_log` with `seq INTEGER PRIMARY KEY`. SQLite only makes exactly
/// that spelling an alias of the rowid; `BIGINT PRIMARY KEY` kept a second B-tree, so every
/// event was inserted twice and every commit wrote one more page (4-8 % of the write rate at
/// 64 connections). Same columns, same values, same order; PostgreSQL keeps its table.
async fn audit_seq_as_rowid(conn: &mut AnyConnection) -> Result<(), StoreError> {
    for statement in [
        "CREATE TABLE audit_log_by_seq (
            seq INTEGER PRIMARY KEY,
            time BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            entity_type TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            state_digest TEXT,
            hash TEXT NOT NULL
        )",
        "INSERT INTO audit_log_by_seq (seq, time, actor, action, entity_type, entity_id, state_digest, hash) \
         SELECT seq, time, actor, action, entity_type, entity_id, state_digest, hash FROM audit_log ORDER BY seq",
        "DROP TABLE audit_log",
        "ALTER TABLE audit_log_by_seq RENAME TO audit_log",
        "CREATE INDEX audit_by_entity ON audit_log (entity_type, entity_id, seq)",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves the per-value rows of the old `metrics` table into blocks, one per (run, key, model id)
/// and request, then drops the table. Pages through the batch index so a large history never
/// has to fit in memory at once; a request never logs more than 1,000 values, so a page of
/// 20,000 rows always ends with whole batches once its last, possibly cut, batch is set aside.
async fn pack_legacy_metrics(conn: &mut AnyConnection) -> Result<(), StoreError> {
    use crate::metrics::block::{blocks_of, insert_blocks};
    use crate::sql::{int, metric_value, opt_text, text};
    const PAGE: i64 = 20_000;
    let mut after = String::new();
    let mut moved = 0usize;
    loop {
        let rows = sqlx::query(
            "SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, batch_id FROM metrics \
             WHERE batch_id > $1 ORDER BY batch_id LIMIT $2",
        )
        .bind(after.clone())
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let full_page = rows.len() as i64 == PAGE;
        let mut batches: Vec<(String, String, Vec<crate::metrics::NewMetric>)> = Vec::new();
        for row in &rows {
            let batch = text(row, "batch_id")?;
            let run = text(row, "run_uuid")?;
            let metric = crate::metrics::NewMetric {
                key: text(row, "key")?,
                value: metric_value(row, "value", "is_nan")?,
                timestamp: int(row, "timestamp")?,
                step: int(row, "step")?,
                model_id: opt_text(row, "model_id")?,
            };
            match batches.last_mut() {
                Some((b, r, metrics)) if *b == batch && *r == run => metrics.push(metric),
                _ => batches.push((batch, run, vec![metric])),
            }
        }
        if full_page && batches.len() > 1 {
            batches.pop();
        }
        let Some(last) = batches.last().map(|(b, _, _)| b.clone()) else {
            break;
        };
        for (batch, run, metrics) in &batches {
            insert_blocks(conn, &blocks_of(run, batch, metrics)).await?;
            moved += metrics.len();
        }
        after = last;
        if !full_page {
            break;
        }
    }
    sqlx::query("DROP TABLE metrics")
        .execute(&mut *conn)
        .await?;
    if moved > 0 {
        tracing::info!(values = moved, "packed metric history into blocks");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{blob, int, text};
    use sqlx::Connection;

    /// A fresh SQLite database migrated up to and including `version` (keep the dir alive).
    async fn sqlite_at(version: i64) -> (tempfile::TempDir, AnyConnection) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/m.db?mode=rwc", dir.path().display());
        let mut conn = AnyConnection::connect(&url).await.expect("connects");
        migrate_through(&mut conn, Backend::Sqlite, version)
            .await
            .expect("earlier migrations");
        (dir, conn)
    }

    /// V6 keeps every audit row as it was and leaves SQLite one B-tree for the log, not two.
    #[tokio::test]
    async fn the_audit_log_is_rebuilt_on_its_rowid_with_every_row() {
        let (_dir, mut conn) = sqlite_at(5).await;
        let row = "SELECT seq, time, actor, action, entity_type, entity_id, state_digest, hash FROM audit_log ORDER BY seq";
        for seq in 1..=300i64 {
            let digest = if seq % 7 == 0 {
                "NULL".to_string()
            } else {
                format!("'d{seq}'")
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO audit_log VALUES ({seq}, {}, 'ana', 'run.create', 'run', 'r{}', {digest}, 'h{seq}')",
                1_700_000_000_000 + seq,
                seq % 11
            )))
            .execute(&mut conn)
            .await
            .expect("event");
        }
        let dump = |rows: Vec<sqlx::any::AnyRow>| {
            rows.iter()
                .map(|r| {
                    format!(
                        "{:?}",
                        (
                            int(r, "seq"),
                            int(r, "time"),
                            text(r, "actor"),
                            text(r, "action"),
                            text(r, "entity_type"),
                            text(r, "entity_id"),
                            crate::sql::opt_text(r, "state_digest"),
                            text(r, "hash"),
                        )
                    )
                })
                .collect::<Vec<_>>()
        };
        let before = dump(sqlx::query(row).fetch_all(&mut conn).await.expect("rows"));
        migrate(&mut conn, Backend::Sqlite).await.expect("V6");
        let after = dump(sqlx::query(row).fetch_all(&mut conn).await.expect("rows"));
        assert_eq!(before.len(), 300);
        assert_eq!(before, after);
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_list('audit_log') ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .expect("indexes");
        assert_eq!(
            indexes,
            ["audit_by_entity"],
            "seq is the rowid, not a second index"
        );
    }

    /// A database written before metric blocks keeps every value, in the right batch.
    #[tokio::test]
    async fn legacy_metric_rows_are_packed_into_blocks() {
        let (_dir, mut conn) = sqlite_at(4).await;
        // 25,000 values in 26 batches over three runs: the first page of 20,000 rows ends
        // inside a batch, which must be carried whole into the next page.
        let mut expected = Vec::new();
        for batch in 0..26 {
            let values = if batch == 25 { 1000 } else { 960 };
            let mut sql = String::from("INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step, model_id, batch_id) VALUES ");
            for i in 0..values {
                let key = if i % 2 == 0 { "loss" } else { "acc" };
                let (value, nan) = if i == 7 {
                    ("NULL".to_string(), 1)
                } else {
                    (format!("{}.25", i), 0)
                };
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "('run-{}', '{key}', {value}, {nan}, {i}, {}, NULL, 'b{batch:04}')",
                    batch % 3,
                    batch * 10_000 + i
                ));
                expected.push((
                    format!("run-{}", batch % 3),
                    format!("b{batch:04}"),
                    key,
                    batch * 10_000 + i,
                    nan == 1,
                ));
            }
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("legacy rows");
        }
        migrate(&mut conn, Backend::Sqlite).await.expect("V5");
        let rows = sqlx::query("SELECT run_uuid, key, batch_id, point_count, points FROM metric_blocks ORDER BY batch_id, key")
            .fetch_all(&mut conn)
            .await
            .expect("blocks");
        assert_eq!(rows.len(), 52, "one block per (batch, key)");
        let mut got = Vec::new();
        for row in &rows {
            let points = crate::metrics::block::decode(&blob(row, "points").expect("blob"))
                .expect("decodes");
            assert_eq!(points.len() as i64, int(row, "point_count").expect("count"));
            for p in points {
                got.push((
                    text(row, "run_uuid").expect("run"),
                    text(row, "batch_id").expect("batch"),
                    if text(row, "key").expect("key") == "loss" {
                        "loss"
                    } else {
                        "acc"
                    },
                    p.step,
                    p.value.is_nan(),
                ));
            }
        }
        let order = |v: &mut Vec<(String, String, &str, i64, bool)>| {
            v.sort_by(|a, b| (&a.1, a.3).cmp(&(&b.1, b.3)))
        };
        order(&mut expected);
        order(&mut got);
        assert_eq!(got.len(), 25_000);
        assert_eq!(got, expected);
        let legacy: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'metrics'",
        )
        .fetch_optional(&mut conn)
        .await
        .expect("catalog");
        assert_eq!(legacy, None, "the per-value table is gone");
    }
}
