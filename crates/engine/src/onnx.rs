//! Reading ONNX: decoding the protobuf, summarizing a graph's interface, and turning
//! initializers and node attributes into plain Rust values.
//!
//! Everything here is about the file, not about what the canonical form supports; both
//! `inspect` (any ONNX file) and the lowering (canonicalizable ones) build on it.

use crate::error::{EngineError, Result};
use crate::proto::{self, data_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use prost::Message;
use std::collections::BTreeSet;
use verity_core::{DType, TensorSpec};

/// What `inspect` reports about any ONNX file, canonicalizable or not.
#[derive(Clone, Debug)]
pub struct OnnxSummary {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub operators: Vec<String>,
}

/// Decodes the protobuf and checks it is structurally an ONNX model.
pub fn decode_onnx(bytes: &[u8]) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes).map_err(|e| EngineError::NotOnnx(e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::NotOnnx("no graph".into()))?;
    if model.ir_version <= 0 || model.opset_import.is_empty() {
        return Err(EngineError::NotOnnx(
            "missing ir_version or opset_import".into(),
        ));
    }
    if graph.node.is_empty() || graph.output.is_empty() {
        return Err(EngineError::NotOnnx(
            "graph has no nodes or no outputs".into(),
        ));
    }
    if graph.node.iter().any(|n| n.op_type.is_empty()) {
        return Err(EngineError::NotOnnx("a node has no op_type".into()));
    }
    Ok(model)
}

fn dtype_of(code: i32) -> Option<DType> {
    Some(match code {
        data_type::FLOAT => DType::F32,
        data_type::UINT8 => DType::U8,
        data_type::INT8 => DType::I8,
        data_type::INT32 => DType::I32,
        data_type::INT64 => DType::I64,
        _ => return None,
    })
}

fn spec_of(v: &proto::ValueInfoProto) -> Result<TensorSpec> {
    let tt = v
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| EngineError::InvalidModel(format!("`{}` is not a tensor", v.name)))?;
    let dtype = dtype_of(tt.elem_type).ok_or_else(|| {
        EngineError::Unsupported(format!(
            "`{}` has ONNX element type {}",
            v.name, tt.elem_type
        ))
    })?;
    let shape = tt
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize))
                .collect()
        })
        .unwrap_or_default();
    Ok(TensorSpec {
        name: v.name.clone(),
        dtype,
        shape,
    })
}

/// The graph's inputs (initializers listed as inputs excluded), outputs and operator types.
pub fn summarize(model: &ModelProto) -> Result<OnnxSummary> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::NotOnnx("no graph".into()))?;
    let initializers: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name.as_str()))
        .map(spec_of)
        .collect::<Result<Vec<_>>>()?;
    let outputs = graph
        .output
        .iter()
        .map(spec_of)
        .collect::<Result<Vec<_>>>()?;
    let operators: BTreeSet<String> = graph.node.iter().map(|n| n.op_type.clone()).collect();
    Ok(OnnxSummary {
        inputs,
        outputs,
        operators: operators.into_iter().collect(),
    })
}

/// An initializer's values as f32 (or i64 for shape operands).
#[derive(Clone)]
pub(crate) struct Init {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

pub(crate) fn read_initializer(t: &TensorProto) -> Result<Init> {
    let bad = |why: &str| EngineError::InvalidModel(format!("initializer `{}`: {why}", t.name));
    if t.data_location == 1 {
        return Err(bad("external data is not supported; embed the weights"));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad("negative dim")))
        .collect::<Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("too large"))?;
    let raw = &t.raw_data;
    let (f32v, i64v): (Vec<f32>, Vec<i64>) = match t.data_type {
        data_type::FLOAT => {
            let v: Vec<f32> = if raw.is_empty() {
                t.float_data.clone()
            } else {
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            (v, vec![])
        }
        data_type::DOUBLE => {
            let v: Vec<f64> = if raw.is_empty() {
                t.double_data.clone()
            } else {
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect()
            };
            (v.iter().map(|&x| x as f32).collect(), vec![])
        }
        data_type::INT64 => {
            let v: Vec<i64> = if raw.is_empty() {
                t.int64_data.clone()
            } else {
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect()
            };
            (v.iter().map(|&x| x as f32).collect(), v)
        }
        other => return Err(bad(&format!("element type {other} is not supported"))),
    };
    if f32v.len() != n {
        return Err(bad(&format!(
            "holds {} values for shape {shape:?}",
            f32v.len()
        )));
    }
    Ok(Init {
        shape,
        f32: f32v,
        i64: i64v,
    })
}

pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// Integer attribute `name`, or `default` when the node does not set it.
pub(crate) fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

/// Float attribute `name`, or `default` when the node does not set it.
pub(crate) fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

/// Integer-list attribute `name`, if set.
pub(crate) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// String attribute `name` (lossy UTF-8), if set.
pub(crate) fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}
