//! Verity's canonical int8 model: the operator list, its parameters and its file format.
//!
//! The file is the model (its BLAKE3 is the model id). Decoding validates every index, length,
//! multiplier and accumulator bound, so the interpreter can never read out of range or overflow,
//! whatever bytes it was given. docs/canonical-semantics.md specifies the arithmetic; the
//! submodules follow its sections: `ops` the operators and rounding rules (§3–4), `format`
//! the VERITYQ8 file (§9), `validate` the admission rules (§6, §9).

mod format;
mod ops;
mod validate;

pub use crate::cost::{Cost, MAX_VALUE_BYTES, MAX_WORK};
pub use format::{is_canonical_file, FORMAT_VERSION, MAGIC};
pub use ops::{add_i8, clamp_i8, QOp, Requant};
pub use validate::check_accumulator;

use crate::ir::ValueId;

/// A graph input: f32 values are quantized as `clamp(round_half_even(x * inv_scale))`.
#[derive(Clone, Debug, PartialEq)]
pub struct QInput {
    pub name: String,
    pub value: ValueId,
    pub inv_scale: f32,
}

/// A graph output: int8 values are dequantized as `q as f32 * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct QOutput {
    pub name: String,
    pub value: ValueId,
    pub scale: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CanonicalModel {
    pub shapes: Vec<Vec<usize>>,
    pub inputs: Vec<QInput>,
    pub outputs: Vec<QOutput>,
    pub ops: Vec<QOp>,
    /// The ONNX operator types of the float model this was made from (for `inspect`).
    pub source_ops: Vec<String>,
}
