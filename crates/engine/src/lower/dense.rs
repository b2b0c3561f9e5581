//! Matrix products with a constant operand: Gemm and MatMul both become `Dense`, with the
//! weights laid out [out, in] and Gemm's alpha/beta folded in.

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::FOp;
use crate::onnx::{attr_f, attr_i};
use crate::proto::NodeProto;

/// `alpha * x @ op(B) + beta * C` with `B` and `C` constant (`transA` is refused).
pub(super) fn gemm(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let b = lw.required_init(node, 1)?;
    let c = lw.init(node, 2)?;
    if attr_i(node, "transA", 0) != 0 {
        return Err(EngineError::Unsupported("Gemm with transA=1".into()));
    }
    let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
    let xs = lw.shapes[x].clone();
    if xs.len() != 2 || b.shape.len() != 2 {
        return Err(EngineError::Unsupported(format!(
            "Gemm `{}`: operands must be 2-D",
            node.name
        )));
    }
    let trans_b = attr_i(node, "transB", 0) != 0;
    let (k, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if xs[1] != k {
        return Err(EngineError::InvalidModel(format!(
            "Gemm `{}`: inner dims {} vs {k}",
            node.name, xs[1]
        )));
    }
    let mut w = vec![0f32; n * k];
    for o in 0..n {
        for i in 0..k {
            let v = if trans_b {
                b.f32[o * k + i]
            } else {
                b.f32[i * n + o]
            };
            w[o * k + i] = alpha * v;
        }
    }
    let bias = match c {
        None => vec![0.0; n],
        Some(c) if c.f32.len() == n => c.f32.iter().map(|v| beta * v).collect(),
        Some(c) if c.f32.len() == 1 => vec![beta * c.f32[0]; n],
        Some(c) => {
            return Err(EngineError::Unsupported(format!(
                "Gemm `{}`: bias shape {:?}",
                node.name, c.shape
            )))
        }
    };
    let y = lw.new_value(vec![xs[0], n]);
    lw.push(FOp::Dense {
        x,
        y,
        w,
        b: bias,
        k,
        n,
    });
    lw.bind(node, y);
    Ok(())
}

/// `x[..., K] @ W[K, N]` with `W` constant; a following constant Add becomes the bias.
pub(super) fn matmul(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let b = lw.required_init(node, 1)?;
    let xs = lw.shapes[x].clone();
    if b.shape.len() != 2 || xs.is_empty() || xs[xs.len() - 1] != b.shape[0] {
        return Err(EngineError::Unsupported(format!(
            "MatMul `{}`: needs x[..., K] times a 2-D constant [K, N]; got {xs:?} x {:?}",
            node.name, b.shape
        )));
    }
    let (k, n) = (b.shape[0], b.shape[1]);
    let mut w = vec![0f32; n * k];
    for o in 0..n {
        for i in 0..k {
            w[o * k + i] = b.f32[i * n + o];
        }
    }
    let mut ys = xs.clone();
    *ys.last_mut().unwrap_or(&mut 0) = n;
    let y = lw.new_value(ys);
    lw.push(FOp::Dense {
        x,
        y,
        w,
        b: vec![0.0; n],
        k,
        n,
    });
    lw.bind(node, y);
    Ok(())
}
