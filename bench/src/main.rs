//! Times the canonical int8 engine and tract (float) on the same models and inputs.
//! Usage: verity-bench NAME MODEL.onnx CALIBRATION.json INPUT.json [NAME ...]
//! Prints one JSON object per (engine, model) with the median latency in microseconds.

use std::time::Instant;
use tract_onnx::prelude::*;
use verity_core::TensorMap;
use verity_engine::{quantize_onnx, Calibration, Interpreter};

/// Median of per-call latencies over at least `min_iters` calls and ~1.5 s, after warm-up.
fn median_us(mut f: impl FnMut()) -> (f64, usize) {
    for _ in 0..50 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 200 || start.elapsed().as_secs_f64() < 1.5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[samples.len() / 2], samples.len())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for chunk in args.chunks(4) {
        let [name, model, calib, input] = chunk else { panic!("expected NAME MODEL CALIB INPUT groups") };
        let onnx = std::fs::read(model).unwrap();
        let inputs: TensorMap = serde_json::from_slice(&std::fs::read(input).unwrap()).unwrap();
        let calib = Calibration::from_json(&std::fs::read(calib).unwrap()).unwrap();

        let canonical = Interpreter::new(quantize_onnx(&onnx, &calib).unwrap());
        let (us, n) = median_us(|| {
            std::hint::black_box(canonical.run(&inputs).unwrap());
        });
        println!("{}", serde_json::json!({"model": name, "engine": "verity-int8", "median_us": us, "iters": n}));

        let (in_name, t) = inputs.iter().next().unwrap();
        let shape = t.shape().to_vec();
        let data = t.to_f32().unwrap();
        let plan = tract_onnx::onnx()
            .model_for_path(model)
            .unwrap()
            .with_input_fact(0, f32::fact(&shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x: Tensor = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data).unwrap().into();
        let _ = in_name;
        let (us, n) = median_us(|| {
            std::hint::black_box(plan.run(tvec!(x.clone().into())).unwrap());
        });
        println!("{}", serde_json::json!({"model": name, "engine": "tract-f32", "median_us": us, "iters": n}));
    }
}
