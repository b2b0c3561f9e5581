//! Completeness on the fixture models and soundness against tampering.

use std::path::PathBuf;
use std::time::Instant;

use verity_core::TensorMap;
use verity_engine::{quantize_onnx, Calibration};
use verity_zk::ZkModel;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name)
}

fn load_tensors(name: &str) -> TensorMap {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

/// The canonical model of a fixture, quantized with its calibration set.
fn canonical(onnx: &str, calib: &str) -> Vec<u8> {
    let onnx = std::fs::read(fixture(onnx)).unwrap();
    let calib = Calibration::from_json(&std::fs::read(fixture(calib)).unwrap()).unwrap();
    quantize_onnx(&onnx, &calib).unwrap().encode()
}

#[test]
fn digits_mlp_proves_and_verifies() {
    let model = canonical("digits_mlp.onnx", "digits_calib_mlp.json");
    let t = Instant::now();
    let zk = ZkModel::setup(&model).unwrap();
    eprintln!("setup {:?} tables {:?}", t.elapsed(), zk.tables());
    let input = load_tensors("digit_input_mlp.json");
    let t = Instant::now();
    let (outputs, statement, proof) = zk.prove(&input).unwrap();
    eprintln!("prove {:?}, {} bytes", t.elapsed(), proof.len());
    let t = Instant::now();
    zk.verify(&statement, &proof).unwrap();
    eprintln!("verify {:?}", t.elapsed());
    assert_eq!(zk.statement(&input, &outputs).unwrap(), statement);
}
