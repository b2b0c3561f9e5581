//! The chat entry point: a loaded model, its tokenizer and template, and the generation loop
//! (prompt, sampling, stop strings, JSON constraint, streamed text).

use crate::chat_template::{ChatTemplate, ChatTemplateError, Message};
use crate::json::{JsonState, TokenTrie};
use crate::model::{Model, ModelError};
use crate::sample::Sampler;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::Gguf;
use std::sync::OnceLock;
use thiserror::Error;
use verity_core::{ChatMessage, ChatRequest, FinishReason, Hash};

/// Name and version that go into receipts as the engine. Any change to the numerics of
/// `docs/llm-semantics.md` must bump the version.
pub const RUNTIME_NAME: &str = "verity-llm";
pub const RUNTIME_VERSION: &str = "1";

/// Longest prompt plus generation this runtime serves, whatever the model allows: it bounds a
/// generation's KV cache (SmolLM2-135M: 94 MB at 2,048 tokens).
pub const MAX_CONTEXT: usize = 2048;

/// Prompt tokens run per forward batch.
const PROMPT_CHUNK: usize = 64;

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

impl From<ModelError> for LlmError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Gguf(e) => LlmError::Gguf(e),
            e => LlmError::Unsupported(e.to_string()),
        }
    }
}

impl From<TokenizerError> for LlmError {
    fn from(e: TokenizerError) -> Self {
        LlmError::Unsupported(format!("tokenizer: {e}"))
    }
}

impl From<ChatTemplateError> for LlmError {
    fn from(e: ChatTemplateError) -> Self {
        LlmError::InvalidRequest(format!("chat template: {e}"))
    }
}

/// What a generation produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// Every sampled token, including the end-of-turn token when there is one.
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// BLAKE3 over the bits of every logit vector computed, in order: a fingerprint of the
    /// whole computation, for determinism tests.
    pub logits_hash: Hash,
}

/// A rendered and tokenized chat prompt, kept with the messages it was made from so that it
/// can only serve a request with those messages.
pub struct Prompt {
    messages: Vec<ChatMessage>,
    tokens: Vec<u32>,
}

