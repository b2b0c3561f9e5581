//! OpenAI-compatible chat: `POST /v1/chat/completions`, answered as plain JSON or as
//! server-sent events. Every answer carries the signed receipt over the canonical request
//! (the `verity` member, and the `verity-receipt` header of plain answers).

use crate::chat::{self, ChatError, Event, Finished};
use crate::http::error::ApiError;
use crate::http::openai::{parse_chat, validation_error, OaiError};
use crate::node::Node;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;
use verity_core::wire::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatReceipt, Choice, ChunkChoice, Delta,
    Usage,
};
use verity_core::FinishReason;
use verity_llm::{LlmError, RUNTIME_NAME, RUNTIME_VERSION};

/// Response header carrying the compact receipt ([`verity_core::Receipt::to_compact_base64`]).
pub const RECEIPT_HEADER: &str = "verity-receipt";

/// `system_fingerprint` of every response: the runtime that produced it.
pub fn system_fingerprint() -> String {
    format!("{RUNTIME_NAME}-v{RUNTIME_VERSION}")
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
    let (stream, include_usage) = (call.stream, call.include_usage);
    let (manifest, mut rx) = chat::start(node, call).await?;
    let model = manifest.id.to_string();
    if stream {
        return Ok(sse(node.clone(), rx, model, include_usage));
    }
    loop {
        match rx.recv().await {
            Some(Event::Delta(_)) | Some(Event::Ready) => {}
            Some(Event::Done(f)) => return Ok(completion(&f, &model)),
            Some(Event::Failed(e)) => return Err(e.into()),
            None => return Err(chat::ended_early().into()),
        }
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

impl From<ChatError> for OaiError {
    fn from(e: ChatError) -> OaiError {
        match e {
            ChatError::ModelNotFound(reference) => OaiError::model_not_found(&reference),
            ChatError::Lookup(e) => ApiError::from(e).into(),
            ChatError::NotChat { .. } => OaiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model_not_supported"),
                Some("model"),
                e.to_string(),
            ),
            ChatError::Load(_) | ChatError::Internal(_) => OaiError::internal(e.to_string()),
            ChatError::Runtime(e) => runtime_error(e),
            ChatError::Invalid(message) => validation_error(message),
            ChatError::ContextLength(message) => OaiError::context_length(message),
            // 429 rate_limit_exceeded when the chat lane is full.
            ChatError::Job(e) => ApiError::from(e).into(),
            ChatError::Store(e) => ApiError::from(e).into(),
        }
    }
}

/// The `verity` member of a response: the receipt, the canonical request it signs (so the
/// client can check the input hash and re-execute) and the receipt id.
fn chat_receipt(f: &Finished) -> ChatReceipt {
    ChatReceipt {
        receipt: f.receipt.clone(),
        request: f.request.clone(),
        receipt_id: Some(f.receipt.id().to_hex()),
    }
}

fn usage(f: &Finished) -> Usage {
    Usage::new(f.generation.prompt_tokens, f.generation.tokens.len())
}

fn created(receipt_ms: u64) -> u64 {
    receipt_ms / 1000
}

/// The non-streaming answer: a `chat.completion` with the `verity` member.
fn completion_body(f: &Finished, model: &str) -> ChatCompletion {
    ChatCompletion {
        id: format!("chatcmpl-{}", &f.receipt.id().to_hex()[..24]),
        object: "chat.completion".into(),
        created: created(f.receipt.timestamp_ms),
        model: model.into(),
        system_fingerprint: system_fingerprint(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: f.generation.text.clone(),
                refusal: None,
            },
            logprobs: None,
            finish_reason: f.generation.finish_reason.name().into(),
        }],
        usage: usage(f),
        verity: chat_receipt(f),
    }
}

/// The non-streaming answer, with the compact receipt in the `verity-receipt` header.
fn completion(f: &Finished, model: &str) -> Response {
    let mut resp = Json(completion_body(f, model)).into_response();
    if let Ok(v) = HeaderValue::from_str(&f.receipt.to_compact_base64()) {
        resp.headers_mut().insert(RECEIPT_HEADER, v);
    }
    resp
}

/// What every chunk of one stream repeats.
#[derive(Clone)]
struct Stream {
    id: String,
    created: u64,
    model: String,
    /// With `stream_options.include_usage`, every chunk has a `usage` member (null until the
    /// last).
    include_usage: bool,
}

impl Stream {
    /// A chunk with one choice: this delta and finish reason.
    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish.map(|f| f.name().to_string()),
        };
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: system_fingerprint(),
            choices: vec![choice],
            usage: self.include_usage.then_some(None),
            verity: None,
        }
    }

    fn first(&self) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
            },
            None,
        )
    }

    fn text(&self, text: String) -> ChatCompletionChunk {
        let delta = Delta {
            role: None,
            content: Some(text),
        };
        self.chunk(delta, None)
    }

    /// The finish reason with the `verity` member.
    fn last(&self, f: &Finished) -> ChatCompletionChunk {
        ChatCompletionChunk {
            verity: Some(chat_receipt(f)),
            ..self.chunk(Delta::default(), Some(f.generation.finish_reason))
        }
    }

    /// After the last chunk, when asked: no choices, and the counts.
    fn usage(&self, f: &Finished) -> ChatCompletionChunk {
        ChatCompletionChunk {
            choices: vec![],
            usage: Some(Some(usage(f))),
            ..self.chunk(Delta::default(), None)
        }
    }
}

