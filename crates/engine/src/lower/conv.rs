//! Convolution, and BatchNormalization folded into the Conv that feeds it (the canonical form
//! has no separate normalization op).

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::ir::FOp;
use crate::onnx::{attr_f, attr_i};
use crate::proto::NodeProto;

/// 2-D NCHW convolution with constant weights (and bias); one group, no dilation.
pub(super) fn conv(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let w = lw.required_init(node, 1)?;
    let b = lw.init(node, 2)?;
    if attr_i(node, "group", 1) != 1 {
        return Err(EngineError::Unsupported(format!(
            "Conv `{}`: group != 1",
            node.name
        )));
    }
    if w.shape.len() != 4 || w.shape[1] != lw.shapes[x].get(1).copied().unwrap_or(0) {
        return Err(EngineError::InvalidModel(format!(
            "Conv `{}`: weight shape {:?}",
            node.name, w.shape
        )));
    }
    let win = lw.window(node, x, (w.shape[2], w.shape[3]))?;
    let oc = w.shape[0];
    let bias = b.map_or(vec![0.0; oc], |b| b.f32);
    if bias.len() != oc {
        return Err(EngineError::InvalidModel(format!(
            "Conv `{}`: bias length",
            node.name
        )));
    }
    let y = lw.new_value(vec![lw.shapes[x][0], oc, win.out_h(), win.out_w()]);
    lw.push(FOp::Conv {
        x,
        y,
        w: w.f32,
        b: bias,
        out_channels: oc,
        win,
    });
    lw.bind(node, y);
    Ok(())
}

/// Scales and shifts the weights and bias of the Conv whose output (read by nothing else) this
/// node normalizes, then stands for that Conv's output.
pub(super) fn batch_normalization(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| lw.required_init(node, i));
    let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
    let eps = attr_f(node, "epsilon", 1e-5);
    let conv = lw.sole_producer(x, &node.input[0]);
    let Some(FOp::Conv {
        w,
        b,
        out_channels,
        win,
        ..
    }) = conv.map(|i| &mut lw.ops[i])
    else {
        return Err(EngineError::Unsupported(format!(
            "BatchNormalization `{}` must directly follow a Conv (it is folded into it)",
            node.name
        )));
    };
    let oc = *out_channels;
    if [&gamma, &beta, &mean, &var]
        .iter()
        .any(|t| t.f32.len() != oc)
    {
        return Err(EngineError::InvalidModel(
            "BatchNormalization: parameter length".into(),
        ));
    }
    let per = win.channels * win.kernel_h * win.kernel_w;
    for c in 0..oc {
        let s = gamma.f32[c] / (var.f32[c] + eps).sqrt();
        w[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= s);
        b[c] = (b[c] - mean.f32[c]) * s + beta.f32[c];
    }
    lw.bind(node, x);
    Ok(())
}
