//! Reading an MLflow file store (the `./mlruns` folder MLflow 2.x and 3.x write with their
//! tracking `FileStore` and file model registry) directly, read-only. The same entities as
//! [`super::mlflow_db`] reads from MLflow's database, so an import takes either.
//!
//! The layout, as `mlflow/store/tracking/file_store.py` and
//! `mlflow/store/model_registry/file_store.py` write it:
//!
//! ```text
//! <exp>/meta.yaml, <exp>/tags/<key>               experiment (`.trash/<exp>/` once deleted)
//! <exp>/<run>/meta.yaml                           run; `status` is RunStatus's number
//! <exp>/<run>/params/<key>, tags/<key>            the file's whole content is the value
//! <exp>/<run>/metrics/<key>                       `timestamp value step[ dataset digest]` lines
//! <exp>/<run>/inputs/<id>/meta.yaml               dataset (or model) input, with its tags
//! <exp>/<run>/outputs/<model_id>/meta.yaml        logged model output, with its step
//! <exp>/datasets/<id>/meta.yaml                   dataset: name, digest, source, schema, profile
//! <exp>/models/<model_id>/meta.yaml               logged model; `status` a LoggedModelStatus
//! <exp>/models/<model_id>/metrics/<key>           `timestamp value step run_id[ dataset digest]`
//! models/<name>/meta.yaml, tags/, aliases/<alias> registered model; an alias file holds a version
//! models/<name>/version-<n>/meta.yaml, tags/      model version
//! ```
//!
//! Keys may contain `/` (nested folders). A metric value is Python's `str` of a float
//! (`0.30000000000000004`, `1e+20`, `nan`, `inf`, `-inf`), which Rust parses to the same bits. A
//! value a run logged for a logged model is written to the run's file without the model, and
//! again to the model's file with the run: the model is found by (run, key, timestamp, step), as
//! `mlflow_db` finds it in `logged_model_metrics`.
//!
//! `meta.yaml` files are PyYAML's `safe_dump`. Their scalars are kept as written: PyYAML quotes
//! what YAML 1.1 would read as another type, but leaves `08` or `0o17` plain, which a YAML 1.2
//! loader would turn into numbers.

use super::mlflow_db::logged_model_of;
use super::{Experiment, LoggedModel, ModelVersion, RegisteredModel, Run};
use crate::error::Invalid;
use crate::metrics::NewMetric;
use crate::runs::NewDatasetInput;
use crate::{KeyValue, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::scanner::TScalarStyle;

const META: &str = "meta.yaml";
const TRASH: &str = ".trash";
/// The registry's folder at the root, and the logged models' folder of an experiment.
const MODELS: &str = "models";
/// Folders of an experiment that are not runs.
const NOT_RUNS: [&str; 4] = ["tags", "datasets", "traces", MODELS];

/// (run, metric key, timestamp, step) → the logged model a run's value was logged for.
type ModelMetrics = HashMap<(String, String, i64, i64), String>;

/// An MLflow file store, its folders listed once when opened.
pub struct MlflowFiles {
    layout: Arc<Layout>,
}

struct Layout {
    root: PathBuf,
    /// Experiments in id order, each with its folder (in `.trash` when deleted).
    experiments: Vec<(Experiment, PathBuf)>,
    /// Run id → (experiment id, run folder).
    runs: HashMap<String, (i64, PathBuf)>,
    model_metrics: ModelMetrics,
}

impl MlflowFiles {
    /// Opens the `mlruns` folder at `root`: reads its experiments, lists their runs and reads
    /// the metric files of their logged models. A folder with no experiment (`<id>/meta.yaml`)
    /// and no registry (`models/`) is refused.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if !root.is_dir() {
            return Err(bad(root, "there is no such folder"));
        }
        let mut experiments = experiment_dirs(root, root)?;
        let trash = root.join(TRASH);
        if trash.is_dir() {
            for (id, dir) in experiment_dirs(&trash, root)? {
                // MLflow looks in the root first: a copy in the trash is shadowed.
                if !experiments.iter().any(|(here, _)| *here == id) {
                    experiments.push((id, dir));
                }
            }
        }
        if experiments.is_empty() && !root.join(MODELS).is_dir() {
            return Err(bad(
                root,
                "it has no experiment (`0/meta.yaml`) and no `models` folder: \
                 it is not an MLflow file store (`mlruns`)",
            ));
        }
        experiments.sort_by_key(|(id, _)| *id);
        let mut layout = Layout {
            root: root.to_path_buf(),
            experiments: Vec::with_capacity(experiments.len()),
            runs: HashMap::new(),
            model_metrics: HashMap::new(),
        };
        for (id, dir) in experiments {
            let Some(experiment) = read_experiment(id, &dir, dir.starts_with(&trash))? else {
                continue;
            };
            for (run_id, run_dir) in run_dirs(&dir)? {
                // MLflow takes the first folder it finds for an id.
                layout.runs.entry(run_id).or_insert((id, run_dir));
            }
            read_model_metrics(&dir, &mut layout.model_metrics)?;
            layout.experiments.push((experiment, dir));
        }
        Ok(MlflowFiles {
            layout: Arc::new(layout),
        })
    }

    /// Experiments in id order, with their tags, deleted ones (in `.trash`) included; only those
    /// in `only` when it is not empty.
    pub async fn experiments(&self, only: &[i64]) -> Result<Vec<Experiment>, StoreError> {
        Ok(self
            .layout
            .experiments
            .iter()
            .filter(|(e, _)| only.is_empty() || only.contains(&e.id))
            .map(|(e, _)| e.clone())
            .collect())
    }

    /// The ids of the runs of `experiments`, in id order.
    pub async fn run_ids(&self, experiments: &[i64]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut ids: Vec<(String, i64)> = self
            .layout
            .runs
            .iter()
            .filter(|(_, (experiment, _))| experiments.contains(experiment))
            .map(|(id, (experiment, _))| (id.clone(), *experiment))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The runs `ids` names, each with everything it logged, in the order of `ids`. An id that
    /// is not a run here is left out.
    pub async fn runs(&self, ids: &[String]) -> Result<Vec<Run>, StoreError> {
        let ids = ids.to_vec();
        self.off_thread(move |layout| {
            let mut datasets = HashMap::new();
            let mut runs = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some((experiment, dir)) = layout.runs.get(id) {
                    runs.extend(layout.read_run(id, *experiment, dir, &mut datasets)?);
                }
            }
            Ok(runs)
        })
        .await
    }

    /// Logged models of `experiments` (MLflow 3), with tags and params, deleted ones included,
    /// in id order.
    pub async fn logged_models(&self, experiments: &[i64]) -> Result<Vec<LoggedModel>, StoreError> {
        let experiments = experiments.to_vec();
        self.off_thread(move |layout| {
            let mut models = Vec::new();
            for (experiment, dir) in &layout.experiments {
                if experiments.contains(&experiment.id) {
                    models.extend(read_logged_models(experiment.id, dir)?);
                }
            }
            models.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(models)
        })
        .await
    }

    /// Registered models in name order, each with its versions (in version order), tags and
    /// aliases (in alias order).
    pub async fn registered_models(&self) -> Result<Vec<RegisteredModel>, StoreError> {
        self.off_thread(|layout| read_registered_models(&layout.root.join(MODELS)))
            .await
    }

    /// Runs `work` on a blocking thread: it reads many small files.
    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Layout) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let layout = Arc::clone(&self.layout);
        tokio::task::spawn_blocking(move || work(&layout))
            .await
            .map_err(|e| bad(&self.layout.root, format!("reading it stopped: {e}")))?
    }
}

