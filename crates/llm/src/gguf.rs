//! GGUF (version 2 and 3) files: header, metadata, tensor directory and tensor data.
//!
//! Everything read from the file is bounded by the file itself: counts and lengths are checked
//! against the bytes that remain before anything is allocated, and every tensor must lie,
//! aligned, inside the data section with a size that matches its shape and type. A malformed
//! or truncated file is an error, never a panic.

use crate::quant::GgmlType;
use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GgufError {
    #[error("not a GGUF file (bad magic)")]
    Magic,
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("malformed {what} at byte {at}")]
    Malformed { what: &'static str, at: usize },
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("metadata `{0}` is missing or has the wrong type")]
    Metadata(String),
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any unsigned or non-negative integer value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as GGUF stores them.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte range of the tensor's data within the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file over its bytes.
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata array elements still allowed: each becomes a [`Value`] of 32 bytes whatever
    /// its size in the file, so a file of one-byte elements could otherwise ask for 32 times
    /// its own size in memory.
    array_elements_left: usize,
}

/// All metadata arrays together hold at most this many elements (SmolLM2: about 147,000).
pub const MAX_ARRAY_ELEMENTS: usize = 4_000_000;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(GgufError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items that each take at least `min_bytes`, bounded by what remains.
    fn count(&mut self, min_bytes: usize, what: &'static str) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes.max(1) as u64) > remaining {
            return Err(GgufError::Malformed { what, at });
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let at = self.pos;
        let n = self.count(1, "string length")?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| GgufError::Malformed {
            what: "UTF-8 string",
            at,
        })
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        let at = self.pos;
        Ok(match ty {
            0 => Value::U8(self.u8()?),
            1 => Value::I8(self.u8()? as i8),
            2 => Value::U16(self.u16()?),
            3 => Value::I16(self.u16()? as i16),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(self.u32()? as i32),
            6 => Value::F32(f32::from_bits(self.u32()?)),
            7 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(GgufError::Malformed { what: "bool", at }),
            },
            8 => Value::String(self.string()?),
            9 if depth == 0 => {
                let item = self.u32()?;
                let n = self.count(1, "array length")?;
                self.array_elements_left =
                    self.array_elements_left
                        .checked_sub(n)
                        .ok_or(GgufError::Malformed {
                            what: "metadata arrays (too many elements)",
                            at,
                        })?;
                Value::Array(
                    (0..n)
                        .map(|_| self.value(item, depth + 1))
                        .collect::<Result<_, _>>()?,
                )
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            _ => {
                return Err(GgufError::Malformed {
                    what: "value type",
                    at,
                })
            }
        })
    }
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            array_elements_left: MAX_ARRAY_ELEMENTS,
        };
        if r.take(4).map_err(|_| GgufError::Magic)? != MAGIC {
            return Err(GgufError::Magic);
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        // A tensor entry takes at least 8 + 4 + 8 + 4 + 8 bytes; a metadata entry 8 + 4 + 1.
        let tensor_count = r.u64()?;
        let kv_count = r.count(13, "metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let remaining = (bytes.len() - r.pos) as u64;
        if tensor_count.saturating_mul(32) > remaining {
            return Err(GgufError::Malformed {
                what: "tensor count",
                at: 8,
            });
        }
        let mut raw = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = r.string()?;
            let at = r.pos;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Malformed {
                    what: "tensor rank",
                    at,
                });
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let code = r.u32()?;
            let offset = r.u64()?;
            raw.push((name, dims, code, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| GgufError::Metadata("general.alignment".into()))?,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, code, offset) in raw {
            let bad = |reason: String| GgufError::Tensor {
                name: name.clone(),
                reason,
            };
            let ty = GgmlType::from_code(code)
                .ok_or_else(|| bad(format!("unsupported type code {code}")))?;
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, d| acc.checked_mul(*d))
                .ok_or_else(|| bad("element count overflows".into()))?;
            let len = ty.bytes_for(elements).ok_or_else(|| {
                bad(format!(
                    "{elements} elements do not fill {} blocks",
                    ty.name()
                ))
            })?;
            if !offset.is_multiple_of(alignment) {
                return Err(bad(format!("offset {offset} is not {alignment}-aligned")));
            }
            let start = data_start
                .checked_add(offset)
                .filter(|s| s.checked_add(len).is_some_and(|e| e <= bytes.len() as u64))
                .ok_or_else(|| bad("data lies outside the file".into()))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                start: start as usize,
                len: len as usize,
            });
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (whole blocks of its type).
    pub fn data(&self, t: &TensorInfo) -> &'a [u8] {
        &self.bytes[t.start..t.start + t.len]
    }

    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::Metadata(key.into()))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| GgufError::Metadata(key.into()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| GgufError::Metadata(key.into()))
    }
}
