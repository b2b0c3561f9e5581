//! Hostile models: setup refuses them before allocating, it never aborts the process
//! (security review finding 1: a 271-byte MaxPool model made `ZkModel::setup` abort on a
//! 16 TiB allocation, taking the node down with it).

use verity_core::testing::in_capped_child;
use verity_engine::testing::pool_then_relus;
use verity_zk::{ZkError, ZkModel};

/// A [1,1,h,h] input through one square MaxPool, as a canonical file.
fn max_pool(h: usize, kernel: usize, stride: usize, pad: usize) -> Vec<u8> {
    pool_then_relus(h, kernel, stride, pad, 0)
}

#[test]
fn a_271_byte_max_pool_model_is_refused_not_an_abort() {
    if in_capped_child("hostile::a_271_byte_max_pool_model_is_refused_not_an_abort") {
        return;
    }
    let k = 1 << 20;
    let bytes = max_pool(1, k, k, k - 1);
    assert!(bytes.len() < 400);
    assert!(ZkModel::setup(&bytes).is_err());
}

#[test]
fn max_pool_windows_are_capped_like_average_pool_windows() {
    if in_capped_child("hostile::max_pool_windows_are_capped_like_average_pool_windows") {
        return;
    }
    // Within the engine's limits (4,096 reads), but one pool row per window of 4,096 values.
    match ZkModel::setup(&max_pool(64, 64, 64, 0)) {
        Err(ZkError::Unsupported { op, why }) => {
            assert_eq!(op, "MaxPool");
            assert!(why.contains("2048"), "{why}");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    // A 2x2 window is fine.
    ZkModel::setup(&max_pool(4, 2, 2, 0)).unwrap();
}
