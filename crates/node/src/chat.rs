//! OpenAI-compatible chat: `POST /v1/chat/completions` (plain JSON or server-sent events) and
//! `GET /v1/models`. Every answer carries a signed receipt over the canonical request.
//!
//! The handler reads the request ([`crate::openai`]), resolves the model, takes a generation
//! slot (a bounded queue in front of a semaphore, so a busy node answers 429 instead of piling
//! up work), and runs the generation on a blocking thread. The thread reports over a channel:
//! first `Ready` (the request is accepted: checks that need the model, such as the context
//! length, are done), then text deltas, then `Done` with the stored receipt. A client that goes
//! away drops the receiver, which makes the runtime's callback return false and cancels.

use crate::api::resolve;
use crate::error::ApiError;
use crate::executor::ChatModelError;
use crate::openai::{parse_chat, validation_error, ChatCall, OaiError};
use crate::Node;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use verity_core::chat::{chat_outputs, validate_messages, MAX_TOKENS};
use verity_core::receipt::ReceiptBody;
use verity_core::tensor::hash_map;
use verity_core::{ChatRequest, EngineId, FinishReason, Mode, ModelManifest, Receipt};
use verity_llm::{Generation, Llm, LlmError, Prompt, RUNTIME_NAME, RUNTIME_VERSION};

/// Response header carrying the compact receipt ([`Receipt::to_compact_base64`]).
pub const RECEIPT_HEADER: &str = "verity-receipt";

/// `system_fingerprint` of every response: the runtime that produced it.
pub fn system_fingerprint() -> String {
    format!("{RUNTIME_NAME}-v{RUNTIME_VERSION}")
}

/// Admission to generation: `concurrency` run at once, up to `queue` more wait; beyond that
/// requests are refused with 429.
pub struct ChatSlots {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// A place in line; leaving the line (or finishing) frees it.
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The right to generate, held by the generation thread until it ends.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _ticket: Ticket,
}

impl ChatSlots {
    pub fn new(concurrency: usize, queue: usize) -> ChatSlots {
        let concurrency = concurrency.max(1);
        ChatSlots {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + queue,
        }
    }

    async fn acquire(&self) -> Result<Slot, OaiError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(OaiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                None,
                format!(
                    "this node is generating at capacity ({} running or queued); retry later",
                    self.capacity
                ),
            ));
        }
        let ticket = Ticket(self.admitted.clone());
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OaiError::internal("generation slots closed"))?;
        Ok(Slot {
            _permit: permit,
            _ticket: ticket,
        })
    }
}

/// What the generation thread reports.
enum Event {
    Ready,
    Delta(String),
    Done(Box<Finished>),
    Failed(OaiError),
}

/// A finished, signed and stored generation.
struct Finished {
    request: ChatRequest,
    generation: Generation,
    receipt: Receipt,
}

impl Finished {
    fn usage(&self) -> Value {
        let (p, c) = (self.generation.prompt_tokens, self.generation.tokens.len());
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    }

    /// The `verity` member of a response: the receipt, the canonical request it signs (so
    /// the client can check the input hash and re-execute) and the receipt id.
    fn verity(&self) -> Value {
        json!({
            "receipt": self.receipt,
            "request": self.request,
            "receipt_id": self.receipt.id().to_hex(),
        })
    }
}

/// `POST /v1/chat/completions`.
pub async fn completions(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match serve(&node, body).await {
        Ok(r) => r,
        Err(e) => {
            node.metrics.chat("error");
            e.into_response()
        }
    }
}

async fn serve(
    node: &Arc<Node>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OaiError> {
    let body = body.map_err(|r| {
        let too_large = r.status() == StatusCode::PAYLOAD_TOO_LARGE;
        OaiError::new(
            r.status(),
            "invalid_request_error",
            Some(if too_large {
                "request_too_large"
            } else {
                "invalid_body"
            }),
            None,
            r.body_text(),
        )
    })?;
    let call = parse_chat(&body)?;
    let manifest = chat_model(node, &call.model).await?;
    let slot = node.chat.acquire().await?;
    // Unbounded on purpose: the generation thread must never wait on a slow or stalled reader
    // while it holds a generation slot. What can queue is bounded by the generation itself
    // (at most max_tokens deltas).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker_node = node.clone();
    let stream = call.stream;
    let include_usage = call.include_usage;
    let model = manifest.id.to_string();
    tokio::task::spawn_blocking(move || generate(&worker_node, manifest, call, tx, slot));
    match rx.recv().await {
        Some(Event::Ready) => {}
        Some(Event::Failed(e)) => return Err(e),
        _ => return Err(OaiError::internal("the generation thread ended early")),
    }
    if stream {
        return Ok(sse(node.clone(), rx, model, include_usage));
    }
    loop {
        match rx.recv().await {
            Some(Event::Delta(_)) | Some(Event::Ready) => {}
            Some(Event::Done(f)) => return Ok(completion(&f, &model)),
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(OaiError::internal("the generation thread ended early")),
        }
    }
}

/// The hub model a chat names: by id, `name@version` or `name`, asking peers on a network.
async fn chat_model(node: &Arc<Node>, reference: &str) -> Result<ModelManifest, OaiError> {
    let found = match resolve(node, reference) {
        Err(e) if e.status == StatusCode::NOT_FOUND && node.chain.is_some() => {
            crate::peers::resolve_remote(node, reference).await
        }
        other => other,
    };
    match found {
        Ok(m) => Ok(m),
        // Unknown names and malformed ids alike: OpenAI answers both with model_not_found.
        Err(e) if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) => {
            Err(OaiError::model_not_found(reference))
        }
        Err(e) => Err(e.into()),
    }
}

