//! Integer kernels. Every kernel computes exact i32 sums of i8 x i8 products: products are
//! widened to 16 bits and summed pairwise into 32 bits (`vpmaddwd`), never with saturating
//! instructions such as `vpmaddubsw`, so the result does not depend on vector width, summation
//! order or thread count. The AVX2 paths are checked against the portable ones in tests and
//! under qemu for CPUs without AVX2.

use crate::canonical::{clamp_i8, Requant};
use crate::geometry::Window;
use rayon::prelude::*;

/// Below this many multiply-adds a layer runs on the calling thread (threads cost more).
const PARALLEL_MACS: usize = 1 << 20;

/// Which instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
}

/// The kernels' instruction set for this process, from the one switch
/// ([`verity_core::isa::active`]: CPUID, capped by `VERITY_ISA`).
pub fn detect_isa() -> Isa {
    // AVX-512 was measured slower here for these layer sizes (frequency transitions), so the
    // widest path is AVX2.
    match verity_core::isa::active() {
        verity_core::isa::Isa::Portable => Isa::Portable,
        verity_core::isa::Isa::Avx2 | verity_core::isa::Isa::Avx512Vnni => Isa::Avx2,
    }
}

/// Weights and activations are widened to i16 once, so the inner loops only multiply-add.
pub fn widen(v: &[i8]) -> Vec<i16> {
    v.iter().map(|&x| x as i16).collect()
}

fn dot_portable(a: &[i16], b: &[i16]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Exact dot product of i8-range values held in i16: `vpmaddwd` multiplies 16-bit lanes and
/// adds adjacent products into 32 bits (at most 2 * 128 * 128, no saturation), then i32 adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[i16], b: &[i16]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n bounds every 16-lane load of both slices.
        let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
        acc0 = _mm256_add_epi32(
            acc0,
            _mm256_madd_epi16(_mm256_loadu_si256(pa.cast()), _mm256_loadu_si256(pb.cast())),
        );
        acc1 = _mm256_add_epi32(
            acc1,
            _mm256_madd_epi16(
                _mm256_loadu_si256(pa.add(16).cast()),
                _mm256_loadu_si256(pb.add(16).cast()),
            ),
        );
        i += 32;
    }
    if i + 16 <= n {
        let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
        acc0 = _mm256_add_epi32(
            acc0,
            _mm256_madd_epi16(_mm256_loadu_si256(pa.cast()), _mm256_loadu_si256(pb.cast())),
        );
        i += 16;
    }
    let acc = _mm256_add_epi32(acc0, acc1);
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256(acc, 1),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s) + dot_portable(&a[i..n], &b[i..n])
}

/// Four dot products sharing one activation vector: `out[j] = dot(x, w[j*k..(j+1)*k])`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(x: &[i16], w: &[i16], k: usize) -> [i32; 4] {
    use std::arch::x86_64::*;
    assert!(x.len() >= k && w.len() >= 4 * k);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    while i + 16 <= k {
        // SAFETY: i + 16 <= k bounds the loads of x and of each of the four rows (asserted above).
        let xv = _mm256_loadu_si256(x.as_ptr().add(i).cast());
        for (j, a) in acc.iter_mut().enumerate() {
            let wv = _mm256_loadu_si256(w.as_ptr().add(j * k + i).cast());
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wv));
        }
        i += 16;
    }
    let mut out = [0i32; 4];
    for (j, a) in acc.iter().enumerate() {
        let s = _mm_add_epi32(_mm256_castsi256_si128(*a), _mm256_extracti128_si256(*a, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        out[j] = _mm_cvtsi128_si32(s) + dot_portable(&x[i..k], &w[j * k + i..(j + 1) * k]);
    }
    out
}

fn dot(isa: Isa, a: &[i16], b: &[i16]) -> i32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only selected after CPUID reported AVX2.
        Isa::Avx2 => unsafe { dot_avx2(a, b) },
        _ => dot_portable(a, b),
    }
}

