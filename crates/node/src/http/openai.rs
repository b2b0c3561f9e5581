//! The OpenAI chat-completions wire format: reading a request body into a [`ChatCall`] (a
//! canonical [`verity_core::ChatRequest`] minus what needs the model: the id, and the default
//! `max_tokens`), and OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`.
//! The response objects are `verity_core::wire`'s `ChatCompletion` and `ChatCompletionChunk`.
//!
//! Defaults follow OpenAI: `temperature` 1, `top_p` 1, no stop strings, `max_tokens` as many as
//! the context leaves (at most [`MAX_TOKENS`]). Extensions: `top_k` (0 = off). `seed` defaults
//! to 0 for greedy requests (`temperature` 0) and to a random seed otherwise; either way the
//! seed used is part of the canonical request the receipt signs. Unknown fields are ignored,
//! but known fields asking for something this node does not do (`n` > 1, `tools`,
//! `logprobs`, penalties, `logit_bias`, audio, `json_schema`) are refused by name.

use crate::chat::ChatCall;
use crate::http::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use verity_core::chat::{MAX_MESSAGES, MAX_STOPS, MAX_STOP_BYTES, MAX_TOKENS};
use verity_core::ChatMessage;

/// An error in OpenAI's shape.
#[derive(Debug)]
pub struct OaiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl OaiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> OaiError {
        OaiError {
            status,
            kind,
            message: message.into(),
            param: param.map(str::to_string),
            code,
        }
    }

    /// 400 `invalid_request_error` about one parameter.
    pub fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> OaiError {
        OaiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            Some(param),
            message,
        )
    }

    pub fn unsupported(param: &str, message: impl Into<String>) -> OaiError {
        OaiError::invalid(param, "unsupported_value", message)
    }

    pub fn model_not_found(model: &str) -> OaiError {
        OaiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
            format!("The model `{model}` does not exist on this node."),
        )
    }

    pub fn context_length(message: impl Into<String>) -> OaiError {
        OaiError::invalid("messages", "context_length_exceeded", message)
    }

    pub fn internal(message: impl Into<String>) -> OaiError {
        OaiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            None,
            message,
        )
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for OaiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Node errors (storage, peers) in OpenAI's shape, keeping their status and code.
impl From<ApiError> for OaiError {
    fn from(e: ApiError) -> OaiError {
        let kind = match e.status.as_u16() {
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        OaiError::new(e.status, kind, Some(e.code), None, e.message)
    }
}

/// Reads a chat-completions body.
pub fn parse_chat(body: &[u8]) -> Result<ChatCall, OaiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        OaiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            None,
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(OaiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            None,
            "the request body must be a JSON object",
        ));
    };
    refuse_unsupported(&obj)?;
    let model = match field(&obj, "model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(type_error("model", "a non-empty string")),
        None => return Err(missing("model")),
    };
    let messages = match field(&obj, "messages") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(type_error("messages", "an array")),
        None => return Err(missing("messages")),
    };
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(OaiError::invalid(
            "messages",
            "invalid_value",
            format!("messages: between 1 and {MAX_MESSAGES} messages are needed"),
        ));
    }
    // `max_completion_tokens` is OpenAI's current name, `max_tokens` the older one.
    let max_tokens = match uint(&obj, "max_completion_tokens")? {
        Some(n) => Some(("max_completion_tokens", n)),
        None => uint(&obj, "max_tokens")?.map(|n| ("max_tokens", n)),
    };
    let max_tokens = match max_tokens {
        Some((param, n)) if n == 0 || n > MAX_TOKENS as u64 => {
            return Err(OaiError::invalid(
                param,
                "invalid_value",
                format!("{param}: {n} is out of range; between 1 and {MAX_TOKENS} allowed"),
            ))
        }
        other => other.map(|(_, n)| n as u32),
    };
    // `+ 0.0` turns -0 into +0: one greedy request, one canonical encoding.
    let temperature = float(&obj, "temperature")?.unwrap_or(1.0) + 0.0;
    if !(0.0..=2.0).contains(&temperature) {
        return Err(OaiError::invalid(
            "temperature",
            "invalid_value",
            format!("temperature: {temperature} is out of range; between 0 and 2 allowed"),
        ));
    }
    let top_p = float(&obj, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(OaiError::invalid(
            "top_p",
            "invalid_value",
            format!("top_p: {top_p} is out of range; (0, 1] allowed"),
        ));
    }
    let top_k = match uint(&obj, "top_k")? {
        None => 0,
        Some(k) => u32::try_from(k)
            .map_err(|_| OaiError::invalid("top_k", "invalid_value", "top_k: too large"))?,
    };
    let seed = match field(&obj, "seed") {
        None => None,
        // OpenAI's seed is any 64-bit integer; negative ones keep their two's-complement bits.
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .or_else(|| n.as_i64().map(|v| v as u64))
                .ok_or_else(|| type_error("seed", "an integer"))?,
        ),
        Some(_) => return Err(type_error("seed", "an integer")),
    };
    let stop = match field(&obj, "stop") {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error("stop", "a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(type_error("stop", "a string or an array of strings")),
    };
    if stop.len() > MAX_STOPS
        || stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
    {
        return Err(OaiError::invalid(
            "stop",
            "invalid_value",
            format!("stop: at most {MAX_STOPS} strings of 1 to {MAX_STOP_BYTES} bytes"),
        ));
    }
    let json_object = match field(&obj, "response_format") {
        None => false,
        Some(Value::Object(f)) => match f.get("type").and_then(Value::as_str) {
            Some("text") => false,
            Some("json_object") => true,
            Some(other) => {
                let message = format!(
                    "response_format.type `{other}` is not supported; use text or json_object"
                );
                return Err(OaiError::unsupported("response_format.type", message));
            }
            None => return Err(type_error("response_format.type", "a string")),
        },
        Some(_) => return Err(type_error("response_format", "an object")),
    };
    let stream = boolean(&obj, "stream")?.unwrap_or(false);
    let include_usage = match field(&obj, "stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(type_error("stream_options.include_usage", "a boolean")),
        },
        Some(_) => return Err(type_error("stream_options", "an object")),
    };
    Ok(ChatCall {
        model,
        messages,
        max_tokens,
        temperature,
        top_p,
        top_k,
        seed,
        stop,
        json_object,
        stream,
        include_usage,
    })
}

