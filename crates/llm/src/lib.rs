//! Verity's LLM runtime: llama-architecture GGUF models run bit-exactly on any x86-64 CPU.
//!
//! From the file: the GGUF reader ([`gguf`]), its block formats ([`quant`]), the tokenizer and
//! chat template. The computation: integer block kernels ([`kernels`]), the forward pass with a
//! KV cache ([`model`]), token choice ([`sample`], [`json`]) and the generation loop
//! ([`generate`]). `docs/llm-semantics.md` specifies every operation.

pub mod chat_template;
pub mod generate;
pub mod gguf;
pub mod json;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod sample;
pub mod smollm2;
pub mod tokenizer;

pub use chat_template::{ChatTemplate, ChatTemplateError, Message};
pub use generate::{Generation, Llm, LlmError, Prompt, RUNTIME_NAME, RUNTIME_VERSION};
pub use gguf::{Gguf, GgufError, TensorInfo, Value};
pub use quant::GgmlType;
pub use tokenizer::{Tokenizer, TokenizerError};
