//! Verity's LLM runtime, being built for issue 5. So far: reading GGUF files (metadata and
//! tensor directory, validated against the file's bounds) and the block formats the runtime
//! will compute on (F32, F16, Q4_0, Q4_1, Q8_0). The forward pass, tokenizer and sampling come
//! next; `docs/llm-semantics.md` will specify them.

pub mod chat_template;
pub mod generate;
pub mod gguf;
pub mod json;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod sample;
pub mod tokenizer;

pub use chat_template::{ChatTemplate, ChatTemplateError, Message};
pub use generate::{Generation, Llm, LlmError, RUNTIME_NAME, RUNTIME_VERSION};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
pub use quant::GgmlType;
pub use tokenizer::{Tokenizer, TokenizerError};
