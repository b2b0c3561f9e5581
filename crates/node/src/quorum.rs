//! Quorum mode, as the entry node runs it: the ledger ranks the executors for the request
//! hash; the first k eligible nodes that answer each run the canonical engine and sign; equal
//! outputs are settled on the ledger together with the client's escrow, unequal ones are
//! recorded as a disagreement (and the client gets an error, never the output).

use crate::api::{execute, model_for};
use crate::error::ApiError;
use crate::Node;
use axum::http::StatusCode;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use verity_core::wire::{InferResponse, QuorumResult};
use verity_core::{
    verify_receipt, Expectations, InferenceRequest, Mode, PublicKey, Receipt, SignedRequest,
};
use verity_ledger::state::Closed;
use verity_ledger::{Action, Transaction};

/// How long `wait` waits for the settlement to be finalized.
const FINALITY_WAIT: Duration = Duration::from_secs(30);

/// Checks the client's escrow for `req`, and refuses early what the ledger would refuse, so no
/// node works for nothing.
pub(crate) fn check_escrow(
    node: &Node,
    req: &InferenceRequest,
    escrow: &Transaction,
) -> Result<(), ApiError> {
    let chain = node.chain()?;
    let request = req.hash();
    let k = req.mode.executors();
    // Signed and zk mode name the node the client asked (this one); quorum mode names none.
    let named = match req.mode {
        Mode::Signed | Mode::Zk => Some(node.key.public()),
        Mode::Quorum { .. } => None,
    };
    let opens_this = matches!(
        &escrow.action,
        Action::OpenRequest { request: r, model, executors, node: n }
            if *r == request && *model == req.model && *executors == k && *n == named
    );
    if !opens_this || escrow.sender != req.client || escrow.nonce != 0 {
        let node_field = named.map(|n| format!(", node: {n}")).unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "escrow must be the client's OpenRequest {{request: {request}, model: {}, executors: {k}{node_field}}} with nonce 0",
            req.model
        )));
    }
    if !escrow.signature_is_valid(&chain.validators.chain_id) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the escrow transaction's signature does not verify",
        ));
    }
    let balance = chain.app.spendable(&req.client);
    let (price, known, nodes) = chain.app.read(|s| {
        (
            s.model(&req.model).map(|m| m.price),
            s.escrow(&request).is_some() || s.closed(&request).is_some(),
            s.rank_executors(&request).len(),
        )
    });
    if known {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "request_exists",
            format!("request {request} was already escrowed"),
        ));
    }
    let price = price.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model_not_registered",
            format!(
                "model {} has no price on the ledger (RegisterModel)",
                req.model
            ),
        )
    })?;
    let fee = price.saturating_mul(k.max(1) as u64);
    if balance < fee {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_funds",
            format!(
                "the request costs {fee}; the client can spend {balance} (finalized balance minus its waiting transactions)"
            ),
        ));
    }
    if nodes < k as usize {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quorum_too_large",
            format!("quorum of {k} asked, {nodes} nodes with the quorum capability"),
        ));
    }
    Ok(())
}

/// Gossips the client's escrow together with the transaction that closes it (in one batch,
/// so every validator sees them in order); with `wait`, returns the settling block's height.
pub(crate) async fn settle(
    node: &Node,
    escrow: Transaction,
    close: Action,
    wait: bool,
) -> Result<Option<u64>, ApiError> {
    let chain = node.chain()?;
    let request = match &escrow.action {
        Action::OpenRequest { request, .. } => *request,
        _ => return Err(ApiError::bad_request("escrow is not an OpenRequest")),
    };
    let close = Transaction::new(&node.key, &chain.validators.chain_id, 0, close);
    chain.submit(vec![escrow, close]).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_busy",
            e.to_string(),
        )
    })?;
    Ok(if wait {
        wait_settled(node, &request).await
    } else {
        None
    })
}

pub async fn serve(
    node: &Arc<Node>,
    signed: SignedRequest,
    escrow: Transaction,
    wait: bool,
) -> Result<InferResponse, ApiError> {
    let req = &signed.request;
    let Mode::Quorum { k } = req.mode else {
        return Err(ApiError::bad_request("not a quorum request"));
    };
    check_escrow(node, req, &escrow)?;
    let request = req.hash();
    let eligible = node
        .chain()?
        .app
        .read(|s| s.eligible_executors(&request, k));
    let receipts = collect(node, &signed, &escrow, &eligible, k as usize).await?;
    let agreed = receipts
        .iter()
        .all(|r| r.output_hash == receipts[0].output_hash);
    let action = if agreed {
        Action::Settle {
            request,
            receipts: receipts.clone(),
        }
    } else {
        Action::Disagree {
            request,
            receipts: receipts.clone(),
        }
    };
    let settled_height = settle(node, escrow, action, wait && agreed).await?;
    node.metrics.quorum(agreed);
    if !agreed {
        let outputs: Vec<String> = receipts
            .iter()
            .map(|r| format!("{} -> {}", r.node, r.output_hash))
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "quorum_disagreement",
            format!(
                "executors disagree ({}); the signed receipts are recorded on the ledger as a disagreement and the escrow is refunded",
                outputs.join(", ")
            ),
        ));
    }
    Ok(InferResponse {
        receipt_id: receipts[0].id(),
        receipt: receipts[0].clone(),
        settled_height,
        quorum: Some(QuorumResult { request, receipts }),
        zk_proof: None,
    })
}

/// Asks eligible nodes, best-ranked first, until `k` valid receipts are in; a node that fails
/// or answers with an invalid receipt is replaced by the next spare.
async fn collect(
    node: &Arc<Node>,
    signed: &SignedRequest,
    escrow: &Transaction,
    eligible: &[PublicKey],
    k: usize,
) -> Result<Vec<Receipt>, ApiError> {
    let mut candidates = eligible.iter().copied();
    let mut running = FuturesUnordered::new();
    let ask = |executor: PublicKey| {
        let node = node.clone();
        let signed = signed.clone();
        let escrow = escrow.clone();
        async move {
            let result = ask_one(&node, &signed, &escrow, executor).await;
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
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "quorum_unavailable",
            format!(
                "{} of {k} executors answered; failures: {}",
                receipts.len(),
                failures.join("; ")
            ),
        ));
    }
    // Ranked order, so every entry node builds the same settlement for the same answers.
    receipts.sort_by_key(|r| eligible.iter().position(|e| *e == r.node));
    Ok(receipts)
}

/// One executor's receipt, checked: signed by that node, for this request, inputs and mode.
async fn ask_one(
    node: &Arc<Node>,
    signed: &SignedRequest,
    escrow: &Transaction,
    executor: PublicKey,
) -> Result<Receipt, String> {
    let receipt = if executor == node.key.public() {
        let manifest = model_for(node, &signed.request.model)
            .await
            .map_err(|e| e.message)?;
        execute(node, signed.request.clone(), manifest)
            .await
            .map_err(|e| e.message)?
    } else {
        crate::peers::execute(node, &executor, signed, escrow).await?
    };
    verify_receipt(
        &receipt,
        &Expectations {
            node: Some(executor),
            ..Expectations::answering(&signed.request)
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(receipt)
}

/// The height of the block that settled `request`, once finalized (None on timeout).
async fn wait_settled(node: &Node, request: &verity_core::Hash) -> Option<u64> {
    let chain = node.chain().ok()?;
    let deadline = tokio::time::Instant::now() + FINALITY_WAIT;
    while tokio::time::Instant::now() < deadline {
        match chain.app.read(|s| s.closed(request)) {
            Some(Closed::Settled { height }) => return Some(height),
            Some(_) => return None,
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}
