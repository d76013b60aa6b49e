//! mltrail-data owns tabular data coming in: CSV and Parquet files read through arrow into typed
//! columns, with the column typing rules monitoring relies on. (Dataset versions, schemas with PII
//! tags and profiles will live here too.)

pub mod profile;
pub mod table;
