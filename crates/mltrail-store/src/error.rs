//! What can go wrong in the metadata store. Each variant is a kind (what the server maps to
//! one MLflow error code and HTTP status, and the CLI to an exit code) carrying the values
//! involved as typed fields, and, for database and artifact failures, the error that caused it
//! as its source. `Display` is the message users see, word for word what MLflow (or, for
//! mltrail's own resources, mltrail) has always answered.

use mltrail_artifacts::ArtifactError;
use mltrail_core::filter::FilterError;
use std::sync::Arc;

/// The kind of a [`StoreError`], without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    NotFound,
    AlreadyExists,
    InvalidParameter,
    InvalidState,
    Database,
    /// The database cannot take the request now (stopped, restarting, connection lost, or its
    /// disk is full): try again.
    Unavailable,
    Artifacts,
    Closed,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// What was asked for does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// What was to be created exists already.
    #[error(transparent)]
    AlreadyExists(#[from] AlreadyExists),
    /// A request's value breaks a rule.
    #[error(transparent)]
    InvalidParameter(#[from] Invalid),
    /// The entity is not in a state that allows the request, or a stored value is unreadable.
    #[error(transparent)]
    InvalidState(#[from] Conflict),
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
    /// Writing or deleting artifact bytes failed (`artifacts`).
    #[error("{0}")]
    Artifacts(Arc<ArtifactError>),
    /// The writer did not take the write: the store is shutting down, or the database could
    /// not be reached for the group this write was in.
    #[error(
        "the store is not taking writes (shutting down, or the database is unreachable); try again"
    )]
    Closed,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound(_) => StoreErrorKind::NotFound,
            StoreError::AlreadyExists(_) => StoreErrorKind::AlreadyExists,
            StoreError::InvalidParameter(_) => StoreErrorKind::InvalidParameter,
            StoreError::InvalidState(_) => StoreErrorKind::InvalidState,
            StoreError::Database(d) if d.is_connection() || d.is_out_of_space() => {
                StoreErrorKind::Unavailable
            }
            StoreError::Database(_) => StoreErrorKind::Database,
            StoreError::Artifacts(_) => StoreErrorKind::Artifacts,
            StoreError::Closed => StoreErrorKind::Closed,
        }
    }
}

/// What does not exist.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotFound {
    /// The run id as the request spelled it (it may not be a well-formed id).
    #[error("Run with id={0} not found")]
    Run(String),
    #[error("No Experiment with id={0} exists")]
    Experiment(i64),
    #[error("No active Experiment with id={0} exists")]
    ActiveExperiment(i64),
    #[error("Could not find experiment with name '{0}'")]
    ExperimentNamed(String),
    #[error("No tag with name: {key} in experiment {experiment_id}.")]
    ExperimentTag { experiment_id: i64, key: String },
    #[error("No tag with name: {key} in run with id {run_id}")]
    RunTag { run_id: String, key: String },
    #[error("Registered Model with name={0} not found")]
    RegisteredModel(String),
    #[error("Model Version (name={name}, version={version}) not found")]
    ModelVersion { name: String, version: i64 },
    #[error("Registered model alias {0} not found.")]
    Alias(String),
    #[error("{name}@{alias} has no release gate")]
    GatePolicy { name: String, alias: String },
    #[error("no gate report has the digest {0}")]
    GateReport(String),
    #[error("deployment `{0}` has no routing policy")]
    RoutingPolicy(String),
    #[error("no points were pushed for business metric `{0}`")]
    BusinessMetric(String),
    #[error("no active annotation has the id {0}")]
    Annotation(String),
    #[error("the tracking server holds no `{0}` setting")]
    Setting(String),
    #[error("Logged model with ID '{0}' not found.")]
    LoggedModel(String),
    #[error("dataset version {name}@{version} does not exist")]
    DatasetVersion { name: String, version: i64 },
    #[error("dataset `{0}` has no versions")]
    Dataset(String),
    #[error("monitor `{0}` does not exist")]
    Monitor(String),
    #[error("monitor `{0}` does not exist or is already deleted")]
    ActiveMonitor(String),
    #[error("User with username={0} not found")]
    User(String),
    #[error("no service token named `{0}`")]
    Token(String),
    #[error("no active service token named `{0}` (it does not exist or is revoked already)")]
    ActiveToken(String),
    #[error("Permission for user={username} on resource_type={resource_type}, resource_id={resource_id} not found.")]
    Permission {
        username: String,
        resource_type: &'static str,
        resource_id: String,
    },
    #[error("Role with id={0} not found")]
    Role(i64),
    #[error("Role permission with id={0} not found")]
    RolePermission(i64),
    #[error("User role assignment (user_id={user_id}, role_id={role_id}) not found")]
    Assignment { user_id: i64, role_id: i64 },
    #[error("monitor `{monitor_id}` has no evaluated window starting at {window_start}")]
    Window {
        monitor_id: String,
        window_start: i64,
    },
}

