//! mltrail-data owns tabular data coming in: CSV and Parquet files read through arrow into typed
//! columns ([`table`]), with the column typing rules monitoring relies on, per-column profiles
//! ([`profile`]) and dataset schemas with PII tags ([`schema`]). It knows nothing of storage:
//! dataset versions are stored by mltrail-store, which keeps the schema and profile as documents.

pub mod profile;
pub mod schema;
pub mod table;
pub mod version;
