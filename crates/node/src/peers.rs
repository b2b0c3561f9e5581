//! Talking to other nodes over their HTTP APIs (endpoints come from the ledger's node
//! registry): quorum execution and fetching models by id. Nothing a peer sends is trusted:
//! receipts are verified by the caller, model bytes by their hash.

use crate::error::ApiError;
use crate::Node;
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use verity_core::{ModelId, ModelManifest, PublicKey, Receipt, SignedRequest};
use verity_engine::inspect;

const EXECUTE_TIMEOUT: Duration = Duration::from_secs(20);
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

fn endpoint_of(node: &Node, key: &PublicKey) -> Result<String, String> {
    let chain = node.chain().map_err(|e| e.message)?;
    chain
        .app
        .read(|s| s.node(key).map(|n| n.endpoint.clone()))
        .ok_or_else(|| format!("node {key} is not registered"))
}

/// Asks `executor` to run a quorum request.
pub async fn execute(
    node: &Node,
    executor: &PublicKey,
    signed: &SignedRequest,
) -> Result<Receipt, String> {
    let url = format!("{}/v1/execute", endpoint_of(node, executor)?);
    let resp = node
        .http
        .post(&url)
        .timeout(EXECUTE_TIMEOUT)
        .json(signed)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("{url}: {status} {body}"));
    }
    resp.json().await.map_err(|e| format!("{url}: {e}"))
}

/// The API endpoints of the other registered nodes.
fn peer_endpoints(node: &Node) -> Result<Vec<String>, ApiError> {
    let me = node.key.public();
    Ok(node.chain()?.app.read(|s| {
        s.nodes()
            .filter(|(k, _)| **k != me)
            .map(|(_, n)| n.endpoint.clone())
            .collect()
    }))
}

/// Asks peers what a model reference (name, name@version or id) names, then fetches that id.
/// The peer is trusted only to map a name to an id; the bytes are checked against the id.
pub async fn resolve_remote(node: &Arc<Node>, reference: &str) -> Result<ModelManifest, ApiError> {
    for ep in peer_endpoints(node)? {
        let url = format!("{ep}/v1/models/{reference}?local=true");
        let Ok(resp) = node.http.get(&url).timeout(EXECUTE_TIMEOUT).send().await else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        if let Ok(m) = resp.json::<ModelManifest>().await {
            return fetch_model(node, &m.id).await;
        }
    }
    Err(ApiError::not_found(format!(
        "no model `{reference}` here or at any peer"
    )))
}

/// Fetches a model this node lacks from the other registered nodes, checks the bytes hash to
/// the id, re-derives the manifest's technical fields from the bytes, and stores it.
pub async fn fetch_model(node: &Arc<Node>, id: &ModelId) -> Result<ModelManifest, ApiError> {
    if let Some(m) = node.store.manifest(id)? {
        return Ok(m);
    }
    let mut errors = Vec::new();
    for ep in peer_endpoints(node)? {
        match fetch_from(node, &ep, id).await {
            Ok(m) => return Ok(m),
            Err(e) => errors.push(format!("{ep}: {e}")),
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "unknown model {id}: not stored here, and no peer served it ({})",
            errors.join("; ")
        ),
    ))
}

async fn fetch_from(
    node: &Arc<Node>,
    endpoint: &str,
    id: &ModelId,
) -> Result<ModelManifest, String> {
    let get = |url: String| async move {
        let resp = node
            .http
            .get(&url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{}", resp.status()));
        }
        Ok(resp)
    };
    let claimed: ModelManifest = get(format!("{endpoint}/v1/models/{id}?local=true"))
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let resp = get(format!("{endpoint}/v1/models/{id}/file")).await?;
    if resp.content_length().unwrap_or(0) > node.config.max_model_bytes {
        return Err("model larger than this node accepts".into());
    }
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() as u64 > node.config.max_model_bytes {
        return Err("model larger than this node accepts".into());
    }
    let node2 = node.clone();
    let id = *id;
    tokio::task::spawn_blocking(move || {
        if ModelId::of_bytes(&bytes) != id {
            return Err(format!("peer sent bytes that do not hash to {id}"));
        }
        let info = inspect(&bytes).map_err(|e| e.to_string())?;
        let manifest = ModelManifest {
            id,
            format: info.format,
            inputs: info.inputs,
            outputs: info.outputs,
            operators: info.operators,
            size: bytes.len() as u64,
            ..claimed
        };
        let blob = node2
            .store
            .blob_from_bytes(&bytes)
            .map_err(|e| e.to_string())?;
        node2
            .store
            .import(blob, &manifest)
            .map_err(|e| e.to_string())?;
        tracing::info!(%id, "model fetched from a peer");
        Ok(manifest)
    })
    .await
    .map_err(|e| e.to_string())?
}
