//! Verification by re-execution: run the model named by a receipt on the claimed inputs and
//! require the very same output bytes (and, for canonical models, the same layer trace).

use crate::canonical::{is_canonical_file, CanonicalModel};
use crate::float_engine::FloatModel;
use crate::Interpreter;
use verity_core::tensor::hash_map;
use verity_core::{ModelId, Receipt, TensorMap, VerifyError};

/// What re-execution established.
#[derive(Debug, PartialEq, Eq)]
pub enum Reexecuted {
    /// Canonical int8 model: outputs and trace root are bit-identical (portable guarantee).
    Canonical,
    /// Float model: outputs are bit-identical on this machine's engine and CPU class.
    Float,
}

pub fn reexecute(
    receipt: &Receipt,
    model_bytes: &[u8],
    inputs: &TensorMap,
) -> Result<Reexecuted, VerifyError> {
    let fail = |m: String| VerifyError::Reexecution(m);
    let id = ModelId::of_bytes(model_bytes);
    if id != receipt.model {
        return Err(fail(format!(
            "the model file hashes to {id}, the receipt names {}",
            receipt.model
        )));
    }
    let actual = hash_map(inputs);
    if actual != receipt.input_hash {
        return Err(VerifyError::InputHash {
            claimed: receipt.input_hash,
            actual,
        });
    }
    let (outputs, trace_root, kind) = if is_canonical_file(model_bytes) {
        let m = CanonicalModel::decode(model_bytes).map_err(|e| fail(e.to_string()))?;
        let e = Interpreter::new(m)
            .run(inputs)
            .map_err(|e| fail(e.to_string()))?;
        (e.outputs, Some(e.trace_root), Reexecuted::Canonical)
    } else {
        let m = FloatModel::load(model_bytes).map_err(|e| fail(e.to_string()))?;
        (
            m.run(inputs).map_err(|e| fail(e.to_string()))?,
            None,
            Reexecuted::Float,
        )
    };
    if trace_root != receipt.trace_root {
        return Err(fail(format!(
            "layer trace root differs: local {}, receipt {}",
            trace_root.map_or("none".into(), |h| h.to_hex()),
            receipt.trace_root.map_or("none".into(), |h| h.to_hex())
        )));
    }
    let local = hash_map(&outputs);
    if local != receipt.output_hash || outputs != receipt.outputs {
        return Err(fail(format!(
            "outputs differ: local output hash {local}, receipt {}",
            receipt.output_hash
        )));
    }
    Ok(kind)
}
