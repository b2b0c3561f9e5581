//! Validators judge disputes beside the state machine (DESIGN.md §8): the ledger never runs a
//! model or a verifier. For each request it puts before them, a validator re-executes the
//! quorum's canonical model on the filed inputs, or fetches the zk proof from its executor and
//! verifies it, then submits its verdict as a transaction; the ledger decides once 2f+1
//! verdicts agree and slashes the side they contradict (docs/economics.md).

use crate::executor::{self, ExecError};
use crate::hub::{self, HubError};
use crate::node::Node;
use crate::peers::{self, PeerError, ServedProof};
use crate::scheduler::JobError;
use crate::zk::{self, ProvingError};
use base64::Engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use verity_core::tensor::hash_map;
use verity_core::wire::ProofBundle;
use verity_core::{Hash, ModelFormat, ModelId, Receipt};
use verity_ledger::state::{Dispute, Question};
use verity_ledger::{Action, Transaction};

/// How often the finalized ledger is checked for new disputes.
const POLL: Duration = Duration::from_millis(50);
/// When a dispute this validator could not judge (a peer unreachable, the ledger busy) or
/// whose verdict has not landed is tried again.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum JudgeError {
    #[error(transparent)]
    Model(#[from] HubError),
    #[error("model {0} is not canonical int8: a quorum over it cannot be re-executed")]
    NotCanonical(ModelId),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Circuit(#[from] ProvingError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("the dispute has no receipt")]
    NoReceipt,
}

/// Runs for as long as the node does, if it is a validator: judges every open dispute it has
/// not given a verdict on.
pub async fn run(node: Arc<Node>) {
    let Ok(chain) = node.chain() else { return };
    let me = node.key.public();
    if !chain.app.read(|s| s.validators().contains(&me)) {
        return;
    }
    // Disputes being judged or judged already, with when to try again.
    let mut tried: HashMap<Hash, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        let now = Instant::now();
        let due: Vec<(Hash, ModelId, Dispute)> = chain.app.read(|s| {
            s.disputes()
                .iter()
                .filter(|(r, d)| {
                    !d.verdicts.contains_key(&me) && tried.get(*r).is_none_or(|at| now >= *at)
                })
                .filter_map(|(r, d)| Some((*r, s.escrow(r)?.model, d.clone())))
                .collect()
        });
        let open: Vec<Hash> = chain.app.read(|s| s.disputes().keys().copied().collect());
        tried.retain(|r, _| open.contains(r));
        for (request, model, dispute) in due {
            tried.insert(request, now + RETRY);
            let node = node.clone();
            tokio::spawn(async move {
                match verdict(&node, &model, &dispute).await {
                    Ok(output) => submit(&node, request, output).await,
                    Err(e) => tracing::warn!(%request, "cannot judge the dispute yet: {e}"),
                }
            });
        }
    }
}

async fn submit(node: &Node, request: Hash, output: Hash) {
    let Ok(chain) = node.chain() else { return };
    let tx = Transaction::new(
        &node.key,
        &chain.validators.chain_id,
        0,
        Action::Verdict { request, output },
    );
    match chain.submit(vec![tx]).await {
        Ok(()) => tracing::info!(%request, %output, "verdict submitted"),
        Err(e) => tracing::warn!(%request, "verdict not submitted: {e}"),
    }
}

/// This validator's verdict: the output hash the model gives on the filed inputs (a quorum),
/// or the receipt's output hash if its zk proof verifies and the zero hash if it does not.
async fn verdict(node: &Arc<Node>, model: &ModelId, dispute: &Dispute) -> Result<Hash, JudgeError> {
    let manifest = hub::by_id(node, model).await?;
    if manifest.format != ModelFormat::VerityInt8 {
        return Err(JudgeError::NotCanonical(*model));
    }
    match &dispute.question {
        Question::Quorum { inputs } => {
            let worker = node.clone();
            let inputs = inputs.clone();
            let outcome = node
                .scheduler
                .infer
                .run(move || {
                    let limits = worker.config.cost_limits();
                    executor::run(&worker.models, &manifest, &inputs, &limits)
                })
                .await??;
            Ok(hash_map(&outcome.outputs))
        }
        Question::Proof { proof } => {
            let receipt = dispute.receipts.first().ok_or(JudgeError::NoReceipt)?;
            let bundle = match peers::zk_proof(node, &receipt.node, proof).await? {
                ServedProof::Served(bundle) => bundle,
                ServedProof::Missing => return Ok(Hash::default()),
            };
            let worker = node.clone();
            let circuit = node
                .scheduler
                .prove
                .run(move || zk::circuit(&worker.models, &manifest))
                .await??;
            Ok(proof_verdict(&circuit, *proof, &bundle, receipt))
        }
    }
}

/// The receipt's output hash if `bundle` is the proof settled under `hash`, for the receipt's
/// inputs, and verifies; the zero hash otherwise.
fn proof_verdict(
    circuit: &verity_zk::ZkModel,
    hash: Hash,
    bundle: &ProofBundle,
    receipt: &Receipt,
) -> Hash {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(bundle.proof.trim()) else {
        return Hash::default();
    };
    let holds = ProofBundle::hash_of(&bytes) == hash
        && hash_map(&bundle.inputs) == receipt.input_hash
        && verity_verify::zk::check_compiled(circuit, &bundle.inputs, &receipt.outputs, &bytes)
            .is_ok();
    if holds {
        receipt.output_hash
    } else {
        Hash::default()
    }
}
