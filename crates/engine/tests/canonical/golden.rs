//! Golden vectors: the canonical semantics pinned to committed values.
//!
//! Every other test checks the engine against itself (runs, kernels, threads, a round trip),
//! so a change applied uniformly (say, to the rounding of `Requant`) would pass them all. Here
//! each fixture model is quantized with its committed calibration set and run on its committed
//! input, and the model id, input hash, output hash, int8 output bytes and trace root must equal
//! `fixtures/golden/canonical.json`. Trained models rarely hit an exact rounding tie, so
//! one more model, built here by hand, runs every operator on values that do: it pins the
//! tie-breaking of every rounding rule (inputs half to even, rescales and Add half up, AvgPool
//! and Softmax half up). A deliberate change of the semantics regenerates the file with
//! `scripts/regen_golden.sh` (which sets `VERITY_REGEN_GOLDEN=1`), and the diff shows in review.

use super::{canonical, fixture};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use verity_core::tensor::hash_map;
use verity_core::{ModelId, Tensor, TensorMap};
use verity_engine::canonical::{CanonicalModel, QInput, QOp, QOutput, Requant};
use verity_engine::geometry::Window;
use verity_engine::Interpreter;

/// When set to `1`, the golden file is rewritten from the current engine instead of checked.
const REGEN_VAR: &str = "VERITY_REGEN_GOLDEN";

/// (ONNX model, calibration set, input), all committed in fixtures/.
const CASES: &[(&str, &str, &str)] = &[
    (
        "digits_mlp.onnx",
        "digits_calib_mlp.json",
        "digit_input_mlp.json",
    ),
    (
        "digits_cnn.onnx",
        "digits_calib_cnn.json",
        "digit_input_cnn.json",
    ),
    ("ops_mix.onnx", "ops_calib.json", "ops_input.json"),
];

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct GoldenFile {
    note: String,
    vectors: Vec<Golden>,
}

/// What one model does on one input, in hex.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Golden {
    /// Where the model and the input come from.
    case: String,
    /// BLAKE3 of the canonical file: pins the quantizer and the file format.
    model_id: String,
    input_hash: String,
    /// Hash of the dequantized f32 outputs (what a receipt commits to).
    output_hash: String,
    /// Each output's int8 values (two's complement bytes) before dequantization.
    int8_outputs: BTreeMap<String, String>,
    /// Merkle root over every value of the run: pins each op's arithmetic.
    trace_root: String,
}

const NOTE: &str = "Written by crates/engine/tests/canonical/golden.rs. Regenerate with \
    scripts/regen_golden.sh only when the canonical semantics change on purpose.";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/canonical.json")
}

fn hex(bytes: impl IntoIterator<Item = u8>) -> String {
    bytes.into_iter().map(|b| format!("{b:02x}")).collect()
}

fn fixture_case((model, calib, input): (&str, &str, &str)) -> Golden {
    let inputs: TensorMap = serde_json::from_slice(&fixture(input)).unwrap();
    record(
        format!("{model}, calibrated on {calib}, run on {input}"),
        canonical(model, calib),
        &inputs,
    )
}

fn record(case: String, model: CanonicalModel, inputs: &TensorMap) -> Golden {
    let model_id = ModelId::of_bytes(&model.encode()).hex();
    let interpreter = Interpreter::new(model);
    let run = interpreter.run(inputs).unwrap();
    let values = interpreter.values(inputs).unwrap();
    let int8_outputs = interpreter
        .model()
        .outputs
        .iter()
        .map(|o| {
            let bytes = values[o.value].iter().map(|&q| q as u8);
            (o.name.clone(), hex(bytes))
        })
        .collect();
    Golden {
        case,
        model_id,
        input_hash: hash_map(inputs).to_hex(),
        output_hash: hash_map(&run.outputs).to_hex(),
        int8_outputs,
        trace_root: run.trace_root.to_hex(),
    }
}

fn rq(mult: i32, shift: u8) -> Requant {
    Requant { mult, shift }
}

/// A 2x2 window over a `channels` x `size` x `size` image.
fn window2(channels: usize, size: usize, stride: usize, pad_top_left: usize) -> Window {
    Window {
        channels,
        height: size,
        width: size,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: stride,
        stride_w: stride,
        pad_top: pad_top_left,
        pad_left: pad_top_left,
        pad_bottom: 0,
        pad_right: 0,
    }
}

