//! Verity's ledger: the deterministic state machine every validator replicates.
//!
//! It knows nothing about consensus or networking: a block is an ordered list of signed
//! transactions, and applying the same blocks to the same genesis gives the same state root on
//! every validator. Consensus (which orders blocks) and storage (which keeps them) wrap it.
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
