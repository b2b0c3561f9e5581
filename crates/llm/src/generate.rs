//! The chat entry point: a loaded model, its tokenizer and template, and the generation loop
//! (prompt, sampling, stop strings, JSON constraint, streamed text).

use thiserror::Error;
use verity_core::{ChatMessage, ChatRequest, FinishReason, Hash};

/// Name and version that go into receipts as the engine. Any change to the numerics of
/// `docs/llm-semantics.md` must bump the version.
pub const RUNTIME_NAME: &str = "verity-llm";
pub const RUNTIME_VERSION: &str = "1";

#[derive(Debug, Error)]
pub enum LlmError {
    #[error("model file: {0}")]
    Gguf(#[from] crate::GgufError),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("prompt and max_tokens need {needed} tokens; the context holds {limit}")]
    ContextFull { needed: usize, limit: usize },
    #[error("generation cancelled")]
    Cancelled,
}

/// What a generation produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// BLAKE3 over the bits of every logit vector computed, in order: a fingerprint of the
    /// whole computation, for determinism tests.
    pub logits_hash: Hash,
}

/// A loaded GGUF llama model, ready to serve chats. Shareable across threads.
pub struct Llm {
    _private: (),
}

impl Llm {
    /// Parses and checks a GGUF file and prepares its weights.
    pub fn load(_bytes: &[u8]) -> Result<Llm, LlmError> {
        Err(LlmError::Unsupported("runtime under construction".into()))
    }

    /// Tokens of the chat prompt (template applied, generation prompt added).
    pub fn prompt(&self, _messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        Err(LlmError::Unsupported("runtime under construction".into()))
    }

    /// Longest prompt plus generation, in tokens.
    pub fn context_length(&self) -> usize {
        0
    }

    /// Runs a chat request. `on_text` receives the text as it is generated, in pieces that
    /// are whole UTF-8 and never part of a stop string; returning `false` cancels.
    pub fn generate(
        &self,
        _request: &ChatRequest,
        _on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        Err(LlmError::Unsupported("runtime under construction".into()))
    }
}
