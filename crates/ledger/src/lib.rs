//! Verity's ledger: the state machine every validator replicates, and the consensus that
//! orders its blocks.
//!
//! The state machine ([`state`], with its transactions in [`tx`] and blocks in [`block`]) is
//! deterministic and knows nothing about consensus or networking: a block is an ordered list
//! of signed transactions, and applying the same blocks to the same genesis gives the same
//! state root on every validator. Around it, [`consensus`] is the Commonware application that
//! builds and verifies blocks by running it, [`validator`] wires one validator's consensus,
//! block dissemination and storage over the network, [`mempool`] holds transactions waiting
//! for a block, and [`proof`] checks a receipt's inclusion in a finalized block offline.
//! The economic rules are written in docs/economics.md.

pub mod block;
pub mod consensus;
pub mod error;
pub mod mempool;
pub mod state;

pub mod validator;

pub use block::{receipts_root, Block, ReceiptProof};
pub use error::TxError;
pub use state::{Genesis, LedgerState, Params};
pub use verity_core::tx::{self, Action, Transaction};
/// Inclusion proofs live below the ledger (crate `verity-inclusion`) so verifiers need not link it.
pub use verity_inclusion as proof;
