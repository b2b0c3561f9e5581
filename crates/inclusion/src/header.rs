//! The block header validators finalize: its digest is what a finalization certificate signs.

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
