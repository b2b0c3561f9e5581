//! Post-training quantization of a float ONNX graph into the canonical int8 form.
//!
//! Scales come from calibration: the float interpreter runs every calibration sample and each
//! value's scale is max|x| / 127 (symmetric, zero point 0). Weights get one scale per output
//! channel. Everything derived here (multipliers, shifts, lookup tables) is stored in the model
//! file, so the float arithmetic used to compute it never has to be reproduced by anyone.

use crate::canonical::{CanonicalModel, QInput, QOp, QOutput, Requant};
use crate::error::{EngineError, Result};
use crate::ir::{FOp, FloatGraph};
use crate::lower::InputShapes;
use crate::onnx::OnnxSummary;
use crate::{lower, onnx};
use serde::Deserialize;
use std::collections::BTreeMap;
use verity_core::hash::{domain, Hash};
use verity_core::Tensor;

/// Calibration samples: for each model input, a tensor whose first dimension counts samples.
/// File format (JSON): `{"input_name": {"dtype":"f32","shape":[N, ...],"data":[...]}}`.
pub struct Calibration {
    pub tensors: BTreeMap<String, Tensor>,
    /// Domain-separated hash of the file's bytes, recorded in the canonical model's manifest.
    pub hash: Hash,
}

impl Calibration {
    pub fn from_json(bytes: &[u8]) -> Result<Calibration> {
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct File(BTreeMap<String, Tensor>);
        let File(tensors) =
            serde_json::from_slice(bytes).map_err(|e| EngineError::Calibration(e.to_string()))?;
        Ok(Calibration {
            tensors,
            hash: Hash::of(domain::CALIBRATION, bytes),
        })
    }

    /// The input shapes the samples fix: one sample's shape, with the model's leading batch
    /// dimension of 1 when the model's input has one more dimension than a sample. Samples
    /// that do not fit the model's static dimensions fix nothing (the calibration is refused
    /// for them later, naming the shapes).
    pub fn input_shapes(&self, summary: &OnnxSummary) -> InputShapes {
        summary
            .inputs
            .iter()
            .filter_map(|spec| {
                let sample = self.tensors.get(&spec.name)?.shape().get(1..)?.to_vec();
                let shape: Vec<usize> = if sample.len() + 1 == spec.shape.len() {
                    std::iter::once(1).chain(sample).collect()
                } else {
                    sample
                };
                let fits = shape.len() == spec.shape.len()
                    && shape
                        .iter()
                        .zip(&spec.shape)
                        .all(|(s, d)| *s > 0 && d.is_none_or(|d| d == *s));
                fits.then(|| (spec.name.clone(), shape))
            })
            .collect()
    }

    /// Splits into per-sample inputs matching the graph's input shapes.
    fn samples(&self, g: &FloatGraph) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut count = None;
        let mut per_input = vec![];
        for (name, v) in &g.inputs {
            let t = self.tensors.get(name).ok_or_else(|| {
                EngineError::Calibration(format!("no samples for input `{name}`"))
            })?;
            let data = t
                .to_f32()
                .ok_or_else(|| EngineError::Calibration(format!("`{name}` must be f32")))?;
            let want: usize = g.shapes[*v].iter().product();
            let model_shape = &g.shapes[*v];
            let per_sample = if model_shape.first() == Some(&1) {
                &model_shape[1..]
            } else {
                &model_shape[..]
            };
            let n = t.shape().first().copied().unwrap_or(0);
            if n == 0 || data.len() != n * want || &t.shape()[1..] != per_sample {
                return Err(EngineError::Calibration(format!(
                    "`{name}` has shape {:?}; expected [N, ...] with {want} values per sample (model shape {:?})",
                    t.shape(),
                    g.shapes[*v]
                )));
            }
            if *count.get_or_insert(n) != n {
                return Err(EngineError::Calibration(
                    "inputs have different sample counts".into(),
                ));
            }
            per_input.push(data);
        }
        let n = count.unwrap_or(0);
        Ok((0..n)
            .map(|s| {
                per_input
                    .iter()
                    .zip(&g.inputs)
                    .map(|(d, (_, v))| {
                        let len: usize = g.shapes[*v].iter().product();
                        d[s * len..(s + 1) * len].to_vec()
                    })
                    .collect()
            })
            .collect())
    }
}

