//! zk mode: the node proves its canonical execution and returns the proof with the receipt.
//! A model's circuit is compiled (and its preprocessed columns committed) once, then kept in
//! the node's model cache like any loaded model.

use crate::cache::{BlobError, ModelCache};
use base64::Engine;
use std::sync::Arc;
use verity_core::wire::ProofBundle;
use verity_core::{Hash, ModelFormat, ModelId, ModelManifest, TensorMap};
use verity_zk::{ZkError, ZkModel};

/// Estimated memory of a compiled circuit per row of its tables (the preprocessed columns,
/// their low-degree extensions and Merkle trees): 200 to 600 bytes were measured on the
/// digits models, rounded up.
const CIRCUIT_BYTES_PER_ROW: u64 = 1024;

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
    let setup = |bytes: &[u8]| {
        ZkModel::setup(bytes).map_err(|e| match e {
            ZkError::Unsupported { .. } => ProvingError::Unprovable(e),
            other => ProvingError::Setup(other),
        })
    };
    let footprint = |zk: &ZkModel| {
        let rows: usize = zk.tables().iter().map(|(_, height)| height).sum();
        (rows as u64).saturating_mul(CIRCUIT_BYTES_PER_ROW)
    };
    models.load(m, setup, footprint)
}

/// Proves the model's run on `inputs`: the proof's hash and the proof with its inputs, as the
/// node serves it. Blocking.
pub fn prove(zk: &ZkModel, inputs: TensorMap) -> Result<(Hash, ProofBundle), ProvingError> {
    let (_, _, proof) = zk.prove(&inputs).map_err(ProvingError::Prove)?;
    let bundle = ProofBundle {
        inputs,
        proof: base64::engine::general_purpose::STANDARD.encode(&proof),
    };
    Ok((ProofBundle::hash_of(&proof), bundle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BlobError;
    use crate::executor::inspect;
    use crate::store::Store;

    /// The digits MLP in canonical int8, stored as a fetched model would be.
    fn stored_canonical(store: &Store) -> ModelManifest {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let read = |name: &str| std::fs::read(fixtures.join(name)).unwrap();
        let calibration = verity_engine::Calibration::from_json(&read("digits_calib_mlp.json"));
        let model = verity_engine::quantize_onnx(&read("digits_mlp.onnx"), &calibration.unwrap());
        let bytes = model.unwrap().encode();
        let info = inspect(&bytes).unwrap();
        let manifest = ModelManifest {
            id: info.id,
            name: "digits".into(),
            version: "1".into(),
            format: info.format,
            inputs: info.inputs,
            outputs: info.outputs,
            operators: info.operators,
            size: bytes.len() as u64,
            publisher: verity_core::NodeKey::from_seed([1; 32]).public(),
            created_at_ms: 0,
            parent: None,
            calibration_hash: None,
            canonical: None,
        };
        store
            .import(store.blob_from_bytes(&bytes).unwrap(), &manifest)
            .unwrap();
        manifest
    }

    #[test]
    fn circuits_are_compiled_only_from_bytes_that_hash_to_the_model_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let m = stored_canonical(&store);
        let path = store.blob_path(&m.id);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let models = ModelCache::new(store, 1 << 30);
        assert!(matches!(
            circuit(&models, &m),
            Err(ProvingError::Blob(BlobError::Tampered(id))) if id == m.id
        ));
    }
}
