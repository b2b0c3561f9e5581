//! Lowering an ONNX graph to Verity's typed operator list with static shapes.
//!
//! The result ([`FloatGraph`]) is what the quantizer calibrates and converts; it is also how
//! `verity model inspect` decides whether a model can be made canonical. Rewrites done here:
//! Gemm/MatMul become `Dense` with weights laid out [out, in]; a constant Add after a Dense
//! becomes its bias; BatchNormalization after a Conv is folded into the Conv's weights;
//! Flatten/Reshape become `Reshape`; Identity/Dropout disappear.

use crate::error::{EngineError, Result};
use crate::geometry::Window;
use crate::proto::{self, data_type, AttributeProto, ModelProto, NodeProto, TensorProto};
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use verity_core::{DType, TensorSpec};

/// ONNX operator types the canonical form supports.
pub const CANONICAL_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Conv",
    "Relu",
    "Add",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "Concat",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Identity",
    "Dropout",
];

/// Index of a tensor value in a graph.
pub type ValueId = usize;

#[derive(Clone, Debug)]
pub enum FOp {
    /// y[m, n] = sum_k x[m, k] * w[n, k] + b[n]; x is viewed as [rows, k].
    Dense {
        x: ValueId,
        y: ValueId,
        w: Vec<f32>,
        b: Vec<f32>,
        k: usize,
        n: usize,
    },
    /// NCHW convolution, weights [out, in, kh, kw].
    Conv {
        x: ValueId,
        y: ValueId,
        w: Vec<f32>,
        b: Vec<f32>,
        out_channels: usize,
        win: Window,
    },
    Relu {
        x: ValueId,
        y: ValueId,
    },
    Sigmoid {
        x: ValueId,
        y: ValueId,
    },
    Tanh {
        x: ValueId,
        y: ValueId,
    },
    /// Softmax over the last axis.
    Softmax {
        x: ValueId,
        y: ValueId,
    },
    /// Elementwise add; `b` is broadcast when its shape is a suffix of `a`'s.
    Add {
        a: ValueId,
        b: ValueId,
        y: ValueId,
    },
    /// A constant tensor (an initializer used as an activation operand).
    Const {
        y: ValueId,
        data: Vec<f32>,
    },
    MaxPool {
        x: ValueId,
        y: ValueId,
        win: Window,
    },
    AvgPool {
        x: ValueId,
        y: ValueId,
        win: Window,
        count_include_pad: bool,
    },
    Reshape {
        x: ValueId,
        y: ValueId,
    },
    Concat {
        xs: Vec<ValueId>,
        y: ValueId,
        axis: usize,
    },
}