fn runtime_error(e: LlmError) -> OaiError {
    match e {
        LlmError::ContextFull { .. } => OaiError::context_length(e.to_string()),
        LlmError::InvalidRequest(m) => OaiError::invalid("messages", "invalid_value", m),
        LlmError::Gguf(_) | LlmError::Unsupported(_) => OaiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("model_not_supported"),
            Some("model"),
            format!("the model cannot be served: {e}"),
        ),
        LlmError::Cancelled => OaiError::internal("generation cancelled"),
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
    let fail = |e: OaiError| {
        let _ = tx.send(Event::Failed(e));
    };
    let llm = match node.executor.llm(&manifest) {
        Ok(l) => l,
        Err(e) => return fail(model_error(e)),
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
        Err(e) => return fail(runtime_error(e)),
    };
    let m = &node.metrics;
    m.chat_seconds.observe(start.elapsed().as_secs_f64());
    m.chat_prompt_tokens.inc_by(generation.prompt_tokens as u64);
    m.chat_completion_tokens
        .inc_by(generation.tokens.len() as u64);
    let receipt = sign(node, &request, &generation);
    if let Err(e) = node.store.put_receipt(&receipt) {
        return fail(ApiError::from(e).into());
    }
    m.chat("ok");
    let _ = tx.send(Event::Done(Box::new(Finished {
        request,
        generation,
        receipt,
    })));
}

fn model_error(e: ChatModelError) -> OaiError {
    match e {
        ChatModelError::NotChat { .. } => OaiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("model_not_supported"),
            Some("model"),
            format!("{e}; chat needs a GGUF language model"),
        ),
        ChatModelError::Storage(e) => OaiError::internal(e.to_string()),
        ChatModelError::Runtime(e) => runtime_error(e),
    }
}

/// The canonical request: the model's id, `max_tokens` defaulting to what the context leaves
/// after the prompt, and the seed (0 when greedy, random otherwise, unless the client set it).
fn prepare(
    llm: &Llm,
    manifest: &ModelManifest,
    call: &ChatCall,
) -> Result<(ChatRequest, Prompt), OaiError> {
    validate_messages(&call.messages).map_err(|e| validation_error(e.to_string()))?;
    let prompt_tokens = llm.prompt(&call.messages).map_err(runtime_error)?;
    let prompt = prompt_tokens.tokens().len();
    let context = llm.context_length();
    let room = context.saturating_sub(prompt);
    let max_tokens = match call.max_tokens {
        Some(n) if prompt + n as usize > context => {
            return Err(OaiError::context_length(format!(
                "This model's maximum context length is {context} tokens. However, you requested \
                 {} tokens ({prompt} in the messages, {n} in the completion).",
                prompt + n as usize
            )))
        }
        Some(n) => n,
        None if room == 0 => {
            return Err(OaiError::context_length(format!(
            "This model's maximum context length is {context} tokens; the messages take {prompt}."
        )))
        }
        None => room.min(MAX_TOKENS as usize) as u32,
    };
    let seed = match call.seed {
        Some(s) => s,
        None if call.temperature == 0.0 => 0,
        None => verity_core::random_nonce().map_err(|e| OaiError::internal(e.to_string()))?,
    };
    let request = call.to_request(manifest.id, max_tokens, seed);
    request
        .validate()
        .map_err(|e| validation_error(e.to_string()))?;
    Ok((request, prompt_tokens))
}

