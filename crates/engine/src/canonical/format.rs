//! The VERITYQ8 file (docs/canonical-semantics.md §9). The file is the model: its BLAKE3 is the
//! model id, so encoding is a pure function of the [`CanonicalModel`] and decoding accepts
//! exactly one byte string per model (no trailing bytes), then validates it.

use super::{CanonicalModel, QInput, QOp, QOutput, Requant};
use crate::error::{EngineError, Result};
use crate::geometry::Window;
use verity_core::encode::{Decoder, Encoder};
use verity_core::CoreError;

pub const MAGIC: &[u8; 8] = b"VERITYQ8";
pub const FORMAT_VERSION: u32 = 1;

type Decoded<T> = std::result::Result<T, CoreError>;

/// Op tags in the file.
mod tag {
    pub const DENSE: u8 = 1;
    pub const CONV: u8 = 2;
    pub const RELU: u8 = 3;
    pub const LUT: u8 = 4;
    pub const SOFTMAX: u8 = 5;
    pub const ADD: u8 = 6;
    pub const CONST: u8 = 7;
    pub const MAX_POOL: u8 = 8;
    pub const AVG_POOL: u8 = 9;
    pub const RESHAPE: u8 = 10;
    pub const CONCAT: u8 = 11;
}

pub fn is_canonical_file(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
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
            put_op(&mut e, op);
        }
        e.finish()
    }

    /// Parses and validates a canonical file; any defect is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<CanonicalModel> {
        let m = decode_unchecked(bytes).map_err(|e| EngineError::NotCanonical(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }
}

fn put_op(e: &mut Encoder, op: &QOp) {
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
            e.u8(tag::DENSE)
                .u64(*x as u64)
                .u64(*y as u64)
                .u64(*k as u64)
                .u64(*n as u64);
            put_layer(e, w, b, rq);
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
            e.u8(tag::CONV)
                .u64(*x as u64)
                .u64(*y as u64)
                .u64(*out_channels as u64);
            put_window(e, win);
            put_layer(e, w, b, rq);
        }
        QOp::Relu { x, y } => {
            e.u8(tag::RELU).u64(*x as u64).u64(*y as u64);
        }
        QOp::Lut { x, y, table } => {
            e.u8(tag::LUT).u64(*x as u64).u64(*y as u64);
            put_i8s(e, table);
        }
        QOp::Softmax { x, y, exp } => {
            e.u8(tag::SOFTMAX)
                .u64(*x as u64)
                .u64(*y as u64)
                .u64(exp.len() as u64);
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
            e.u8(tag::ADD)
                .u64(*a as u64)
                .u64(*b as u64)
                .u64(*y as u64)
                .i32(*ma)
                .i32(*mb)
                .u8(*shift);
        }
        QOp::Const { y, data } => {
            e.u8(tag::CONST).u64(*y as u64);
            put_i8s(e, data);
        }
        QOp::MaxPool { x, y, win } => {
            e.u8(tag::MAX_POOL).u64(*x as u64).u64(*y as u64);
            put_window(e, win);
        }
        QOp::AvgPool {
            x,
            y,
            win,
            count_include_pad,
        } => {
            e.u8(tag::AVG_POOL).u64(*x as u64).u64(*y as u64);
            put_window(e, win);
            e.u8(*count_include_pad as u8);
        }
        QOp::Reshape { x, y } => {
            e.u8(tag::RESHAPE).u64(*x as u64).u64(*y as u64);
        }
        QOp::Concat { xs, y, axis } => {
            e.u8(tag::CONCAT)
                .u64(*y as u64)
                .u64(*axis as u64)
                .u64(xs.len() as u64);
            for (x, r) in xs {
                e.u64(*x as u64);
                put_requant(e, *r);
            }
        }
    }
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

/// A Dense/Conv's weights, biases and per-channel requantizers.
fn put_layer(e: &mut Encoder, w: &[i8], b: &[i32], rq: &[Requant]) {
    put_i8s(e, w);
    e.u64(b.len() as u64);
    b.iter().for_each(|&x| {
        e.i32(x);
    });
    e.u64(rq.len() as u64);
    rq.iter().for_each(|r| put_requant(e, *r));
}

fn put_i8s(e: &mut Encoder, v: &[i8]) {
    e.bytes(&v.iter().map(|&b| b as u8).collect::<Vec<_>>());
}

fn put_requant(e: &mut Encoder, r: Requant) {
    e.i32(r.mult).u8(r.shift);
}

