//! Data movement without arithmetic: Flatten and Reshape (new shape, same bytes), Concat, and
//! Identity/Dropout, which only rename their input.

use super::{fold, Lowering};
use crate::error::{EngineError, Result};
use crate::ir::FOp;
use crate::onnx::attr_i;
use crate::proto::NodeProto;

/// Identity and (inference-time) Dropout: the output name refers to the input value.
pub(super) fn pass_through(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    if fold::on_constants(lw, node) {
        return fold::identity(lw, node);
    }
    let x = lw.value(node, 0)?;
    lw.bind(node, x);
    Ok(())
}

/// `[d0, .., dn]` to `[d0 * .. * d(axis-1), d(axis) * .. * dn]`.
pub(super) fn flatten(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let constant = fold::on_constants(lw, node);
    let s = match constant {
        true => lw.required_init(node, 0)?.shape,
        false => lw.shapes[lw.value(node, 0)?].clone(),
    };
    let mut axis = attr_i(node, "axis", 1);
    if axis < 0 {
        axis += s.len() as i64;
    }
    let axis = (axis.max(0) as usize).min(s.len());
    let out = vec![s[..axis].iter().product(), s[axis..].iter().product()];
    if constant {
        return fold::reshape_constant(lw, node, out);
    }
    let x = lw.value(node, 0)?;
    let y = lw.new_value(out);
    lw.push(FOp::Reshape { x, y });
    lw.bind(node, y);
    Ok(())
}

/// Reshape to a constant target shape (0 copies the input dim, one -1 is inferred).
pub(super) fn reshape(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let constant = !lw.is_value(node, 0);
    let s = match constant {
        true => lw.required_init(node, 0)?.shape,
        false => lw.shapes[lw.value(node, 0)?].clone(),
    };
    let target = lw.required_init(node, 1)?.i64;
    let total: usize = s.iter().product();
    let mut out: Vec<usize> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            0 => {
                out.push(*s.get(i).ok_or_else(|| {
                    EngineError::InvalidModel("Reshape: 0 beyond input rank".into())
                })?)
            }
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => {
                return Err(EngineError::InvalidModel(format!(
                    "Reshape `{}`: bad target {target:?}",
                    node.name
                )))
            }
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(EngineError::InvalidModel(format!(
                "Reshape `{}`: cannot infer -1",
                node.name
            )));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(EngineError::InvalidModel(format!(
            "Reshape `{}`: {s:?} to {out:?}",
            node.name
        )));
    }
    if constant {
        return fold::reshape_constant(lw, node, out);
    }
    let x = lw.value(node, 0)?;
    let y = lw.new_value(out);
    lw.push(FOp::Reshape { x, y });
    lw.bind(node, y);
    Ok(())
}

/// Concatenation of activations along one axis (the others must agree).
pub(super) fn concat(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    if fold::on_constants(lw, node) {
        return fold::concat(lw, node);
    }
    let xs = (0..node.input.len())
        .map(|i| lw.value(node, i))
        .collect::<Result<Vec<_>>>()?;
    let Some(&x0) = xs.first() else {
        return Err(EngineError::InvalidModel(format!(
            "Concat `{}` has no inputs",
            node.name
        )));
    };
    let first = lw.shapes[x0].clone();
    let mut axis = attr_i(node, "axis", 0);
    if axis < 0 {
        axis += first.len() as i64;
    }
    let axis = usize::try_from(axis)
        .ok()
        .filter(|&a| a < first.len())
        .ok_or_else(|| EngineError::InvalidModel(format!("Concat `{}`: bad axis", node.name)))?;
    let mut out = first.clone();
    out[axis] = 0;
    for &v in &xs {
        let s = &lw.shapes[v];
        let compatible = s.len() == first.len()
            && s.iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !compatible {
            return Err(EngineError::InvalidModel(format!(
                "Concat `{}`: shapes differ",
                node.name
            )));
        }
        out[axis] += s[axis];
    }
    let y = lw.new_value(out);
    lw.push(FOp::Concat { xs, y, axis });
    lw.bind(node, y);
    Ok(())
}
