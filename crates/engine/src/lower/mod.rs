//! Lowering an ONNX graph to the float IR ([`FloatGraph`]) with static shapes.
//!
//! The result is what the quantizer calibrates and converts; it is also how
//! `verity model inspect` decides whether a model can be made canonical. Each supported ONNX
//! operator has one lowering function, found through [`LOWERINGS`]; the functions live in one
//! file per operator family. Rewrites done here: Gemm/MatMul become `Dense` with weights laid
//! out [out, in]; a constant Add after a Dense becomes its bias; BatchNormalization after a
//! Conv is folded into the Conv's weights; Flatten/Reshape become `Reshape`; Identity/Dropout
//! disappear.

mod activation;
mod add;
mod arith;
mod conv;
mod dense;
mod fold;
mod pool;
mod shape;

use crate::error::{EngineError, Result};
use crate::geometry::Window;
use crate::ir::{FOp, FloatGraph, ValueId};
use crate::onnx::{attr_i, attr_ints, attr_s, read_initializer, summarize, Init, OnnxSummary};
use crate::proto::{GraphProto, ModelProto, NodeProto};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use verity_core::DType;

/// Concrete shapes for a model's inputs, declared at publication (or taken from its calibration
/// data): they replace the inputs' dynamic dimensions, so every shape in the graph, and every
/// computation on shapes, is fixed before quantization.
pub type InputShapes = BTreeMap<String, Vec<usize>>;

/// Lowers one ONNX node: reads its operands from the [`Lowering`], pushes the float ops it
/// becomes (or folds into an earlier op) and binds the node's output name.
type LowerFn = fn(&mut Lowering, &NodeProto) -> Result<()>;

/// Every ONNX operator type the canonical form supports, with the function that lowers it.
const LOWERINGS: &[(&str, LowerFn)] = &[
    ("Gemm", dense::gemm),
    ("MatMul", dense::matmul),
    ("Add", add::add),
    ("Conv", conv::conv),
    ("BatchNormalization", conv::batch_normalization),
    ("MaxPool", pool::max_pool),
    ("AveragePool", pool::average_pool),
    ("GlobalAveragePool", pool::global_average_pool),
    ("Relu", activation::relu),
    ("Sigmoid", activation::sigmoid),
    ("Tanh", activation::tanh),
    ("Softmax", activation::softmax),
    ("Clip", activation::clip),
    ("HardSigmoid", activation::hard_sigmoid),
    ("HardSwish", activation::hard_swish),
    ("LeakyRelu", activation::leaky_relu),
    ("Sub", arith::sub),
    ("Mul", arith::mul),
    ("Div", arith::div),
    ("Flatten", shape::flatten),
    ("Reshape", shape::reshape),
    ("Concat", shape::concat),
    ("Identity", shape::pass_through),
    ("Dropout", shape::pass_through),
    ("Squeeze", fold::squeeze),
    ("Unsqueeze", fold::unsqueeze),
    // Folded into constants at load time (their operands are constants, or only the shapes
    // fixed at publication).
    ("Constant", fold::constant_node),
    ("Shape", fold::shape),
    ("Size", fold::size),
    ("Gather", fold::gather),
    ("Slice", fold::slice),
    ("Cast", fold::cast),
    ("ConstantOfShape", fold::constant_of_shape),
    ("Equal", fold::equal),
    ("Not", fold::not),
];

/// ONNX operator types the canonical form supports (the keys of [`LOWERINGS`]).
pub const CANONICAL_OPS: &[&str] = &OP_TYPES;

const OP_TYPES: [&str; LOWERINGS.len()] = {
    let mut names = [""; LOWERINGS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = LOWERINGS[i].0;
        i += 1;
    }
    names
};

fn lowering_for(op_type: &str) -> Option<LowerFn> {
    LOWERINGS
        .iter()
        .find(|(name, _)| *name == op_type)
        .map(|&(_, f)| f)
}

/// What an ONNX tensor name refers to while lowering.
enum Slot {
    Value(ValueId),
    Init(Init),
}

