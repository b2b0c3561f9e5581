//! The layer-trace commitment: a binary Merkle tree (rs_merkle) over the hashes of every
//! intermediate tensor, in execution order. Disputes bisect it; proofs bind each layer to it.

use crate::hash::{domain, Hash};
use rs_merkle::{Hasher, MerkleTree};

/// Inner nodes are BLAKE3 in the `verity/trace-node/v1` domain over the two children.
#[derive(Clone)]
pub struct TraceHasher;

impl Hasher for TraceHasher {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        static KEYED: std::sync::LazyLock<blake3::Hasher> =
            std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(domain::TRACE_NODE));
        let mut h = KEYED.clone();
        h.update(data);
        *h.finalize().as_bytes()
    }
}

/// Root over the given leaves (each already a tensor hash). An empty trace has root zero.
pub fn trace_root(leaves: &[Hash]) -> Hash {
    let leaves: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    MerkleTree::<TraceHasher>::from_leaves(&leaves)
        .root()
        .map(Hash)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keyed_state_equals_fresh_derivation() {
        assert_eq!(
            TraceHasher::hash(b"abc"),
            Hash::of(domain::TRACE_NODE, b"abc").0
        );
    }

    #[test]
    fn root_depends_on_every_leaf_and_order() {
        let leaves: Vec<Hash> = (0u8..5).map(|i| Hash::of("t", &[i])).collect();
        let root = trace_root(&leaves);
        for i in 0..leaves.len() {
            let mut l = leaves.clone();
            l[i].0[0] ^= 1;
            assert_ne!(trace_root(&l), root);
        }
        let mut swapped = leaves.clone();
        swapped.swap(0, 1);
        assert_ne!(trace_root(&swapped), root);
    }
}
