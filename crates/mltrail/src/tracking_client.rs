//! The few tracking-server calls the serving commands need, over the same REST API the mlflow
//! client uses.

use anyhow::{anyhow, bail, Context, Result};
use mltrail_serving::archive::{ArchiveReader, ArchiveStore, Recorded, StorageError};
use mltrail_serving::deployment::follower::{DeploymentEvent, DeploymentJournal};
use mltrail_serving::deployment::policy_keeper::{PolicyInForce, PolicyStore};
use mltrail_serving::deployment::{
    BoxFuture, LineageSource, Listed, ModelRef, ModelSource, SourceError, SourceVersion,
    StoredDataset,
};
use mltrail_serving::routing::RoutingState;
use mltrail_serving::segment_tree::ArchivedSegment;
use serde_json::{json, Value};

/// The tracking server's URL unless one is given (a macro, so the help text can include it).
macro_rules! default_tracking_uri {
    () => {
        "http://127.0.0.1:5000"
    };
}

pub const DEFAULT_TRACKING_URI: &str = default_tracking_uri!();

pub const TRACKING_URI_HELP: &str = concat!(
    "Tracking server URL (default: MLTRAIL_TRACKING_URI, then MLFLOW_TRACKING_URI, then ",
    default_tracking_uri!(),
    ")"
);

/// The tracking URI from the flag, then MLTRAIL_TRACKING_URI, then MLFLOW_TRACKING_URI.
/// `text` as one segment (or query value) of a tracking-server URL: every byte but letters and
/// digits percent-encoded, so names with `/`, `@` or spaces stay one segment.
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub fn resolve_uri(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("MLTRAIL_TRACKING_URI").ok())
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
        .unwrap_or_else(|| DEFAULT_TRACKING_URI.into())
        .trim_end_matches('/')
        .to_string()
}

/// The tracking server answered with an error: what was asked, the status and MLflow's
/// `{error_code, message}`.
#[derive(Debug)]
pub struct Refused {
    pub what: String,
    pub status: reqwest::StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {} {}",
            self.what, self.status, self.code, self.message
        )
    }
}

impl std::error::Error for Refused {}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// The `Authorization` header every call carries, from the environment: a bearer token from
/// MLTRAIL_TRACKING_TOKEN, then MLFLOW_TRACKING_TOKEN; else HTTP Basic from
/// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the mlflow client's variables).
fn credentials() -> Result<Option<reqwest::header::HeaderValue>> {
    use base64::Engine as _;
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let text = if let Some(token) =
        var("MLTRAIL_TRACKING_TOKEN").or_else(|| var("MLFLOW_TRACKING_TOKEN"))
    {
        format!("Bearer {token}")
    } else if let Some(user) = var("MLFLOW_TRACKING_USERNAME") {
        let password = var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {pair}")
    } else {
        return Ok(None);
    };
    let mut value = reqwest::header::HeaderValue::from_str(&text)
        .map_err(|_| anyhow!("the tracking credentials hold characters a header cannot carry"))?;
    // Kept out of debug output and HTTP/2 header tables.
    value.set_sensitive(true);
    Ok(Some(value))
}

