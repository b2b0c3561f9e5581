//! Tensor inference endpoints: `/v1/infer` (every mode), `/v1/execute` (a quorum executor's
//! share, asked by another node) and the stored receipts.

use crate::http::error::ApiError;
use crate::node::Node;
use crate::{inference, quorum};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use verity_core::wire::{DisputeBody, InferBody, InferQuery, InferResponse, ProofBundle};
use verity_core::{Hash, Mode, Receipt};

pub async fn infer(
    State(node): State<Arc<Node>>,
    Query(q): Query<InferQuery>,
    body: Result<Json<InferBody>, JsonRejection>,
) -> Result<Json<InferResponse>, ApiError> {
    let Json(body) = body?;
    let response = match body.signed.request.mode {
        Mode::Signed | Mode::Zk => inference::serve(&node, body, q.wait).await?,
        Mode::Quorum { .. } => quorum::serve(&node, body, q.wait).await?,
    };
    Ok(Json(response))
}

pub async fn execute_for_peer(
    State(node): State<Arc<Node>>,
    body: Result<Json<InferBody>, JsonRejection>,
) -> Result<Json<Receipt>, ApiError> {
    let Json(body) = body?;
    Ok(Json(quorum::execute_for_peer(&node, body).await?))
}

/// Files a quorum's disagreement as one of its eligible executors.
pub async fn file_dispute(
    State(node): State<Arc<Node>>,
    body: Result<Json<DisputeBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    quorum::file_dispute(&node, &body).await?;
    Ok(StatusCode::ACCEPTED)
}

/// A zk proof this node made, with the inputs it proves, by the hash its settlement records.
pub async fn get_proof(
    State(node): State<Arc<Node>>,
    Path(hash): Path<String>,
) -> Result<Json<ProofBundle>, ApiError> {
    let hash =
        Hash::from_hex(&hash).map_err(|e| ApiError::bad_request(format!("proof hash: {e}")))?;
    node.store
        .proof(&hash)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown proof {hash}")))
}

pub async fn get_receipt(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let id = Hash::from_hex(&id).map_err(|e| ApiError::bad_request(format!("receipt id: {e}")))?;
    node.store
        .receipt(&id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown receipt {id}")))
}
