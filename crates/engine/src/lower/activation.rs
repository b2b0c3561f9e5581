//! Elementwise activations (Relu, Sigmoid, Tanh, and the table-made Clip, HardSigmoid,
//! HardSwish, LeakyRelu) and Softmax over the last axis: one input, one output of the same
//! shape.

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::{Elementwise, FOp, ValueId};
use crate::onnx::{attr, attr_f, attr_i};
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

/// An element-wise function of the node's input `i`, made a table by the quantizer.
pub(super) fn map_input(
    lw: &mut Lowering,
    node: &NodeProto,
    i: usize,
    f: Elementwise,
) -> Result<()> {
    let x = lw.value(node, i)?;
    let y = lw.new_value(lw.shapes[x].clone());
    lw.push(FOp::Map { x, y, f });
    lw.bind(node, y);
    Ok(())
}

/// Clip's bound: the constant input `i` (opset 11 on), else the attribute (opset 6), else none.
fn bound(lw: &Lowering, node: &NodeProto, i: usize, name: &str, none: f32) -> Result<f32> {
    match lw.init(node, i)? {
        Some(t) => t.f32.first().copied().ok_or_else(|| {
            EngineError::InvalidModel(format!("Clip `{}`: empty {name}", node.name))
        }),
        None => Ok(attr(node, name).map_or(none, |a| a.f)),
    }
}

fn map(lw: &mut Lowering, node: &NodeProto, f: Elementwise) -> Result<()> {
    map_input(lw, node, 0, f)
}

pub(super) fn clip(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let min = bound(lw, node, 1, "min", f32::NEG_INFINITY)?;
    let max = bound(lw, node, 2, "max", f32::INFINITY)?;
    map(lw, node, Elementwise::Clip { min, max })
}

pub(super) fn hard_sigmoid(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let f = Elementwise::HardSigmoid {
        alpha: attr_f(node, "alpha", 0.2),
        beta: attr_f(node, "beta", 0.5),
    };
    map(lw, node, f)
}

pub(super) fn hard_swish(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    map(lw, node, Elementwise::HardSwish)
}

pub(super) fn leaky_relu(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let alpha = attr_f(node, "alpha", 0.01);
    map(lw, node, Elementwise::LeakyRelu { alpha })
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
