//! The receipts Merkle tree each block commits to, and a receipt's path to its root.

use rs_merkle::{Hasher, MerkleProof, MerkleTree};
use serde::{Deserialize, Serialize};
use verity_core::hash::domain;
use verity_core::Hash;

/// Inner nodes of the receipts tree: BLAKE3 in the `verity/receipts-node/v1` domain.
#[derive(Clone)]
pub struct ReceiptsHasher;

impl Hasher for ReceiptsHasher {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Hash::of(domain::RECEIPTS_NODE, data).0
    }
}

/// Merkle root over receipt ids (zero for a block that settles nothing).
pub fn receipts_root(ids: &[Hash]) -> Hash {
    let leaves: Vec<[u8; 32]> = ids.iter().map(|h| h.0).collect();
    MerkleTree::<ReceiptsHasher>::from_leaves(&leaves)
        .root()
        .map(Hash)
        .unwrap_or_default()
}

/// Proof that a receipt id is leaf `index` of `total` under a block's receipts root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptProof {
    pub index: usize,
    pub total: usize,
    pub path: Vec<Hash>,
}

impl ReceiptProof {
    pub fn new(ids: &[Hash], index: usize) -> Option<ReceiptProof> {
        if index >= ids.len() {
            return None;
        }
        let leaves: Vec<[u8; 32]> = ids.iter().map(|h| h.0).collect();
        let proof = MerkleTree::<ReceiptsHasher>::from_leaves(&leaves).proof(&[index]);
        Some(ReceiptProof {
            index,
            total: ids.len(),
            path: proof.proof_hashes().iter().map(|h| Hash(*h)).collect(),
        })
    }

    pub fn verify(&self, root: &Hash, receipt_id: &Hash) -> bool {
        if self.index >= self.total {
            return false;
        }
        let path: Vec<[u8; 32]> = self.path.iter().map(|h| h.0).collect();
        MerkleProof::<ReceiptsHasher>::new(path).verify(
            root.0,
            &[self.index],
            &[receipt_id.0],
            self.total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_proofs_verify_and_reject_tampering() {
        for n in [1usize, 2, 3, 5, 8, 13] {
            let ids: Vec<Hash> = (0..n as u8).map(|i| Hash::of("leaf", &[i])).collect();
            let root = receipts_root(&ids);
            for (i, id) in ids.iter().enumerate() {
                let p = ReceiptProof::new(&ids, i).unwrap();
                assert!(p.verify(&root, id), "n={n} i={i}");
                assert!(!p.verify(&root, &Hash::of("other", b"x")));
                assert!(!p.verify(&Hash::of("root", b"x"), id));
                if let Some(first) = p.path.first() {
                    let mut bad = p.clone();
                    bad.path[0] = Hash(first.0.map(|b| b ^ 1));
                    assert!(!bad.verify(&root, id));
                }
                if n > 1 {
                    let mut moved = p.clone();
                    moved.index = (i + 1) % n;
                    assert!(!moved.verify(&root, id), "n={n} i={i} moved");
                }
            }
            assert!(ReceiptProof::new(&ids, n).is_none());
        }
    }
}