/// A PEM file of CAs to trust besides the system's, for an https tracking server with its own
/// CA: MLTRAIL_TRACKING_CA, else MLflow's MLFLOW_TRACKING_SERVER_CERT_PATH.
fn ca_bundle() -> Option<String> {
    ["MLTRAIL_TRACKING_CA", "MLFLOW_TRACKING_SERVER_CERT_PATH"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

impl mltrail_server::scoring_auth::Identify for Client {
    fn identify<'a>(
        &'a self,
        authorization: &'a reqwest::header::HeaderValue,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<mltrail_server::scoring_auth::Identity, String>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(self.whoami(Some(authorization)))
    }
}

impl Client {
    /// The tracking server's `/api/v1/auth/whoami` for `authorization` (which replaces this
    /// process's own credentials for the request), or for this process's own.
    async fn whoami(
        &self,
        authorization: Option<&reqwest::header::HeaderValue>,
    ) -> Result<mltrail_server::scoring_auth::Identity, String> {
        use mltrail_server::scoring_auth::Identity;
        let mut request = self.http.get(format!("{}/api/v1/auth/whoami", self.base));
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        let resp = request
            .send()
            .await
            .map_err(|e| format!("{} unreachable: {e}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200 => mltrail_server::auth::Caller::from_json(&body)
                .map(Identity::Known)
                .ok_or_else(|| format!("unreadable answer from {}: {body}", self.base)),
            401 => Ok(Identity::Refused(
                body["message"].as_str().unwrap_or("refused").to_string(),
            )),
            other => Err(format!("{} answered {other}: {body}", self.base)),
        }
    }

    /// `mltrail serve --auth on` asks the tracking server about its callers, which means
    /// nothing unless that server authenticates too. One question answers both: with auth on,
    /// this process's own credentials come back as a user or a token (or are refused); with
    /// auth off, whatever was sent comes back unverified or anonymous.
    pub async fn check_tracking_auth(&self) -> Result<()> {
        use mltrail_core::Principal;
        use mltrail_server::scoring_auth::Identity;
        match self.whoami(None).await {
            Ok(Identity::Known(own))
                if matches!(own.principal, Principal::User(_) | Principal::Token(_)) =>
            {
                Ok(())
            }
            Ok(Identity::Known(_)) => bail!("--auth on: the tracking server at {} does not authenticate (it runs with auth off), so it cannot check this deployment's callers; start it with --auth on", self.base),
            Ok(Identity::Refused(_)) => bail!("the tracking server refused this process's credentials: set MLTRAIL_TRACKING_TOKEN (a token with `read` and `deployments`) or MLFLOW_TRACKING_USERNAME/PASSWORD"),
            Err(e) => bail!("cannot ask the tracking server who this process is: {e}"),
        }
    }

    pub fn new(base: String) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = credentials()? {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .default_headers(headers);
        if let Some(path) = ca_bundle() {
            let pem = std::fs::read(&path)
                .with_context(|| format!("cannot read the CA bundle {path}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{path} is not a PEM CA bundle"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            base,
            http: builder.build()?,
        })
    }

    /// GET a page that is not JSON (an HTML report); errors are read as the API's JSON errors.
    pub async fn get_text(&self, path: &str, what: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| {
                format!("{what}: cannot reach the tracking server at {}", self.base)
            })?;
        if !resp.status().is_success() {
            Self::check(resp, what).await?;
            bail!("{what}: the server refused");
        }
        Ok(resp.text().await?)
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let code = body.get("error_code").and_then(Value::as_str).unwrap_or("");
            return Err(Refused {
                what: what.to_string(),
                status,
                code: code.to_string(),
                message: msg.to_string(),
            }
            .into());
        }
        Ok(body)
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let resp = request.send().await.with_context(|| {
            format!("{what}: cannot reach the tracking server at {}", self.base)
        })?;
        Self::check(resp, what).await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Value> {
        self.send(
            self.http.get(format!("{}{path}", self.base)).query(query),
            what,
        )
        .await
    }

    /// GET a path (with its query string) on the tracking server.
    pub async fn get_json(&self, path_and_query: &str, what: &str) -> Result<Value> {
        self.send(
            self.http.get(format!("{}{path_and_query}", self.base)),
            what,
        )
        .await
    }

    pub async fn delete(&self, path: &str, what: &str) -> Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), what)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value, what: &str) -> Result<Value> {
        self.send(
            self.http.put(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value, what: &str) -> Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            what,
        )
        .await
    }

    /// The model version a reference points at now (`model_version` object).
    pub async fn model_version(&self, model: &ModelRef) -> Result<Value> {
        let body = match model {
            ModelRef::Alias { name, alias } => {
                self.get(
                    "/api/2.0/mlflow/registered-models/alias",
                    &[("name", name), ("alias", alias)],
                    &format!("alias {name}@{alias}"),
                )
                .await?
            }
            ModelRef::Version { name, version } => {
                self.get(
                    "/api/2.0/mlflow/model-versions/get",
                    &[("name", name), ("version", &version.to_string())],
                    &format!("model {name}/{version}"),
                )
                .await?
            }
        };
        body.get("model_version")
            .cloned()
            .ok_or_else(|| anyhow!("the server's answer has no model_version"))
    }

    pub async fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        let body = self
            .get(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
                "download uri",
            )
            .await?;
        body.get("artifact_uri")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no artifact_uri"))
    }

    /// Files under an artifact directory, recursively (relative to the artifact root).
    pub async fn list_files(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_string()];
        while let Some(d) = pending.pop() {
            let body = self
                .get(
                    "/api/2.0/mlflow-artifacts/artifacts",
                    &[("path", &d)],
                    "list artifacts",
                )
                .await?;
            for f in body
                .get("files")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let path = f
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let full = if path.starts_with(&d) || d.is_empty() {
                    path
                } else {
                    format!("{d}/{path}")
                };
                if f.get("is_dir").and_then(Value::as_bool).unwrap_or(false) {
                    pending.push(full);
                } else {
                    out.push((
                        full,
                        f.get("file_size").and_then(Value::as_u64).unwrap_or(0),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The artifact proxy's address of `path`.
    fn artifact_url(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base)
    }

    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
        self.fetch(path, None).await
    }

    /// [`Self::download`] with a progress bar on a terminal (a file a person waits for).
    pub async fn download_shown(&self, path: &str, what: &str) -> Result<Vec<u8>> {
        self.fetch(path, Some(what)).await
    }

    /// A whole artifact, counted on a bar labelled `shown` when there is one.
    async fn fetch(&self, path: &str, shown: Option<&str>) -> Result<Vec<u8>> {
        let mut resp = self
            .http
            .get(self.artifact_url(path))
            .send()
            .await
            .with_context(|| format!("download {path}"))?;
        if !resp.status().is_success() {
            bail!("download {path}: {}", resp.status());
        }
        let total = resp.content_length().unwrap_or(0);
        let bar = shown.map(|what| crate::progress::bytes(total, what));
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("download {path}"))?
        {
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
            out.extend_from_slice(&chunk);
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(out)
    }

    /// The bytes `range` of an artifact, through the proxy's `Range` support (a server that
    /// answers the whole file instead is cut here).
    pub async fn download_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes> {
        if range.start >= range.end {
            bail!("download {path}: empty byte range {range:?}");
        }
        let resp = self
            .http
            .get(self.artifact_url(path))
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", range.start, range.end - 1),
            )
            .send()
            .await
            .with_context(|| format!("download {path}"))?;
        let status = resp.status();
        // The range the server says it sent must start where asked.
        let sent_from = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = resp.bytes().await?;
        let want = usize::try_from(range.end - range.start)?;
        match status.as_u16() {
            206 if bytes.len() == want && sent_from == Some(range.start) => Ok(bytes),
            200 => {
                let start = usize::try_from(range.start)?;
                if start + want > bytes.len() {
                    bail!(
                        "download {path}: bytes {range:?} of a {} byte file",
                        bytes.len()
                    );
                }
                Ok(bytes.slice(start..start + want))
            }
            206 => bail!(
                "download {path}: asked for {want} bytes at {}, got {}",
                range.start,
                bytes.len()
            ),
            _ => bail!("download {path}: {status}"),
        }
    }

    /// [`Self::upload`] with a progress bar on a terminal: the body goes out in chunks, each
    /// counted as the connection takes it.
    pub async fn upload_shown(&self, path: &str, bytes: Vec<u8>, what: &str) -> Result<()> {
        const CHUNK: usize = 256 << 10;
        let total = bytes.len();
        let bar = crate::progress::bytes(total as u64, what);
        let data = bytes::Bytes::from(bytes);
        let chunks: Vec<bytes::Bytes> = (0..total)
            .step_by(CHUNK)
            .map(|at| data.slice(at..(at + CHUNK).min(total)))
            .collect();
        let counted = bar.clone();
        let body = futures::stream::iter(chunks.into_iter().map(move |chunk| {
            counted.inc(chunk.len() as u64);
            Ok::<_, std::io::Error>(chunk)
        }));
        let sent = self
            .put_artifact(path, reqwest::Body::wrap_stream(body), total)
            .await;
        bar.finish_and_clear();
        sent
    }

    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        let total = bytes.len();
        self.put_artifact(path, reqwest::Body::from(bytes), total)
            .await
    }

    async fn put_artifact(&self, path: &str, body: reqwest::Body, length: usize) -> Result<()> {
        let resp = self
            .http
            .put(self.artifact_url(path))
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body)
            .send()
            .await
            .with_context(|| format!("upload {path}"))?;
        Self::check(resp, &format!("upload {path}"))
            .await
            .map(|_| ())
    }
}

