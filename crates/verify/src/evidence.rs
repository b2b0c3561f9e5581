//! The evidence files a verifier reads: one definition of each, shared by whoever writes them
//! (`verity infer`, `verity chat --receipt-out`, `verity prove`, `verity ledger proof`, the
//! node's answers) and whoever checks them.

use crate::report::{fail, Check, Failure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use verity_core::wire::{ChatReceipt, QuorumResult};
use verity_core::{ModelId, Receipt, TensorMap};
use verity_inclusion::InclusionProof;

/// A zk-mode receipt with its proof, as `verity infer --mode zk` saves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkReceipt {
    pub receipt: Receipt,
    /// The STARK proof, base64.
    pub zk_proof: String,
}

/// A quorum with the inclusion proof of each of its receipts, as `verity infer --mode quorum
/// --wait` saves it. The ledger settles a quorum only with receipts signed by executors it drew
/// for the request, so receipts settled in a finalized block show, offline, that the signers
/// are exactly the request's ledger-chosen executors (a quorum file alone shows only k
/// signatures).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettledQuorum {
    pub quorum: QuorumResult,
    pub inclusion: Vec<InclusionProof>,
}

/// What `verity prove` writes: a self-contained claim and its proof, no node involved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    pub model: ModelId,
    /// The model's preprocessed commitment (hex), for reference; the verifier re-derives it.
    pub commitment: String,
    pub inputs: TensorMap,
    pub outputs: TensorMap,
    /// The STARK proof, base64.
    pub proof: String,
}

/// A saved `chat.completion` answer: its receipt, and the text it showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub verity: ChatReceipt,
    #[serde(default)]
    pub choices: Vec<Value>,
}

impl Completion {
    /// The text the answer showed (its first choice's message).
    pub fn shown_text(&self) -> Option<&str> {
        self.choices
            .first()
            .and_then(|c| c["message"]["content"].as_str())
    }
}

/// Any evidence file. Parsing tries each shape in turn; the shapes do not overlap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Evidence {
    /// A chat receipt with its canonical request.
    Chat(Box<ChatReceipt>),
    /// A whole `chat.completion` answer holding a chat receipt.
    Completion(Box<Completion>),
    /// A quorum's receipts with their inclusion proofs.
    SettledQuorum(Box<SettledQuorum>),
    /// A quorum's receipts.
    Quorum(QuorumResult),
    /// A receipt with its inclusion proof.
    Inclusion(Box<InclusionProof>),
    /// A zk-mode receipt with its proof.
    Zk(Box<ZkReceipt>),
    /// A `verity prove` proof file.
    Proof(Box<ProofFile>),
    /// One node's receipt.
    Single(Box<Receipt>),
}

impl Evidence {
    /// Reads an evidence file's JSON.
    pub fn parse(bytes: &[u8]) -> Result<Evidence, Failure> {
        serde_json::from_slice(bytes).or_else(|_| {
            fail(
                Check::Evidence,
                "not a receipt, quorum, inclusion proof, zk receipt, proof file or chat receipt",
            )
        })
    }

    /// What kind of evidence this is, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Evidence::Chat(_) => "chat receipt",
            Evidence::Completion(_) => "chat completion",
            Evidence::SettledQuorum(_) => "settled quorum",
            Evidence::Quorum(_) => "quorum",
            Evidence::Inclusion(_) => "inclusion proof",
            Evidence::Zk(_) => "zk receipt",
            Evidence::Proof(_) => "proof file",
            Evidence::Single(_) => "receipt",
        }
    }
}