/// The file's structure only; [`CanonicalModel::validate`] checks what it means.
fn decode_unchecked(bytes: &[u8]) -> Decoded<CanonicalModel> {
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
    let nvals = d.count(4)?;
    let mut shapes = Vec::with_capacity(nvals);
    for _ in 0..nvals {
        let rank = d.u32()? as usize;
        if rank > 8 {
            return Err(CoreError::Malformed(format!("rank {rank}")));
        }
        shapes.push(
            (0..rank)
                .map(|_| index(&mut d))
                .collect::<Decoded<Vec<_>>>()?,
        );
    }
    let mut inputs = vec![];
    for _ in 0..d.count(16)? {
        inputs.push(QInput {
            name: d.str()?.to_string(),
            value: index(&mut d)?,
            inv_scale: d.f32()?,
        });
    }
    let mut outputs = vec![];
    for _ in 0..d.count(16)? {
        outputs.push(QOutput {
            name: d.str()?.to_string(),
            value: index(&mut d)?,
            scale: d.f32()?,
        });
    }
    let mut source_ops = vec![];
    for _ in 0..d.count(8)? {
        source_ops.push(d.str()?.to_string());
    }
    let mut ops = vec![];
    for _ in 0..d.count(9)? {
        ops.push(read_op(&mut d)?);
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

fn read_op(d: &mut Decoder) -> Decoded<QOp> {
    Ok(match d.u8()? {
        tag::DENSE => QOp::Dense {
            x: index(d)?,
            y: index(d)?,
            k: index(d)?,
            n: index(d)?,
            w: read_i8s(d)?,
            b: read_i32s(d)?,
            rq: read_requants(d)?,
        },
        tag::CONV => QOp::Conv {
            x: index(d)?,
            y: index(d)?,
            out_channels: index(d)?,
            win: read_window(d)?,
            w: read_i8s(d)?,
            b: read_i32s(d)?,
            rq: read_requants(d)?,
        },
        tag::RELU => QOp::Relu {
            x: index(d)?,
            y: index(d)?,
        },
        tag::LUT => QOp::Lut {
            x: index(d)?,
            y: index(d)?,
            table: read_i8s(d)?,
        },
        tag::SOFTMAX => {
            let (x, y) = (index(d)?, index(d)?);
            let n = d.count(4)?;
            QOp::Softmax {
                x,
                y,
                exp: (0..n).map(|_| d.u32()).collect::<Decoded<_>>()?,
            }
        }
        tag::ADD => QOp::Add {
            a: index(d)?,
            b: index(d)?,
            y: index(d)?,
            ma: d.i32()?,
            mb: d.i32()?,
            shift: d.u8()?,
        },
        tag::CONST => QOp::Const {
            y: index(d)?,
            data: read_i8s(d)?,
        },
        tag::MAX_POOL => QOp::MaxPool {
            x: index(d)?,
            y: index(d)?,
            win: read_window(d)?,
        },
        tag::AVG_POOL => QOp::AvgPool {
            x: index(d)?,
            y: index(d)?,
            win: read_window(d)?,
            count_include_pad: d.u8()? != 0,
        },
        tag::RESHAPE => QOp::Reshape {
            x: index(d)?,
            y: index(d)?,
        },
        tag::CONCAT => {
            let (y, axis) = (index(d)?, index(d)?);
            let n = d.count(13)?;
            let xs = (0..n)
                .map(|_| Ok((index(d)?, read_requant(d)?)))
                .collect::<Decoded<_>>()?;
            QOp::Concat { xs, y, axis }
        }
        t => return Err(CoreError::Malformed(format!("unknown op tag {t}"))),
    })
}

/// A value id, dimension or count stored as u64 (must fit this platform's usize).
fn index(d: &mut Decoder) -> Decoded<usize> {
    usize::try_from(d.u64()?).map_err(|_| CoreError::Malformed("index".into()))
}

fn read_window(d: &mut Decoder) -> Decoded<Window> {
    let mut v = [0usize; 11];
    for x in v.iter_mut() {
        *x = index(d)?;
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
}

fn read_i8s(d: &mut Decoder) -> Decoded<Vec<i8>> {
    Ok(d.bytes()?.iter().map(|&b| b as i8).collect())
}

fn read_i32s(d: &mut Decoder) -> Decoded<Vec<i32>> {
    let n = d.count(4)?;
    (0..n).map(|_| d.i32()).collect()
}

fn read_requant(d: &mut Decoder) -> Decoded<Requant> {
    Ok(Requant {
        mult: d.i32()?,
        shift: d.u8()?,
    })
}

fn read_requants(d: &mut Decoder) -> Decoded<Vec<Requant>> {
    let n = d.count(5)?;
    (0..n).map(|_| read_requant(d)).collect()
}