/// The artifact path an `mlflow-artifacts:` URI names (with or without a host part).
pub fn artifact_path(uri: &str) -> Result<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        anyhow!("the model's artifacts are at `{uri}`; only server-proxied `mlflow-artifacts:` locations can be served")
    })?;
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest.trim_start_matches('/'),
    };
    Ok(rest.trim_end_matches('/').to_string())
}

/// Archived prediction logs go to the artifact store through the tracking server's proxy, so a
/// serving process needs no storage credentials of its own.
impl ArchiveStore for Client {
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            self.upload(path, bytes)
                .await
                .map_err(|e| StorageError::new("upload", path, e))
        })
    }

    fn record_segment<'a>(
        &'a self,
        segment: &'a ArchivedSegment,
    ) -> BoxFuture<'a, Result<Recorded, StorageError>> {
        Box::pin(async move {
            let body = serde_json::to_value(segment)
                .map_err(|e| StorageError::new("record", &segment.artifact, e))?;
            match self
                .post(
                    "/api/v1/deployments/segments",
                    &body,
                    "record an archived segment",
                )
                .await
            {
                Ok(_) => Ok(Recorded::Yes),
                // The server's word for "another summary is recorded for this file".
                Err(e)
                    if e.downcast_ref::<Refused>()
                        .is_some_and(|r| r.code == "RESOURCE_ALREADY_EXISTS") =>
                {
                    Ok(Recorded::Conflict(format!("{e:#}")))
                }
                Err(e) => Err(StorageError::new("record", &segment.artifact, e)),
            }
        })
    }
}

