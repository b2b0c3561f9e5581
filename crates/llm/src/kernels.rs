//! Matrix-vector products on quantized weights, bit-exact on every x86-64 CPU.
//!
//! Activations are quantized to 8 bits per 32-value block ([`Activations`]). A block's dot
//! product with a weight block is an exact integer; the float work per block (two scale
//! products, one add into the row's running sum, blocks in order) follows
//! `docs/llm-semantics.md` operation by operation. Weights are stored in groups of four rows,
//! block by block, so the AVX2 path runs four rows side by side: the same integers as the
//! scalar path, then the same IEEE multiplies and adds, one lane per row. Both give identical
//! bits; which one runs only changes speed. Rows are split across threads, never a single row,
//! so the thread count cannot change a result.

use crate::quant::QK;
use half::f16;
use rayon::prelude::*;

/// Rows computed together; matrices are padded with zero rows to a multiple of it.
const GROUP: usize = 4;

/// A weight matrix, `rows` outputs by `cols` inputs, repacked for the kernels.
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    data: MatrixData,
}

/// Quantized data in group order: the scales of block `b` of row `4g + i` are at index
/// `(g * blocks_per_row + b) * 4 + i`, and its quants at that index times the block's quant
/// bytes.
enum MatrixData {
    /// Per block: scale `d`, minimum `m`, 16 bytes of nibbles (byte j: weight j in the low
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
    /// Plain floats, row-major (F32, or F16 widened exactly); dotted in f32, in order.
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
        if !cols.is_multiple_of(QK) && !matches!(ty, T::F32 | T::F16) {
            return None;
        }
        if bytes.len() as u64 != ty.bytes_for(rows.checked_mul(cols)? as u64)? {
            return None;
        }
        if let T::F32 | T::F16 = ty {
            let data = MatrixData::F32(ty.dequantize(bytes));
            return Some(Matrix { rows, cols, data });
        }
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let bb = ty.block_bytes();
        // Source blocks in group order; padding rows are all-zero blocks.
        let zero = vec![0u8; bb];
        let blocks = (0..groups * nb * GROUP).map(|slot| {
            let (g, b, i) = (slot / (nb * GROUP), slot / GROUP % nb, slot % GROUP);
            let r = g * GROUP + i;
            match r < rows {
                true => &bytes[(r * nb + b) * bb..(r * nb + b + 1) * bb],
                false => &zero[..],
            }
        });
        let half = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
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
            _ => {
                let (mut d, mut qs) = (vec![], vec![]);
                for b in blocks {
                    d.push(half(b, 0));
                    qs.extend(b[2..34].iter().map(|&q| q as i8));
                }
                MatrixData::Q8_0 { d, qs }
            }
        };
        Some(Matrix { rows, cols, data })
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Index of the scales of block `b` of row `r`.
    fn slot(&self, r: usize, b: usize) -> usize {
        ((r / GROUP) * self.blocks_per_row() + b) * GROUP + r % GROUP
    }

    /// Row `r` as floats (token embeddings are looked up this way). Exact dequantization.
    pub fn row(&self, r: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.cols);
        if let MatrixData::F32(w) = &self.data {
            out.extend_from_slice(&w[r * self.cols..(r + 1) * self.cols]);
            return out;
        }
        for b in 0..self.blocks_per_row() {
            let s = self.slot(r, b);
            match &self.data {
                MatrixData::Q4_1 { d, m, qs } => {
                    let q = &qs[s * 16..s * 16 + 16];
                    out.extend(q.iter().map(|n| (n & 15) as f32 * d[s] + m[s]));
                    out.extend(q.iter().map(|n| (n >> 4) as f32 * d[s] + m[s]));
                }
                MatrixData::Q4_0 { d, qs } => {
                    let q = &qs[s * 16..s * 16 + 16];
                    out.extend(q.iter().map(|n| ((n & 15) as i32 - 8) as f32 * d[s]));
                    out.extend(q.iter().map(|n| ((n >> 4) as i32 - 8) as f32 * d[s]));
                }
                MatrixData::Q8_0 { d, qs } => {
                    out.extend(qs[s * QK..(s + 1) * QK].iter().map(|&q| q as f32 * d[s]));
                }
                MatrixData::F32(_) => unreachable!("handled above"),
            }
        }
        out
    }

    /// `out[t][r] = W[r] · x[t]` for every activation row `t` of `x`.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) {
        assert_eq!(x.cols, self.cols, "activation width");
        assert_eq!(out.len(), x.rows * self.rows, "output size");
        // Groups in chunks across threads; each (row, token) dot is computed whole by one
        // thread. Results land group-major, then are scattered into `out`.
        const GROUPS_PER_TASK: usize = 4;
        let tokens = x.rows;
        let groups = self.rows.div_ceil(GROUP);
        let mut by_group = vec![0f32; groups * tokens * GROUP];
        by_group
            .par_chunks_mut(GROUPS_PER_TASK * tokens * GROUP)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (j, group_out) in chunk.chunks_mut(tokens * GROUP).enumerate() {
                    let g = task * GROUPS_PER_TASK + j;
                    // Up to four tokens per pass over the weights.
                    for (quad, o) in group_out.chunks_mut(4 * GROUP).enumerate() {
                        let t = 4 * quad;
                        match o.len() / GROUP {
                            4 => o.copy_from_slice(self.dot4_tokens::<4>(g, x, t).as_flattened()),
                            3 => o.copy_from_slice(self.dot4_tokens::<3>(g, x, t).as_flattened()),
                            2 => o.copy_from_slice(self.dot4_tokens::<2>(g, x, t).as_flattened()),
                            _ => o.copy_from_slice(self.dot4_tokens::<1>(g, x, t).as_flattened()),
                        }
                    }
                }
            });
        for (g, group) in by_group.chunks(tokens * GROUP).enumerate() {
            for (t, values) in group.chunks(GROUP).enumerate() {
                for (i, v) in values.iter().enumerate() {
                    let r = g * GROUP + i;
                    if r < self.rows {
                        out[t * self.rows + r] = *v;
                    }
                }
            }
        }
    }

    /// Rows `4g..4g + 4` times activation row `t`.
    /// Rows `4g..4g + 4` times activation rows `t..t + T`.
    fn dot4_tokens<const T: usize>(
        &self,
        g: usize,
        x: &Activations,
        t: usize,
    ) -> [[f32; GROUP]; T] {
        #[cfg(target_arch = "x86_64")]
        if simd::avx2() && !matches!(self.data, MatrixData::F32(_)) {
            // SAFETY: the features were detected at run time; slices are sized by construction.
            return unsafe {
                match simd::vnni() {
                    true => simd::dot4_vnni::<T>(self, g, x, t),
                    false => simd::dot4::<T>(self, g, x, t),
                }
            };
        }
        std::array::from_fn(|k| self.dot4_scalar(g, x, t + k))
    }

    /// The specification, row by row: per block b, in order,
    /// Q4_1 `acc = acc + ((d_w * d_a) * isum + (m_w * d_a) * asum)`;
    /// Q4_0 `acc = acc + (d_w * d_a) * (isum - 8 * asum)`; Q8_0 `acc = acc + (d_w * d_a) * isum`,
    /// where `isum` is the exact integer block dot and `asum` the sum of the activation quants.
    fn dot4_scalar(&self, g: usize, x: &Activations, t: usize) -> [f32; GROUP] {
        let mut acc = [0f32; GROUP];
        if let MatrixData::F32(w) = &self.data {
            let xs = x.float_row(t);
            for (i, a) in acc.iter_mut().enumerate() {
                let r = g * GROUP + i;
                if r < self.rows {
                    for (w, v) in w[r * self.cols..(r + 1) * self.cols].iter().zip(xs) {
                        *a += w * v;
                    }
                }
            }
            return acc;
        }
        let (ad, aq, asum) = x.quantized_row(t);
        for b in 0..self.blocks_per_row() {
            let a = &aq[b * QK..(b + 1) * QK];
            for (i, acc) in acc.iter_mut().enumerate() {
                let s = self.slot(g * GROUP + i, b);
                *acc += match &self.data {
                    MatrixData::Q4_1 { d, m, qs } => {
                        let isum = nibble_dot(&qs[s * 16..s * 16 + 16], a);
                        (d[s] * ad[b]) * isum as f32 + (m[s] * ad[b]) * asum[b] as f32
                    }
                    MatrixData::Q4_0 { d, qs } => {
                        let isum = nibble_dot(&qs[s * 16..s * 16 + 16], a) - 8 * asum[b];
                        (d[s] * ad[b]) * isum as f32
                    }
                    MatrixData::Q8_0 { d, qs } => {
                        let isum: i32 = qs[s * QK..(s + 1) * QK]
                            .iter()
                            .zip(a)
                            .map(|(w, a)| *w as i32 * *a as i32)
                            .sum();
                        (d[s] * ad[b]) * isum as f32
                    }
                    MatrixData::F32(_) => unreachable!("handled above"),
                };
            }
        }
        acc
    }
}