/// Folders of `parent` named by an experiment id and holding a `meta.yaml`.
fn experiment_dirs(parent: &Path, root: &Path) -> Result<Vec<(i64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for (name, dir) in subdirs(parent)? {
        if name == TRASH || (parent == root && name == MODELS) || !dir.join(META).is_file() {
            continue;
        }
        let id = name.parse::<i64>().map_err(|_| {
            bad(
                &dir,
                "an experiment folder is named by an integer id, and this one is not",
            )
        })?;
        found.push((id, dir));
    }
    Ok(found)
}

/// The experiment in `dir`, or `None` when its `meta.yaml` names another id (MLflow ignores
/// such a folder).
fn read_experiment(id: i64, dir: &Path, deleted: bool) -> Result<Option<Experiment>, StoreError> {
    let meta = Meta::read(&dir.join(META))?;
    if meta.text("experiment_id") != Some(id.to_string().as_str()) {
        tracing::warn!(
            folder = %dir.display(),
            recorded = ?meta.text("experiment_id"),
            "MLflow experiment folder records another id; skipped"
        );
        return Ok(None);
    }
    Ok(Some(Experiment {
        id,
        name: meta.string("name"),
        artifact_location: meta.string("artifact_location"),
        lifecycle_stage: if deleted {
            "deleted".into()
        } else {
            meta.text("lifecycle_stage").unwrap_or("active").to_string()
        },
        creation_time: meta.int("creation_time")?.unwrap_or(0),
        last_update_time: meta.int("last_update_time")?.unwrap_or(0),
        tags: read_values(&dir.join("tags"))?,
    }))
}

/// Run folders of the experiment folder `dir`: those with a `meta.yaml`, named as MLflow names
/// runs.
fn run_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    Ok(subdirs(dir)?
        .into_iter()
        .filter(|(name, run)| {
            !NOT_RUNS.contains(&name.as_str()) && is_id(name) && run.join(META).is_file()
        })
        .collect())
}

/// MLflow's run id rule (a letter or digit, then up to 255 word characters or dashes), which
/// dataset ids (MD5 hex) follow too: a name safe to join to a folder.
fn is_id(name: &str) -> bool {
    name.len() <= 256
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The run of every value the logged models of experiment folder `dir` recorded.
fn read_model_metrics(dir: &Path, into: &mut ModelMetrics) -> Result<(), StoreError> {
    let models = dir.join(MODELS);
    if !models.is_dir() {
        return Ok(());
    }
    for (model_id, model_dir) in subdirs(&models)? {
        walk_files(&model_dir.join("metrics"), "", &mut |key, path| {
            for (n, line) in read_text(&path)?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.trim().split(' ').collect();
                if fields.len() != 4 && fields.len() != 6 {
                    return Err(bad(
                        &path,
                        format!(
                            "line {} has {} fields; a logged model's metric line has 4 or 6 \
                             (timestamp value step run_id[ dataset digest])",
                            n + 1,
                            fields.len()
                        ),
                    ));
                }
                let (timestamp, _, step) = metric_numbers(&path, n, &fields)?;
                into.insert(
                    (fields[3].to_string(), key.clone(), timestamp, step),
                    model_id.clone(),
                );
            }
            Ok(())
        })?;
    }
    Ok(())
}

impl Layout {
    /// The run in `dir`, or `None` when its `meta.yaml` puts it in another experiment (MLflow
    /// ignores such a folder).
    fn read_run(
        &self,
        id: &str,
        experiment_id: i64,
        dir: &Path,
        datasets: &mut HashMap<PathBuf, serde_json::Value>,
    ) -> Result<Option<Run>, StoreError> {
        let meta = Meta::read(&dir.join(META))?;
        if meta.text("experiment_id") != Some(experiment_id.to_string().as_str()) {
            tracing::warn!(
                folder = %dir.display(),
                recorded = ?meta.text("experiment_id"),
                "MLflow run folder records another experiment; skipped"
            );
            return Ok(None);
        }
        let tags = read_values(&dir.join("tags"))?;
        // Older runs have their name only as the `mlflow.runName` tag (MLflow reads it there too).
        let name = match meta.text("run_name") {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => tags
                .iter()
                .find(|t| t.key == "mlflow.runName")
                .map(|t| t.value.clone())
                .unwrap_or_default(),
        };
        let experiment_dir = dir.parent().unwrap_or(dir);
        Ok(Some(Run {
            id: id.to_string(),
            experiment_id,
            name,
            user_id: meta.string("user_id"),
            status: run_status(&meta)?,
            start_time: meta.int("start_time")?,
            end_time: meta.int("end_time")?,
            artifact_uri: meta.string("artifact_uri"),
            lifecycle_stage: meta.text("lifecycle_stage").unwrap_or("active").to_string(),
            deleted_time: meta.int("deleted_time")?,
            params: read_values(&dir.join("params"))?,
            tags,
            metrics: self.read_metrics(id, &dir.join("metrics"))?,
            inputs: read_inputs(&dir.join("inputs"), experiment_dir, datasets)?,
            outputs: read_outputs(&dir.join("outputs"))?,
        }))
    }

    /// Every value in a run's metric files, each with the logged model it was logged for. A
    /// line repeating one before it stays: MLflow 3's `log_model` appends the run's latest
    /// values again for the model, and an MLflow server over the file store lists both (its
    /// database keeps such a value once; the database reader reads what the database has).
    fn read_metrics(&self, run_id: &str, dir: &Path) -> Result<Vec<NewMetric>, StoreError> {
        let mut metrics = Vec::new();
        walk_files(dir, "", &mut |key, path| {
            for (n, line) in read_text(&path)?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.trim().split(' ').collect();
                if !matches!(fields.len(), 2 | 3 | 5) {
                    return Err(bad(
                        &path,
                        format!(
                            "line {} has {} fields; a metric line has 2, 3 or 5 \
                             (timestamp value[ step[ dataset digest]])",
                            n + 1,
                            fields.len()
                        ),
                    ));
                }
                let (timestamp, value, step) = metric_numbers(&path, n, &fields)?;
                metrics.push(NewMetric {
                    key: key.clone(),
                    value,
                    timestamp,
                    step,
                    model_id: None,
                });
            }
            Ok(())
        })?;
        // The copy `log_model` appended is the last of equal lines: it alone is the model's
        // (the model's own file lists it once).
        let mut claimed = HashSet::new();
        for m in metrics.iter_mut().rev() {
            let point = (run_id.to_string(), m.key.clone(), m.timestamp, m.step);
            if let Some(model) = self.model_metrics.get(&point) {
                if claimed.insert(point) {
                    m.model_id = Some(model.clone());
                }
            }
        }
        Ok(metrics)
    }
}

