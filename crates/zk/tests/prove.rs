//! Completeness on the fixture models and soundness against tampering: every part of the
//! statement, the model and the proof bytes is altered in turn and must be rejected.

use std::path::PathBuf;
use std::sync::OnceLock;

use verity_core::{ModelId, Tensor, TensorMap};
use verity_engine::canonical::{CanonicalModel, QOp};
use verity_engine::{quantize_onnx, Calibration, Interpreter};
use verity_zk::{Statement, ZkError, ZkModel};

#[path = "prove/golden.rs"]
mod golden;
#[path = "prove/hostile.rs"]
mod hostile;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// The canonical model file of a fixture, quantized with its calibration set.
fn canonical(onnx: &str, calib: &str) -> Vec<u8> {
    let onnx = std::fs::read(fixture(onnx)).unwrap();
    let calib = Calibration::from_json(&std::fs::read(fixture(calib)).unwrap()).unwrap();
    quantize_onnx(&onnx, &calib).unwrap().encode()
}

fn mlp() -> &'static (Vec<u8>, ZkModel) {
    static MLP: OnceLock<(Vec<u8>, ZkModel)> = OnceLock::new();
    MLP.get_or_init(|| {
        let bytes = canonical("digits_mlp.onnx", "digits_calib_mlp.json");
        let zk = ZkModel::setup(&bytes).unwrap();
        (bytes, zk)
    })
}

/// Test samples 0..n of the held-out digits, shaped for the model's input.
fn digits(n: usize, shape: &[usize]) -> Vec<TensorMap> {
    let test: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("digits_test.json")).unwrap()).unwrap();
    let x: Vec<f32> = serde_json::from_value(test["x"].clone()).unwrap();
    (0..n)
        .map(|i| {
            let t = Tensor::from_f32(shape.to_vec(), &x[i * 64..(i + 1) * 64]).unwrap();
            TensorMap::from([("input".to_string(), t)])
        })
        .collect()
}

/// Proves each input, checks the proven outputs are the engine's and the proof verifies.
fn complete(model: &[u8], zk: &ZkModel, inputs: &[TensorMap]) {
    let engine = Interpreter::new(CanonicalModel::decode(model).unwrap());
    for input in inputs {
        let (outputs, statement, proof) = zk.prove(input).unwrap();
        assert_eq!(outputs, engine.run(input).unwrap().outputs);
        assert_eq!(zk.statement(input, &outputs).unwrap(), statement);
        zk.verify(&statement, &proof).unwrap();
    }
}

#[test]
fn digits_mlp_is_complete() {
    let (bytes, zk) = mlp();
    complete(bytes, zk, &digits(4, &[1, 64]));
}

#[test]
fn digits_cnn_is_complete() {
    let bytes = canonical("digits_cnn.onnx", "digits_calib_cnn.json");
    let zk = ZkModel::setup(&bytes).unwrap();
    let kinds: Vec<String> = zk.tables().iter().map(|(k, _)| format!("{k:?}")).collect();
    assert!(kinds.iter().any(|k| k.starts_with("MaxPool")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.starts_with("AvgPool")), "{kinds:?}");
    complete(&bytes, &zk, &digits(3, &[1, 1, 8, 8]));
}

/// The op-coverage fixture up to its Softmax (which the circuit refuses): Gemm, MatMul + bias,
/// Sigmoid and Tanh tables, Add, Relu, Concat, Reshape; the Softmax's input becomes the output.
#[test]
fn ops_mix_without_its_softmax_is_complete() {
    let mut model = CanonicalModel::decode(&canonical("ops_mix.onnx", "ops_calib.json")).unwrap();
    let Some(QOp::Softmax { x, .. }) = model.ops.pop() else {
        panic!("ops_mix should end with its Softmax")
    };
    model.outputs[0].value = x;
    model.outputs[0].scale = 1.0;
    let names: Vec<&str> = model.ops.iter().map(QOp::name).collect();
    for op in ["Dense", "Lut", "Add", "Relu", "Concat"] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
    let bytes = model.encode();
    let zk = ZkModel::setup(&bytes).unwrap();
    let inputs: TensorMap =
        serde_json::from_slice(&std::fs::read(fixture("ops_input.json")).unwrap()).unwrap();
    let mut more = inputs.clone();
    let t = more.get_mut("input").unwrap();
    let v: Vec<f32> = t.to_f32().unwrap().iter().map(|x| -0.7 * x + 0.1).collect();
    *t = Tensor::from_f32(t.shape().to_vec(), &v).unwrap();
    complete(&bytes, &zk, &[inputs, more]);
}