/// Activation rows, kept as floats and as 8-bit blocks: per block `d = max|x| / 127` and
/// `q = round(x * (1 / d))`, half away from zero (all 0 when `d` is 0).
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
    //! AVX2 version of [`super::Matrix::dot4_scalar`]: one activation block against the same
    //! block of four rows; exact integer sums, then lane-wise (one lane per row) IEEE float
    //! operations in the scalar order. Where AVX-512 VNNI exists, the byte products are summed
    //! by `vpdpbusd` instead of `vpmaddubsw` + `vpmaddwd`: the same exact integers, fewer
    //! instructions. `VERITY_ISA=portable` forces the scalar path, `VERITY_ISA=avx2` plain
    //! AVX2 ([`verity_core::isa`]). The helpers are `inline(always)` so they take the features
    //! of the kernel they are inlined into.
    use super::{Activations, Matrix, MatrixData, GROUP, QK};
    use std::arch::x86_64::*;
    use verity_core::isa::{active, Isa};

    pub fn avx2() -> bool {
        active() >= Isa::Avx2
    }

    /// AVX-512 VNNI (with VL, for 256-bit registers) on top of AVX2.
    pub fn vnni() -> bool {
        active() >= Isa::Avx512Vnni
    }

    /// Lane i of the result is the sum of the 8 lanes of the i-th argument.
    #[inline(always)]
    unsafe fn hsum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
        let abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256(abcd, 1),
        )
    }

    /// Expands the 16 nibble bytes at `w` to 32 unsigned bytes (weights 0..32 in order).
    #[inline(always)]
    unsafe fn expand(w: *const u8) -> __m256i {
        let packed = _mm_loadu_si128(w as *const __m128i);
        let mask = _mm_set1_epi8(15);
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
        _mm256_set_m128i(hi, lo)
    }

    /// The four rows' nibble blocks at `w` (16 bytes each, consecutive), expanded.
    #[inline(always)]
    unsafe fn expand4(w: *const u8) -> [__m256i; GROUP] {
        [
            expand(w),
            expand(w.add(16)),
            expand(w.add(32)),
            expand(w.add(48)),
        ]
    }

    /// Lane i: the exact integer dot of row i's expanded nibbles with the activations.
    #[inline(always)]
    unsafe fn nibble_sums<const VNNI: bool>(ws: &[__m256i; GROUP], acts: __m256i) -> __m128i {
        hsum4(
            madd::<VNNI>(ws[0], acts),
            madd::<VNNI>(ws[1], acts),
            madd::<VNNI>(ws[2], acts),
            madd::<VNNI>(ws[3], acts),
        )
    }

    /// Σ u_j a_j of unsigned weight bytes and signed activations, as 8 partial lanes (at most
    /// 2·15·127 per pair for nibbles; see `signed` for bytes).
    #[inline(always)]
    unsafe fn madd<const VNNI: bool>(weights: __m256i, acts: __m256i) -> __m256i {
        if VNNI {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), weights, acts)
        } else {
            _mm256_madd_epi16(_mm256_maddubs_epi16(weights, acts), _mm256_set1_epi16(1))
        }
    }

    /// Σ w_j a_j of signed weight bytes: |w| times a with w's sign. |w| ≤ 128 and |a| ≤ 127,
    /// so a pair sum (at most 2·128·127 = 32,512) cannot saturate.
    #[inline(always)]
    unsafe fn signed<const VNNI: bool>(w: __m256i, abs_w: __m256i, acts: __m256i) -> __m256i {
        madd::<VNNI>(abs_w, _mm256_sign_epi8(acts, w))
    }

    /// Rows `4g..4g + 4` times activation rows `t0..t0 + T`: each weight block is loaded
    /// once for the T tokens. Per token and lane, the operations of `dot4_scalar`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4<const T: usize>(
        m: &Matrix,
        g: usize,
        x: &Activations,
        t0: usize,
    ) -> [[f32; GROUP]; T] {
        dot4_body::<T, false>(m, g, x, t0)
    }

    /// [`dot4`] with VNNI byte products.
    #[target_feature(enable = "avx2,avx512vl,avx512vnni")]
    pub unsafe fn dot4_vnni<const T: usize>(
        m: &Matrix,
        g: usize,
        x: &Activations,
        t0: usize,
    ) -> [[f32; GROUP]; T] {
        dot4_body::<T, true>(m, g, x, t0)
    }

    #[inline(always)]
    unsafe fn dot4_body<const T: usize, const VNNI: bool>(
        m: &Matrix,
        g: usize,
        x: &Activations,
        t0: usize,
    ) -> [[f32; GROUP]; T] {
        let nb = m.blocks_per_row();
        let rows: [(&[f32], &[i8], &[i32]); T] = std::array::from_fn(|k| x.quantized_row(t0 + k));
        let base = g * nb * GROUP;
        let mut acc = [_mm_setzero_ps(); T];
        for b in 0..nb {
            let s = base + b * GROUP;
            match &m.data {
                MatrixData::Q4_1 { d, m, qs } => {
                    let w = qs.as_ptr().add(s * 16);
                    let ws = expand4(w);
                    let (dw, mw) = (
                        _mm_loadu_ps(d.as_ptr().add(s)),
                        _mm_loadu_ps(m.as_ptr().add(s)),
                    );
                    for k in 0..T {
                        let (ad, aq, asum) = rows[k];
                        let acts = _mm256_loadu_si256(aq.as_ptr().add(b * QK) as *const __m256i);
                        let isum = nibble_sums::<VNNI>(&ws, acts);
                        let da = _mm_set1_ps(ad[b]);
                        let scaled = _mm_mul_ps(_mm_mul_ps(dw, da), _mm_cvtepi32_ps(isum));
                        let mins = _mm_mul_ps(_mm_mul_ps(mw, da), _mm_set1_ps(asum[b] as f32));
                        acc[k] = _mm_add_ps(acc[k], _mm_add_ps(scaled, mins));
                    }
                }
                MatrixData::Q4_0 { d, qs } => {
                    let w = qs.as_ptr().add(s * 16);
                    let ws = expand4(w);
                    let dw = _mm_loadu_ps(d.as_ptr().add(s));
                    for k in 0..T {
                        let (ad, aq, asum) = rows[k];
                        let acts = _mm256_loadu_si256(aq.as_ptr().add(b * QK) as *const __m256i);
                        let isum = nibble_sums::<VNNI>(&ws, acts);
                        let isum = _mm_sub_epi32(isum, _mm_set1_epi32(8 * asum[b]));
                        let da = _mm_set1_ps(ad[b]);
                        acc[k] = _mm_add_ps(
                            acc[k],
                            _mm_mul_ps(_mm_mul_ps(dw, da), _mm_cvtepi32_ps(isum)),
                        );
                    }
                }
                MatrixData::Q8_0 { d, qs } => {
                    let w = qs.as_ptr().add(s * QK) as *const __m256i;
                    let ws = [
                        _mm256_loadu_si256(w),
                        _mm256_loadu_si256(w.add(1)),
                        _mm256_loadu_si256(w.add(2)),
                        _mm256_loadu_si256(w.add(3)),
                    ];
                    let abs = [
                        _mm256_sign_epi8(ws[0], ws[0]),
                        _mm256_sign_epi8(ws[1], ws[1]),
                        _mm256_sign_epi8(ws[2], ws[2]),
                        _mm256_sign_epi8(ws[3], ws[3]),
                    ];
                    let dw = _mm_loadu_ps(d.as_ptr().add(s));
                    for k in 0..T {
                        let (ad, aq, _) = rows[k];
                        let acts = _mm256_loadu_si256(aq.as_ptr().add(b * QK) as *const __m256i);
                        let isum = hsum4(
                            signed::<VNNI>(ws[0], abs[0], acts),
                            signed::<VNNI>(ws[1], abs[1], acts),
                            signed::<VNNI>(ws[2], abs[2], acts),
                            signed::<VNNI>(ws[3], abs[3], acts),
                        );
                        let da = _mm_set1_ps(ad[b]);
                        acc[k] = _mm_add_ps(
                            acc[k],
                            _mm_mul_ps(_mm_mul_ps(dw, da), _mm_cvtepi32_ps(isum)),
                        );
                    }
                }
                MatrixData::F32(_) => unreachable!("float matrices take the scalar path"),
            }
        }
        let mut out = [[0f32; GROUP]; T];
        for k in 0..T {
            _mm_storeu_ps(out[k].as_mut_ptr(), acc[k]);
        }
        out
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
        // 37 rows: the last group is padded. 7 tokens: a pass of four, then of three.
        let (rows, cols, tokens) = (37, 256, 7);
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
            // The row lookup is the plain GGML dequantization.
            let plain = ty.dequantize(&data);
            for r in [0, 5, 36] {
                assert_eq!(w.row(r), plain[r * cols..(r + 1) * cols], "{ty:?} row {r}");
            }
            let mut out = vec![0f32; rows * tokens];
            w.matmul(&acts, &mut out);
            for t in 0..tokens {
                let (ad, aq, _) = acts.quantized_row(t);
                for r in 0..rows {
                    // Against the dequantized weights times the quantized activations (the
                    // floats themselves for F32 weights), summed in f64.
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
                    let got = out[t * rows + r];
                    assert!(
                        (got as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                        "{ty:?} {got} {exact}"
                    );
                    // Whichever kernel ran, the bits are the scalar specification's.
                    let scalar = w.dot4_scalar(r / GROUP, &acts, t)[r % GROUP];
                    assert_eq!(got.to_bits(), scalar.to_bits(), "{ty:?} kernel vs scalar");
                }
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 32, &[0; 39]).is_none());
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 30, &[0; 40]).is_none());
        assert!(Matrix::from_ggml(GgmlType::Q4_1, 2, 32, &[0; 40]).is_some());
    }
}