impl Prompt {
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

fn validate(request: &ChatRequest) -> Result<(), LlmError> {
    request
        .validate()
        .map_err(|e| LlmError::InvalidRequest(e.to_string()))
}

/// A loaded GGUF llama model, ready to serve chats. Shareable across threads.
pub struct Llm {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Built on the first JSON-constrained request.
    json_tokens: OnceLock<TokenTrie>,
}

impl Llm {
    /// Parses and checks a GGUF file and prepares its weights.
    pub fn load(bytes: &[u8]) -> Result<Llm, LlmError> {
        let g = Gguf::parse(bytes)?;
        let model = Model::from_gguf(&g)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        if tokenizer.vocab_size() != model.config.vocab {
            return Err(LlmError::Unsupported(format!(
                "{} tokens in the vocabulary, {} embedding rows",
                tokenizer.vocab_size(),
                model.config.vocab
            )));
        }
        let template = ChatTemplate::from_gguf(&g)
            .map_err(|e| LlmError::Unsupported(format!("chat template: {e}")))?;
        Ok(Llm {
            model,
            tokenizer,
            template,
            json_tokens: OnceLock::new(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat prompt (template applied, generation prompt added), tokenized.
    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<Prompt, LlmError> {
        let rendered: Vec<Message> = messages
            .iter()
            .map(|m| Message::new(&m.role, &m.content))
            .collect();
        let text = self.template.render(&rendered, true)?;
        let mut tokens = vec![];
        if self.tokenizer.add_bos() {
            tokens.push(self.tokenizer.bos());
        }
        tokens.extend(self.tokenizer.encode(&text, true));
        if tokens.is_empty() {
            return Err(LlmError::InvalidRequest(
                "the chat template gave an empty prompt".into(),
            ));
        }
        Ok(Prompt {
            messages: messages.to_vec(),
            tokens,
        })
    }

    /// Longest prompt plus generation, in tokens.
    pub fn context_length(&self) -> usize {
        self.model.config.context_length.min(MAX_CONTEXT)
    }

    /// Runs a chat request. `on_text` receives the text as it is generated, in pieces that
    /// are whole UTF-8 and never part of a stop string; returning `false` cancels.
    pub fn generate(
        &self,
        request: &ChatRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        validate(request)?;
        let prompt = self.prompt(&request.messages)?;
        self.generate_from(request, &prompt, on_text)
    }

    /// [`Llm::generate`] from a prompt already made for the request's messages (a server
    /// that needed the prompt's length first does not render and tokenize it twice).
    pub fn generate_from(
        &self,
        request: &ChatRequest,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LlmError> {
        validate(request)?;
        if prompt.messages != request.messages {
            return Err(LlmError::InvalidRequest(
                "the prompt was made for other messages".into(),
            ));
        }
        let prompt = &prompt.tokens;
        let needed = prompt.len() + request.max_tokens as usize;
        if needed > self.context_length() {
            return Err(LlmError::ContextFull {
                needed,
                limit: self.context_length(),
            });
        }
        let sampler = Sampler {
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            seed: request.seed,
        };
        let mut fingerprint = blake3::Hasher::new_derive_key("verity/llm-logits/v1");
        let mut cache = self.model.new_cache();
        // The prompt goes in chunks, which bounds the batch buffers; chunking does not change
        // a bit (a batch computes exactly what token-at-a-time does).
        let mut logits = vec![];
        for chunk in prompt.chunks(PROMPT_CHUNK) {
            logits = self.model.forward(chunk, &mut cache, false);
        }
        let mut json = request.json_object.then(|| (JsonState::new(), vec![]));
        let mut text = TextStream::new(&request.stop);
        let mut tokens = vec![];
        let mut finish = FinishReason::Length;
        for step in 0..request.max_tokens as u64 {
            let bytes: Vec<u8> = logits.iter().flat_map(|l| l.to_le_bytes()).collect();
            fingerprint.update(&bytes);
            let allowed = match &mut json {
                Some((state, mask)) => {
                    self.json_trie().allowed(state, mask);
                    Some(&mask[..])
                }
                None => None,
            };
            let Some(token) = sampler.pick(&logits, allowed, step) else {
                finish = FinishReason::Stop;
                break;
            };
            tokens.push(token);
            if self.tokenizer.is_control(token) {
                finish = FinishReason::Stop;
                break;
            }
            let bytes = self.tokenizer.token_bytes(token);
            if let Some((state, _)) = &mut json {
                // The mask only allowed tokens the state accepts whole.
                for b in bytes {
                    state.push(*b);
                }
            }
            let stopped = text.push(bytes, on_text)?;
            if stopped || json.as_ref().is_some_and(|(s, _)| s.is_complete()) {
                finish = FinishReason::Stop;
                break;
            }
            if step + 1 < request.max_tokens as u64 {
                logits = self.model.forward(&[token], &mut cache, false);
            }
        }
        let text = text.finish(on_text)?;
        Ok(Generation {
            prompt_tokens: prompt.len(),
            tokens,
            text,
            finish_reason: finish,
            logits_hash: Hash(*fingerprint.finalize().as_bytes()),
        })
    }

    /// Token bytes for the JSON constraint; control tokens get none, so they are never allowed.
    fn json_trie(&self) -> &TokenTrie {
        self.json_tokens.get_or_init(|| {
            let bytes: Vec<&[u8]> = (0..self.tokenizer.vocab_size() as u32)
                .map(|t| match self.tokenizer.is_control(t) {
                    true => &[][..],
                    false => self.tokenizer.token_bytes(t),
                })
                .collect();
            TokenTrie::new(&bytes)
        })
    }
}

/// Generated bytes on their way out as text: held back while they may still begin a stop
/// string or end inside a UTF-8 character, cut at the first stop string.
struct TextStream<'a> {
    bytes: Vec<u8>,
    sent: usize,
    stops: &'a [String],
}

impl<'a> TextStream<'a> {
    fn new(stops: &'a [String]) -> Self {
        TextStream {
            bytes: vec![],
            sent: 0,
            stops,
        }
    }

    /// Adds a token's bytes and sends what is safe; `true` when a stop string appeared.
    fn push(
        &mut self,
        bytes: &[u8],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<bool, LlmError> {
        let from = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        // A stop string that ends in the new bytes starts at most its length before them.
        let longest = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let search = from
            .saturating_sub(longest.saturating_sub(1))
            .max(self.sent);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| find(&self.bytes[search..], s.as_bytes()).map(|i| search + i))
            .min();
        if let Some(at) = first_stop {
            self.bytes.truncate(at);
            return Ok(true);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let held = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).rev().map(move |n| &s.as_bytes()[..n]))
            .filter(|p| self.bytes[self.sent..].ends_with(p))
            .map(|p| p.len())
            .max()
            .unwrap_or(0);
        self.send(self.bytes.len() - held, false, on_text)?;
        Ok(false)
    }

    /// Sends whole characters up to `end` (invalid bytes as U+FFFD, exactly as lossy UTF-8
    /// decoding of the whole text does); an unfinished character waits unless `last`.
    fn send(
        &mut self,
        end: usize,
        last: bool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), LlmError> {
        let mut out = String::new();
        while self.sent < end {
            match std::str::from_utf8(&self.bytes[self.sent..end]) {
                Ok(s) => {
                    out.push_str(s);
                    self.sent = end;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.bytes[self.sent..self.sent + valid])
                            .unwrap_or_default(),
                    );
                    self.sent += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            self.sent += n;
                        }
                        None if last => {
                            out.push('\u{FFFD}');
                            self.sent = end;
                        }
                        None => break,
                    }
                }
            }
        }
        if !out.is_empty() && !on_text(&out) {
            return Err(LlmError::Cancelled);
        }
        Ok(())
    }

