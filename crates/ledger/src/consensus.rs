//! Wiring the ledger to Commonware's BFT consensus (simplex, via its `marshal` block layer).
//!
//! Consensus orders block digests; marshal disseminates full blocks, backfills the ones a
//! validator missed (e.g. while it was down) and delivers finalized blocks in height order.
//! This module supplies the two things they need from Verity: the block type ([`ChainBlock`],
//! whose consensus digest *is* the ledger header digest) and the application ([`LedgerApp`]),
//! which builds and verifies blocks by running the ledger state machine on their parent state.

use crate::block::Block;
pub use crate::mempool::{CheckedTx, Mempool, SubmitError};
use crate::state::{Genesis, LedgerState};
use crate::tx::{Action, Transaction};
use commonware_actor::Feedback;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, Write};
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::marshal::Update;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::types::Height;
use commonware_consensus::{Application, Heightable, Reporter};
use commonware_cryptography::{ed25519, Digested, Digestible};
use commonware_runtime::Clock;
use commonware_utils::acknowledgement::Exact;
use commonware_utils::Acknowledgement;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use verity_core::{Hash, PublicKey};

/// Largest encoded block a validator accepts from a peer.
pub const MAX_BLOCK_BYTES: usize = 8 << 20;

/// How long (in 10 ms steps) a leader with an empty pool waits before proposing.
const EMPTY_BLOCK_WAIT_STEPS: u32 = 25;

pub use verity_inclusion::{from_digest, to_digest, Digest};

/// A ledger block as Commonware sees it. The encoding is computed once: Commonware asks for
/// the size and the bytes separately, and every gossip of the block needs them.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainBlock {
    block: Block,
    encoded: Arc<Vec<u8>>,
}

impl ChainBlock {
    pub fn new(block: Block) -> ChainBlock {
        let encoded = Arc::new(block.encode());
        ChainBlock { block, encoded }
    }

    pub fn block(&self) -> &Block {
        &self.block
    }
}

impl Write for ChainBlock {
    fn write(&self, writer: &mut impl bytes::BufMut) {
        writer.put_u32_le(self.encoded.len() as u32);
        writer.put_slice(&self.encoded);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        4 + self.encoded.len()
    }
}

impl Read for ChainBlock {
    /// The largest block accepted, in bytes.
    type Cfg = usize;

    fn read_cfg(reader: &mut impl Buf, max: &usize) -> Result<Self, CodecError> {
        if reader.remaining() < 4 {
            return Err(CodecError::EndOfBuffer);
        }
        let len = reader.get_u32_le() as usize;
        if len > *max || reader.remaining() < len {
            return Err(CodecError::Invalid("ChainBlock", "length"));
        }
        let mut bytes = vec![0u8; len];
        reader.copy_to_slice(&mut bytes);
        let block =
            Block::decode(&bytes).map_err(|_| CodecError::Invalid("ChainBlock", "encoding"))?;
        Ok(ChainBlock {
            block,
            encoded: Arc::new(bytes),
        })
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;
    fn digest(&self) -> Digest {
        to_digest(&self.block.digest())
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.block.header.height)
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> Digest {
        to_digest(&self.block.header.parent)
    }
}

impl commonware_consensus::BoundedBlock for ChainBlock {
    fn max_encode_size(cfg: &usize) -> usize {
        4 + cfg
    }
}

/// A finalized block as this validator applied it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finalized {
    pub height: u64,
    pub digest: Hash,
    /// The validator that proposed it.
    pub proposer: PublicKey,
    pub state_root: Hash,
    /// Receipt ids settled by the block, in order (the leaves of its receipts root).
    pub receipts: Vec<Hash>,
}

/// How far ahead of a validator's clock a proposed block's time may be. Block times only move
/// forward (the state machine checks that), so without this bound one leader could set the
/// clock to `u64::MAX` for every later block.
pub const MAX_CLOCK_DRIFT_MS: u64 = 5_000;

