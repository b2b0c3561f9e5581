//! Matrix-vector products on quantized weights, bit-exact on every x86-64 CPU.
//!
//! Activations are quantized to 8 bits per 32-value block ([`QuantizedActs`]). A block's dot
//! product with a weight block is an exact integer; the float work per block (two scale
//! products, one add into the row's running sum, blocks in order) follows
//! `docs/llm-semantics.md` operation by operation. The AVX2 path computes the same integers as
//! the scalar path and the same per-lane IEEE float operations, so both give identical bits;
//! which one runs only changes speed. Rows are split across threads, never a single row, so the
//! thread count cannot change a result.

use crate::quant::QK;
use half::f16;
use rayon::prelude::*;

/// A weight matrix, `rows` outputs by `cols` inputs, repacked for the kernels.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub(crate) data: MatrixData,
}

pub(crate) enum MatrixData {
    /// Per block: scale `d` and minimum `m`; 16 bytes of nibbles (byte j: weight j in the low
    /// nibble, weight j + 16 in the high nibble). Weight = n * d + m.
    Q4_1 {
        d: Vec<f32>,
        m: Vec<f32>,
        qs: Vec<u8>,
    },
    /// As Q4_1 without the minimum; weight = (n - 8) * d.
    Q4_0 { d: Vec<f32>, qs: Vec<u8> },
    /// Per block: scale `d` and 32 signed bytes; weight = q * d.
    Q8_0 { d: Vec<f32>, qs: Vec<i8> },
    /// Plain floats (F32, or F16 widened exactly); dotted in f32, in order.
    F32(Vec<f32>),
}

