//! Where a model version comes from: [`ModelSource`] answers which version a reference names
//! now and hands out the version's files; [`load`] turns them into a [`LoadedModel`] the same way
//! for every source (the `.onnx` file and its MLmodel found once, the signature read once).
//!
//! Two sources exist: over the tracking server's REST API (`mltrail serve`, in the CLI, which
//! needs no storage credentials) and over the metadata and artifact stores
//! ([`super::StoreSource`], used inside `mltrail server` by the monitors).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use mltrail_core::{tags, ModelVersionNumber};

use super::model::LoadedModel;
use crate::runtime::{Model, RuntimeError};
use crate::signature::{self, NamesFrom, Signature, SignatureError};
use mltrail_core::privacy::PrivacySpec;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `--model` names: a registry alias (followed as it moves) or a fixed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Alias {
        name: String,
        alias: String,
    },
    Version {
        name: String,
        version: ModelVersionNumber,
    },
}

impl ModelRef {
    /// `NAME@ALIAS`, `NAME/VERSION`, with or without a `models:/` prefix.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let bare = text.strip_prefix("models:/").unwrap_or(text);
        if let Some((name, alias)) = bare.split_once('@') {
            if !name.is_empty() && !alias.is_empty() {
                return Ok(Self::Alias {
                    name: name.into(),
                    alias: alias.into(),
                });
            }
        }
        if let Some((name, version)) = bare.rsplit_once('/') {
            if let (false, Some(version)) = (name.is_empty(), ModelVersionNumber::parse(version)) {
                return Ok(Self::Version {
                    name: name.into(),
                    version,
                });
            }
        }
        Err(SourceError::Reference {
            text: bare.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Alias { name, .. } | Self::Version { name, .. } => name,
        }
    }

    pub fn is_alias(&self) -> bool {
        matches!(self, Self::Alias { .. })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias { name, alias } => write!(f, "{name}@{alias}"),
            Self::Version { name, version } => write!(f, "{name}/{version}"),
        }
    }
}

/// A registered model version as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVersion {
    pub name: String,
    pub version: String,
    /// The version's `source` as registered (`mlflow-artifacts:/…`, `runs:/…`, `models:/m-…`).
    pub source: String,
    pub tags: Vec<(String, String)>,
}

impl SourceVersion {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The dataset version (`NAME@VERSION`) the model was trained on, when it was recorded.
    pub fn training_data(&self) -> Option<&str> {
        self.tag(tags::TRAINING_DATA)
    }
}

impl fmt::Display for SourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// One entry of an artifact directory, named relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub is_dir: bool,
}

/// What stands behind a model version as the tracking server proves it (its
/// `/api/v1/lineage`: the version, its run, its training data, their audit events with
/// inclusion proofs). A deployment adds it to the records it has not archived yet.
pub trait LineageSource: Send + Sync {
    fn lineage<'a>(
        &'a self,
        deployment: &'a str,
        model: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, SourceError>>;
}

/// Where model versions and their files come from. Paths are artifact-store paths
/// (`1/models/m-…/artifacts/model.onnx`), as the artifact proxy names them.
pub trait ModelSource: Send + Sync {
    /// The version `model` names now (an alias is resolved at this moment).
    fn version<'a>(
        &'a self,
        model: &'a ModelRef,
    ) -> BoxFuture<'a, Result<SourceVersion, SourceError>>;
    /// The artifact directory the version's files are in.
    fn root<'a>(&'a self, version: &'a SourceVersion)
        -> BoxFuture<'a, Result<String, SourceError>>;
    /// The entries directly under an artifact directory.
    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>>;
    /// A file's bytes.
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>>;
    /// Converts the logged model in `folder` (its MLmodel names `flavor`, which is not ONNX) to
    /// ONNX, keeping the result as the version's derived artifact where the source can: the
    /// ONNX bytes, or `None` when this source does not convert.
    fn convert<'a>(
        &'a self,
        version: &'a SourceVersion,
        folder: &'a str,
        flavor: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SourceError>> {
        let _ = (version, folder, flavor);
        Box::pin(async { Ok(None) })
    }
    /// Where a dataset version's rows are stored (`NAME@VERSION`, as a model version's
    /// training-data tag names it, or `NAME@latest`): what explanations take their background
    /// from, and a ranking's catalog.
    fn dataset<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<StoredDataset, SourceError>> {
        Box::pin(async move {
            Err(SourceError::unavailable(
                format!("dataset {version}"),
                "this model source does not read datasets",
            ))
        })
    }
}