/// Timestamp, value and step of a metric line's `fields` (line `n` of `path`); lines of old
/// MLflow have no step: 0. MLflow's own reader takes 0 for a line with a dataset too, but the
/// step is written there, and the logged model's file keys on it.
fn metric_numbers(path: &Path, n: usize, fields: &[&str]) -> Result<(i64, f64, i64), StoreError> {
    let wrong = |what: &str, text: &str| {
        bad(
            path,
            format!("line {}: the {what} `{text}` is not a number", n + 1),
        )
    };
    let timestamp = fields[0]
        .parse::<i64>()
        .map_err(|_| wrong("timestamp", fields[0]))?;
    // Python writes `str(float)`: the shortest text that reads back to the same bits.
    let value = fields[1]
        .parse::<f64>()
        .map_err(|_| wrong("value", fields[1]))?;
    let step = match fields.get(2) {
        Some(text) => text.parse::<i64>().map_err(|_| wrong("step", text))?,
        None => 0,
    };
    Ok((timestamp, value, step))
}

/// MLflow's RunStatus numbers; a run whose `meta.yaml` has none is RUNNING, as MLflow reads it.
fn run_status(meta: &Meta) -> Result<String, StoreError> {
    let Some(text) = meta.text("status") else {
        return Ok("RUNNING".into());
    };
    let status = match text {
        "1" | "RUNNING" => "RUNNING",
        "2" | "SCHEDULED" => "SCHEDULED",
        "3" | "FINISHED" => "FINISHED",
        "4" | "FAILED" => "FAILED",
        "5" | "KILLED" => "KILLED",
        other => {
            return Err(bad(
                &meta.path,
                format!("`status` is `{other}`, not a run status (1 to 5)"),
            ))
        }
    };
    Ok(status.into())
}

/// The datasets a run consumed (inputs of type DATASET), each with its tags. `datasets` keeps
/// the datasets read so far, by file.
fn read_inputs(
    dir: &Path,
    experiment_dir: &Path,
    datasets: &mut HashMap<PathBuf, serde_json::Value>,
) -> Result<Vec<NewDatasetInput>, StoreError> {
    let mut inputs = Vec::new();
    for (_, path, meta) in folder_metas(dir)? {
        if meta.text("source_type") != Some("DATASET") {
            continue;
        }
        let dataset_id = meta.string("source_id");
        if !is_id(&dataset_id) {
            return Err(bad(
                &path,
                format!("`source_id` `{dataset_id}` is not a dataset id"),
            ));
        }
        let dataset_path = experiment_dir.join("datasets").join(&dataset_id).join(META);
        if !dataset_path.is_file() {
            // As MLflow: an input whose dataset is gone is skipped.
            tracing::warn!(
                input = %path.display(),
                dataset = %dataset_id,
                "MLflow run input names a dataset that is not there; skipped"
            );
            continue;
        }
        if !datasets.contains_key(&dataset_path) {
            let dataset = read_dataset(&dataset_path)?;
            datasets.insert(dataset_path.clone(), dataset);
        }
        let Some(dataset) = datasets.get(&dataset_path) else {
            continue;
        };
        inputs.push(NewDatasetInput {
            name: dataset["name"].as_str().unwrap_or_default().to_string(),
            digest: dataset["digest"].as_str().unwrap_or_default().to_string(),
            dataset: dataset.clone(),
            tags: meta.pairs("tags"),
        });
    }
    Ok(inputs)
}

/// The `meta.yaml` of each folder in `dir` that has one, with the folder's name and the file's
/// path; none when `dir` is absent (a run that logged no inputs or outputs).
fn folder_metas(dir: &Path) -> Result<Vec<(String, PathBuf, Meta)>, StoreError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut metas = Vec::new();
    for (name, folder) in subdirs(dir)? {
        let path = folder.join(META);
        if path.is_file() {
            let meta = Meta::read(&path)?;
            metas.push((name, path, meta));
        }
    }
    Ok(metas)
}

/// A dataset as `mlflow_db` gives it: name, digest, source type and source, with schema and
/// profile where recorded.
fn read_dataset(path: &Path) -> Result<serde_json::Value, StoreError> {
    let meta = Meta::read(path)?;
    let mut dataset = serde_json::Map::new();
    for key in ["name", "digest", "source_type", "source"] {
        dataset.insert(key.into(), meta.string(key).into());
    }
    for key in ["schema", "profile"] {
        if let Some(text) = meta.text(key) {
            dataset.insert(key.into(), text.into());
        }
    }
    Ok(dataset.into())
}

/// Logged models a run produced, with the step each was logged at, in model id order.
fn read_outputs(dir: &Path) -> Result<Vec<(String, i64)>, StoreError> {
    let mut outputs = Vec::new();
    for (model_id, _, meta) in folder_metas(dir)? {
        if meta.text("destination_type") != Some("MODEL_OUTPUT") {
            continue;
        }
        outputs.push((model_id, meta.int("step")?.unwrap_or(0)));
    }
    Ok(outputs)
}

/// The logged models in experiment folder `dir`.
fn read_logged_models(experiment_id: i64, dir: &Path) -> Result<Vec<LoggedModel>, StoreError> {
    let models = dir.join(MODELS);
    if !models.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (id, model_dir) in subdirs(&models)? {
        let path = model_dir.join(META);
        if !path.is_file() {
            continue;
        }
        let meta = Meta::read(&path)?;
        if meta.text("experiment_id") != Some(experiment_id.to_string().as_str()) {
            tracing::warn!(
                folder = %model_dir.display(),
                recorded = ?meta.text("experiment_id"),
                "MLflow logged model folder records another experiment; skipped"
            );
            continue;
        }
        out.push(LoggedModel {
            experiment_id,
            name: meta.string("name"),
            artifact_uri: meta.string("artifact_location"),
            // MLflow's LoggedModelStatus numbers; a model without one is READY, as MLflow reads it.
            status: match meta.int("status")? {
                None | Some(2) => "LOGGED_MODEL_READY",
                Some(1) => "LOGGED_MODEL_PENDING",
                Some(3) => "LOGGED_MODEL_UPLOAD_FAILED",
                Some(0) => "LOGGED_MODEL_STATUS_UNSPECIFIED",
                Some(other) => {
                    return Err(bad(
                        &model_dir.join(META),
                        format!("status {other} is not one MLflow writes (0 to 3)"),
                    ))
                }
            }
            .to_string(),
            creation_time: meta.int("creation_timestamp")?.unwrap_or(0),
            last_updated_time: meta.int("last_updated_timestamp")?.unwrap_or(0),
            source_run_id: meta.text("source_run_id").map(str::to_string),
            model_type: meta.text("model_type").map(str::to_string),
            lifecycle_stage: meta.text("lifecycle_stage").unwrap_or("active").to_string(),
            tags: read_values(&model_dir.join("tags"))?,
            params: read_values(&model_dir.join("params"))?,
            id,
        });
    }
    Ok(out)
}