impl FOp {
    pub fn output(&self) -> ValueId {
        match self {
            FOp::Dense { y, .. }
            | FOp::Conv { y, .. }
            | FOp::Relu { y, .. }
            | FOp::Sigmoid { y, .. }
            | FOp::Tanh { y, .. }
            | FOp::Softmax { y, .. }
            | FOp::Add { y, .. }
            | FOp::Const { y, .. }
            | FOp::MaxPool { y, .. }
            | FOp::AvgPool { y, .. }
            | FOp::Reshape { y, .. }
            | FOp::Concat { y, .. } => *y,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FloatGraph {
    pub shapes: Vec<Vec<usize>>,
    /// (name, value) of each graph input, in declaration order.
    pub inputs: Vec<(String, ValueId)>,
    pub outputs: Vec<(String, ValueId)>,
    pub ops: Vec<FOp>,
}

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
struct Init {
    shape: Vec<usize>,
    f32: Vec<f32>,
    i64: Vec<i64>,
}

fn read_initializer(t: &TensorProto) -> Result<Init> {
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

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}
fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}
fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}
fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

enum Slot {
    Value(ValueId),
    Init(Init),
}

struct Lowering {
    shapes: Vec<Vec<usize>>,
    ops: Vec<FOp>,
    names: HashMap<String, Slot>,
    /// How many node inputs and graph outputs read each name (for safe fusion).
    uses: HashMap<String, usize>,
    /// Which op produced each value, to fuse into it.
    producer: HashMap<ValueId, usize>,
}

impl Lowering {
    fn new_value(&mut self, shape: Vec<usize>) -> ValueId {
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    fn push(&mut self, op: FOp) {
        self.producer.insert(op.output(), self.ops.len());
        self.ops.push(op);
    }

    fn value(&self, node: &NodeProto, i: usize) -> Result<ValueId> {
        let name = node.input.get(i).ok_or_else(|| {
            EngineError::InvalidModel(format!("{} `{}` lacks input {i}", node.op_type, node.name))
        })?;
        match self.names.get(name) {
            Some(Slot::Value(v)) => Ok(*v),
            Some(Slot::Init(_)) => Err(EngineError::Unsupported(format!(
                "{} `{}`: input `{name}` must be an activation, not a constant",
                node.op_type, node.name
            ))),
            None => Err(EngineError::InvalidModel(format!(
                "{} `{}` reads `{name}`, which nothing produces (graph not in topological order?)",
                node.op_type, node.name
            ))),
        }
    }

    fn init(&self, node: &NodeProto, i: usize) -> Result<Option<Init>> {
        let Some(name) = node.input.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        match self.names.get(name) {
            Some(Slot::Init(t)) => Ok(Some(t.clone())),
            Some(Slot::Value(_)) => Err(EngineError::Unsupported(format!(
                "{} `{}`: operand `{name}` must be a constant initializer",
                node.op_type, node.name
            ))),
            None => Err(EngineError::InvalidModel(format!(
                "unknown tensor `{name}`"
            ))),
        }
    }

    fn required_init(&self, node: &NodeProto, i: usize) -> Result<Init> {
        self.init(node, i)?.ok_or_else(|| {
            EngineError::InvalidModel(format!("{} `{}` lacks input {i}", node.op_type, node.name))
        })
    }

    fn bind(&mut self, node: &NodeProto, v: ValueId) {
        if let Some(out) = node.output.first() {
            self.names.insert(out.clone(), Slot::Value(v));
        }
    }

    /// The op that produced `v`, if `v` is read by nobody but the current node.
    fn sole_producer(&self, v: ValueId, name: &str) -> Option<usize> {
        (self.uses.get(name) == Some(&1))
            .then(|| self.producer.get(&v).copied())
            .flatten()
    }

    fn window(&self, node: &NodeProto, x: ValueId, kernel: (usize, usize)) -> Result<Window> {
        let shape = &self.shapes[x];
        if shape.len() != 4 {
            return Err(EngineError::Unsupported(format!(
                "{} `{}`: only 2-D NCHW inputs are supported, got shape {shape:?}",
                node.op_type, node.name
            )));
        }
        if let Some(p) = attr_s(node, "auto_pad").filter(|p| p != "NOTSET" && p != "VALID") {
            return Err(EngineError::Unsupported(format!(
                "{}: auto_pad={p}",
                node.op_type
            )));
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
            return Err(EngineError::Unsupported(format!(
                "{}: dilations other than 1",
                node.op_type
            )));
        }
        if attr_i(node, "ceil_mode", 0) != 0 {
            return Err(EngineError::Unsupported(format!(
                "{}: ceil_mode=1",
                node.op_type
            )));
        }
        let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0, 0, 0, 0]);
        if strides.len() != 2 || pads.len() != 4 || strides.iter().chain(&pads).any(|&v| v < 0) {
            return Err(EngineError::InvalidModel(format!(
                "{}: bad strides/pads",
                node.op_type
            )));
        }
        let win = Window {
            channels: shape[1],
            height: shape[2],
            width: shape[3],
            kernel_h: kernel.0,
            kernel_w: kernel.1,
            stride_h: strides[0] as usize,
            stride_w: strides[1] as usize,
            pad_top: pads[0] as usize,
            pad_left: pads[1] as usize,
            pad_bottom: pads[2] as usize,
            pad_right: pads[3] as usize,
        };
        win.validate(&node.op_type)?;
        Ok(win)
    }

