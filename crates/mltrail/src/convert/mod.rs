//! Serving the models people log with `mlflow.sklearn.log_model`: the pickle is converted to
//! ONNX by skl2onnx in a Python environment (found as the onnxruntime library is), checked
//! against the logged input example, and stored back as a derived artifact of the version, named
//! by its tags (`mltrail.derived_onnx`, `…_digest`, `mltrail.derived_from`: an audited change of
//! the version), so later serves and other replicas read it instead of converting again.
//! `mltrail models convert NAME/VERSION` does it ahead of time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mltrail_core::tags;
use mltrail_serving::deployment::{
    compile, convertible_flavor, derived_dir, ModelFiles, ModelRef, ModelSource, SourceError,
    SourceVersion,
};
use serde_json::{json, Value};

use crate::args::{ClientArgs, JsonArgs};
use crate::tracking_client::Client;

/// The converter, run by the Python it finds.
const SCRIPT: &str = include_str!("sklearn_to_onnx.py");

/// The Python that converts: `MLTRAIL_PYTHON`, else the first of `$VIRTUAL_ENV/bin/python`,
/// `./.venv/bin/python` and `python3` that imports skl2onnx.
fn python() -> Result<PathBuf> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| find_python().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_python() -> Result<PathBuf> {
    if let Some(chosen) = std::env::var_os("MLTRAIL_PYTHON") {
        return Ok(PathBuf::from(chosen));
    }
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        candidates.push(PathBuf::from(venv).join("bin/python"));
    }
    candidates.push(PathBuf::from(".venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    for python in &candidates {
        let imports = Command::new(python)
            .args(["-c", "import skl2onnx, onnxruntime, mlflow"])
            .output();
        if imports.is_ok_and(|o| o.status.success()) {
            return Ok(python.clone());
        }
    }
    bail!("no Python with skl2onnx, onnxruntime and mlflow was found (tried $VIRTUAL_ENV, ./.venv and python3): `pip install scikit-learn skl2onnx onnxruntime mlflow`, or set MLTRAIL_PYTHON")
}

/// What a successful conversion made and checked.
pub struct Converted {
    pub onnx: Vec<u8>,
    /// The converter's report: estimator, rows checked, largest difference, versions.
    pub check: Value,
}

/// Downloads the logged model in `folder` and converts it; `Err` carries the converter's
/// reason when it refused.
async fn convert_folder(client: &Client, folder: &str, label: &str) -> Result<Converted> {
    let work = tempfile::tempdir()?;
    // The model's files in a folder of their own, away from the script: Python puts a script's
    // folder first on its import path, and a logged `json.py` must not be imported from there.
    let model_dir = work.path().join("model");
    std::fs::create_dir(&model_dir)?;
    let files = client
        .list_files(folder)
        .await
        .with_context(|| format!("listing {folder}"))?;
    for (path, _) in &files {
        let Some(relative) = path.strip_prefix(folder).map(|r| r.trim_start_matches('/')) else {
            continue;
        };
        // The logged model's own files; nested folders (metadata/, code/) are not needed.
        if relative.is_empty() || relative.contains('/') {
            continue;
        }
        let bytes = client.download(path).await?;
        std::fs::write(model_dir.join(relative), bytes)?;
    }
    let script = work.path().join("sklearn_to_onnx.py");
    std::fs::write(&script, SCRIPT)?;
    let out = work.path().join("model.onnx");
    let (script_path, out_path) = (script.clone(), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        let python = python()?;
        // -I: no user site, no PYTHON* variables, no script folder on the import path.
        Command::new(&python)
            .arg("-I")
            .arg(&script_path)
            .arg(&model_dir)
            .arg(&out_path)
            .output()
            .with_context(|| format!("running {}", python.display()))
    })
    .await??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow!(
                "the converter of {label} printed no report: {}",
                String::from_utf8_lossy(&run.stderr)
                    .lines()
                    .last()
                    .unwrap_or("(nothing)")
            )
        })?;
    if report["ok"] != true {
        bail!(
            "{}",
            report["reason"].as_str().unwrap_or("the converter refused")
        );
    }
    let onnx = std::fs::read(&out).context("reading the converted model")?;
    Ok(Converted {
        onnx,
        check: report,
    })
}

/// Stores the converted file as the version's derived artifact and names it in the version's
/// tags (each tag an audit event on the version).
async fn keep(
    client: &Client,
    version: &SourceVersion,
    folder: &str,
    converted: &Converted,
) -> Result<String> {
    let digest = blake3::hash(&converted.onnx).to_hex().to_string();
    let path = format!(
        "{}/{}/model.onnx",
        derived_dir(&version.name, &version.version),
        &digest[..16]
    );
    client.upload(&path, converted.onnx.clone()).await?;
    let mut from = converted.check.clone();
    if let Some(o) = from.as_object_mut() {
        o.remove("ok");
        o.insert("flavor".into(), json!("sklearn"));
        o.insert("model_folder".into(), json!(folder));
        o.insert("converter".into(), json!("skl2onnx"));
    }
    for (key, value) in [
        (tags::DERIVED_ONNX_DIGEST, digest.clone()),
        (tags::DERIVED_FROM, from.to_string()),
        // Last: readers take the file only once everything about it is recorded.
        (tags::DERIVED_ONNX, path.clone()),
    ] {
        client
            .post(
                "/api/2.0/mlflow/model-versions/set-tag",
                &json!({"name": version.name, "version": version.version, "key": key, "value": value}),
                "record the derived ONNX file on the model version",
            )
            .await?;
    }
    Ok(path)
}