/// A field's value, `null` counting as absent (as OpenAI reads it).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn missing(param: &str) -> OaiError {
    OaiError::invalid(
        param,
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
    )
}

fn type_error(param: &str, expected: &str) -> OaiError {
    OaiError::invalid(
        param,
        "invalid_type",
        format!("Invalid type for '{param}': expected {expected}."),
    )
}

fn uint(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, OaiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::Number(n)) if n.as_i64().is_some() => Err(OaiError::invalid(
            name,
            "invalid_value",
            format!("{name}: {n} is out of range; it cannot be negative"),
        )),
        Some(_) => Err(type_error(name, "an integer")),
    }
}

fn float(obj: &Map<String, Value>, name: &str) -> Result<Option<f32>, OaiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|v| v as f32)),
        Some(_) => Err(type_error(name, "a number")),
    }
}

fn boolean(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, OaiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(type_error(name, "a boolean")),
    }
}

/// Known OpenAI parameters whose non-default values this node cannot honour.
fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), OaiError> {
    let is_empty = |v: &Value| match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match field(obj, "n") {
        None => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(OaiError::unsupported(
                "n",
                format!("n: {v} choices asked; this node generates exactly 1 (n = 1)"),
            ))
        }
    }
    for name in ["tools", "functions"] {
        if field(obj, name).is_some_and(|v| !is_empty(v)) {
            return Err(OaiError::unsupported(
                name,
                format!("{name}: tool and function calling are not supported"),
            ));
        }
    }
    if let Some(v) = field(obj, "tool_choice") {
        if v.as_str() != Some("none") && v.as_str() != Some("auto") {
            return Err(OaiError::unsupported(
                "tool_choice",
                "tool_choice: tool calling is not supported",
            ));
        }
    }
    if field(obj, "logprobs").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(OaiError::unsupported(
            "logprobs",
            "logprobs: log probabilities are not returned by this node",
        ));
    }
    if field(obj, "top_logprobs").is_some_and(|v| v.as_u64() != Some(0)) {
        return Err(OaiError::unsupported(
            "top_logprobs",
            "top_logprobs: log probabilities are not returned by this node",
        ));
    }
    for name in ["presence_penalty", "frequency_penalty"] {
        if field(obj, name).is_some_and(|v| v.as_f64() != Some(0.0)) {
            return Err(OaiError::unsupported(
                name,
                format!("{name}: penalties are not supported (only 0)"),
            ));
        }
    }
    if field(obj, "logit_bias").is_some_and(|v| !is_empty(v)) {
        return Err(OaiError::unsupported(
            "logit_bias",
            "logit_bias: not supported",
        ));
    }
    if field(obj, "audio").is_some() {
        return Err(OaiError::unsupported("audio", "audio: output is text only"));
    }
    if let Some(m) = field(obj, "modalities") {
        if m.as_array()
            .is_none_or(|a| a.iter().any(|x| x.as_str() != Some("text")))
        {
            return Err(OaiError::unsupported(
                "modalities",
                "modalities: only [\"text\"] is supported",
            ));
        }
    }
    Ok(())
}

