//! A clone of the repository alone passes every test and runs every benchmark: nothing the tests,
//! benchmarks, scripts or sources read lives outside it (the team's `shared/` folder sits beside the repository only on the team's
//! machines; the golden files the tests use are copied into `tests/golden/`).

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file below `dir` whose name ends in one of `endings`, skipping build output and venvs.
fn files(dir: &Path, endings: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".venv" | ".work" | "node_modules" | ".git"
            ) {
                files(&path, endings, out);
            }
        } else if endings.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

#[test]
fn no_test_script_or_source_reads_outside_the_repository() {
    let root = repository();
    let mut found = Vec::new();
    for dir in ["crates", "scripts", "tests", "bench", ".ci"] {
        files(
            &root.join(dir),
            &[".rs", ".py", ".sh", ".toml", "run"],
            &mut found,
        );
    }
    assert!(found.len() > 20, "the walk found the sources: {found:?}");
    let outside: Vec<String> = found
        .iter()
        .filter(|p| !p.ends_with("lone_clone.rs"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|text| text.contains("../shared") || text.contains("/shared/golden"))
                .unwrap_or(false)
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "these files read the team's shared/ folder, which a lone clone does not have; copy what they need into tests/golden/: {outside:?}"
    );
}

#[test]
fn the_golden_copy_is_complete() {
    let golden = repository().join("tests/golden");
    for file in [
        "data/reference.csv",
        "data/current.csv",
        "golden/drift.json",
        "gen_data.py",
        "README.md",
    ] {
        let path = golden.join(file);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(len > 0, "{} is empty", path.display());
    }
}
