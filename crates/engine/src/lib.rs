//! Verity's engines: ONNX loading, quantization to the canonical int8 form, the canonical
//! integer interpreter (bit-identical on every CPU, thread count and run) with its layer trace,
//! and the float engine used to serve float ONNX models in `signed` mode.

pub mod canonical;
pub mod error;
pub mod exec;
pub mod float;
pub mod float_engine;
pub mod geometry;
pub mod graph;
pub mod inspect;
pub mod kernels;
pub mod proto;
pub mod quantize;

pub use canonical::{is_canonical_file, CanonicalModel};
pub use error::{EngineError, Result};
pub use exec::{Execution, Interpreter};
pub use float_engine::FloatModel;
pub use inspect::{inspect, Inspection};
pub use quantize::{quantize_onnx, Calibration};
