//! Tensor inference as this node runs it: a client-signed request is run on the model's
//! engine and answered with a signed receipt. Signed and zk mode are served here from start to
//! settlement; quorum mode uses [`execute`] for this node's share of a quorum.
//! Every receipt the node signs, chat ones included, comes from [`issue_receipt`].

use crate::executor::{self, ExecError};
use crate::hub::{self, HubError};
use crate::metrics::InferLabels;
use crate::node::Node;
use crate::scheduler::JobError;
use crate::settle::{self, SettleError};
use crate::store::StoreError;
use crate::zk::{self, ProvingError};
use std::sync::Arc;
use verity_core::wire::{InferBody, InferResponse};
use verity_core::{
    InferenceRequest, Mode, ModelFormat, ModelId, ModelManifest, PublicKey, Receipt, ReceiptBody,
    SignedRequest, TensorMap,
};
use verity_ledger::Action;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("the request signature does not verify under its client key")]
    ClientSignature,
    #[error(
        "this node is on a network: send `escrow`, the client's signed OpenRequest (executors 0)"
    )]
    EscrowRequired,
    #[error("nonce {0} was already used by this client")]
    ReplayedNonce(u64),
    #[error("{0} is a language model: use POST /v1/chat/completions")]
    ChatModel(ModelId),
    #[error(
        "quorum mode needs a canonical int8 model (bit-identical on every node); {id} is \
         {format:?}"
    )]
    NotCanonical { id: ModelId, format: ModelFormat },
    #[error(transparent)]
    Model(#[from] HubError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Proving(#[from] ProvingError),
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn check_client_signature(signed: &SignedRequest) -> Result<(), InferError> {
    if signed.signature_is_valid() {
        Ok(())
    } else {
        Err(InferError::ClientSignature)
    }
}

/// Serves a signed- or zk-mode request: on a network the client's escrow is checked first and
/// settled with the receipt after; zk mode adds a proof of the run.
pub async fn serve(
    node: &Arc<Node>,
    body: InferBody,
    wait: bool,
) -> Result<InferResponse, InferError> {
    let InferBody { signed, escrow } = body;
    check_client_signature(&signed)?;
    let request = signed.request;
    // On a network every served inference is paid through the ledger.
    let escrow = match (&node.chain, escrow) {
        (None, _) => None,
        (Some(_), Some(escrow)) => {
            settle::check_escrow(node, &request, &escrow)?;
            Some(escrow)
        }
        (Some(_), None) => return Err(InferError::EscrowRequired),
    };
    let request_hash = request.hash();
    let manifest = hub::by_id(node, &request.model).await?;
    // Refuse unprovable models before running (and before the nonce is spent).
    let circuit = match request.mode {
        Mode::Zk => {
            let worker = node.clone();
            let manifest = manifest.clone();
            let circuit = node
                .scheduler
                .prove
                .run(move || zk::circuit(&worker.models, &manifest))
                .await??;
            Some((circuit, request.inputs.clone()))
        }
        _ => None,
    };
    // Payment before work: nothing runs until a finalized block has opened the escrow, and
    // nothing is paid for that could not run.
    if let Some(escrow) = &escrow {
        check_servable(node, &request, &manifest)?;
        settle::open(node, escrow).await?;
    }
    let receipt = execute(node, request, manifest).await?;
    // A proof is kept and served under its hash: a zk settlement records only the hash, and
    // the validators fetch the proof to judge it before the node is paid.
    let proof = match circuit {
        Some((circuit, inputs)) => {
            let (hash, bundle) = node
                .scheduler
                .prove
                .run(move || zk::prove(&circuit, inputs))
                .await??;
            node.store.put_proof(&hash, &bundle)?;
            Some((hash, bundle.proof))
        }
        None => None,
    };
    let proof_hash = proof.as_ref().map(|(hash, _)| *hash);
    let zk_proof = proof.map(|(_, proof)| proof);
    let settled_height = match escrow {
        Some(_) => {
            let close = Action::Settle {
                request: request_hash,
                receipts: vec![receipt.clone()],
                proof: proof_hash,
            };
            settle::settle(node, request_hash, close, wait).await?
        }
        None => None,
    };
    Ok(InferResponse {
        receipt_id: receipt.id(),
        receipt,
        settled_height,
        quorum: None,
        zk_proof,
    })
}

/// Runs a request on this node and commits its signed receipt. The (client, nonce) pair is
/// accepted once per node.
pub async fn execute(
    node: &Arc<Node>,
    req: InferenceRequest,
    manifest: ModelManifest,
) -> Result<Receipt, InferError> {
    check_servable(node, &req, &manifest)?;
    let worker = node.clone();
    node.scheduler
        .infer
        .run(move || run_and_sign(&worker, req, &manifest))
        .await?
}

/// What makes a request unservable by this node: a spent nonce, a language model, or a
/// non-canonical model in quorum mode. Checked before the client's escrow is opened (so
/// nobody pays for a request that cannot run) and again when it runs.
pub fn check_servable(
    node: &Node,
    req: &InferenceRequest,
    manifest: &ModelManifest,
) -> Result<(), InferError> {
    if node.store.nonce_used(&req.client, req.nonce)? {
        return Err(InferError::ReplayedNonce(req.nonce));
    }
    if manifest.format == ModelFormat::Gguf {
        return Err(InferError::ChatModel(manifest.id));
    }
    if matches!(req.mode, Mode::Quorum { .. }) && manifest.format != ModelFormat::VerityInt8 {
        return Err(InferError::NotCanonical {
            id: manifest.id,
            format: manifest.format,
        });
    }
    Ok(())
}

/// Blocking: runs the model, counts the outcome, and issues the receipt.
fn run_and_sign(
    node: &Node,
    req: InferenceRequest,
    manifest: &ModelManifest,
) -> Result<Receipt, InferError> {
    let outcome = executor::run(
        &node.models,
        manifest,
        &req.inputs,
        &node.config.cost_limits(),
    );
    let count = |engine: String, outcome: &str| {
        node.metrics
            .inferences
            .get_or_create(&InferLabels {
                engine,
                outcome: outcome.into(),
            })
            .inc();
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            count("none".into(), "error");
            return Err(e.into());
        }
    };
    node.metrics.inference_seconds.observe(outcome.seconds);
    count(outcome.engine.name.clone(), "ok");
    let mut outputs = outcome.outputs;
    if node.config.tamper_outputs {
        tamper(&mut outputs);
    }
    let body = ReceiptBody::new(
        req.hash(),
        req.model,
        &req.inputs,
        outputs,
        outcome.engine,
        outcome.trace_root,
        req.mode,
    );
    Ok(issue_receipt(node, body, Some((&req.client, req.nonce)))?)
}

