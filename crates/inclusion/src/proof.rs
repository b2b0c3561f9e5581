//! The inclusion proof and its check.

use crate::{to_digest, BlockHeader, Digest, ReceiptProof};
use commonware_codec::{Decode, Encode};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Finalization;
use commonware_consensus::types::Epoch;
use commonware_consensus::Epochable;
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::ed25519;
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use verity_core::verify::{verify_receipt, Expectations};
use verity_core::wire::ValidatorSet;
use verity_core::{Receipt, VerifyError};

/// The validator set's keys as consensus participants.
pub fn participants(set: &ValidatorSet) -> Result<Set<ed25519::PublicKey>, InclusionError> {
    let keys = set
        .validators
        .iter()
        .map(|k| {
            use commonware_codec::ReadExt;
            ed25519::PublicKey::read(&mut commonware_codec::Copying(&k.0[..]))
                .map_err(|_| InclusionError::ValidatorSet(format!("invalid key {k}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Set::try_from(keys).map_err(|_| InclusionError::ValidatorSet("duplicate validator".into()))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub receipt: Receipt,
    pub path: ReceiptProof,
    pub header: BlockHeader,
    /// The Commonware-encoded finalization certificate, hex.
    pub finalization: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InclusionError {
    #[error("receipt: {0}")]
    Receipt(#[from] VerifyError),
    #[error("the Merkle path does not lead from the receipt to the block's receipts root")]
    Path,
    #[error("finalization certificate is malformed: {0}")]
    Malformed(String),
    #[error("the certificate finalizes another block (not this header)")]
    WrongBlock,
    #[error("the certificate's signatures do not verify against the validator set")]
    Signatures,
    #[error("validator set: {0}")]
    ValidatorSet(String),
}

/// Encodes a finalization for an [`InclusionProof`].
pub fn encode_finalization(f: &Finalization<Scheme, Digest>) -> String {
    hex::encode(f.encode())
}

/// Checks, offline: the receipt's own signature and hashes, the Merkle path to the header's
/// receipts root, that the certificate finalizes exactly this header, and that a quorum of
/// `set` signed it.
pub fn verify_inclusion(p: &InclusionProof, set: &ValidatorSet) -> Result<(), InclusionError> {
    verify_receipt(&p.receipt, &Expectations::default())?;
    if !p.path.verify(&p.header.receipts_root, &p.receipt.id()) {
        return Err(InclusionError::Path);
    }
    let verifier = Scheme::verifier(&set.namespace(), participants(set)?);
    let bytes =
        hex::decode(&p.finalization).map_err(|e| InclusionError::Malformed(e.to_string()))?;
    let f = Finalization::<Scheme, Digest>::decode_cfg(bytes, &verifier.certificate_codec_config())
        .map_err(|e| InclusionError::Malformed(e.to_string()))?;
    if f.proposal.payload != to_digest(&p.header.digest()) {
        return Err(InclusionError::WrongBlock);
    }
    if f.epoch() != Epoch::zero()
        || !f.verify(&mut commonware_utils::sys_rng(), &verifier, &Sequential)
    {
        return Err(InclusionError::Signatures);
    }
    Ok(())
}
