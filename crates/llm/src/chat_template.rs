//! The model's own chat template (`tokenizer.chat_template`, Jinja) rendered with MiniJinja the
//! way Hugging Face and llama.cpp render it: blocks trimmed (`trim_blocks`, `lstrip_blocks`),
//! and the variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token` plus the
//! `raise_exception` function that templates call to refuse a conversation.

use crate::gguf::Gguf;
use minijinja::{context, Environment, Error, ErrorKind, Value};

const TEMPLATE: &str = "tokenizer.chat_template";

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("metadata `{0}` is missing or not a string")]
    Metadata(&'static str),
    #[error("metadata `{key}`: id {id} is outside the vocabulary")]
    TokenId { key: &'static str, id: u64 },
    #[error("chat template: the rendered prompt exceeds {MAX_RENDERED_BYTES} bytes")]
    TooLong,
    #[error("chat template: {0:#}")]
    Template(#[from] Error),
}

/// Template instructions one rendering may execute; SmolLM2's template needs a few hundred
/// per message.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Largest prompt a rendering may produce. Messages are at most 64 KiB in all, so an honest
/// template stays far below; a hostile one that loops is stopped at this size, not at the
/// node's memory.
pub const MAX_RENDERED_BYTES: usize = 1 << 20;

/// Collects the rendering, refusing to grow past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedOutput {
    text: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One turn of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> Message<'a> {
    pub fn new(role: &'a str, content: &'a str) -> Message<'a> {
        Message { role, content }
    }
}

/// A compiled chat template with the BOS and EOS texts it may use.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// `raise_exception(msg)`: the template's way to reject its input; it becomes an error.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// The text of the token whose id is stored under `key` ("" when the key is absent, as
/// llama.cpp passes it).
fn token_text(g: &Gguf, key: &'static str) -> Result<String, ChatTemplateError> {
    let Some(v) = g.metadata.get(key) else {
        return Ok(String::new());
    };
    let id = v.as_u64().ok_or(ChatTemplateError::Metadata(key))?;
    let tokens = g
        .get("tokenizer.ggml.tokens")
        .ok()
        .and_then(|t| t.as_array())
        .ok_or(ChatTemplateError::Metadata("tokenizer.ggml.tokens"))?;
    let text = usize::try_from(id)
        .ok()
        .and_then(|i| tokens.get(i))
        .ok_or(ChatTemplateError::TokenId { key, id })?;
    text.as_str()
        .map(str::to_owned)
        .ok_or(ChatTemplateError::Metadata("tokenizer.ggml.tokens"))
}

impl ChatTemplate {
    /// Reads and compiles the GGUF's chat template; a syntax error is reported here.
    pub fn from_gguf(g: &Gguf) -> Result<ChatTemplate, ChatTemplateError> {
        let source = g
            .get_str(TEMPLATE)
            .map_err(|_| ChatTemplateError::Metadata(TEMPLATE))?;
        ChatTemplate::new(
            source,
            &token_text(g, "tokenizer.ggml.bos_token_id")?,
            &token_text(g, "tokenizer.ggml.eos_token_id")?,
        )
    }

    /// Compiles a template given as text.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template comes with a published model: bound its work (deterministically, so a
        // refusal is the same on every node).
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_owned())?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The prompt for `messages`; with `add_generation_prompt` it ends where the assistant's
    /// reply begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_iter([
                    ("role", Value::from(m.role)),
                    ("content", Value::from(m.content)),
                ])
            })
            .collect();
        let template = self.env.get_template("chat")?;
        let mut out = CappedOutput::default();
        let rendered = template.render_captured_to(
            context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            },
            &mut out,
        );
        if out.overflowed {
            return Err(ChatTemplateError::TooLong);
        }
        rendered?;
        String::from_utf8(out.text).map_err(|_| {
            ChatTemplateError::Template(Error::new(
                ErrorKind::BadSerialization,
                "the rendered prompt is not UTF-8",
            ))
        })
    }
}
