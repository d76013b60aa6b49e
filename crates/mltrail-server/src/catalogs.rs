//! `PUT /api/v1/catalogs/{name}`: a catalog version from a JSON body, for a business system that
//! pushes its catalog rather than writing a file. The items become a version of dataset `name`
//! (a Parquet file whose columns keep the items' types), exactly as `mltrail data add` would
//! store it; ranking deployments that name the catalog (`mltrail serve --catalog NAME`) pick the
//! new version up within their `--catalog-interval-ms`.

use axum::extract::{Path, State};
use axum::Json;
use mltrail_core::ArtifactPath;
use mltrail_data::version::{self, RecordsError};
use mltrail_store::datasets::{self, DatasetFile, NewDatasetVersion};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn bad(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{field}`: {message}")).at_column(Some(field), None)
}

/// A catalog version: its items, whose columns keep their JSON types (they become the Parquet
/// file's columns).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CatalogIn {
    /// One object per item: its id (`item_id`) and columns such as `available`, `price`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
}

/// `{"items": [{"item_id": "a", "available": true, …}, …]}` → `{"dataset_version", "created"}`.
#[utoipa::path(put, path = "/{name}", tag = "catalogs",
    params(("name" = String, Path, description = "The catalog: a dataset's name")),
    request_body = CatalogIn,
    responses((status = 200, description = "The catalog's version (created false when the items are the newest version's already)", body = crate::datasets::DatasetAdded)))]
async fn put_catalog(
    State(state): State<AppState>,
    crate::req::Actor(actor): crate::req::Actor,
    Path(name): Path<String>,
    crate::req::Body(body): crate::req::Body<CatalogIn>,
) -> ApiResult<Json<crate::datasets::DatasetAdded>> {
    version::check_name(&name).map_err(|e| bad("name", e))?;
    let items = Value::Array(body.items);
    let records_error = |e: RecordsError| match &e {
        RecordsError::Write(_) => ApiError::internal(e),
        other => bad(
            &other
                .column()
                .map_or("items".to_string(), |c| format!("items.{c}")),
            other,
        ),
    };
    // The items alone (their canonical JSON), to tell whether they are the newest version's
    // already; the file is written once, with this digest in its metadata.
    let digest = blake3::hash(mltrail_core::canonical_json(&items).as_bytes())
        .to_hex()
        .to_string();
    let latest = match datasets::latest_version(&state.store, &name).await {
        Ok(latest) => Some(latest),
        Err(e) if e.kind() == mltrail_store::StoreErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(latest) = latest.as_ref().filter(|l| l.file.has_rows()) {
        let stored = ArtifactPath::parse(&latest.file.source).map_err(ApiError::internal)?;
        let bytes = state.artifacts.get(&stored).await?;
        if version::items_digest(&bytes) == digest {
            return Ok(Json(crate::datasets::DatasetAdded {
                dataset_version: latest.clone(),
                created: false,
            }));
        }
    }
    // The file names its items' digest and the version it becomes: items that were an older
    // version's (an item back in stock) make a new version, not that older one again.
    let next = latest.as_ref().map_or(1, |l| l.version + 1);
    let metadata = [
        (version::ITEMS_DIGEST_KEY, digest),
        ("mltrail.version", format!("{name}@{next}")),
    ];
    let records = items.as_array().map_or(&[][..], Vec::as_slice);
    let bytes = version::parquet_from_records(records, &metadata).map_err(records_error)?;
    let dataset = name.clone();
    let (prepared, bytes) = tokio::task::spawn_blocking(move || {
        let prepared =
            version::prepare(&name, "catalog.parquet", &bytes).map_err(|e| bad("items", e))?;
        Ok::<_, ApiError>((prepared, bytes))
    })
    .await
    .map_err(ApiError::internal)??;
    let source = ArtifactPath::parse(&prepared.source).map_err(|e| bad("name", e))?;
    state.artifacts.put(&source, bytes.into()).await?;
    let schema = serde_json::to_value(&prepared.schema).map_err(ApiError::internal)?;
    let (version, created) = datasets::add_version(
        &state.store,
        &actor,
        NewDatasetVersion {
            name: dataset,
            file: DatasetFile {
                digest: prepared.digest,
                source: prepared.source,
                file_name: "catalog.parquet".into(),
                rows: i64::try_from(prepared.table.rows).unwrap_or(i64::MAX),
                target: None,
                schema,
                profile: prepared.profile,
            },
        },
    )
    .await?;
    Ok(Json(crate::datasets::DatasetAdded {
        dataset_version: version,
        created,
    }))
}

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(put_catalog))
}
