//! mltrail-monitor owns the statistics that compare production data with a reference: per-column
//! drift tests whose numbers equal Evidently's and scipy's (checked against `tests/golden/`),
//! Evidently's default test choice, and the dataset verdict.
//!
//! Everything but [`runner`] is plain synchronous code over tables and slices, with no I/O:
//! [`compare`] (two tables, column by column), [`window`] (a window of the prediction log),
//! [`performance`] (metrics once labels arrive) and [`rules`] (alert conditions). [`runner`] is
//! the engine `mltrail server` runs: it reads the archived prediction log through the artifact
//! store, stores results through the metadata store, and hands alerts to a sink.

pub mod compare;
pub mod drift;
pub mod fairness;
pub mod performance;
pub mod ranking;
pub mod report;
pub mod rules;
pub mod runner;
pub mod seasonal;
pub mod special;
pub mod window;
