//! `mltrail trace PREDICTION_ID`: one prediction and everything behind it (its record,
//! explanation, feedback, model version, run, training data and their audit events), checked
//! here the way its receiver would check it without the server: every event's chain hash from
//! its content, every inclusion path to the root, every entity state against its digest, the
//! record against its segment's Merkle root, and the root against a signed checkpoint.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_core::merkle::{self, Hash};
use mltrail_core::ChainHash;
use serde_json::Value;

use crate::args::ClientArgs;
use crate::checkpoint::{self, Verifier};
use crate::tracking_client::Client;

#[derive(Args)]
pub struct TraceArgs {
    /// The prediction's id (the `id` a deployment answered with).
    id: String,
    /// A deployment's URL (`mltrail serve`), asked when the tracking server's archive does not
    /// hold the prediction yet: a deployment answers for the records it has not archived.
    #[arg(long)]
    serving: Option<String>,
    /// The key that checks the trail's checkpoints (`mltrail audit verifier-key` prints it
    /// where the signing key is). Without it the checkpoint is checked only against the key
    /// the server sent, which proves nothing about who signed.
    #[arg(long, env = "MLTRAIL_AUDIT_VERIFIER_KEY")]
    verifier_key: Option<String>,
    /// Check a trace saved earlier (`mltrail trace ID --json > FILE`, or the record route's
    /// answer) instead of asking a server: what its receiver does, offline.
    #[arg(long, value_name = "FILE", conflicts_with = "serving")]
    file: Option<std::path::PathBuf>,
    /// Print the whole trace as JSON (what a receiver can check on their own).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Fetches and checks the trace; `Ok(false)` when a proof fails.
pub async fn run(args: TraceArgs) -> Result<bool> {
    let id = uuid::Uuid::parse_str(args.id.trim())
        .map_err(|_| anyhow!("`{}` is not a prediction id (a UUID)", args.id))?;
    let trusted = args
        .verifier_key
        .as_deref()
        .map(Verifier::parse)
        .transpose()
        .context("--verifier-key")?;
    let trace = match &args.file {
        Some(file) => {
            let text = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a trace (JSON)", file.display()))?
        }
        None => fetch(&args, id).await?,
    };
    let checked = check(&trace, id, trusted.as_ref());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print_summary(&trace);
    }
    for line in &checked.lines {
        eprintln!("{line}");
    }
    Ok(checked.failures == 0)
}

/// The trace from the tracking server, else (not archived yet) from the deployment.
async fn fetch(args: &TraceArgs, id: uuid::Uuid) -> Result<Value> {
    let path = format!("/api/v1/predictions/{id}/record");
    let tracking = args.client.client()?;
    Ok(match tracking.get_json(&path, &format!("prediction {id}")).await {
        Ok(trace) => trace,
        Err(e)
            if e.downcast_ref::<crate::tracking_client::Refused>()
                .is_some_and(|r| r.code == "RESOURCE_DOES_NOT_EXIST") =>
        {
            match &args.serving {
            Some(url) => Client::new(url.trim_end_matches('/').to_string())?
                .get_json(&path, &format!("prediction {id} at {url}"))
                .await?,
            None => bail!(
                "{e}\nif it was served recently, its deployment still holds it: pass --serving http://HOST:PORT"
            ),
            }
        }
        Err(e) => return Err(e),
    })
}

/// What checking a trace found: one line per check, and how many failed.
#[derive(Debug, Default)]
pub struct Checked {
    pub lines: Vec<String>,
    pub failures: usize,
}

impl Checked {
    fn ok(&mut self, line: String) {
        self.lines.push(format!("ok      {line}"));
    }

    fn fail(&mut self, line: String) {
        self.failures += 1;
        self.lines.push(format!("FAILED  {line}"));
    }

    fn note(&mut self, line: String) {
        self.lines.push(format!("note    {line}"));
    }
}

fn hash_of(v: &Value) -> Option<Hash> {
    hash_hex(v.as_str()?)
}

fn hash_hex(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}

