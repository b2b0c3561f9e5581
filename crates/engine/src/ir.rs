//! The float IR: ONNX lowered to a flat list of typed operators over values with static
//! shapes. The quantizer calibrates and converts it; `float.rs` runs it to measure ranges.
//! Each op writes exactly one new value, in order, like the canonical [`QOp`](crate::canonical::QOp)
//! list it becomes.

use crate::cost::{self, Cost, Step, Work};
use crate::geometry::Window;

/// Index of a tensor value in a graph.
pub type ValueId = usize;

#[derive(Clone, Debug)]
pub enum FOp {
    /// y[m, n] = sum_k x[m, k] * w[n, k] + b[n]; x is viewed as [rows, k].
    Dense {
        x: ValueId,
        y: ValueId,
        w: Vec<f32>,
        b: Vec<f32>,
        k: usize,
        n: usize,
    },
    /// NCHW convolution, weights [out, in, kh, kw].
    Conv {
        x: ValueId,
        y: ValueId,
        w: Vec<f32>,
        b: Vec<f32>,
        out_channels: usize,
        win: Window,
    },
    Relu {
        x: ValueId,
        y: ValueId,
    },
    Sigmoid {
        x: ValueId,
        y: ValueId,
    },
    Tanh {
        x: ValueId,
        y: ValueId,
    },
    /// Any other element-wise function of one activation; the quantizer makes it a table.
    Map {
        x: ValueId,
        y: ValueId,
        f: Elementwise,
    },
    /// Softmax over the last axis.
    Softmax {
        x: ValueId,
        y: ValueId,
    },
    /// Elementwise add; `b` is broadcast when its shape is a suffix of `a`'s.
    Add {
        a: ValueId,
        b: ValueId,
        y: ValueId,
    },
    /// A constant tensor (an initializer used as an activation operand).
    Const {
        y: ValueId,
        data: Vec<f32>,
    },
    MaxPool {
        x: ValueId,
        y: ValueId,
        win: Window,
    },
    AvgPool {
        x: ValueId,
        y: ValueId,
        win: Window,
        count_include_pad: bool,
    },
    Reshape {
        x: ValueId,
        y: ValueId,
    },
    Concat {
        xs: Vec<ValueId>,
        y: ValueId,
        axis: usize,
    },
}

/// An element-wise function of one activation (with constant parameters). Quantized, it is a
/// 256-entry table from the input's int8 values to the output's (`Lut`), so the canonical form
/// needs no new operator for it (docs/canonical-semantics.md §8).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elementwise {
    /// `min(max(x, min), max)`.
    Clip { min: f32, max: f32 },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid { alpha: f32, beta: f32 },
    /// `x * max(0, min(1, x / 6 + 1/2))`.
    HardSwish,
    /// `x` if positive, else `alpha * x`.
    LeakyRelu { alpha: f32 },
    /// `x * mul + add`: Mul, Div, Add or Sub of a scalar constant.
    Affine { mul: f32, add: f32 },
    /// `c / x`: a scalar constant divided by the activation.
    DivInto { c: f32 },
}

impl Elementwise {
    /// The function, in f64 (tables are built from it at quantization time).
    pub fn apply(self, x: f64) -> f64 {
        let hard_sigmoid = |x: f64, alpha: f64, beta: f64| (alpha * x + beta).clamp(0.0, 1.0);
        match self {
            Elementwise::Clip { min, max } => x.max(min as f64).min(max as f64),
            Elementwise::HardSigmoid { alpha, beta } => hard_sigmoid(x, alpha as f64, beta as f64),
            Elementwise::HardSwish => x * hard_sigmoid(x, 1.0 / 6.0, 0.5),
            Elementwise::LeakyRelu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            Elementwise::Affine { mul, add } => x * mul as f64 + add as f64,
            Elementwise::DivInto { c } => c as f64 / x,
        }
    }
}

impl FOp {
    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            FOp::Dense { x, .. }
            | FOp::Conv { x, .. }
            | FOp::Relu { x, .. }
            | FOp::Sigmoid { x, .. }
            | FOp::Tanh { x, .. }
            | FOp::Map { x, .. }
            | FOp::Softmax { x, .. }
            | FOp::MaxPool { x, .. }
            | FOp::AvgPool { x, .. }
            | FOp::Reshape { x, .. } => vec![*x],
            FOp::Add { a, b, .. } => vec![*a, *b],
            FOp::Const { .. } => vec![],
            FOp::Concat { xs, .. } => xs.clone(),
        }
    }

    pub fn output(&self) -> ValueId {
        match self {
            FOp::Dense { y, .. }
            | FOp::Conv { y, .. }
            | FOp::Relu { y, .. }
            | FOp::Sigmoid { y, .. }
            | FOp::Tanh { y, .. }
            | FOp::Map { y, .. }
            | FOp::Softmax { y, .. }
            | FOp::Add { y, .. }
            | FOp::Const { y, .. }
            | FOp::MaxPool { y, .. }
            | FOp::AvgPool { y, .. }
            | FOp::Reshape { y, .. }
            | FOp::Concat { y, .. } => *y,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FloatGraph {
    pub shapes: Vec<Vec<usize>>,
    /// (name, value) of each graph input, in declaration order.
    pub inputs: Vec<(String, ValueId)>,
    pub outputs: Vec<(String, ValueId)>,
    pub ops: Vec<FOp>,
}

impl FloatGraph {
    /// What one float inference costs (f32 values, 4 bytes each), with dynamic dimensions at 1
    /// as lowered; see [`crate::cost`].
    pub fn cost(&self) -> Cost {
        let inputs: Vec<ValueId> = self.inputs.iter().map(|(_, v)| *v).collect();
        let outputs: Vec<ValueId> = self.outputs.iter().map(|(_, v)| *v).collect();
        let ops = self.ops.iter().map(|op| {
            let work = match op {
                FOp::Dense { k, .. } => Work::Dot { k: *k },
                FOp::Conv { win, .. } => Work::Conv { win },
                FOp::MaxPool { win, .. } | FOp::AvgPool { win, .. } => Work::Pool { win },
                FOp::Softmax { .. } => Work::Softmax,
                _ => Work::Elementwise,
            };
            let step = Step {
                reads: op.inputs(),
                writes: op.output(),
            };
            (step, work)
        });
        cost::of_graph(&self.shapes, 4, &inputs, &outputs, ops)
    }
}
