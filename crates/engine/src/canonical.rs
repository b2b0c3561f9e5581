//! Verity's canonical int8 model: the operator list, its parameters and its file format.
//!
//! The file is the model (its BLAKE3 is the model id). Decoding validates every index, length,
//! multiplier and accumulator bound, so the interpreter can never read out of range or overflow,
//! whatever bytes it was given. docs/canonical-semantics.md specifies the arithmetic.

use crate::error::{EngineError, Result};
use crate::geometry::Window;
use crate::ir::ValueId;
use verity_core::encode::{Decoder, Encoder};

pub const MAGIC: &[u8; 8] = b"VERITYQ8";
pub const FORMAT_VERSION: u32 = 1;

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

/// A graph input: f32 values are quantized as `clamp(round_half_even(x * inv_scale))`.
#[derive(Clone, Debug, PartialEq)]
pub struct QInput {
    pub name: String,
    pub value: ValueId,
    pub inv_scale: f32,
}

/// A graph output: int8 values are dequantized as `q as f32 * scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct QOutput {
    pub name: String,
    pub value: ValueId,
    pub scale: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CanonicalModel {
    pub shapes: Vec<Vec<usize>>,
    pub inputs: Vec<QInput>,
    pub outputs: Vec<QOutput>,
    pub ops: Vec<QOp>,
    /// The ONNX operator types of the float model this was made from (for `inspect`).
    pub source_ops: Vec<String>,
}

