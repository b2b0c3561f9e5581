//! The HTTP API's JSON types, shared by the node (which serves them) and every client (the
//! CLI, benchmarks, later the SDK), so no client imports the server's handlers. Field names
//! and shapes are the API; docs/architecture.md lists the endpoints.

use crate::chat::{ChatMessage, ChatRequest};
use crate::hash::{Hash, ModelId};
use crate::keys::{PublicKey, Signature};
use crate::manifest::ModelManifest;
use crate::receipt::Receipt;
use crate::request::SignedRequest;
use crate::tensor::TensorMap;
use crate::tx::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The validators whose signatures finalize blocks (from genesis, or exported by a node):
/// what `GET /v1/ledger` reports and what offline inclusion checks read from a file. Every
/// validator has one vote; a certificate needs 2f+1 of n = 3f+1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    pub chain_id: String,
    pub validators: Vec<PublicKey>,
}

impl ValidatorSet {
    /// Consensus signatures are domain-separated by this namespace.
    pub fn namespace(&self) -> Vec<u8> {
        format!("verity/{}", self.chain_id).into_bytes()
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub node: PublicKey,
    pub version: String,
    pub models: u64,
    pub receipts: u64,
    /// The ledger this node validates, if it is part of a network (so a client can sign an
    /// escrow for it without another round trip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
}

/// The `meta` part of a publish upload: what the publisher claims and signs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishMeta {
    pub name: String,
    pub version: String,
    /// The id the publisher computed locally; the node recomputes it from the received bytes.
    pub id: ModelId,
    pub size: u64,
    #[serde(default)]
    pub calibration_hash: Option<Hash>,
    pub publisher: PublicKey,
    /// Signature over [`crate::manifest::publish_statement`].
    pub signature: Signature,
}

/// `POST /v1/models`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublishResponse {
    pub model: ModelManifest,
    #[serde(default)]
    pub canonical: Option<ModelManifest>,
}

/// A hub model as OpenAI's model object: the manifest's own fields (so `id` is the content id
/// `blake3:<hex>`) plus `object: "model"`, `created` (seconds) and `owned_by`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelObject {
    #[serde(flatten)]
    pub manifest: ModelManifest,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

impl From<ModelManifest> for ModelObject {
    fn from(manifest: ModelManifest) -> ModelObject {
        ModelObject {
            created: manifest.created_at_ms / 1000,
            manifest,
            object: "model".into(),
            owned_by: "verity".into(),
        }
    }
}

/// `GET /v1/models`: OpenAI's list shape, `{"object": "list", "data": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

/// `?local=true` on model and proof lookups.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ShowQuery {
    /// Answer from this node alone, without asking peers (what peers ask each other, so
    /// lookups never loop).
    #[serde(default)]
    pub local: bool,
}

/// The `/v1/infer` body: a client-signed request and, on a network, the client-signed
/// transaction that escrows its fee on the ledger.
#[derive(Debug, Serialize, Deserialize)]
pub struct InferBody {
    #[serde(flatten)]
    pub signed: SignedRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<Transaction>,
}

/// `POST /v1/disputes`: an entry node asks one of a quorum's eligible executors (the only nodes
/// the ledger lets file a disagreement) to put receipts that disagree before the validators.
#[derive(Debug, Serialize, Deserialize)]
pub struct DisputeBody {
    pub signed: SignedRequest,
    pub receipts: Vec<Receipt>,
}

/// `?wait=true` on `/v1/infer`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct InferQuery {
    /// Answer only once the settlement is finalized.
    #[serde(default)]
    pub wait: bool,
}

/// `POST /v1/infer`.
#[derive(Debug, Serialize, Deserialize)]
pub struct InferResponse {
    pub receipt_id: Hash,
    pub receipt: Receipt,
    /// On a network, with `wait`: height of the finalized block that settled the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_height: Option<u64>,
    /// Quorum mode: every executor's receipt (`receipt` is the first of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumResult>,
    /// zk mode: the proof (base64) that the receipt's model maps the inputs to its outputs;
    /// `verity verify` checks it offline against the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_proof: Option<String>,
}

/// `GET /v1/proofs/{hash}`: a zk proof as its executor stores and serves it, with the inputs
/// it proves (the receipt states only their hash). `hash` is [`ProofBundle::hash_of`] of the
/// proof's bytes; a zk settlement records it on the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProofBundle {
    pub inputs: TensorMap,
    /// The proof, base64.
    pub proof: String,
}

impl ProofBundle {
    /// The hash a zk settlement records for a proof: BLAKE3 of its bytes (not of its base64
    /// text, so one proof has one hash), in the `verity/zk-proof/v1` domain.
    pub fn hash_of(proof: &[u8]) -> Hash {
        Hash::of(crate::hash::domain::ZK_PROOF, proof)
    }
}