/// The registry in `dir` (`<root>/models`); none when there is no such folder.
fn read_registered_models(dir: &Path) -> Result<Vec<RegisteredModel>, StoreError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut models = Vec::new();
    for (folder, model_dir) in subdirs(dir)? {
        let path = model_dir.join(META);
        if !path.is_file() {
            continue;
        }
        let meta = Meta::read(&path)?;
        let mut versions = Vec::new();
        for (name, version_dir) in subdirs(&model_dir)? {
            let Some(number) = name.strip_prefix("version-") else {
                continue;
            };
            if version_dir.join(META).is_file() {
                versions.push(read_version(&version_dir, number)?);
            }
        }
        versions.sort_by_key(|v| v.version);
        let mut aliases = Vec::new();
        walk_files(&model_dir.join("aliases"), "", &mut |alias, path| {
            let text = read_text(&path)?;
            let version = text.trim().parse::<i64>().map_err(|_| {
                bad(
                    &path,
                    format!("an alias file holds a version number, not `{text}`"),
                )
            })?;
            aliases.push((alias, version));
            Ok(())
        })?;
        aliases.sort();
        models.push(RegisteredModel {
            name: meta.text("name").unwrap_or(&folder).to_string(),
            creation_time: meta.int("creation_timestamp")?.unwrap_or(0),
            last_updated_time: meta.int("last_updated_timestamp")?.unwrap_or(0),
            description: meta.string("description"),
            tags: read_values(&model_dir.join("tags"))?,
            versions,
            aliases,
        });
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// The model version in `dir` (`version-<number>`). Deleted versions are read, as MLflow keeps
/// them (stage `Deleted_Internal`); the import leaves them out as MLflow shows them nowhere.
fn read_version(dir: &Path, number: &str) -> Result<ModelVersion, StoreError> {
    let meta = Meta::read(&dir.join(META))?;
    let version = match meta.int("version")? {
        Some(version) => version,
        None => number
            .parse::<i64>()
            .map_err(|_| bad(dir, "a version folder is named `version-<number>`"))?,
    };
    let source = meta.string("source");
    // MLflow 3 records the logged model a version came from; older versions only in `source`.
    let model_id = match meta.text("model_id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => logged_model_of(&source).unwrap_or_default().to_string(),
    };
    Ok(ModelVersion {
        version,
        creation_time: meta.int("creation_timestamp")?.unwrap_or(0),
        last_updated_time: meta.int("last_updated_timestamp")?.unwrap_or(0),
        description: meta.string("description"),
        user_id: meta.string("user_id"),
        current_stage: meta.text("current_stage").unwrap_or("None").to_string(),
        run_id: meta.string("run_id"),
        run_link: meta.string("run_link"),
        status: meta.text("status").unwrap_or("READY").to_string(),
        model_id,
        source,
        tags: read_values(&dir.join("tags"))?,
    })
}

/// Key/value files under `dir` (the key is the path below it, `/`-separated; the value the
/// whole content), in key order; none when there is no such folder.
fn read_values(dir: &Path) -> Result<Vec<KeyValue>, StoreError> {
    let mut values = Vec::new();
    walk_files(dir, "", &mut |key, path| {
        values.push(KeyValue {
            key,
            value: read_text(&path)?,
        });
        Ok(())
    })?;
    values.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(values)
}

/// Calls `each` with the `/`-joined path below `dir` (after `prefix`) of every file under it,
/// as `os.walk` finds them (links to folders are not followed). Nothing when `dir` is not a
/// folder.
fn walk_files(
    dir: &Path,
    prefix: &str,
    each: &mut dyn FnMut(String, PathBuf) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let entry = entry.map_err(|e| unreadable(dir, e))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| bad(&path, "its name is not UTF-8"))?;
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(|e| unreadable(&path, e))?;
        if kind.is_dir() {
            walk_files(&path, &key, each)?;
        } else if path.is_file() {
            each(key, path)?;
        }
    }
    Ok(())
}

/// Folders directly in `dir` with UTF-8 names, in name order.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let entry = entry.map_err(|e| unreadable(dir, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            found.push((name, path));
        }
    }
    found.sort();
    Ok(found)
}

fn read_text(path: &Path) -> Result<String, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, e))?;
    String::from_utf8(bytes).map_err(|_| bad(path, "it is not UTF-8 text"))
}

fn bad(path: &Path, reason: impl Into<String>) -> StoreError {
    Invalid::ImportSource {
        source_uri: path.display().to_string(),
        reason: reason.into(),
    }
    .into()
}

fn unreadable(path: &Path, e: std::io::Error) -> StoreError {
    bad(path, format!("it cannot be read: {e}"))
}

/// A `meta.yaml`: the mapping at its top, scalars as written.
struct Meta {
    path: PathBuf,
    fields: Vec<(String, Node)>,
}

/// A YAML node whose scalars keep their text; `None` is null (a plain `null`, `~` or nothing).
enum Node {
    Scalar(Option<String>),
    Map(Vec<(String, Node)>),
    Seq,
}

