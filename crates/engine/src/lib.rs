//! Verity's engines: ONNX loading, quantization to the canonical int8 form, the canonical
//! integer interpreter (bit-identical on every CPU, thread count and run) with its layer trace,
//! and the float engine used to serve float ONNX models in `signed` mode.
//!
//! The path from an ONNX file to a canonical model: [`onnx`] decodes it, [`lower`] turns it
//! into the float IR of [`ir`], and [`quantize`] calibrates that into a [`CanonicalModel`].

pub mod canonical;
pub mod cost;
pub mod error;
pub mod exec;
pub mod float;
pub mod float_engine;
pub mod geometry;
pub mod inspect;
pub mod ir;
pub mod kernels;
pub mod lower;
pub mod onnx;
pub mod proto;
pub mod quantize;
pub mod testing;

pub use canonical::{is_canonical_file, CanonicalModel};
pub use cost::{Cost, CostLimits};
pub use error::{EngineError, Result};
pub use exec::{Execution, Interpreter};
pub use float_engine::FloatModel;
pub use inspect::{inspect, Inspection};
pub use quantize::{quantize_onnx, Calibration};
