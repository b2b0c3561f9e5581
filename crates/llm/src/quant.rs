//! The GGML tensor types Verity reads, their block layouts and exact dequantization.
//!
//! Every quantized type packs 32 weights per block with an f16 scale (and, for Q4_1, an f16
//! minimum). Dequantization is one f32 multiply (and one add) per weight, in that order and
//! without fused multiply-add, so it is bit-exact on every CPU.

use half::f16;

/// Weights per quantization block.
pub const QK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    /// From the GGUF type code; `None` for types Verity does not read.
    pub fn from_code(code: u32) -> Option<GgmlType> {
        Some(match code {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
        }
    }

    /// Elements per block.
    pub fn block_elements(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            _ => QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 2 + QK / 2,
            GgmlType::Q4_1 => 2 + 2 + QK / 2,
            GgmlType::Q8_0 => 2 + QK,
        }
    }

    /// Bytes taken by `elements` values, or `None` if they do not fill whole blocks (or the
    /// size overflows).
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let per = self.block_elements() as u64;
        elements.is_multiple_of(per).then_some(())?;
        (elements / per).checked_mul(self.block_bytes() as u64)
    }

    /// Dequantizes `bytes` (whole blocks of this type) to f32.
    pub fn dequantize(self, bytes: &[u8]) -> Vec<f32> {
        let bb = self.block_bytes();
        let mut out = Vec::with_capacity(bytes.len() / bb * self.block_elements());
        for b in bytes.chunks_exact(bb) {
            match self {
                GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                GgmlType::F16 => out.push(half_at(b, 0)),
                GgmlType::Q4_0 => {
                    let d = half_at(b, 0);
                    let qs = &b[2..];
                    // Low nibbles are weights 0..16, high nibbles 16..32.
                    out.extend(qs.iter().map(|q| ((q & 0x0f) as i32 - 8) as f32 * d));
                    out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
                }
                GgmlType::Q4_1 => {
                    let (d, m) = (half_at(b, 0), half_at(b, 2));
                    let qs = &b[4..];
                    out.extend(qs.iter().map(|q| (q & 0x0f) as f32 * d + m));
                    out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
                }
                GgmlType::Q8_0 => {
                    let d = half_at(b, 0);
                    out.extend(b[2..].iter().map(|q| *q as i8 as f32 * d));
                }
            }
        }
        out
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_dequantize_as_specified() {
        let one = f16::from_f32(0.5).to_le_bytes();
        let min = f16::from_f32(-1.0).to_le_bytes();
        // Q4_0: nibble n means (n - 8) * d.
        let mut q40 = one.to_vec();
        q40.extend((0..16u8).map(|i| i | (15 - i) << 4));
        let v = GgmlType::Q4_0.dequantize(&q40);
        assert_eq!(v.len(), 32);
        assert_eq!((v[0], v[15], v[16], v[31]), (-4.0, 3.5, 3.5, -4.0));
        // Q4_1: n * d + m.
        let mut q41 = one.to_vec();
        q41.extend(min);
        q41.extend((0..16u8).map(|i| i | (15 - i) << 4));
        let v = GgmlType::Q4_1.dequantize(&q41);
        assert_eq!((v[0], v[15], v[16], v[31]), (-1.0, 6.5, 6.5, -1.0));
        // Q8_0: signed bytes times d.
        let mut q8 = one.to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = GgmlType::Q8_0.dequantize(&q8);
        assert_eq!((v[0], v[16], v[31]), (-8.0, 0.0, 7.5));
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
        assert_eq!(GgmlType::F16.bytes_for(3), Some(6));
    }
}