    fn lower(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        match op {
            "Identity" | "Dropout" => {
                let x = self.value(node, 0)?;
                self.bind(node, x);
            }
            "Gemm" => {
                let x = self.value(node, 0)?;
                let b = self.required_init(node, 1)?;
                let c = self.init(node, 2)?;
                if attr_i(node, "transA", 0) != 0 {
                    return Err(EngineError::Unsupported("Gemm with transA=1".into()));
                }
                let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
                let xs = self.shapes[x].clone();
                if xs.len() != 2 || b.shape.len() != 2 {
                    return Err(EngineError::Unsupported(format!(
                        "Gemm `{}`: operands must be 2-D",
                        node.name
                    )));
                }
                let trans_b = attr_i(node, "transB", 0) != 0;
                let (k, n) = if trans_b {
                    (b.shape[1], b.shape[0])
                } else {
                    (b.shape[0], b.shape[1])
                };
                if xs[1] != k {
                    return Err(EngineError::InvalidModel(format!(
                        "Gemm `{}`: inner dims {} vs {k}",
                        node.name, xs[1]
                    )));
                }
                let mut w = vec![0f32; n * k];
                for o in 0..n {
                    for i in 0..k {
                        let v = if trans_b {
                            b.f32[o * k + i]
                        } else {
                            b.f32[i * n + o]
                        };
                        w[o * k + i] = alpha * v;
                    }
                }
                let bias = match c {
                    None => vec![0.0; n],
                    Some(c) if c.f32.len() == n => c.f32.iter().map(|v| beta * v).collect(),
                    Some(c) if c.f32.len() == 1 => vec![beta * c.f32[0]; n],
                    Some(c) => {
                        return Err(EngineError::Unsupported(format!(
                            "Gemm `{}`: bias shape {:?}",
                            node.name, c.shape
                        )))
                    }
                };
                let y = self.new_value(vec![xs[0], n]);
                self.push(FOp::Dense {
                    x,
                    y,
                    w,
                    b: bias,
                    k,
                    n,
                });
                self.bind(node, y);
            }
            "MatMul" => {
                let x = self.value(node, 0)?;
                let b = self.required_init(node, 1)?;
                let xs = self.shapes[x].clone();
                if b.shape.len() != 2 || xs.is_empty() || xs[xs.len() - 1] != b.shape[0] {
                    return Err(EngineError::Unsupported(format!(
                        "MatMul `{}`: needs x[..., K] times a 2-D constant [K, N]; got {xs:?} x {:?}",
                        node.name, b.shape
                    )));
                }
                let (k, n) = (b.shape[0], b.shape[1]);
                let mut w = vec![0f32; n * k];
                for o in 0..n {
                    for i in 0..k {
                        w[o * k + i] = b.f32[i * n + o];
                    }
                }
                let mut ys = xs.clone();
                *ys.last_mut().unwrap_or(&mut 0) = n;
                let y = self.new_value(ys);
                self.push(FOp::Dense {
                    x,
                    y,
                    w,
                    b: vec![0.0; n],
                    k,
                    n,
                });
                self.bind(node, y);
            }
            "Add" => self.lower_add(node)?,
            "Conv" => {
                let x = self.value(node, 0)?;
                let w = self.required_init(node, 1)?;
                let b = self.init(node, 2)?;
                if attr_i(node, "group", 1) != 1 {
                    return Err(EngineError::Unsupported(format!(
                        "Conv `{}`: group != 1",
                        node.name
                    )));
                }
                if w.shape.len() != 4 || w.shape[1] != self.shapes[x].get(1).copied().unwrap_or(0) {
                    return Err(EngineError::InvalidModel(format!(
                        "Conv `{}`: weight shape {:?}",
                        node.name, w.shape
                    )));
                }
                let win = self.window(node, x, (w.shape[2], w.shape[3]))?;
                let oc = w.shape[0];
                let bias = b.map_or(vec![0.0; oc], |b| b.f32);
                if bias.len() != oc {
                    return Err(EngineError::InvalidModel(format!(
                        "Conv `{}`: bias length",
                        node.name
                    )));
                }
                let y = self.new_value(vec![self.shapes[x][0], oc, win.out_h(), win.out_w()]);
                self.push(FOp::Conv {
                    x,
                    y,
                    w: w.f32,
                    b: bias,
                    out_channels: oc,
                    win,
                });
                self.bind(node, y);
            }
            "BatchNormalization" => {
                let x = self.value(node, 0)?;
                let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| self.required_init(node, i));
                let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
                let eps = attr_f(node, "epsilon", 1e-5);
                let conv = self.sole_producer(x, &node.input[0]);
                let Some(FOp::Conv {
                    w,
                    b,
                    out_channels,
                    win,
                    ..
                }) = conv.map(|i| &mut self.ops[i])
                else {
                    return Err(EngineError::Unsupported(format!(
                        "BatchNormalization `{}` must directly follow a Conv (it is folded into it)",
                        node.name
                    )));
                };
                let oc = *out_channels;
                if [&gamma, &beta, &mean, &var]
                    .iter()
                    .any(|t| t.f32.len() != oc)
                {
                    return Err(EngineError::InvalidModel(
                        "BatchNormalization: parameter length".into(),
                    ));
                }
                let per = win.channels * win.kernel_h * win.kernel_w;
                for c in 0..oc {
                    let s = gamma.f32[c] / (var.f32[c] + eps).sqrt();
                    w[c * per..(c + 1) * per].iter_mut().for_each(|v| *v *= s);
                    b[c] = (b[c] - mean.f32[c]) * s + beta.f32[c];
                }
                self.bind(node, x);
            }
            "Relu" | "Sigmoid" | "Tanh" => {
                let x = self.value(node, 0)?;
                let y = self.new_value(self.shapes[x].clone());
                self.push(match op {
                    "Relu" => FOp::Relu { x, y },
                    "Sigmoid" => FOp::Sigmoid { x, y },
                    _ => FOp::Tanh { x, y },
                });
                self.bind(node, y);
            }
            "Softmax" => {
                let x = self.value(node, 0)?;
                let rank = self.shapes[x].len() as i64;
                let axis = attr_i(node, "axis", -1);
                if axis != -1 && axis != rank - 1 {
                    return Err(EngineError::Unsupported(format!(
                        "Softmax `{}` over axis {axis} (only the last axis)",
                        node.name
                    )));
                }
                let y = self.new_value(self.shapes[x].clone());
                self.push(FOp::Softmax { x, y });
                self.bind(node, y);
            }
            "MaxPool" | "AveragePool" => {
                let x = self.value(node, 0)?;
                let k = attr_ints(node, "kernel_shape").unwrap_or_default();
                if k.len() != 2 || k.iter().any(|&v| v <= 0) {
                    return Err(EngineError::Unsupported(format!(
                        "{op} `{}`: needs a 2-D kernel_shape",
                        node.name
                    )));
                }
                let win = self.window(node, x, (k[0] as usize, k[1] as usize))?;
                let y = self.new_value(vec![
                    self.shapes[x][0],
                    win.channels,
                    win.out_h(),
                    win.out_w(),
                ]);
                self.push(if op == "MaxPool" {
                    FOp::MaxPool { x, y, win }
                } else {
                    FOp::AvgPool {
                        x,
                        y,
                        win,
                        count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
                    }
                });
                self.bind(node, y);
            }
            "GlobalAveragePool" => {
                let x = self.value(node, 0)?;
                let s = self.shapes[x].clone();
                if s.len() != 4 {
                    return Err(EngineError::Unsupported(
                        "GlobalAveragePool on non-NCHW input".into(),
                    ));
                }
                let win = Window {
                    channels: s[1],
                    height: s[2],
                    width: s[3],
                    kernel_h: s[2],
                    kernel_w: s[3],
                    stride_h: 1,
                    stride_w: 1,
                    pad_top: 0,
                    pad_left: 0,
                    pad_bottom: 0,
                    pad_right: 0,
                };
                let y = self.new_value(vec![s[0], s[1], 1, 1]);
                self.push(FOp::AvgPool {
                    x,
                    y,
                    win,
                    count_include_pad: false,
                });
                self.bind(node, y);
            }
            "Flatten" => {
                let x = self.value(node, 0)?;
                let s = self.shapes[x].clone();
                let mut axis = attr_i(node, "axis", 1);
                if axis < 0 {
                    axis += s.len() as i64;
                }
                let axis = (axis.max(0) as usize).min(s.len());
                let y =
                    self.new_value(vec![s[..axis].iter().product(), s[axis..].iter().product()]);
                self.push(FOp::Reshape { x, y });
                self.bind(node, y);
            }
            "Reshape" => {
                let x = self.value(node, 0)?;
                let target = self.required_init(node, 1)?.i64;
                let s = self.shapes[x].clone();
                let total: usize = s.iter().product();
                let mut out: Vec<usize> = Vec::with_capacity(target.len());
                let mut infer = None;
                for (i, &d) in target.iter().enumerate() {
                    match d {
                        0 => out.push(*s.get(i).ok_or_else(|| {
                            EngineError::InvalidModel("Reshape: 0 beyond input rank".into())
                        })?),
                        -1 if infer.is_none() => {
                            infer = Some(i);
                            out.push(1);
                        }
                        d if d > 0 => out.push(d as usize),
                        _ => {
                            return Err(EngineError::InvalidModel(format!(
                                "Reshape `{}`: bad target {target:?}",
                                node.name
                            )))
                        }
                    }
                }
                let known: usize = out.iter().product();
                if let Some(i) = infer {
                    if known == 0 || !total.is_multiple_of(known) {
                        return Err(EngineError::InvalidModel(format!(
                            "Reshape `{}`: cannot infer -1",
                            node.name
                        )));
                    }
                    out[i] = total / known;
                }
                if out.iter().product::<usize>() != total {
                    return Err(EngineError::InvalidModel(format!(
                        "Reshape `{}`: {s:?} to {out:?}",
                        node.name
                    )));
                }
                let y = self.new_value(out);
                self.push(FOp::Reshape { x, y });
                self.bind(node, y);
            }
            "Concat" => {
                let xs = (0..node.input.len())
                    .map(|i| self.value(node, i))
                    .collect::<Result<Vec<_>>>()?;
                let first = self.shapes[xs[0]].clone();
                let mut axis = attr_i(node, "axis", 0);
                if axis < 0 {
                    axis += first.len() as i64;
                }
                let axis = usize::try_from(axis)
                    .ok()
                    .filter(|&a| a < first.len())
                    .ok_or_else(|| {
                        EngineError::InvalidModel(format!("Concat `{}`: bad axis", node.name))
                    })?;
                let mut out = first.clone();
                out[axis] = 0;
                for &v in &xs {
                    let s = &self.shapes[v];
                    let compatible = s.len() == first.len()
                        && s.iter()
                            .zip(&first)
                            .enumerate()
                            .all(|(i, (a, b))| i == axis || a == b);
                    if !compatible {
                        return Err(EngineError::InvalidModel(format!(
                            "Concat `{}`: shapes differ",
                            node.name
                        )));
                    }
                    out[axis] += s[axis];
                }
                let y = self.new_value(out);
                self.push(FOp::Concat { xs, y, axis });
                self.bind(node, y);
            }
            other => return Err(EngineError::UnsupportedOps(vec![other.to_string()])),
        }
        Ok(())
    }

    fn lower_add(&mut self, node: &NodeProto) -> Result<()> {
        let slots: Vec<bool> = (0..2)
            .map(|i| {
                matches!(
                    node.input.get(i).and_then(|n| self.names.get(n)),
                    Some(Slot::Value(_))
                )
            })
            .collect();
        let (vi, ci) = match (slots[0], slots[1]) {
            (true, true) => {
                let (a, b) = (self.value(node, 0)?, self.value(node, 1)?);
                let (sa, sb) = (&self.shapes[a], &self.shapes[b]);
                let (a, b) = if sa.ends_with(sb) {
                    (a, b)
                } else if sb.ends_with(sa) {
                    (b, a)
                } else {
                    return Err(EngineError::Unsupported(format!(
                        "Add `{}`: shapes {sa:?} and {sb:?} do not broadcast by suffix",
                        node.name
                    )));
                };
                let y = self.new_value(self.shapes[a].clone());
                self.push(FOp::Add { a, b, y });
                self.bind(node, y);
                return Ok(());
            }
            (true, false) => (0, 1),
            (false, true) => (1, 0),
            (false, false) => {
                return Err(EngineError::Unsupported(format!(
                    "Add `{}` of two constants",
                    node.name
                )))
            }
        };
        let x = self.value(node, vi)?;
        let c = self.required_init(node, ci)?;
        let xs = self.shapes[x].clone();
        // A constant added to a Dense output along its last axis is that Dense's bias.
        let n_last = xs.last().copied().unwrap_or(0);
        if c.f32.len() == n_last && c.shape.iter().rev().skip(1).all(|&d| d == 1) {
            if let Some(i) = self.sole_producer(x, &node.input[vi]) {
                if let FOp::Dense { b, .. } = &mut self.ops[i] {
                    b.iter_mut().zip(&c.f32).for_each(|(b, c)| *b += c);
                    self.bind(node, x);
                    return Ok(());
                }
            }
        }
        let mut cshape = c.shape.clone();
        while cshape.first() == Some(&1) && cshape.len() > 1 {
            cshape.remove(0);
        }
        if !xs.ends_with(&cshape) {
            return Err(EngineError::Unsupported(format!(
                "Add `{}`: constant of shape {:?} does not broadcast onto {xs:?}",
                node.name, c.shape
            )));
        }
        let b = self.new_value(cshape);
        self.push(FOp::Const { y: b, data: c.f32 });
        let y = self.new_value(xs);
        self.push(FOp::Add { a: x, b, y });
        self.bind(node, y);
        Ok(())
    }
}

