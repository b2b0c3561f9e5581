use thiserror::Error;

/// Errors from parsing or building core values (ids, tensors, keys).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid id `{0}`: expected `blake3:` followed by 64 hex digits")]
    InvalidId(String),
    #[error("invalid hex in {what}: {reason}")]
    InvalidHex { what: &'static str, reason: String },
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    #[error("invalid signature encoding: {0}")]
    InvalidSignature(String),
    #[error("unknown dtype `{0}` (expected one of f32, i8, u8, i32, i64)")]
    UnknownDType(String),
    #[error("tensor `{name}`: {reason}")]
    InvalidTensor { name: String, reason: String },
    #[error("unknown mode `{0}` (this node supports: signed)")]
    UnknownMode(String),
    #[error("malformed canonical encoding: {0}")]
    Malformed(String),
}