impl Matrix {
    /// Repacks GGML blocks (`bytes` holds whole rows of `ty`) into kernel form.
    pub(crate) fn from_ggml(
        ty: crate::GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Option<Matrix> {
        use crate::GgmlType as T;
        let half = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        if !cols.is_multiple_of(QK) && !matches!(ty, T::F32 | T::F16) {
            return None;
        }
        let expected = ty.bytes_for((rows * cols) as u64)?;
        if bytes.len() as u64 != expected {
            return None;
        }
        let blocks = bytes.chunks_exact(ty.block_bytes());
        let data = match ty {
            T::Q4_1 => {
                let (mut d, mut m, mut qs) = (vec![], vec![], vec![]);
                for b in blocks {
                    d.push(half(b, 0));
                    m.push(half(b, 2));
                    qs.extend_from_slice(&b[4..20]);
                }
                MatrixData::Q4_1 { d, m, qs }
            }
            T::Q4_0 => {
                let (mut d, mut qs) = (vec![], vec![]);
                for b in blocks {
                    d.push(half(b, 0));
                    qs.extend_from_slice(&b[2..18]);
                }
                MatrixData::Q4_0 { d, qs }
            }
            T::Q8_0 => {
                let (mut d, mut qs) = (vec![], vec![]);
                for b in blocks {
                    d.push(half(b, 0));
                    qs.extend(b[2..34].iter().map(|&q| q as i8));
                }
                MatrixData::Q8_0 { d, qs }
            }
            T::F32 | T::F16 => MatrixData::F32(ty.dequantize(bytes)),
        };
        Some(Matrix { rows, cols, data })
    }

    /// Row `r` as floats (token embeddings are looked up this way). Exact dequantization.
    pub fn row(&self, r: usize) -> Vec<f32> {
        let nb = self.cols / QK;
        let mut out = Vec::with_capacity(self.cols);
        match &self.data {
            MatrixData::Q4_1 { d, m, qs } => {
                for b in r * nb..(r + 1) * nb {
                    let q = &qs[b * 16..b * 16 + 16];
                    out.extend(q.iter().map(|n| (n & 15) as f32 * d[b] + m[b]));
                    out.extend(q.iter().map(|n| (n >> 4) as f32 * d[b] + m[b]));
                }
            }
            MatrixData::Q4_0 { d, qs } => {
                for b in r * nb..(r + 1) * nb {
                    let q = &qs[b * 16..b * 16 + 16];
                    out.extend(q.iter().map(|n| ((n & 15) as i32 - 8) as f32 * d[b]));
                    out.extend(q.iter().map(|n| ((n >> 4) as i32 - 8) as f32 * d[b]));
                }
            }
            MatrixData::Q8_0 { d, qs } => {
                for b in r * nb..(r + 1) * nb {
                    out.extend(qs[b * QK..(b + 1) * QK].iter().map(|&q| q as f32 * d[b]));
                }
            }
            MatrixData::F32(w) => out.extend_from_slice(&w[r * self.cols..(r + 1) * self.cols]),
        }
        out
    }

    /// `out[t][r] = W[r] · x[t]` for every activation row `t` of `x`.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) {
        assert_eq!(x.cols, self.cols, "activation width");
        assert_eq!(out.len(), x.rows * self.rows, "output size");
        // Rows in chunks across threads; each (row, token) dot is computed whole by one thread.
        const CHUNK: usize = 16;
        let tokens = x.rows;
        let mut by_row = vec![0f32; self.rows * tokens];
        by_row
            .par_chunks_mut(CHUNK * tokens)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (i, row_out) in chunk.chunks_mut(tokens).enumerate() {
                    let r = c * CHUNK + i;
                    for (t, o) in row_out.iter_mut().enumerate() {
                        *o = self.dot(r, x, t);
                    }
                }
            });
        for (r, row) in by_row.chunks(tokens).enumerate() {
            for (t, v) in row.iter().enumerate() {
                out[t * self.rows + r] = *v;
            }
        }
    }

    fn dot(&self, r: usize, x: &Activations, t: usize) -> f32 {
        let nb = self.cols / QK;
        let blocks = r * nb..(r + 1) * nb;
        let (ad, aq, asum) = x.quantized_row(t);
        match &self.data {
            MatrixData::Q4_1 { d, m, qs } => {
                let (d, m, qs) = (
                    &d[blocks.clone()],
                    &m[blocks.clone()],
                    &qs[blocks.start * 16..blocks.end * 16],
                );
                dot_q4_1(d, m, qs, ad, aq, asum)
            }
            MatrixData::Q4_0 { d, qs } => {
                let mut acc = 0f32;
                for (b, wd) in d[blocks.clone()].iter().enumerate() {
                    let w = &qs[(blocks.start + b) * 16..(blocks.start + b + 1) * 16];
                    let a = &aq[b * QK..(b + 1) * QK];
                    let isum = nibble_dot(w, a) - 8 * asum[b];
                    acc += (wd * ad[b]) * isum as f32;
                }
                acc
            }
            MatrixData::Q8_0 { d, qs } => dot_q8_0(
                &d[blocks.clone()],
                &qs[blocks.start * QK..blocks.end * QK],
                ad,
                aq,
            ),
            MatrixData::F32(w) => {
                let xs = x.float_row(t);
                let mut acc = 0f32;
                for (a, b) in w[r * self.cols..(r + 1) * self.cols].iter().zip(xs) {
                    acc += a * b;
                }
                acc
            }
        }
    }
}

/// Activation rows, kept as floats and as 8-bit blocks: per block `d = max|x| / 127` and
/// `q = round(x / d)` computed as `round(x * (1 / d))`, half away from zero (0 when `d` is 0).
pub struct Activations {
    pub rows: usize,
    pub cols: usize,
    floats: Vec<f32>,
    d: Vec<f32>,
    qs: Vec<i8>,
    sums: Vec<i32>,
}

