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
    #[error(
        "operators whose memory cannot be bounded before running: {} (float models are served \
         for the operators of the canonical form, whose shapes are known in advance)",
        .0.join(", ")
    )]
    FloatUnsupported(Vec<String>),
    /// The model's cost is above a limit (the message names it).
    #[error("the model is too costly to serve: {0}")]
    TooCostly(String),
    #[error("float engine: {0}")]
    Float(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

pub type Result<T> = std::result::Result<T, EngineError>;
