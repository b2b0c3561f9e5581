//! Canonical models built for the attack tests of several crates (engine, zk, cli): small
//! files that ask for much, in the shapes the security review found. A few lines, so they ship
//! with the library rather than as one more crate.

use crate::canonical::{CanonicalModel, QInput, QOp, QOutput};
use crate::geometry::Window;

/// A canonical model with input `x` (value 0), output `y` (the last value) and these ops.
fn model(shapes: Vec<Vec<usize>>, ops: Vec<QOp>) -> CanonicalModel {
    CanonicalModel {
        inputs: vec![QInput {
            name: "x".into(),
            value: 0,
            inv_scale: 1.0,
        }],
        outputs: vec![QOutput {
            name: "y".into(),
            value: shapes.len() - 1,
            scale: 1.0,
        }],
        shapes,
        ops,
        source_ops: vec![],
    }
}

/// A [1,1,h,h] input through one MaxPool (square kernel, stride, equal pads) and `relus`
/// Relus, as a canonical file (not validated: the point is what decoding says of it).
pub fn pool_then_relus(
    h: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    relus: usize,
) -> Vec<u8> {
    let win = Window {
        channels: 1,
        height: h,
        width: h,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_top: pad,
        pad_left: pad,
        pad_bottom: pad,
        pad_right: pad,
    };
    let out = vec![1, 1, win.out_h(), win.out_w()];
    let mut shapes = vec![vec![1, 1, h, h], out.clone()];
    let mut ops = vec![QOp::MaxPool { x: 0, y: 1, win }];
    for i in 0..relus {
        shapes.push(out.clone());
        ops.push(QOp::Relu { x: i + 1, y: i + 2 });
    }
    model(shapes, ops).encode()
}

/// An input of `shape` through `relus` Relus: deep, each value as large as the input.
pub fn relu_chain(shape: &[usize], relus: usize) -> CanonicalModel {
    model(
        vec![shape.to_vec(); relus + 1],
        (0..relus).map(|i| QOp::Relu { x: i, y: i + 1 }).collect(),
    )
}