    /// Sends the rest and returns the whole text.
    fn finish(mut self, on_text: &mut dyn FnMut(&str) -> bool) -> Result<String, LlmError> {
        self.send(self.bytes.len(), true, on_text)?;
        Ok(String::from_utf8_lossy(&self.bytes).into_owned())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut sent = vec![];
        let mut t = TextStream::new(&stops);
        let mut stopped = false;
        for p in pieces {
            if t.push(p, &mut |s| {
                sent.push(s.to_string());
                true
            })
            .unwrap()
            {
                stopped = true;
                break;
            }
        }
        let text = t
            .finish(&mut |s| {
                sent.push(s.to_string());
                true
            })
            .unwrap();
        (sent, text, stopped)
    }

    #[test]
    fn text_is_sent_whole_and_never_shows_a_stop_string() {
        let (sent, text, stopped) = stream(&["END"], &[b"ab", b"cE", b"N", b"D", b"x"]);
        assert_eq!((text.as_str(), stopped), ("abc", true));
        assert_eq!(sent.concat(), "abc");
        // A held-back prefix that turns out not to be a stop string is sent later.
        let (sent, text, stopped) = stream(&["END"], &[b"aE", b"Nx"]);
        assert_eq!((text.as_str(), stopped), ("aENx", false));
        assert_eq!(sent, vec!["a", "ENx"]);
        // A character split across tokens waits for its last byte; invalid bytes become U+FFFD
        // just as in the final text.
        let e = "é".as_bytes();
        let (sent, text, _) = stream(&[], &[&e[..1], &e[1..], b"\xff!", b"\xc3"]);
        assert_eq!(sent, vec!["é", "\u{FFFD}!", "\u{FFFD}"]);
        assert_eq!(sent.concat(), text);
        // A stop string spanning three tokens.
        let (_, text, stopped) = stream(&["\n\n"], &[b"hi\n", b"\nthere"]);
        assert_eq!((text.as_str(), stopped), ("hi", true));
    }

    #[test]
    fn cancelling_stops_the_stream() {
        let mut t = TextStream::new(&[]);
        assert!(matches!(
            t.push(b"abc", &mut |_| false),
            Err(LlmError::Cancelled)
        ));
    }
}
