use thiserror::Error;

/// Refuses a model outside what the prover handles, naming the operator and the reason.
pub(crate) fn unsupported(op: &str, why: &str) -> ZkError {
    ZkError::Unsupported {
        op: op.to_string(),
        why: why.to_string(),
    }
}

#[derive(Debug, Error)]
pub enum ZkError {
    #[error("{op} cannot be proven: {why}")]
    Unsupported { op: String, why: String },
    #[error("model: {0}")]
    Model(#[from] verity_engine::EngineError),
    #[error("the statement does not match the model: {0}")]
    Statement(String),
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("proof rejected: {0}")]
    Rejected(String),
    #[error("prover failed: {0}")]
    Internal(String),
}
