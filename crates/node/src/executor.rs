//! Loads models from the blob store (re-checking their hash) and runs them on the right engine.

use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use verity_core::{EngineId, Hash, ModelFormat, ModelId, ModelManifest, TensorMap};
use verity_engine::canonical::CanonicalModel;
use verity_engine::float_engine::{self, FloatModel};
use verity_engine::{exec, EngineError, Interpreter};

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

pub struct Executor {
    store: Arc<Store>,
    cache: Mutex<HashMap<ModelId, Arc<Loaded>>>,
}

impl Executor {
    pub fn new(store: Arc<Store>) -> Executor {
        Executor {
            store,
            cache: Mutex::new(HashMap::new()),
        }
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
        let bytes = std::fs::read(self.store.blob_path(&m.id)).map_err(|e| {
            EngineError::InvalidModel(format!("model bytes for {} unavailable: {e}", m.id))
        })?;
        if ModelId::of_bytes(&bytes) != m.id {
            return Err(EngineError::InvalidModel(format!(
                "stored bytes of {} do not match its id",
                m.id
            )));
        }
        let loaded = Arc::new(match m.format {
            ModelFormat::VerityInt8 => {
                Loaded::Canonical(Interpreter::new(CanonicalModel::decode(&bytes)?))
            }
            ModelFormat::Onnx => Loaded::Float(Box::new(FloatModel::load(&bytes)?)),
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
