//! Constant folding at load time: the shape arithmetic exporters emit (Shape, Size, Gather,
//! Slice and Concat on shape vectors, Constant, ConstantOfShape, Cast, Equal, Not,
//! Squeeze/Unsqueeze, Reshape/Flatten/Identity of constants) is computed once the input shapes
//! are fixed at publication, so the canonical graph is static and has none of it. An operator
//! of this family whose operands depend on the inputs' values (not only their shapes) is
//! refused by name.
//!
//! Constants are [`Init`]s: f32 values, plus i64 values for integer tensors (booleans are 0/1
//! integers).

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::FOp;
use crate::onnx::{attr, attr_i, attr_ints, read_initializer, Init};
use crate::proto::{data_type, NodeProto};

/// An integer constant.
fn int(shape: Vec<usize>, values: Vec<i64>) -> Init {
    Init {
        shape,
        f32: values.iter().map(|&v| v as f32).collect(),
        i64: values,
    }
}

/// A float constant.
fn float(shape: Vec<usize>, values: Vec<f32>) -> Init {
    Init {
        shape,
        f32: values,
        i64: vec![],
    }
}

/// A constant's values as integers (floats truncate toward zero, as ONNX Cast does).
fn ints(t: &Init) -> Vec<i64> {
    if t.i64.len() == t.f32.len() && !t.i64.is_empty() {
        t.i64.clone()
    } else {
        t.f32.iter().map(|&v| v as i64).collect()
    }
}

fn is_int(t: &Init) -> bool {
    !t.i64.is_empty() || t.f32.is_empty()
}

/// Same values, another shape.
fn reshaped(t: Init, shape: Vec<usize>) -> Init {
    Init { shape, ..t }
}

fn refuse(node: &NodeProto, why: &str) -> EngineError {
    EngineError::Unsupported(format!("{} `{}`: {why}", node.op_type, node.name))
}

fn bind(lw: &mut Lowering, node: &NodeProto, t: Init) {
    if let Some(out) = node.output.first() {
        lw.names.insert(out.clone(), super::Slot::Init(t));
    }
}

/// Input `i` as a constant, or a refusal naming the node: its value would depend on the
/// model's inputs.
fn constant(lw: &Lowering, node: &NodeProto, i: usize) -> Result<Init> {
    if lw.is_value(node, i) {
        return Err(refuse(
            node,
            "its operand depends on the input values, which the canonical form does not allow \
             here (only on shapes fixed at publication)",
        ));
    }
    lw.required_init(node, i)
}

/// A normalized axis in `0..rank`.
fn axis(node: &NodeProto, a: i64, rank: usize) -> Result<usize> {
    let a = if a < 0 { a + rank as i64 } else { a };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < rank)
        .ok_or_else(|| {
            EngineError::InvalidModel(format!(
                "{} `{}`: axis out of range",
                node.op_type, node.name
            ))
        })
}

pub(super) fn constant_node(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let t = if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
        read_initializer(t)?
    } else if let Some(a) = attr(node, "value_ints") {
        int(vec![a.ints.len()], a.ints.clone())
    } else if let Some(a) = attr(node, "value_int") {
        int(vec![], vec![a.i])
    } else if let Some(a) = attr(node, "value_floats") {
        float(vec![a.floats.len()], a.floats.clone())
    } else if let Some(a) = attr(node, "value_float") {
        float(vec![], vec![a.f])
    } else {
        return Err(refuse(
            node,
            "only tensor, int and float values are supported",
        ));
    };
    bind(lw, node, t);
    Ok(())
}

/// The shape of an activation (fixed at publication) or of a constant.
fn shape_of(lw: &Lowering, node: &NodeProto) -> Result<Vec<usize>> {
    if lw.is_value(node, 0) {
        Ok(lw.shapes[lw.value(node, 0)?].clone())
    } else {
        Ok(lw.required_init(node, 0)?.shape)
    }
}

pub(super) fn shape(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let dims: Vec<i64> = shape_of(lw, node)?.iter().map(|&d| d as i64).collect();
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(attr_i(node, "start", 0));
    let end = clamp(attr_i(node, "end", rank)).max(start);
    let part = dims[start..end].to_vec();
    bind(lw, node, int(vec![part.len()], part));
    Ok(())
}

pub(super) fn size(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let n: usize = shape_of(lw, node)?.iter().product();
    bind(lw, node, int(vec![], vec![n as i64]));
    Ok(())
}

