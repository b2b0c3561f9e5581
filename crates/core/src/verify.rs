//! Offline receipt verification: the one place that decides whether a receipt holds.
//! The CLI, the node's tests and any third party call this; re-execution is layered on top
//! by the engine (it needs the model).

use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::receipt::{Receipt, RECEIPT_VERSION};
use crate::tensor::{hash_map, TensorMap};
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
    #[error("re-execution mismatch: {0}")]
    Reexecution(String),
}

/// What the verifier knows besides the receipt.
#[derive(Default)]
pub struct Expectations<'a> {
    /// The inputs the verifier believes were used.
    pub inputs: Option<&'a TensorMap>,
    /// The node the verifier trusts to have signed.
    pub node: Option<PublicKey>,
}

/// Checks version, output hash, input hash (when inputs are given), node key (when expected)
/// and the signature over everything.
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
    if let Some(expected) = expect.node {
        if expected != receipt.node {
            return Err(VerifyError::NodeKey {
                expected,
                actual: receipt.node,
            });
        }
    }
    if !receipt
        .node
        .verify(&receipt.signing_hash().0, &receipt.signature)
    {
        return Err(VerifyError::Signature(receipt.node));
    }
    Ok(())
}
