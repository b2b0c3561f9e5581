//! The canonical binary encoding that every signed or hashed object is reduced to.
//!
//! Rules (docs/receipts.md): integers are little-endian fixed width; byte strings and UTF-8
//! strings are a u64 length followed by the bytes; optional values are a 0/1 byte then the value;
//! maps are a u64 count then entries sorted by key bytes. One value has exactly one encoding.

use crate::CoreError;

#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// 32 raw bytes, no length prefix (hashes, keys).
    pub fn fixed32(&mut self, v: &[u8; 32]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// 64 raw bytes, no length prefix (signatures).
    pub fn fixed64(&mut self, v: &[u8; 64]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what [`Encoder`] wrote; every read is bounds-checked so hostile bytes give an error.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                CoreError::Malformed(format!(
                    "truncated: wanted {n} bytes at offset {} of {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, CoreError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, CoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, CoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, CoreError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> Result<f32, CoreError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    pub fn fixed32(&mut self) -> Result<[u8; 32], CoreError> {
        self.array()
    }
    pub fn fixed64(&mut self) -> Result<[u8; 64], CoreError> {
        self.array()
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CoreError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| CoreError::Malformed("length too large".into()))?;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<&'a str, CoreError> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| CoreError::Malformed("string is not UTF-8".into()))
    }
    /// A count of items that will each take at least `min_item_bytes`; rejects counts the
    /// remaining input cannot hold, so hostile counts cannot trigger huge allocations.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, CoreError> {
        let n = self.u64()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > remaining {
            return Err(CoreError::Malformed(format!(
                "count {n} exceeds the remaining {remaining} bytes"
            )));
        }
        Ok(n as usize)
    }
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
    pub fn expect_end(&self) -> Result<(), CoreError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CoreError::Malformed(format!(
                "{} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut e = Encoder::new();
        e.u8(7).u32(9).u64(11).i32(-3).f32(1.5).str("héllo");
        let bytes = e.finish();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u32().unwrap(), 9);
        assert_eq!(d.u64().unwrap(), 11);
        assert_eq!(d.i32().unwrap(), -3);
        assert_eq!(d.f32().unwrap(), 1.5);
        assert_eq!(d.str().unwrap(), "héllo");
        d.expect_end().unwrap();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(&bytes[..cut]);
            let r = (|| -> Result<(), CoreError> {
                d.u8()?;
                d.u32()?;
                d.u64()?;
                d.i32()?;
                d.f32()?;
                d.str()?;
                Ok(())
            })();
            assert!(r.is_err(), "cut at {cut} must fail");
        }
    }

    #[test]
    fn hostile_count_is_rejected() {
        let mut e = Encoder::new();
        e.u64(u64::MAX);
        let bytes = e.finish();
        assert!(Decoder::new(&bytes).count(1).is_err());
    }
}