/// A quorum's receipts; also the file `verity infer --mode quorum` saves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuorumResult {
    pub request: Hash,
    /// k receipts by distinct eligible nodes over the same output hash.
    pub receipts: Vec<Receipt>,
}

/// `POST /v1/ledger/tx`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Submitted {
    pub id: Hash,
}

/// `GET /v1/ledger`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LedgerStatus {
    pub chain_id: String,
    pub height: u64,
    pub last_block: Hash,
    pub state_root: Hash,
    pub validators: ValidatorSet,
    pub nodes: Vec<NodeInfo>,
}

/// A registered node, as the ledger knows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub key: PublicKey,
    pub stake: u64,
    pub endpoint: String,
    pub capabilities: Vec<String>,
}

/// `GET /v1/ledger/accounts/{key}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Account {
    pub key: PublicKey,
    pub balance: u64,
    /// Nonce of the last finalized state.
    pub nonce: u64,
    /// What the account's next nonce-ordered transaction should carry, counting those
    /// waiting at this node.
    pub next_nonce: u64,
}

/// `GET /v1/ledger/requests/{hash}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RequestStatus {
    /// The ledger has not seen it (or its escrow is not finalized yet).
    Unknown,
    Open {
        amount: u64,
        eligible: Vec<PublicKey>,
    },
    /// Before the validators: a quorum that disagreed, or a zk proof being checked.
    Judging {
        verdicts: usize,
        needed: usize,
    },
    Settled {
        height: u64,
    },
    /// A dispute decided by the validators' verdicts (or expired): see `GET /v1/disputes`.
    Judged {
        height: u64,
    },
    Refunded {
        height: u64,
    },
}

/// `GET /v1/prices/{model}`: a model as the ledger registry knows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelPrice {
    pub model: ModelId,
    pub name: String,
    pub version: String,
    pub publisher: PublicKey,
    pub price: u64,
}

/// `GET /v1/names/{name}`: who owns a model name, and the versions registered under it.
#[derive(Debug, Serialize, Deserialize)]
pub struct NameInfo {
    pub name: String,
    pub owner: PublicKey,
    pub models: Vec<ModelPrice>,
}

/// `GET /v1/disputes`: a request before the validators (a quorum that disagreed, or a zk
/// proof), open or decided.
#[derive(Debug, Serialize, Deserialize)]
pub struct DisputeInfo {
    pub request: Hash,
    /// `quorum` (re-executed by the validators) or `proof` (a zk proof they verify).
    pub kind: String,
    /// Which node signed which output.
    pub signed: Vec<(PublicKey, Hash)>,
    /// The verdicts given so far (open disputes).
    pub verdicts: Vec<(PublicKey, Hash)>,
    /// The height that decided it (None while open).
    pub decided_at: Option<u64>,
    /// The output 2f+1 validators agreed on (the zero hash: no valid proof); None while open
    /// or when the verdict window closed without agreement.
    pub verdict: Option<Hash>,
    /// Stake taken from the losing executors and validators.
    pub slashed: Vec<(PublicKey, u64)>,
}

/// The `verity` member of every chat answer, and the file `verity chat --receipt-out` writes:
/// the receipt, the canonical request it signs (so a client can check the input hash and
/// re-execute) and the receipt id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatReceipt {
    pub receipt: Receipt,
    pub request: ChatRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

/// OpenAI's `response_format`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
}

/// OpenAI's `stream_options`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// A `POST /v1/chat/completions` body as a client sends it. Unset parameters take the API's
/// defaults (OpenAI's: temperature 1, top_p 1; top_k off; no stop strings; max_tokens what
/// the context leaves; seed 0 when greedy, else chosen by the node).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Extension: sample among the k most likely tokens only (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
}

impl ChatCompletionRequest {
    /// Whether the answer is constrained to one JSON object.
    pub fn json_object(&self) -> bool {
        self.response_format
            .as_ref()
            .is_some_and(|f| f.kind == "json_object")
    }
}

/// Token counts of one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// The assistant's message in a non-streamed answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
    #[serde(default)]
    pub refusal: Option<String>,
}

/// One choice of a non-streamed answer (Verity answers with exactly one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    #[serde(default)]
    pub logprobs: Option<Value>,
    pub finish_reason: String,
}

/// A non-streamed answer: OpenAI's `chat.completion` plus the `verity` member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub verity: ChatReceipt,
}

/// What a stream chunk adds to the message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a stream chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One server-sent event of a streamed answer: OpenAI's `chat.completion.chunk`. The chunk
/// with the finish reason carries the `verity` member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChunkChoice>,
    /// With `stream_options.include_usage`: `null` on every chunk but the last, which has
    /// no choices and the counts. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<ChatReceipt>,
}
