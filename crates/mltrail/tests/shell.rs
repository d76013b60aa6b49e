//! `mltrail completions` and `mltrail man` are generated from the command definitions: every
//! subcommand is in them; listings print JSON with `--json`.

use std::process::Command;

fn mltrail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mltrail"))
        .args(args)
        .output()
        .expect("run mltrail")
}

#[test]
fn completion_scripts_name_the_subcommands_and_their_flags() {
    for (shell, marker) in [
        ("bash", "_mltrail()"),
        ("zsh", "#compdef mltrail"),
        ("fish", "complete -c mltrail"),
    ] {
        let out = mltrail(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}");
        for word in ["serve", "monitor", "catalog-mode", "otlp-endpoint"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let refused = mltrail(&["completions", "tcsh"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn manual_pages_cover_every_subcommand() {
    let out = mltrail(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH mltrail"),
        "{}",
        &page[..200.min(page.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let out = mltrail(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in ["mltrail.1", "mltrail-serve.1", "mltrail-monitor-create.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn listings_print_json_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:///{}/mltrail.db", dir.path().display());
    for (command, key) in [("users", "users"), ("tokens", "tokens")] {
        let out = mltrail(&[command, "list", "--json", "--backend-store-uri", &uri]);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(listed[key].is_array(), "{command}: {listed}");
    }
}
