//! Times the canonical int8 engine, tract (float) and onnxruntime (float, through its C API
//! from the PyPI wheel's libonnxruntime, path in ORT_DYLIB) on the same models and inputs.
//! Usage: verity-bench NAME MODEL.onnx CALIBRATION.json INPUT.json [NAME ...]
//!
//! The engines are interleaved: 20 rounds, each giving every engine ~50 ms of back-to-back
//! calls, so machine noise (this is a shared 2-core VM) hits all of them alike. Prints one JSON
//! object per (model, engine) with the median per-call latency in microseconds.

use std::time::Instant;
use tract_onnx::prelude::*;
use verity_core::TensorMap;
use verity_engine::{quantize_onnx, Calibration, Interpreter};

const ROUNDS: usize = 20;

/// An engine under test: its name and one inference call.
type Engine = (&'static str, Box<dyn FnMut()>);
const ROUND_SECONDS: f64 = 0.05;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ort_env = std::env::var("ORT_DYLIB")
        .ok()
        .map(|lib| ort::init_from(lib).unwrap().build().unwrap());
    for chunk in args.chunks(4) {
        let [name, model, calib, input] = chunk else {
            panic!("expected NAME MODEL CALIB INPUT groups")
        };
        let onnx = std::fs::read(model).unwrap();
        let inputs: TensorMap = serde_json::from_slice(&std::fs::read(input).unwrap()).unwrap();
        let calib = Calibration::from_json(&std::fs::read(calib).unwrap()).unwrap();
        let t = inputs.values().next().unwrap();
        let shape = t.shape().to_vec();
        let data = t.to_f32().unwrap();

        let mut engines: Vec<Engine> = Vec::new();
        let canonical = Interpreter::new(quantize_onnx(&onnx, &calib).unwrap());
        let inputs2 = inputs.clone();
        engines.push((
            "verity-int8",
            Box::new(move || {
                std::hint::black_box(canonical.run(&inputs2).unwrap());
            }),
        ));
        let plan = tract_onnx::onnx()
            .model_for_path(model)
            .unwrap()
            .with_input_fact(0, f32::fact(&shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x: Tensor = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data.clone())
            .unwrap()
            .into();
        engines.push((
            "tract-f32",
            Box::new(move || {
                std::hint::black_box(plan.run(tvec!(x.clone().into())).unwrap());
            }),
        ));
        // onnxruntime with one intra-op thread joins the interleaved rounds (its default pool
        // spins between calls and would slow whichever engine runs next); the default
        // configuration is measured on its own afterwards.
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let ort_run = |threads: Option<usize>| -> Box<dyn FnMut()> {
            let env = ort_env.as_ref().expect("ORT_DYLIB");
            let mut builder = ort::session::Session::builder(env).unwrap();
            if let Some(t) = threads {
                builder = builder.with_intra_threads(t).unwrap();
            }
            let mut session = builder.commit_from_file(model).unwrap();
            let input = ort::value::Tensor::from_array((dims.clone(), data.clone())).unwrap();
            Box::new(move || {
                std::hint::black_box(session.run(ort::inputs![&input]).unwrap());
            })
        };
        if ort_env.is_some() {
            engines.push(("onnxruntime-capi-f32-1thread", ort_run(Some(1))));
        }

        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
        for (_, f) in engines.iter_mut() {
            for _ in 0..50 {
                f();
            }
        }
        for _ in 0..ROUNDS {
            for ((_, f), s) in engines.iter_mut().zip(samples.iter_mut()) {
                let start = Instant::now();
                while start.elapsed().as_secs_f64() < ROUND_SECONDS {
                    let t = Instant::now();
                    f();
                    s.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        if ort_env.is_some() {
            let mut f = ort_run(None);
            let mut s = Vec::new();
            for _ in 0..50 {
                f();
            }
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < ROUND_SECONDS * ROUNDS as f64 {
                let t = Instant::now();
                f();
                s.push(t.elapsed().as_secs_f64() * 1e6);
            }
            engines.push(("onnxruntime-capi-f32-default", f));
            samples.push(s);
        }
        for ((engine, _), mut s) in engines.into_iter().zip(samples) {
            s.sort_by(|a, b| a.total_cmp(b));
            let median = s[s.len() / 2];
            println!(
                "{}",
                serde_json::json!({"model": name, "engine": engine, "median_us": median, "iters": s.len()})
            );
        }
    }
}