/// `m` as `mult / 2^shift` with mult in [2^30, 2^31) when possible.
fn requant_of(m: f64) -> Result<Requant> {
    if !(m.is_finite() && m > 0.0) {
        return Err(EngineError::InvalidModel(format!(
            "rescale factor {m} is not positive"
        )));
    }
    let e = m.log2().floor() as i32;
    let mut shift = 30 - e;
    if shift < 1 {
        return Err(EngineError::InvalidModel(format!(
            "rescale factor {m} is too large"
        )));
    }
    shift = shift.min(62);
    let mut mult = (m * 2f64.powi(shift)).round();
    if mult >= 2f64.powi(31) {
        mult /= 2.0;
        shift -= 1;
    }
    Ok(Requant {
        mult: mult.max(1.0) as i32,
        shift: shift as u8,
    })
}

/// Largest quantized bias; keeps `sum |w|*128 + |b|` far below 2^31 for realistic fan-ins.
const MAX_BIAS: f64 = (1u64 << 29) as f64;

/// Per-output-channel weights, bias and requantization for a Dense/Conv whose input has scale
/// `s_x` and output scale `s_y`. A channel's weight scale is max|w|/127, raised if needed so
/// that its bias fits in [`MAX_BIAS`] (a channel with near-zero weights and a large bias).
fn quantize_layer(
    w: &[f32],
    b: &[f32],
    s_x: f64,
    s_y: f64,
) -> Result<(Vec<i8>, Vec<i32>, Vec<Requant>)> {
    let channels = b.len();
    let per = w.len() / channels.max(1);
    let mut wq = Vec::with_capacity(w.len());
    let mut bq = Vec::with_capacity(channels);
    let mut rq = Vec::with_capacity(channels);
    for (row, &bias) in w.chunks(per.max(1)).zip(b) {
        let max = row.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        let mut s_w = if max > 0.0 { max / 127.0 } else { 1.0 };
        s_w = s_w.max((bias as f64).abs() / (s_x * MAX_BIAS));
        let acc_s = s_w * s_x;
        wq.extend(
            row.iter()
                .map(|&v| (v as f64 / s_w).round().clamp(-127.0, 127.0) as i8),
        );
        bq.push((bias as f64 / acc_s).round().clamp(-MAX_BIAS, MAX_BIAS) as i32);
        rq.push(requant_of(acc_s / s_y)?);
    }
    Ok((wq, bq, rq))
}

