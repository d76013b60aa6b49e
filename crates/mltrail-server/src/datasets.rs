//! `/api/v1/datasets`: register, list and read dataset versions. The file itself is uploaded
//! through the artifact proxy first; this records what it is.

use axum::extract::{Path, Query, State};
use axum::Json;
use mltrail_store::datasets::{self, DatasetFile, DatasetVersion, NewDatasetVersion, VersionRef};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::req::Body;
use crate::AppState;

/// A dataset version to record: the file, already uploaded through the artifact proxy, and
/// what was learned from it (`mltrail datasets add` sends this).
#[derive(Deserialize, ToSchema)]
struct AddDataset {
    name: String,
    /// BLAKE3 of the file's bytes.
    digest: String,
    /// Where the file is in the artifact store, under the dataset's folder.
    source: String,
    file_name: String,
    /// Rows in the file; at least 1.
    rows: i64,
    /// The target column, if the data has one.
    #[serde(default)]
    target: Option<String>,
    /// Column names, types, nullability and PII tags.
    schema: Vec<serde_json::Value>,
    /// Per-column profile: the monitoring reference.
    profile: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetAdded {
    pub dataset_version: DatasetVersion,
    /// False when the same name and digest were recorded already (that version is returned).
    pub created: bool,
}

#[utoipa::path(post, path = "/", tag = "datasets", request_body = AddDataset,
    responses((status = 200, description = "The version recorded (or already there)", body = DatasetAdded)))]
async fn add(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Body(body): Body<AddDataset>,
) -> ApiResult<Json<DatasetAdded>> {
    if body.rows < 1 {
        return Err(
            ApiError::invalid("`rows` must be a positive integer").at_column(Some("rows"), None)
        );
    }
    // The store refuses a source outside the dataset's folder (`datasets::file_path`).
    let new = NewDatasetVersion {
        name: body.name,
        file: DatasetFile {
            digest: body.digest,
            source: body.source,
            file_name: body.file_name,
            rows: body.rows,
            target: body.target,
            schema: serde_json::Value::Array(body.schema),
            profile: serde_json::Value::Object(body.profile),
        },
    };
    let (dataset_version, created) = datasets::add_version(&state.store, &actor, new).await?;
    Ok(Json(DatasetAdded {
        dataset_version,
        created,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this dataset's versions.
    name: Option<String>,
}

/// A version as listed: without its schema and profile.
#[derive(Serialize, ToSchema)]
struct DatasetListing {
    name: String,
    version: i64,
    digest: String,
    rows: i64,
    file_name: String,
    target: Option<String>,
    created_time: i64,
    created_by: String,
}

#[derive(Serialize, ToSchema)]
struct DatasetVersions {
    dataset_versions: Vec<DatasetListing>,
}

#[utoipa::path(get, path = "/", tag = "datasets", params(ListQuery),
    responses((status = 200, description = "Every version, oldest first", body = DatasetVersions)))]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<DatasetVersions>> {
    let versions = datasets::list_versions(&state.store, q.name.as_deref()).await?;
    let dataset_versions = versions
        .into_iter()
        .map(|v| DatasetListing {
            name: v.name,
            version: v.version,
            digest: v.file.digest,
            rows: v.file.rows,
            file_name: v.file.file_name,
            target: v.file.target,
            created_time: v.created_time,
            created_by: v.created_by,
        })
        .collect();
    Ok(Json(DatasetVersions { dataset_versions }))
}

#[derive(Serialize, ToSchema)]
struct DatasetVersionRead {
    dataset_version: DatasetVersion,
    /// Whether the rows themselves are kept (a catalog keeps only its profile).
    rows_stored: bool,
    /// The runs that logged this version as an input.
    runs: Vec<String>,
}

#[utoipa::path(get, path = "/{name}/versions/{version}", tag = "datasets",
    params(("name" = String, Path, description = "The dataset"),
           ("version" = String, Path, description = "A version number, or `latest`")),
    responses((status = 200, description = "The version with its schema and profile", body = DatasetVersionRead)))]
async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<DatasetVersionRead>> {
    let version = match version.as_str() {
        "latest" => None,
        v => Some(v.parse::<i64>().map_err(|_| {
            ApiError::invalid(format!("version `{v}` is not a number or `latest`"))
        })?),
    };
    let v = match version {
        None => datasets::latest_version(&state.store, &name).await?,
        Some(version) => datasets::get_version(&state.store, &VersionRef { name, version }).await?,
    };
    let runs = datasets::runs_using(&state.store, &v).await?;
    Ok(Json(DatasetVersionRead {
        rows_stored: v.file.has_rows(),
        dataset_version: v,
        runs,
    }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(get_version))
}