/// `out[o] = requant_o(dot(x, w[o]) + b[o])` for a block of output channels.
fn dense_block(
    isa: Isa,
    x: &[i16],
    w: &[i16],
    k: usize,
    b: &[i32],
    rq: &[Requant],
    out: &mut [i8],
) {
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        while start + 4 <= out.len() {
            // SAFETY: Avx2 is only selected after CPUID reported AVX2.
            let acc = unsafe { dot4_avx2(x, &w[start * k..(start + 4) * k], k) };
            for (j, a) in acc.into_iter().enumerate() {
                let o = start + j;
                out[o] = clamp_i8(rq[o].apply((a + b[o]) as i64));
            }
            start += 4;
        }
    }
    for (o, y) in out.iter_mut().enumerate().skip(start) {
        let acc = dot(isa, x, &w[o * k..(o + 1) * k]) + b[o];
        *y = clamp_i8(rq[o].apply(acc as i64));
    }
}

/// y[r, o] = requant_o(sum_k x[r, k] * w[o, k] + b[o]) for every row r; `w` is widened.
#[allow(clippy::too_many_arguments)]
pub fn dense(
    isa: Isa,
    threads: bool,
    x: &[i8],
    k: usize,
    w: &[i16],
    b: &[i32],
    rq: &[Requant],
    y: &mut [i8],
) {
    let n = b.len();
    let parallel = threads && y.len() * k >= PARALLEL_MACS && rayon::current_num_threads() > 1;
    for (r, out_row) in y.chunks_mut(n).enumerate() {
        let xr = widen(&x[r * k..(r + 1) * k]);
        if parallel {
            let block = n.div_ceil(rayon::current_num_threads()).max(8);
            out_row
                .par_chunks_mut(block)
                .enumerate()
                .for_each(|(i, out)| {
                    let o = i * block;
                    let m = out.len();
                    dense_block(
                        isa,
                        &xr,
                        &w[o * k..(o + m) * k],
                        k,
                        &b[o..o + m],
                        &rq[o..o + m],
                        out,
                    );
                });
        } else {
            dense_block(isa, &xr, w, k, b, rq, out_row);
        }
    }
}

/// The kernel columns of a window starting at input column `x0` that fall inside the image.
fn inside_columns(win: &Window, x0: isize) -> std::ops::Range<usize> {
    let lo = (-x0).max(0) as usize;
    let hi = (win.width as isize - x0).clamp(0, win.kernel_w as isize) as usize;
    lo..hi.max(lo)
}

/// Transposed im2col of one image: row `(c, ky, kx)` holds that tap's input value for every
/// output position (`[c*kh*kw, oh*ow]`); taps that fall in the padding are 0 (zero point 0).
pub fn im2row(x: &[i8], win: &Window) -> Vec<i8> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let positions = oh * ow;
    let (kh, kw) = (win.kernel_h, win.kernel_w);
    let mut rows = vec![0i8; win.channels * kh * kw * positions];
    for c in 0..win.channels {
        for ky in 0..kh {
            for oy in 0..oh {
                let iy = (oy * win.stride_h + ky) as isize - win.pad_top as isize;
                if iy < 0 || iy >= win.height as isize {
                    continue;
                }
                let src = &x[(c * win.height + iy as usize) * win.width..][..win.width];
                for ox in 0..ow {
                    let x0 = (ox * win.stride_w) as isize - win.pad_left as isize;
                    for kx in inside_columns(win, x0) {
                        rows[((c * kh + ky) * kw + kx) * positions + oy * ow + ox] =
                            src[(x0 + kx as isize) as usize];
                    }
                }
            }
        }
    }
    rows
}