/// Signs a receipt and stores it. A client-signed request spends its (client, nonce) in the
/// same transaction, so a replay racing this one stores nothing; chat receipts spend none (the
/// canonical request, not a client signature, identifies them).
pub fn issue_receipt(
    node: &Node,
    body: ReceiptBody,
    nonce: Option<(&PublicKey, u64)>,
) -> Result<Receipt, StoreError> {
    // Bound to this node's network, so it cannot be passed off on another.
    let chain_id = node.chain.as_ref().map(|c| c.validators.chain_id.clone());
    let receipt = ReceiptBody {
        chain_id: chain_id.unwrap_or_default(),
        ..body
    }
    .sign(&node.key);
    match nonce {
        Some((client, nonce)) => node.store.commit_receipt(&receipt, client, nonce)?,
        None => node.store.put_receipt(&receipt)?,
    }
    Ok(receipt)
}

/// A faulty node for tests of fault detection (`tamper_outputs` in the config): flips the
/// lowest bit of the first output element and signs the result as if it were honest.
fn tamper(outputs: &mut TensorMap) {
    if let Some(t) = outputs.values_mut().next() {
        let mut data = t.data().to_vec();
        if let Some(b) = data.first_mut() {
            *b ^= 1;
        }
        if let Ok(flipped) = verity_core::Tensor::from_bytes(t.dtype(), t.shape().to_vec(), data) {
            *t = flipped;
        }
    }
}
