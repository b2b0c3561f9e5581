//! OpenAI-compatible chat: `POST /v1/chat/completions`, answered as plain JSON or as
//! server-sent events. Every answer carries the signed receipt over the canonical request
//! (the `verity` member, and the `verity-receipt` header of plain answers).

use crate::chat::{self, ChatError, Event, Finished};
use crate::http::error::ApiError;
use crate::http::openai::{parse_chat, validation_error, OaiError};
use crate::node::Node;
use crate::scheduler::JobError;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc;
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
            ChatError::Job(JobError::Busy { .. }) => OaiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                None,
                e.to_string(),
            ),
            ChatError::Job(JobError::Stopped(_)) => OaiError::internal(e.to_string()),
            ChatError::Store(e) => ApiError::from(e).into(),
        }
    }
}

fn usage(f: &Finished) -> Value {
    let (p, c) = (f.generation.prompt_tokens, f.generation.tokens.len());
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

/// The `verity` member of a response: the receipt, the canonical request it signs (so the
/// client can check the input hash and re-execute) and the receipt id.
fn verity(f: &Finished) -> Value {
    json!({
        "receipt": f.receipt,
        "request": f.request,
        "receipt_id": f.receipt.id().to_hex(),
    })
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
        "usage": usage(f),
        "verity": verity(f),
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
                            Some(("verity", verity(&f))),
                        ))
                        .to_vec();
                        if include_usage {
                            out.extend(event(&chunk(json!([]), Some(("usage", usage(&f))))));
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