impl Meta {
    fn read(path: &Path) -> Result<Meta, StoreError> {
        let text = read_text(path)?;
        let mut builder = Builder::default();
        Parser::new_from_str(&text)
            .load(&mut builder, false)
            .map_err(|e| bad(path, format!("it is not YAML: {e}")))?;
        match builder.document {
            Some(Node::Map(fields)) => Ok(Meta {
                path: path.to_path_buf(),
                fields,
            }),
            // MLflow reads an empty meta.yaml as a missing one.
            None | Some(Node::Scalar(None)) => Err(bad(path, "it is empty")),
            Some(_) => Err(bad(path, "it is not a YAML mapping")),
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The scalar at `key`; `None` when it is absent, null or not a scalar.
    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Node::Scalar(Some(text))) => Some(text),
            _ => None,
        }
    }

    /// The scalar at `key`, or "".
    fn string(&self, key: &str) -> String {
        self.text(key).unwrap_or_default().to_string()
    }

    fn int(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.text(key)
            .map(|text| {
                text.parse::<i64>()
                    .map_err(|_| bad(&self.path, format!("`{key}` is `{text}`, not an integer")))
            })
            .transpose()
    }

    /// The mapping of scalars at `key`, in key order (null values as "").
    fn pairs(&self, key: &str) -> Vec<KeyValue> {
        let mut pairs: Vec<KeyValue> = match self.get(key) {
            Some(Node::Map(entries)) => entries
                .iter()
                .filter_map(|(k, v)| match v {
                    Node::Scalar(value) => Some(KeyValue {
                        key: k.clone(),
                        value: value.clone().unwrap_or_default(),
                    }),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        pairs
    }
}

/// Builds the first document from yaml-rust2's parser events, keeping each scalar's text.
#[derive(Default)]
struct Builder {
    open: Vec<Open>,
    document: Option<Node>,
}

/// A collection being read: a mapping's entries so far and its pending key, or a sequence.
enum Open {
    Map(Vec<(String, Node)>, Option<String>),
    Seq,
}

impl EventReceiver for Builder {
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Scalar(text, style, _, _) => {
                let null = style == TScalarStyle::Plain
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                self.add(Node::Scalar((!null).then_some(text)));
            }
            Event::MappingStart(..) => self.open.push(Open::Map(Vec::new(), None)),
            Event::SequenceStart(..) => self.open.push(Open::Seq),
            Event::MappingEnd | Event::SequenceEnd => match self.open.pop() {
                Some(Open::Map(entries, _)) => self.add(Node::Map(entries)),
                Some(Open::Seq) => self.add(Node::Seq),
                None => {}
            },
            // PyYAML's safe_dump makes no anchors in these files.
            Event::Alias(_) => self.add(Node::Scalar(None)),
            _ => {}
        }
    }
}

