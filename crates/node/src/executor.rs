//! Models as engines: what a model file is ([`inspect`]), and running it on the right engine
//! (tensor models on the canonical interpreter or the float engine, GGUF language models on
//! the LLM runtime). Loaded engines live in the node's one [`ModelCache`].

use crate::cache::{BlobError, ModelCache};
use std::sync::Arc;
use std::time::Instant;
use verity_core::{
    DType, EngineId, Hash, ModelFormat, ModelId, ModelManifest, TensorMap, TensorSpec,
};
use verity_engine::canonical::CanonicalModel;
use verity_engine::float_engine::{self, FloatModel};
use verity_engine::{exec, CostLimits, EngineError, Inspection, Interpreter};
use verity_llm::{Gguf, Llm, LlmError};

/// GGUF files start with these bytes.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// Describes a model file for the hub: GGUF language models (recognized by their magic) with
/// the LLM runtime's reader, anything else with the engine (canonical int8 or ONNX).
///
/// A GGUF model's manifest states the chat receipt's tensors: the input is the canonical chat
/// request (`request`, u8) and the outputs are `finish_reason` (u8), `text` (u8) and `tokens`
/// (i32); its `operators` are the architecture and the tensor block types.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, EngineError> {
    if !bytes.starts_with(GGUF_MAGIC) {
        return verity_engine::inspect(bytes);
    }
    let invalid = |e: String| EngineError::InvalidModel(format!("GGUF: {e}"));
    let gguf = Gguf::parse(bytes).map_err(|e| invalid(e.to_string()))?;
    let arch = gguf
        .get_str("general.architecture")
        .map_err(|e| invalid(e.to_string()))?;
    let mut operators: Vec<String> = gguf
        .tensors
        .iter()
        .map(|t| t.ty.name().to_string())
        .collect();
    operators.push(arch.to_string());
    operators.sort();
    operators.dedup();
    let spec = |name: &str, dtype| TensorSpec {
        name: name.into(),
        dtype,
        shape: vec![None],
    };
    Ok(Inspection {
        id: ModelId::of_bytes(bytes),
        format: ModelFormat::Gguf,
        size: bytes.len() as u64,
        inputs: vec![spec("request", DType::U8)],
        outputs: vec![
            spec("finish_reason", DType::U8),
            spec("text", DType::U8),
            spec("tokens", DType::I32),
        ],
        operators,
        canonical: Err(
            "a GGUF language model is served by the LLM runtime, not made canonical".into(),
        ),
        cost: None,
    })
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Llm(#[from] LlmError),
    /// A model asked for in a form its format does not have.
    #[error("{id} is a {format:?} model, not {wanted}")]
    WrongFormat {
        id: ModelId,
        format: ModelFormat,
        wanted: &'static str,
    },
}

/// A tensor model ready to run.
pub enum Loaded {
    Canonical(Interpreter),
    Float(Box<FloatModel>),
}

/// Estimated memory of a model loaded from a file of `file_bytes`.
pub fn loaded_bytes(format: ModelFormat, file_bytes: u64) -> u64 {
    match format {
        // The int8 weights plus the i16 copy the kernels read.
        ModelFormat::VerityInt8 => file_bytes.saturating_mul(3),
        // The f32 weights plus the engine's prepared copies.
        ModelFormat::Onnx => file_bytes.saturating_mul(2),
        // The LLM runtime keeps the weights in the file's quantized blocks.
        ModelFormat::Gguf => file_bytes,
    }
}

impl Loaded {
    /// Loads a tensor model whose cost is within `limits` (checked before anything runs).
    pub fn load(m: &ModelManifest, bytes: &[u8], limits: &CostLimits) -> Result<Loaded, ExecError> {
        Ok(match m.format {
            ModelFormat::VerityInt8 => {
                let model = CanonicalModel::decode(bytes)?;
                model.cost().check(limits)?;
                Loaded::Canonical(Interpreter::new(model))
            }
            ModelFormat::Onnx => Loaded::Float(Box::new(FloatModel::load(bytes, limits)?)),
            ModelFormat::Gguf => {
                return Err(ExecError::WrongFormat {
                    id: m.id,
                    format: m.format,
                    wanted: "a tensor model",
                })
            }
        })
    }
}

pub struct Outcome {
    pub outputs: TensorMap,
    pub trace_root: Option<Hash>,
    pub engine: EngineId,
    pub seconds: f64,
}

/// Caches a tensor model loaded elsewhere (at publish time, from a file of `file_bytes`), so
/// its first inference does not load it again.
pub fn keep(models: &ModelCache, id: ModelId, loaded: Loaded, file_bytes: u64) {
    let format = match loaded {
        Loaded::Canonical(_) => ModelFormat::VerityInt8,
        Loaded::Float(_) => ModelFormat::Onnx,
    };
    models.keep(id, loaded, loaded_bytes(format, file_bytes));
}

/// Runs a tensor model on `inputs`. Blocking: call from a blocking thread.
pub fn run(
    models: &ModelCache,
    m: &ModelManifest,
    inputs: &TensorMap,
    limits: &CostLimits,
) -> Result<Outcome, ExecError> {
    let footprint = |_: &Loaded| loaded_bytes(m.format, m.size);
    let loaded = models.load(m, |bytes| Loaded::load(m, bytes, limits), footprint)?;
    let start = Instant::now();
    let (outputs, trace_root, engine) = match &*loaded {
        Loaded::Canonical(i) => {
            let e = i.run(inputs)?;
            (e.outputs, Some(e.trace_root), exec::engine_id())
        }
        Loaded::Float(f) => (f.run(inputs)?, None, float_engine::engine_id()),
    };
    Ok(Outcome {
        outputs,
        trace_root,
        engine,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The loaded language model. Blocking: loading reads and prepares the whole file.
pub fn llm(models: &ModelCache, m: &ModelManifest) -> Result<Arc<Llm>, ExecError> {
    if m.format != ModelFormat::Gguf {
        return Err(ExecError::WrongFormat {
            id: m.id,
            format: m.format,
            wanted: "a chat model",
        });
    }
    let footprint = |_: &Llm| loaded_bytes(m.format, m.size);
    models.load(m, |bytes| Ok(Llm::load(bytes)?), footprint)
}
