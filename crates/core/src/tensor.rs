//! Tensors in their one canonical form: a dtype, a shape and little-endian row-major bytes.
//!
//! JSON is only an interface format; every hash is over [`Tensor::encode`]'s bytes.

use crate::encode::{Decoder, Encoder};
use crate::hash::{domain, Hash};
use crate::CoreError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Named tensors, ordered by name so that their encoding is canonical.
pub type TensorMap = BTreeMap<String, Tensor>;

/// Largest tensor accepted from a peer or user, in elements (guards allocations).
pub const MAX_ELEMENTS: usize = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I8,
    U8,
    I32,
    I64,
}

impl DType {
    /// Tag used in the canonical encoding.
    pub fn tag(self) -> u8 {
        match self {
            DType::F32 => 1,
            DType::I8 => 2,
            DType::U8 => 3,
            DType::I32 => 4,
            DType::I64 => 5,
        }
    }
    pub fn from_tag(t: u8) -> Result<DType, CoreError> {
        Ok(match t {
            1 => DType::F32,
            2 => DType::I8,
            3 => DType::U8,
            4 => DType::I32,
            5 => DType::I64,
            _ => return Err(CoreError::Malformed(format!("unknown dtype tag {t}"))),
        })
    }
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }
    pub fn parse(s: &str) -> Result<DType, CoreError> {
        Ok(match s {
            "f32" | "float32" => DType::F32,
            "i8" | "int8" => DType::I8,
            "u8" | "uint8" => DType::U8,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            other => return Err(CoreError::UnknownDType(other.to_string())),
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for DType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DType::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A dense tensor. Invariant: `data.len() == product(shape) * dtype.size()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({} {:?}, {} bytes)",
            self.dtype,
            self.shape,
            self.data.len()
        )
    }
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

impl Tensor {
    /// Builds a tensor from raw little-endian bytes, checking that they fit the shape.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Tensor, CoreError> {
        let n = element_count(&shape).ok_or_else(|| CoreError::InvalidTensor {
            name: String::new(),
            reason: format!("shape {shape:?} is too large"),
        })?;
        if data.len() != n * dtype.size() {
            return Err(CoreError::InvalidTensor {
                name: String::new(),
                reason: format!(
                    "shape {shape:?} needs {} bytes of {dtype}, got {}",
                    n * dtype.size(),
                    data.len()
                ),
            });
        }
        Ok(Tensor { dtype, shape, data })
    }

    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Tensor, CoreError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_bytes(DType::F32, shape, data)
    }

    pub fn from_i8(shape: Vec<usize>, values: &[i8]) -> Result<Tensor, CoreError> {
        Tensor::from_bytes(DType::I8, shape, values.iter().map(|&v| v as u8).collect())
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values as f32, or `None` if the tensor is not f32.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == DType::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Canonical encoding: dtype tag (u8), rank (u32), each dim (u64), then the data bytes
    /// (u64 length + bytes).
    pub fn encode_into(&self, e: &mut Encoder) {
        e.u8(self.dtype.tag()).u32(self.shape.len() as u32);
        for &d in &self.shape {
            e.u64(d as u64);
        }
        e.bytes(&self.data);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_into(&mut e);
        e.finish()
    }

    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Tensor, CoreError> {
        let dtype = DType::from_tag(d.u8()?)?;
        let rank = d.u32()? as usize;
        if rank > 16 {
            return Err(CoreError::Malformed(format!("rank {rank} exceeds 16")));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(usize::try_from(d.u64()?).map_err(|_| CoreError::Malformed("dim".into()))?);
        }
        let data = d.bytes()?.to_vec();
        Tensor::from_bytes(dtype, shape, data)
    }

    pub fn decode(bytes: &[u8]) -> Result<Tensor, CoreError> {
        let mut d = Decoder::new(bytes);
        let t = Tensor::decode_from(&mut d)?;
        d.expect_end()?;
        Ok(t)
    }

    /// Domain-separated hash of the canonical encoding (a layer-trace leaf).
    pub fn hash(&self) -> Hash {
        hash_parts(self.dtype, &self.shape, &self.data)
    }
}

/// [`Tensor::hash`] without building a tensor (the engine hashes its buffers in place).
pub fn hash_parts(dtype: DType, shape: &[usize], data: &[u8]) -> Hash {
    // Deriving the key hashes the context string; do it once and clone the keyed state.
    static KEYED: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(domain::TENSOR));
    let mut h = KEYED.clone();
    h.update(&[dtype.tag()]);
    h.update(&(shape.len() as u32).to_le_bytes());
    for &d in shape {
        h.update(&(d as u64).to_le_bytes());
    }
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(data);
    Hash(*h.finalize().as_bytes())
}

/// Canonical encoding of named tensors: count (u64), then per entry name (string) and tensor,
/// in name order.
pub fn encode_map(map: &TensorMap) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u64(map.len() as u64);
    for (name, t) in map {
        e.str(name);
        t.encode_into(&mut e);
    }
    e.finish()
}

/// The input/output hash named in requests and receipts.
pub fn hash_map(map: &TensorMap) -> Hash {
    Hash::of(domain::TENSOR_MAP, &encode_map(map))
}

/// JSON form: `{"dtype":"f32","shape":[1,64],"data":[...]}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorJson {
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<serde_json::Number>,
}

impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let data: Option<Vec<serde_json::Number>> = match self.dtype {
            DType::F32 => self
                .to_f32()
                .unwrap_or_default()
                .into_iter()
                .map(|v| serde_json::Number::from_f64(f64::from(v)))
                .collect(),
            DType::I8 => Some(self.data.iter().map(|&b| (b as i8).into()).collect()),
            DType::U8 => Some(self.data.iter().map(|&b| b.into()).collect()),
            DType::I32 => Some(
                self.data
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).into())
                    .collect(),
            ),
            DType::I64 => Some(
                self.data
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        i64::from_le_bytes(b).into()
                    })
                    .collect(),
            ),
        };
        let data = data.ok_or_else(|| S::Error::custom("tensor holds a non-finite float"))?;
        TensorJson {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let j = TensorJson::deserialize(d)?;
        let mut bytes = Vec::with_capacity(j.data.len() * j.dtype.size());
        for (i, n) in j.data.iter().enumerate() {
            let bad = || D::Error::custom(format!("element {i} ({n}) is not a valid {}", j.dtype));
            match j.dtype {
                DType::F32 => {
                    // JSON numbers are decimal; an f32 printed by us parses back to the same bits.
                    let v = n.as_f64().ok_or_else(bad)? as f32;
                    if !v.is_finite() {
                        return Err(bad());
                    }
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                DType::I8 => {
                    bytes.push(i8::try_from(n.as_i64().ok_or_else(bad)?).map_err(|_| bad())? as u8)
                }
                DType::U8 => {
                    bytes.push(u8::try_from(n.as_u64().ok_or_else(bad)?).map_err(|_| bad())?)
                }
                DType::I32 => bytes.extend_from_slice(
                    &i32::try_from(n.as_i64().ok_or_else(bad)?)
                        .map_err(|_| bad())?
                        .to_le_bytes(),
                ),
                DType::I64 => bytes.extend_from_slice(&n.as_i64().ok_or_else(bad)?.to_le_bytes()),
            }
        }
        Tensor::from_bytes(j.dtype, j.shape, bytes).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_json_round_trip_is_bit_exact() {
        // xorshift over bit patterns: every finite f32 we print must parse back to itself.
        let mut x: u32 = 0x1234_5678;
        let mut values = Vec::new();
        while values.len() < 200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
        }
        values.extend([0.0, -0.0, f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45]);
        let t = Tensor::from_f32(vec![values.len()], &values).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        let back: Tensor = serde_json::from_str(&json).unwrap();
        assert_eq!(back.encode(), t.encode());
    }

    #[test]
    fn rejects_shape_mismatch_and_bad_values() {
        assert!(
            serde_json::from_str::<Tensor>(r#"{"dtype":"f32","shape":[2],"data":[1]}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Tensor>(r#"{"dtype":"i8","shape":[1],"data":[300]}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Tensor>(r#"{"dtype":"f64","shape":[1],"data":[1]}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Tensor>(r#"{"dtype":"f32","shape":[1],"data":[1e60]}"#).is_err()
        );
        assert!(serde_json::from_str::<Tensor>(
            r#"{"dtype":"f32","shape":[4294967296,4294967296],"data":[]}"#
        )
        .is_err());
    }

    #[test]
    fn streamed_hash_equals_hash_of_encoding() {
        let t = Tensor::from_i8(vec![3], &[1, 2, 3]).unwrap();
        assert_eq!(t.hash(), Hash::of(domain::TENSOR, &t.encode()));
    }

    #[test]
    fn canonical_encoding_round_trips() {
        let t = Tensor::from_i8(vec![2, 2], &[1, -2, 3, -128]).unwrap();
        assert_eq!(Tensor::decode(&t.encode()).unwrap(), t);
        let mut bytes = t.encode();
        bytes.pop();
        assert!(Tensor::decode(&bytes).is_err());
    }
}
