//! Sub, Mul and Div with a scalar constant operand: element-wise functions of one activation
//! (`x * m + a`, or `c / x`), which the quantizer makes tables. Of two activations they are not
//! in the canonical form yet, and are refused by name.

use super::activation::map_input;
use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::Elementwise;
use crate::proto::NodeProto;

/// The scalar constant operand and whether the activation is the first operand.
fn scalar_operand(lw: &Lowering, node: &NodeProto) -> Result<(f32, bool)> {
    let (value_first, constant) = match (lw.is_value(node, 0), lw.is_value(node, 1)) {
        (true, false) => (true, 1),
        (false, true) => (false, 0),
        (true, true) => {
            return Err(EngineError::Unsupported(format!(
                "{} `{}` of two activations (only with a scalar constant)",
                node.op_type, node.name
            )))
        }
        (false, false) => {
            return Err(EngineError::Unsupported(format!(
                "{} `{}` of two constants",
                node.op_type, node.name
            )))
        }
    };
    let c = lw.required_init(node, constant)?;
    match c.f32.as_slice() {
        [v] => Ok((*v, value_first)),
        _ => Err(EngineError::Unsupported(format!(
            "{} `{}`: a constant of shape {:?} (only a scalar)",
            node.op_type, node.name, c.shape
        ))),
    }
}

/// The function of the activation operand, given the constant and which side it is on.
fn arith(lw: &mut Lowering, node: &NodeProto, f: fn(f32, bool) -> Elementwise) -> Result<()> {
    let (c, value_first) = scalar_operand(lw, node)?;
    map_input(lw, node, usize::from(!value_first), f(c, value_first))
}

pub(super) fn sub(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    arith(lw, node, |c, value_first| match value_first {
        true => Elementwise::Affine { mul: 1.0, add: -c },
        false => Elementwise::Affine { mul: -1.0, add: c },
    })
}

pub(super) fn mul(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    arith(lw, node, |c, _| Elementwise::Affine { mul: c, add: 0.0 })
}

pub(super) fn div(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    arith(lw, node, |c, value_first| match value_first {
        true => Elementwise::Affine {
            mul: 1.0 / c,
            add: 0.0,
        },
        false => Elementwise::DivInto { c },
    })
}