impl Activations {
    pub fn new(rows: usize, cols: usize, floats: Vec<f32>) -> Activations {
        assert_eq!(floats.len(), rows * cols, "activation size");
        let (mut d, mut qs, mut sums) = (vec![], Vec::with_capacity(floats.len()), vec![]);
        if cols.is_multiple_of(QK) {
            for block in floats.chunks_exact(QK) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale == 0.0 { 0.0 } else { 1.0 / scale };
                let mut sum = 0i32;
                for v in block {
                    let q = (v * inv).round().clamp(-127.0, 127.0) as i8;
                    sum += q as i32;
                    qs.push(q);
                }
                d.push(scale);
                sums.push(sum);
            }
        }
        Activations {
            rows,
            cols,
            floats,
            d,
            qs,
            sums,
        }
    }

    fn quantized_row(&self, t: usize) -> (&[f32], &[i8], &[i32]) {
        let nb = self.cols / QK;
        (
            &self.d[t * nb..(t + 1) * nb],
            &self.qs[t * self.cols..(t + 1) * self.cols],
            &self.sums[t * nb..(t + 1) * nb],
        )
    }

    fn float_row(&self, t: usize) -> &[f32] {
        &self.floats[t * self.cols..(t + 1) * self.cols]
    }
}

/// Σ n_j a_j over one block: nibbles of `w` (weights 0..16 low, 16..32 high) times `a`.
fn nibble_dot(w: &[u8], a: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..16 {
        s += (w[j] & 15) as i32 * a[j] as i32 + (w[j] >> 4) as i32 * a[j + 16] as i32;
    }
    s
}

