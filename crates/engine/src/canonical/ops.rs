//! The canonical operators and the integer rules they are defined with
//! (docs/canonical-semantics.md §3–4). The interpreter, its kernels and the zk circuits all
//! compute with [`Requant`], [`clamp_i8`] and [`add_i8`], so each rounding rule has one home.

use crate::geometry::Window;
use crate::ir::ValueId;

/// Fixed-point rescale: `y = (acc * mult + 2^(shift-1)) >> shift` (arithmetic shift), i.e.
/// `acc * mult / 2^shift` rounded half towards +infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    pub mult: i32,
    pub shift: u8,
}

impl Requant {
    #[inline(always)]
    pub fn apply(self, acc: i64) -> i64 {
        (acc * self.mult as i64 + (1i64 << (self.shift - 1))) >> self.shift
    }
}

#[inline(always)]
pub fn clamp_i8(v: i64) -> i8 {
    v.clamp(-128, 127) as i8
}

/// The canonical Add: `clamp((a*ma + b*mb + 2^(shift-1)) >> shift)`.
#[inline(always)]
pub fn add_i8(a: i8, b: i8, ma: i32, mb: i32, shift: u8) -> i8 {
    clamp_i8((a as i64 * ma as i64 + b as i64 * mb as i64 + (1i64 << (shift - 1))) >> shift)
}

#[derive(Clone, Debug, PartialEq)]
pub enum QOp {
    Dense {
        x: ValueId,
        y: ValueId,
        k: usize,
        n: usize,
        w: Vec<i8>,
        b: Vec<i32>,
        rq: Vec<Requant>,
    },
    Conv {
        x: ValueId,
        y: ValueId,
        out_channels: usize,
        win: Window,
        w: Vec<i8>,
        b: Vec<i32>,
        rq: Vec<Requant>,
    },
    Relu {
        x: ValueId,
        y: ValueId,
    },
    /// 256-entry table, indexed by `x + 128` (Sigmoid, Tanh).
    Lut {
        x: ValueId,
        y: ValueId,
        table: Vec<i8>,
    },
    /// Softmax over the last axis with a 256-entry exp table indexed by `max - x`.
    Softmax {
        x: ValueId,
        y: ValueId,
        exp: Vec<u32>,
    },
    Add {
        a: ValueId,
        b: ValueId,
        y: ValueId,
        ma: i32,
        mb: i32,
        shift: u8,
    },
    Const {
        y: ValueId,
        data: Vec<i8>,
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
        xs: Vec<(ValueId, Requant)>,
        y: ValueId,
        axis: usize,
    },
}

impl QOp {
    pub fn output(&self) -> ValueId {
        match self {
            QOp::Dense { y, .. }
            | QOp::Conv { y, .. }
            | QOp::Relu { y, .. }
            | QOp::Lut { y, .. }
            | QOp::Softmax { y, .. }
            | QOp::Add { y, .. }
            | QOp::Const { y, .. }
            | QOp::MaxPool { y, .. }
            | QOp::AvgPool { y, .. }
            | QOp::Reshape { y, .. }
            | QOp::Concat { y, .. } => *y,
        }
    }

    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            QOp::Dense { x, .. }
            | QOp::Conv { x, .. }
            | QOp::Relu { x, .. }
            | QOp::Lut { x, .. }
            | QOp::Softmax { x, .. }
            | QOp::MaxPool { x, .. }
            | QOp::AvgPool { x, .. }
            | QOp::Reshape { x, .. } => vec![*x],
            QOp::Add { a, b, .. } => vec![*a, *b],
            QOp::Const { .. } => vec![],
            QOp::Concat { xs, .. } => xs.iter().map(|(x, _)| *x).collect(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            QOp::Dense { .. } => "Dense",
            QOp::Conv { .. } => "Conv",
            QOp::Relu { .. } => "Relu",
            QOp::Lut { .. } => "Lut",
            QOp::Softmax { .. } => "Softmax",
            QOp::Add { .. } => "Add",
            QOp::Const { .. } => "Const",
            QOp::MaxPool { .. } => "MaxPool",
            QOp::AvgPool { .. } => "AvgPool",
            QOp::Reshape { .. } => "Reshape",
            QOp::Concat { .. } => "Concat",
        }
    }
}