/// The chat receipt: the canonical request as input, tokens + text + finish reason as output.
fn sign(node: &Node, request: &ChatRequest, g: &Generation) -> Receipt {
    let inputs = request.inputs();
    let outputs = chat_outputs(&g.tokens, &g.text, g.finish_reason);
    ReceiptBody {
        request_hash: request.hash(),
        model: request.model,
        input_hash: hash_map(&inputs),
        output_hash: hash_map(&outputs),
        outputs,
        trace_root: None,
        engine: EngineId {
            name: RUNTIME_NAME.into(),
            version: RUNTIME_VERSION.into(),
        },
        mode: Mode::Signed,
        timestamp_ms: verity_core::now_ms(),
    }
    .sign(&node.key)
}

fn created(receipt_ms: u64) -> u64 {
    receipt_ms / 1000
}

/// The non-streaming answer: a `chat.completion` with the `verity` member and the compact
/// receipt in the `verity-receipt` header.
fn completion(f: &Finished, model: &str) -> Response {
    let id = format!("chatcmpl-{}", &f.receipt.id().to_hex()[..24]);
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created(f.receipt.timestamp_ms),
        "model": model,
        "system_fingerprint": system_fingerprint(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": f.generation.text, "refusal": null},
            "logprobs": null,
            "finish_reason": f.generation.finish_reason.name(),
        }],
        "usage": f.usage(),
        "verity": f.verity(),
    });
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&f.receipt.to_compact_base64()) {
        resp.headers_mut().insert(RECEIPT_HEADER, v);
    }
    resp
}

/// A chunk's `choices`: one choice with this delta and finish reason.
fn delta(delta: Value, finish: Option<FinishReason>) -> Value {
    json!([{
        "index": 0,
        "delta": delta,
        "logprobs": null,
        "finish_reason": finish.map(FinishReason::name),
    }])
}

/// One server-sent event.
fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// The streaming answer: `chat.completion.chunk` events (the role, then text deltas, then the
/// finish reason with the `verity` member, then usage if asked), then `data: [DONE]`. A
/// failure after the stream started is an `{"error": ...}` event, without `[DONE]`.
fn sse(
    node: Arc<Node>,
    rx: mpsc::UnboundedReceiver<Event>,
    model: String,
    include_usage: bool,
) -> Response {
    let id = format!(
        "chatcmpl-{:016x}",
        verity_core::random_nonce().unwrap_or_default()
    );
    let created = created(verity_core::now_ms());
    let chunk = move |choices: Value, extra: Option<(&str, Value)>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": system_fingerprint(),
            "choices": choices,
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        if let Some((k, v)) = extra {
            c[k] = v;
        }
        c
    };
    let first = event(&chunk(
        delta(json!({"role": "assistant", "content": ""}), None),
        None,
    ));
    let rest = futures_util::stream::unfold(Some(rx), move |rx| {
        let chunk = chunk.clone();
        let node = node.clone();
        async move {
            let mut rx = rx?;
            let bytes = loop {
                match rx.recv().await {
                    Some(Event::Ready) => continue,
                    Some(Event::Delta(text)) => {
                        let b = event(&chunk(delta(json!({"content": text}), None), None));
                        return Some((b, Some(rx)));
                    }
                    Some(Event::Done(f)) => {
                        let finish = f.generation.finish_reason;
                        let mut out = event(&chunk(
                            delta(json!({}), Some(finish)),
                            Some(("verity", f.verity())),
                        ))
                        .to_vec();
                        if include_usage {
                            out.extend(event(&chunk(json!([]), Some(("usage", f.usage())))));
                        }
                        out.extend(b"data: [DONE]\n\n");
                        break Bytes::from(out);
                    }
                    Some(Event::Failed(e)) => {
                        node.metrics.chat("error");
                        break event(&e.body());
                    }
                    None => {
                        node.metrics.chat("error");
                        let e = OaiError::internal("the generation thread ended early");
                        break event(&e.body());
                    }
                }
            };
            Some((bytes, None))
        }
    });
    let body = futures_util::stream::once(async move { first })
        .chain(rest)
        .map(Ok::<_, std::convert::Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_queue_requests_are_refused_and_slots_are_freed() {
        let slots = ChatSlots::new(1, 1);
        let running = slots.acquire().await.unwrap();
        let mut waiting = Box::pin(slots.acquire());
        assert!(futures::poll!(&mut waiting).is_pending());
        let refused = slots.acquire().await.err().unwrap();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, Some("rate_limit_exceeded"));
        drop(running);
        let second = waiting.await.unwrap();
        // A request that gave up waiting frees its place in line.
        let mut gave_up = Box::pin(slots.acquire());
        assert!(futures::poll!(&mut gave_up).is_pending());
        drop(gave_up);
        let mut next = Box::pin(slots.acquire());
        assert!(futures::poll!(&mut next).is_pending());
        drop(second);
        next.await.unwrap();
    }
}
