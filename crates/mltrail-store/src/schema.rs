//! One schema for SQLite and PostgreSQL. Types are the common subset (TEXT, BIGINT,
//! DOUBLE PRECISION) so every statement runs unchanged on both; ids are assigned by the single
//! writer rather than by backend-specific sequences.

use crate::{Backend, StoreError};
use sqlx::AnyConnection;

/// Ordered migrations; a migration is never edited once released, only appended to.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4)];

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
    sqlx::query("CREATE TABLE IF NOT EXISTS mltrail_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM mltrail_migrations")
        .fetch_one(&mut *conn)
        .await?;
    let applied = applied.unwrap_or(0);
    for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        let begin = if backend == Backend::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        sqlx::query(begin).execute(&mut *conn).await?;
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if let Err(e) = sqlx::query(statement).execute(&mut *conn).await {
                sqlx::query("ROLLBACK").execute(&mut *conn).await.ok();
                return Err(StoreError::Database(format!(
                    "migration {version} failed: {e}"
                )));
            }
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
