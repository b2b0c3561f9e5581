//! 32-byte BLAKE3 digests and content ids.
//!
//! Every hash Verity signs or compares is taken with a *domain* (BLAKE3's key-derivation mode),
//! so a hash computed for one purpose can never be passed off as one computed for another.

use crate::CoreError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Domains, one per kind of hashed object. Changing any of these is a protocol change.
pub mod domain {
    pub const TENSOR: &str = "verity/tensor/v1";
    pub const TENSOR_MAP: &str = "verity/tensors/v1";
    pub const REQUEST: &str = "verity/request/v1";
    pub const RECEIPT: &str = "verity/receipt/v2";
    pub const TRACE_NODE: &str = "verity/trace-node/v1";
    pub const CALIBRATION: &str = "verity/calibration/v1";
    pub const PUBLISH: &str = "verity/publish/v1";
    pub const TX: &str = "verity/tx/v2";
    pub const TX_SIGNATURE: &str = "verity/tx-signature/v1";
    pub const BLOCK: &str = "verity/block/v1";
    pub const RECEIPTS_NODE: &str = "verity/receipts-node/v1";
    pub const STATE: &str = "verity/state/v2";
    pub const EXECUTOR_RANK: &str = "verity/executor-rank/v2";
    pub const CHAT_REQUEST: &str = "verity/chat-request/v1";
    pub const ZK_STATEMENT: &str = "verity/zk-statement/v1";
    pub const ZK_PROOF: &str = "verity/zk-proof/v1";
}

/// A 32-byte digest, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Domain-separated BLAKE3 of `bytes`.
    pub fn of(domain: &str, bytes: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(domain);
        h.update(bytes);
        Hash(*h.finalize().as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, CoreError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| CoreError::InvalidHex {
            what: "hash",
            reason: e.to_string(),
        })?;
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A model's identity: plain BLAKE3 of the model file's exact bytes (no domain, so anyone can
/// reproduce it with `b3sum`). Displayed as `blake3:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub [u8; 32]);

impl ModelId {
    pub fn of_bytes(bytes: &[u8]) -> ModelId {
        ModelId(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_hasher(h: &blake3::Hasher) -> ModelId {
        ModelId(*h.finalize().as_bytes())
    }

    /// The hex digest without the `blake3:` prefix (used as a file name in blob stores).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelId({self})")
    }
}

impl FromStr for ModelId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("blake3:")
            .ok_or_else(|| CoreError::InvalidId(s.to_string()))?;
        let mut out = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut out).is_err() {
            return Err(CoreError::InvalidId(s.to_string()));
        }
        Ok(ModelId(out))
    }
}

impl Serialize for ModelId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_round_trips_and_rejects_garbage() {
        let id = ModelId::of_bytes(b"model");
        let s = id.to_string();
        assert!(s.starts_with("blake3:"));
        assert_eq!(s.parse::<ModelId>().unwrap(), id);
        assert!("sha256:00".parse::<ModelId>().is_err());
        assert!("blake3:zz".parse::<ModelId>().is_err());
        assert!(format!("blake3:{}", "0".repeat(63))
            .parse::<ModelId>()
            .is_err());
    }

    #[test]
    fn domains_separate_hashes() {
        assert_ne!(
            Hash::of(domain::TENSOR, b"x"),
            Hash::of(domain::RECEIPT, b"x")
        );
    }
}
