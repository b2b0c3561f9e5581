//! One model, one process: quantize, set up, prove and verify, then print one JSON line.
//! Usage: verity-zk-bench NAME MODEL.onnx CALIB.json INPUT.json [RUNS]

use std::time::Instant;

use verity_core::TensorMap;
use verity_engine::{quantize_onnx, Calibration};
use verity_zk::ZkModel;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, onnx, calib, input, rest @ ..] = args.as_slice() else {
        panic!("usage: verity-zk-bench NAME MODEL.onnx CALIB.json INPUT.json [RUNS]");
    };
    let runs: usize = rest.first().map_or(3, |r| r.parse().expect("RUNS"));
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let t = Instant::now();
    let calib = Calibration::from_json(&read(calib)).expect("calibration");
    let model = quantize_onnx(&read(onnx), &calib).expect("quantize").encode();
    let quantize_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let zk = ZkModel::setup(&model).expect("setup");
    let setup_s = t.elapsed().as_secs_f64();
    let input: TensorMap = serde_json::from_slice(&read(input)).expect("input");
    let (mut prove, mut verify) = (Vec::new(), Vec::new());
    let mut proof_bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (_, statement, proof) = zk.prove(&input).expect("prove");
        prove.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        zk.verify(&statement, &proof).expect("verify");
        verify.push(t.elapsed().as_secs_f64());
        proof_bytes = proof.len();
    }
    let tables: Vec<String> = zk
        .tables()
        .iter()
        .map(|(k, h)| format!("{k:?}:{h}"))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "system": "verity", "model": name, "quantize_s": quantize_s, "setup_s": setup_s,
            "prove_s": median(prove), "verify_s": median(verify), "proof_bytes": proof_bytes,
            "runs": runs, "tables": tables,
        })
    );
}
