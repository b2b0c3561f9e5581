//! Verity's shared vocabulary.
//!
//! Everything a third party needs to check a receipt offline lives here: content ids, the
//! canonical tensor encoding, requests, receipts, signed ledger transactions, Ed25519 keys,
//! the basic receipt check (signature and hashes), the API's JSON types (`wire`) and the one
//! switch for SIMD kernels (`isa`). It knows
//! nothing about engines, nodes or the ledger's state machine; the checks of every mode
//! together live in the `verity-verify` crate.

pub mod chat;
pub mod encode;
pub mod error;
pub mod hash;
pub mod isa;
pub mod keys;
pub mod manifest;
pub mod receipt;
pub mod request;
pub mod tensor;
pub mod testing;
pub mod trace;
pub mod tx;
pub mod verify;
pub mod wire;

pub use chat::{ChatMessage, ChatRequest, FinishReason};
pub use error::CoreError;
pub use hash::{Hash, ModelId};
pub use keys::{NodeKey, PublicKey};
pub use manifest::{ModelFormat, ModelManifest, TensorSpec};
pub use receipt::{EngineId, Receipt, ReceiptBody};
pub use request::{random_nonce, InferenceRequest, Mode, SignedRequest};
pub use tensor::{DType, Tensor, TensorMap};
pub use verify::{verify_quorum, verify_receipt, Expectations, VerifyError};

/// Milliseconds since the Unix epoch, the one clock unit used in receipts and manifests.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