/// What exists already.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlreadyExists {
    #[error("Experiment(name={0}) already exists.")]
    Experiment(String),
    #[error("Registered Model (name={0}) already exists.")]
    RegisteredModel(String),
    #[error("User '{0}' already exists.")]
    User(String),
    #[error("a service token named `{0}` exists already (names stay taken after revocation)")]
    Token(String),
    #[error("Permission for user={username} on resource_type={resource_type}, resource_id={resource_id} already exists.")]
    Permission {
        username: String,
        resource_type: &'static str,
        resource_id: String,
    },
    /// An archived segment recorded before with another summary: the file was replaced.
    #[error("archived segment {0} is already in the audit trail with another digest; an archived file is never replaced")]
    ArchivedSegment(String),
    #[error("Role (name={name}, workspace={workspace}) already exists.")]
    Role { name: String, workspace: String },
    #[error("Role permission (role_id={role_id}, resource_type={resource_type}, resource_pattern={pattern}) already exists.")]
    RolePermission {
        role_id: i64,
        resource_type: &'static str,
        pattern: String,
    },
    #[error("User role assignment (user_id={user_id}, role_id={role_id}) already exists")]
    Assignment { user_id: i64, role_id: i64 },
}

/// A value that breaks a rule, with the value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Invalid {
    /// `mltrail backup` copies SQLite stores; PostgreSQL has its own tools.
    #[error("a PostgreSQL store is backed up with PostgreSQL's tools (pg_dump or base backups), not `mltrail backup`: see docs/operations.md")]
    BackupOfPostgres,
    #[error("the backup file {} exists already; choose a new folder", .0.display())]
    BackupExists(std::path::PathBuf),
    #[error("{0} names no existing SQLite database to back up")]
    BackupSourceMissing(String),
    #[error("the backup path {} is not UTF-8, which SQLite needs", .0.display())]
    BackupPathNotUtf8(std::path::PathBuf),
    #[error("backend store URI {0:?} names no database file")]
    StoreUriWithoutFile(String),
    #[error("unsupported backend store URI {0:?}: use sqlite:///path/to/file.db or postgresql://user@host:port/db")]
    UnsupportedStoreUri(String),
    /// `mltrail import`'s source cannot be read as what it was named as.
    #[error("cannot import from {source_uri}: {reason}")]
    ImportSource { source_uri: String, reason: String },
    #[error("cannot create database folder {path}: {source}")]
    DatabaseFolder {
        path: String,
        source: Arc<std::io::Error>,
    },
    /// A required field is missing or empty.
    #[error("Missing value for required parameter '{0}'.")]
    Missing(&'static str),
    /// A tag, param or metric key MLflow would refuse.
    #[error("Invalid {what} name: '{key}'. Names may be up to {max} characters of alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), and may not be or contain '..' path segments.")]
    Key {
        what: &'static str,
        key: String,
        max: usize,
    },
    #[error("{what} '{key}' had length {length}, which exceeded length limit of {max}")]
    TooLong {
        what: &'static str,
        key: String,
        length: usize,
        max: usize,
    },
    #[error("A batch logging request can contain at most {max_metrics} metrics, {max_params} params and {max_tags} tags; got {metrics} metrics, {params} params and {tags} tags")]
    BatchTooLarge {
        max_metrics: usize,
        max_params: usize,
        max_tags: usize,
        metrics: usize,
        params: usize,
        tags: usize,
    },
    #[error("Changing param values is not allowed. Param with key='{key}' was already logged with value='{old}' for run ID='{run_id}'. Attempted logging new value '{new}'.")]
    ParamChanged {
        run_id: String,
        key: String,
        old: String,
        new: String,
    },
    #[error("Duplicate parameter key '{0}' with different values in one batch")]
    DuplicateParam(String),
    /// A dataset input's tags that cannot be stored as JSON.
    #[error("{0}")]
    InputTags(Arc<serde_json::Error>),
    /// A routing state that cannot be added to the one stored (another policy's, other arms).
    #[error("{0}")]
    RoutingState(String),
    #[error("Cannot delete the default experiment '0'.")]
    DeleteDefaultExperiment,
    #[error("Parameter 'version' must be a positive integer, got '{0}'")]
    Version(String),
    #[error("Invalid model name '{0}': names may not contain '/', '\\' or ':'")]
    ModelName(String),
    #[error("Invalid alias name: '{0}'. Aliases may only contain alphanumerics, '_' and '-', and may not be 'latest' or of the form v<number>.")]
    Alias(String),
    #[error("dataset name `{0}` must be 1-256 characters without '/', '@' or '\\'")]
    DatasetName(String),
    #[error("digest `{0}` is not a 64-hex BLAKE3")]
    Digest(String),
    /// A dataset version's file must be in its dataset's folder, where `mltrail data add`
    /// uploads it: any other artifact (a run's files, archived predictions) would be read, by
    /// whoever reads datasets, through the version's profile, drift report or monitor.
    #[error("`source` must be under datasets/{name}/ in the artifact store (where `mltrail data add` uploads the file), got `{path}`")]
    DatasetSource { name: String, path: String },
    #[error("deployment must be 1-256 characters")]
    Deployment,
    #[error("metric name `{0}` must be 1-256 characters of letters, digits, `_`, `-` and `.` (not `.` or `..`)")]
    MetricName(String),
    #[error("points[{index}]: {why}")]
    Point { index: usize, why: String },
    #[error("at most {max} points per push (got {0}); push them in turns", max = crate::business::MAX_POINTS_PER_PUSH)]
    TooManyPoints(usize),
    /// An annotation field that breaks a rule.
    #[error("`{field}`: {why}")]
    Annotation { field: &'static str, why: String },
    /// A monitor names both a deployment and a metric, or neither.
    #[error("a monitor watches either a deployment or a business metric")]
    MonitorTarget,
    #[error("window must be at least 1s (got {0} ms)")]
    Window(i64),
    #[error("delay must not be negative")]
    Delay,
    #[error("a user name must be 1 to 256 characters without `:` or control characters")]
    Username,
    #[error("a password must be at least {min} characters (got {got})", min = crate::access::MIN_PASSWORD_CHARS)]
    Password { got: usize },
    #[error("a token name must be 1 to 256 characters of letters, digits, `-`, `_` or `.`")]
    TokenName,
    #[error("a token needs at least one scope (one of: {0})")]
    NoScope(String),
    #[error("a token's expiry must be in the future")]
    Expiry,
    #[error("an erasure needs a reason (what request or rule it answers), 1 to 1000 characters")]
    ErasureReason,
    #[error("at most {max} subjects per request (got {got})", max = crate::privacy::MAX_SUBJECTS)]
    TooManySubjects { got: usize },
    #[error("Role name cannot be empty.")]
    RoleName,
    #[error(
        "Role name '{0}' uses the reserved '__user_' prefix, which holds each user's own grants."
    )]
    ReservedRoleName(String),
    #[error("this server has no workspaces: roles live in workspace `default` (got `{0}`)")]
    Workspace(String),
    #[error("Invalid resource_pattern '{pattern}' for resource_type='{resource_type}': {why}")]
    ResourcePattern {
        resource_type: &'static str,
        pattern: String,
        why: &'static str,
    },
    #[error("Invalid permission 'NO_PERMISSIONS' for resource_type='{0}'. Resource-level grants accept only: ('DENY', 'EDIT', 'MANAGE', 'READ', 'USE').")]
    UngrantablePermission(&'static str),

    #[error("invalid page_token {0:?}")]
    PageToken(String),
    /// A filter that does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A filter or order_by that parses but names what cannot be searched that way.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// A search that cannot be compiled: which key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("'{0}' must be compared with a number")]
    NotANumber(String),
    #[error("'{0}' must be compared with a quoted string")]
    NotAString(String),
    #[error("Invalid comparator '{op}' for '{key}': only =, !=, LIKE, ILIKE and IN are allowed on strings")]
    StringComparator { op: &'static str, key: String },
    #[error("IN for '{0}' needs a list")]
    InNeedsList(String),
    #[error("Invalid attribute key '{0}' specified. Valid keys are run_id, run_name, status, user_id, artifact_uri, lifecycle_stage, start_time, end_time")]
    RunAttribute(String),
    #[error("experiment_ids must name at least one experiment")]
    NoExperiment,
    #[error("Invalid dataset key '{0}'; use datasets.name or datasets.digest")]
    DatasetKey(String),
    #[error("cannot order runs by a dataset")]
    OrderRunsByDataset,
    #[error("Invalid attribute key '{0}' specified. Valid keys are name, creation_time, last_update_time")]
    ExperimentAttribute(String),
    #[error("Invalid entity for experiment search: '{0}'")]
    ExperimentEntity(String),
    #[error("Invalid order_by key '{0}' for experiments")]
    ExperimentOrder(String),
    #[error("Invalid filter key '{0}' for registered models; use name or tags.<key>")]
    RegisteredModelFilter(String),
    #[error("Invalid filter key '{0}' for model versions; use name, run_id, source_path, version_number or tags.<key>")]
    ModelVersionFilter(String),
    #[error("Invalid order_by key '{0}'")]
    RegistryOrder(String),
    #[error("Invalid filter key '{0}' for logged models")]
    LoggedModelFilter(String),
    #[error("Invalid order_by field '{0}' for logged models")]
    LoggedModelOrder(String),
}

/// An entity in a state that refuses the request, or a stored value that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Conflict {
    /// A subject's stored key does not open with this server's master key: the key file is
    /// not the one the keys were wrapped with.
    #[error("the stored key of subject {0} does not open with this server's privacy master key: is `[privacy] master_key_file` the file the keys were made with?")]
    SubjectKey(String),
    /// The master key is not the one this database's subject keys were made with.
    #[error("the privacy master key (fingerprint {given}) is not the one this database's subject keys were made with (fingerprint {stored}): set [privacy] master_key_file to that key's file")]
    MasterKey { given: String, stored: String },
    /// `stage` as stored.
    #[error("The run {run_id} must be in the 'active' state. Current state is {stage}.")]
    RunNotActive { run_id: String, stage: String },
    /// `stage` as stored.
    #[error(
        "The experiment {experiment_id} must be in the 'active' state. Current state is {stage}."
    )]
    ExperimentNotActive { experiment_id: i64, stage: String },
    #[error("The experiment {0} must be in the 'active' state.")]
    ExperimentTagOnInactive(i64),
    #[error("Cannot rename a non-active experiment {0}.")]
    RenameInactiveExperiment(i64),
    #[error("Experiment {0} is already deleted.")]
    ExperimentAlreadyDeleted(i64),
    #[error("Cannot restore an active experiment {0}.")]
    RestoreActiveExperiment(i64),
    /// An imported entity's id (or unique name) is taken here by something else.
    #[error("cannot import {what}: this store already has {ours} there, the source has {theirs}; import into a store where that id is free (a new store, or after removing the clash)")]
    ImportCollision {
        what: String,
        ours: String,
        theirs: String,
    },
    /// A stored value outside the values the store writes.
    #[error("stored {what} `{value}` is not {expected}")]
    StoredValue {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("stored {column} is not JSON: {source}")]
    StoredJson {
        column: String,
        source: Arc<serde_json::Error>,
    },
    /// Another push stored some of the same times while this one was checked.
    #[error("another push of business metric `{0}` stored some of these times at the same moment; nothing of this push was stored: push it again")]
    ConcurrentPush(String),
    /// A point pushed again with another value: points are never rewritten.
    #[error("business metric `{metric}` has {stored} at time {time_ms} already; a stored point is never rewritten (got {given})")]
    PointChanged {
        metric: String,
        time_ms: i64,
        stored: f64,
        given: f64,
    },
    /// A stored row that cannot be represented as the JSON its audited state is.
    #[error("{0}")]
    Unserializable(Arc<serde_json::Error>),
    #[error("a stored token holds the unknown scope `{0}`")]
    StoredScope(String),
    #[error("`{0}` is the last admin: make another user an admin first (`mltrail users create NAME --admin`), so someone can still manage users and permissions")]
    LastAdmin(String),
    #[error("audit event {0} does not follow from its content and the events before it: the trail is broken (`mltrail audit verify` says where)")]
    ChainBroken(i64),
    #[error("a stored permission holds the unknown level `{0}`")]
    StoredPermission(String),
    #[error("a stored user holds the unknown release role `{0}`")]
    StoredReleaseRole(String),
    #[error("user {0} vanished while being written")]
    UserVanished(String),
    #[error("service token {0} vanished while being written")]
    TokenVanished(String),
    #[error("monitor `{0}` vanished while created")]
    MonitorVanished(String),
    /// A move of a protected alias that did not come through a gate check.
    #[error("alias `{alias}` of `{name}` is protected by a release gate: move it through the tracking server, which checks the gate")]
    Gated { name: String, alias: String },
    /// The policy, or the version the alias holds, changed between the check and the move.
    #[error("the release gate of {name}@{alias}, or the version the alias points at, changed while the move was checked: try again")]
    GateChanged { name: String, alias: String },
    /// A report that is not about the move it came with, or says neither passed nor overridden.
    #[error("the gate report brought to move {name}@{alias} is not a passing (or overridden) report of that move")]
    GateReportInvalid { name: String, alias: String },
    /// Four eyes cannot be checked against an author nobody identified.
    #[error("{name}/{version} was registered by an unidentified caller (auth off), so four eyes cannot be checked: register it again with --auth on, or have an admin override the gate")]
    UnknownAuthor { name: String, version: i64 },
    /// Four eyes: a version's author cannot approve it.
    #[error("{approver} created {name}/{version}: the author of a version cannot approve it (four eyes: another approver must)")]
    OwnApproval {
        name: String,
        version: i64,
        approver: String,
    },
}

