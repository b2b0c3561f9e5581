//! Integer kernels. Every kernel computes exact i32 sums of i8 x i8 products: no instruction
//! saturates (products are widened before any pairwise add), so the result does not depend on
//! vector width, summation order or thread count. The AVX2 variant is the same Rust code
//! compiled with AVX2 enabled; tests compare it against the portable build and under qemu.

use crate::canonical::{clamp_i8, Requant};
use rayon::prelude::*;

/// Below this many multiply-adds a layer runs on the calling thread (threads cost more).
const PARALLEL_MACS: usize = 1 << 17;

#[inline(always)]
fn dot_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        acc += (x as i16 * y as i16) as i32;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(x: &[i8], w: &[i8], k: usize, b: &[i32], rq: &[Requant], out: &mut [i8]) {
    rows_portable(x, w, k, b, rq, out)
}

/// `out[o] = requant(dot(x, w[o]) + b[o])` for a block of output channels.
#[inline(always)]
fn rows_portable(x: &[i8], w: &[i8], k: usize, b: &[i32], rq: &[Requant], out: &mut [i8]) {
    for (o, y) in out.iter_mut().enumerate() {
        let acc = dot_portable(x, &w[o * k..(o + 1) * k]) + b[o];
        *y = clamp_i8(rq[o].apply(acc as i64));
    }
}

/// One conv output channel: `out[p] = requant(dot(w_o, cols[p]) + bias)` for every position.
#[inline(always)]
fn channel_portable(w_o: &[i8], cols: &[i8], bias: i32, rq: Requant, out: &mut [i8]) {
    let k = w_o.len();
    for (p, y) in out.iter_mut().enumerate() {
        let acc = dot_portable(w_o, &cols[p * k..(p + 1) * k]) + bias;
        *y = clamp_i8(rq.apply(acc as i64));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn channel_avx2(w_o: &[i8], cols: &[i8], bias: i32, rq: Requant, out: &mut [i8]) {
    channel_portable(w_o, cols, bias, rq, out)
}

fn channel(isa: Isa, w_o: &[i8], cols: &[i8], bias: i32, rq: Requant, out: &mut [i8]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only selected after CPUID reported AVX2.
        Isa::Avx2 => unsafe { channel_avx2(w_o, cols, bias, rq, out) },
        _ => channel_portable(w_o, cols, bias, rq, out),
    }
}

/// Which instruction set the kernels use; chosen once per process from CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
}

pub fn detect_isa() -> Isa {
    if std::env::var_os("VERITY_FORCE_PORTABLE").is_some() {
        return Isa::Portable;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return Isa::Avx2;
    }
    Isa::Portable
}

fn rows(isa: Isa, x: &[i8], w: &[i8], k: usize, b: &[i32], rq: &[Requant], out: &mut [i8]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only selected after CPUID reported AVX2.
        Isa::Avx2 => unsafe { rows_avx2(x, w, k, b, rq, out) },
        _ => rows_portable(x, w, k, b, rq, out),
    }
}

/// y[r, o] = requant_o(sum_k x[r, k] * w[o, k] + b[o]) for every row r.
#[allow(clippy::too_many_arguments)]
pub fn dense(
    isa: Isa,
    threads: bool,
    x: &[i8],
    k: usize,
    w: &[i8],
    b: &[i32],
    rq: &[Requant],
    y: &mut [i8],
) {
    let n = b.len();
    let macs = y.len() * k;
    let block = 16usize;
    for (r, out_row) in y.chunks_mut(n).enumerate() {
        let xr = &x[r * k..(r + 1) * k];
        if threads && macs >= PARALLEL_MACS {
            out_row
                .par_chunks_mut(block)
                .enumerate()
                .for_each(|(i, out)| {
                    let o = i * block;
                    rows(
                        isa,
                        xr,
                        &w[o * k..(o + out.len()) * k],
                        k,
                        &b[o..o + out.len()],
                        &rq[o..o + out.len()],
                        out,
                    );
                });
        } else {
            rows(isa, xr, w, k, b, rq, out_row);
        }
    }
}

/// Lays out each output position's receptive field as one row ([oh*ow, c*kh*kw]); padding
/// contributes zeros (the zero point is 0).
pub fn im2col(x: &[i8], win: &crate::geometry::Window) -> Vec<i8> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let per = win.channels * win.kernel_h * win.kernel_w;
    let mut cols = vec![0i8; oh * ow * per];
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut cols[(oy * ow + ox) * per..(oy * ow + ox + 1) * per];
            for c in 0..win.channels {
                for ky in 0..win.kernel_h {
                    let iy = (oy * win.stride_h + ky) as isize - win.pad_top as isize;
                    if iy < 0 || iy >= win.height as isize {
                        continue;
                    }
                    for kx in 0..win.kernel_w {
                        let ix = (ox * win.stride_w + kx) as isize - win.pad_left as isize;
                        if ix < 0 || ix >= win.width as isize {
                            continue;
                        }
                        row[(c * win.kernel_h + ky) * win.kernel_w + kx] =
                            x[(c * win.height + iy as usize) * win.width + ix as usize];
                    }
                }
            }
        }
    }
    cols
}

/// NCHW convolution of one image: y[o, p] = requant_o(dot(cols[p], w[o]) + b[o]).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    isa: Isa,
    threads: bool,
    x: &[i8],
    win: &crate::geometry::Window,
    w: &[i8],
    b: &[i32],
    rq: &[Requant],
    y: &mut [i8],
) {
    let per = win.channels * win.kernel_h * win.kernel_w;
    let positions = win.out_h() * win.out_w();
    let cols = im2col(x, win);
    let work = |o: usize, out: &mut [i8]| {
        channel(isa, &w[o * per..(o + 1) * per], &cols, b[o], rq[o], out)
    };
    if threads && y.len() * per >= PARALLEL_MACS {
        y.par_chunks_mut(positions)
            .enumerate()
            .for_each(|(o, out)| work(o, out));
    } else {
        y.chunks_mut(positions)
            .enumerate()
            .for_each(|(o, out)| work(o, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> i8 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 56) as i8
    }

    #[test]
    fn simd_threads_and_portable_agree_on_full_range_values() {
        let mut s = 42;
        let (k, n) = (1000, 300);
        let mut x: Vec<i8> = (0..k).map(|_| lcg(&mut s)).collect();
        // Extremes that break saturating (vpmaddubsw-style) kernels.
        x[..64].iter_mut().for_each(|v| *v = -128);
        let mut w: Vec<i8> = (0..k * n).map(|_| lcg(&mut s)).collect();
        w[..64].iter_mut().for_each(|v| *v = -128);
        let b: Vec<i32> = (0..n as i32).map(|i| i * 37 - 5000).collect();
        let rq = vec![
            Requant {
                mult: 1 << 30,
                shift: 40
            };
            n
        ];
        let mut reference = vec![0i8; n];
        for o in 0..n {
            let acc: i64 = (0..k)
                .map(|i| x[i] as i64 * w[o * k + i] as i64)
                .sum::<i64>()
                + b[o] as i64;
            reference[o] = clamp_i8(rq[o].apply(acc));
        }
        for isa in [Isa::Portable, detect_isa()] {
            for threads in [false, true] {
                let mut y = vec![0i8; n];
                dense(isa, threads, &x, k, &w, &b, &rq, &mut y);
                assert_eq!(y, reference, "{isa:?} threads={threads}");
            }
        }
    }
}
