//! Shapes fixed at publication and constant folding (issue 21): the shape arithmetic that
//! PyTorch and PaddlePaddle exports emit around a dynamic input folds away into a static graph.

use verity_engine::ir::FOp;
use verity_engine::lower::{lower, InputShapes};
use verity_engine::proto::{
    data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use verity_engine::{quantize_onnx, Calibration, EngineError};

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ..Default::default()
    }
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        t: Some(t),
        ..Default::default()
    }
}

fn int64s(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "dyn".to_string()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// What `torch.flatten(relu(x), 1)` exports to around an input `[?, 3, ?, ?]`: the target
/// shape of the Reshape is computed from `Shape(x)` with Gather, Unsqueeze, Constant, Cast,
/// Slice and Concat; a Squeeze/Unsqueeze pair and an Identity on a constant ride along.
fn exported() -> ModelProto {
    let nodes = vec![
        node("Relu", &["x"], "r", vec![]),
        node("Shape", &["r"], "s", vec![]),
        node(
            "Constant",
            &[],
            "zero",
            vec![tensor_attr("value", int64s("", &[], &[0]))],
        ),
        node("Gather", &["s", "zero"], "n", vec![int_attr("axis", 0)]),
        node("Unsqueeze", &["n"], "n1", vec![ints_attr("axes", &[0])]),
        node("Slice", &["s", "one", "big"], "chw", vec![]),
        node(
            "Cast",
            &["chw"],
            "chw_f",
            vec![int_attr("to", data_type::FLOAT as i64)],
        ),
        node(
            "Cast",
            &["chw_f"],
            "chw_i",
            vec![int_attr("to", data_type::INT64 as i64)],
        ),
        node("Identity", &["minus_one"], "m1", vec![]),
        node("Concat", &["n1", "m1"], "target", vec![int_attr("axis", 0)]),
        node("Reshape", &["r", "target"], "flat", vec![]),
        node(
            "Unsqueeze",
            &["flat"],
            "flat3",
            vec![ints_attr("axes", &[1])],
        ),
        node("Squeeze", &["flat3"], "y", vec![ints_attr("axes", &[1])]),
    ];
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 11,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "exported".into(),
            initializer: vec![
                int64s("one", &[1], &[1]),
                int64s("big", &[1], &[i64::MAX]),
                int64s("minus_one", &[1], &[-1]),
            ],
            input: vec![value_info("x", &[None, Some(3), None, None])],
            output: vec![value_info("y", &[None, None])],
        }),
    }
}

fn shapes(dims: &[usize]) -> InputShapes {
    InputShapes::from([("x".to_string(), dims.to_vec())])
}

#[test]
fn shape_arithmetic_folds_into_a_static_graph_at_the_declared_shape() {
    let g = lower(&exported(), &shapes(&[1, 3, 8, 16])).unwrap();
    assert_eq!(g.shapes[g.inputs[0].1], vec![1, 3, 8, 16]);
    let (_, y) = g.outputs[0];
    assert_eq!(g.shapes[y], vec![1, 3 * 8 * 16], "the folded target shape");
    // Only data movement and the activation remain: every shape computation was folded.
    assert!(
        g.ops
            .iter()
            .all(|op| matches!(op, FOp::Relu { .. } | FOp::Reshape { .. })),
        "{:?}",
        g.ops
    );
    // Another declared shape folds to another static graph.
    let g = lower(&exported(), &shapes(&[1, 3, 4, 4])).unwrap();
    assert_eq!(g.shapes[g.outputs[0].1], vec![1, 48]);
}

#[test]
fn a_declared_shape_must_fit_the_model() {
    for (given, why) in [
        (shapes(&[1, 4, 8, 8]), "does not fit"),
        (shapes(&[1, 3, 8]), "does not fit"),
        (shapes(&[1, 3, 0, 8]), "does not fit"),
        (
            InputShapes::from([("nope".to_string(), vec![1])]),
            "not an input",
        ),
    ] {
        let e = lower(&exported(), &given).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn shape_operators_on_input_values_are_refused_by_name() {
    // Gather whose data is the activation itself (an embedding lookup by input value) cannot
    // be folded: refused, naming the node, not lowered to something else.
    let mut m = exported();
    let graph = m.graph.as_mut().unwrap();
    graph
        .node
        .insert(1, node("Gather", &["r", "zero_i"], "picked", vec![]));
    graph.initializer.push(int64s("zero_i", &[], &[0]));
    let e = lower(&m, &shapes(&[1, 3, 8, 16])).unwrap_err();
    assert!(
        matches!(&e, EngineError::Unsupported(m) if m.contains("Gather `picked`") && m.contains("input values")),
        "{e}"
    );
}

#[test]
fn calibration_data_fixes_the_shapes_it_is_given_in() {
    // Two samples of [3, 4, 4] fix x to [1, 3, 4, 4]; the folded model quantizes.
    let values: Vec<f32> = (0..2 * 48).map(|i| (i as f32 * 0.37).sin()).collect();
    let json = serde_json::json!({"x": {"dtype": "f32", "shape": [2, 3, 4, 4], "data": values}});
    let calib = Calibration::from_json(json.to_string().as_bytes()).unwrap();
    use prost::Message;
    let bytes = exported().encode_to_vec();
    let q = quantize_onnx(&bytes, &calib).unwrap();
    assert_eq!(q.shapes[q.inputs[0].value], vec![1, 3, 4, 4]);
    assert_eq!(q.shapes[q.outputs[0].value], vec![1, 48]);
}

fn float_tensor(name: &str, v: f32) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![],
        data_type: data_type::FLOAT,
        raw_data: v.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        ..Default::default()
    }
}