impl ArchiveReader for Client {
    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<String>, StorageError>> {
        Box::pin(async move {
            Ok(self
                .list_files(dir)
                .await
                .map_err(|e| StorageError::new("list", dir, e))?
                .into_iter()
                .map(|(p, _)| p)
                .collect())
        })
    }

    fn get<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
        Box::pin(async move {
            self.download(path)
                .await
                .map_err(|e| StorageError::new("download", path, e))
        })
    }

    fn get_range<'a>(
        &'a self,
        path: &'a str,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'a, Result<bytes::Bytes, StorageError>> {
        Box::pin(async move {
            self.download_range(path, range)
                .await
                .map_err(|e| StorageError::new("download", path, e))
        })
    }
}

/// `mltrail serve` reaches the registry and the model files through the tracking server.
impl ModelSource for Client {
    fn version<'a>(
        &'a self,
        model: &'a ModelRef,
    ) -> BoxFuture<'a, Result<SourceVersion, SourceError>> {
        Box::pin(async move {
            let record = self
                .model_version(model)
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            let text = |field: &str| {
                record
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let version = text("version").ok_or_else(|| {
                SourceError::unavailable(
                    format!("model {model}"),
                    "the server's model version has no number",
                )
            })?;
            let tags = record
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        t["key"].as_str()?.to_string(),
                        t["value"].as_str()?.to_string(),
                    ))
                })
                .collect();
            Ok(SourceVersion {
                name: text("name").unwrap_or_else(|| model.name().to_string()),
                version,
                source: text("source").unwrap_or_default(),
                tags,
            })
        })
    }

    fn root<'a>(
        &'a self,
        version: &'a SourceVersion,
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            let uri = self
                .download_uri(&version.name, &version.version)
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            artifact_path(&uri).map_err(|_| SourceError::OutsideStore {
                version: version.to_string(),
                uri,
            })
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>> {
        Box::pin(async move {
            let body = self
                .get(
                    "/api/2.0/mlflow-artifacts/artifacts",
                    &[("path", dir)],
                    "list artifacts",
                )
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            Ok(body
                .get("files")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    Some(Listed {
                        name: f.get("path")?.as_str()?.to_string(),
                        is_dir: f.get("is_dir").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect())
        })
    }

    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
        Box::pin(async move {
            self.download(path)
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))
        })
    }

    fn convert<'a>(
        &'a self,
        version: &'a SourceVersion,
        folder: &'a str,
        flavor: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, SourceError>> {
        Box::pin(crate::convert::convert_for_serving(
            self, version, folder, flavor,
        ))
    }

    fn dataset<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<StoredDataset, SourceError>> {
        Box::pin(async move {
            let what = format!("dataset {version}");
            let (name, number) = version
                .rsplit_once('@')
                .ok_or_else(|| SourceError::unavailable(what.clone(), "not NAME@VERSION"))?;
            let path = format!(
                "/api/v1/datasets/{}/versions/{}",
                segment(name),
                segment(number)
            );
            let answer = self
                .get_json(&path, &what)
                .await
                .map_err(|e| SourceError::unavailable(what.clone(), e))?;
            if answer["rows_stored"] != Value::Bool(true) {
                return Err(SourceError::unavailable(
                    what,
                    "its rows are not stored (add them with `mltrail data add`)",
                ));
            }
            let field = |key: &str| {
                answer["dataset_version"][key]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SourceError::unavailable(what.clone(), format!("no `{key}`")))
            };
            Ok(StoredDataset {
                path: field("source")?,
                file_name: field("file_name")?,
                version: answer["dataset_version"]["version"]
                    .as_i64()
                    .ok_or_else(|| SourceError::unavailable(what.clone(), "no `version`"))?,
            })
        })
    }
}

