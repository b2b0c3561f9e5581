//! zk mode: the node proves its canonical execution and returns the proof with the receipt.
//! A model's circuit is compiled (and its preprocessed columns committed) once, then kept in
//! the node's model cache like any loaded model.

use crate::cache::{BlobError, ModelCache};
use base64::Engine;
use std::sync::Arc;
use verity_core::{ModelFormat, ModelId, ModelManifest, TensorMap};
use verity_zk::{ZkError, ZkModel};

/// Estimated memory of a compiled circuit per byte of its model file: the preprocessed
/// tables, their low-degree extensions and Merkle trees are many times the weights.
const CIRCUIT_BYTES_PER_MODEL_BYTE: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum ProvingError {
    #[error(
        "zk mode proves canonical int8 models; {id} is {format:?} (publish it with calibration \
         data and use its canonical id)"
    )]
    NotCanonical { id: ModelId, format: ModelFormat },
    /// The circuit does not cover the model (an operator, a scale, table heights).
    #[error("{0}")]
    Unprovable(ZkError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Compiling the circuit failed for another reason than the model.
    #[error("{0}")]
    Setup(ZkError),
    #[error("proving failed: {0}")]
    Prove(ZkError),
}

/// The model's circuit, compiled on first use. Models the circuit does not cover are refused
/// before anything runs, naming the operator. Blocking.
pub fn circuit(models: &ModelCache, m: &ModelManifest) -> Result<Arc<ZkModel>, ProvingError> {
    if m.format != ModelFormat::VerityInt8 {
        return Err(ProvingError::NotCanonical {
            id: m.id,
            format: m.format,
        });
    }
    let estimate = m.size.saturating_mul(CIRCUIT_BYTES_PER_MODEL_BYTE);
    models.load(m, estimate, |bytes| {
        ZkModel::setup(bytes).map_err(|e| match e {
            ZkError::Unsupported { .. } => ProvingError::Unprovable(e),
            other => ProvingError::Setup(other),
        })
    })
}

/// Proves the model's run on `inputs`; the proof, base64-encoded. Blocking.
pub fn prove(zk: &ZkModel, inputs: &TensorMap) -> Result<String, ProvingError> {
    let (_, _, proof) = zk.prove(inputs).map_err(ProvingError::Prove)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(proof))
}