/// The activation tail of a MobileNetV3 export (PaddleOCR's classifiers): Clip as ReLU6,
/// HardSigmoid, HardSwish, LeakyRelu, and arithmetic with scalar constants (`x + 3`, `/ 6`,
/// `* 2`, `1 - x`).
fn activations() -> ModelProto {
    let nodes = vec![
        node("Clip", &["x", "zero", "six"], "relu6", vec![]),
        node("Sub", &["relu6", "three"], "shifted", vec![]),
        node("Div", &["shifted", "six"], "scaled", vec![]),
        node(
            "HardSigmoid",
            &["scaled"],
            "gate",
            vec![float_attr("alpha", 0.2), float_attr("beta", 0.5)],
        ),
        node("Sub", &["one", "gate"], "flipped", vec![]),
        node("Mul", &["flipped", "two"], "doubled", vec![]),
        node("HardSwish", &["x"], "swished", vec![]),
        node(
            "LeakyRelu",
            &["swished"],
            "leaky",
            vec![float_attr("alpha", 0.1)],
        ),
        node(
            "Concat",
            &["doubled", "leaky"],
            "y",
            vec![int_attr("axis", 1)],
        ),
    ];
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 14,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "activations".into(),
            initializer: ["zero", "one", "two", "three", "six"]
                .iter()
                .zip([0.0, 1.0, 2.0, 3.0, 6.0])
                .map(|(n, v)| float_tensor(n, v))
                .collect(),
            input: vec![value_info("x", &[None, Some(64)])],
            output: vec![value_info("y", &[None, Some(128)])],
        }),
    }
}

#[test]
fn elementwise_functions_become_tables_that_track_the_float_model() {
    use verity_core::{Tensor, TensorMap};
    use verity_engine::canonical::QOp;
    use verity_engine::{FloatModel, Interpreter};
    // Samples spread over [-8, 8], the range the calibration fixes.
    let sample = |k: usize| -> Vec<f32> {
        (0..64)
            .map(|i| ((i * 7 + k * 13) % 64) as f32 / 4.0 - 8.0)
            .collect()
    };
    let data: Vec<f32> = (0..4).flat_map(sample).collect();
    let json = serde_json::json!({"x": {"dtype": "f32", "shape": [4, 64], "data": data}});
    let calib = Calibration::from_json(json.to_string().as_bytes()).unwrap();
    use prost::Message;
    let bytes = activations().encode_to_vec();
    let q = quantize_onnx(&bytes, &calib).unwrap();
    // No new canonical operator: every function is a table lookup.
    assert!(
        q.ops
            .iter()
            .all(|op| matches!(op, QOp::Lut { .. } | QOp::Concat { .. })),
        "{:?}",
        q.ops.iter().map(std::mem::discriminant).collect::<Vec<_>>()
    );
    let limits = verity_engine::CostLimits::default();
    let float = FloatModel::load(&bytes, &limits).unwrap();
    let int8 = Interpreter::new(q);
    for k in 0..4 {
        let x = TensorMap::from([(
            "x".to_string(),
            Tensor::from_f32(vec![1, 64], &sample(k)).unwrap(),
        )]);
        let f = float.run(&x).unwrap()["y"].to_f32().unwrap();
        let i = int8.run(&x).unwrap().outputs["y"].to_f32().unwrap();
        let range = f.iter().fold(0f32, |a, v| a.max(v.abs()));
        let worst = f
            .iter()
            .zip(&i)
            .fold(0f32, |a, (f, i)| a.max((f - i).abs()));
        // A few int8 steps of the widest output (the two halves share one Concat scale).
        assert!(
            worst <= 4.0 * range / 127.0,
            "sample {k}: max error {worst} over a range of {range}"
        );
    }
}

#[test]
fn arithmetic_on_two_activations_or_non_scalar_constants_is_refused_by_name() {
    let mut m = activations();
    let graph = m.graph.as_mut().unwrap();
    graph.node[5] = node("Mul", &["flipped", "gate"], "doubled", vec![]);
    let e = lower(&m, &InputShapes::new()).unwrap_err();
    assert!(
        e.to_string().contains("Mul `doubled` of two activations"),
        "{e}"
    );
    let mut m = activations();
    let graph = m.graph.as_mut().unwrap();
    graph.initializer.push(TensorProto {
        name: "pair".into(),
        dims: vec![2],
        data_type: data_type::FLOAT,
        raw_data: [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    });
    graph.node[2] = node("Div", &["shifted", "pair"], "scaled", vec![]);
    let e = lower(&m, &InputShapes::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("Div `scaled`: a constant of shape [2]"),
        "{e}"
    );
}