/// `mltrail serve`'s conversion: converts, keeps the result when this process may (else warns
/// and serves the conversion from memory), and returns the ONNX bytes.
pub async fn convert_for_serving(
    client: &Client,
    version: &SourceVersion,
    folder: &str,
    flavor: &str,
) -> Result<Option<Vec<u8>>, SourceError> {
    if flavor != "sklearn" {
        return Ok(None);
    }
    // Loading a pickle runs its author's code (as `mlflow models serve` does); a team that
    // serves models it does not trust turns conversion at serve time off.
    if std::env::var("MLTRAIL_CONVERT").is_ok_and(|v| v == "off") {
        return Ok(None);
    }
    tracing::info!(model = %version, "converting the scikit-learn model to ONNX (skl2onnx), checked on its input example");
    let failed = |e: anyhow::Error| SourceError::Conversion {
        version: version.to_string(),
        reason: format!("{e:#}"),
    };
    let converted = convert_folder(client, folder, &version.to_string())
        .await
        .map_err(failed)?;
    // Compiled before it is kept: a file this runtime cannot serve must not be named on the
    // version for every later serve and monitor to trip over.
    let mlmodel = client
        .download(&format!("{folder}/MLmodel"))
        .await
        .map_err(failed)?;
    let files = ModelFiles {
        onnx: converted.onnx.clone(),
        mlmodel: Some(String::from_utf8_lossy(&mlmodel).into_owned()),
    };
    let mut checked = version.clone();
    checked.tags.retain(|(k, _)| k != tags::DERIVED_ONNX);
    tokio::task::spawn_blocking(move || compile(&checked, files))
        .await
        .map_err(|e| failed(e.into()))??;
    match keep(client, version, folder, &converted).await {
        Ok(path) => {
            tracing::info!(model = %version, derived = %path, "the converted model is kept as the version's derived ONNX file")
        }
        Err(e) => {
            tracing::warn!(model = %version, error = %format!("{e:#}"), "the converted model is served but could not be kept on the version (run `mltrail models convert` with the right to register models); other replicas will convert it again")
        }
    }
    Ok(Some(converted.onnx))
}

#[derive(Args)]
pub struct ConvertArgs {
    /// NAME/VERSION or NAME@ALIAS of a version logged with mlflow.sklearn.log_model.
    model: String,
    /// Convert again even when the version already has a derived ONNX file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    output: JsonArgs,
    #[command(flatten)]
    client: ClientArgs,
}

/// `mltrail models convert`.
pub async fn convert(args: ConvertArgs) -> Result<()> {
    let client = args.client.client()?;
    let model = ModelRef::parse(&args.model).map_err(|e| anyhow!("{e}"))?;
    let mut version = ModelSource::version(&client, &model).await?;
    if let (Some(path), false) = (version.tag(tags::DERIVED_ONNX), args.force) {
        let shown = json!({"model": version.name, "version": version.version, "derived_onnx": path,
            "digest": version.tag(tags::DERIVED_ONNX_DIGEST), "converted": false});
        if args.output.json {
            println!("{}", serde_json::to_string_pretty(&shown)?);
        } else {
            println!("{version} already has a derived ONNX file: {path} (--force converts again)");
        }
        return Ok(());
    }
    // The logged model's folder: the shallowest MLmodel under the version's root.
    let root = ModelSource::root(&client, &version).await?;
    let folder = logged_model_folder(&client, &root).await?;
    let mlmodel =
        String::from_utf8_lossy(&client.download(&format!("{folder}/MLmodel")).await?).into_owned();
    if convertible_flavor(&mlmodel).is_none() {
        bail!("{version} is not a scikit-learn model (mlflow.sklearn.log_model); ONNX models are served as they are");
    }
    let converted = convert_folder(&client, &folder, &version.to_string())
        .await
        .map_err(|e| anyhow!("{version} cannot be converted to ONNX: {e:#}"))?;
    // Compiled here too, so a conversion this runtime cannot serve is refused before it is kept.
    version.tags.retain(|(k, _)| k != tags::DERIVED_ONNX);
    let files = ModelFiles {
        onnx: converted.onnx.clone(),
        mlmodel: Some(mlmodel),
    };
    let checked = version.clone();
    tokio::task::spawn_blocking(move || compile(&checked, files))
        .await?
        .map_err(|e| anyhow!("{e}"))?;
    let path = keep(&client, &version, &folder, &converted).await?;
    let shown = json!({"model": version.name, "version": version.version, "derived_onnx": path,
        "digest": blake3::hash(&converted.onnx).to_hex().to_string(), "converted": true, "check": converted.check});
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else {
        println!(
            "{version}: {} converted to ONNX ({} bytes), checked on {} rows of its input example (max |difference| {}), kept as {path}",
            converted.check["estimator"].as_str().unwrap_or("the model"),
            converted.onnx.len(),
            converted.check["rows_checked"],
            converted.check["max_abs_difference"],
        );
    }
    Ok(())
}

/// The shallowest folder under `root` holding an MLmodel.
async fn logged_model_folder(client: &Client, root: &str) -> Result<String> {
    let mut files = client.list_files(root).await?;
    files.sort_by_key(|(p, _)| p.matches('/').count());
    files
        .into_iter()
        .find(|(p, _)| p.ends_with("/MLmodel") || p == "MLmodel")
        .map(|(p, _)| {
            Path::new(&p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .ok_or_else(|| anyhow!("no MLmodel under {root}: not a logged model"))
}