/// The graph being built, plus what the lowering functions need to look names up and fuse.
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
    /// An empty graph that knows the initializers and how often each name is read.
    fn new(graph: &GraphProto) -> Result<Lowering> {
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
        Ok(lw)
    }

    /// Declares the graph inputs (f32, with the shape given in `fixed` or else the model's,
    /// whose dynamic dims become 1) as the first values, and returns them as (name, value).
    fn bind_inputs(
        &mut self,
        summary: &OnnxSummary,
        fixed: &InputShapes,
    ) -> Result<Vec<(String, ValueId)>> {
        if let Some(name) = fixed
            .keys()
            .find(|n| !summary.inputs.iter().any(|s| &s.name == *n))
        {
            return Err(EngineError::InvalidModel(format!(
                "a shape is given for `{name}`, which is not an input of the model"
            )));
        }
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
            let shape: Vec<usize> = match fixed.get(&spec.name) {
                None => spec.shape.iter().map(|d| d.unwrap_or(1)).collect(),
                Some(given) => {
                    let fits = given.len() == spec.shape.len()
                        && given
                            .iter()
                            .zip(&spec.shape)
                            .all(|(g, d)| d.is_none_or(|d| d == *g));
                    if !fits || given.contains(&0) {
                        return Err(EngineError::Unsupported(format!(
                            "input `{}`: the given shape {given:?} does not fit the model's {}",
                            spec.name,
                            spec.shape_text()
                        )));
                    }
                    given.clone()
                }
            };
            let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if elements.is_none_or(|n| n > verity_core::tensor::MAX_ELEMENTS) {
                return Err(EngineError::Unsupported(format!(
                    "input `{}` has shape {shape:?}, larger than {} elements",
                    spec.name,
                    verity_core::tensor::MAX_ELEMENTS
                )));
            }
            let v = self.new_value(shape);
            self.names.insert(spec.name.clone(), Slot::Value(v));
            inputs.push((spec.name.clone(), v));
        }
        Ok(inputs)
    }

    fn new_value(&mut self, shape: Vec<usize>) -> ValueId {
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    fn push(&mut self, op: FOp) {
        self.producer.insert(op.output(), self.ops.len());
        self.ops.push(op);
    }

    /// Input `i` of `node`, which must be an activation (not an initializer).
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

    /// Whether input `i` of `node` names an activation (as opposed to a constant or nothing).
    fn is_value(&self, node: &NodeProto, i: usize) -> bool {
        matches!(
            node.input.get(i).and_then(|n| self.names.get(n)),
            Some(Slot::Value(_))
        )
    }

    /// Optional constant input `i` of `node` (absent or empty name: `None`).
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

    /// Makes the node's (first) output name refer to `v`.
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

    /// The sliding window of a Conv or pooling node over NCHW input `x` (shared attributes:
    /// strides, pads; auto_pad, dilations and ceil_mode are refused).
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
        let lower_node = lowering_for(&node.op_type)
            .ok_or_else(|| EngineError::UnsupportedOps(vec![node.op_type.clone()]))?;
        lower_node(self, node)
    }
}

/// Lowers a decoded ONNX model to the operator list the quantizer works on, with the input
/// shapes `fixed` (other dynamic dimensions, e.g. a symbolic batch, are fixed to 1) and every
/// computation on constants and shapes folded.
pub fn lower(model: &ModelProto, fixed: &InputShapes) -> Result<FloatGraph> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| EngineError::NotOnnx("no graph".into()))?;
    let unsupported: BTreeSet<String> = graph
        .node
        .iter()
        .filter(|n| {
            lowering_for(&n.op_type).is_none() || !(n.domain.is_empty() || n.domain == "ai.onnx")
        })
        .map(|n| n.op_type.clone())
        .collect();
    if !unsupported.is_empty() {
        return Err(EngineError::UnsupportedOps(
            unsupported.into_iter().collect(),
        ));
    }
    let mut lw = Lowering::new(graph)?;
    let inputs = lw.bind_inputs(&summarize(model)?, fixed)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_table_names_each_op_once() {
        let unique: BTreeSet<&str> = CANONICAL_OPS.iter().copied().collect();
        assert_eq!(unique.len(), CANONICAL_OPS.len(), "{CANONICAL_OPS:?}");
        assert!(CANONICAL_OPS.contains(&"BatchNormalization"));
        assert!(lowering_for("LSTM").is_none());
    }
}