/// One message. `developer` (OpenAI's newer name for `system`) is read as `system`; content is
/// a string or an array of `text` parts (joined with newlines); an assistant message may have
/// null content.
fn message(i: usize, m: &Value) -> Result<ChatMessage, OaiError> {
    let p = |f: &str| format!("messages[{i}]{f}");
    let Value::Object(m) = m else {
        return Err(type_error(&p(""), "an object"));
    };
    let role = match m.get("role") {
        Some(Value::String(r)) => r.as_str(),
        Some(_) => return Err(type_error(&p(".role"), "a string")),
        None => return Err(missing(&p(".role"))),
    };
    let role = match role {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" | "function" => {
            return Err(OaiError::unsupported(
                &p(".role"),
                format!(
                    "{}: role `{role}` is not supported (no tool calling)",
                    p(".role")
                ),
            ))
        }
        other => {
            return Err(OaiError::invalid(
                &p(".role"),
                "invalid_value",
                format!(
                    "{}: `{other}` is not one of system, developer, user, assistant",
                    p(".role")
                ),
            ))
        }
    };
    if field(m, "tool_calls").is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(OaiError::unsupported(
            &p(".tool_calls"),
            "tool calls are not supported",
        ));
    }
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| text_part(&p(&format!(".content[{j}]")), part))
            .collect::<Result<Vec<_>, _>>()?
            .join("\n"),
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None => return Err(missing(&p(".content"))),
        Some(_) => {
            return Err(type_error(
                &p(".content"),
                "a string or an array of text parts",
            ))
        }
    };
    Ok(ChatMessage {
        role: role.into(),
        content,
    })
}

fn text_part(param: &str, part: &Value) -> Result<String, OaiError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => part
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| type_error(&format!("{param}.text"), "a string")),
        Some(other) => Err(OaiError::unsupported(
            &format!("{param}.type"),
            format!("content parts of type `{other}` are not supported; only `text`"),
        )),
        None => Err(type_error(&format!("{param}.type"), "a string")),
    }
}