/// What stands behind a model version, for the records `mltrail serve` has not archived yet.
impl LineageSource for Client {
    fn lineage<'a>(
        &'a self,
        deployment: &'a str,
        model: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Value, SourceError>> {
        Box::pin(async move {
            let enc = segment;
            let path = format!(
                "/api/v1/lineage?model={}&version={}&deployment={}",
                enc(model),
                enc(version),
                enc(deployment)
            );
            self.get_json(&path, &format!("the lineage of {model}/{version}"))
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))
        })
    }
}

/// Deployment events go to the tracking server's audit trail.
impl DeploymentJournal for Client {
    fn record<'a>(&'a self, event: &'a DeploymentEvent) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let body = json!({"deployment": event.deployment, "action": event.action.as_str(),
                              "model": event.model, "version": event.version, "digest": event.digest});
            self.post(
                "/api/v1/deployments/events",
                &body,
                "record deployment event",
            )
            .await
            .map(|_| ())
            .map_err(|e| SourceError::unavailable("the tracking server", e))
        })
    }
}

/// Whether an error is the tracking server's 404.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| r.status == reqwest::StatusCode::NOT_FOUND)
}

/// Routing policies and what they learned are kept by the tracking server.
impl PolicyStore for Client {
    fn policy<'a>(
        &'a self,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<PolicyInForce>, SourceError>> {
        Box::pin(async move {
            let path = format!("/api/v1/deployments/{}/policy", segment(deployment));
            match self
                .get_json(&path, "the deployment's routing policy")
                .await
            {
                Ok(body) => Ok(body.get("policy").cloned().map(|document| PolicyInForce {
                    document,
                    since_ms: body["updated_time"].as_i64().unwrap_or(0),
                    rolled_back: !body["rolled_back"].is_null(),
                })),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(SourceError::unavailable("the tracking server", e)),
            }
        })
    }

    fn fired_since<'a>(
        &'a self,
        monitor: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, SourceError>> {
        Box::pin(async move {
            let path = format!("/api/v1/monitors/{}/alerts?limit=100", segment(monitor));
            let body = self
                .get_json(&path, "the canary's monitor alerts")
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            Ok(body["alerts"].as_array().and_then(|alerts| {
                alerts
                    .iter()
                    .find(|a| {
                        a["state"] == "firing"
                            && a["window_start"].as_i64().is_some_and(|t| t >= since_ms)
                    })
                    .cloned()
            }))
        })
    }

    fn roll_back<'a>(
        &'a self,
        deployment: &'a str,
        policy: &'a str,
        verdict: &'a Value,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let path = format!(
                "/api/v1/deployments/{}/policy/rollback",
                segment(deployment)
            );
            self.post(
                &path,
                &json!({"policy": policy, "verdict": verdict}),
                "roll back the canary",
            )
            .await
            .map(|_| ())
            .map_err(|e| SourceError::unavailable("the tracking server", e))
        })
    }

    fn learned<'a>(
        &'a self,
        deployment: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoutingState>, SourceError>> {
        Box::pin(async move {
            let path = format!(
                "/api/v1/deployments/{}/policy/state?policy={}",
                segment(deployment),
                segment(policy)
            );
            let body = self
                .get_json(&path, "what the routing policy learned")
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            match body.get("state") {
                None | Some(Value::Null) => Ok(None),
                Some(state) => serde_json::from_value(state.clone())
                    .map(Some)
                    .map_err(|e| SourceError::unavailable("what the routing policy learned", e)),
            }
        })
    }

    fn report<'a>(
        &'a self,
        deployment: &'a str,
        id: uuid::Uuid,
        delta: &'a RoutingState,
    ) -> BoxFuture<'a, Result<RoutingState, SourceError>> {
        Box::pin(async move {
            let path = format!("/api/v1/deployments/{}/policy/state", segment(deployment));
            let body = self
                .post(
                    &path,
                    &json!({"report_id": id.to_string(), "delta": delta}),
                    "report what the routing policy learned",
                )
                .await
                .map_err(|e| SourceError::unavailable("the tracking server", e))?;
            serde_json::from_value(body.get("state").cloned().unwrap_or_default())
                .map_err(|e| SourceError::unavailable("what the routing policy learned", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_paths() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/models/m-1/artifacts").unwrap(),
            "1/models/m-1/artifacts"
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://host:5000/a/b/").unwrap(),
            "a/b"
        );
        assert!(artifact_path("file:///etc").is_err());
    }
}