/// Every operator, with small multipliers and shifts so that accumulators land exactly
/// half-way between two results, on an input with halves of both parities and values out of
/// range. Its input scale is 1, so the input quantization rounds those halves too.
fn ties_case() -> Golden {
    let shapes = vec![
        vec![1, 1, 4, 4], // 0: input
        vec![1, 2, 3, 3], // 1: Conv
        vec![1, 2, 3, 3], // 2: Relu
        vec![1, 2, 2, 2], // 3: MaxPool
        vec![1, 2, 2, 2], // 4: AvgPool
        vec![1, 2, 2, 2], // 5: AvgPool counting the padding
        vec![1, 8],       // 6: Reshape
        vec![1, 3],       // 7: Dense
        vec![3],          // 8: Const
        vec![1, 3],       // 9: Add
        vec![1, 3],       // 10: Lut
        vec![9, 2],       // 11: Reshape
        vec![9, 2],       // 12: Softmax
        vec![1, 9],       // 13: Concat
    ];
    let avg_window = window2(2, 3, 2, 1);
    let ops = vec![
        QOp::Conv {
            x: 0,
            y: 1,
            out_channels: 2,
            win: window2(1, 4, 1, 0),
            w: vec![1, 1, 1, 1, 1, -1, 2, 1],
            b: vec![0, 1],
            rq: vec![rq(1, 1), rq(1, 2)],
        },
        QOp::Relu { x: 1, y: 2 },
        QOp::MaxPool {
            x: 1,
            y: 3,
            win: window2(2, 3, 1, 0),
        },
        QOp::AvgPool {
            x: 1,
            y: 4,
            win: avg_window,
            count_include_pad: false,
        },
        QOp::AvgPool {
            x: 1,
            y: 5,
            win: avg_window,
            count_include_pad: true,
        },
        QOp::Reshape { x: 4, y: 6 },
        QOp::Dense {
            x: 6,
            y: 7,
            k: 8,
            n: 3,
            w: (0..24).map(|i| (i % 5) as i8 - 2).collect(),
            b: vec![0, 1, -1],
            rq: vec![rq(1, 1), rq(3, 2), rq(1, 3)],
        },
        QOp::Const {
            y: 8,
            data: vec![1, -1, 3],
        },
        QOp::Add {
            a: 7,
            b: 8,
            y: 9,
            ma: 1,
            mb: 1,
            shift: 1,
        },
        QOp::Lut {
            x: 9,
            y: 10,
            table: (0..256)
                .map(|i| ((i * 37 + 11) % 256) as u8 as i8)
                .collect(),
        },
        QOp::Reshape { x: 2, y: 11 },
        QOp::Softmax {
            x: 11,
            y: 12,
            exp: (0..256).map(|d| (1u32 << 20) >> (d / 4).min(20)).collect(),
        },
        QOp::Concat {
            xs: vec![(7, rq(1, 1)), (10, rq(3, 1)), (9, rq(1, 2))],
            y: 13,
            axis: 1,
        },
    ];
    let output = |name: &str, value, scale| QOutput {
        name: name.into(),
        value,
        scale,
    };
    let model = CanonicalModel {
        shapes,
        inputs: vec![QInput {
            name: "x".into(),
            value: 0,
            inv_scale: 1.0,
        }],
        outputs: vec![
            output("concat", 13, 1.0),
            output("softmax", 12, 1.0 / 127.0),
            output("max_pool", 3, 0.5),
            output("avg_pool_with_pad", 5, 0.25),
        ],
        ops,
        source_ops: vec![],
    };
    model.validate().unwrap();
    let x = [
        -130.0, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 126.5, 127.5, 1000.0, 7.0, -7.0, 5.0, -3.0,
        0.25,
    ];
    let inputs = TensorMap::from([(
        "x".to_string(),
        Tensor::from_f32(vec![1, 1, 4, 4], &x).unwrap(),
    )]);
    record(
        "ties: every op on exact rounding ties (built in golden.rs)".into(),
        model,
        &inputs,
    )
}

#[test]
fn canonical_results_match_committed_vectors() {
    let actual = GoldenFile {
        note: NOTE.into(),
        vectors: CASES
            .iter()
            .map(|&case| fixture_case(case))
            .chain([ties_case()])
            .collect(),
    };
    let path = golden_path();
    if std::env::var(REGEN_VAR).as_deref() == Ok("1") {
        let json = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, json).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with scripts/regen_golden.sh",
            path.display()
        )
    });
    let expected: GoldenFile = serde_json::from_slice(&committed).unwrap();
    assert_eq!(
        expected.vectors.len(),
        actual.vectors.len(),
        "the golden file lists other cases than the test"
    );
    for (want, got) in expected.vectors.iter().zip(&actual.vectors) {
        assert_eq!(
            want,
            got,
            "canonical results for {} changed. If the semantics changed on purpose, run \
             scripts/regen_golden.sh and commit the new {}",
            got.case,
            path.display()
        );
    }
}