/// A failure of the database itself; `source` is what the driver or SQLite reported.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DatabaseError {
    #[error("{0}")]
    Sqlx(Arc<sqlx::Error>),
    /// A call of the native SQLite path (`context`: which call) failed.
    #[error("{context}: {message}")]
    Sqlite {
        context: &'static str,
        code: i32,
        message: String,
    },
    /// Text handed to SQLite's C API held a NUL byte.
    #[error("{0}")]
    Nul(Arc<std::ffi::NulError>),
    #[error("cannot open {0}: out of memory")]
    OutOfMemory(String),
    #[error("cannot start the writer thread: {0}")]
    WriterThread(Arc<std::io::Error>),
    #[error("audit_log head has a malformed hash")]
    MalformedHead,
    #[error("empty metric block")]
    EmptyMetricBlock,
    #[error("unreadable metric block (version {version}, {bytes} bytes)")]
    UnreadableMetricBlock { version: u8, bytes: usize },
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl DatabaseError {
    /// Whether the database could not be reached, rather than refusing the statement: the
    /// connection failed or was cut, or the server is shutting down or starting up
    /// (PostgreSQL's classes 08 and 57P).
    pub fn is_connection(&self) -> bool {
        let DatabaseError::Sqlx(err) = self else {
            return false;
        };
        match err.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }

    /// Whether the database's disk is full (SQLite's SQLITE_FULL, PostgreSQL's 53100): the
    /// statement was rolled back and succeeds once space returns.
    pub fn is_out_of_space(&self) -> bool {
        const SQLITE_FULL: i32 = 13;
        match self {
            DatabaseError::Sqlite { code, .. } => code & 0xff == SQLITE_FULL,
            DatabaseError::Sqlx(err) => match err.as_ref() {
                sqlx::Error::Database(db) => {
                    let code = db.code();
                    if db
                        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .is_some()
                    {
                        code.as_deref() == Some("53100")
                    } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                        code.and_then(|c| c.parse::<i32>().ok())
                            .is_some_and(|n| n & 0xff == SQLITE_FULL)
                    } else {
                        false
                    }
                }
                _ => false,
            },
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(DatabaseError::Sqlx(Arc::new(err)))
    }
}

