//! The fuzz targets. Each module's `run` takes any bytes and panics only on a defect: a panic
//! in the code under test, or a property the module's comment states that does not hold.
//! `fuzz/` (cargo fuzz, nightly) drives them coverage-guided; `tests/corpora.rs` replays the
//! committed seeds and corpora in the ordinary test suite. Results: docs/reliability.md.

pub mod audit_verify;
pub mod filter;
pub mod model_files;
pub mod onnx_model;
pub mod predlog_segments;
pub mod scoring;
pub mod table_ingest;
pub mod tracking_api;

/// A target's body: any bytes in, a panic only on a defect.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` and the corpora's folders name them.
pub const TARGETS: [(&str, Target); 8] = [
    ("audit_verify", audit_verify::run),
    ("filter", filter::run),
    ("model_files", model_files::run),
    ("onnx_model", onnx_model::run),
    ("predlog_segments", predlog_segments::run),
    ("scoring", scoring::run),
    ("table_ingest", table_ingest::run),
    ("tracking_api", tracking_api::run),
];
