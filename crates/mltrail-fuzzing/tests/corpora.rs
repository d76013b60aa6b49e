//! The CI smoke run of the fuzz targets: every committed seed and corpus input
//! (`fuzz/seeds/<target>/`, `fuzz/corpus/<target>/`) through its target, so a change that
//! breaks on an input the fuzzer once found fails here, without nightly or cargo fuzz.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for folder in ["seeds", "corpus"] {
        if let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = mltrail_fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let files = inputs(target);
    assert!(!files.is_empty(), "{target} has no committed seeds");
    for file in &files {
        let data = std::fs::read(file).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} failed on {}", file.display());
    }
}

macro_rules! replays {
    ($($target:ident),*) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target));
        }
    )*};
}

replays!(
    audit_verify,
    filter,
    model_files,
    onnx_model,
    predlog_segments,
    scoring,
    table_ingest,
    tracking_api
);

#[test]
fn every_target_is_replayed() {
    let replayed = [
        "audit_verify",
        "filter",
        "model_files",
        "onnx_model",
        "predlog_segments",
        "scoring",
        "table_ingest",
        "tracking_api",
    ];
    let targets: Vec<&str> = mltrail_fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(targets, replayed);
}
