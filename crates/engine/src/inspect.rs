//! Describing a model file offline: format, id, inputs, outputs, operators, and whether it
//! can be made canonical.

use crate::canonical::{is_canonical_file, CanonicalModel};
use crate::cost::Cost;
use crate::error::{EngineError, Result};
use crate::lower::InputShapes;
use crate::{lower, onnx};
use serde::Serialize;
use verity_core::{DType, ModelFormat, ModelId, TensorSpec};

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub id: ModelId,
    pub format: ModelFormat,
    pub size: u64,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub operators: Vec<String>,
    /// `Ok` if the file is canonical or can be quantized to canonical form; otherwise why not.
    pub canonical: std::result::Result<(), String>,
    /// What one inference costs, when the shapes are known (canonical, or lowerable ONNX).
    pub cost: Option<Cost>,
}

/// Parses `bytes` as a Verity int8 model or an ONNX model. Anything else is an error.
pub fn inspect(bytes: &[u8]) -> Result<Inspection> {
    inspect_shaped(bytes, &InputShapes::new())
}

/// [`inspect`], with an ONNX model's input shapes fixed as given (a publisher's declaration):
/// whether it can be made canonical, and its cost, are judged at those shapes.
pub fn inspect_shaped(bytes: &[u8], fixed: &InputShapes) -> Result<Inspection> {
    let id = ModelId::of_bytes(bytes);
    let size = bytes.len() as u64;
    if is_canonical_file(bytes) {
        let m = CanonicalModel::decode(bytes)?;
        let spec = |name: &str, v: usize| TensorSpec {
            name: name.to_string(),
            dtype: DType::F32,
            shape: m.shapes[v].iter().map(|&d| Some(d)).collect(),
        };
        let mut operators: Vec<String> = m.ops.iter().map(|o| o.name().to_string()).collect();
        operators.sort();
        operators.dedup();
        return Ok(Inspection {
            id,
            format: ModelFormat::VerityInt8,
            size,
            inputs: m.inputs.iter().map(|i| spec(&i.name, i.value)).collect(),
            outputs: m.outputs.iter().map(|o| spec(&o.name, o.value)).collect(),
            operators,
            canonical: Ok(()),
            cost: Some(m.cost()),
        });
    }
    let proto = onnx::decode_onnx(bytes)?;
    let summary = onnx::summarize(&proto)?;
    let mut cost = None;
    let canonical = match lower::lower(&proto, fixed) {
        Ok(graph) => {
            cost = Some(graph.cost());
            Ok(())
        }
        Err(
            e @ (EngineError::UnsupportedOps(_)
            | EngineError::Unsupported(_)
            | EngineError::InvalidModel(_)),
        ) => Err(e.to_string()),
        Err(e) => return Err(e),
    };
    Ok(Inspection {
        id,
        format: ModelFormat::Onnx,
        size,
        inputs: summary.inputs,
        outputs: summary.outputs,
        operators: summary.operators,
        canonical,
        cost,
    })
}
