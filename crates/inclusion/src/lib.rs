//! Receipt inclusion proofs, checked offline against a validator set: the receipt, its Merkle
//! path to a block's receipts root, the block header, and the block's finalization
//! certificate (Ed25519 signatures of a BFT quorum of validators over the header digest).
//!
//! This crate sits below both the ledger (which builds these proofs) and the verifier (which
//! checks them): it needs the consensus library's certificate types, nothing of the ledger's
//! state machine, so a client can check inclusion without linking the ledger.

mod header;
mod proof;
mod receipts;

pub use header::BlockHeader;
pub use proof::{
    encode_finalization, participants, verify_inclusion, InclusionError, InclusionProof,
};
pub use receipts::{receipts_root, ReceiptProof, ReceiptsHasher};
pub use verity_core::wire::ValidatorSet;

use commonware_cryptography::sha256;
use verity_core::Hash;

/// The consensus digest type: 32 bytes (Commonware's digest container) holding Verity's
/// BLAKE3 header digest.
pub type Digest = sha256::Digest;

pub fn to_digest(h: &Hash) -> Digest {
    sha256::Digest(h.0)
}

pub fn from_digest(d: &Digest) -> Hash {
    Hash(d.0)
}
