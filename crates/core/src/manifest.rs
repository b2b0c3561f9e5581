//! What the hub records about a published model.

use crate::hash::{Hash, ModelId};
use crate::keys::PublicKey;
use crate::tensor::DType;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// A float ONNX graph, served in `signed` mode by the float engine.
    Onnx,
    /// Verity's canonical int8 model (docs/canonical-semantics.md), bit-exact everywhere.
    VerityInt8,
}

/// A named tensor's type. `None` in a shape is a dimension the model leaves free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<usize>>,
}

impl TensorSpec {
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect();
        format!("[{}]", dims.join(", "))
    }

    pub fn accepts(&self, dtype: DType, shape: &[usize]) -> bool {
        dtype == self.dtype
            && shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, want)| want.is_none_or(|w| w == got))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub id: ModelId,
    pub name: String,
    pub version: String,
    pub format: ModelFormat,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Operator types in the graph, sorted and deduplicated.
    pub operators: Vec<String>,
    pub size: u64,
    pub publisher: PublicKey,
    pub created_at_ms: u64,
    /// For a canonical model made from a float one: the float model's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ModelId>,
    /// For a canonical model made by calibration: hash of the calibration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_hash: Option<Hash>,
    /// For a float model that was quantized at publish time: the canonical model's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<ModelId>,
}
