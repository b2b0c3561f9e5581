//! Chat generations: the canonical request an LLM answer is bound to, and the tensors a chat
//! receipt carries.
//!
//! A chat receipt is an ordinary [`crate::Receipt`]: its `request_hash` is [`ChatRequest::hash`],
//! its inputs are the canonical request bytes ([`ChatRequest::inputs`]) and its outputs are the
//! generated token ids, the text and the finish reason ([`chat_outputs`]). So the same
//! signature and hash checks apply, and anyone holding the model can re-run the generation.

use crate::encode::{Decoder, Encoder};
use crate::hash::{domain, Hash, ModelId};
use crate::tensor::{DType, Tensor, TensorMap};
use crate::CoreError;
use serde::{Deserialize, Serialize};

/// Version of the canonical chat request encoding.
pub const CHAT_REQUEST_VERSION: u32 = 1;
/// Limits that keep one request's work and size bounded.
pub const MAX_MESSAGES: usize = 256;
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
pub const MAX_TOKENS: u32 = 4096;
pub const MAX_STOPS: usize = 4;
pub const MAX_STOP_BYTES: usize = 64;

/// One chat message. Roles are `system`, `user` or `assistant`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Message count, roles and total size within the limits (checked before any prompt is
/// rendered).
pub fn validate_messages(messages: &[ChatMessage]) -> Result<(), CoreError> {
    let bad = |m: String| Err(CoreError::Malformed(m));
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return bad(format!("messages: between 1 and {MAX_MESSAGES} needed"));
    }
    let mut bytes = 0usize;
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return bad(format!(
                "messages[{i}].role: {:?} is not system, user or assistant",
                m.role
            ));
        }
        bytes += m.content.len();
    }
    if bytes > MAX_PROMPT_BYTES {
        return bad(format!(
            "messages: {bytes} bytes, at most {MAX_PROMPT_BYTES}"
        ));
    }
    Ok(())
}

/// Everything that determines a generation: the model, the messages and every sampling
/// parameter. Two equal requests give the same tokens on every node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub model: ModelId,
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling threshold in (0, 1]; 1 keeps every token.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Seeds the sampler's random stream (unused when greedy).
    pub seed: u64,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Constrain the output to one JSON object.
    pub json_object: bool,
}

impl ChatRequest {
    /// Rejects requests outside the limits, with the offending field named.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::Malformed(m));
        validate_messages(&self.messages)?;
        if self.max_tokens == 0 || self.max_tokens > MAX_TOKENS {
            return bad(format!("max_tokens: between 1 and {MAX_TOKENS} needed"));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature: between 0 and 2 needed".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p: in (0, 1] needed".into());
        }
        if self.stop.len() > MAX_STOPS
            || self
                .stop
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return bad(format!(
                "stop: at most {MAX_STOPS} strings of 1 to {MAX_STOP_BYTES} bytes"
            ));
        }
        Ok(())
    }

    /// The canonical encoding every hash and re-execution starts from.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u32(CHAT_REQUEST_VERSION).fixed32(&self.model.0);
        e.u64(self.messages.len() as u64);
        for m in &self.messages {
            e.str(&m.role).str(&m.content);
        }
        e.u32(self.max_tokens)
            .f32(self.temperature)
            .f32(self.top_p)
            .u32(self.top_k)
            .u64(self.seed);
        e.u64(self.stop.len() as u64);
        for s in &self.stop {
            e.str(s);
        }
        e.u8(self.json_object as u8);
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<ChatRequest, CoreError> {
        let mut d = Decoder::new(bytes);
        let version = d.u32()?;
        if version != CHAT_REQUEST_VERSION {
            return Err(CoreError::Malformed(format!(
                "chat request version {version}"
            )));
        }
        let model = ModelId(d.fixed32()?);
        let mut messages = vec![];
        for _ in 0..d.count(16)? {
            let role = d.str()?.to_string();
            let content = d.str()?.to_string();
            messages.push(ChatMessage { role, content });
        }
        let (max_tokens, temperature, top_p, top_k, seed) =
            (d.u32()?, d.f32()?, d.f32()?, d.u32()?, d.u64()?);
        let mut stop = vec![];
        for _ in 0..d.count(8)? {
            stop.push(d.str()?.to_string());
        }
        let json_object = match d.u8()? {
            0 => false,
            1 => true,
            t => return Err(CoreError::Malformed(format!("json_object flag {t}"))),
        };
        d.expect_end()?;
        Ok(ChatRequest {
            model,
            messages,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            json_object,
        })
    }

    /// The receipt's `request_hash` for this request.
    pub fn hash(&self) -> Hash {
        Hash::of(domain::CHAT_REQUEST, &self.encode())
    }

    /// The receipt's inputs: the canonical request bytes as one `u8` tensor named `request`.
    pub fn inputs(&self) -> TensorMap {
        let bytes = self.encode();
        let mut map = TensorMap::new();
        map.insert("request".into(), u8_tensor(bytes));
        map
    }

    /// Reads the request back from a receipt's inputs (the inverse of [`ChatRequest::inputs`]).
    pub fn from_inputs(inputs: &TensorMap) -> Result<ChatRequest, CoreError> {
        match inputs.get("request") {
            Some(t) if t.dtype() == DType::U8 && inputs.len() == 1 => ChatRequest::decode(t.data()),
            _ => Err(CoreError::Malformed(
                "chat inputs hold exactly one u8 tensor named `request`".into(),
            )),
        }
    }
}