/// Gather along axis 0 of a constant vector (what shape arithmetic uses).
pub(super) fn gather(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let data = constant(lw, node, 0)?;
    let indices = constant(lw, node, 1)?;
    if data.shape.len() != 1 || attr_i(node, "axis", 0) != 0 {
        return Err(refuse(
            node,
            "only axis 0 of a constant vector is supported",
        ));
    }
    let n = data.shape[0] as i64;
    let picked = ints(&indices)
        .iter()
        .map(|&i| {
            let i = if i < 0 { i + n } else { i };
            usize::try_from(i)
                .ok()
                .filter(|&i| (i as i64) < n)
                .ok_or_else(|| {
                    EngineError::InvalidModel(format!("Gather `{}`: index out of range", node.name))
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    let out = if is_int(&data) {
        let v = ints(&data);
        int(
            indices.shape.clone(),
            picked.iter().map(|&i| v[i]).collect(),
        )
    } else {
        float(
            indices.shape.clone(),
            picked.iter().map(|&i| data.f32[i]).collect(),
        )
    };
    bind(lw, node, out);
    Ok(())
}

/// Slice of a constant vector (starts, ends, axes and steps constant).
pub(super) fn slice(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let data = constant(lw, node, 0)?;
    if data.shape.len() != 1 {
        return Err(refuse(
            node,
            "only slices of a constant vector are supported",
        ));
    }
    let starts = ints(&constant(lw, node, 1)?);
    let ends = ints(&constant(lw, node, 2)?);
    let axes = lw
        .init(node, 3)?
        .map(|t| ints(&t))
        .unwrap_or_else(|| vec![0]);
    let steps = lw
        .init(node, 4)?
        .map(|t| ints(&t))
        .unwrap_or_else(|| vec![1]);
    if starts.len() != 1 || ends.len() != 1 || axes.iter().any(|&a| a != 0 && a != -1) {
        return Err(refuse(
            node,
            "only one axis of a constant vector is supported",
        ));
    }
    let step = steps.first().copied().unwrap_or(1);
    if step != 1 {
        return Err(refuse(node, "only step 1 is supported"));
    }
    let n = data.shape[0] as i64;
    let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
    let (start, end) = (clamp(starts[0]), clamp(ends[0]));
    let end = end.max(start);
    let out = if is_int(&data) {
        int(vec![end - start], ints(&data)[start..end].to_vec())
    } else {
        float(vec![end - start], data.f32[start..end].to_vec())
    };
    bind(lw, node, out);
    Ok(())
}

/// Concat of constants along axis 0.
pub(super) fn concat(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let parts = (0..node.input.len())
        .map(|i| constant(lw, node, i))
        .collect::<Result<Vec<_>>>()?;
    let rank = parts.first().map_or(1, |p| p.shape.len().max(1));
    if axis(node, attr_i(node, "axis", 0), rank)? != 0
        || parts
            .iter()
            .any(|p| p.shape.len() != rank || p.shape[1..] != parts[0].shape[1..])
    {
        return Err(refuse(
            node,
            "only axis 0 of constants with equal trailing dims is supported",
        ));
    }
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|p| p.shape[0]).sum();
    let out = if parts.iter().all(is_int) {
        int(shape, parts.iter().flat_map(ints).collect())
    } else {
        float(shape, parts.iter().flat_map(|p| p.f32.clone()).collect())
    };
    bind(lw, node, out);
    Ok(())
}

pub(super) fn cast(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = constant(lw, node, 0)?;
    let out = match attr_i(node, "to", 0) as i32 {
        data_type::FLOAT | data_type::DOUBLE => float(x.shape.clone(), x.f32.clone()),
        data_type::INT64 | data_type::INT32 | data_type::INT8 | data_type::UINT8 | BOOL => {
            let v = ints(&x);
            let v = if attr_i(node, "to", 0) as i32 == BOOL {
                v.iter().map(|&b| (b != 0) as i64).collect()
            } else {
                v
            };
            int(x.shape.clone(), v)
        }
        other => return Err(refuse(node, &format!("cast to element type {other}"))),
    };
    bind(lw, node, out);
    Ok(())
}

/// ONNX's BOOL element type (folded as 0/1 integers).
const BOOL: i32 = 9;

pub(super) fn constant_of_shape(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let dims = ints(&constant(lw, node, 0)?);
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| refuse(node, "negative dimension")))
        .collect::<Result<Vec<usize>>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= verity_core::tensor::MAX_ELEMENTS)
        .ok_or_else(|| refuse(node, "the constant would be too large"))?;
    let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
        Some(t) => read_initializer(t)?,
        None => float(vec![1], vec![0.0]),
    };
    let out = if is_int(&value) {
        int(shape, vec![ints(&value).first().copied().unwrap_or(0); n])
    } else {
        float(shape, vec![value.f32.first().copied().unwrap_or(0.0); n])
    };
    bind(lw, node, out);
    Ok(())
}

