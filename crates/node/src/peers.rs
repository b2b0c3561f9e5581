//! Talking to other nodes over their HTTP APIs (endpoints come from the ledger's node
//! registry): quorum execution and fetching models by id. Nothing a peer sends is trusted:
//! receipts are verified by the caller, model bytes by their hash.

use crate::executor::inspect;
use crate::node::{NoLedger, Node};
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use verity_core::wire::{DisputeBody, InferBody, ProofBundle};
use verity_core::{ModelId, ModelManifest, PublicKey, Receipt, SignedRequest};
use verity_ledger::proof::{verify_inclusion, InclusionProof};

const EXECUTE_TIMEOUT: Duration = Duration::from_secs(20);
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest receipt or manifest read from a peer.
const MAX_REPLY_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    NoLedger(#[from] NoLedger),
    #[error("node {0} is not registered")]
    Unregistered(PublicKey),
    /// A peer could not be reached, refused, or answered with something unusable.
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
    /// No peer has the model (or the reference is not one peers are asked about).
    #[error("{0}")]
    NoModel(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a peer's reply body, refusing more than `cap` bytes (whatever Content-Length says).
async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(format!("reply larger than {cap} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(format!("reply larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short, printable excerpt of a peer's error body (never echoed in full).
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

fn endpoint_of(node: &Node, key: &PublicKey) -> Result<String, PeerError> {
    node.chain()?
        .app
        .read(|s| s.node(key).map(|n| n.endpoint.clone()))
        .ok_or(PeerError::Unregistered(*key))
}

/// Asks `executor` to run a quorum request (it checks the escrow on its own ledger). The
/// receipt it returns is not checked here.
pub async fn execute(
    node: &Node,
    executor: &PublicKey,
    signed: &SignedRequest,
) -> Result<Receipt, PeerError> {
    // The executor reads the escrow from its own ledger, not from us.
    let body = InferBody {
        signed: signed.clone(),
        escrow: None,
    };
    let bytes = post_to(node, executor, "/v1/execute", &body).await?;
    serde_json::from_slice(&bytes).map_err(|e| PeerError::Failed {
        url: format!("{executor}/v1/execute"),
        reason: e.to_string(),
    })
}

/// POSTs `body` as JSON to `path` on `peer` and returns the reply's bytes (capped).
async fn post_to(
    node: &Node,
    peer: &PublicKey,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Vec<u8>, PeerError> {
    let url = format!("{}{path}", endpoint_of(node, peer)?);
    let sent = node
        .http
        .post(&url)
        .timeout(EXECUTE_TIMEOUT)
        .json(body)
        .send()
        .await;
    reply(&url, sent).await
}

/// A peer's successful reply body (capped), or why there is none.
async fn reply(url: &str, sent: reqwest::Result<reqwest::Response>) -> Result<Vec<u8>, PeerError> {
    let failed = |reason: String| PeerError::Failed {
        url: url.to_string(),
        reason,
    };
    let resp = sent.map_err(|e| failed(e.to_string()))?;
    let status = resp.status();
    let bytes = read_capped(resp, MAX_REPLY_BYTES).await.map_err(failed)?;
    if !status.is_success() {
        return Err(failed(format!("{status} {}", excerpt(&bytes))));
    }
    Ok(bytes)
}

/// Asks `executor`, an eligible executor of the request, to file the disagreement.
pub async fn file_dispute(
    node: &Node,
    executor: &PublicKey,
    body: &DisputeBody,
) -> Result<(), PeerError> {
    post_to(node, executor, "/v1/disputes", body)
        .await
        .map(drop)
}

/// What fetching a zk proof from its executor gave.
pub enum ServedProof {
    Served(ProofBundle),
    /// The executor answered that it has no such proof (it settled with a hash it cannot
    /// back).
    Missing,
}

/// The zk proof `executor` settled with, fetched by its hash. The bundle is not checked here.
pub async fn zk_proof(
    node: &Node,
    executor: &PublicKey,
    hash: &verity_core::Hash,
) -> Result<ServedProof, PeerError> {
    let url = format!("{}/v1/proofs/{hash}", endpoint_of(node, executor)?);
    let sent = node.http.get(&url).timeout(FETCH_TIMEOUT).send().await;
    if sent
        .as_ref()
        .is_ok_and(|r| r.status() == reqwest::StatusCode::NOT_FOUND)
    {
        return Ok(ServedProof::Missing);
    }
    let bytes = reply(&url, sent).await?;
    serde_json::from_slice(&bytes)
        .map(ServedProof::Served)
        .map_err(|e| PeerError::Failed {
            url,
            reason: e.to_string(),
        })
}

/// The API endpoints of the other registered nodes.
fn peer_endpoints(node: &Node) -> Result<Vec<String>, NoLedger> {
    let me = node.key.public();
    Ok(node.chain()?.app.read(|s| {
        s.nodes()
            .filter(|(k, _)| **k != me)
            .map(|(_, n)| n.endpoint.clone())
            .collect()
    }))
}

/// A peer's successful reply to GET `url` (capped), or None for any failure.
async fn get_from_peer(node: &Node, url: &str) -> Option<Vec<u8>> {
    let resp = node
        .http
        .get(url)
        .timeout(EXECUTE_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    read_capped(resp, MAX_REPLY_BYTES).await.ok()
}

/// An inclusion proof for `receipt` from another node, accepted only if it verifies against
/// this node's validator set and names that receipt.
pub async fn fetch_proof(node: &Node, receipt: &verity_core::Hash) -> Option<InclusionProof> {
    let set = &node.chain().ok()?.validators;
    for ep in peer_endpoints(node).ok()? {
        let url = format!("{ep}/v1/receipts/{receipt}/proof?local=true");
        let Some(bytes) = get_from_peer(node, &url).await else {
            continue;
        };
        let Ok(proof) = serde_json::from_slice::<InclusionProof>(&bytes) else {
            continue;
        };
        if proof.receipt.id() == *receipt && verify_inclusion(&proof, set).is_ok() {
            return Some(proof);
        }
        tracing::warn!(%ep, "peer served an invalid inclusion proof");
    }
    None
}

/// A peer's manifest for `id` (for listing a model this node has no copy of): the first
/// peer that serves one for exactly that id. Its technical fields are the peer's word until
/// the bytes are fetched and re-derived.
pub async fn manifest(node: &Node, id: &ModelId) -> Option<ModelManifest> {
    for ep in peer_endpoints(node).ok()? {
        let url = format!("{ep}/v1/models/{id}?local=true");
        let Some(bytes) = get_from_peer(node, &url).await else {
            continue;
        };
        match serde_json::from_slice::<ModelManifest>(&bytes) {
            Ok(m) if m.id == *id => return Some(m),
            _ => continue,
        }
    }
    None
}

/// Fetches a model this node lacks from the other registered nodes, checks the bytes hash to
/// the id, re-derives the manifest's technical fields from the bytes, and stores it. One
/// fetch per id runs at a time (concurrent callers wait for it and then find the model
/// stored), and only a few ids are fetched at once; bytes stream to disk, not memory.
pub async fn fetch_model(node: &Arc<Node>, id: &ModelId) -> Result<ModelManifest, PeerError> {
    if let Some(m) = node.store.manifest(id)? {
        return Ok(m);
    }
    let _flight = node
        .fetches
        .enter(id.0)
        .await
        .map_err(|e| PeerError::NoModel(e.to_string()))?;
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
    Err(PeerError::NoModel(format!(
        "unknown model {id}: not stored here, and no peer served it ({})",
        errors.join("; ")
    )))
}

/// One peer's copy of a model, checked and stored; why not, as text for the caller's report.
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
    let claimed = read_capped(
        get(format!("{endpoint}/v1/models/{id}?local=true")).await?,
        MAX_REPLY_BYTES,
    )
    .await?;
    let claimed: ModelManifest = serde_json::from_slice(&claimed).map_err(|e| e.to_string())?;
    let mut resp = get(format!("{endpoint}/v1/models/{id}/file")).await?;
    let cap = node.config.max_model_bytes.min(
        node.config
            .max_store_bytes
            .saturating_sub(node.store.used_bytes()),
    );
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(format!(
            "the model is larger than this node accepts ({cap} bytes)"
        ));
    }
    let mut blob = node.store.new_blob().map_err(|e| e.to_string())?;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if blob.len() + chunk.len() as u64 > cap {
            return Err(format!(
                "the model is larger than this node accepts ({cap} bytes)"
            ));
        }
        blob.write(&chunk).map_err(|e| e.to_string())?;
    }
    if blob.id() != *id {
        return Err(format!("peer sent bytes that do not hash to {id}"));
    }
    let node2 = node.clone();
    let id = *id;
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(blob.path()).map_err(|e| e.to_string())?;
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
