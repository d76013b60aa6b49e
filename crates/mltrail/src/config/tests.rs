use std::path::Path;

use clap::{CommandFactory, Parser};
use serde_json::json;

use super::*;
use crate::{AuditCommand, Cli, Command};
use serde_json::Value;

fn key(table: &str, name: &str) -> Key {
    Key::find(table, name).unwrap_or_else(|| panic!("no key [{table}] {name}"))
}

fn write_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mltrail.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn load(file: Option<&Path>, env: &[(&str, &str)], flags: Layer) -> Result<Loaded> {
    Loaded::load_with(file, &Env::from_pairs(env.iter().copied()), flags)
}

fn error_of(result: Result<Loaded>) -> String {
    format!(
        "{:#}",
        result.expect_err("the configuration should be refused")
    )
}

#[test]
fn the_tables_listed_are_the_fields_of_config() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let fields: Vec<&String> = defaults.as_object().unwrap().keys().collect();
    let mut listed: Vec<&str> = Config::TABLES.iter().map(|t| t.name).collect();
    listed.sort();
    assert_eq!(fields, listed);
    for table in Config::TABLES {
        let keys: Vec<&String> = defaults[table.name].as_object().unwrap().keys().collect();
        let mut declared: Vec<&str> = table.keys.iter().map(|k| k.name).collect();
        declared.sort();
        assert_eq!(keys, declared, "[{}]", table.name);
        assert!(table.keys.iter().all(|k| !k.doc.trim().is_empty()));
    }
}

#[test]
fn precedence_is_default_then_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "[serve]\nport = 6001\nhost = \"0.0.0.0\"\n");
    let port = key("serve", "port");

    let none = load(None, &[], Layer::default()).unwrap();
    assert_eq!(none.config.serve.port, 5001);
    assert_eq!(*none.source(port), Source::Default);

    let from_file = load(Some(&file), &[], Layer::default()).unwrap();
    assert_eq!(from_file.config.serve.port, 6001);
    assert_eq!(
        *from_file.source(port),
        Source::File {
            path: file.clone(),
            legacy: None
        }
    );

    let env = [("MLTRAIL_SERVE_PORT", "7001")];
    let from_env = load(Some(&file), &env, Layer::default()).unwrap();
    assert_eq!(from_env.config.serve.port, 7001);
    assert_eq!(
        *from_env.source(port),
        Source::Env("MLTRAIL_SERVE_PORT".into())
    );
    // Keys the environment does not set keep the file's value.
    assert_eq!(from_env.config.serve.host, "0.0.0.0");

    let flags = Layer::flags("serve", &json!({"port": 8001})).unwrap();
    let from_flag = load(Some(&file), &env, flags).unwrap();
    assert_eq!(from_flag.config.serve.port, 8001);
    assert_eq!(*from_flag.source(port), Source::Flag("--port".into()));
}

#[test]
fn the_config_file_comes_from_the_flag_or_mltrail_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "[server]\nport = 6000\n");
    let by_env = load(
        None,
        &[("MLTRAIL_CONFIG", file.to_str().unwrap())],
        Layer::default(),
    )
    .unwrap();
    assert_eq!(by_env.config.server.port, 6000);
    assert_eq!(
        by_env.file,
        Some((file.clone(), Source::Env("MLTRAIL_CONFIG".into())))
    );
    let missing = dir.path().join("missing.toml");
    let by_flag = load(
        Some(&missing),
        &[("MLTRAIL_CONFIG", file.to_str().unwrap())],
        Layer::default(),
    );
    assert!(error_of(by_flag).contains("cannot read config file"));
}

