//! The canonical integer interpreter: runs a [`CanonicalModel`] and commits to every
//! intermediate tensor in a layer trace. Same bytes in, same bytes and trace root out, on
//! every CPU, thread count and run.

use crate::canonical::{add_i8, clamp_i8, CanonicalModel, QOp};
use crate::error::{EngineError, Result};
use crate::kernels::{self, Isa};
use verity_core::tensor::hash_parts;
use verity_core::trace::trace_root;
use verity_core::{DType, EngineId, Hash, Tensor, TensorMap};

pub const ENGINE_NAME: &str = "verity-int8";

/// The engine id receipts carry for canonical executions. The version names the semantics
/// (docs/canonical-semantics.md), not the build: any build implementing v1 gives the same bits.
pub fn engine_id() -> EngineId {
    EngineId {
        name: ENGINE_NAME.to_string(),
        version: format!("semantics-v{}", crate::canonical::FORMAT_VERSION),
    }
}

pub struct Execution {
    /// Dequantized f32 outputs, keyed by output name.
    pub outputs: TensorMap,
    /// Hash of every value in execution order: the quantized inputs, then each op's output.
    pub trace: Vec<Hash>,
    pub trace_root: Hash,
}

pub struct Interpreter {
    model: CanonicalModel,
    /// Per op: the weights widened to i16 for the dot-product kernels (empty if unused).
    widened: Vec<Vec<i16>>,
    isa: Isa,
    threads: bool,
}

fn as_bytes(v: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) }
}

impl Interpreter {
    /// Fastest kernels this CPU has, using threads for large layers.
    pub fn new(model: CanonicalModel) -> Interpreter {
        Interpreter::with_options(model, kernels::detect_isa(), true)
    }

    /// Chooses kernels and threading explicitly (tests prove the choice never changes results).
    pub fn with_options(model: CanonicalModel, isa: Isa, threads: bool) -> Interpreter {
        let widened = model
            .ops
            .iter()
            .map(|op| match op {
                QOp::Dense { w, .. } => kernels::widen(w),
                QOp::Conv { w, win, .. } if kernels::uses_dot_products(win) => kernels::widen(w),
                _ => Vec::new(),
            })
            .collect();
        Interpreter {
            model,
            widened,
            isa,
            threads,
        }
    }