/// Lowers a decoded ONNX model to the operator list the quantizer works on. Dynamic dimensions
/// (e.g. a symbolic batch) are fixed to 1.
pub fn lower(model: &ModelProto) -> Result<FloatGraph> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::NotOnnx("no graph".into()))?;
    let unsupported: BTreeSet<String> = graph
        .node
        .iter()
        .filter(|n| {
            !CANONICAL_OPS.contains(&n.op_type.as_str())
                || !(n.domain.is_empty() || n.domain == "ai.onnx")
        })
        .map(|n| n.op_type.clone())
        .collect();
    if !unsupported.is_empty() {
        return Err(EngineError::UnsupportedOps(
            unsupported.into_iter().collect(),
        ));
    }
    let mut lw = Lowering {
        shapes: vec![],
        ops: vec![],
        names: HashMap::new(),
        uses: HashMap::new(),
        producer: HashMap::new(),
    };
    for n in &graph.node {
        for i in &n.input {
            *lw.uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *lw.uses.entry(o.name.clone()).or_default() += 1;
    }
    for t in &graph.initializer {
        lw.names
            .insert(t.name.clone(), Slot::Init(read_initializer(t)?));
    }
    let summary = summarize(model)?;
    let mut inputs = vec![];
    for spec in &summary.inputs {
        if spec.dtype != DType::F32 {
            return Err(EngineError::Unsupported(format!(
                "input `{}` is {}, expected f32",
                spec.name, spec.dtype
            )));
        }
        if spec.shape.is_empty() {
            return Err(EngineError::Unsupported(format!(
                "input `{}` has no declared shape",
                spec.name
            )));
        }
        let shape: Vec<usize> = spec.shape.iter().map(|d| d.unwrap_or(1)).collect();
        let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if elements.is_none_or(|n| n > verity_core::tensor::MAX_ELEMENTS) {
            return Err(EngineError::Unsupported(format!(
                "input `{}` has shape {shape:?}, larger than {} elements",
                spec.name,
                verity_core::tensor::MAX_ELEMENTS
            )));
        }
        let v = lw.new_value(shape);
        lw.names.insert(spec.name.clone(), Slot::Value(v));
        inputs.push((spec.name.clone(), v));
    }
    for node in &graph.node {
        lw.lower(node)?;
    }
    let mut outputs = vec![];
    for o in &graph.output {
        match lw.names.get(&o.name) {
            Some(Slot::Value(v)) => outputs.push((o.name.clone(), *v)),
            _ => {
                return Err(EngineError::Unsupported(format!(
                    "output `{}` is not computed from the inputs",
                    o.name
                )))
            }
        }
    }
    Ok(FloatGraph {
        shapes: lw.shapes,
        inputs,
        outputs,
        ops: lw.ops,
    })
}
