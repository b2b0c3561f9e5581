//! Admission by cost: models whose inference would hold unbounded memory or do unbounded work
//! are refused when decoded, before anything runs (security review findings 1 and 2).

use verity_engine::canonical::{CanonicalModel, MAX_VALUE_BYTES, MAX_WORK};
use verity_engine::testing::{pool_then_relus, relu_chain};

fn refusal(bytes: &[u8]) -> String {
    CanonicalModel::decode(bytes)
        .expect_err("the model was accepted")
        .to_string()
}

#[test]
fn a_window_of_two_to_the_forty_is_refused_by_its_work() {
    // 1x1 in and out: kernel 2^20 x 2^20, stride 2^20, padding 2^20 - 1 (finding 1).
    let k = 1 << 20;
    let bytes = pool_then_relus(1, k, k, k - 1, 0);
    assert!(bytes.len() < 400, "{} bytes", bytes.len());
    let why = refusal(&bytes);
    assert!(why.contains(&MAX_WORK.to_string()), "{why}");
}

#[test]
fn a_tiny_file_that_amplifies_memory_is_refused_by_its_values() {
    // [1,1,1,1] padded into [1,1,16384,16384] (2^28 values), then 64 Relus: 16 GiB held by
    // the interpreter from a file of under 4 KB (finding 2).
    let k = 1 << 14;
    let bytes = pool_then_relus(1, k, 1, k - 1, 64);
    assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    let why = refusal(&bytes);
    assert!(why.contains(&MAX_VALUE_BYTES.to_string()), "{why}");
    // One such value alone is within the per-value cap, but not with its input beside it.
    let why = refusal(&pool_then_relus(1, k, 1, k - 1, 0));
    assert!(why.contains("bytes of values"), "{why}");
}

#[test]
fn ordinary_models_are_far_below_the_limits() {
    let small = CanonicalModel::decode(&pool_then_relus(8, 2, 2, 0, 3)).unwrap();
    let cost = small.cost();
    // The input and the pool's output are live together; after that, two 4x4 values.
    assert_eq!(cost.peak_bytes, 64 + 16);
    assert_eq!(cost.total_bytes, 64 + 4 * 16);
    assert_eq!(cost.work, 16 * 4 + 3 * 16);
}

#[test]
fn a_deep_model_is_admitted_by_its_peak_and_runs_within_it() {
    if verity_core::testing::in_capped_child(
        "cost::a_deep_model_is_admitted_by_its_peak_and_runs_within_it",
    ) {
        return;
    }
    // A 11585^2-element input (just under 2^27), then 32 Relus: 4.4 GB of values in all, but
    // never more than two of them (256 MiB) at once. The interpreter must free each value
    // after its last reader to run it under the child's 4 GiB cap.
    let side = 11585;
    let shape = vec![1, 1, side, side];
    let model = relu_chain(&shape, 32);
    let model = CanonicalModel::decode(&model.encode()).unwrap();
    let cost = model.cost();
    assert!(cost.total_bytes > 4 << 30, "{cost:?}");
    assert!(cost.peak_bytes <= MAX_VALUE_BYTES, "{cost:?}");
    let input = verity_core::Tensor::from_f32(shape.clone(), &vec![0.5; side * side]).unwrap();
    let inputs = [("x".to_string(), input)].into_iter().collect();
    let run = verity_engine::Interpreter::new(model).run(&inputs).unwrap();
    assert_eq!(run.trace.len(), 33);
    assert_eq!(run.outputs["y"].shape(), shape.as_slice());
}