    /// Checks names, dtypes and shapes, then quantizes the inputs.
    pub fn quantize_inputs(&self, inputs: &TensorMap) -> Result<Vec<(usize, Vec<i8>)>> {
        let m = &self.model;
        if let Some(extra) = inputs
            .keys()
            .find(|k| !m.inputs.iter().any(|i| &i.name == *k))
        {
            return Err(EngineError::UnknownInput {
                name: extra.clone(),
                expected: m
                    .inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        m.inputs
            .iter()
            .map(|spec| {
                let t = inputs
                    .get(&spec.name)
                    .ok_or_else(|| EngineError::MissingInput(spec.name.clone()))?;
                let want = &m.shapes[spec.value];
                if t.dtype() != DType::F32 || t.shape() != want.as_slice() {
                    return Err(EngineError::InputMismatch {
                        name: spec.name.clone(),
                        expected: format!("f32 {want:?}"),
                        got: format!("{} {:?}", t.dtype(), t.shape()),
                    });
                }
                let q = t
                    .to_f32()
                    .unwrap_or_default()
                    .iter()
                    .map(|&x| quantize_input(x, spec.inv_scale))
                    .collect();
                Ok((spec.value, q))
            })
            .collect()
    }

    /// Runs the model, hashing each value into the trace as it is made and freeing it after
    /// its last reader, so an inference holds no more than its cost's `peak_bytes`.
    pub fn run(&self, inputs: &TensorMap) -> Result<Execution> {
        let m = &self.model;
        let outputs: Vec<usize> = m.outputs.iter().map(|o| o.value).collect();
        let steps = m.steps();
        let last = crate::cost::last_reads(m.shapes.len(), &steps, &outputs);
        let hash = |v: usize, data: &[i8]| hash_parts(DType::I8, &m.shapes[v], as_bytes(data));
        let mut vals: Vec<Vec<i8>> = vec![Vec::new(); m.shapes.len()];
        let mut trace = Vec::with_capacity(m.inputs.len() + m.ops.len());
        for (v, q) in self.quantize_inputs(inputs)? {
            vals[v] = q;
        }
        for i in &m.inputs {
            trace.push(hash(i.value, &vals[i.value]));
        }
        for (i, ((op, widened), step)) in m.ops.iter().zip(&self.widened).zip(&steps).enumerate() {
            let y = op.output();
            vals[y] = self.step(op, widened, &vals);
            trace.push(hash(y, &vals[y]));
            for &v in step.reads.iter().chain([&y]) {
                if last[v] == i {
                    vals[v] = Vec::new();
                }
            }
        }
        let trace_root = trace_root(&trace);
        Ok(Execution {
            outputs: self.outputs(&vals)?,
            trace,
            trace_root,
        })
    }

    /// Every value of the graph (indexed by value id) for these inputs: the quantized inputs,
    /// constants and each op's int8 output. The zk prover builds its witness from them.
    pub fn values(&self, inputs: &TensorMap) -> Result<Vec<Vec<i8>>> {
        let m = &self.model;
        let mut vals: Vec<Vec<i8>> = vec![Vec::new(); m.shapes.len()];
        for (v, q) in self.quantize_inputs(inputs)? {
            vals[v] = q;
        }
        for (op, widened) in m.ops.iter().zip(&self.widened) {
            vals[op.output()] = self.step(op, widened, &vals);
        }
        Ok(vals)
    }

    /// The dequantized f32 output tensors, keyed by output name, of these values.
    pub fn outputs(&self, vals: &[Vec<i8>]) -> Result<TensorMap> {
        let m = &self.model;
        let mut outputs = TensorMap::new();
        for o in &m.outputs {
            let f: Vec<f32> = vals[o.value].iter().map(|&q| q as f32 * o.scale).collect();
            outputs.insert(
                o.name.clone(),
                Tensor::from_f32(m.shapes[o.value].clone(), &f)?,
            );
        }
        Ok(outputs)
    }

    pub fn model(&self) -> &CanonicalModel {
        &self.model
    }

    fn step(&self, op: &QOp, widened: &[i16], vals: &[Vec<i8>]) -> Vec<i8> {
        let m = &self.model;
        let numel = |v: usize| m.shapes[v].iter().product::<usize>();
        match op {
            QOp::Dense { x, y, k, b, rq, .. } => {
                let mut out = vec![0i8; numel(*y)];
                kernels::dense(
                    self.isa,
                    self.threads,
                    &vals[*x],
                    *k,
                    widened,
                    b,
                    rq,
                    &mut out,
                );
                out
            }
            QOp::Conv {
                x,
                y,
                win,
                w,
                b,
                rq,
                ..
            } => {
                let mut out = vec![0i8; numel(*y)];
                let plane = win.channels * win.height * win.width;
                let out_plane = out.len() / m.shapes[*y][0].max(1);
                for (img, o) in vals[*x].chunks(plane).zip(out.chunks_mut(out_plane.max(1))) {
                    kernels::conv(self.isa, self.threads, img, win, w, widened, b, rq, o);
                }
                out
            }
            QOp::Relu { x, .. } => vals[*x].iter().map(|&v| v.max(0)).collect(),
            QOp::Lut { x, table, .. } => vals[*x]
                .iter()
                .map(|&v| table[(v as i16 + 128) as usize])
                .collect(),
            QOp::Softmax { x, y, exp } => {
                let n = m.shapes[*y].last().copied().unwrap_or(1);
                let mut out = Vec::with_capacity(vals[*x].len());
                for row in vals[*x].chunks(n) {
                    let max = row.iter().copied().max().unwrap_or(0) as i16;
                    let e: Vec<u64> = row
                        .iter()
                        .map(|&v| exp[(max - v as i16) as usize] as u64)
                        .collect();
                    let sum: u64 = e.iter().sum();
                    out.extend(e.iter().map(|&ei| ((2 * 127 * ei + sum) / (2 * sum)) as i8));
                }
                out
            }
            QOp::Add {
                a,
                b,
                ma,
                mb,
                shift,
                ..
            } => {
                let (a, b) = (&vals[*a], &vals[*b]);
                a.iter()
                    .enumerate()
                    .map(|(i, &av)| add_i8(av, b[i % b.len()], *ma, *mb, *shift))
                    .collect()
            }
            QOp::Const { data, .. } => data.clone(),
            QOp::MaxPool { x, win, .. } => pool(&vals[*x], win, i8::MIN, |a, v| a.max(v), |a, _| a),
            QOp::AvgPool {
                x,
                win,
                count_include_pad,
                ..
            } => pool(
                &vals[*x],
                win,
                0i64,
                |a, v| a + v as i64,
                |sum, count| {
                    let count = if *count_include_pad {
                        (win.kernel_h * win.kernel_w) as i64
                    } else {
                        count as i64
                    };
                    clamp_i8((2 * sum + count).div_euclid(2 * count))
                },
            ),
            QOp::Reshape { x, .. } => vals[*x].clone(),
            QOp::Concat { xs, y, axis } => {
                let outer: usize = m.shapes[*y][..*axis].iter().product();
                let mut out = Vec::with_capacity(numel(*y));
                for o in 0..outer {
                    for (x, rq) in xs {
                        let chunk = vals[*x].len() / outer.max(1);
                        out.extend(
                            vals[*x][o * chunk..(o + 1) * chunk]
                                .iter()
                                .map(|&v| clamp_i8(rq.apply(v as i64))),
                        );
                    }
                }
                out
            }
        }
    }
}

/// `clamp(round_half_even(x * inv_scale), -128, 127)` (docs/canonical-semantics.md §2).
/// Clamping to [-129, 128] first changes no result and keeps |v| < 2^22, where adding and
/// subtracting 1.5 * 2^23 rounds half to even exactly in IEEE binary32 (no libm call).
#[inline]
fn quantize_input(x: f32, inv_scale: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let v = (x * inv_scale).clamp(-129.0, 128.0);
    ((v + MAGIC) - MAGIC).clamp(-128.0, 127.0) as i8
}

/// Folds every window of every channel plane (`fold` over the positions inside the image,
/// then `finish(acc, count_inside)`).
fn pool<A: Copy>(
    x: &[i8],
    win: &crate::geometry::Window,
    init: A,
    fold: impl Fn(A, i8) -> A,
    finish: impl Fn(A, usize) -> i8,
) -> Vec<i8> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let plane = win.height * win.width;
    let mut out = Vec::with_capacity(x.len() / plane.max(1) * oh * ow);
    for p in x.chunks(plane.max(1)) {
        for oy in 0..oh {
            for ox in 0..ow {
                let (rows, cols) = win.span(oy, ox);
                let count = rows.len() * cols.len();
                let mut acc = init;
                for r in rows {
                    for &v in &p[r * win.width + cols.start..r * win.width + cols.end] {
                        acc = fold(acc, v);
                    }
                }
                out.push(finish(acc, count));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::quantize_input;

    #[test]
    fn input_rounding_is_half_even_then_clamped() {
        for (x, q) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (126.5, 126),
            (127.5, 127),
            (1e30, 127),
            (-1e30, -128),
            (-128.5, -128),
            (3.49, 3),
        ] {
            assert_eq!(quantize_input(x, 1.0), q, "{x}");
        }
        // Agrees with the definition over a dense sweep.
        let mut x = -200.0f32;
        while x < 200.0 {
            assert_eq!(
                quantize_input(x, 1.0),
                x.round_ties_even().clamp(-128.0, 127.0) as i8,
                "{x}"
            );
            x += 0.0625 / 3.0;
        }
    }
}
