//! mltrail-monitor owns the statistics that compare production data with a reference: per-column
//! drift tests whose numbers equal Evidently's and scipy's (checked against `../shared/golden/`),
//! Evidently's default test choice, and the dataset verdict.
//!
//! Everything here is plain synchronous code over slices: no I/O, no runtime. Reading files and
//! the prediction log belongs to the callers.

pub mod compare;
pub mod drift;
pub mod report;
pub mod special;