fn path_of(v: &Value) -> Option<Vec<Hash>> {
    v.as_array()?.iter().map(hash_of).collect()
}

/// Checks every proof a trace carries (docs/audit.md, "Traces").
pub fn check(trace: &Value, id: uuid::Uuid, trusted: Option<&Verifier>) -> Checked {
    let mut out = Checked::default();
    // A proof of another prediction proves nothing about this one.
    let id_text = id.to_string();
    if trace["prediction_id"].as_str() != Some(id_text.as_str())
        || trace["prediction"]["id"].as_str() != Some(id_text.as_str())
    {
        out.fail(format!(
            "the trace is about prediction {}, not {id}",
            trace["prediction"]["id"].as_str().unwrap_or("?")
        ));
        return out;
    }
    let audit = &trace["audit"];
    let (Some(size), Some(root)) = (audit["tree_size"].as_u64(), hash_of(&audit["root"])) else {
        out.fail("the trace has no audit tree (tree_size, root)".into());
        return out;
    };
    // The root against a signed checkpoint.
    match audit["checkpoint"].as_str() {
        None if trusted.is_some() => out.fail("no signed checkpoint came with the trace, so --verifier-key checks nothing: compare the root with a checkpoint you saved (`mltrail audit checkpoint`)".into()),
        None => out.note("no signed checkpoint came with the trace: compare the root with a checkpoint you saved (`mltrail audit checkpoint`)".into()),
        Some(note) => {
            let sent = audit["verifier_key"].as_str().and_then(|k| Verifier::parse(k).ok());
            let (key, whose) = match (trusted, &sent) {
                (Some(k), _) => (Some(k.clone()), "your verifier key"),
                (None, Some(k)) => (Some(k.clone()), "the key the server sent (pass --verifier-key to check it against one you trust)"),
                (None, None) => (None, ""),
            };
            match key.map(|k| checkpoint::open(note, &k)) {
                Some(Ok(c)) if c.size == size && c.root == root => out.ok(format!(
                    "checkpoint of {size} events signed with {whose} names the trace's root"
                )),
                Some(Ok(c)) => out.fail(format!(
                    "the checkpoint names {} events and another root than the trace's {size}",
                    c.size
                )),
                Some(Err(e)) => out.fail(format!("the checkpoint does not check: {e:#}")),
                None => out.fail("the checkpoint names no verifier key".into()),
            }
        }
    }
    // Every event: its hash from its content, its leaf in the tree.
    let mut digests = std::collections::BTreeMap::new();
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    let mut proven = 0;
    for e in &events {
        let seq = e["seq"].as_i64().unwrap_or(-1);
        let parsed: Result<mltrail_core::AuditEvent, _> = serde_json::from_value(e.clone());
        let (Ok(event), Some(previous), Some(hash), Some(index), Some(path)) = (
            parsed,
            hash_of(&e["previous_hash"]),
            hash_of(&e["hash"]),
            e["leaf_index"].as_u64(),
            path_of(&e["audit_path"]),
        ) else {
            out.fail(format!("event {seq} is incomplete"));
            continue;
        };
        if ChainHash(previous).next(&event).0 != hash {
            out.fail(format!(
                "event {seq}: its hash does not follow from its content"
            ));
            continue;
        }
        if !merkle::verify_inclusion(&merkle::leaf_hash(&hash), index, size, &path, &root) {
            out.fail(format!(
                "event {seq}: its inclusion path does not lead to the root"
            ));
            continue;
        }
        proven += 1;
        digests.insert(seq, event);
    }
    if proven == events.len() {
        out.ok(format!(
            "{proven} audit events: hashes follow from their content, each is in the tree"
        ));
    }
    // Entity states against their latest event's digest.
    let mut proven_states: Vec<(String, String, Value)> = Vec::new();
    for entity in trace["entities"].as_array().into_iter().flatten() {
        let Some(state) = entity.get("state") else {
            continue;
        };
        let what = format!(
            "{} {}",
            entity["entity_type"].as_str().unwrap_or("?"),
            entity["entity_id"].as_str().unwrap_or("?")
        );
        let (kind, entity_id) = (
            entity["entity_type"].as_str().unwrap_or(""),
            entity["entity_id"].as_str().unwrap_or(""),
        );
        let seqs: Vec<i64> = entity["events"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        // An event vouches only for the entity it names.
        if let Some(other) = seqs
            .iter()
            .filter_map(|seq| digests.get(seq))
            .find(|e| e.entity_type != kind || e.entity_id != entity_id)
        {
            out.fail(format!(
                "{what}: event {} is about {} {}, not this",
                other.seq, other.entity_type, other.entity_id
            ));
            continue;
        }
        let latest = seqs.iter().max().and_then(|seq| digests.get(seq));
        // The digest covers `state_json`'s bytes, which must say what `state` says.
        let canonical = entity["state_json"].as_str().unwrap_or("");
        if serde_json::from_str::<Value>(canonical).ok().as_ref() != Some(state) {
            out.fail(format!(
                "{what}: its state_json does not say what its state says"
            ));
            continue;
        }
        let digest = blake3::hash(canonical.as_bytes()).to_hex().to_string();
        match latest {
            Some(event) if event.state_digest.as_deref() == Some(digest.as_str()) => {
                out.ok(format!(
                    "{what}: its state is what its latest event recorded"
                ));
                proven_states.push((kind.to_string(), entity_id.to_string(), state.clone()));
            }
            Some(event) => out.fail(format!(
                "{what}: its state does not digest to what event {} recorded",
                event.seq
            )),
            None => out.fail(format!("{what}: no proven event records it")),
        }
    }
    check_claims(trace, &proven_states, &mut out);
    // The record in its segment, the segment in the trail.
    let segment = &trace["segment"];
    match segment["in_trail"].as_str() {
        // An auditor (who passes a key) asked for a proof, and there is none yet.
        Some("not archived yet") if trusted.is_some() => out.fail(
            "the prediction is not archived yet, so nothing proves its record: ask again once its segment is archived"
                .into(),
        ),
        Some("not archived yet") => out.note(
            "the prediction is not archived yet: its proof exists once its segment is (ask again later)"
                .into(),
        ),
        _ => check_segment(trace, &digests, &mut out),
    }
    // The model file that answered is the one its deployment's events name.
    let served = trace["prediction"]["digest"].as_str();
    // The deployment's events about this version (`D:MODEL/V`), not any deployment's.
    let deployment_id = format!(
        "{}:{}/{}",
        trace["prediction"]["deployment"].as_str().unwrap_or(""),
        trace["prediction"]["model"].as_str().unwrap_or(""),
        trace["prediction"]["version"].as_str().unwrap_or("")
    );
    let deployed: Vec<&str> = digests
        .values()
        .filter(|e| e.entity_type == "deployment" && e.entity_id == deployment_id)
        .filter_map(|e| e.state_digest.as_deref())
        .collect();
    match served {
        Some(d) if deployed.contains(&d) => {
            out.ok("the model file that answered is the one the deployment's events name".into())
        }
        Some(_) if deployed.is_empty() => {
            out.note("no deployment event names the version that answered".into())
        }
        Some(_) => out.fail(
            "the model file that answered is not the one the deployment's events name".into(),
        ),
        None => out.fail("the trace names no model file digest".into()),
    }
    out
}

/// What the trace shows beside the proven record and states must be what they say: the inputs
/// and the explanation served are in the record, the model version's source and run, the run's
/// tags and params and the training data's digest in their proven states. What no proof covers
/// (feedback, an explanation computed later, opened personal data) is said to be so.
fn check_claims(trace: &Value, proven: &[(String, String, Value)], out: &mut Checked) {
    let state = |kind: &str, id: &str| {
        proven
            .iter()
            .find(|(k, i, _)| k == kind && i == id)
            .map(|(_, _, s)| s)
    };
    let record = &trace["prediction"];
    // Inputs: the record's own, plus only the columns it holds sealed.
    let stored = record["inputs"].as_object();
    let sealed: Vec<&str> = record["sealed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let shown = trace["inputs"].as_object();
    match (stored, shown) {
        (Some(stored), Some(shown)) => {
            let same = stored.iter().all(|(k, v)| shown.get(k) == Some(v))
                && shown
                    .keys()
                    .all(|k| stored.contains_key(k) || sealed.contains(&k.as_str()));
            if !same {
                out.fail("the inputs shown are not the ones the record holds".into());
            } else if shown.len() > stored.len() {
                out.note(format!(
                    "{} personal-data inputs were opened by the server; the record proves only their sealed form",
                    shown.len() - stored.len()
                ));
            }
        }
        _ => out.fail("the trace's inputs are not a JSON object".into()),
    }
    // The explanation: served with the record (proven), else computed later (not).
    let mut shown_explanation = trace["explanation"].clone();
    if let Some(e) = shown_explanation.as_object_mut() {
        e.remove("reasons");
    }
    match (&record["explanation"], &shown_explanation) {
        (Value::Null, Value::Null) => {}
        (Value::Null, _) => out.note(
            "the explanation was computed after serving, from the stored input; no proof covers it"
                .into(),
        ),
        (served, shown) if served == shown => {}
        _ => out.fail("the explanation shown is not the one served with the record".into()),
    }
    // Reason codes follow from the explanation and the inputs: worded again here.
    if let Some(reasons) = trace["explanation"].get("reasons") {
        let inputs = serde_json::to_string(&trace["inputs"]).unwrap_or_default();
        let worded = mltrail_serving::explanation::reasons(&shown_explanation, &inputs);
        if reasons != &serde_json::json!(worded) {
            out.fail("the reason codes shown do not follow from the explanation".into());
        }
    }
    if trace["feedback"].as_array().is_some_and(|f| !f.is_empty()) {
        out.note("feedback is shown as the archive holds it; no proof covers it".into());
    }
    if let Some(files) = trace["segment"]["unreadable_files"].as_array() {
        out.note(format!(
            "{} archive files could not be read: feedback or explanations in them are not shown",
            files.len()
        ));
    }
    // The model version that answered, its run, and its training data: each bound to the
    // proven state of the entity the record names, not to any proven state of its kind.
    let (model, version) = (
        record["model"].as_str().unwrap_or(""),
        record["version"].as_str().unwrap_or(""),
    );
    if trace["deployment"] != record["deployment"] {
        out.fail("the deployment shown is not the record's".into());
    }
    let version_id = format!("{model}/{version}");
    let mv = &trace["model_version"];
    let Some(mv_state) = state("model_version", &version_id) else {
        out.fail(format!(
            "no proven state of model version {version_id}, which answered"
        ));
        return;
    };
    if mv["name"].as_str() != Some(model)
        || mv["version"].as_str() != Some(version)
        || mv["source"] != mv_state["source"]
        || mv["run_id"] != mv_state["run_id"]
    {
        out.fail("the model version shown is not the proven state of the one that answered".into());
    }
    // Its run: its own `run_id`, else (MLflow 3) its logged model's source run.
    let run_id = match mv_state["run_id"].as_str().filter(|r| !r.is_empty()) {
        Some(run) => Some(run.to_string()),
        None => mv_state["model_id"]
            .as_str()
            .and_then(|m| state("logged_model", m))
            .and_then(|s| s["source_run_id"].as_str().map(str::to_string)),
    };
    let run = &trace["run"];
    match (run["info"]["run_id"].as_str(), &run_id) {
        (None, None) => {}
        (Some(shown), Some(expected)) if shown == expected => {
            match state("run", expected) {
                Some(s) => {
                    let tags_match =
                        run["data"]["tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .all(|t| {
                                t["key"]
                                    .as_str()
                                    .is_some_and(|k| s["tags"][k] == t["value"])
                            });
                    if !tags_match {
                        out.fail("the run's tags shown are not its proven state's".into());
                    }
                }
                None => out.fail(format!("no proven state of run {expected}")),
            }
            // Params come in batches (`RUN/BATCH`): only this run's count.
            let batch_prefix = format!("{expected}/");
            let params_match = run["data"]["params"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|p| {
                    proven
                        .iter()
                        .filter(|(k, id, _)| k == "params" && id.starts_with(&batch_prefix))
                        .any(|(_, _, s)| {
                            s.as_array()
                                .into_iter()
                                .flatten()
                                .any(|pair| pair[0] == p["key"] && pair[1] == p["value"])
                        })
                });
            if !params_match {
                out.fail("the run's params shown are not in its proven param batches".into());
            }
            if run["data"]["metrics"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
            {
                out.note("the run's metrics are shown as stored; their batches' events are proven, not each value".into());
            }
        }
        _ => out.fail("the run shown is not the one the model version names".into()),
    }
    // The training data: the dataset version the model version's proven tag names.
    let tagged = mv_state["tags"]["mltrail.training_data"].as_str();
    let dataset = &trace["dataset"];
    match (tagged.and_then(|t| t.rsplit_once('@')), dataset.is_null()) {
        (None, true) => {}
        (Some((name, v)), false) => {
            let digest = dataset["digest"].as_str();
            match state("dataset_version", &format!("{name}/{v}")) {
                Some(s)
                    if dataset["name"].as_str() == Some(name)
                        && dataset["version"].as_i64().map(|n| n.to_string()).as_deref() == Some(v)
                        && digest.is_some()
                        && s["file"]["digest"].as_str() == digest =>
                {
                    let digest = digest.unwrap_or_default();
                    out.ok(format!(
                        "the training data {name}@{v} (digest {}) is its proven dataset version",
                        &digest[..digest.len().min(16)]
                    ))
                }
                _ => out.fail(format!(
                    "the training data shown is not the proven dataset version {name}@{v} the model version names"
                )),
            }
        }
        (None, false) => {
            out.fail("the trace shows training data the model version does not name".into())
        }
        (Some((name, v)), true) => out.note(format!(
            "the model version names training data {name}@{v}, which the trace does not show"
        )),
    }
    // Its evaluation: the kept one, as its event recorded.
    let evaluation = &trace["evaluation"];
    if !evaluation.is_null() {
        match state("evaluation", &version_id) {
            Some(s) if s == evaluation => {}
            _ if evaluation.get("unreadable").is_some() => out.note(format!(
                "the version's evaluation could not be read: {}",
                evaluation["unreadable"]
            )),
            _ => out.fail("the evaluation shown is not the version's proven one".into()),
        }
    }
}

fn check_segment(
    trace: &Value,
    digests: &std::collections::BTreeMap<i64, mltrail_core::AuditEvent>,
    out: &mut Checked,
) {
    let segment = &trace["segment"];
    let summary = serde_json::from_value::<mltrail_serving::segment_tree::ArchivedSegment>(
        segment["segment"].clone(),
    )
    .ok();
    let leaf =
        serde_json::from_value::<mltrail_serving::record::LogRecord>(trace["prediction"].clone())
            .ok()
            .and_then(|r| mltrail_serving::segment_tree::record_leaf(&r).ok());
    let root = summary.as_ref().and_then(|s| hash_hex(&s.root));
    let (Some(summary), Some(root), Some(leaf), Some(index), Some(path)) = (
        summary,
        root,
        leaf,
        segment["leaf_index"].as_u64(),
        path_of(&segment["audit_path"]),
    ) else {
        out.fail("the trace's segment proof is incomplete".into());
        return;
    };
    let count = summary.records;
    if !merkle::verify_inclusion(&leaf, index, count, &path, &root) {
        out.fail("the prediction's record does not lead to its segment's root".into());
        return;
    }
    if !summary.named_by_root() {
        out.fail("the segment's file name announces another root than its summary's".into());
        return;
    }
    let digest = summary.state_digest();
    let artifact = summary.artifact.as_str();
    let recorded = digests.values().any(|e| {
        e.entity_type == mltrail_store::segments::SEGMENT_KIND
            && e.entity_id == artifact
            && e.state_digest.as_deref() == Some(digest.as_str())
    });
    if recorded {
        out.ok(format!(
            "the record is leaf {index} of the {count} in {artifact}, whose summary is in the trail"
        ));
    } else {
        out.fail(format!(
            "the record is in {artifact}, but no proven event records that segment's summary ({})",
            segment["in_trail"].as_str().unwrap_or("?")
        ));
    }
}

fn print_summary(trace: &Value) {
    let p = &trace["prediction"];
    let time = p["time_ms"]
        .as_i64()
        .map(mltrail_core::time::rfc3339_millis)
        .unwrap_or_default();
    println!(
        "prediction {}  deployment {}  served {time}",
        trace["prediction_id"].as_str().unwrap_or("?"),
        trace["deployment"].as_str().unwrap_or("?")
    );
    println!(
        "  by {}/{} (model file {})",
        p["model"].as_str().unwrap_or("?"),
        p["version"].as_str().unwrap_or("?"),
        p["digest"].as_str().unwrap_or("?")
    );
    println!("  inputs   {}", trace["inputs"]);
    println!("  outputs  {}", p["outputs"]);
    match trace["explanation"].as_object() {
        Some(e) => {
            println!("  explanation ({})", e.get("method").and_then(Value::as_str).unwrap_or("?"));
            for reason in e.get("reasons").and_then(Value::as_array).into_iter().flatten().take(3) {
                println!("    {}", reason.as_str().unwrap_or(""));
            }
        }
        None => println!("  explanation  none stored (GET /api/v1/predictions/<id>/explanation on the deployment computes one)"),
    }
    for f in trace["feedback"].as_array().into_iter().flatten() {
        let mut said = Vec::new();
        for (key, shown) in [
            ("label", "label"),
            ("reward", "reward"),
            ("ranking", "displayed"),
            ("clicked", "clicked"),
        ] {
            if let Some(v) = f.get(key) {
                said.push(format!("{shown} {v}"));
            }
        }
        println!("  feedback {}", said.join(", "));
    }
    let mv = &trace["model_version"];
    println!(
        "model version {}/{}  source {}",
        mv["name"].as_str().unwrap_or("?"),
        mv["version"].as_str().unwrap_or("?"),
        mv["source"].as_str().unwrap_or("?")
    );
    let info = &trace["run"]["info"];
    if let Some(run_id) = info["run_id"].as_str() {
        let tag = |key: &str| {
            trace["run"]["data"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["key"] == key)
                .and_then(|t| t["value"].as_str())
                .map(str::to_string)
        };
        let commit = tag("mlflow.source.git.commit")
            .map(|c| format!("  git commit {c}"))
            .unwrap_or_default();
        let params = trace["run"]["data"]["params"]
            .as_array()
            .map_or(0, Vec::len);
        let metrics = trace["run"]["data"]["metrics"]
            .as_array()
            .map_or(0, Vec::len);
        println!("  run {run_id} ({params} params, {metrics} metrics){commit}");
    }
    match trace["dataset"].as_object() {
        Some(d) => println!(
            "  trained on {}@{} (digest {})",
            d.get("name").and_then(Value::as_str).unwrap_or("?"),
            d.get("version").and_then(Value::as_i64).unwrap_or(0),
            d.get("digest").and_then(Value::as_str).unwrap_or("?")
        ),
        None => println!(
            "  training data {}",
            trace["training_data"]
                .as_str()
                .unwrap_or("not recorded (tag mltrail.training_data)")
        ),
    }
    let segment = &trace["segment"];
    match segment["segment"]["artifact"].as_str() {
        Some(file) => println!(
            "archived in {file} (record {} of {}; segment {})",
            segment["leaf_index"],
            segment["segment"]["records"],
            segment["in_trail"].as_str().unwrap_or("?")
        ),
        None => println!("not archived yet (its deployment answered)"),
    }
    println!(
        "audit trail: {} events proven against a tree of {} (root {})",
        trace["audit"]["events"].as_array().map_or(0, Vec::len),
        trace["audit"]["tree_size"],
        trace["audit"]["root"].as_str().unwrap_or("?")
    );
}