#[test]
fn older_server_keys_in_a_file_set_their_new_tables() {
    let dir = tempfile::tempdir().unwrap();
    // What tests/cli.rs and the README wrote before mltrail.toml had other tables.
    let file = write_file(
        dir.path(),
        "[server]\nport = 0\nlog_format = \"json\"\nmax_artifact_bytes = 1000\n\
         backend_store_uri = \"sqlite:///x/m.db\"\nartifacts_destination = \"x/artifacts\"\n\
         monitor_interval_ms = 50\nwebhook_attempts = 2\nwebhook_backoff_ms = 10\n",
    );
    let loaded = load(Some(&file), &[], Layer::default()).unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.port, 0);
    assert_eq!(c.server.max_artifact_bytes, 1000);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.store.backend_store_uri, "sqlite:///x/m.db");
    assert_eq!(c.store.artifacts_destination, "x/artifacts");
    assert_eq!(c.monitor.interval_ms, 50);
    assert_eq!(c.monitor.webhook_attempts, 2);
    assert_eq!(c.monitor.webhook_backoff_ms, 10);
    assert_eq!(
        *loaded.source(key("log", "format")),
        Source::File {
            path: file.clone(),
            legacy: Some("`[server] log_format`".into())
        }
    );

    let twice = write_file(
        dir.path(),
        "[log]\nformat = \"text\"\n[server]\nlog_format = \"json\"\n",
    );
    let message = error_of(load(Some(&twice), &[], Layer::default()));
    assert!(message.contains("`[log] format` is set twice"), "{message}");
    assert!(message.contains("`[server] log_format`"), "{message}");
}

#[test]
fn unknown_keys_and_tables_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[serve]\nprot = 5001\n",
            "unknown key `[serve] prot`",
            "did you mean `port`?",
        ),
        (
            "[server]\nlog_fromat = \"json\"\n",
            "unknown key `[server] log_fromat`",
            "did you mean `log_format`?",
        ),
        (
            "[store]\nmodel = \"m@a\"\n",
            "unknown key `[store] model`",
            "it belongs in [serve]",
        ),
        (
            "[servr]\nport = 1\n",
            "unknown table `[servr]`",
            "did you mean [server]?",
        ),
        (
            "[authentication]\nmode = \"on\"\n",
            "unknown table `[authentication]`",
            "did you mean [auth]?",
        ),
        ("[auth]\nmode = \"sometimes\"\n", "[auth] mode", ""),
        (
            "port = 1\n",
            "unknown key `port` at the top",
            "put it under [server]",
        ),
    ];
    for (text, refused, hint) in cases {
        let file = write_file(dir.path(), text);
        let message = error_of(load(Some(&file), &[], Layer::default()));
        assert!(message.contains(refused), "{text:?}: {message}");
        assert!(message.contains(hint), "{text:?}: {message}");
        assert!(message.contains(file.to_str().unwrap()), "{message}");
    }
}

#[test]
fn invalid_values_name_the_key_and_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "[server]\nport = 70000\n");
    let message = error_of(load(Some(&file), &[], Layer::default()));
    assert!(message.contains("`[server] port`"), "{message}");
    assert!(message.contains(file.to_str().unwrap()), "{message}");
    assert!(message.contains("70000"), "{message}");

    let message = error_of(load(None, &[("MLTRAIL_PORT", "abc")], Layer::default()));
    assert!(message.contains("`[server] port`"), "{message}");
    assert!(
        message.contains("environment variable MLTRAIL_PORT"),
        "{message}"
    );

    let message = error_of(load(
        None,
        &[("MLTRAIL_LOG_FORMAT", "xml")],
        Layer::default(),
    ));
    assert!(message.contains("`[log] format`"), "{message}");
    assert!(message.contains("`text`"), "{message}");

    let file = write_file(dir.path(), "[serve]\ndeployment = 3\n");
    let message = error_of(load(Some(&file), &[], Layer::default()));
    assert!(message.contains("`[serve] deployment`"), "{message}");
}

