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
            tried.retain(|r, _| s.disputes().contains_key(r));
            s.disputes()
                .iter()
                .filter(|(r, d)| {
                    !d.verdicts.contains_key(&me) && tried.get(*r).is_none_or(|at| now >= *at)
                })
                .filter_map(|(r, d)| Some((*r, s.escrow(r)?.model, d.clone())))
                .collect()
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use verity_core::{EngineId, Mode, NodeKey, ReceiptBody, TensorMap};

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// A validator's check of a zk settlement, attacked: only the settled proof, for the
    /// receipt's inputs and outputs, earns the receipt's output hash; every other bundle an
    /// executor could serve earns the zero hash (and the executor's slash).
    #[test]
    fn a_zk_verdict_holds_only_for_the_settled_proof_of_the_receipt() {
        let calibration =
            verity_engine::Calibration::from_json(&fixture("digits_calib_mlp.json")).unwrap();
        let model = verity_engine::quantize_onnx(&fixture("digits_mlp.onnx"), &calibration)
            .unwrap()
            .encode();
        let zk = verity_zk::ZkModel::setup(&model).unwrap();
        let inputs: TensorMap = serde_json::from_slice(&fixture("digit_input_mlp.json")).unwrap();
        let (outputs, _, proof) = zk.prove(&inputs).unwrap();
        let engine = EngineId {
            name: "verity-int8".into(),
            version: "test".into(),
        };
        let id = ModelId::of_bytes(&model);
        let receipt = |outputs: TensorMap| {
            let body = ReceiptBody::new(
                Hash::default(),
                id,
                &inputs,
                outputs,
                engine.clone(),
                None,
                Mode::Zk,
            );
            body.sign(&NodeKey::from_seed([4; 32]))
        };
        let honest = receipt(outputs.clone());
        let hash = ProofBundle::hash_of(&proof);
        let b64 = |p: &[u8]| base64::engine::general_purpose::STANDARD.encode(p);
        let bundle = ProofBundle {
            inputs: inputs.clone(),
            proof: b64(&proof),
        };
        assert_eq!(
            proof_verdict(&zk, hash, &bundle, &honest),
            honest.output_hash
        );

        let zero = Hash::default();
        // Another hash than the settled one.
        assert_eq!(
            proof_verdict(&zk, Hash::of("x", b"other"), &bundle, &honest),
            zero
        );
        // A flipped byte (and the settlement naming the flipped proof's own hash).
        let mut flipped = proof.clone();
        flipped[proof.len() / 2] ^= 1;
        let tampered = ProofBundle {
            proof: b64(&flipped),
            ..bundle.clone()
        };
        assert_eq!(
            proof_verdict(&zk, ProofBundle::hash_of(&flipped), &tampered, &honest),
            zero
        );
        // Not base64.
        let garbage = ProofBundle {
            proof: "!!".into(),
            ..bundle.clone()
        };
        assert_eq!(proof_verdict(&zk, hash, &garbage, &honest), zero);
        // Other inputs than the receipt's.
        let mut other: TensorMap = inputs.clone();
        if let Some(t) = other.values_mut().next() {
            let mut v = t.to_f32().unwrap();
            v[0] += 1.0;
            *t = verity_core::Tensor::from_f32(t.shape().to_vec(), &v).unwrap();
        }
        let moved = ProofBundle {
            inputs: other,
            ..bundle.clone()
        };
        assert_eq!(proof_verdict(&zk, hash, &moved, &honest), zero);
        // A receipt claiming other outputs than the proof proves.
        let mut lie = outputs;
        if let Some(t) = lie.values_mut().next() {
            let mut v = t.to_f32().unwrap();
            v[0] += 1.0;
            *t = verity_core::Tensor::from_f32(t.shape().to_vec(), &v).unwrap();
        }
        assert_eq!(proof_verdict(&zk, hash, &bundle, &receipt(lie)), zero);
    }
}
