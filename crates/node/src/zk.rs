//! zk mode: the node proves its canonical execution and returns the proof with the receipt.
//! Circuits are compiled (and their preprocessed columns committed) once per model.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use base64::Engine;
use verity_core::{ModelFormat, ModelId, ModelManifest, TensorMap};
use verity_zk::{ZkError, ZkModel};

use crate::error::ApiError;
use crate::store::Store;

/// Compiled circuits kept in memory (a large model's takes tens of MB).
const KEPT: usize = 4;

#[derive(Default)]
pub struct Circuits {
    /// Most recently used last.
    models: Mutex<Vec<(ModelId, Arc<ZkModel>)>>,
}

fn unprovable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_provable", message)
}

impl Circuits {
    /// The model's circuit, compiled on first use. Models the circuit does not cover are
    /// refused before anything runs, naming the operator.
    pub fn get(&self, store: &Store, manifest: &ModelManifest) -> Result<Arc<ZkModel>, ApiError> {
        if manifest.format != ModelFormat::VerityInt8 {
            return Err(unprovable(format!(
                "zk mode proves canonical int8 models; {} is {:?} (publish it with calibration \
                 data and use its canonical id)",
                manifest.id, manifest.format
            )));
        }
        let cached = |models: &mut Vec<(ModelId, Arc<ZkModel>)>| {
            let i = models.iter().position(|(id, _)| *id == manifest.id)?;
            let entry = models.remove(i);
            let zk = entry.1.clone();
            models.push(entry);
            Some(zk)
        };
        if let Some(zk) = cached(&mut self.lock()) {
            return Ok(zk);
        }
        let bytes = std::fs::read(store.blob_path(&manifest.id))
            .map_err(|e| ApiError::internal(format!("model file: {e}")))?;
        let zk = Arc::new(ZkModel::setup(&bytes).map_err(|e| match e {
            ZkError::Unsupported { .. } => unprovable(e.to_string()),
            other => ApiError::internal(other.to_string()),
        })?);
        let mut models = self.lock();
        if models.len() >= KEPT {
            models.remove(0);
        }
        models.push((manifest.id, zk.clone()));
        Ok(zk)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ModelId, Arc<ZkModel>)>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Proves the model's run on `inputs`; the proof, base64-encoded.
pub fn prove(zk: &ZkModel, inputs: &TensorMap) -> Result<String, ApiError> {
    let (_, _, proof) = zk
        .prove(inputs)
        .map_err(|e| ApiError::internal(format!("proving failed: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(proof))
}
