//! What the hub records about a published model.

use crate::encode::Encoder;
use crate::hash::{domain, Hash, ModelId};
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
    /// A GGUF language model, served through the chat API by the LLM runtime.
    Gguf,
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

/// What a publisher signs to claim a model under a name: binds the name, the version, the
/// exact bytes (by id) and the calibration data (if any).
pub fn publish_statement(
    name: &str,
    version: &str,
    id: &ModelId,
    calibration: Option<&Hash>,
) -> Hash {
    let mut e = Encoder::new();
    e.str(name).str(version).fixed32(&id.0);
    match calibration {
        None => e.u8(0),
        Some(h) => e.u8(1).fixed32(&h.0),
    };
    Hash::of(domain::PUBLISH, &e.finish())
}

/// Names are `[A-Za-z0-9._-]{1,64}`, versions are `MAJOR.MINOR` (optionally `.PATCH`).
pub fn validate_name_version(name: &str, version: &str) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(format!(
            "invalid model name `{name}`: use 1-64 of [A-Za-z0-9._-]"
        ));
    }
    let parts: Vec<&str> = version.split('.').collect();
    let version_ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()));
    if !version_ok {
        return Err(format!(
            "invalid version `{version}`: expected X.Y or X.Y.Z"
        ));
    }
    Ok(())
}