#[test]
fn every_older_variable_keeps_its_meaning() {
    let env = [
        ("MLTRAIL_HOST", "0.0.0.0"),
        ("MLTRAIL_PORT", "6000"),
        ("MLTRAIL_BACKEND_STORE_URI", "sqlite:///e.db"),
        ("MLTRAIL_ARTIFACTS_DESTINATION", "e/artifacts"),
        ("MLTRAIL_LOG_FORMAT", "json"),
        ("MLTRAIL_MAX_ARTIFACT_BYTES", "10"),
        ("MLTRAIL_MONITOR_INTERVAL_MS", "20"),
        ("MLTRAIL_WEBHOOK_ATTEMPTS", "3"),
        ("MLTRAIL_WEBHOOK_BACKOFF_MS", "30"),
        ("MLTRAIL_LOG", "debug"),
        ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
    ];
    let c = load(None, &env, Layer::default()).unwrap().config;
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(c.server.port, 6000);
    assert_eq!(c.store.backend_store_uri, "sqlite:///e.db");
    assert_eq!(c.store.artifacts_destination, "e/artifacts");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.server.max_artifact_bytes, 10);
    assert_eq!(c.monitor.interval_ms, 20);
    assert_eq!(c.monitor.webhook_attempts, 3);
    assert_eq!(c.monitor.webhook_backoff_ms, 30);
    assert_eq!(c.log.filter, "debug");
    assert_eq!(c.serve.tracking_uri, "http://mlflow:5000");

    // MLTRAIL_TRACKING_URI wins over MLFLOW_TRACKING_URI, and the systematic name over both.
    let both = [
        ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
        ("MLTRAIL_TRACKING_URI", "http://mltrail:5000"),
    ];
    let c = load(None, &both, Layer::default()).unwrap().config;
    assert_eq!(c.serve.tracking_uri, "http://mltrail:5000");
    let all = [
        ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
        ("MLTRAIL_TRACKING_URI", "http://mltrail:5000"),
        ("MLTRAIL_SERVE_TRACKING_URI", "http://serve:5000"),
    ];
    let loaded = load(None, &all, Layer::default()).unwrap();
    assert_eq!(loaded.config.serve.tracking_uri, "http://serve:5000");
    assert_eq!(
        *loaded.source(key("serve", "tracking_uri")),
        Source::Env("MLTRAIL_SERVE_TRACKING_URI".into())
    );
}

#[test]
fn unknown_mltrail_variables_are_listed_not_refused() {
    let env = [
        ("MLTRAIL_NOT_A_KEY", "1"),
        ("MLTRAIL_CONFIG_DIR", "x"),
        ("MLTRAIL_PORT", "6000"),
        ("MLFLOW_EXPERIMENT_ID", "3"),
        ("PATH", "/bin"),
    ];
    let loaded = load(None, &env, Layer::default()).unwrap();
    assert_eq!(
        loaded.ignored_env,
        ["MLTRAIL_CONFIG_DIR", "MLTRAIL_NOT_A_KEY"]
    );
}

#[test]
fn each_default_is_the_one_the_libraries_use() {
    let c = Config::default();
    let log = mltrail_serving::predlog::LogConfig::new(
        "x",
        mltrail_serving::predlog::Durability::Default,
    );
    assert_eq!(c.serve.segment_bytes, log.segment_bytes);
    assert_eq!(
        c.serve.segment_bytes,
        mltrail_serving::predlog::DEFAULT_SEGMENT_BYTES
    );
    assert_eq!(
        std::time::Duration::from_secs(c.serve.segment_seconds),
        log.segment_age
    );
    let limits = mltrail_server::Limits::default();
    assert_eq!(c.server.max_artifact_bytes, limits.max_artifact_bytes);
    assert_eq!(c.server.max_json_bytes, limits.max_json_bytes);
    let policy = mltrail_server::webhooks::RetryPolicy::default();
    let ours = c.monitor.retry_policy();
    assert_eq!(ours.attempts, policy.attempts);
    assert_eq!(ours.first_backoff, policy.first_backoff);
    assert_eq!(ours.timeout, policy.timeout);
    assert_eq!(
        c.serve.tracking_uri,
        crate::tracking_client::DEFAULT_TRACKING_URI
    );
    assert_eq!(c.log.filter, DEFAULT_LOG_FILTER);
    assert_eq!(c.store.backend_store_uri, DEFAULT_STORE);
}

