//! A plain f32 interpreter over [`FloatGraph`]: the quantizer's calibration oracle.
//! It is not used to serve results (float bits are not portable); it only measures ranges.

use crate::geometry::Window;
use crate::ir::{FOp, FloatGraph};

/// Runs the graph on one sample per input and returns every value (indexed by `ValueId`).
pub fn run_all(g: &FloatGraph, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut vals: Vec<Vec<f32>> = vec![Vec::new(); g.shapes.len()];
    for ((_, v), data) in g.inputs.iter().zip(inputs) {
        vals[*v] = data.clone();
    }
    for op in &g.ops {
        let out = match op {
            FOp::Dense { x, w, b, k, n, .. } => {
                let x = &vals[*x];
                let rows = x.len() / k;
                let mut y = vec![0f32; rows * n];
                for r in 0..rows {
                    for o in 0..*n {
                        let dot: f32 = (0..*k).map(|i| x[r * k + i] * w[o * k + i]).sum();
                        y[r * n + o] = dot + b[o];
                    }
                }
                y
            }
            FOp::Conv {
                x,
                w,
                b,
                out_channels,
                win,
                ..
            } => conv(&vals[*x], w, b, *out_channels, win),
            FOp::Relu { x, .. } => vals[*x].iter().map(|v| v.max(0.0)).collect(),
            FOp::Sigmoid { x, .. } => vals[*x].iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            FOp::Tanh { x, .. } => vals[*x].iter().map(|v| v.tanh()).collect(),
            FOp::Map { x, f, .. } => vals[*x].iter().map(|&v| f.apply(v as f64) as f32).collect(),
            FOp::Softmax { x, y } => {
                let n = *g.shapes[*y].last().unwrap_or(&1);
                let mut out = vals[*x].clone();
                for row in out.chunks_mut(n.max(1)) {
                    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    row.iter_mut().for_each(|v| *v = (*v - m).exp());
                    let s: f32 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= s);
                }
                out
            }
            FOp::Add { a, b, .. } => {
                let (a, b) = (&vals[*a], &vals[*b]);
                a.iter()
                    .enumerate()
                    .map(|(i, v)| v + b[i % b.len()])
                    .collect()
            }
            FOp::Const { data, .. } => data.clone(),
            FOp::MaxPool { x, win, .. } => pool(
                &vals[*x],
                win,
                |s| s.fold(f32::NEG_INFINITY, f32::max),
                None,
            ),
            FOp::AvgPool {
                x,
                win,
                count_include_pad,
                ..
            } => pool(&vals[*x], win, |s| s.sum(), Some(*count_include_pad)),
            FOp::Reshape { x, .. } => vals[*x].clone(),
            FOp::Concat { xs, y, axis } => {
                let outer: usize = g.shapes[*y][..*axis].iter().product();
                let mut out = Vec::with_capacity(vals[*xs.first().unwrap_or(y)].len() * xs.len());
                for o in 0..outer {
                    for &x in xs {
                        let chunk = vals[x].len() / outer.max(1);
                        out.extend_from_slice(&vals[x][o * chunk..(o + 1) * chunk]);
                    }
                }
                out
            }
        };
        vals[op.output()] = out;
    }
    vals
}

fn conv(x: &[f32], w: &[f32], b: &[f32], oc: usize, win: &Window) -> Vec<f32> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let plane = win.channels * win.height * win.width;
    let batch = x.len() / plane.max(1);
    let mut y = vec![0f32; batch * oc * oh * ow];
    for n in 0..batch {
        let x = &x[n * plane..(n + 1) * plane];
        for o in 0..oc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[o];
                    for c in 0..win.channels {
                        for ky in 0..win.kernel_h {
                            for kx in 0..win.kernel_w {
                                let iy = (oy * win.stride_h + ky) as isize - win.pad_top as isize;
                                let ix = (ox * win.stride_w + kx) as isize - win.pad_left as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= win.height as isize
                                    || ix >= win.width as isize
                                {
                                    continue;
                                }
                                let xv =
                                    x[(c * win.height + iy as usize) * win.width + ix as usize];
                                acc += xv
                                    * w[((o * win.channels + c) * win.kernel_h + ky)
                                        * win.kernel_w
                                        + kx];
                            }
                        }
                    }
                    y[((n * oc + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

/// `avg`: None for max pooling, Some(count_include_pad) for average pooling.
fn pool(
    x: &[f32],
    win: &Window,
    reduce: impl Fn(&mut dyn Iterator<Item = f32>) -> f32,
    avg: Option<bool>,
) -> Vec<f32> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let plane = win.height * win.width;
    let planes = x.len() / plane.max(1);
    let mut y = Vec::with_capacity(planes * oh * ow);
    for p in 0..planes {
        let x = &x[p * plane..(p + 1) * plane];
        for oy in 0..oh {
            for ox in 0..ow {
                let (rows, cols) = win.span(oy, ox);
                let count = rows.len() * cols.len();
                let mut it = rows.flat_map(|r| cols.clone().map(move |c| x[r * win.width + c]));
                let v = reduce(&mut it);
                y.push(match avg {
                    None => v,
                    Some(true) => v / (win.kernel_h * win.kernel_w) as f32,
                    Some(false) => v / count as f32,
                });
            }
        }
    }
    y
}
