//! The basic receipt check: version, hashes, signer, signature, and whether the receipt
//! answers a given request. Everything that decides a receipt of any mode (quorums, inclusion,
//! zk proofs, chat, re-execution) builds on this in the `verity-verify` crate; the ledger
//! and the node call this directly when they accept receipts.

use crate::hash::{Hash, ModelId};
use crate::keys::PublicKey;
use crate::receipt::{Receipt, RECEIPT_VERSION};
use crate::request::{InferenceRequest, Mode};
use crate::tensor::{hash_map, TensorMap};
use std::collections::BTreeSet;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u32),
    #[error("output hash mismatch: receipt says {claimed}, outputs hash to {actual}")]
    OutputHash { claimed: Hash, actual: Hash },
    #[error("input hash mismatch: receipt says {claimed}, the given input hashes to {actual}")]
    InputHash { claimed: Hash, actual: Hash },
    #[error("signature check failed: the signature is not by node {0} over this receipt")]
    Signature(PublicKey),
    #[error("node key mismatch: receipt is signed by {actual}, expected {expected}")]
    NodeKey {
        expected: PublicKey,
        actual: PublicKey,
    },
    #[error("request mismatch: the receipt answers request {claimed}, not {expected}")]
    Request { expected: Hash, claimed: Hash },
    #[error("mode mismatch: the receipt is in {claimed} mode, not {expected}")]
    Mode { expected: Mode, claimed: Mode },
    #[error("network mismatch: the receipt was signed for chain {claimed:?}, not {expected:?}")]
    Chain { expected: String, claimed: String },
    #[error("model mismatch: the receipt names model {claimed}, not {expected}")]
    Model { expected: ModelId, claimed: ModelId },
    #[error("re-execution mismatch: {0}")]
    Reexecution(String),
    #[error("quorum: {0}")]
    Quorum(String),
}

/// What the verifier knows besides the receipt.
#[derive(Clone, Copy, Default)]
pub struct Expectations<'a> {
    /// The inputs the verifier believes were used.
    pub inputs: Option<&'a TensorMap>,
    /// The node the verifier trusts to have signed.
    pub node: Option<PublicKey>,
    /// The request (its hash) the receipt must answer.
    pub request: Option<Hash>,
    /// The mode the request asked for.
    pub mode: Option<Mode>,
    /// The model the request named.
    pub model: Option<ModelId>,
    /// The network (chain id) the receipt must be signed for; "" for a standalone node.
    pub chain: Option<&'a str>,
}