pub(super) fn equal(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let (a, b) = (constant(lw, node, 0)?, constant(lw, node, 1)?);
    let (av, bv) = (ints(&a), ints(&b));
    let (shape, out) = match (av.len(), bv.len()) {
        (x, y) if x == y => (
            a.shape.clone(),
            av.iter().zip(&bv).map(|(x, y)| (x == y) as i64).collect(),
        ),
        (_, 1) => (
            a.shape.clone(),
            av.iter().map(|x| (*x == bv[0]) as i64).collect(),
        ),
        (1, _) => (
            b.shape.clone(),
            bv.iter().map(|y| (av[0] == *y) as i64).collect(),
        ),
        _ => {
            return Err(refuse(
                node,
                "only equal sizes or a scalar operand are supported",
            ))
        }
    };
    bind(lw, node, int(shape, out));
    Ok(())
}

pub(super) fn not(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = constant(lw, node, 0)?;
    let v = ints(&x).iter().map(|&b| (b == 0) as i64).collect();
    bind(lw, node, int(x.shape.clone(), v));
    Ok(())
}

/// The axes of Squeeze/Unsqueeze: the `axes` input (opset 13) or attribute.
fn axes_of(lw: &Lowering, node: &NodeProto) -> Result<Option<Vec<i64>>> {
    match lw.init(node, 1)? {
        Some(t) => Ok(Some(ints(&t))),
        None => Ok(attr_ints(node, "axes")),
    }
}

/// Squeeze and Unsqueeze: of a constant, folded; of an activation, a reshape.
fn rebind_shape(lw: &mut Lowering, node: &NodeProto, shape: Vec<usize>) -> Result<()> {
    if lw.is_value(node, 0) {
        let x = lw.value(node, 0)?;
        let y = lw.new_value(shape);
        lw.push(FOp::Reshape { x, y });
        lw.bind(node, y);
    } else {
        let t = lw.required_init(node, 0)?;
        bind(lw, node, reshaped(t, shape));
    }
    Ok(())
}

pub(super) fn unsqueeze(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let mut shape = shape_of(lw, node)?;
    let axes = axes_of(lw, node)?.ok_or_else(|| refuse(node, "no axes"))?;
    let rank = shape.len() + axes.len();
    let mut axes = axes
        .iter()
        .map(|&a| axis(node, a, rank))
        .collect::<Result<Vec<_>>>()?;
    axes.sort_unstable();
    for a in axes {
        shape.insert(a.min(shape.len()), 1);
    }
    rebind_shape(lw, node, shape)
}

pub(super) fn squeeze(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let shape = shape_of(lw, node)?;
    let axes = match axes_of(lw, node)? {
        Some(axes) => axes
            .iter()
            .map(|&a| axis(node, a, shape.len()))
            .collect::<Result<Vec<_>>>()?,
        None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
    };
    if axes.iter().any(|&a| shape[a] != 1) {
        return Err(EngineError::InvalidModel(format!(
            "Squeeze `{}`: a squeezed dim is not 1",
            node.name
        )));
    }
    let kept = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    rebind_shape(lw, node, kept)
}

/// Whether the node's first operand is a constant (Identity, Reshape, Flatten and Concat of
/// constants fold instead of lowering).
pub(super) fn on_constants(lw: &Lowering, node: &NodeProto) -> bool {
    !node.input.is_empty() && (0..node.input.len()).all(|i| !lw.is_value(node, i))
}

/// Identity of a constant.
pub(super) fn identity(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let t = lw.required_init(node, 0)?;
    bind(lw, node, t);
    Ok(())
}

/// Reshape (or Flatten) of a constant to `shape`.
pub(super) fn reshape_constant(
    lw: &mut Lowering,
    node: &NodeProto,
    shape: Vec<usize>,
) -> Result<()> {
    let t = lw.required_init(node, 0)?;
    if shape.iter().product::<usize>() != t.f32.len() {
        return Err(EngineError::InvalidModel(format!(
            "{} `{}`: {:?} to {shape:?}",
            node.op_type, node.name, t.shape
        )));
    }
    bind(lw, node, reshaped(t, shape));
    Ok(())
}