/// im2col of one image, widened for the dot kernels: row `p` holds the receptive field of
/// output position p (`[oh*ow, c*kh*kw]`); taps in the padding are 0.
pub fn im2col(x: &[i8], win: &Window) -> Vec<i16> {
    let (oh, ow) = (win.out_h(), win.out_w());
    let (kh, kw) = (win.kernel_h, win.kernel_w);
    let taps = win.channels * kh * kw;
    let mut cols = vec![0i16; oh * ow * taps];
    for oy in 0..oh {
        for ox in 0..ow {
            let col = &mut cols[(oy * ow + ox) * taps..][..taps];
            let x0 = (ox * win.stride_w) as isize - win.pad_left as isize;
            let span = inside_columns(win, x0);
            if span.is_empty() {
                continue;
            }
            for ky in 0..kh {
                let iy = (oy * win.stride_h + ky) as isize - win.pad_top as isize;
                if iy < 0 || iy >= win.height as isize {
                    continue;
                }
                for c in 0..win.channels {
                    let src = (c * win.height + iy as usize) * win.width
                        + (x0 + span.start as isize) as usize;
                    let dst = (c * kh + ky) * kw;
                    for (d, &v) in col[dst + span.start..dst + span.end]
                        .iter_mut()
                        .zip(&x[src..])
                    {
                        *d = v as i16;
                    }
                }
            }
        }
    }
    cols
}

