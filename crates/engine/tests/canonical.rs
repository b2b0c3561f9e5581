//! The canonical engine on the committed fixtures: accuracy against float, determinism across
//! runs, kernels and threads, rejection of malformed files, and golden vectors that pin the
//! results to committed values.

// The directory keeps the module out of cargo's test autodiscovery (one binary, not two).
#[path = "canonical/cost.rs"]
mod cost;
#[path = "canonical/fold.rs"]
mod fold;
#[path = "canonical/golden.rs"]
mod golden;

use std::path::PathBuf;
use verity_core::{Tensor, TensorMap};
use verity_engine::canonical::CanonicalModel;
use verity_engine::float_engine::FloatModel;
use verity_engine::kernels::{detect_isa, Isa};
use verity_engine::{inspect, quantize_onnx, Calibration, EngineError, Interpreter};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn canonical(model: &str, calib: &str) -> CanonicalModel {
    let calib = Calibration::from_json(&fixture(calib)).unwrap();
    quantize_onnx(&fixture(model), &calib).unwrap()
}

struct Digits {
    x: Vec<f32>,
    y: Vec<usize>,
}

fn digits() -> Digits {
    let v: serde_json::Value = serde_json::from_slice(&fixture("digits_test.json")).unwrap();
    let x = v["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let y = v["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    Digits { x, y }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn input(shape: &[usize], data: &[f32]) -> TensorMap {
    TensorMap::from([(
        "input".to_string(),
        Tensor::from_f32(shape.to_vec(), data).unwrap(),
    )])
}

/// (float accuracy, int8 accuracy) on the held-out split.
fn accuracies(model: &str, calib: &str, shape: &[usize]) -> (f64, f64) {
    let d = digits();
    let float = FloatModel::load(&fixture(model), &Default::default()).unwrap();
    let int8 = Interpreter::new(canonical(model, calib));
    let (mut f_ok, mut q_ok) = (0, 0);
    for (i, &label) in d.y.iter().enumerate() {
        let inp = input(shape, &d.x[i * 64..(i + 1) * 64]);
        let f = float.run(&inp).unwrap()["logits"].to_f32().unwrap();
        let q = int8.run(&inp).unwrap().outputs["logits"].to_f32().unwrap();
        f_ok += (argmax(&f) == label) as usize;
        q_ok += (argmax(&q) == label) as usize;
    }
    let n = d.y.len() as f64;
    (100.0 * f_ok as f64 / n, 100.0 * q_ok as f64 / n)
}

#[test]
fn int8_mlp_keeps_accuracy_within_one_point() {
    let (f, q) = accuracies("digits_mlp.onnx", "digits_calib_mlp.json", &[1, 64]);
    eprintln!("digits MLP: float {f:.2}%, int8 {q:.2}%");
    assert!(f > 90.0, "float accuracy {f}");
    assert!(q >= f - 1.0, "int8 {q}% vs float {f}%");
}

#[test]
fn int8_cnn_keeps_accuracy_within_one_point() {
    let (f, q) = accuracies("digits_cnn.onnx", "digits_calib_cnn.json", &[1, 1, 8, 8]);
    eprintln!("digits CNN: float {f:.2}%, int8 {q:.2}%");
    assert!(f > 90.0, "float accuracy {f}");
    assert!(q >= f - 1.0, "int8 {q}% vs float {f}%");
}

#[test]
fn ops_mix_tracks_float_outputs() {
    let m = canonical("ops_mix.onnx", "ops_calib.json");
    let ops: Vec<&str> = m.ops.iter().map(|o| o.name()).collect();
    for want in [
        "Dense", "Lut", "Add", "Concat", "Softmax", "Relu", "Reshape",
    ] {
        assert!(ops.contains(&want), "{want} missing from {ops:?}");
    }
    let inp: TensorMap = serde_json::from_slice(&fixture("ops_input.json")).unwrap();
    let q = Interpreter::new(m).run(&inp).unwrap().outputs["probs"]
        .to_f32()
        .unwrap();
    let f = FloatModel::load(&fixture("ops_mix.onnx"), &Default::default())
        .unwrap()
        .run(&inp)
        .unwrap()["probs"]
        .to_f32()
        .unwrap();
    let worst = q
        .iter()
        .zip(&f)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.05, "int8 {q:?} vs float {f:?}");
}

#[test]
fn quantization_is_deterministic_and_file_round_trips() {
    let a = canonical("digits_cnn.onnx", "digits_calib_cnn.json").encode();
    let b = canonical("digits_cnn.onnx", "digits_calib_cnn.json").encode();
    assert_eq!(a, b);
    assert_eq!(CanonicalModel::decode(&a).unwrap().encode(), a);
}

#[test]
fn output_and_trace_identical_across_runs_kernels_and_threads() {
    for (model, calib, shape) in [
        ("digits_mlp.onnx", "digits_calib_mlp.json", vec![1, 64]),
        ("digits_cnn.onnx", "digits_calib_cnn.json", vec![1, 1, 8, 8]),
    ] {
        let m = canonical(model, calib);
        let d = digits();
        for i in [0, 7, 99] {
            let inp = input(&shape, &d.x[i * 64..(i + 1) * 64]);
            let reference = Interpreter::with_options(m.clone(), Isa::Portable, false)
                .run(&inp)
                .unwrap();
            let mut variants = vec![
                (Isa::Portable, true),
                (detect_isa(), false),
                (detect_isa(), true),
            ];
            if std::arch::is_x86_feature_detected!("avx2") {
                variants.extend([(Isa::Avx2, false), (Isa::Avx2, true)]);
            }
            for (isa, threads) in variants {
                for _ in 0..3 {
                    let got = Interpreter::with_options(m.clone(), isa, threads)
                        .run(&inp)
                        .unwrap();
                    assert_eq!(got.outputs, reference.outputs);
                    assert_eq!(got.trace, reference.trace);
                    assert_eq!(got.trace_root, reference.trace_root);
                }
            }
        }
    }
}

#[test]
fn trace_changes_when_the_input_changes() {
    let m = Interpreter::new(canonical("digits_mlp.onnx", "digits_calib_mlp.json"));
    let d = digits();
    let a = m.run(&input(&[1, 64], &d.x[..64])).unwrap();
    let mut x = d.x[..64].to_vec();
    x[10] += 0.5;
    let b = m.run(&input(&[1, 64], &x)).unwrap();
    assert_ne!(a.trace_root, b.trace_root);
    assert_ne!(a.trace[0], b.trace[0]);
}

#[test]
fn wrong_inputs_are_named_errors() {
    let m = Interpreter::new(canonical("digits_mlp.onnx", "digits_calib_mlp.json"));
    let bad_shape = input(&[1, 63], &[0.0; 63]);
    let e = m.run(&bad_shape).err().unwrap().to_string();
    assert!(e.contains("[1, 64]"), "{e}");
    let mut extra = input(&[1, 64], &[0.0; 64]);
    extra.insert("other".into(), Tensor::from_f32(vec![1], &[0.0]).unwrap());
    assert!(matches!(
        m.run(&extra),
        Err(EngineError::UnknownInput { .. })
    ));
    assert!(matches!(
        m.run(&TensorMap::new()),
        Err(EngineError::MissingInput(_))
    ));
}

#[test]
fn malformed_canonical_files_are_rejected_without_panicking() {
    let bytes = canonical("digits_cnn.onnx", "digits_calib_cnn.json").encode();
    for cut in (0..bytes.len()).step_by(97) {
        assert!(
            CanonicalModel::decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    // Flip bytes across the file: each result is either a clean error or a valid model.
    let mut accepted = 0;
    for pos in (8..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[pos] ^= 0xA5;
        if let Ok(m) = CanonicalModel::decode(&b) {
            accepted += 1;
            let _ = Interpreter::new(m).run(&input(&[1, 1, 8, 8], &[0.5; 64]));
        }
    }
    eprintln!("{accepted} corrupted variants were still structurally valid (weight bytes)");
}

#[test]
fn inspect_describes_models_and_refuses_garbage() {
    let i = inspect(&fixture("digits_cnn.onnx")).unwrap();
    assert_eq!(i.inputs[0].name, "input");
    assert!(i.operators.contains(&"BatchNormalization".to_string()));
    assert!(i.canonical.is_ok());
    assert!(inspect(b"definitely not a model").is_err());
    assert!(inspect(&[]).is_err());
    let onnx = fixture("digits_mlp.onnx");
    assert!(
        inspect(&onnx[..onnx.len() / 2]).is_err(),
        "truncated ONNX must be rejected"
    );
}

#[test]
fn corrupted_onnx_files_never_panic() {
    // Truncations and byte flips across the whole file: inspect, lower and quantize must
    // return (Ok or a clean error), never panic or overflow.
    for (name, calib) in [
        ("digits_cnn.onnx", "digits_calib_cnn.json"),
        ("ops_mix.onnx", "ops_calib.json"),
    ] {
        // Two calibration samples are enough to exercise every code path.
        let full = Calibration::from_json(&fixture(calib)).unwrap();
        let t = &full.tensors["input"];
        let per: usize = t.shape()[1..].iter().product();
        let mut shape = t.shape().to_vec();
        shape[0] = 2;
        let small = Tensor::from_f32(shape, &t.to_f32().unwrap()[..2 * per]).unwrap();
        let json = serde_json::to_vec(&TensorMap::from([("input".to_string(), small)])).unwrap();
        let calib = Calibration::from_json(&json).unwrap();
        let bytes = fixture(name);
        let mut variants: Vec<Vec<u8>> = (0..bytes.len())
            .step_by(61)
            .map(|n| bytes[..n].to_vec())
            .collect();
        for pos in (0..bytes.len()).step_by(11) {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[pos] ^= flip;
                variants.push(b);
            }
        }
        for v in &variants {
            if inspect(v).is_ok() {
                let _ = quantize_onnx(v, &calib);
            }
        }
    }
}

#[test]
fn a_concat_without_inputs_is_an_error_not_a_panic() {
    let mut model = verity_engine::onnx::decode_onnx(&fixture("digits_mlp.onnx")).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.node.push(verity_engine::proto::NodeProto {
        op_type: "Concat".into(),
        name: "empty".into(),
        output: vec!["nothing".into()],
        ..Default::default()
    });
    let e = verity_engine::lower::lower(&model, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("no inputs"), "{e}");
}