/// Maps a [`verity_core::ChatRequest::validate`] error (`"field: reason"`) to the parameter it names.
pub fn validation_error(message: String) -> OaiError {
    let text = message
        .strip_prefix("malformed canonical encoding: ")
        .unwrap_or(&message)
        .to_string();
    let param = text
        .split_once(':')
        .map(|(p, _)| p.to_string())
        .filter(|p| !p.contains(' '))
        .unwrap_or_else(|| "messages".into());
    OaiError::invalid(&param, "invalid_value", text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use verity_core::ModelId;

    fn parse(v: Value) -> Result<ChatCall, OaiError> {
        parse_chat(v.to_string().as_bytes())
    }

    fn param_of(v: Value) -> (u16, Option<String>) {
        let e = parse(v).expect_err("should be refused");
        (e.status.as_u16(), e.param)
    }

    #[test]
    fn reads_openai_defaults_and_extensions() {
        let c = parse(json!({
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Hi"}],
            "unknown_field": {"is": "ignored"},
            "n": 1, "logprobs": false, "tools": [], "presence_penalty": 0,
        }))
        .unwrap();
        assert_eq!(
            (c.temperature, c.top_p, c.top_k, c.seed, c.max_tokens),
            (1.0, 1.0, 0, None, None)
        );
        assert!(!c.stream && !c.json_object && c.stop.is_empty());
        let c = parse(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Really."}]},
                {"role": "user", "content": "Hi", "name": "ann"},
                {"role": "assistant", "content": null},
            ],
            "max_tokens": 7, "max_completion_tokens": 9, "temperature": 0, "top_p": 0.5,
            "top_k": 40, "seed": -1, "stop": "\n", "response_format": {"type": "json_object"},
            "stream": true, "stream_options": {"include_usage": true},
        }))
        .unwrap();
        assert_eq!(c.messages[0].role, "system");
        assert_eq!(c.messages[0].content, "Be brief.\nReally.");
        assert_eq!(c.messages[2].content, "");
        assert_eq!(c.max_tokens, Some(9));
        assert_eq!((c.temperature, c.top_p, c.top_k), (0.0, 0.5, 40));
        assert_eq!(c.seed, Some(u64::MAX));
        assert_eq!(c.stop, ["\n"]);
        assert!(c.json_object && c.stream && c.include_usage);
        let r = c.to_request(ModelId([1; 32]), 9, 5);
        assert_eq!(r.seed, u64::MAX);
        r.validate().unwrap();
    }

    #[test]
    fn refusals_name_the_parameter() {
        let base = |extra: Value| {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = [
            (json!({"n": 2}), "n"),
            (json!({"temperature": 5}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"max_tokens": 100000}), "max_tokens"),
            (json!({"max_tokens": -1}), "max_tokens"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "Hi"}), "messages"),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0].type",
            ),
            (json!({"tools": [{"type": "function"}]}), "tools"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stop": 3}), "stop"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.type",
            ),
            (json!({"seed": 1.5}), "seed"),
            (json!({"model": 3}), "model"),
            (json!({"stream": "yes"}), "stream"),
        ];
        for (extra, param) in cases {
            let v = base(extra.clone());
            assert_eq!(param_of(v), (400, Some(param.to_string())), "{extra}");
        }
        assert_eq!(
            param_of(json!({"messages": [{"role": "user", "content": "Hi"}]})),
            (400, Some("model".into()))
        );
        let e = parse_chat(b"{not json").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, Some("invalid_json")));
        let e = parse_chat(b"[1]").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let body = e.body();
        for key in ["message", "type", "param", "code"] {
            assert!(body["error"].get(key).is_some(), "{body}");
        }
    }

    #[test]
    fn validation_errors_name_their_field() {
        let e = validation_error(
            "malformed canonical encoding: messages: 70000 bytes, at most 65536".into(),
        );
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = validation_error("messages[2].role: \"x\" is not system".into());
        assert_eq!(e.param.as_deref(), Some("messages[2].role"));
    }
}