/// A dataset version's stored file: its artifact path and file name (which says CSV or
/// Parquet).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDataset {
    pub path: String,
    pub file_name: String,
    /// The version number (what `NAME@latest` resolved to).
    pub version: i64,
}

/// Why a model version could not be had or served.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--model `{text}` is not NAME@ALIAS or NAME/VERSION")]
    Reference { text: String },
    /// The metadata store's answer (an unknown model or version, or a storage failure).
    #[error(transparent)]
    Store(#[from] mltrail_store::StoreError),
    /// The source could not answer (network, server refusal, storage): `what` says what was asked.
    #[error("{what}: {source}")]
    Unavailable {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("{version} has no .onnx file under {root}, nor an XGBoost, LightGBM or scikit-learn model; log it with mlflow.onnx.log_model, mlflow.xgboost.log_model, mlflow.lightgbm.log_model, mlflow.sklearn.log_model or `mltrail models register`")]
    NoModelFile { version: String, root: String },
    /// A logged model that is served once converted, which this process does not do.
    #[error("{version} is a {flavor} model and has no ONNX file derived from it yet: run `mltrail models convert {version}` (or serve it once with `mltrail serve`)")]
    NotConverted { version: String, flavor: String },
    /// The conversion was tried and refused.
    #[error("{version} cannot be converted to ONNX: {reason}")]
    Conversion { version: String, reason: String },
    #[error("the model files of {version} are at `{uri}`, outside the artifact store; only server-proxied `mlflow-artifacts:` locations can be served")]
    OutsideStore { version: String, uri: String },
    #[error("{version} {from}: {source}")]
    Signature {
        version: String,
        from: NamesFrom,
        #[source]
        source: SignatureError,
    },
    #[error("{version}: {source}")]
    Fit {
        version: String,
        #[source]
        source: SignatureError,
    },
    /// The `mltrail.privacy` tag is not a privacy spec, or names columns the model cannot log.
    #[error("{version}'s tag `mltrail.privacy`: {why}")]
    Privacy { version: String, why: String },
    #[error("{version} cannot be served: {source}")]
    Compile {
        version: String,
        #[source]
        source: RuntimeError,
    },
}