impl Builder {
    fn add(&mut self, node: Node) {
        match self.open.last_mut() {
            None => {
                if self.document.is_none() {
                    self.document = Some(node);
                }
            }
            // Sequences are only `tags: []` of old run files: their items are not kept.
            Some(Open::Seq) => {}
            Some(Open::Map(entries, key)) => match key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    *key = Some(match node {
                        Node::Scalar(text) => text.unwrap_or_default(),
                        _ => String::new(),
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: &str = "335336786677005521";
    const RUN: &str = "4a356dfde0d04a4ab238445d68bd3d1b";
    const DELETED_RUN: &str = "27cec29a25b446d9901288da0339da69";
    const GONE: &str = "900877340471158359";
    const GONE_RUN: &str = "f0b70a342714434892f2ea711b45f2fb";
    const MODEL: &str = "m-628934c385784256852d2a6a356ef2d4";
    const IRIS: &str = "456cc70af7ac24acba78212fdd71b562";
    const BARE: &str = "f4f36733da1f2efb86c7fbcf1fb8410e";

    /// Writes `content` to `rel` under `root`, `{EXP}`, `{RUN}` and the other ids of
    /// [`mlruns`] replaced in both, and a first newline dropped (YAML is written from the next
    /// line on).
    fn write(root: &Path, rel: &str, content: &str) {
        let ids = [
            ("{EXP}", EXP),
            ("{RUN}", RUN),
            ("{DELETED_RUN}", DELETED_RUN),
            ("{GONE}", GONE),
            ("{GONE_RUN}", GONE_RUN),
            ("{MODEL}", MODEL),
            ("{IRIS}", IRIS),
            ("{BARE}", BARE),
        ];
        let fill = |text: &str| {
            ids.iter()
                .fold(text.to_string(), |text, (name, id)| text.replace(name, id))
        };
        let path = root.join(fill(rel));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fill(content.strip_prefix('\n').unwrap_or(content))).unwrap();
    }

    /// The files MLflow 3.17 (`MlflowClient` on `file://…/mlruns`, registry the same) wrote for:
    /// an experiment with two tags; a run with params, tags, metrics (0.1 + 0.2, NaN, ±inf, two
    /// values logged for a logged model, one with a dataset), two dataset inputs, a model input
    /// and a model output, set FAILED; a deleted run; a deleted experiment with a run; a logged
    /// model; a registered model with a description PyYAML wrapped, a tag, an alias and two
    /// versions (one from the logged model); another model whose only version was deleted.
    fn mlruns() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "0/meta.yaml",
            r"
artifact_location: file:///tmp/mlruns/0
creation_time: 1796524993542
effective_trace_archival_retention: null
experiment_id: '0'
last_update_time: 1796524993542
lifecycle_stage: active
name: Default
trace_location: null
workspace: default
",
        );
        write(
            root,
            "{EXP}/meta.yaml",
            r"
artifact_location: file:///tmp/mlruns/{EXP}
creation_time: 1796524993551
effective_trace_archival_retention: null
experiment_id: '{EXP}'
last_update_time: 1796524993551
lifecycle_stage: active
name: demo
trace_location: null
workspace: default
",
        );
        write(root, "{EXP}/tags/team", "ml");
        write(root, "{EXP}/tags/nested/key", "v: with colon");
        write(
            root,
            "{EXP}/{RUN}/meta.yaml",
            r"
artifact_uri: file:///tmp/mlruns/{EXP}/{RUN}/artifacts
end_time: 5000
entry_point_name: ''
experiment_id: '{EXP}'
lifecycle_stage: active
run_id: {RUN}
run_name: first
source_name: ''
source_type: 4
source_version: ''
start_time: 1796524993559
status: 4
tags: []
user_id: unknown
",
        );
        write(root, "{EXP}/{RUN}/params/lr", "0.01");
        write(root, "{EXP}/{RUN}/params/a/b", "nested param");
        write(root, "{EXP}/{RUN}/tags/mlflow.runName", "first");
        write(
            root,
            "{EXP}/{RUN}/tags/note",
            "multi\nline: 'quoted' \"dq\" é",
        );
        write(root, "{EXP}/{RUN}/tags/t1", "x");
        write(
            root,
            "{EXP}/{RUN}/metrics/loss",
            r"
1000 0.30000000000000004 0
1001 nan 1
1002 inf 2
1003 -inf 3
1004 1e-300 4
",
        );
        write(root, "{EXP}/{RUN}/metrics/big", "1005 1e+20 5\n");
        write(root, "{EXP}/{RUN}/metrics/acc", "2000 0.9 7 ds abc\n");
        // MLflow 3 appends a run's latest values again when it logs a model: read once.
        write(root, "{EXP}/{RUN}/metrics/acc2", "2001 0.8 8\n2001 0.8 8\n");
        write(
            root,
            "{EXP}/{RUN}/inputs/55c732ffe87616dd9df175c7799779ad/meta.yaml",
            r"
destination_id: {IRIS}
destination_type: RUN
source_id: {IRIS}
source_type: DATASET
tags:
  mlflow.data.context: train
  a: b
",
        );
        write(
            root,
            "{EXP}/{RUN}/inputs/c7c53c54fed588f7c3b4747c81337349/meta.yaml",
            r"
destination_id: {BARE}
destination_type: RUN
source_id: {BARE}
source_type: DATASET
tags: {}
",
        );
        write(
            root,
            "{EXP}/{RUN}/inputs/b56356c756e258a1bd651d94ac0f01a0/meta.yaml",
            r"
destination_id: {MODEL}
destination_type: RUN
source_id: {MODEL}
source_type: MODEL
tags: {}
",
        );
        write(
            root,
            "{EXP}/{RUN}/outputs/{MODEL}/meta.yaml",
            r"
destination_id: {MODEL}
destination_type: MODEL_OUTPUT
source_id: {MODEL}
source_type: RUN_OUTPUT
step: 3
tags: {}
",
        );
        write(
            root,
            "{EXP}/datasets/{IRIS}/meta.yaml",
            r#"
digest: d1g3st
name: iris
profile: '{"num_rows": 150}'
schema: '{"mlflow_colspec": []}'
source: '{"uri": "/data/iris.csv"}'
source_type: local
"#,
        );
        write(
            root,
            "{EXP}/datasets/{BARE}/meta.yaml",
            r#"
digest: ddd
name: bare
profile: null
schema: null
source: '{"url": "http://x"}'
source_type: http
"#,
        );
        write(
            root,
            "{EXP}/{DELETED_RUN}/meta.yaml",
            r"
artifact_uri: file:///tmp/mlruns/{EXP}/{DELETED_RUN}/artifacts
deleted_time: 1796524993590
end_time: null
entry_point_name: ''
experiment_id: '{EXP}'
lifecycle_stage: deleted
run_id: {DELETED_RUN}
run_name: second
source_name: ''
source_type: 4
source_version: ''
start_time: 1796524993587
status: 1
tags: []
user_id: unknown
",
        );
        write(root, "{EXP}/{DELETED_RUN}/tags/mlflow.runName", "second");
        write(
            root,
            "{EXP}/models/{MODEL}/meta.yaml",
            r"
artifact_location: file:///tmp/mlruns/{EXP}/models/{MODEL}/artifacts
creation_timestamp: 1796524993577
experiment_id: '{EXP}'
last_updated_timestamp: 1796524993583
model_id: {MODEL}
model_type: sklearn
name: mymodel
source_run_id: {RUN}
status: 2
status_message: null
",
        );
        write(
            root,
            "{EXP}/models/{MODEL}/metrics/acc",
            "2000 0.9 7 {RUN} ds abc\n",
        );
        write(
            root,
            "{EXP}/models/{MODEL}/metrics/acc2",
            "2001 0.8 8 {RUN}\n",
        );
        write(root, "{EXP}/models/{MODEL}/params/p", "1");
        write(root, "{EXP}/models/{MODEL}/tags/tk", "tv");
        write(
            root,
            ".trash/{GONE}/meta.yaml",
            r"
artifact_location: s3://bucket/x
creation_time: 1796524993596
effective_trace_archival_retention: null
experiment_id: '{GONE}'
last_update_time: 1796524993599
lifecycle_stage: deleted
name: gone
tags: {}
trace_location: null
workspace: default
",
        );
        write(
            root,
            ".trash/{GONE}/{GONE_RUN}/meta.yaml",
            r"
artifact_uri: s3://bucket/x/{GONE_RUN}/artifacts
deleted_time: 1796524993599
end_time: null
entry_point_name: ''
experiment_id: '{GONE}'
lifecycle_stage: deleted
run_id: {GONE_RUN}
run_name: in-gone
source_name: ''
source_type: 4
source_version: ''
start_time: 1796524993597
status: 1
tags: []
user_id: unknown
",
        );
        write(root, ".trash/{GONE}/{GONE_RUN}/metrics/x", "7 1.5 0\n");
        write(
            root,
            "models/reg/meta.yaml",
            r"
aliases:
  champion: '1'
creation_timestamp: 1796524993609
deployment_job_id: null
deployment_job_state: null
description: 'a model

  with two lines and a very long description that goes past eighty columns for sure
  yes'
last_updated_timestamp: 1796524993640
name: reg
workspace: default
",
        );
        write(root, "models/reg/tags/rt", "rv");
        write(root, "models/reg/aliases/champion", "1");
        write(
            root,
            "models/reg/version-1/meta.yaml",
            r"
creation_timestamp: 1796524993610
current_stage: Production
deployment_job_state: null
description: v1
last_updated_timestamp: 1796524993640
model_id: null
name: reg
run_id: {RUN}
run_link: null
source: runs:/{RUN}/model
status: READY
status_message: null
storage_location: runs:/{RUN}/model
user_id: null
version: 1
workspace: default
",
        );
        write(root, "models/reg/version-1/tags/vt", "vv");
        write(
            root,
            "models/reg/version-2/meta.yaml",
            r"
creation_timestamp: 1796524993624
current_stage: None
deployment_job_state: null
description: null
last_updated_timestamp: 1796524993624
model_id: {MODEL}
name: reg
run_id: {RUN}
run_link: null
source: models:/{MODEL}
status: READY
status_message: null
storage_location: file:///tmp/mlruns/{EXP}/models/{MODEL}/artifacts
user_id: null
version: 2
workspace: default
",
        );
        write(
            root,
            "models/other/meta.yaml",
            r"
aliases: {}
creation_timestamp: 1796524993647
deployment_job_id: null
deployment_job_state: null
description: null
last_updated_timestamp: 1796524993650
name: other
workspace: default
",
        );
        write(
            root,
            "models/other/version-1/meta.yaml",
            r"
creation_timestamp: 1796524993647
current_stage: Deleted_Internal
deployment_job_state: null
description: null
last_updated_timestamp: 1796524993650
model_id: null
name: other
run_id: {RUN}
run_link: null
source: runs:/{RUN}/model
status: READY
status_message: null
storage_location: runs:/{RUN}/model
user_id: null
version: 1
workspace: default
",
        );
        dir
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect()
    }

    fn import_error(result: Result<impl Sized, StoreError>) -> (String, String) {
        match result {
            Err(StoreError::InvalidParameter(Invalid::ImportSource { source_uri, reason })) => {
                (source_uri, reason)
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("read without an error"),
        }
    }

    #[tokio::test]
    async fn experiments_deleted_ones_included_in_id_order() {
        let dir = mlruns();
        let store = MlflowFiles::open(dir.path()).unwrap();
        let all = store.experiments(&[]).await.unwrap();
        let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
        assert_eq!(ids, [0, 335336786677005521, 900877340471158359]);
        assert_eq!(
            all[1],
            Experiment {
                id: 335336786677005521,
                name: "demo".into(),
                artifact_location: format!("file:///tmp/mlruns/{EXP}"),
                lifecycle_stage: "active".into(),
                creation_time: 1796524993551,
                last_update_time: 1796524993551,
                tags: kv(&[("nested/key", "v: with colon"), ("team", "ml")]),
            }
        );
        assert_eq!(all[2].name, "gone");
        assert_eq!(all[2].lifecycle_stage, "deleted");
        assert_eq!(all[2].artifact_location, "s3://bucket/x");
        assert_eq!(all[2].last_update_time, 1796524993599);
        let only = store.experiments(&[900877340471158359]).await.unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].name, "gone");
    }