impl From<FilterError> for StoreError {
    fn from(err: FilterError) -> Self {
        StoreError::InvalidParameter(Invalid::Filter(err))
    }
}

impl From<QueryError> for StoreError {
    fn from(err: QueryError) -> Self {
        StoreError::InvalidParameter(Invalid::Query(err))
    }
}

impl From<ArtifactError> for StoreError {
    fn from(err: ArtifactError) -> Self {
        StoreError::Artifacts(Arc::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few messages clients compare, word for word.
    #[test]
    fn messages_are_the_ones_clients_know() {
        let cases: [(StoreError, &str); 5] = [
            (
                NotFound::Run("abc".into()).into(),
                "Run with id=abc not found",
            ),
            (
                AlreadyExists::Experiment("e".into()).into(),
                "Experiment(name=e) already exists.",
            ),
            (
                Invalid::Missing("name").into(),
                "Missing value for required parameter 'name'.",
            ),
            (
                Conflict::RunNotActive {
                    run_id: "r".into(),
                    stage: "deleted".into(),
                }
                .into(),
                "The run r must be in the 'active' state. Current state is deleted.",
            ),
            (
                DatabaseError::MalformedHead.into(),
                "database error: audit_log head has a malformed hash",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(StoreError::Closed.kind(), StoreErrorKind::Closed);
    }

    #[test]
    fn a_database_out_of_reach_is_unavailable_not_an_internal_error() {
        let cut: StoreError =
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)).into();
        assert_eq!(cut.kind(), StoreErrorKind::Unavailable);
        assert_eq!(
            StoreError::from(sqlx::Error::PoolTimedOut).kind(),
            StoreErrorKind::Unavailable
        );
        let refused: StoreError = sqlx::Error::RowNotFound.into();
        assert_eq!(refused.kind(), StoreErrorKind::Database);
    }
}
