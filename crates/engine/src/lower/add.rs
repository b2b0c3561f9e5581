//! Add: of two activations (suffix broadcast), or of an activation and a constant. A constant
//! added along the last axis of a Dense output nobody else reads is folded into that Dense's
//! bias; any other constant becomes a `Const` operand.

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::FOp;
use crate::proto::NodeProto;

pub(super) fn add(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let (vi, ci) = match (lw.is_value(node, 0), lw.is_value(node, 1)) {
        (true, true) => return add_activations(lw, node),
        (true, false) => (0, 1),
        (false, true) => (1, 0),
        (false, false) => {
            return Err(EngineError::Unsupported(format!(
                "Add `{}` of two constants",
                node.name
            )))
        }
    };
    let x = lw.value(node, vi)?;
    let c = lw.required_init(node, ci)?;
    let xs = lw.shapes[x].clone();
    // A constant added to a Dense output along its last axis is that Dense's bias.
    let n_last = xs.last().copied().unwrap_or(0);
    if c.f32.len() == n_last && c.shape.iter().rev().skip(1).all(|&d| d == 1) {
        if let Some(i) = lw.sole_producer(x, &node.input[vi]) {
            if let FOp::Dense { b, .. } = &mut lw.ops[i] {
                b.iter_mut().zip(&c.f32).for_each(|(b, c)| *b += c);
                lw.bind(node, x);
                return Ok(());
            }
        }
    }
    let mut cshape = c.shape.clone();
    while cshape.first() == Some(&1) && cshape.len() > 1 {
        cshape.remove(0);
    }
    if !xs.ends_with(&cshape) {
        return Err(EngineError::Unsupported(format!(
            "Add `{}`: constant of shape {:?} does not broadcast onto {xs:?}",
            node.name, c.shape
        )));
    }
    let b = lw.new_value(cshape);
    lw.push(FOp::Const { y: b, data: c.f32 });
    let y = lw.new_value(xs);
    lw.push(FOp::Add { a: x, b, y });
    lw.bind(node, y);
    Ok(())
}

/// Both operands are activations; the one whose shape is a suffix of the other's is broadcast.
fn add_activations(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let (a, b) = (lw.value(node, 0)?, lw.value(node, 1)?);
    let (sa, sb) = (&lw.shapes[a], &lw.shapes[b]);
    let (a, b) = if sa.ends_with(sb) {
        (a, b)
    } else if sb.ends_with(sa) {
        (b, a)
    } else {
        return Err(EngineError::Unsupported(format!(
            "Add `{}`: shapes {sa:?} and {sb:?} do not broadcast by suffix",
            node.name
        )));
    };
    let y = lw.new_value(lw.shapes[a].clone());
    lw.push(FOp::Add { a, b, y });
    lw.bind(node, y);
    Ok(())
}