#[test]
fn unsupported_operators_are_refused_by_name() {
    let bytes = canonical("ops_mix.onnx", "ops_calib.json");
    match ZkModel::setup(&bytes) {
        Err(ZkError::Unsupported { op, .. }) => assert_eq!(op, "Softmax"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
}

fn rejected(zk: &ZkModel, statement: &Statement, proof: &[u8]) -> bool {
    zk.verify(statement, proof).is_err()
}

#[test]
fn altered_statements_are_rejected() {
    let (_, zk) = mlp();
    let input = &digits(1, &[1, 64])[0];
    let (_, statement, proof) = zk.prove(input).unwrap();
    zk.verify(&statement, &proof).unwrap();

    for i in [0, 5, 9] {
        let mut s = statement.clone();
        s.output[i] = s.output[i].wrapping_add(1);
        assert!(rejected(zk, &s, &proof), "output {i} altered");
    }
    for i in [0, 20, 63] {
        let mut s = statement.clone();
        s.input[i] = s.input[i].wrapping_sub(3);
        assert!(rejected(zk, &s, &proof), "input {i} altered");
    }
    // The proof of another input does not prove this one.
    let (_, other, other_proof) = zk.prove(&digits(2, &[1, 64])[1]).unwrap();
    assert_ne!(other.input, statement.input);
    assert!(rejected(zk, &statement, &other_proof));
    // A truncated or empty proof is refused, not panicked on.
    assert!(matches!(
        zk.verify(&statement, &proof[..proof.len() / 2]),
        Err(ZkError::Malformed(_))
    ));
    assert!(rejected(zk, &statement, &[]));
    // One proof has one encoding: bytes after it are refused.
    let mut longer = proof.clone();
    longer.push(0);
    assert!(matches!(
        zk.verify(&statement, &longer),
        Err(ZkError::Malformed(_))
    ));
}

#[test]
fn flipped_proof_bytes_are_rejected() {
    let (_, zk) = mlp();
    let (_, statement, proof) = zk.prove(&digits(1, &[1, 64])[0]).unwrap();
    let step = proof.len() / 40;
    for at in (0..proof.len()).step_by(step) {
        let mut bad = proof.clone();
        bad[at] ^= 0x01;
        assert!(rejected(zk, &statement, &bad), "byte {at} flipped");
    }
}

/// The same file with the first Dense layer's first weight changed.
fn altered_weights(bytes: &[u8]) -> Vec<u8> {
    let mut model = CanonicalModel::decode(bytes).unwrap();
    let w = model
        .ops
        .iter_mut()
        .find_map(|op| match op {
            QOp::Dense { w, .. } => Some(w),
            _ => None,
        })
        .unwrap();
    w[0] = w[0].wrapping_add(1);
    model.encode()
}

#[test]
fn proofs_bind_the_model() {
    let (bytes, zk) = mlp();
    let input = &digits(1, &[1, 64])[0];
    let (_, statement, proof) = zk.prove(input).unwrap();

    // A model with one weight changed has another commitment; its proofs prove nothing
    // about the original model, even for the same input and output.
    let altered = altered_weights(bytes);
    let zk_altered = ZkModel::setup(&altered).unwrap();
    assert_ne!(zk_altered.commitment(), zk.commitment());
    let (_, altered_statement, altered_proof) = zk_altered.prove(input).unwrap();
    let claimed = Statement {
        model_id: zk.model_id(),
        ..altered_statement.clone()
    };
    assert!(rejected(zk, &claimed, &altered_proof));

    // Replaying the proof under the other model's id, with either key, is rejected.
    let replay = Statement {
        model_id: ModelId::of_bytes(&altered),
        ..statement.clone()
    };
    assert!(rejected(&zk_altered, &replay, &proof));
    assert!(matches!(
        zk.verify(&replay, &proof),
        Err(ZkError::Statement(_))
    ));
    zk_altered
        .verify(&altered_statement, &altered_proof)
        .unwrap();
}

#[test]
fn the_commitment_is_derived_from_the_file_alone() {
    let (bytes, zk) = mlp();
    let again = ZkModel::setup(bytes).unwrap();
    assert_eq!(again.commitment(), zk.commitment());
    assert!(!zk.commitment().is_empty());
}

#[test]
fn outputs_that_are_not_int8_multiples_of_the_scale_are_refused() {
    let (_, zk) = mlp();
    let input = &digits(1, &[1, 64])[0];
    let (mut outputs, _, _) = zk.prove(input).unwrap();
    let t = outputs.values_mut().next().unwrap();
    let mut v = t.to_f32().unwrap();
    v[0] += 1e-3;
    *t = Tensor::from_f32(t.shape().to_vec(), &v).unwrap();
    assert!(matches!(
        zk.statement(input, &outputs),
        Err(ZkError::Statement(_))
    ));
}
