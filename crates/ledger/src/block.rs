//! Blocks, the receipts Merkle root each block commits to, and receipt inclusion proofs.

use crate::tx::{decode_txs, encode_txs, Transaction};
use rs_merkle::{Hasher, MerkleProof, MerkleTree};
use serde::{Deserialize, Serialize};
use verity_core::encode::{Decoder, Encoder};
use verity_core::hash::domain;
use verity_core::{CoreError, Hash, PublicKey};

/// What validators sign (through consensus): the header's hash is the block digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: u64,
    pub parent: Hash,
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
    /// Hash of the ordered transaction ids.
    pub txs_root: Hash,
    /// Merkle root over the ids of the receipts this block settles, in order.
    pub receipts_root: Hash,
    /// State root after applying the block.
    pub state_root: Hash,
}

impl BlockHeader {
    pub fn encode_into(&self, e: &mut Encoder) {
        e.u64(self.height)
            .fixed32(&self.parent.0)
            .u64(self.timestamp_ms)
            .fixed32(&self.proposer.0)
            .fixed32(&self.txs_root.0)
            .fixed32(&self.receipts_root.0)
            .fixed32(&self.state_root.0);
    }

    pub fn decode_from(d: &mut Decoder<'_>) -> Result<BlockHeader, CoreError> {
        Ok(BlockHeader {
            height: d.u64()?,
            parent: Hash(d.fixed32()?),
            timestamp_ms: d.u64()?,
            proposer: PublicKey(d.fixed32()?),
            txs_root: Hash(d.fixed32()?),
            receipts_root: Hash(d.fixed32()?),
            state_root: Hash(d.fixed32()?),
        })
    }

    /// The block digest consensus finalizes.
    pub fn digest(&self) -> Hash {
        let mut e = Encoder::new();
        self.encode_into(&mut e);
        Hash::of(domain::BLOCK, &e.finish())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
}

impl Block {
    pub fn digest(&self) -> Hash {
        self.header.digest()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.header.encode_into(&mut e);
        encode_txs(&self.txs, &mut e);
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, CoreError> {
        let mut d = Decoder::new(bytes);
        let header = BlockHeader::decode_from(&mut d)?;
        let txs = decode_txs(&mut d, usize::MAX)?;
        d.expect_end()?;
        Ok(Block { header, txs })
    }
}

/// Hash of the ordered transaction ids.
pub fn txs_root(txs: &[Transaction]) -> Hash {
    let mut e = Encoder::new();
    e.u64(txs.len() as u64);
    for tx in txs {
        e.fixed32(&tx.id().0);
    }
    Hash::of(domain::TX, &e.finish())
}

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