pub fn is_canonical_file(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn put_window(e: &mut Encoder, w: &Window) {
    for v in [
        w.channels,
        w.height,
        w.width,
        w.kernel_h,
        w.kernel_w,
        w.stride_h,
        w.stride_w,
        w.pad_top,
        w.pad_left,
        w.pad_bottom,
        w.pad_right,
    ] {
        e.u64(v as u64);
    }
}

fn put_i8s(e: &mut Encoder, v: &[i8]) {
    e.bytes(&v.iter().map(|&b| b as u8).collect::<Vec<_>>());
}

fn put_i32s(e: &mut Encoder, v: &[i32]) {
    e.u64(v.len() as u64);
    v.iter().for_each(|&x| {
        e.i32(x);
    });
}

fn put_rq(e: &mut Encoder, r: Requant) {
    e.i32(r.mult).u8(r.shift);
}

impl CanonicalModel {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        for &b in MAGIC {
            e.u8(b);
        }
        e.u32(FORMAT_VERSION);
        e.u64(self.shapes.len() as u64);
        for s in &self.shapes {
            e.u32(s.len() as u32);
            s.iter().for_each(|&d| {
                e.u64(d as u64);
            });
        }
        e.u64(self.inputs.len() as u64);
        for i in &self.inputs {
            e.str(&i.name).u64(i.value as u64).f32(i.inv_scale);
        }
        e.u64(self.outputs.len() as u64);
        for o in &self.outputs {
            e.str(&o.name).u64(o.value as u64).f32(o.scale);
        }
        e.u64(self.source_ops.len() as u64);
        for s in &self.source_ops {
            e.str(s);
        }
        e.u64(self.ops.len() as u64);
        for op in &self.ops {
            match op {
                QOp::Dense {
                    x,
                    y,
                    k,
                    n,
                    w,
                    b,
                    rq,
                } => {
                    e.u8(1)
                        .u64(*x as u64)
                        .u64(*y as u64)
                        .u64(*k as u64)
                        .u64(*n as u64);
                    put_i8s(&mut e, w);
                    put_i32s(&mut e, b);
                    e.u64(rq.len() as u64);
                    rq.iter().for_each(|r| put_rq(&mut e, *r));
                }
                QOp::Conv {
                    x,
                    y,
                    out_channels,
                    win,
                    w,
                    b,
                    rq,
                } => {
                    e.u8(2)
                        .u64(*x as u64)
                        .u64(*y as u64)
                        .u64(*out_channels as u64);
                    put_window(&mut e, win);
                    put_i8s(&mut e, w);
                    put_i32s(&mut e, b);
                    e.u64(rq.len() as u64);
                    rq.iter().for_each(|r| put_rq(&mut e, *r));
                }
                QOp::Relu { x, y } => {
                    e.u8(3).u64(*x as u64).u64(*y as u64);
                }
                QOp::Lut { x, y, table } => {
                    e.u8(4).u64(*x as u64).u64(*y as u64);
                    put_i8s(&mut e, table);
                }
                QOp::Softmax { x, y, exp } => {
                    e.u8(5).u64(*x as u64).u64(*y as u64).u64(exp.len() as u64);
                    exp.iter().for_each(|&v| {
                        e.u32(v);
                    });
                }
                QOp::Add {
                    a,
                    b,
                    y,
                    ma,
                    mb,
                    shift,
                } => {
                    e.u8(6)
                        .u64(*a as u64)
                        .u64(*b as u64)
                        .u64(*y as u64)
                        .i32(*ma)
                        .i32(*mb)
                        .u8(*shift);
                }
                QOp::Const { y, data } => {
                    e.u8(7).u64(*y as u64);
                    put_i8s(&mut e, data);
                }
                QOp::MaxPool { x, y, win } => {
                    e.u8(8).u64(*x as u64).u64(*y as u64);
                    put_window(&mut e, win);
                }
                QOp::AvgPool {
                    x,
                    y,
                    win,
                    count_include_pad,
                } => {
                    e.u8(9).u64(*x as u64).u64(*y as u64);
                    put_window(&mut e, win);
                    e.u8(*count_include_pad as u8);
                }
                QOp::Reshape { x, y } => {
                    e.u8(10).u64(*x as u64).u64(*y as u64);
                }
                QOp::Concat { xs, y, axis } => {
                    e.u8(11)
                        .u64(*y as u64)
                        .u64(*axis as u64)
                        .u64(xs.len() as u64);
                    for (x, r) in xs {
                        e.u64(*x as u64);
                        put_rq(&mut e, *r);
                    }
                }
            }
        }
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<CanonicalModel> {
        let m = decode_unchecked(bytes).map_err(|e| EngineError::NotCanonical(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks every structural invariant the interpreter relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(EngineError::NotCanonical(msg));
        let nvals = self.shapes.len();
        let numel = |v: ValueId| -> usize { self.shapes[v].iter().product() };
        let mut defined = vec![false; nvals];
        for s in &self.shapes {
            if s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > verity_core::tensor::MAX_ELEMENTS)
            {
                return bad(format!("value shape {s:?} too large"));
            }
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return bad("no inputs or no outputs".into());
        }
        for i in &self.inputs {
            if i.value >= nvals
                || defined[i.value]
                || !i.inv_scale.is_finite()
                || i.inv_scale <= 0.0
            {
                return bad(format!("input `{}` is malformed", i.name));
            }
            defined[i.value] = true;
        }
        let rq_ok = |r: &Requant| r.mult > 0 && (1..=62).contains(&r.shift);
        for (idx, op) in self.ops.iter().enumerate() {
            let ctx =
                |msg: &str| EngineError::NotCanonical(format!("op {idx} ({}): {msg}", op.name()));
            for x in op.inputs() {
                if x >= nvals || !defined[x] {
                    return Err(ctx("reads an undefined value"));
                }
            }
            let y = op.output();
            if y >= nvals || defined[y] {
                return Err(ctx("writes an invalid or already defined value"));
            }
            match op {
                QOp::Dense {
                    x, k, n, w, b, rq, ..
                } => {
                    let rows = if *k == 0 { 0 } else { numel(*x) / k };
                    if *k == 0
                        || numel(*x) % k != 0
                        || w.len() != k.saturating_mul(*n)
                        || b.len() != *n
                        || rq.len() != *n
                        || numel(y) != rows.saturating_mul(*n)
                        || !rq.iter().all(rq_ok)
                    {
                        return Err(ctx("parameter sizes do not match shapes"));
                    }
                    if !check_accumulator(w, b, *k) {
                        return Err(EngineError::Overflow(format!("op {idx} (Dense)")));
                    }
                }
                QOp::Conv {
                    x,
                    out_channels,
                    win,
                    w,
                    b,
                    rq,
                    ..
                } => {
                    win.validate("Conv")?;
                    let per = win
                        .channels
                        .saturating_mul(win.kernel_h)
                        .saturating_mul(win.kernel_w);
                    let plane = win
                        .channels
                        .saturating_mul(win.height)
                        .saturating_mul(win.width);
                    let batch = numel(*x) / plane.max(1);
                    if self.shapes[*x].len() != 4
                        || self.shapes[*x][1..] != [win.channels, win.height, win.width]
                        || w.len() != out_channels.saturating_mul(per)
                        || b.len() != *out_channels
                        || rq.len() != *out_channels
                        || self.shapes[y] != [batch, *out_channels, win.out_h(), win.out_w()]
                        || !rq.iter().all(rq_ok)
                    {
                        return Err(ctx("parameter sizes do not match shapes"));
                    }
                    if !check_accumulator(w, b, per) {
                        return Err(EngineError::Overflow(format!("op {idx} (Conv)")));
                    }
                }
                QOp::Relu { x, .. } | QOp::Reshape { x, .. } => {
                    if numel(*x) != numel(y) {
                        return Err(ctx("element count changes"));
                    }
                }
                QOp::Lut { x, table, .. } => {
                    if numel(*x) != numel(y) || table.len() != 256 {
                        return Err(ctx("bad table or shape"));
                    }
                }
                QOp::Softmax { x, exp, .. } => {
                    if self.shapes[*x] != self.shapes[y]
                        || exp.len() != 256
                        || exp[0] == 0
                        || exp.iter().any(|&e| e > 1 << 24)
                        || self.shapes[y].last().is_none_or(|&n| n == 0)
                    {
                        return Err(ctx("bad table or shape"));
                    }
                }
                QOp::Add {
                    a,
                    b,
                    ma,
                    mb,
                    shift,
                    ..
                } => {
                    let (sa, sb) = (&self.shapes[*a], &self.shapes[*b]);
                    if sa != &self.shapes[y]
                        || !sa.ends_with(sb)
                        || numel(*b) == 0
                        || *ma < 0
                        || *mb < 0
                        || *ma >= 1 << 30
                        || *mb >= 1 << 30
                        || !(1..=62).contains(shift)
                    {
                        return Err(ctx("bad shapes or multipliers"));
                    }
                }
                QOp::Const { data, .. } => {
                    if data.len() != numel(y) {
                        return Err(ctx("data length does not match shape"));
                    }
                }
                QOp::MaxPool { x, win, .. } | QOp::AvgPool { x, win, .. } => {
                    win.validate("pool")?;
                    let xs = &self.shapes[*x];
                    if xs.len() != 4
                        || xs[1..] != [win.channels, win.height, win.width]
                        || self.shapes[y] != [xs[0], win.channels, win.out_h(), win.out_w()]
                    {
                        return Err(ctx("window does not match shapes"));
                    }
                }
                QOp::Concat { xs, axis, .. } => {
                    let ys = &self.shapes[y];
                    if xs.is_empty() || *axis >= ys.len() || !xs.iter().all(|(_, r)| rq_ok(r)) {
                        return Err(ctx("bad axis or multipliers"));
                    }
                    let mut total = 0;
                    for (x, _) in xs {
                        let s = &self.shapes[*x];
                        if s.len() != ys.len()
                            || s.iter()
                                .zip(ys)
                                .enumerate()
                                .any(|(i, (a, b))| i != *axis && a != b)
                        {
                            return Err(ctx("input shapes do not match"));
                        }
                        total += s[*axis];
                    }
                    if total != ys[*axis] {
                        return Err(ctx("output shape does not match"));
                    }
                }
            }
            defined[y] = true;
        }
        for o in &self.outputs {
            if o.value >= nvals || !defined[o.value] || !o.scale.is_finite() {
                return bad(format!("output `{}` is malformed", o.name));
            }
        }
        Ok(())
    }
}

/// True when the worst case |sum_k x*w + b| (|x| <= 128) stays below 2^31 for every channel.
pub fn check_accumulator(w: &[i8], b: &[i32], k: usize) -> bool {
    for (o, row) in w.chunks(k.max(1)).enumerate() {
        let bound: i64 =
            row.iter().map(|&v| (v as i64).abs() * 128).sum::<i64>() + (b[o] as i64).abs();
        if bound > i32::MAX as i64 {
            return false;
        }
    }
    true
}

fn decode_unchecked(bytes: &[u8]) -> std::result::Result<CanonicalModel, verity_core::CoreError> {
    use verity_core::CoreError;
    let mut d = Decoder::new(bytes);
    for &b in MAGIC {
        if d.u8()? != b {
            return Err(CoreError::Malformed("bad magic".into()));
        }
    }
    let version = d.u32()?;
    if version != FORMAT_VERSION {
        return Err(CoreError::Malformed(format!(
            "format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let idx = |d: &mut Decoder| -> std::result::Result<usize, CoreError> {
        usize::try_from(d.u64()?).map_err(|_| CoreError::Malformed("index".into()))
    };
    let nvals = d.count(4)?;
    let mut shapes = Vec::with_capacity(nvals);
    for _ in 0..nvals {
        let rank = d.u32()? as usize;
        if rank > 8 {
            return Err(CoreError::Malformed(format!("rank {rank}")));
        }
        shapes.push(
            (0..rank)
                .map(|_| idx(&mut d))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        );
    }
    let mut inputs = vec![];
    for _ in 0..d.count(16)? {
        inputs.push(QInput {
            name: d.str()?.to_string(),
            value: idx(&mut d)?,
            inv_scale: d.f32()?,
        });
    }
    let mut outputs = vec![];
    for _ in 0..d.count(16)? {
        outputs.push(QOutput {
            name: d.str()?.to_string(),
            value: idx(&mut d)?,
            scale: d.f32()?,
        });
    }
    let mut source_ops = vec![];
    for _ in 0..d.count(8)? {
        source_ops.push(d.str()?.to_string());
    }
    let win = |d: &mut Decoder| -> std::result::Result<Window, CoreError> {
        let mut v = [0usize; 11];
        for x in v.iter_mut() {
            *x = idx(d)?;
        }
        Ok(Window {
            channels: v[0],
            height: v[1],
            width: v[2],
            kernel_h: v[3],
            kernel_w: v[4],
            stride_h: v[5],
            stride_w: v[6],
            pad_top: v[7],
            pad_left: v[8],
            pad_bottom: v[9],
            pad_right: v[10],
        })
    };
    let i8s = |d: &mut Decoder| -> std::result::Result<Vec<i8>, CoreError> {
        Ok(d.bytes()?.iter().map(|&b| b as i8).collect())
    };
    let i32s = |d: &mut Decoder| -> std::result::Result<Vec<i32>, CoreError> {
        let n = d.count(4)?;
        (0..n).map(|_| d.i32()).collect()
    };
    let rqs = |d: &mut Decoder| -> std::result::Result<Vec<Requant>, CoreError> {
        let n = d.count(5)?;
        (0..n)
            .map(|_| {
                Ok(Requant {
                    mult: d.i32()?,
                    shift: d.u8()?,
                })
            })
            .collect()
    };
    let mut ops = vec![];
    for _ in 0..d.count(9)? {
        let op = match d.u8()? {
            1 => QOp::Dense {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
                k: idx(&mut d)?,
                n: idx(&mut d)?,
                w: i8s(&mut d)?,
                b: i32s(&mut d)?,
                rq: rqs(&mut d)?,
            },
            2 => QOp::Conv {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
                out_channels: idx(&mut d)?,
                win: win(&mut d)?,
                w: i8s(&mut d)?,
                b: i32s(&mut d)?,
                rq: rqs(&mut d)?,
            },
            3 => QOp::Relu {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
            },
            4 => QOp::Lut {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
                table: i8s(&mut d)?,
            },
            5 => {
                let (x, y) = (idx(&mut d)?, idx(&mut d)?);
                let n = d.count(4)?;
                QOp::Softmax {
                    x,
                    y,
                    exp: (0..n)
                        .map(|_| d.u32())
                        .collect::<std::result::Result<_, _>>()?,
                }
            }
            6 => QOp::Add {
                a: idx(&mut d)?,
                b: idx(&mut d)?,
                y: idx(&mut d)?,
                ma: d.i32()?,
                mb: d.i32()?,
                shift: d.u8()?,
            },
            7 => QOp::Const {
                y: idx(&mut d)?,
                data: i8s(&mut d)?,
            },
            8 => QOp::MaxPool {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
                win: win(&mut d)?,
            },
            9 => QOp::AvgPool {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
                win: win(&mut d)?,
                count_include_pad: d.u8()? != 0,
            },
            10 => QOp::Reshape {
                x: idx(&mut d)?,
                y: idx(&mut d)?,
            },
            11 => {
                let (y, axis) = (idx(&mut d)?, idx(&mut d)?);
                let n = d.count(13)?;
                let xs = (0..n)
                    .map(|_| {
                        Ok((
                            idx(&mut d)?,
                            Requant {
                                mult: d.i32()?,
                                shift: d.u8()?,
                            },
                        ))
                    })
                    .collect::<std::result::Result<_, CoreError>>()?;
                QOp::Concat { xs, y, axis }
            }
            t => return Err(CoreError::Malformed(format!("unknown op tag {t}"))),
        };
        ops.push(op);
    }
    d.expect_end()?;
    Ok(CanonicalModel {
        shapes,
        inputs,
        outputs,
        ops,
        source_ops,
    })
}