impl<'a> Expectations<'a> {
    /// A receipt must answer exactly this request: its hash, mode, model and inputs.
    pub fn answering(request: &'a InferenceRequest) -> Expectations<'a> {
        Expectations {
            inputs: Some(&request.inputs),
            node: None,
            request: Some(request.hash()),
            mode: Some(request.mode),
            model: Some(request.model),
            chain: None,
        }
    }
}

/// Checks version, output hash, input hash (when inputs are given), the signature over
/// everything, then node key, request, mode and model (each when expected).
pub fn verify_receipt(receipt: &Receipt, expect: &Expectations<'_>) -> Result<(), VerifyError> {
    if receipt.version != RECEIPT_VERSION {
        return Err(VerifyError::UnsupportedVersion(receipt.version));
    }
    let actual = hash_map(&receipt.outputs);
    if actual != receipt.output_hash {
        return Err(VerifyError::OutputHash {
            claimed: receipt.output_hash,
            actual,
        });
    }
    if let Some(inputs) = expect.inputs {
        let actual = hash_map(inputs);
        if actual != receipt.input_hash {
            return Err(VerifyError::InputHash {
                claimed: receipt.input_hash,
                actual,
            });
        }
    }
    if !receipt
        .node
        .verify(&receipt.signing_hash().0, &receipt.signature)
    {
        return Err(VerifyError::Signature(receipt.node));
    }
    if let Some(expected) = expect.node {
        if expected != receipt.node {
            return Err(VerifyError::NodeKey {
                expected,
                actual: receipt.node,
            });
        }
    }
    if let Some(expected) = expect.request {
        if expected != receipt.request_hash {
            return Err(VerifyError::Request {
                expected,
                claimed: receipt.request_hash,
            });
        }
    }
    if let Some(expected) = expect.mode {
        if expected != receipt.mode {
            return Err(VerifyError::Mode {
                expected,
                claimed: receipt.mode,
            });
        }
    }
    if let Some(expected) = expect.chain {
        if expected != receipt.chain_id {
            return Err(VerifyError::Chain {
                expected: expected.to_string(),
                claimed: receipt.chain_id.clone(),
            });
        }
    }
    if let Some(expected) = expect.model {
        if expected != receipt.model {
            return Err(VerifyError::Model {
                expected,
                claimed: receipt.model,
            });
        }
    }
    Ok(())
}

/// Checks a quorum result: every receipt holds on its own (as [`verify_receipt`], with the
/// given inputs), all are `quorum:k` receipts for the same request, model, inputs, engine and
/// output hash, at least k of them, signed by k distinct nodes. When `nodes` is given (the
/// registered executors, e.g. from a validator set file), every signer must be one of them.
pub fn verify_quorum(
    receipts: &[Receipt],
    inputs: Option<&TensorMap>,
    nodes: Option<&[PublicKey]>,
) -> Result<(), VerifyError> {
    let bad = |m: String| Err(VerifyError::Quorum(m));
    let Some(first) = receipts.first() else {
        return bad("no receipts".into());
    };
    let Mode::Quorum { k } = first.mode else {
        return bad(format!("mode is {}, not quorum", first.mode));
    };
    if receipts.len() < k as usize {
        return bad(format!("{} receipts, the quorum needs {k}", receipts.len()));
    }
    let mut signers = BTreeSet::new();
    for r in receipts {
        verify_receipt(
            r,
            &Expectations {
                inputs,
                ..Default::default()
            },
        )?;
        if (
            r.request_hash,
            r.model,
            r.input_hash,
            &r.engine,
            r.mode,
            &r.chain_id,
        ) != (
            first.request_hash,
            first.model,
            first.input_hash,
            &first.engine,
            first.mode,
            &first.chain_id,
        ) {
            return bad(format!(
                "receipt by {} is for another request, model, input, engine, mode or chain",
                r.node
            ));
        }
        if r.output_hash != first.output_hash {
            return bad(format!(
                "node {} signed output {}, node {} signed {}",
                first.node, first.output_hash, r.node, r.output_hash
            ));
        }
        if let Some(allowed) = nodes {
            if !allowed.contains(&r.node) {
                return bad(format!("signer {} is not a known node", r.node));
            }
        }
        if !signers.insert(r.node) {
            return bad(format!("node {} signed twice", r.node));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::{EngineId, ReceiptBody};
    use crate::{Hash, ModelId, NodeKey, Tensor};

    fn quorum(k: u32, n: u8) -> (TensorMap, Vec<Receipt>) {
        let inputs: TensorMap =
            [("x".into(), Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap())].into();
        let outputs: TensorMap = [("y".into(), Tensor::from_f32(vec![1], &[3.0]).unwrap())].into();
        let receipts = (0..n)
            .map(|i| {
                let engine = EngineId {
                    name: "e".into(),
                    version: "1".into(),
                };
                ReceiptBody::new(
                    Hash::of("t", b"request"),
                    ModelId::of_bytes(b"model"),
                    &inputs,
                    outputs.clone(),
                    engine,
                    None,
                    Mode::Quorum { k },
                )
                .sign(&NodeKey::from_seed([i; 32]))
            })
            .collect();
        (inputs, receipts)
    }

    #[test]
    fn quorum_holds_and_every_tampering_is_rejected() {
        let (inputs, rs) = quorum(3, 3);
        let nodes: Vec<PublicKey> = rs.iter().map(|r| r.node).collect();
        verify_quorum(&rs, Some(&inputs), Some(&nodes)).expect("valid quorum");

        // Too few receipts, or one signer twice.
        assert!(verify_quorum(&rs[..2], None, None).is_err());
        let twice = vec![rs[0].clone(), rs[1].clone(), rs[0].clone()];
        assert!(verify_quorum(&twice, None, None).is_err());
        // A signer outside the known node set.
        assert!(verify_quorum(&rs, None, Some(&nodes[..2])).is_err());
        // Other inputs than the verifier's.
        let other: TensorMap =
            [("x".into(), Tensor::from_f32(vec![2], &[1.0, 2.5]).unwrap())].into();
        assert!(verify_quorum(&rs, Some(&other), None).is_err());
        // One node's output changed (re-signed by that node, so its own receipt is valid).
        let mut forged = rs.clone();
        let o: TensorMap = [("y".into(), Tensor::from_f32(vec![1], &[4.0]).unwrap())].into();
        forged[2] = ReceiptBody::new(
            rs[2].request_hash,
            rs[2].model,
            &inputs,
            o,
            rs[2].engine.clone(),
            None,
            rs[2].mode,
        )
        .sign(&NodeKey::from_seed([2; 32]));
        assert!(matches!(
            verify_quorum(&forged, None, None),
            Err(VerifyError::Quorum(_))
        ));
        // Output edited without a new signature.
        let mut t = rs.clone();
        t[1].outputs
            .insert("y".into(), Tensor::from_f32(vec![1], &[4.0]).unwrap());
        assert!(verify_quorum(&t, None, None).is_err());
        // A signature flipped.
        let mut t = rs.clone();
        t[0].signature.0[5] ^= 1;
        assert!(matches!(
            verify_quorum(&t, None, None),
            Err(VerifyError::Signature(_))
        ));
        // A signed-mode receipt is not a quorum.
        let (_, single) = quorum(3, 3);
        let mut t = single;
        t[0].mode = Mode::Signed;
        assert!(verify_quorum(&t, None, None).is_err());
        // Mode names round-trip.
        assert_eq!(Mode::parse("quorum").unwrap(), Mode::Quorum { k: 3 });
        assert_eq!(Mode::parse("quorum:5").unwrap().name(), "quorum:5");
        assert!(Mode::parse("quorum:0").is_err());
        assert!(Mode::parse("quorum:17").is_err());
    }
}