/// One server-sent event.
fn event(data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data)
        .unwrap_or_else(|e| OaiError::internal(e.to_string()).body().to_string());
    Bytes::from(format!("data: {json}\n\n"))
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
    let stream = Stream {
        id: format!(
            "chatcmpl-{:016x}",
            verity_core::random_nonce().unwrap_or_default()
        ),
        created: created(verity_core::now_ms()),
        model,
        include_usage,
    };
    let first = event(&stream.first());
    let rest = futures_util::stream::unfold(Some(rx), move |rx| {
        let stream = stream.clone();
        let node = node.clone();
        async move {
            let mut rx = rx?;
            let bytes = loop {
                match rx.recv().await {
                    Some(Event::Ready) => continue,
                    Some(Event::Delta(text)) => {
                        return Some((event(&stream.text(text)), Some(rx)));
                    }
                    Some(Event::Done(f)) => {
                        let mut out = event(&stream.last(&f)).to_vec();
                        if include_usage {
                            out.extend(event(&stream.usage(&f)));
                        }
                        out.extend(b"data: [DONE]\n\n");
                        break Bytes::from(out);
                    }
                    Some(Event::Failed(e)) => {
                        node.metrics.chat("error");
                        break event(&OaiError::from(e).body());
                    }
                    None => {
                        node.metrics.chat("error");
                        break event(&OaiError::from(chat::ended_early()).body());
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
    use serde_json::{json, Value};
    use verity_core::{ChatRequest, EngineId, Hash, Mode, ModelId, NodeKey, ReceiptBody};

    fn finished() -> Finished {
        let request = ChatRequest {
            model: ModelId([7; 32]),
            messages: vec![verity_core::ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            }],
            max_tokens: 4,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: vec![],
            json_object: false,
        };
        let generation = verity_llm::Generation {
            prompt_tokens: 5,
            tokens: vec![1, 2],
            text: "Hello".into(),
            finish_reason: FinishReason::Stop,
            logits_hash: Hash::of("t", b"logits"),
        };
        let engine = EngineId {
            name: "verity-llm".into(),
            version: "1".into(),
        };
        let outputs = verity_core::chat::chat_outputs(&[1, 2], "Hello", FinishReason::Stop);
        let body = ReceiptBody::new(
            request.hash(),
            request.model,
            &request.inputs(),
            outputs,
            engine,
            None,
            Mode::Signed,
        );
        Finished {
            receipt: body.sign(&NodeKey::from_seed([1; 32])),
            request,
            generation,
        }
    }

    #[test]
    fn a_full_chat_lane_is_openai_rate_limiting() {
        let busy = crate::scheduler::JobError::Busy {
            work: "generating",
            capacity: 17,
        };
        let e = OaiError::from(ChatError::Job(busy));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            (e.kind, e.code),
            ("rate_limit_error", Some("rate_limit_exceeded"))
        );
        assert_eq!(
            e.message,
            "this node is generating at capacity (17 running or queued); retry later"
        );
    }

    fn json_of(v: &impl Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    /// The JSON clients (the `openai` packages among them) read: the keys and nulls of
    /// OpenAI's objects, plus `verity`.
    #[test]
    fn responses_keep_openai_shapes() {
        let f = finished();
        let verity = json!({
            "receipt": f.receipt,
            "request": f.request,
            "receipt_id": f.receipt.id().to_hex(),
        });
        assert_eq!(
            json_of(&completion_body(&f, "blake3:m")),
            json!({
                "id": format!("chatcmpl-{}", &f.receipt.id().to_hex()[..24]),
                "object": "chat.completion",
                "created": f.receipt.timestamp_ms / 1000,
                "model": "blake3:m",
                "system_fingerprint": system_fingerprint(),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello", "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                "verity": verity,
            })
        );
        for include_usage in [false, true] {
            let s = Stream {
                id: "chatcmpl-1".into(),
                created: 9,
                model: "blake3:m".into(),
                include_usage,
            };
            let chunk = |choices: Value| {
                let mut c = json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 9,
                    "model": "blake3:m",
                    "system_fingerprint": system_fingerprint(),
                    "choices": choices,
                });
                if include_usage {
                    c["usage"] = Value::Null;
                }
                c
            };
            let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
            assert_eq!(
                json_of(&s.first()),
                chunk(choice(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null
                ))
            );
            assert_eq!(
                json_of(&s.text("Hel".into())),
                chunk(choice(json!({"content": "Hel"}), Value::Null))
            );
            let mut last = chunk(choice(json!({}), json!("stop")));
            last["verity"] = verity.clone();
            assert_eq!(json_of(&s.last(&f)), last);
            let mut counts = chunk(json!([]));
            counts["usage"] =
                json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7});
            assert_eq!(json_of(&s.usage(&f)), counts);
        }
    }
}