/// Why a generation ended, as OpenAI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-turn token, a stop string, or a completed JSON object.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }

    pub fn parse(s: &str) -> Result<FinishReason, CoreError> {
        match s {
            "stop" => Ok(FinishReason::Stop),
            "length" => Ok(FinishReason::Length),
            _ => Err(CoreError::Malformed(format!("finish reason {s:?}"))),
        }
    }
}

/// A chat receipt's outputs: `tokens` (i32 ids), `text` (UTF-8 bytes) and `finish_reason`.
pub fn chat_outputs(tokens: &[u32], text: &str, finish: FinishReason) -> TensorMap {
    let ids: Vec<u8> = tokens
        .iter()
        .flat_map(|t| (*t as i32).to_le_bytes())
        .collect();
    let mut map = TensorMap::new();
    map.insert(
        "tokens".into(),
        Tensor::from_bytes(DType::I32, vec![tokens.len()], ids)
            .expect("i32 data sized to its shape"),
    );
    map.insert("text".into(), u8_tensor(text.as_bytes().to_vec()));
    map.insert(
        "finish_reason".into(),
        u8_tensor(finish.name().as_bytes().to_vec()),
    );
    map
}

/// A chat receipt's outputs read back: token ids, text and finish reason.
pub fn read_chat_outputs(
    outputs: &TensorMap,
) -> Result<(Vec<u32>, String, FinishReason), CoreError> {
    let bad = |m: &str| CoreError::Malformed(format!("chat outputs: {m}"));
    let get = |name: &str, dtype: DType| match outputs.get(name) {
        Some(t) if t.dtype() == dtype => Ok(t),
        _ => Err(bad(&format!("no {} tensor `{name}`", dtype.name()))),
    };
    let tokens = get("tokens", DType::I32)?
        .data()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let text = String::from_utf8(get("text", DType::U8)?.data().to_vec())
        .map_err(|_| bad("text is not UTF-8"))?;
    let finish = std::str::from_utf8(get("finish_reason", DType::U8)?.data())
        .map_err(|_| bad("finish reason is not UTF-8"))?;
    if outputs.len() != 3 {
        return Err(bad("unexpected tensors"));
    }
    Ok((tokens, text, FinishReason::parse(finish)?))
}

fn u8_tensor(bytes: Vec<u8>) -> Tensor {
    Tensor::from_bytes(DType::U8, vec![bytes.len()], bytes).expect("u8 data sized to its shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    type Change = Box<dyn Fn(&mut ChatRequest)>;

    fn request() -> ChatRequest {
        ChatRequest {
            model: ModelId([7; 32]),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            }],
            max_tokens: 16,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            seed: 42,
            stop: vec!["\n\n".into()],
            json_object: false,
        }
    }

    #[test]
    fn encoding_round_trips_and_every_field_changes_the_hash() {
        let r = request();
        r.validate().unwrap();
        assert_eq!(ChatRequest::decode(&r.encode()).unwrap(), r);
        assert_eq!(ChatRequest::from_inputs(&r.inputs()).unwrap(), r);
        let variants: Vec<Change> = vec![
            Box::new(|r| r.model = ModelId([8; 32])),
            Box::new(|r| r.messages[0].content.push('!')),
            Box::new(|r| r.messages[0].role = "system".into()),
            Box::new(|r| r.max_tokens += 1),
            Box::new(|r| r.temperature = 0.8),
            Box::new(|r| r.top_p = 1.0),
            Box::new(|r| r.top_k = 0),
            Box::new(|r| r.seed = 43),
            Box::new(|r| r.stop.clear()),
            Box::new(|r| r.json_object = true),
        ];
        for change in variants {
            let mut other = request();
            change(&mut other);
            assert_ne!(other.hash(), r.hash());
        }
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(ChatRequest::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn out_of_range_requests_are_rejected() {
        let cases: Vec<Change> = vec![
            Box::new(|r| r.messages.clear()),
            Box::new(|r| r.messages[0].role = "tool".into()),
            Box::new(|r| r.max_tokens = 0),
            Box::new(|r| r.max_tokens = MAX_TOKENS + 1),
            Box::new(|r| r.temperature = -0.1),
            Box::new(|r| r.temperature = f32::NAN),
            Box::new(|r| r.top_p = 0.0),
            Box::new(|r| r.stop = vec!["".into()]),
            Box::new(|r| r.stop = vec!["x".into(); 5]),
            Box::new(|r| r.messages[0].content = "a".repeat(MAX_PROMPT_BYTES + 1)),
        ];
        for change in cases {
            let mut r = request();
            change(&mut r);
            assert!(r.validate().is_err(), "{r:?}");
        }
    }

    #[test]
    fn outputs_round_trip() {
        let map = chat_outputs(&[1, 49151], "héllo", FinishReason::Length);
        let (tokens, text, finish) = read_chat_outputs(&map).unwrap();
        assert_eq!(
            (tokens, text.as_str(), finish),
            (vec![1, 49151], "héllo", FinishReason::Length)
        );
    }
}
