//! Elementwise activations (Relu, Sigmoid, Tanh) and Softmax over the last axis: one input,
//! one output of the same shape.

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::{FOp, ValueId};
use crate::onnx::attr_i;
use crate::proto::NodeProto;

pub(super) fn relu(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    same_shape(lw, node, |x, y| FOp::Relu { x, y })
}

pub(super) fn sigmoid(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    same_shape(lw, node, |x, y| FOp::Sigmoid { x, y })
}

pub(super) fn tanh(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    same_shape(lw, node, |x, y| FOp::Tanh { x, y })
}

pub(super) fn softmax(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let rank = lw.shapes[x].len() as i64;
    let axis = attr_i(node, "axis", -1);
    if axis != -1 && axis != rank - 1 {
        return Err(EngineError::Unsupported(format!(
            "Softmax `{}` over axis {axis} (only the last axis)",
            node.name
        )));
    }
    same_shape(lw, node, |x, y| FOp::Softmax { x, y })
}

/// Pushes `make(x, y)` with a new value `y` shaped like input 0.
fn same_shape(
    lw: &mut Lowering,
    node: &NodeProto,
    make: fn(ValueId, ValueId) -> FOp,
) -> Result<()> {
    let x = lw.value(node, 0)?;
    let y = lw.new_value(lw.shapes[x].clone());
    lw.push(make(x, y));
    lw.bind(node, y);
    Ok(())
}