#[test]
fn clamps_stay_where_the_code_had_them() {
    let mut monitor = MonitorTable {
        interval_ms: 1,
        webhook_attempts: 0,
        ..MonitorTable::default()
    };
    assert_eq!(monitor.interval(), std::time::Duration::from_millis(10));
    assert_eq!(monitor.retry_policy().attempts, 1);
    monitor.interval_ms = 25;
    assert_eq!(monitor.interval(), std::time::Duration::from_millis(25));
}

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn every_flag_sets_a_key() {
    let server = parse(&[
        "mltrail",
        "server",
        "--host=h",
        "--port=1",
        "--backend-store-uri=sqlite:///f.db",
        "--artifacts-destination=f",
        "--log-format=json",
        "--max-artifact-bytes=2",
        "--monitor-interval-ms=3",
        "--webhook-attempts=4",
        "--webhook-backoff-ms=5",
    ]);
    let Command::Server(args) = server.command else {
        panic!("not the server command")
    };
    let loaded = load(None, &[], args.layer().unwrap()).unwrap();
    let c = &loaded.config;
    assert_eq!((c.server.host.as_str(), c.server.port), ("h", 1));
    assert_eq!(c.store.backend_store_uri, "sqlite:///f.db");
    assert_eq!(c.store.artifacts_destination, "f");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.server.max_artifact_bytes, 2);
    assert_eq!(
        (
            c.monitor.interval_ms,
            c.monitor.webhook_attempts,
            c.monitor.webhook_backoff_ms
        ),
        (3, 4, 5)
    );
    assert_eq!(
        *loaded.source(key("monitor", "interval_ms")),
        Source::Flag("--monitor-interval-ms".into())
    );

    let serve = parse(&[
        "mltrail",
        "serve",
        "--model=m@a",
        "--deployment=d",
        "--tracking-uri=http://t:1",
        "--host=h",
        "--port=2",
        "--log-dir=l",
        "--durability=fsync",
        "--poll-interval-ms=3",
        "--max-body-bytes=4",
        "--segment-bytes=5",
        "--segment-seconds=6",
        "--archive-interval-ms=7",
        "--report-interval-ms=10",
        "--index-entries=8",
        "--tls-cert=c.pem",
        "--tls-key=k.pem",
        "--auth=on",
        "--log-format=json",
        "--explain=always",
        "--explain-method=path_dependent",
        "--explain-background=9",
        "--policy=p.toml",
        "--policy-interval-ms=11",
        "--policy-report-interval-ms=12",
        "--output=ranking",
        "--item-column=item",
        "--score-output=score",
        "--key-column=user",
        "--catalog=cat",
        "--catalog-item-column=sku",
        "--catalog-available-column=in_stock",
        "--catalog-mode=filter",
        "--catalog-interval-ms=13",
    ]);
    let Command::Serve(args) = serve.command else {
        panic!("not the serve command")
    };
    let loaded = load(None, &[], args.layer().unwrap()).unwrap();
    let s = &loaded.config.serve;
    assert_eq!(s.model.as_deref(), Some("m@a"));
    assert_eq!(s.deployment.as_deref(), Some("d"));
    assert_eq!(s.tracking_uri, "http://t:1");
    assert_eq!((s.host.as_str(), s.port), ("h", 2));
    assert_eq!(s.log_dir.as_deref(), Some(Path::new("l")));
    assert_eq!(s.durability, crate::serve::DurabilityArg::Fsync);
    assert_eq!(
        (
            s.poll_interval_ms,
            s.max_body_bytes,
            s.segment_bytes,
            s.segment_seconds,
            s.archive_interval_ms,
            s.index_entries
        ),
        (3, 4, 5, 6, 7, 8)
    );
    assert_eq!(loaded.config.log.format, LogFormat::Json);
    assert_eq!(s.report_interval_ms, 10);
    assert_eq!(
        (
            s.policy.as_deref(),
            s.policy_interval_ms,
            s.policy_report_interval_ms
        ),
        (Some(std::path::Path::new("p.toml")), 11, 12)
    );
    assert_eq!(s.tls_cert.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(s.tls_key.as_deref(), Some(Path::new("k.pem")));
    assert_eq!(loaded.config.auth.mode, super::AuthModeArg::On);
    assert_eq!(
        (s.explain, s.explain_method, s.explain_background),
        (
            crate::serve::ExplainArg::Always,
            crate::serve::ExplainMethodArg::PathDependent,
            9
        )
    );
    assert_eq!(
        (
            s.output,
            s.item_column.as_deref(),
            s.score_output.as_deref()
        ),
        (
            crate::serve::OutputArg::Ranking,
            Some("item"),
            Some("score")
        )
    );
    assert_eq!(
        (
            s.key_column.as_deref(),
            s.catalog.as_deref(),
            s.catalog_item_column.as_deref(),
            s.catalog_available_column.as_deref(),
            s.catalog_mode,
            s.catalog_interval_ms
        ),
        (
            Some("user"),
            Some("cat"),
            Some("sku"),
            Some("in_stock"),
            crate::serve::CatalogModeArg::Filter,
            13
        )
    );
    // Every key of [serve] has its flag.
    for k in ServeTable::SCHEMA.keys {
        assert!(
            loaded.source(key("serve", k.name)) != &Source::Default,
            "no flag for [serve] {}",
            k.name
        );
    }
}

