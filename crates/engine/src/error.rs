use thiserror::Error;
use verity_core::CoreError;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("not a valid ONNX model: {0}")]
    NotOnnx(String),
    #[error("not a valid Verity int8 model: {0}")]
    NotCanonical(String),
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("operators not supported by the canonical int8 form: {}", .0.join(", "))]
    UnsupportedOps(Vec<String>),
    #[error("unsupported in the canonical int8 form: {0}")]
    Unsupported(String),
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("unknown input `{name}` (the model's inputs are: {expected})")]
    UnknownInput { name: String, expected: String },
    #[error("input `{name}`: expected {expected}, got {got}")]
    InputMismatch {
        name: String,
        expected: String,
        got: String,
    },
    #[error("calibration data: {0}")]
    Calibration(String),
    #[error("accumulator could overflow i32 in {0}; the model is rejected")]
    Overflow(String),
    #[error("float engine: {0}")]
    Float(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

pub type Result<T> = std::result::Result<T, EngineError>;