/// Quantizes a lowered graph with the given calibration samples.
pub fn quantize(
    g: &FloatGraph,
    calib: &Calibration,
    source_ops: Vec<String>,
) -> Result<CanonicalModel> {
    let samples = calib.samples(g)?;
    let mut max_abs = vec![0f64; g.shapes.len()];
    for s in &samples {
        let vals = crate::float::run_all(g, s);
        for (m, v) in max_abs.iter_mut().zip(&vals) {
            let local = v.iter().fold(0f32, |a, x| a.max(x.abs())) as f64;
            if !local.is_finite() {
                return Err(EngineError::Calibration(
                    "the float model produced a non-finite value".into(),
                ));
            }
            *m = m.max(local);
        }
    }
    let free_scale = |v: usize| {
        if max_abs[v] > 0.0 {
            max_abs[v] / 127.0
        } else {
            1.0 / 127.0
        }
    };
    let mut scale: Vec<f64> = (0..g.shapes.len()).map(free_scale).collect();
    let unit = 1.0 / 127.0;
    let mut ops = Vec::with_capacity(g.ops.len());
    for op in &g.ops {
        let q = match op {
            FOp::Dense { x, y, w, b, k, n } => {
                let (wq, bq, rq) = quantize_layer(w, b, scale[*x], scale[*y])?;
                QOp::Dense {
                    x: *x,
                    y: *y,
                    k: *k,
                    n: *n,
                    w: wq,
                    b: bq,
                    rq,
                }
            }
            FOp::Conv {
                x,
                y,
                w,
                b,
                out_channels,
                win,
            } => {
                let (wq, bq, rq) = quantize_layer(w, b, scale[*x], scale[*y])?;
                QOp::Conv {
                    x: *x,
                    y: *y,
                    out_channels: *out_channels,
                    win: *win,
                    w: wq,
                    b: bq,
                    rq,
                }
            }
            FOp::Relu { x, y } => {
                scale[*y] = scale[*x];
                QOp::Relu { x: *x, y: *y }
            }
            FOp::Sigmoid { x, y } | FOp::Tanh { x, y } => {
                let sigmoid = matches!(op, FOp::Sigmoid { .. });
                scale[*y] = unit;
                let table = (-128i32..=127)
                    .map(|q| {
                        let v = q as f64 * scale[*x];
                        let f = if sigmoid {
                            1.0 / (1.0 + (-v).exp())
                        } else {
                            v.tanh()
                        };
                        (f * 127.0).round().clamp(-128.0, 127.0) as i8
                    })
                    .collect();
                QOp::Lut {
                    x: *x,
                    y: *y,
                    table,
                }
            }
            FOp::Map { x, y, f } => {
                // Every int8 input value through the function, onto the output's scale (set
                // from the calibration run like any activation's).
                let table = (-128i32..=127)
                    .map(|q| {
                        (f.apply(q as f64 * scale[*x]) / scale[*y])
                            .round()
                            .clamp(-128.0, 127.0) as i8
                    })
                    .collect();
                QOp::Lut {
                    x: *x,
                    y: *y,
                    table,
                }
            }
            FOp::Softmax { x, y } => {
                scale[*y] = unit;
                let exp = (0..256)
                    .map(|d| ((-(d as f64) * scale[*x]).exp() * (1u32 << 20) as f64).round() as u32)
                    .collect();
                QOp::Softmax { x: *x, y: *y, exp }
            }
            FOp::Add { a, b, y } => {
                let (ra, rb) = (scale[*a] / scale[*y], scale[*b] / scale[*y]);
                let e = ra.max(rb).log2().floor() as i32;
                let shift = (29 - e).clamp(1, 62);
                let to_mult = |r: f64| {
                    (r * 2f64.powi(shift))
                        .round()
                        .min(((1u32 << 30) - 1) as f64) as i32
                };
                QOp::Add {
                    a: *a,
                    b: *b,
                    y: *y,
                    ma: to_mult(ra),
                    mb: to_mult(rb),
                    shift: shift as u8,
                }
            }
            FOp::Const { y, data } => QOp::Const {
                y: *y,
                data: data
                    .iter()
                    .map(|&v| (v as f64 / scale[*y]).round().clamp(-128.0, 127.0) as i8)
                    .collect(),
            },
            FOp::MaxPool { x, y, win } => {
                scale[*y] = scale[*x];
                QOp::MaxPool {
                    x: *x,
                    y: *y,
                    win: *win,
                }
            }
            FOp::AvgPool {
                x,
                y,
                win,
                count_include_pad,
            } => {
                scale[*y] = scale[*x];
                QOp::AvgPool {
                    x: *x,
                    y: *y,
                    win: *win,
                    count_include_pad: *count_include_pad,
                }
            }
            FOp::Reshape { x, y } => {
                scale[*y] = scale[*x];
                QOp::Reshape { x: *x, y: *y }
            }
            FOp::Concat { xs, y, axis } => QOp::Concat {
                xs: xs
                    .iter()
                    .map(|&x| Ok((x, requant_of(scale[x] / scale[*y])?)))
                    .collect::<Result<_>>()?,
                y: *y,
                axis: *axis,
            },
        };
        ops.push(q);
    }
    let model = CanonicalModel {
        shapes: g.shapes.clone(),
        inputs: g
            .inputs
            .iter()
            .map(|(name, v)| QInput {
                name: name.clone(),
                value: *v,
                inv_scale: (1.0 / scale[*v]) as f32,
            })
            .collect(),
        outputs: g
            .outputs
            .iter()
            .map(|(name, v)| QOutput {
                name: name.clone(),
                value: *v,
                scale: scale[*v] as f32,
            })
            .collect(),
        ops,
        source_ops,
    };
    model.validate()?;
    Ok(model)
}

/// ONNX bytes + calibration → canonical model (decode, lower, calibrate, quantize).
pub fn quantize_onnx(onnx_bytes: &[u8], calib: &Calibration) -> Result<CanonicalModel> {
    let proto = onnx::decode_onnx(onnx_bytes)?;
    let summary = onnx::summarize(&proto)?;
    let g = lower::lower(&proto, &calib.input_shapes(&summary))?;
    quantize(&g, calib, summary.operators)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requant_represents_the_factor() {
        for m in [1e-9, 3.7e-4, 0.01, 0.5, 0.999, 1.0, 3.0, 1000.0] {
            let r = requant_of(m).unwrap();
            let got = r.mult as f64 / 2f64.powi(r.shift as i32);
            assert!((got - m).abs() / m < 1e-6 || m < 1e-8, "{m} -> {r:?}");
        }
        assert!(requant_of(0.0).is_err());
        assert!(requant_of(f64::NAN).is_err());
    }
}
