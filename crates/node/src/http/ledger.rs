//! HTTP handlers for the ledger: submit transactions, read the finalized state, fetch a
//! settled receipt's inclusion proof.

use crate::chain::ProofError;
use crate::http::error::ApiError;
use crate::node::Node;
use crate::peers;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use verity_core::wire::{
    Account, DisputeInfo, LedgerStatus, ModelPrice, NameInfo, NodeInfo, RequestStatus, ShowQuery,
    Submitted,
};
use verity_core::{Hash, ModelId, PublicKey};
use verity_ledger::consensus::{Finalized, SubmitError};
use verity_ledger::proof::InclusionProof;
use verity_ledger::state::{Closed, Question};
use verity_ledger::Transaction;

pub async fn submit_tx(
    State(node): State<Arc<Node>>,
    body: Result<Json<Transaction>, JsonRejection>,
) -> Result<Json<Submitted>, ApiError> {
    let Json(tx) = body?;
    let id = tx.id();
    node.chain()?.submit(vec![tx]).await.map_err(|e| {
        let status = match e {
            SubmitError::Full | SubmitError::SenderFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::Duplicate | SubmitError::NonceTaken(_) => StatusCode::CONFLICT,
            SubmitError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SubmitError::Tx(verity_ledger::TxError::Signature) => StatusCode::UNAUTHORIZED,
            SubmitError::Tx(_) | SubmitError::UnknownSender => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, "rejected_transaction", e.to_string())
    })?;
    Ok(Json(Submitted { id }))
}

pub async fn status(State(node): State<Arc<Node>>) -> Result<Json<LedgerStatus>, ApiError> {
    let chain = node.chain()?;
    let status = chain.app.read(|s| LedgerStatus {
        chain_id: s.chain_id().to_string(),
        height: s.height(),
        last_block: s.last_digest(),
        state_root: s.committed_root(),
        validators: chain.validators.clone(),
        nodes: s
            .nodes()
            .map(|(k, n)| NodeInfo {
                key: *k,
                stake: n.stake,
                endpoint: n.endpoint.clone(),
                capabilities: n.capabilities.clone(),
            })
            .collect(),
    });
    node.metrics.finalized_height.set(status.height as i64);
    Ok(Json(status))
}

pub async fn account(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
) -> Result<Json<Account>, ApiError> {
    let key = PublicKey::from_hex(&key).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let chain = node.chain()?;
    let (balance, nonce) = chain.app.read(|s| (s.balance(&key), s.nonce(&key)));
    Ok(Json(Account {
        key,
        balance,
        nonce,
        next_nonce: chain.app.next_nonce(&key),
    }))
}

pub async fn request_status(
    State(node): State<Arc<Node>>,
    Path(hash): Path<String>,
) -> Result<Json<RequestStatus>, ApiError> {
    let hash = Hash::from_hex(&hash).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let status = node
        .chain()?
        .app
        .read(|s| match (s.escrow(&hash), s.closed(&hash)) {
            (_, Some(Closed::Settled { height })) => RequestStatus::Settled { height },
            (_, Some(Closed::Judged { height })) => RequestStatus::Judged { height },
            (_, Some(Closed::Refunded { height })) => RequestStatus::Refunded { height },
            (Some(_), None) if s.disputes().contains_key(&hash) => RequestStatus::Judging {
                verdicts: s.disputes()[&hash].verdicts.len(),
                needed: s.verdict_threshold(),
            },
            (Some(e), None) => RequestStatus::Open {
                amount: e.amount,
                eligible: e.eligible.clone(),
            },
            (None, None) => RequestStatus::Unknown,
        });
    Ok(Json(status))
}

pub async fn receipt_proof(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    let id = Hash::from_hex(&id).map_err(|e| ApiError::bad_request(format!("receipt id: {e}")))?;
    let chain = node.chain()?;
    match chain.inclusion_proof(&id).await {
        Ok(proof) => Ok(Json(proof)),
        Err(e @ ProofError::NotSettled(_)) => Err(ApiError::not_found(e.to_string())),
        // A validator that caught up by backfill has the block but not every block's
        // certificate. A proof verifies on its own, so take one from a peer and check it.
        Err(e @ ProofError::Unavailable(_)) if q.local => Err(ApiError::internal(e.to_string())),
        Err(e @ ProofError::Unavailable(_)) => peers::fetch_proof(&node, &id)
            .await
            .map(Json)
            .ok_or_else(|| ApiError::internal(format!("{e}, and no peer served the proof"))),
    }
}

pub async fn price(
    State(node): State<Arc<Node>>,
    Path(model): Path<String>,
) -> Result<Json<ModelPrice>, ApiError> {
    let model: ModelId = model
        .parse()
        .map_err(|e| ApiError::bad_request(format!("model id: {e}")))?;
    node.chain()?
        .app
        .read(|s| {
            s.model(&model).map(|m| ModelPrice {
                model,
                name: m.name.clone(),
                version: m.version.clone(),
                publisher: m.publisher,
                price: m.price,
            })
        })
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("model {model} is not registered on the ledger"))
        })
}

pub async fn name(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<NameInfo>, ApiError> {
    let info = node.chain()?.app.read(|s| {
        let owner = s.name_owner(&name)?;
        let models = s
            .models()
            .filter(|m| m.name == name)
            .map(|m| ModelPrice {
                model: m.model,
                name: m.name.clone(),
                version: m.version.clone(),
                publisher: m.publisher,
                price: m.price,
            })
            .collect();
        Some(NameInfo {
            name: name.clone(),
            owner,
            models,
        })
    });
    info.map(Json).ok_or_else(|| {
        ApiError::not_found(format!("the name `{name}` is not claimed on the ledger"))
    })
}

pub async fn block(
    State(node): State<Arc<Node>>,
    Path(height): Path<u64>,
) -> Result<Json<Finalized>, ApiError> {
    node.chain()?
        .app
        .finalized_at(height)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no finalized block at height {height}")))
}

/// Open disputes first, then decided ones, oldest first.
pub async fn disputes(State(node): State<Arc<Node>>) -> Result<Json<Vec<DisputeInfo>>, ApiError> {
    let signed = |receipts: &[verity_core::Receipt]| -> Vec<(PublicKey, Hash)> {
        receipts.iter().map(|r| (r.node, r.output_hash)).collect()
    };
    let kind = |q: &Question| match q {
        Question::Quorum { .. } => "quorum".to_string(),
        Question::Proof { .. } => "proof".to_string(),
    };
    Ok(Json(node.chain()?.app.read(|s| {
        let open = s.disputes().iter().map(|(request, d)| DisputeInfo {
            request: *request,
            kind: kind(&d.question),
            signed: signed(&d.receipts),
            verdicts: d.verdicts.iter().map(|(k, v)| (*k, *v)).collect(),
            decided_at: None,
            verdict: None,
            slashed: vec![],
        });
        let decided = s.judgements().iter().map(|j| DisputeInfo {
            request: j.request,
            kind: kind(&j.question),
            signed: signed(&j.receipts),
            verdicts: vec![],
            decided_at: Some(j.height),
            verdict: j.verdict,
            slashed: j.slashed.clone(),
        });
        open.chain(decided).collect()
    })))
}