impl SourceError {
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        SourceError::Unavailable {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The model file and its MLmodel, as found under a version's root.
pub struct ModelFiles {
    pub onnx: Vec<u8>,
    pub mlmodel: Option<String>,
}

fn join(dir: &str, name: &str) -> String {
    let name = name.trim_start_matches('/');
    // Some listings name entries from the store's root already.
    if dir.is_empty() || name.starts_with(&format!("{dir}/")) {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// How deep under a version's root the `.onnx` file is looked for: `mlflow.onnx.log_model`
/// writes it at the root, `runs:/<id>/model` sources point one folder above it.
const SEARCH_DEPTH: usize = 3;

/// Where the ONNX file derived from a version's logged model is kept: a folder of its own per
/// model version. The name is written with letters, digits, `.`, `_` and `-` only, followed by
/// a hash of the whole name, so no name can reach another's folder or outside `derived/`.
pub fn derived_dir(name: &str, version: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(name.as_bytes()).to_hex();
    let version: String = version.chars().filter(char::is_ascii_digit).collect();
    format!("derived/{safe}-{}/{version}", &hash[..8])
}

/// The derived ONNX file a version's tags name, read only from the version's own folder and
/// only when its BLAKE3 is the one recorded beside it: a tag can be set by whoever may tag the
/// version, and must not make serving read another file.
async fn read_derived(
    source: &dyn ModelSource,
    version: &SourceVersion,
    path: &str,
) -> Result<Vec<u8>, SourceError> {
    let refused = |why: String| SourceError::Conversion {
        version: version.to_string(),
        reason: format!(
            "its tag `{}` {why}; run `mltrail models convert {version} --force`",
            tags::DERIVED_ONNX
        ),
    };
    let dir = derived_dir(&version.name, &version.version);
    let inside = path
        .strip_prefix(&format!("{dir}/"))
        .is_some_and(|rest| !rest.split('/').any(|part| part.is_empty() || part == ".."));
    if !inside {
        return Err(refused(format!("names `{path}`, outside {dir}/")));
    }
    let onnx = source.read(path).await?;
    let digest = blake3::hash(&onnx).to_hex().to_string();
    match version.tag(tags::DERIVED_ONNX_DIGEST) {
        Some(recorded) if recorded == digest => Ok(onnx),
        Some(recorded) => Err(refused(format!(
            "names a file whose BLAKE3 is {digest}, not the recorded {recorded}"
        ))),
        None => Err(refused("has no recorded digest".into())),
    }
}

/// The flavors mltrail converts to ONNX, as MLmodel names them.
const CONVERTED_FLAVORS: [&str; 1] = ["sklearn"];

/// The first of [`CONVERTED_FLAVORS`] an MLmodel lists under `flavors:`.
pub fn convertible_flavor(mlmodel: &str) -> Option<&'static str> {
    let mut in_flavors = false;
    for line in mlmodel.lines() {
        if !line.starts_with(' ') {
            in_flavors = line.trim_end() == "flavors:";
            continue;
        }
        if in_flavors {
            let key = line.trim_start();
            let indent = line.len() - key.len();
            if let Some(name) = key.strip_suffix(':').filter(|_| indent <= 2) {
                if let Some(f) = CONVERTED_FLAVORS.iter().find(|f| **f == name) {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// Finds the version's `.onnx` file (the shallowest, first in listing order) and the MLmodel
/// beside it (else the root's), and reads them. A version without one is served from the ONNX
/// file derived from its logged model (its `mltrail.derived_onnx` tag), or, for a flavor mltrail
/// converts, from what [`ModelSource::convert`] makes of it.
pub async fn fetch(
    source: &dyn ModelSource,
    version: &SourceVersion,
) -> Result<ModelFiles, SourceError> {
    let root = source.root(version).await?;
    let mut level = vec![root.clone()];
    let mut root_mlmodel = None;
    // The shallowest MLmodel and its folder: a logged model without an ONNX file.
    let mut first_mlmodel: Option<(String, String)> = None;
    for depth in 0..SEARCH_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let listing = source.list(dir).await?;
            let file = |suffix: &str| {
                listing
                    .iter()
                    .find(|e| !e.is_dir && e.name.ends_with(suffix))
                    .map(|e| join(dir, &e.name))
            };
            let mlmodel = file("MLmodel");
            if depth == 0 {
                root_mlmodel.clone_from(&mlmodel);
            }
            if first_mlmodel.is_none() {
                first_mlmodel = mlmodel.clone().map(|m| (m, dir.clone()));
            }
            if let Some(onnx) = file(".onnx") {
                let mlmodel = match mlmodel.or(root_mlmodel) {
                    Some(path) => {
                        Some(String::from_utf8_lossy(&source.read(&path).await?).into_owned())
                    }
                    None => None,
                };
                let onnx = source.read(&onnx).await?;
                return Ok(ModelFiles { onnx, mlmodel });
            }
            next.extend(
                listing
                    .iter()
                    .filter(|e| e.is_dir)
                    .map(|e| join(dir, &e.name)),
            );
        }
        level = next;
    }
    let no_file = || SourceError::NoModelFile {
        version: version.to_string(),
        root: root.clone(),
    };
    let (mlmodel_path, folder) = first_mlmodel.ok_or_else(no_file)?;
    let mlmodel = String::from_utf8_lossy(&source.read(&mlmodel_path).await?).into_owned();
    if let Some(derived) = version.tag(tags::DERIVED_ONNX) {
        let onnx = read_derived(source, version, derived).await?;
        return Ok(ModelFiles {
            onnx,
            mlmodel: Some(mlmodel),
        });
    }
    // XGBoost and LightGBM files are read here, in Rust, into the ONNX trees serving compiles
    // (on a blocking thread: a large JSON model is seconds of parsing).
    if let Some(flavor) = crate::flavors::native_flavor(&mlmodel) {
        let data = crate::flavors::flavor_setting(&mlmodel, flavor, "data").unwrap_or_default();
        let bytes = source.read(&join(&folder, &data)).await?;
        let named = version.to_string();
        let onnx = tokio::task::spawn_blocking(move || {
            crate::flavors::read(flavor, &data, &bytes).map(|e| e.to_onnx())
        })
        .await
        .map_err(|e| SourceError::unavailable("reading the model file", e))?
        .map_err(|e| SourceError::Conversion {
            version: named,
            reason: e.to_string(),
        })?;
        return Ok(ModelFiles {
            onnx,
            mlmodel: Some(mlmodel),
        });
    }
    let flavor = convertible_flavor(&mlmodel).ok_or_else(no_file)?;
    match source.convert(version, &folder, flavor).await? {
        Some(onnx) => Ok(ModelFiles {
            onnx,
            mlmodel: Some(mlmodel),
        }),
        None => Err(SourceError::NotConverted {
            version: version.to_string(),
            flavor: flavor.to_string(),
        }),
    }
}

/// Fetches, checks and compiles a model version: what `mltrail serve` serves and what monitors
/// score their reference with.
pub async fn load(
    source: &dyn ModelSource,
    version: &SourceVersion,
) -> Result<LoadedModel, SourceError> {
    let files = fetch(source, version).await?;
    let version = version.clone();
    tokio::task::spawn_blocking(move || compile(&version, files))
        .await
        .map_err(|e| SourceError::unavailable("compiling the model", e))?
}

/// The CPU part of [`load`]: digest, column names, compilation, signature.
pub fn compile(version: &SourceVersion, files: ModelFiles) -> Result<LoadedModel, SourceError> {
    let names = signature::column_names(files.mlmodel.as_deref(), version.tag(tags::SIGNATURE))
        .map_err(|(from, source)| SourceError::Signature {
            version: version.to_string(),
            from,
            source,
        })?;
    let digest = blake3::hash(&files.onnx).to_hex().to_string();
    let model = Model::load(&files.onnx).map_err(|source| SourceError::Compile {
        version: version.to_string(),
        source,
    })?;
    let signature = Signature::from_model(&model, names).map_err(|source| SourceError::Fit {
        version: version.to_string(),
        source,
    })?;
    let privacy = version
        .tag(tags::PRIVACY)
        .map(PrivacySpec::parse)
        .transpose()
        .map_err(|e| privacy_error(version, e))?;
    LoadedModel::new(
        version.name.clone(),
        version.version.clone(),
        digest,
        model,
        signature,
    )
    .with_training_data(version.training_data().map(str::to_string))
    .with_privacy(privacy)
    .map_err(|e| privacy_error(version, e))
}

fn privacy_error(version: &SourceVersion, why: impl std::fmt::Display) -> SourceError {
    SourceError::Privacy {
        version: version.to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Files in memory, keyed by path.
    struct Files(BTreeMap<String, Vec<u8>>);

    impl ModelSource for Files {
        fn version<'a>(
            &'a self,
            model: &'a ModelRef,
        ) -> BoxFuture<'a, Result<SourceVersion, SourceError>> {
            Box::pin(async move {
                Ok(SourceVersion {
                    name: model.name().into(),
                    version: "1".into(),
                    source: "mlflow-artifacts:/m".into(),
                    tags: Vec::new(),
                })
            })
        }
        fn root<'a>(&'a self, _: &'a SourceVersion) -> BoxFuture<'a, Result<String, SourceError>> {
            Box::pin(async { Ok("m".to_string()) })
        }
        fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>> {
            Box::pin(async move {
                let mut out: Vec<Listed> = Vec::new();
                for path in self.0.keys() {
                    let Some(rest) = path.strip_prefix(&format!("{dir}/")) else {
                        continue;
                    };
                    let (name, is_dir) = match rest.split_once('/') {
                        Some((d, _)) => (d.to_string(), true),
                        None => (rest.to_string(), false),
                    };
                    if !out.iter().any(|e| e.name == name) {
                        out.push(Listed { name, is_dir });
                    }
                }
                Ok(out)
            })
        }
        fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
            Box::pin(async move {
                self.0
                    .get(path)
                    .cloned()
                    .ok_or_else(|| SourceError::unavailable(format!("read {path}"), "no such file"))
            })
        }
    }

    fn version() -> SourceVersion {
        SourceVersion {
            name: "credit".into(),
            version: "1".into(),
            source: String::new(),
            tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_shallowest_model_file_and_its_mlmodel_are_found() {
        let files = Files(BTreeMap::from([
            ("m/MLmodel".to_string(), b"root".to_vec()),
            ("m/model/MLmodel".to_string(), b"beside".to_vec()),
            ("m/model/model.onnx".to_string(), b"onnx".to_vec()),
            ("m/model/deeper/other.onnx".to_string(), b"other".to_vec()),
        ]));
        let found = fetch(&files, &version()).await.unwrap();
        assert_eq!(found.onnx, b"onnx");
        assert_eq!(found.mlmodel.as_deref(), Some("beside"));
        let none = Files(BTreeMap::from([("m/readme.txt".to_string(), Vec::new())]));
        let err = fetch(&none, &version()).await.err().unwrap();
        assert!(
            err.to_string()
                .starts_with("credit/1 has no .onnx file under m"),
            "{err}"
        );
    }

    const SKLEARN_MLMODEL: &str = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n  sklearn:\n    pickled_model: model.pkl\nmlflow_version: 3.17.2\n";

    /// A scikit-learn model without an ONNX file: the derived file when the version's tag names
    /// one; else the source's conversion; else an error that says how to convert it.
    #[tokio::test]
    async fn a_pickled_model_is_served_from_its_derived_onnx_file() {
        assert_eq!(convertible_flavor(SKLEARN_MLMODEL), Some("sklearn"));
        assert_eq!(
            convertible_flavor("flavors:\n  onnx:\n    onnx_version: 1\nsklearn:\n"),
            None
        );
        let files = Files(BTreeMap::from([
            ("m/MLmodel".to_string(), SKLEARN_MLMODEL.as_bytes().to_vec()),
            ("m/model.pkl".to_string(), b"pickle".to_vec()),
            (
                "derived/credit/1/model.onnx".to_string(),
                b"derived".to_vec(),
            ),
        ]));
        let err = fetch(&files, &version()).await.err().unwrap();
        assert!(
            matches!(&err, SourceError::NotConverted { flavor, .. } if flavor == "sklearn"),
            "{err}"
        );
        assert!(err.to_string().contains("mltrail models convert credit/1"));
        let dir = derived_dir("credit", "1");
        assert!(
            dir.starts_with("derived/credit-") && dir.ends_with("/1"),
            "{dir}"
        );
        assert_ne!(derived_dir("a#b", "1"), derived_dir("a?b", "1"));
        assert!(derived_dir("..", "1").split('/').all(|part| part != ".."));
        assert_eq!(derived_dir("a/../b", "1").matches('/').count(), 2);
        let path = format!("{dir}/abc/model.onnx");
        let mut files = files;
        files.0.insert(path.clone(), b"derived".to_vec());
        files
            .0
            .insert("elsewhere/model.onnx".into(), b"other".to_vec());
        let digest = blake3::hash(b"derived").to_hex().to_string();
        let tagged = |path: &str, digest: &str| {
            let mut v = version();
            v.tags
                .push((tags::DERIVED_ONNX.to_string(), path.to_string()));
            v.tags
                .push((tags::DERIVED_ONNX_DIGEST.to_string(), digest.to_string()));
            v
        };
        let found = fetch(&files, &tagged(&path, &digest)).await.unwrap();
        assert_eq!(found.onnx, b"derived");
        assert_eq!(found.mlmodel.as_deref(), Some(SKLEARN_MLMODEL));
        // A tag naming a file outside the version's folder, or a file changed since, is refused.
        let outside = fetch(&files, &tagged("elsewhere/model.onnx", &digest))
            .await
            .err()
            .unwrap();
        assert!(outside.to_string().contains("outside"), "{outside}");
        let escaped = format!("{dir}/../../x/model.onnx");
        assert!(fetch(&files, &tagged(&escaped, &digest)).await.is_err());
        let changed = fetch(&files, &tagged(&path, &"0".repeat(64)))
            .await
            .err()
            .unwrap();
        assert!(
            changed.to_string().contains("not the recorded"),
            "{changed}"
        );

        /// Converts by returning fixed bytes, and says which folder it was given.
        struct Converting(Files);
        impl ModelSource for Converting {
            fn version<'a>(
                &'a self,
                model: &'a ModelRef,
            ) -> BoxFuture<'a, Result<SourceVersion, SourceError>> {
                self.0.version(model)
            }
            fn root<'a>(
                &'a self,
                v: &'a SourceVersion,
            ) -> BoxFuture<'a, Result<String, SourceError>> {
                self.0.root(v)
            }
            fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>> {
                self.0.list(dir)
            }
            fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
                self.0.read(path)
            }
            fn convert<'a>(
                &'a self,
                _: &'a SourceVersion,
                folder: &'a str,
                flavor: &'a str,
            ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SourceError>> {
                Box::pin(async move { Ok(Some(format!("{flavor} in {folder}").into_bytes())) })
            }
        }
        let converted = fetch(&Converting(files), &version()).await.unwrap();
        assert_eq!(converted.onnx, b"sklearn in m");
    }

    #[test]
    fn model_references_parse() {
        assert_eq!(
            ModelRef::parse("credit@production").unwrap(),
            ModelRef::Alias {
                name: "credit".into(),
                alias: "production".into()
            }
        );
        assert_eq!(
            ModelRef::parse("models:/credit/3").unwrap(),
            ModelRef::Version {
                name: "credit".into(),
                version: ModelVersionNumber(3)
            }
        );
        assert!(ModelRef::parse("credit").is_err());
        assert!(ModelRef::parse("credit/latest").is_err());
    }
}