#[test]
fn the_cli_is_valid_and_help_shows_defaults_and_variables() {
    let mut cli = annotate_help(Cli::command());
    cli.build();
    cli.clone().debug_assert();
    let serve = cli.find_subcommand_mut("serve").unwrap();
    let help = serve.render_help().to_string();
    assert!(
        help.contains("[default: 5001] [env: MLTRAIL_SERVE_PORT]"),
        "{help}"
    );
    assert!(help.contains("[env: MLTRAIL_SERVE_MODEL]"), "{help}");
    let server = cli.find_subcommand_mut("server").unwrap();
    let help = server.render_help().to_string();
    assert!(
        help.contains("[default: 127.0.0.1] [env: MLTRAIL_SERVER_HOST, MLTRAIL_HOST]"),
        "{help}"
    );
    assert!(
        help.contains("[default: 10000] [env: MLTRAIL_MONITOR_INTERVAL_MS]"),
        "{help}"
    );
}

#[test]
fn show_names_each_source_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "[serve]\nport = 6001\n[server]\nlog_format = \"json\"\n",
    );
    let env = [
        (
            "MLTRAIL_BACKEND_STORE_URI",
            "postgresql://u:secret@db:5432/m",
        ),
        ("MLTRAIL_UNUSED", "1"),
    ];
    let flags = Layer::flags("serve", &json!({"deployment": "d"})).unwrap();
    let loaded = load(Some(&file), &env, flags).unwrap();

    let text = loaded.show_text().unwrap();
    assert!(!text.contains("secret"), "{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in {text}"))
            .to_string()
    };
    assert!(line("backend_store_uri = \"postgresql://u:***@db:5432/m\"")
        .ends_with("# environment variable MLTRAIL_BACKEND_STORE_URI"));
    assert!(line("port = 6001").contains(file.to_str().unwrap()));
    assert!(line("deployment = \"d\"").ends_with("# flag --deployment"));
    assert!(line("port = 5000").ends_with("# default"));
    assert!(line("format = \"json\"").contains("`[server] log_format`"));
    assert!(line("# model is not set").ends_with("# default"));
    assert!(text.contains("MLTRAIL_UNUSED"), "{text}");
    // What it prints is a mltrail.toml that sets the same values.
    let reread = write_file(dir.path(), &text);
    let again = load(Some(&reread), &[], Layer::default()).unwrap();
    assert_eq!(again.config.serve.port, 6001);
    assert_eq!(again.config.serve.deployment.as_deref(), Some("d"));

    let shown = loaded.show_json().unwrap();
    assert!(!shown.to_string().contains("secret"));
    assert_eq!(shown["tables"]["serve"]["port"]["value"], 6001);
    assert_eq!(shown["tables"]["serve"]["port"]["source"], "file");
    assert_eq!(
        shown["tables"]["log"]["format"]["as"],
        "[server] log_format"
    );
    assert_eq!(
        shown["tables"]["serve"]["deployment"]["from"],
        "--deployment"
    );
    assert_eq!(
        shown["tables"]["store"]["backend_store_uri"]["from"],
        "MLTRAIL_BACKEND_STORE_URI"
    );
    assert_eq!(shown["tables"]["serve"]["model"]["value"], Value::Null);
    assert_eq!(shown["ignored_env"], json!(["MLTRAIL_UNUSED"]));
}