    #[tokio::test]
    async fn a_run_with_everything_it_logged() {
        let dir = mlruns();
        let store = MlflowFiles::open(dir.path()).unwrap();
        let ids = store.run_ids(&[335336786677005521]).await.unwrap();
        assert_eq!(
            ids,
            [
                (DELETED_RUN.to_string(), 335336786677005521),
                (RUN.to_string(), 335336786677005521)
            ]
        );
        let gone = store.run_ids(&[900877340471158359]).await.unwrap();
        assert_eq!(gone, [(GONE_RUN.to_string(), 900877340471158359)]);

        let runs = store
            .runs(&[
                RUN.to_string(),
                "nosuchrun".to_string(),
                DELETED_RUN.to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
        let run = &runs[0];
        assert_eq!(run.id, RUN);
        assert_eq!(run.experiment_id, 335336786677005521);
        assert_eq!(run.name, "first");
        assert_eq!(run.user_id, "unknown");
        assert_eq!(run.status, "FAILED");
        assert_eq!(run.start_time, Some(1796524993559));
        assert_eq!(run.end_time, Some(5000));
        assert_eq!(run.lifecycle_stage, "active");
        assert_eq!(run.deleted_time, None);
        assert_eq!(
            run.artifact_uri,
            format!("file:///tmp/mlruns/{EXP}/{RUN}/artifacts")
        );
        assert_eq!(run.params, kv(&[("a/b", "nested param"), ("lr", "0.01")]));
        assert_eq!(
            run.tags,
            kv(&[
                ("mlflow.runName", "first"),
                ("note", "multi\nline: 'quoted' \"dq\" é"),
                ("t1", "x"),
            ])
        );

        let mut metrics = run.metrics.clone();
        metrics.sort_by(|a, b| (&a.key, a.step).cmp(&(&b.key, b.step)));
        let got: Vec<(&str, u64, i64, i64, Option<&str>)> = metrics
            .iter()
            .map(|m| {
                (
                    m.key.as_str(),
                    m.value.to_bits(),
                    m.timestamp,
                    m.step,
                    m.model_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("acc", 0.9f64.to_bits(), 2000, 7, Some(MODEL)),
                // Logged, then appended again by log_model: both stay (as an MLflow server
                // over the file store lists them), the model's copy being the last.
                ("acc2", 0.8f64.to_bits(), 2001, 8, None),
                ("acc2", 0.8f64.to_bits(), 2001, 8, Some(MODEL)),
                ("big", 1e20f64.to_bits(), 1005, 5, None),
                ("loss", (0.1f64 + 0.2).to_bits(), 1000, 0, None),
                ("loss", f64::NAN.to_bits(), 1001, 1, None),
                ("loss", f64::INFINITY.to_bits(), 1002, 2, None),
                ("loss", f64::NEG_INFINITY.to_bits(), 1003, 3, None),
                ("loss", 1e-300f64.to_bits(), 1004, 4, None),
            ]
        );
        assert_ne!((0.1f64 + 0.2).to_bits(), 0.3f64.to_bits());

        // The model input is not a dataset; the inputs come in folder order.
        assert_eq!(run.inputs.len(), 2);
        let iris = &run.inputs[0];
        assert_eq!(
            (iris.name.as_str(), iris.digest.as_str()),
            ("iris", "d1g3st")
        );
        assert_eq!(
            iris.dataset,
            serde_json::json!({
                "name": "iris",
                "digest": "d1g3st",
                "source_type": "local",
                "source": "{\"uri\": \"/data/iris.csv\"}",
                "schema": "{\"mlflow_colspec\": []}",
                "profile": "{\"num_rows\": 150}",
            })
        );
        assert_eq!(
            iris.tags,
            kv(&[("a", "b"), ("mlflow.data.context", "train")])
        );
        let bare = &run.inputs[1];
        assert_eq!(
            bare.dataset,
            serde_json::json!({
                "name": "bare",
                "digest": "ddd",
                "source_type": "http",
                "source": "{\"url\": \"http://x\"}",
            })
        );
        assert!(bare.tags.is_empty());
        assert_eq!(run.outputs, [(MODEL.to_string(), 3)]);

        let deleted = &runs[1];
        assert_eq!(deleted.id, DELETED_RUN);
        assert_eq!(deleted.name, "second");
        assert_eq!(deleted.status, "RUNNING");
        assert_eq!(deleted.lifecycle_stage, "deleted");
        assert_eq!(deleted.deleted_time, Some(1796524993590));
        assert_eq!(deleted.end_time, None);
        assert!(deleted.metrics.is_empty() && deleted.params.is_empty());

        let in_trash = store.runs(&[GONE_RUN.to_string()]).await.unwrap();
        assert_eq!(in_trash[0].experiment_id, 900877340471158359);
        assert_eq!(in_trash[0].metrics.len(), 1);
        assert_eq!(in_trash[0].metrics[0].value, 1.5);
    }

    #[tokio::test]
    async fn logged_models_of_experiments() {
        let dir = mlruns();
        let store = MlflowFiles::open(dir.path()).unwrap();
        let models = store.logged_models(&[0, 335336786677005521]).await.unwrap();
        assert_eq!(
            models,
            [LoggedModel {
                id: MODEL.into(),
                experiment_id: 335336786677005521,
                name: "mymodel".into(),
                artifact_uri: format!("file:///tmp/mlruns/{EXP}/models/{MODEL}/artifacts"),
                status: "LOGGED_MODEL_READY".into(),
                creation_time: 1796524993577,
                last_updated_time: 1796524993583,
                source_run_id: Some(RUN.into()),
                model_type: Some("sklearn".into()),
                lifecycle_stage: "active".into(),
                tags: kv(&[("tk", "tv")]),
                params: kv(&[("p", "1")]),
            }]
        );
        assert!(store.logged_models(&[0]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn registered_models_with_versions_tags_and_aliases() {
        let dir = mlruns();
        let store = MlflowFiles::open(dir.path()).unwrap();
        let models = store.registered_models().await.unwrap();
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["other", "reg"]);
        let reg = &models[1];
        assert_eq!(
            reg.description,
            "a model\nwith two lines and a very long description \
             that goes past eighty columns for sure yes"
        );
        assert_eq!(
            (reg.creation_time, reg.last_updated_time),
            (1796524993609, 1796524993640)
        );
        assert_eq!(reg.tags, kv(&[("rt", "rv")]));
        assert_eq!(reg.aliases, [("champion".to_string(), 1)]);
        assert_eq!(
            reg.versions[0],
            ModelVersion {
                version: 1,
                creation_time: 1796524993610,
                last_updated_time: 1796524993640,
                description: "v1".into(),
                user_id: String::new(),
                current_stage: "Production".into(),
                source: format!("runs:/{RUN}/model"),
                run_id: RUN.into(),
                run_link: String::new(),
                status: "READY".into(),
                model_id: String::new(),
                tags: kv(&[("vt", "vv")]),
            }
        );
        let v2 = &reg.versions[1];
        assert_eq!((v2.version, v2.model_id.as_str()), (2, MODEL));
        assert_eq!(
            (v2.description.as_str(), v2.current_stage.as_str()),
            ("", "None")
        );
        let other = &models[0];
        assert_eq!(other.description, "");
        assert!(other.aliases.is_empty());
        assert_eq!(other.versions.len(), 1);
        assert_eq!(other.versions[0].current_stage, "Deleted_Internal");
    }

    /// Files of MLflow 1.x: no step in metric lines, no run name but the tag, an integer
    /// experiment id, no lifecycle stage or times in the experiment; and plain scalars YAML 1.2
    /// would read as numbers.
    #[tokio::test]
    async fn old_files_and_plain_scalars_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "0/meta.yaml",
            "artifact_location: ./mlruns/0\nexperiment_id: 0\nname: Default\n",
        );
        write(
            root,
            "0/abc123/meta.yaml",
            r"
artifact_uri: ./mlruns/0/abc123/artifacts
end_time: 1600000000500
entry_point_name: ''
experiment_id: 0
lifecycle_stage: active
name: ''
run_uuid: abc123
source_type: 4
start_time: 1600000000000
status: 3
tags: []
user_id: 0o17
",
        );
        write(root, "0/abc123/tags/mlflow.runName", "08");
        write(
            root,
            "0/abc123/metrics/m",
            "1600000000100 2.5\n1600000000200 -0.0\n",
        );
        write(root, "0/abc123/artifacts/model/MLmodel", "flavors: {}\n");
        let store = MlflowFiles::open(root).unwrap();
        let experiments = store.experiments(&[]).await.unwrap();
        assert_eq!(experiments.len(), 1);
        assert_eq!(experiments[0].lifecycle_stage, "active");
        assert_eq!(experiments[0].creation_time, 0);
        assert!(experiments[0].tags.is_empty());
        assert_eq!(
            store.run_ids(&[0]).await.unwrap(),
            [("abc123".to_string(), 0)]
        );
        let runs = store.runs(&["abc123".to_string()]).await.unwrap();
        let run = &runs[0];
        assert_eq!(run.name, "08");
        assert_eq!(run.user_id, "0o17");
        assert_eq!(run.status, "FINISHED");
        assert_eq!(run.deleted_time, None);
        let values: Vec<(i64, u64)> = run
            .metrics
            .iter()
            .map(|m| (m.step, m.value.to_bits()))
            .collect();
        assert_eq!(values, [(0, 2.5f64.to_bits()), (0, (-0.0f64).to_bits())]);
        assert!(store.registered_models().await.unwrap().is_empty());
        assert!(store.logged_models(&[0]).await.unwrap().is_empty());
    }

    #[test]
    fn a_folder_that_is_not_mlruns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (uri, reason) = import_error(MlflowFiles::open(dir.path()));
        assert_eq!(uri, dir.path().display().to_string());
        assert!(reason.contains("not an MLflow file store"), "{reason}");
        let missing = dir.path().join("nope");
        let (uri, _) = import_error(MlflowFiles::open(&missing));
        assert_eq!(uri, missing.display().to_string());
        // A registry alone is a store.
        std::fs::create_dir(dir.path().join("models")).unwrap();
        assert!(MlflowFiles::open(dir.path()).is_ok());
    }

    #[tokio::test]
    async fn unreadable_files_are_named() {
        let dir = mlruns();
        let root = dir.path();
        write(
            root,
            &format!("{EXP}/{RUN}/metrics/bad"),
            "1000 0.5 0\n1001 zero 1\n",
        );
        let store = MlflowFiles::open(root).unwrap();
        let (uri, reason) = import_error(store.runs(&[RUN.to_string()]).await);
        assert!(uri.ends_with(&format!("{RUN}/metrics/bad")), "{uri}");
        assert_eq!(reason, "line 2: the value `zero` is not a number");

        write(
            root,
            &format!("{EXP}/{RUN}/metrics/bad"),
            "1000 0.5 0 extra\n",
        );
        let (_, reason) = import_error(store.runs(&[RUN.to_string()]).await);
        assert!(reason.starts_with("line 1 has 4 fields"), "{reason}");

        std::fs::remove_file(root.join(format!("{EXP}/{RUN}/metrics/bad"))).unwrap();
        write(
            root,
            &format!("{EXP}/{RUN}/meta.yaml"),
            "status: [unclosed\n",
        );
        let (uri, reason) = import_error(store.runs(&[RUN.to_string()]).await);
        assert!(uri.ends_with(&format!("{RUN}/meta.yaml")), "{uri}");
        assert!(reason.starts_with("it is not YAML"), "{reason}");

        write(
            root,
            &format!("{EXP}/{RUN}/meta.yaml"),
            &format!("experiment_id: '{EXP}'\nstatus: 9\n"),
        );
        let (_, reason) = import_error(store.runs(&[RUN.to_string()]).await);
        assert_eq!(reason, "`status` is `9`, not a run status (1 to 5)");

        write(root, "models/reg/aliases/champion", "one");
        let (uri, _) = import_error(store.registered_models().await);
        assert!(uri.ends_with("models/reg/aliases/champion"), "{uri}");

        write(root, "notanid/meta.yaml", "name: x\n");
        let (uri, reason) = import_error(MlflowFiles::open(root));
        assert!(uri.ends_with("notanid"), "{uri}");
        assert!(reason.contains("integer id"), "{reason}");
    }

    #[tokio::test]
    async fn a_run_folder_recording_another_experiment_is_skipped() {
        let dir = mlruns();
        let root = dir.path();
        write(
            root,
            &format!("0/{RUN}x/meta.yaml"),
            &format!("experiment_id: '{EXP}'\nstatus: 3\n"),
        );
        let store = MlflowFiles::open(root).unwrap();
        assert_eq!(store.run_ids(&[0]).await.unwrap(), [(format!("{RUN}x"), 0)]);
        assert!(store.runs(&[format!("{RUN}x")]).await.unwrap().is_empty());
    }
}