/// Why a validator votes against a proposal before running its transactions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("the block names {claimed} as its proposer, but the view's leader is {leader}")]
    Proposer {
        claimed: PublicKey,
        leader: PublicKey,
    },
    #[error("the block's time {block_ms} is ahead of this validator's clock {now_ms}")]
    Future { block_ms: u64, now_ms: u64 },
}

/// The checks of a proposed header that depend on the view (its leader) and on the local
/// clock, so they live beside the state machine rather than in it.
pub fn check_header(
    header: &crate::block::BlockHeader,
    leader: &PublicKey,
    now_ms: u64,
) -> Result<(), HeaderError> {
    if header.proposer != *leader {
        return Err(HeaderError::Proposer {
            claimed: header.proposer,
            leader: *leader,
        });
    }
    if header.timestamp_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Err(HeaderError::Future {
            block_ms: header.timestamp_ms,
            now_ms,
        });
    }
    Ok(())
}

/// The Verity public key of a consensus key.
pub fn verity_public(key: &ed25519::PublicKey) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key.as_ref());
    PublicKey(bytes)
}

fn now_ms(runtime: &impl Clock) -> u64 {
    runtime
        .current()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// See [`LedgerApp::escrow_progress`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EscrowProgress {
    Open { height: u64 },
    Waiting,
    Refused(String),
}

/// A block's post-state and the receipts it settled. The state is shared, so handing it out
/// under the lock costs a reference count, not a copy of the whole state.
#[derive(Clone)]
struct Applied {
    state: Arc<LedgerState>,
    receipts: Vec<Hash>,
}

struct Inner {
    /// Every block this validator built or verified, by digest (pruned below the finalized
    /// height), so finalizing it does not execute it again.
    states: HashMap<Hash, Applied>,
    finalized: Arc<LedgerState>,
    log: BTreeMap<u64, Finalized>,
    mempool: Mempool,
    /// Receipt id -> height of the finalized block that settled it.
    receipt_heights: HashMap<Hash, u64>,
    /// Finalized blocks delivered ahead of the next expected height (while a restarted
    /// validator restores its history), with their unsent acknowledgements.
    pending: BTreeMap<u64, (Block, Exact)>,
}

impl Inner {
    /// Applies the next finalized block. An error means consensus finalized a block this state
    /// machine rejects, which must halt the validator rather than be skipped.
    fn apply_finalized(&mut self, b: &Block) -> Result<(), crate::state::BlockError> {
        let digest = b.digest();
        // A verified block's post-state is reusable only if it extends our finalized tip
        // (otherwise `apply_block` reports the broken chain).
        let extends_tip = b.header.parent == self.finalized.last_digest();
        let cached = extends_tip
            .then(|| self.states.get(&digest).cloned())
            .flatten();
        let Applied {
            state: next,
            receipts,
        } = match cached {
            Some(applied) => applied,
            None => {
                let mut next = (*self.finalized).clone();
                let receipts = next.apply_block(b)?;
                Applied {
                    state: Arc::new(next),
                    receipts,
                }
            }
        };
        for r in &receipts {
            self.receipt_heights.insert(*r, b.header.height);
        }
        self.log.insert(
            b.header.height,
            Finalized {
                height: b.header.height,
                digest,
                proposer: b.header.proposer,
                state_root: b.header.state_root,
                receipts: receipts.clone(),
            },
        );
        self.states.insert(
            digest,
            Applied {
                state: next.clone(),
                receipts,
            },
        );
        let included: std::collections::HashSet<Hash> = b.txs.iter().map(Transaction::id).collect();
        self.mempool.after_block(&included, &next);
        let h = next.height();
        self.states.retain(|_, a| a.state.height() >= h);
        self.finalized = next;
        Ok(())
    }

    /// Applies (and acknowledges) buffered blocks that are now next in line.
    fn drain_pending(&mut self) {
        while let Some((b, ack)) = self.pending.remove(&(self.finalized.height() + 1)) {
            if self.apply_finalized(&b).is_err() {
                return; // dropping the ack halts marshal
            }
            ack.acknowledge();
        }
    }
}