#[test]
fn the_example_reads_back_as_the_defaults() {
    let example = example(&Cli::command()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), &example);
    let loaded = load(Some(&file), &[], Layer::default()).unwrap();
    assert_eq!(loaded.config, Config::default());
    for k in Key::all() {
        assert!(
            example.contains(&format!("# env: {}", k.env_names().join(", "))),
            "{k} has no env line"
        );
    }
    assert!(example.contains(
        "# flag: --backend-store-uri (mltrail server, mltrail audit verify, mltrail audit log)\n"
    ));
    assert!(example.contains("# flag: --log-format (mltrail server, mltrail serve)\n"));
}

#[test]
fn the_readme_shows_the_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let example = example(&Cli::command()).unwrap();
    assert!(
        readme.contains(&format!("```toml\n{example}```\n")),
        "README.md's configuration example differs from `mltrail config example`; \
         paste its output into the README:\n{example}"
    );
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact("postgresql://u:secret@h:5432/db"),
        "postgresql://u:***@h:5432/db"
    );
    assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
}

#[test]
fn each_listing_keeps_its_own_limit() {
    let Command::Audit {
        command: AuditCommand::Log { limit, .. },
    } = parse(&["mltrail", "audit", "log"]).command
    else {
        panic!("not audit log")
    };
    assert_eq!(limit.limit, 1000);
    let help = |path: &[&str]| {
        let mut cli = Cli::command();
        cli.build();
        let mut cmd = &mut cli;
        for name in path {
            cmd = cmd.find_subcommand_mut(name).unwrap();
        }
        cmd.render_help().to_string()
    };
    assert!(help(&["monitor", "results"]).contains("[default: 24]"));
    assert!(help(&["monitor", "alerts"]).contains("[default: 50]"));
    assert!(help(&["audit", "log"]).contains("[default: 1000]"));
}

#[test]
fn audit_checks_a_configured_artifact_destination_even_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").display().to_string();
    let flags = Layer::flags("store", &json!({"artifacts_destination": missing})).unwrap();
    let loaded = load(None, &[], flags).unwrap();
    assert_eq!(crate::audit_artifacts(&loaded), Some(missing));
    let by_env = load(
        None,
        &[("MLTRAIL_ARTIFACTS_DESTINATION", "elsewhere")],
        Layer::default(),
    )
    .unwrap();
    assert_eq!(
        crate::audit_artifacts(&by_env).as_deref(),
        Some("elsewhere")
    );
    // The default folder only when it exists (relative to the working directory).
    let default = load(None, &[], Layer::default()).unwrap();
    assert_eq!(
        crate::audit_artifacts(&default).is_some(),
        Path::new(DEFAULT_ARTIFACTS).exists()
    );
}
