//! Blocks: a finalized header (crate `verity-inclusion`) and its ordered transactions.

use crate::tx::{decode_txs, encode_txs, Transaction};
use serde::{Deserialize, Serialize};
use verity_core::encode::{Decoder, Encoder};
use verity_core::hash::domain;
use verity_core::{CoreError, Hash};
pub use verity_inclusion::{receipts_root, BlockHeader, ReceiptProof, ReceiptsHasher};

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
