//! Pooling: MaxPool, AveragePool, and GlobalAveragePool as an AveragePool whose window is the
//! whole image.

use super::Lowering;
use crate::error::{EngineError, Result};
use crate::geometry::Window;
use crate::ir::FOp;
use crate::onnx::{attr_i, attr_ints};
use crate::proto::NodeProto;

pub(super) fn max_pool(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    windowed_pool(lw, node, |x, y, win| FOp::MaxPool { x, y, win })
}

pub(super) fn average_pool(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let count_include_pad = attr_i(node, "count_include_pad", 0) != 0;
    windowed_pool(lw, node, |x, y, win| FOp::AvgPool {
        x,
        y,
        win,
        count_include_pad,
    })
}

/// The part MaxPool and AveragePool share: a 2-D `kernel_shape` and the window attributes.
fn windowed_pool(
    lw: &mut Lowering,
    node: &NodeProto,
    make: impl FnOnce(usize, usize, Window) -> FOp,
) -> Result<()> {
    let x = lw.value(node, 0)?;
    let k = attr_ints(node, "kernel_shape").unwrap_or_default();
    if k.len() != 2 || k.iter().any(|&v| v <= 0) {
        return Err(EngineError::Unsupported(format!(
            "{} `{}`: needs a 2-D kernel_shape",
            node.op_type, node.name
        )));
    }
    let win = lw.window(node, x, (k[0] as usize, k[1] as usize))?;
    let y = lw.new_value(vec![
        lw.shapes[x][0],
        win.channels,
        win.out_h(),
        win.out_w(),
    ]);
    lw.push(make(x, y, win));
    lw.bind(node, y);
    Ok(())
}

pub(super) fn global_average_pool(lw: &mut Lowering, node: &NodeProto) -> Result<()> {
    let x = lw.value(node, 0)?;
    let s = lw.shapes[x].clone();
    if s.len() != 4 {
        return Err(EngineError::Unsupported(
            "GlobalAveragePool on non-NCHW input".into(),
        ));
    }
    let win = Window {
        channels: s[1],
        height: s[2],
        width: s[3],
        kernel_h: s[2],
        kernel_w: s[3],
        stride_h: 1,
        stride_w: 1,
        pad_top: 0,
        pad_left: 0,
        pad_bottom: 0,
        pad_right: 0,
    };
    let y = lw.new_value(vec![s[0], s[1], 1, 1]);
    lw.push(FOp::AvgPool {
        x,
        y,
        win,
        count_include_pad: false,
    });
    lw.bind(node, y);
    Ok(())
}
