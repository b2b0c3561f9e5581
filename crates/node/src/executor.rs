//! Loads models from the blob store (re-checking their hash) and runs them on the right engine:
//! tensor models on the canonical interpreter or the float engine, GGUF language models on the
//! LLM runtime (through the chat API).

use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use verity_core::{
    DType, EngineId, Hash, ModelFormat, ModelId, ModelManifest, TensorMap, TensorSpec,
};
use verity_engine::canonical::CanonicalModel;
use verity_engine::float_engine::{self, FloatModel};
use verity_engine::{exec, EngineError, Inspection, Interpreter};
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
    })
}

/// Why a chat model could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ChatModelError {
    #[error("{id} is a {format:?} model, not a chat model")]
    NotChat { id: ModelId, format: ModelFormat },
    #[error(transparent)]
    Storage(#[from] EngineError),
    #[error("{0}")]
    Runtime(#[from] LlmError),
}

pub enum Loaded {
    Canonical(Interpreter),
    Float(Box<FloatModel>),
}

pub struct Outcome {
    pub outputs: TensorMap,
    pub trace_root: Option<Hash>,
    pub engine: EngineId,
    pub seconds: f64,
}

/// Language models kept loaded at once; a generation in progress keeps its own model alive.
pub const MAX_LOADED_LLMS: usize = 2;

/// A map that keeps its `capacity` most recently used entries.
struct Recent<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
    clock: u64,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Recent {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(v, used)| {
            *used = clock;
            v.clone()
        })
    }

    fn insert(&mut self, key: K, value: V) {
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key, (value, self.clock));
    }
}

pub struct Executor {
    store: Arc<Store>,
    cache: Mutex<HashMap<ModelId, Arc<Loaded>>>,
    /// The most recently used language models (each holds its weights in memory).
    llms: Mutex<Recent<ModelId, Arc<Llm>>>,
    /// Held while a language model loads, so concurrent first requests load it once.
    llm_loading: Mutex<()>,
}

impl Executor {
    pub fn new(store: Arc<Store>) -> Executor {
        Executor {
            store,
            cache: Mutex::new(HashMap::new()),
            llms: Mutex::new(Recent::new(MAX_LOADED_LLMS)),
            llm_loading: Mutex::new(()),
        }
    }

    /// The model's bytes from the blob store, checked against its id.
    fn read_verified(&self, m: &ModelManifest) -> Result<Vec<u8>, EngineError> {
        let bytes = std::fs::read(self.store.blob_path(&m.id)).map_err(|e| {
            EngineError::InvalidModel(format!("model bytes for {} unavailable: {e}", m.id))
        })?;
        if ModelId::of_bytes(&bytes) != m.id {
            return Err(EngineError::InvalidModel(format!(
                "stored bytes of {} do not match its id",
                m.id
            )));
        }
        Ok(bytes)
    }

    fn cached_llm(&self, id: &ModelId) -> Option<Arc<Llm>> {
        self.llms.lock().ok()?.get(id)
    }

    /// The loaded language model (loaded and cached on first use). Blocking: loading reads
    /// and prepares the whole file.
    pub fn llm(&self, m: &ModelManifest) -> Result<Arc<Llm>, ChatModelError> {
        if m.format != ModelFormat::Gguf {
            return Err(ChatModelError::NotChat {
                id: m.id,
                format: m.format,
            });
        }
        if let Some(l) = self.cached_llm(&m.id) {
            return Ok(l);
        }
        // A poisoned lock only means another load panicked; loading again is safe.
        let _loading = self.llm_loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = self.cached_llm(&m.id) {
            return Ok(l);
        }
        let llm = Arc::new(Llm::load(&self.read_verified(m)?)?);
        if let Ok(mut c) = self.llms.lock() {
            c.insert(m.id, llm.clone());
        }
        Ok(llm)
    }

    fn load(&self, m: &ModelManifest) -> Result<Arc<Loaded>, EngineError> {
        if let Some(l) = self
            .cache
            .lock()
            .map_err(|_| EngineError::Float("cache poisoned".into()))?
            .get(&m.id)
        {
            return Ok(l.clone());
        }
        let bytes = self.read_verified(m)?;
        let loaded = Arc::new(match m.format {
            ModelFormat::VerityInt8 => {
                Loaded::Canonical(Interpreter::new(CanonicalModel::decode(&bytes)?))
            }
            ModelFormat::Onnx => Loaded::Float(Box::new(FloatModel::load(&bytes)?)),
            ModelFormat::Gguf => {
                return Err(EngineError::Unsupported(format!(
                    "{} is a language model: use POST /v1/chat/completions",
                    m.id
                )))
            }
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(m.id, loaded.clone());
        }
        Ok(loaded)
    }

    /// Caches a model already loaded elsewhere (at publish time), so its first inference
    /// does not load it again.
    pub fn warm(&self, id: ModelId, loaded: Loaded) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id, Arc::new(loaded));
        }
    }

    /// Blocking: call from a blocking thread.
    pub fn run(&self, m: &ModelManifest, inputs: &TensorMap) -> Result<Outcome, EngineError> {
        let loaded = self.load(m)?;
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
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn recent_keeps_the_most_recently_used() {
        let mut r = Recent::new(2);
        r.insert("a", 1);
        r.insert("b", 2);
        assert_eq!(r.get(&"a"), Some(1)); // "b" is now the least recently used
        r.insert("c", 3);
        assert_eq!(
            (r.get(&"a"), r.get(&"b"), r.get(&"c")),
            (Some(1), None, Some(3))
        );
        r.insert("c", 4); // replacing evicts nothing
        assert_eq!((r.get(&"a"), r.get(&"c")), (Some(1), Some(4)));
    }
}
