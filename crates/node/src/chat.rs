//! Chat generation. A call is resolved to a hub model, admitted to the chat lane, and run on a
//! blocking thread that reports over a channel: first `Ready` (the request is accepted: checks
//! that need the model, such as the context length, are done), then text deltas, then `Done`
//! with the signed and stored receipt. A caller that goes away drops the receiver, which makes
//! the runtime's callback return false and cancels the generation.

use crate::executor::{self, ExecError};
use crate::hub::{self, HubError};
use crate::inference::issue_receipt;
use crate::node::Node;
use crate::scheduler::{JobError, Slot};
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use verity_core::chat::{chat_outputs, validate_messages, MAX_TOKENS};
use verity_core::{
    ChatMessage, ChatRequest, EngineId, Mode, ModelFormat, ModelId, ModelManifest, Receipt,
    ReceiptBody,
};
use verity_llm::{Generation, Llm, LlmError, Prompt, RUNTIME_NAME, RUNTIME_VERSION};

/// A chat-completions request, read and checked; what remains is the model lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatCall {
    /// As the client named it: `blake3:<hex>`, `name@version` or `name`.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub json_object: bool,
    /// How the answer is delivered: server-sent events, with a usage chunk at the end.
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatCall {
    /// The canonical request for the resolved model; `seed` fills in an absent seed.
    pub fn to_request(&self, model: ModelId, max_tokens: u32, seed: u64) -> ChatRequest {
        ChatRequest {
            model,
            messages: self.messages.clone(),
            max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed.unwrap_or(seed),
            stop: self.stop.clone(),
            json_object: self.json_object,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The reference names no model here or at any peer (or is no model reference at all).
    #[error("the model `{0}` does not exist on this node")]
    ModelNotFound(String),
    /// Looking the model up failed for another reason (storage, the network).
    #[error(transparent)]
    Lookup(HubError),
    #[error("{id} is a {format:?} model, not a chat model; chat needs a GGUF language model")]
    NotChat { id: ModelId, format: ModelFormat },
    /// The model could not be loaded from storage.
    #[error(transparent)]
    Load(ExecError),
    #[error("{0}")]
    Runtime(#[from] LlmError),
    /// A request field out of range, as `field: reason`.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    ContextLength(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What the generation thread reports.
pub enum Event {
    Ready,
    Delta(String),
    Done(Box<Finished>),
    Failed(ChatError),
}

/// A finished, signed and stored generation.
pub struct Finished {
    pub request: ChatRequest,
    pub generation: Generation,
    pub receipt: Receipt,
}

/// Starts a generation and waits until it is accepted. Returns the model and the events that
/// follow `Ready`.
pub async fn start(
    node: &Arc<Node>,
    call: ChatCall,
) -> Result<(ModelManifest, mpsc::UnboundedReceiver<Event>), ChatError> {
    let manifest = chat_model(node, &call.model).await?;
    let slot = node.scheduler.chat.admit().await?;
    // Unbounded on purpose: the generation thread must never wait on a slow or stalled reader
    // while it holds a generation slot. What can queue is bounded by the generation itself
    // (at most max_tokens deltas).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = node.clone();
    let model = manifest.clone();
    tokio::task::spawn_blocking(move || generate(&worker, model, call, tx, slot));
    match rx.recv().await {
        Some(Event::Ready) => Ok((manifest, rx)),
        Some(Event::Failed(e)) => Err(e),
        _ => Err(ended_early()),
    }
}

/// What a caller reports when the generation thread stops without a word.
pub fn ended_early() -> ChatError {
    ChatError::Internal("the generation thread ended early".into())
}

/// The hub model a chat names, asking peers on a network.
async fn chat_model(node: &Arc<Node>, reference: &str) -> Result<ModelManifest, ChatError> {
    match hub::find(node, reference, true).await {
        Ok(m) => Ok(m),
        // Unknown names and malformed ids alike: OpenAI answers both with model_not_found.
        Err(e) if e.is_not_found() || matches!(e, HubError::BadReference(_)) => {
            Err(ChatError::ModelNotFound(reference.to_string()))
        }
        Err(e) => Err(ChatError::Lookup(e)),
    }
}

/// Blocking: loads the model, fixes the canonical request, generates, signs and stores.
fn generate(
    node: &Node,
    manifest: ModelManifest,
    call: ChatCall,
    tx: mpsc::UnboundedSender<Event>,
    _slot: Slot,
) {
    let fail = |e: ChatError| {
        let _ = tx.send(Event::Failed(e));
    };
    let llm = match executor::llm(&node.models, &manifest) {
        Ok(l) => l,
        Err(ExecError::WrongFormat { id, format, .. }) => {
            return fail(ChatError::NotChat { id, format })
        }
        Err(ExecError::Llm(e)) => return fail(ChatError::Runtime(e)),
        Err(e) => return fail(ChatError::Load(e)),
    };
    let (request, prompt) = match prepare(&llm, &manifest, &call) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if tx.send(Event::Ready).is_err() {
        return node.metrics.chat("cancelled");
    }
    let start = Instant::now();
    let generation = llm.generate_from(&request, &prompt, &mut |text| {
        tx.send(Event::Delta(text.to_string())).is_ok()
    });
    let generation = match generation {
        Ok(g) => g,
        Err(LlmError::Cancelled) => return node.metrics.chat("cancelled"),
        Err(e) => return fail(e.into()),
    };
    let m = &node.metrics;
    m.chat_seconds.observe(start.elapsed().as_secs_f64());
    m.chat_prompt_tokens.inc_by(generation.prompt_tokens as u64);
    m.chat_completion_tokens
        .inc_by(generation.tokens.len() as u64);
    // The chat receipt: the canonical request as input; tokens, text and finish reason as
    // output.
    let outputs = chat_outputs(
        &generation.tokens,
        &generation.text,
        generation.finish_reason,
    );
    let engine = EngineId {
        name: RUNTIME_NAME.into(),
        version: RUNTIME_VERSION.into(),
    };
    let body = ReceiptBody::new(
        request.hash(),
        request.model,
        &request.inputs(),
        outputs,
        engine,
        None,
        Mode::Signed,
    );
    let receipt = match issue_receipt(node, body, None) {
        Ok(r) => r,
        Err(e) => return fail(e.into()),
    };
    m.chat("ok");
    let _ = tx.send(Event::Done(Box::new(Finished {
        request,
        generation,
        receipt,
    })));
}

/// The canonical request: the model's id, `max_tokens` defaulting to what the context leaves
/// after the prompt, and the seed (0 when greedy, random otherwise, unless the client set it).
fn prepare(
    llm: &Llm,
    manifest: &ModelManifest,
    call: &ChatCall,
) -> Result<(ChatRequest, Prompt), ChatError> {
    validate_messages(&call.messages).map_err(|e| ChatError::Invalid(e.to_string()))?;
    let prompt_tokens = llm.prompt(&call.messages)?;
    let prompt = prompt_tokens.tokens().len();
    let context = llm.context_length();
    let room = context.saturating_sub(prompt);
    let max_tokens = match call.max_tokens {
        Some(n) if prompt + n as usize > context => {
            return Err(ChatError::ContextLength(format!(
                "This model's maximum context length is {context} tokens. However, you requested \
                 {} tokens ({prompt} in the messages, {n} in the completion).",
                prompt + n as usize
            )))
        }
        Some(n) => n,
        None if room == 0 => {
            return Err(ChatError::ContextLength(format!(
            "This model's maximum context length is {context} tokens; the messages take {prompt}."
        )))
        }
        None => room.min(MAX_TOKENS as usize) as u32,
    };
    let seed = match call.seed {
        Some(s) => s,
        None if call.temperature == 0.0 => 0,
        None => verity_core::random_nonce().map_err(|e| ChatError::Internal(e.to_string()))?,
    };
    let request = call.to_request(manifest.id, max_tokens, seed);
    request
        .validate()
        .map_err(|e| ChatError::Invalid(e.to_string()))?;
    Ok((request, prompt_tokens))
}