/// Q4_1 row · activation row. Per block b, in order:
/// `acc = acc + ((d_w * d_a) * isum + (m_w * d_a) * asum)`.
fn dot_q4_1(d: &[f32], m: &[f32], qs: &[u8], ad: &[f32], aq: &[i8], asum: &[i32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2() {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { simd::dot_q4_1(d, m, qs, ad, aq, asum) };
    }
    let mut acc = 0f32;
    for b in 0..d.len() {
        let isum = nibble_dot(&qs[b * 16..b * 16 + 16], &aq[b * QK..(b + 1) * QK]);
        acc += (d[b] * ad[b]) * isum as f32 + (m[b] * ad[b]) * asum[b] as f32;
    }
    acc
}

/// Q8_0 row · activation row. Per block b, in order: `acc = acc + (d_w * d_a) * isum`.
fn dot_q8_0(d: &[f32], qs: &[i8], ad: &[f32], aq: &[i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx2() {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { simd::dot_q8_0(d, qs, ad, aq) };
    }
    let mut acc = 0f32;
    for b in 0..d.len() {
        let isum: i32 = qs[b * QK..(b + 1) * QK]
            .iter()
            .zip(&aq[b * QK..(b + 1) * QK])
            .map(|(w, a)| *w as i32 * *a as i32)
            .sum();
        acc += (d[b] * ad[b]) * isum as f32;
    }
    acc
}

/// Whether the AVX2 kernels run (reported in benchmarks; results are the same either way).
pub fn simd_enabled() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! AVX2 versions of the block dots. Integer sums are exact; the per-block float terms are
    //! computed four blocks at a time with lane-wise IEEE multiplies and adds (the same
    //! operations, in the same order, as the scalar code), then added to the running sum one
    //! block at a time, in block order.
    use super::QK;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub fn avx2() -> bool {
        static AVX2: OnceLock<bool> = OnceLock::new();
        *AVX2.get_or_init(|| {
            std::env::var_os("VERITY_LLM_NO_SIMD").is_none() && is_x86_feature_detected!("avx2")
        })
    }

    /// Sums each of four 8×i32 vectors: lane i of the result is Σ v_i.
    #[target_feature(enable = "avx2")]
    unsafe fn hsum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
        let ab = _mm256_hadd_epi32(a, b);
        let cd = _mm256_hadd_epi32(c, d);
        let abcd = _mm256_hadd_epi32(ab, cd);
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256(abcd, 1),
        )
    }

    /// Σ n_j a_j of one Q4_1/Q4_0 block as 8 partial i32 lanes.
    #[target_feature(enable = "avx2")]
    unsafe fn nibble_block(w: *const u8, a: *const i8) -> __m256i {
        let packed = _mm_loadu_si128(w as *const __m128i);
        let mask = _mm_set1_epi8(15);
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
        let weights = _mm256_set_m128i(hi, lo);
        let acts = _mm256_loadu_si256(a as *const __m256i);
        let pairs = _mm256_maddubs_epi16(weights, acts);
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    /// Σ w_j a_j of one Q8_0 block as 8 partial i32 lanes (signs moved onto the activations
    /// so the unsigned-by-signed multiply applies; |w| ≤ 128 and |a| ≤ 127 cannot saturate
    /// a pair sum: 2·128·127 < 32768).
    #[target_feature(enable = "avx2")]
    unsafe fn signed_block(w: *const i8, a: *const i8) -> __m256i {
        let w = _mm256_loadu_si256(w as *const __m256i);
        let a = _mm256_loadu_si256(a as *const __m256i);
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q4_1(
        d: &[f32],
        m: &[f32],
        qs: &[u8],
        ad: &[f32],
        aq: &[i8],
        asum: &[i32],
    ) -> f32 {
        let n = d.len();
        let (wp, ap) = (qs.as_ptr(), aq.as_ptr());
        let mut acc = 0f32;
        let mut b = 0;
        while b + 4 <= n {
            let sums = hsum4(
                nibble_block(wp.add(b * 16), ap.add(b * QK)),
                nibble_block(wp.add((b + 1) * 16), ap.add((b + 1) * QK)),
                nibble_block(wp.add((b + 2) * 16), ap.add((b + 2) * QK)),
                nibble_block(wp.add((b + 3) * 16), ap.add((b + 3) * QK)),
            );
            let da = _mm_loadu_ps(ad.as_ptr().add(b));
            let scaled = _mm_mul_ps(
                _mm_mul_ps(_mm_loadu_ps(d.as_ptr().add(b)), da),
                _mm_cvtepi32_ps(sums),
            );
            let mins = _mm_mul_ps(
                _mm_mul_ps(_mm_loadu_ps(m.as_ptr().add(b)), da),
                _mm_cvtepi32_ps(_mm_loadu_si128(asum.as_ptr().add(b) as *const __m128i)),
            );
            let mut terms = [0f32; 4];
            _mm_storeu_ps(terms.as_mut_ptr(), _mm_add_ps(scaled, mins));
            acc += terms[0];
            acc += terms[1];
            acc += terms[2];
            acc += terms[3];
            b += 4;
        }
        while b < n {
            let lanes = nibble_block(wp.add(b * 16), ap.add(b * QK));
            let isum = _mm_cvtsi128_si32(hsum4(lanes, lanes, lanes, lanes));
            acc += (d[b] * ad[b]) * isum as f32 + (m[b] * ad[b]) * asum[b] as f32;
            b += 1;
        }
        acc
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_q8_0(d: &[f32], qs: &[i8], ad: &[f32], aq: &[i8]) -> f32 {
        let n = d.len();
        let (wp, ap) = (qs.as_ptr(), aq.as_ptr());
        let mut acc = 0f32;
        let mut b = 0;
        while b + 4 <= n {
            let sums = hsum4(
                signed_block(wp.add(b * QK), ap.add(b * QK)),
                signed_block(wp.add((b + 1) * QK), ap.add((b + 1) * QK)),
                signed_block(wp.add((b + 2) * QK), ap.add((b + 2) * QK)),
                signed_block(wp.add((b + 3) * QK), ap.add((b + 3) * QK)),
            );
            let scale = _mm_mul_ps(
                _mm_loadu_ps(d.as_ptr().add(b)),
                _mm_loadu_ps(ad.as_ptr().add(b)),
            );
            let mut terms = [0f32; 4];
            _mm_storeu_ps(terms.as_mut_ptr(), _mm_mul_ps(scale, _mm_cvtepi32_ps(sums)));
            acc += terms[0];
            acc += terms[1];
            acc += terms[2];
            acc += terms[3];
            b += 4;
        }
        while b < n {
            let lanes = signed_block(wp.add(b * QK), ap.add(b * QK));
            let isum = _mm_cvtsi128_si32(hsum4(lanes, lanes, lanes, lanes));
            acc += (d[b] * ad[b]) * isum as f32;
            b += 1;
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgmlType;

    /// A fixed pseudo-random byte stream (xorshift), enough for test data.
    fn bytes(n: usize, mut s: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// Blocks of `ty` with sane f16 scales and random quants.
    fn blocks(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
        let raw = bytes(n * ty.block_bytes(), seed);
        let mut out = vec![];
        for (i, b) in raw.chunks(ty.block_bytes()).enumerate() {
            let mut b = b.to_vec();
            let d = f16::from_f32(0.01 + (i % 7) as f32 * 0.003).to_le_bytes();
            b[..2].copy_from_slice(&d);
            if ty == GgmlType::Q4_1 {
                b[2..4].copy_from_slice(&f16::from_f32(-0.05 * (i % 3) as f32).to_le_bytes());
            }
            out.extend(b);
        }
        out
    }

    #[test]
    fn quantized_products_track_float_products_and_simd_equals_scalar() {
        let (rows, cols, tokens) = (37, 256, 3);
        let x: Vec<f32> = bytes(tokens * cols, 9)
            .iter()
            .map(|b| (*b as f32 - 128.0) / 50.0)
            .collect();
        let acts = Activations::new(tokens, cols, x.clone());
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::F32,
        ] {
            let data = if ty == GgmlType::F32 {
                bytes(rows * cols, 3)
                    .iter()
                    .flat_map(|b| ((*b as f32 - 128.0) / 500.0).to_le_bytes())
                    .collect()
            } else {
                blocks(ty, rows * cols / QK, 5)
            };
            let w = Matrix::from_ggml(ty, rows, cols, &data).unwrap();
            let mut out = vec![0f32; rows * tokens];
            w.matmul(&acts, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    // Against the dequantized weights times the quantized activations (the
                    // floats themselves for F32 weights), summed in f64.
                    let (ad, aq, _) = acts.quantized_row(t);
                    let exact: f64 = w
                        .row(r)
                        .iter()
                        .enumerate()
                        .map(|(i, a)| {
                            let xi = if ty == GgmlType::F32 {
                                x[t * cols + i] as f64
                            } else {
                                aq[i] as f64 * ad[i / QK] as f64
                            };
                            *a as f64 * xi
                        })
                        .sum();
                    let got = out[t * rows + r] as f64;
                    assert!(
                        (got - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                        "{ty:?} {got} {exact}"
                    );
                    // The scalar reference of the spec, block by block.
                    if ty == GgmlType::Q4_1 || ty == GgmlType::Q8_0 {
                        let scalar = scalar_dot(&w, r, &acts, t);
                        assert_eq!(
                            got.to_bits(),
                            (scalar as f64).to_bits(),
                            "{ty:?} simd vs scalar"
                        );
                    }
                }
            }
        }
    }

    fn scalar_dot(w: &Matrix, r: usize, x: &Activations, t: usize) -> f32 {
        let nb = w.cols / QK;
        let (ad, aq, asum) = x.quantized_row(t);
        let mut acc = 0f32;
        for b in 0..nb {
            let a = &aq[b * QK..(b + 1) * QK];
            acc += match &w.data {
                MatrixData::Q4_1 { d, m, qs } => {
                    let i = nibble_dot(&qs[(r * nb + b) * 16..(r * nb + b + 1) * 16], a);
                    (d[r * nb + b] * ad[b]) * i as f32 + (m[r * nb + b] * ad[b]) * asum[b] as f32
                }
                MatrixData::Q8_0 { d, qs } => {
                    let i: i32 = qs[(r * nb + b) * QK..(r * nb + b + 1) * QK]
                        .iter()
                        .zip(a)
                        .map(|(w, a)| *w as i32 * *a as i32)
                        .sum();
                    (d[r * nb + b] * ad[b]) * i as f32
                }
                _ => unreachable!(),
            };
        }
        acc
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 32, &[0; 39]).is_none());
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 30, &[0; 40]).is_none());
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 32, &[0; 40]).is_some());
    }
}