/// The ledger as a Commonware application: shared between the consensus wrapper (which asks
/// it to propose and verify) and marshal (which reports finalized blocks to it).
#[derive(Clone)]
pub struct LedgerApp {
    me: PublicKey,
    /// The chain transactions are signed for (checked before taking the lock).
    chain_id: String,
    inner: Arc<Mutex<Inner>>,
}

/// The genesis block: height 0, committing to the genesis state.
pub fn genesis_block(genesis: &Genesis) -> Result<Block, crate::TxError> {
    Ok(LedgerState::from_genesis(genesis)?.genesis_block())
}

impl LedgerApp {
    pub fn new(genesis: &Genesis, me: PublicKey) -> Result<LedgerApp, crate::TxError> {
        let state = Arc::new(LedgerState::from_genesis(genesis)?);
        let mut states = HashMap::new();
        states.insert(
            state.last_digest(),
            Applied {
                state: state.clone(),
                receipts: vec![],
            },
        );
        Ok(LedgerApp {
            me,
            chain_id: genesis.chain_id.clone(),
            inner: Arc::new(Mutex::new(Inner {
                states,
                finalized: state,
                log: BTreeMap::new(),
                receipt_heights: HashMap::new(),
                mempool: Mempool::default(),
                pending: BTreeMap::new(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later
        // readers rely on, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-applies blocks finalized before a restart (read back from marshal's archive, heights
    /// 1..=n in order), then any newer blocks marshal delivered meanwhile.
    pub fn restore(&self, blocks: Vec<Block>) -> Result<(), crate::state::BlockError> {
        let mut inner = self.lock();
        for b in &blocks {
            if b.header.height == inner.finalized.height() + 1 {
                inner.apply_finalized(b)?;
            }
        }
        inner.drain_pending();
        Ok(())
    }

    /// Queues a transaction for the next block this validator proposes (see
    /// [`Mempool::insert`] for what is refused).
    pub fn submit(&self, tx: Transaction) -> Result<(), SubmitError> {
        // The signature is checked before the lock is taken: a flood of badly signed
        // transactions must not starve proposals and finalization of the ledger.
        let tx = CheckedTx::check(tx, &self.chain_id)?;
        let mut inner = self.lock();
        let Inner {
            mempool, finalized, ..
        } = &mut *inner;
        mempool.insert(tx, finalized)
    }

    /// The nonce the sender's next nonce-ordered transaction should carry.
    pub fn next_nonce(&self, sender: &PublicKey) -> u64 {
        let inner = self.lock();
        inner
            .mempool
            .next_nonce(sender, inner.finalized.nonce(sender))
    }

    /// Where a submitted escrow (`OpenRequest`) stands: open on the finalized ledger (with the
    /// height of the block that opened it), refused (it can never apply), or still waiting.
    pub fn escrow_progress(&self, escrow: &Transaction) -> EscrowProgress {
        let Action::OpenRequest { request, .. } = &escrow.action else {
            return EscrowProgress::Refused("not an OpenRequest".into());
        };
        let inner = self.lock();
        let s = &inner.finalized;
        if let Some(e) = s.escrow(request) {
            return match e.client == escrow.sender {
                true => EscrowProgress::Open {
                    height: e.opened_at,
                },
                false => EscrowProgress::Refused("another client opened this request".into()),
            };
        }
        if s.closed(request).is_some() {
            return EscrowProgress::Refused("the request is already closed".into());
        }
        // What the escrow would cost can no longer be paid from the finalized balance (another
        // escrow or a transfer of the client's got there first): it will never apply.
        let fee = match &escrow.action {
            Action::OpenRequest {
                model,
                listing,
                mode,
                ..
            } => s.fee(listing, model, *mode),
            _ => None,
        };
        match fee {
            Some(fee) if s.balance(&escrow.sender) >= fee => {}
            Some(fee) => {
                return EscrowProgress::Refused(format!(
                    "the client's balance {} no longer covers the fee {fee}",
                    s.balance(&escrow.sender)
                ))
            }
            None => return EscrowProgress::Refused("no such listing of the model".into()),
        }
        // Not in this pool is no refusal: a block that is proposed but not yet finalized may
        // hold it (proposals drop what their parent already includes).
        EscrowProgress::Waiting
    }

    /// The sender's finalized balance minus what its waiting transactions would spend.
    pub fn spendable(&self, sender: &PublicKey) -> u64 {
        let inner = self.lock();
        inner
            .finalized
            .balance(sender)
            .saturating_sub(inner.mempool.pending_spend(sender, &inner.finalized))
    }

    /// The height of the finalized block that settled `receipt`.
    pub fn receipt_height(&self, receipt: &Hash) -> Option<u64> {
        self.lock().receipt_heights.get(receipt).copied()
    }

    /// Reads the finalized state without copying it.
    pub fn read<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> T {
        f(&self.lock().finalized)
    }

    /// The state after the last finalized block.
    pub fn finalized_state(&self) -> Arc<LedgerState> {
        self.lock().finalized.clone()
    }

    pub fn finalized_height(&self) -> u64 {
        self.lock().finalized.height()
    }

    /// The finalized block at `height`, as this validator applied it.
    pub fn finalized_at(&self, height: u64) -> Option<Finalized> {
        self.lock().log.get(&height).cloned()
    }

    /// Every finalized block this validator applied, by height.
    pub fn finalized_log(&self) -> BTreeMap<u64, Finalized> {
        self.lock().log.clone()
    }

    /// The post-state of the block at the head of `ancestry`, applying any unknown blocks on
    /// the way from the newest known ancestor.
    async fn state_after(
        &self,
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> Option<Arc<LedgerState>> {
        let mut pending = Vec::new();
        loop {
            let block = ancestry.next().await?;
            let digest = from_digest(&block.digest());
            // Bind first: the guard must be released before the loop below locks again.
            let known = self.lock().states.get(&digest).map(|a| a.state.clone());
            if let Some(mut state) = known {
                for b in pending.iter().rev() {
                    let b: &Block = b;
                    let mut next = (*state).clone();
                    let receipts = next.apply_block(b).ok()?;
                    state = Arc::new(next);
                    let applied = Applied {
                        state: state.clone(),
                        receipts,
                    };
                    self.lock().states.insert(b.digest(), applied);
                }
                return Some(state);
            }
            pending.push(block.inner().block.clone());
            if pending.len() > 10_000 {
                return None;
            }
        }
    }
}

impl<E: Clock + Send + 'static> Application<E> for LedgerApp {
    type SigningScheme = Scheme;
    type Context = Context<Digest, ed25519::PublicKey>;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, _ctx): (E, Self::Context),
        ancestry: impl Ancestry<ChainBlock>,
        _: (),
    ) -> Option<Digested<ChainBlock>> {
        let parent = self.state_after(ancestry).await?;
        // With nothing to include, wait a little for transactions (well inside the leader
        // timeout) so an idle chain does not mint empty blocks as fast as the network allows.
        for _ in 0..EMPTY_BLOCK_WAIT_STEPS {
            if !self.lock().mempool.is_empty() {
                break;
            }
            runtime.sleep(std::time::Duration::from_millis(10)).await;
        }
        let now = now_ms(&runtime);
        let candidates = {
            let inner = self.lock();
            inner
                .mempool
                .candidates(MAX_BLOCK_BYTES / 2, &inner.finalized)
        };
        let proposal = parent.propose(candidates, self.me, now);
        // Drop what can never apply; keep transactions whose turn (nonce) has not come yet.
        let dead: std::collections::HashSet<Hash> = proposal
            .rejected
            .iter()
            .filter(|(_, e)| !matches!(e, crate::TxError::Nonce { expected, got, .. } if got > expected))
            .map(|(tx, _)| tx.id())
            .collect();
        if !dead.is_empty() {
            self.lock().mempool.retain(|id, _| !dead.contains(id));
        }
        let applied = Applied {
            state: Arc::new(proposal.state),
            receipts: proposal.receipts,
        };
        self.lock().states.insert(proposal.block.digest(), applied);
        let block = ChainBlock::new(proposal.block);
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (runtime, context): (E, Self::Context),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let leader = verity_public(&context.leader);
        if check_header(&block.inner().block().header, &leader, now_ms(&runtime)).is_err() {
            return false;
        }
        let Some(parent) = self.state_after(ancestry).await else {
            return false;
        };
        let b = block.inner().block();
        // Transactions waiting in our pool, byte for byte, had their signatures checked.
        let checked: Vec<bool> = {
            let inner = self.lock();
            b.txs.iter().map(|tx| inner.mempool.holds(tx)).collect()
        };
        let mut state = (*parent).clone();
        match state.apply_block_checked(b, &checked) {
            Ok(receipts) => {
                let state = Arc::new(state);
                self.lock()
                    .states
                    .insert(b.digest(), Applied { state, receipts });
                true
            }
            Err(_) => false,
        }
    }
}

impl LedgerApp {
    /// Applies a finalized block this validator never verified (it came by backfill) to a
    /// copy of the finalized state outside the lock, so finalizing it under the lock finds it
    /// ready instead of checking signatures and hashing the state there.
    fn prepare_finalized(&self, b: &Block) {
        let digest = b.digest();
        let parent = {
            let inner = self.lock();
            let next = b.header.height == inner.finalized.height() + 1;
            if !next || inner.states.contains_key(&digest) {
                return;
            }
            inner.finalized.clone()
        };
        let mut state = (*parent).clone();
        if let Ok(receipts) = state.apply_block(b) {
            let state = Arc::new(state);
            self.lock()
                .states
                .insert(digest, Applied { state, receipts });
        }
    }
}

impl Reporter for LedgerApp {
    type Activity = Update<ChainBlock>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        let Update::Block(block, ack) = activity else {
            return Feedback::Ok;
        };
        let b = block.inner().block();
        self.prepare_finalized(b);
        let mut inner = self.lock();
        let expected = inner.finalized.height() + 1;
        if b.header.height > expected {
            // Ahead of our history (a restarted validator still restoring): keep it, and its
            // acknowledgement, until the gap is filled. Blocks are never skipped.
            inner.pending.insert(b.header.height, (b.clone(), ack));
            return Feedback::Ok;
        }
        if b.header.height == expected {
            if inner.apply_finalized(b).is_err() {
                return Feedback::Ok; // dropping the ack halts marshal
            }
            inner.drain_pending();
        }
        drop(inner);
        ack.acknowledge();
        Feedback::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockHeader;
    use verity_core::NodeKey;

    fn header(proposer: PublicKey, timestamp_ms: u64) -> BlockHeader {
        BlockHeader {
            height: 1,
            parent: Hash::default(),
            timestamp_ms,
            proposer,
            txs_root: Hash::default(),
            receipts_root: Hash::default(),
            state_root: Hash::default(),
        }
    }

    #[test]
    fn a_header_must_name_the_leader_and_keep_near_the_clock() {
        let leader = NodeKey::from_seed([1; 32]).public();
        let other = NodeKey::from_seed([2; 32]).public();
        let now = 1_000_000;
        assert_eq!(
            check_header(&header(leader, now + 4_000), &leader, now),
            Ok(())
        );
        assert!(matches!(
            check_header(&header(other, now), &leader, now),
            Err(HeaderError::Proposer { .. })
        ));
        // A leader freezing the chain's clock far in the future is voted down.
        assert!(matches!(
            check_header(&header(leader, u64::MAX), &leader, now),
            Err(HeaderError::Future { .. })
        ));
    }
}
