//! The hub's endpoints (`/v1/models...`, including OpenAI's `GET /v1/models`), and the node's
//! `/health` and `/metrics`.

use crate::http::error::ApiError;
use crate::hub::{self, Upload};
use crate::node::Node;
use crate::store::BlobWriter;
use axum::body::Body;
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use verity_core::wire::{Health, ModelList, ModelObject, PublishMeta, PublishResponse, ShowQuery};

pub async fn health(State(node): State<Arc<Node>>) -> Result<Json<Health>, ApiError> {
    Ok(Json(Health {
        status: "ok".into(),
        node: node.key.public(),
        version: env!("CARGO_PKG_VERSION").into(),
        models: node.store.model_count()?,
        receipts: node.store.receipt_count()?,
        chain_id: node.chain().ok().map(|c| c.validators.chain_id.clone()),
    }))
}

pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    name: Option<String>,
}

/// Every hub model (or the versions of `name`) in OpenAI's list shape ([`ModelList`]).
pub async fn list_models(
    State(node): State<Arc<Node>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ModelList>, ApiError> {
    let models = hub::list(&node, q.name.as_deref()).await?;
    Ok(Json(ModelList {
        object: "list".into(),
        data: models.into_iter().map(ModelObject::from).collect(),
    }))
}

/// A model's manifest, as an OpenAI model object (it still reads as a manifest). Unless
/// `local`, a networked node that lacks it finds it at a peer.
pub async fn show_model(
    State(node): State<Arc<Node>>,
    Path(reference): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<ModelObject>, ApiError> {
    Ok(Json(hub::find(&node, &reference, !q.local).await?.into()))
}

pub async fn download_model(
    State(node): State<Arc<Node>>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let (file, size) = hub::open_file(&node, &reference).await?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Largest `meta` part (a name, a version and a few hashes and keys).
const MAX_META_BYTES: usize = 64 << 10;
/// Largest `calibration` part (JSON samples; parsed in memory).
pub const MAX_CALIBRATION_BYTES: usize = 32 << 20;

/// A small form part read into memory, refused beyond `cap` bytes.
async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    cap: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if bytes.len() + chunk.len() > cap {
            return Err(ApiError::too_large(format!(
                "the `{name}` part exceeds {cap} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Multipart upload with parts `meta` (JSON [`PublishMeta`]), `model` (the file, streamed to
/// disk while hashed) and optionally `calibration` (JSON samples); the hub checks and
/// publishes it. Each client address has a publishing rate.
pub async fn publish(
    State(node): State<Arc<Node>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut form: Multipart,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0 .0.ip());
    if let Err(wait) = node.publish_rate.take(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!(
                "this client has used its {} publishes per hour; the next is possible in {wait}s",
                node.config.publishes_per_hour
            ),
        ));
    }
    let mut meta: Option<PublishMeta> = None;
    let mut blob: Option<BlobWriter> = None;
    let mut calibration: Option<Vec<u8>> = None;
    while let Some(mut field) = form.next_field().await? {
        match field.name().unwrap_or_default() {
            "meta" => {
                let bytes = read_part(&mut field, "meta", MAX_META_BYTES).await?;
                meta = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| ApiError::bad_request(format!("meta: {e}")))?,
                );
            }
            "model" => {
                let mut upload = Upload::new(&node)?;
                while let Some(chunk) = field.chunk().await? {
                    upload.write(&chunk)?;
                }
                blob = Some(upload.finish()?);
            }
            "calibration" => {
                calibration =
                    Some(read_part(&mut field, "calibration", MAX_CALIBRATION_BYTES).await?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part `{other}`"
                )))
            }
        }
    }
    let meta = meta.ok_or_else(|| ApiError::bad_request("missing `meta` part"))?;
    let blob = blob.ok_or_else(|| ApiError::bad_request("missing `model` part"))?;
    let response = hub::publish(&node, meta, blob, calibration).await?;
    Ok((StatusCode::CREATED, Json(response)))
}
