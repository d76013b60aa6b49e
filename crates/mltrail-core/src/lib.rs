//! mltrail-core owns the vocabulary every other crate speaks: ids, lifecycle states, confined
//! artifact paths, the MLflow search-filter grammar and the hash-chained audit event format.
//!
//! It must not know about HTTP, SQL, files or async runtimes: everything here is plain data and
//! pure functions, so it can be tested without a server and reused by the CLI and the server alike.

pub mod access;
pub mod artifact_path;
pub mod audit;
pub mod filter;
pub mod gate;
pub mod ids;
pub mod jcs;
pub mod merkle;
pub mod privacy;
pub mod redact;
pub mod state;
pub mod tags;
pub mod time;
pub mod units;

pub use access::{Action, Permission, Principal, ReleaseRole, ResourceType, Scope};
pub use artifact_path::{ArtifactPath, PathError};
pub use audit::{canonical_json, AuditEvent, ChainHash, GENESIS_HASH};
pub use ids::{AlertId, ExperimentId, LoggedModelId, ModelVersionNumber, MonitorId, RunId};
pub use time::now_millis;