/// One output channel over all positions: `acc[p] = sum_t w[t] * rows[t, p]`, accumulated tap
/// by tap across positions (vectorizes over positions; exact i32 arithmetic).
#[inline(always)]
fn channel_portable(
    w_o: &[i8],
    rows: &[i8],
    bias: i32,
    rq: Requant,
    out: &mut [i8],
    acc: &mut [i32],
) {
    let positions = out.len();
    acc.iter_mut().for_each(|a| *a = bias);
    for (t, &wt) in w_o.iter().enumerate() {
        let wt = wt as i32;
        for (a, &v) in acc
            .iter_mut()
            .zip(&rows[t * positions..(t + 1) * positions])
        {
            *a += wt * v as i32;
        }
    }
    for (y, &a) in out.iter_mut().zip(acc.iter()) {
        *y = clamp_i8(rq.apply(a as i64));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn channel_avx2(
    w_o: &[i8],
    rows: &[i8],
    bias: i32,
    rq: Requant,
    out: &mut [i8],
    acc: &mut [i32],
) {
    channel_portable(w_o, rows, bias, rq, out, acc)
}

fn channel(
    isa: Isa,
    w_o: &[i8],
    rows: &[i8],
    bias: i32,
    rq: Requant,
    out: &mut [i8],
    acc: &mut [i32],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is only selected after CPUID reported AVX2.
        Isa::Avx2 => unsafe { channel_avx2(w_o, rows, bias, rq, out, acc) },
        _ => channel_portable(w_o, rows, bias, rq, out, acc),
    }
}

/// Whether [`conv`] takes the dot-product path (and so needs widened weights).
pub fn uses_dot_products(win: &Window) -> bool {
    win.channels * win.kernel_h * win.kernel_w >= 32
}

/// NCHW convolution of one image: y[o, p] = requant_o(b[o] + sum_t w[o, t] * x_tap(t, p)).
/// Layers with long receptive fields use dot products per position (like Dense); layers with
/// few taps accumulate tap by tap across positions. Both compute the same exact integers.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    isa: Isa,
    threads: bool,
    x: &[i8],
    win: &Window,
    w: &[i8],
    w16: &[i16],
    b: &[i32],
    rq: &[Requant],
    y: &mut [i8],
) {
    let taps = win.channels * win.kernel_h * win.kernel_w;
    let positions = win.out_h() * win.out_w();
    if uses_dot_products(win) {
        let cols = im2col(x, win);
        let work = |o: usize, out: &mut [i8]| {
            let w_o = &w16[o * taps..(o + 1) * taps];
            for (p, v) in out.iter_mut().enumerate() {
                let acc = dot(isa, w_o, &cols[p * taps..(p + 1) * taps]) + b[o];
                *v = clamp_i8(rq[o].apply(acc as i64));
            }
        };
        if threads && y.len() * taps >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
            y.par_chunks_mut(positions)
                .enumerate()
                .for_each(|(o, out)| work(o, out));
        } else {
            y.chunks_mut(positions)
                .enumerate()
                .for_each(|(o, out)| work(o, out));
        }
        return;
    }
    let rows = im2row(x, win);
    let work = |o: usize, out: &mut [i8], acc: &mut Vec<i32>| {
        acc.resize(positions, 0);
        channel(
            isa,
            &w[o * taps..(o + 1) * taps],
            &rows,
            b[o],
            rq[o],
            out,
            acc,
        )
    };
    if threads && y.len() * taps >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
        y.par_chunks_mut(positions)
            .enumerate()
            .for_each_init(Vec::new, |acc, (o, out)| work(o, out, acc));
    } else {
        let mut acc = Vec::with_capacity(positions);
        y.chunks_mut(positions)
            .enumerate()
            .for_each(|(o, out)| work(o, out, &mut acc));
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
        // Lengths that exercise the 32-, 16- and scalar tails.
        for k in [1, 15, 16, 17, 31, 32, 33, 1000, 4099] {
            let n = 301;
            let mut x: Vec<i8> = (0..k).map(|_| lcg(&mut s)).collect();
            // Extremes that break saturating (vpmaddubsw-style) kernels.
            x.iter_mut().take(64).for_each(|v| *v = -128);
            let mut w: Vec<i8> = (0..k * n).map(|_| lcg(&mut s)).collect();
            w.iter_mut().take(64).for_each(|v| *v = -128);
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
                for isa in [Isa::Portable, detect_isa()] {
                    {
                        assert_eq!(
                            dot(isa, &widen(&x), &widen(&w[o * k..(o + 1) * k])) as i64
                                + b[o] as i64,
                            acc
                        );
                    }
                }
            }
            for isa in [Isa::Portable, detect_isa()] {
                for threads in [false, true] {
                    let mut y = vec![0i8; n];
                    dense(isa, threads, &x, k, &widen(&w), &b, &rq, &mut y);
                    assert_eq!(y, reference, "k={k} {isa:?} threads={threads}");
                }
            }
        }
    }

    #[test]
    fn conv_matches_direct_definition() {
        for channels in [3, 8] {
            conv_case(channels);
        }
    }

    fn conv_case(channels: usize) {
        let mut s = 7;
        let win = Window {
            channels,
            height: 9,
            width: 7,
            kernel_h: 3,
            kernel_w: 2,
            stride_h: 2,
            stride_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 2,
            pad_right: 0,
        };
        let oc = 5;
        let x: Vec<i8> = (0..channels * 9 * 7).map(|_| lcg(&mut s)).collect();
        let w: Vec<i8> = (0..oc * channels * 3 * 2).map(|_| lcg(&mut s)).collect();
        let b: Vec<i32> = (0..oc as i32).map(|i| i * 1000 - 2000).collect();
        let rq = vec![
            Requant {
                mult: 1 << 30,
                shift: 38
            };
            oc
        ];
        let (oh, ow) = (win.out_h(), win.out_w());
        let mut reference = vec![0i8; oc * oh * ow];
        for o in 0..oc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[o] as i64;
                    for c in 0..channels {
                        for ky in 0..3 {
                            for kx in 0..2 {
                                let iy = (oy * 2 + ky) as isize - 1;
                                let ix = ox as isize + kx as isize - 1;
                                if (0..9).contains(&iy) && (0..7).contains(&ix) {
                                    acc += x[(c * 9 + iy as usize) * 7 + ix as usize] as i64
                                        * w[((o * channels + c) * 3 + ky) * 2 + kx] as i64;
                                }
                            }
                        }
                    }
                    reference[(o * oh + oy) * ow + ox] = clamp_i8(rq[o].apply(acc));
                }
            }
        }
        for isa in [Isa::Portable, detect_isa()] {
            for threads in [false, true] {
                let mut y = vec![0i8; oc * oh * ow];
                conv(isa, threads, &x, &win, &w, &widen(&w), &b, &rq, &mut y);
                assert_eq!(y, reference, "{isa:?} threads={threads}");
            }
        }
    }
}
