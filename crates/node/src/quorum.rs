//! Quorum mode, as the entry node runs it: the client's escrow is opened on the ledger first
//! (payment before work); the block after it draws the executors from the opening block's
//! digest; the first k drawn nodes that answer each run the canonical engine and sign; equal
//! outputs are settled on the ledger, unequal ones are recorded as a disagreement (and the
//! client gets an error, never the output). An executor asked by another node runs its share
//! through [`execute_for_peer`], only for a paid request that drew it.

use crate::hub::{self, HubError};
use crate::inference::{self, check_client_signature, InferError};
use crate::node::{NoLedger, Node};
use crate::peers::{self, PeerError};
use crate::settle::{self, SettleError};
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use verity_core::wire::{DisputeBody, InferBody, InferResponse, QuorumResult};
use verity_core::{
    verify_receipt, Expectations, Hash, Mode, PublicKey, Receipt, SignedRequest, VerifyError,
};
use verity_ledger::Action;

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("quorum mode needs `escrow`: the client's signed OpenRequest transaction")]
    EscrowRequired,
    #[error("not a quorum request")]
    NotQuorum,
    #[error("only quorum requests are executed for peers")]
    PeerNotQuorum,
    #[error("this node is not an eligible executor for request {0}")]
    NotEligible(Hash),
    #[error("{answered} of {k} executors answered; failures: {failures}")]
    Unavailable {
        answered: usize,
        k: usize,
        failures: String,
    },
    #[error(
        "executors disagree ({0}); the validators re-execute the request, slash the executors \
         they contradict and refund the escrow (GET /v1/requests/<hash>)"
    )]
    Disagreement(String),
    #[error("executors disagree ({outputs}), and no eligible executor filed the dispute: {why}")]
    DisputeNotFiled { outputs: String, why: String },
    #[error("the receipts agree: there is nothing to dispute")]
    NoDisagreement,
    #[error(transparent)]
    Receipt(#[from] VerifyError),
    #[error(transparent)]
    NoLedger(#[from] NoLedger),
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error(transparent)]
    Infer(#[from] InferError),
}

/// Why one executor's receipt was not counted.
#[derive(Debug, thiserror::Error)]
enum ExecutorFailure {
    #[error(transparent)]
    Model(#[from] HubError),
    #[error(transparent)]
    Local(#[from] InferError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    InvalidReceipt(#[from] VerifyError),
}

/// Serves a quorum request as the entry node: asks the ranked executors, then settles equal
/// receipts or records the disagreement.
pub async fn serve(
    node: &Arc<Node>,
    body: InferBody,
    wait: bool,
) -> Result<InferResponse, QuorumError> {
    let InferBody { signed, escrow } = body;
    check_client_signature(&signed)?;
    let escrow = escrow.ok_or(QuorumError::EscrowRequired)?;
    let req = &signed.request;
    let Mode::Quorum { k } = req.mode else {
        return Err(QuorumError::NotQuorum);
    };
    settle::check_escrow(node, req, &escrow)?;
    let request = req.hash();
    // Nothing is paid for that could not run (a model that is not canonical), then payment
    // before work, and executors drawn from the block that opened the escrow.
    let manifest = hub::by_id(node, &req.model)
        .await
        .map_err(InferError::from)?;
    if manifest.format != verity_core::ModelFormat::VerityInt8 {
        return Err(InferError::NotCanonical {
            id: manifest.id,
            format: manifest.format,
        }
        .into());
    }
    settle::open(node, &escrow).await?;
    let eligible = node
        .chain()?
        .app
        .read(|s| s.executors_of(&request))
        .ok_or(SettleError::NotOpen(request))?;
    let receipts = collect(node, &signed, &eligible, k as usize).await?;
    let agreed = receipts
        .iter()
        .all(|r| r.output_hash == receipts[0].output_hash);
    node.metrics.quorum(agreed);
    if !agreed {
        let outputs: Vec<String> = receipts
            .iter()
            .map(|r| format!("{} -> {}", r.node, r.output_hash))
            .collect();
        let body = DisputeBody { signed, receipts };
        return Err(match dispute(node, &eligible, &body).await {
            Ok(()) => QuorumError::Disagreement(outputs.join(", ")),
            Err(why) => QuorumError::DisputeNotFiled {
                outputs: outputs.join(", "),
                why,
            },
        });
    }
    let action = Action::Settle {
        request,
        receipts: receipts.clone(),
        proof: None,
    };
    let settled_height = settle::settle(node, request, action, wait).await?;
    Ok(InferResponse {
        receipt_id: receipts[0].id(),
        receipt: receipts[0].clone(),
        settled_height,
        quorum: Some(QuorumResult { request, receipts }),
        zk_proof: None,
    })
}

/// Puts disagreeing receipts before the validators. The ledger takes a disagreement only from
/// an eligible executor: this node files it if it is one, else it asks the executors that
/// signed, in turn, until one accepts.
async fn dispute(
    node: &Arc<Node>,
    eligible: &[PublicKey],
    body: &DisputeBody,
) -> Result<(), String> {
    let me = node.key.public();
    if eligible.contains(&me) {
        return file_dispute(node, body).await.map_err(|e| e.to_string());
    }
    let mut failures = Vec::new();
    for executor in body.receipts.iter().map(|r| r.node) {
        match peers::file_dispute(node, &executor, body).await {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(failures.join("; "))
}

/// Files a disagreement as one of the request's eligible executors (`POST /v1/disputes`):
/// the receipts must disagree and be signed by the request's executors; the ledger checks it
/// all again.
pub async fn file_dispute(node: &Arc<Node>, body: &DisputeBody) -> Result<(), QuorumError> {
    check_client_signature(&body.signed)?;
    let req = &body.signed.request;
    if !matches!(req.mode, Mode::Quorum { .. }) {
        return Err(QuorumError::NotQuorum);
    }
    settle::require_open(node, req).await?;
    let request = req.hash();
    let me = node.key.public();
    let drawn = node.chain()?.app.read(|s| s.executors_of(&request));
    if !drawn.is_some_and(|e| e.contains(&me)) {
        return Err(QuorumError::NotEligible(request));
    }
    let first = body.receipts.first().map(|r| r.output_hash);
    if body.receipts.iter().all(|r| Some(r.output_hash) == first) {
        return Err(QuorumError::NoDisagreement);
    }
    for r in &body.receipts {
        verify_receipt(r, &Expectations::answering(req))?;
    }
    let action = Action::Disagree {
        request,
        inputs: req.inputs.clone(),
        receipts: body.receipts.clone(),
    };
    settle::settle(node, request, action, false).await?;
    Ok(())
}

/// Asks eligible nodes, best-ranked first, until `k` valid receipts are in; a node that fails
/// or answers with an invalid receipt is replaced by the next spare.
async fn collect(
    node: &Arc<Node>,
    signed: &SignedRequest,
    eligible: &[PublicKey],
    k: usize,
) -> Result<Vec<Receipt>, QuorumError> {
    let mut candidates = eligible.iter().copied();
    let mut running = FuturesUnordered::new();
    let ask = |executor: PublicKey| {
        let node = node.clone();
        let signed = signed.clone();
        async move {
            let result = ask_one(&node, &signed, executor).await;
            (executor, result)
        }
    };
    for executor in candidates.by_ref().take(k) {
        running.push(ask(executor));
    }
    let mut receipts = Vec::with_capacity(k);
    let mut failures = Vec::new();
    while let Some((executor, result)) = running.next().await {
        match result {
            Ok(r) => receipts.push(r),
            Err(e) => {
                tracing::warn!(%executor, "quorum executor failed: {e}");
                failures.push(format!("{executor}: {e}"));
                if let Some(next) = candidates.next() {
                    running.push(ask(next));
                }
            }
        }
    }
    if receipts.len() < k {
        return Err(QuorumError::Unavailable {
            answered: receipts.len(),
            k,
            failures: failures.join("; "),
        });
    }
    // Ranked order, so every entry node builds the same settlement for the same answers.
    receipts.sort_by_key(|r| eligible.iter().position(|e| *e == r.node));
    Ok(receipts)
}

/// One executor's receipt, checked: signed by that node, for this request, inputs and mode.
async fn ask_one(
    node: &Arc<Node>,
    signed: &SignedRequest,
    executor: PublicKey,
) -> Result<Receipt, ExecutorFailure> {
    let receipt = if executor == node.key.public() {
        let manifest = hub::by_id(node, &signed.request.model).await?;
        inference::execute(node, signed.request.clone(), manifest).await?
    } else {
        peers::execute(node, &executor, signed).await?
    };
    verify_receipt(
        &receipt,
        &Expectations {
            node: Some(executor),
            ..Expectations::answering(&signed.request)
        },
    )?;
    Ok(receipt)
}

/// Runs a request for another node that chose this one as a quorum executor. The executor
/// works only for a request whose escrow is open on its own finalized ledger (the client has
/// paid) and that drew it as an executor, so nobody gets work done by calling executors
/// directly without paying.
pub async fn execute_for_peer(node: &Arc<Node>, body: InferBody) -> Result<Receipt, QuorumError> {
    let InferBody { signed, .. } = body;
    check_client_signature(&signed)?;
    if !matches!(signed.request.mode, Mode::Quorum { .. }) {
        return Err(QuorumError::PeerNotQuorum);
    }
    settle::require_open(node, &signed.request).await?;
    let hash = signed.request.hash();
    let me = node.key.public();
    let drawn = node.chain()?.app.read(|s| s.executors_of(&hash));
    if !drawn.is_some_and(|e| e.contains(&me)) {
        return Err(QuorumError::NotEligible(hash));
    }
    let manifest = hub::by_id(node, &signed.request.model)
        .await
        .map_err(InferError::from)?;
    Ok(inference::execute(node, signed.request, manifest).await?)
}
