//! Transactions waiting for a block, with the limits that keep a peer or client from
//! filling or jamming the pool.
//!
//! The pool is bounded by count and by bytes, overall and per sender. Signatures are checked
//! once, before a transaction is queued (and without the ledger lock, see
//! [`CheckedTx::check`]); proposals then skip them. A transaction whose nonce leaves a gap
//! (its sender skipped a nonce) is never offered to a proposal, is the first to go when the
//! pool is full, and expires after [`MAX_GAP_BLOCKS`] finalized blocks, so parked
//! transactions can neither jam the pool nor cost every proposal signature checks.

use crate::state::LedgerState;
use crate::tx::{Action, Transaction};
use crate::TxError;
use std::collections::{BTreeSet, HashMap, HashSet};
use verity_core::keys::Signature;
use verity_core::{Hash, PublicKey};

/// Transactions a validator holds.
pub const MAX_MEMPOOL: usize = 20_000;
/// Encoded bytes a validator holds.
pub const MAX_MEMPOOL_BYTES: usize = 64 << 20;
/// Transactions one sender may have waiting.
pub const MAX_PER_SENDER: usize = 2_048;
/// Encoded bytes one sender may have waiting.
pub const MAX_SENDER_BYTES: usize = 4 << 20;
/// Largest encoded transaction accepted (a block holds several).
pub const MAX_TX_BYTES: usize = 1 << 20;
/// How far past its finalized nonce a sender may queue.
pub const MAX_NONCE_AHEAD: u64 = 64;
/// Finalized blocks a transaction waiting behind a nonce gap is kept.
pub const MAX_GAP_BLOCKS: u64 = 16;

/// Why a transaction was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("the transaction is already queued")]
    Duplicate,
    #[error("another transaction of this sender with nonce {0} is already queued")]
    NonceTaken(u64),
    #[error("the transaction pool is full; retry later")]
    Full,
    #[error("the sender has {0} transactions waiting; retry when some are included")]
    SenderFull(usize),
    #[error("the transaction is {0} bytes; at most {MAX_TX_BYTES}")]
    TooLarge(usize),
    #[error("the sender has no balance and is not a registered node")]
    UnknownSender,
}

/// A transaction whose signature has been checked for one chain. Only [`CheckedTx::check`]
/// makes one, so holding it is the proof; the ledger applies it without checking again.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedTx(Transaction);

impl CheckedTx {
    /// Checks the signature (two Ed25519 verifications): the expensive part of admitting a
    /// transaction, done before any lock is taken.
    pub fn check(tx: Transaction, chain_id: &str) -> Result<CheckedTx, TxError> {
        if !tx.signature_is_valid(chain_id) {
            return Err(TxError::Signature);
        }
        Ok(CheckedTx(tx))
    }

    pub fn tx(&self) -> &Transaction {
        &self.0
    }

    pub fn into_tx(self) -> Transaction {
        self.0
    }
}

struct Queued {
    id: Hash,
    size: usize,
    tx: CheckedTx,
    /// The finalized height when it arrived (for expiring gap transactions).
    arrived: u64,
}

/// What one sender has waiting.
#[derive(Default)]
struct SenderQueue {
    count: usize,
    bytes: usize,
    /// Nonces of its waiting nonce-ordered transactions.
    nonces: BTreeSet<u64>,
}

impl SenderQueue {
    /// The first nonce after `finalized` that is not waiting here.
    fn next_nonce(&self, finalized: u64) -> u64 {
        let mut next = finalized;
        while self.nonces.contains(&next) {
            next += 1;
        }
        next
    }
}

#[derive(Default)]
pub struct Mempool {
    /// In arrival order.
    txs: Vec<Queued>,
    /// Id -> signature of every queued transaction (the id covers everything else).
    ids: HashMap<Hash, Signature>,
    senders: HashMap<PublicKey, SenderQueue>,
    bytes: usize,
}

impl Mempool {
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `tx` could be included now: its nonce continues its sender's finalized nonce
    /// through the transactions waiting here (or it needs no nonce).
    fn is_ready(&self, tx: &Transaction, state: &LedgerState) -> bool {
        !tx.action.uses_nonce() || tx.nonce < self.next_nonce(&tx.sender, state.nonce(&tx.sender))
    }

    /// Queues `tx` if it fits `state` (the finalized state): bounded size, a funded or
    /// registered sender, a nonce that is not stale nor too far ahead (0 for escrow actions),
    /// and room in the pool. When the pool is full, a transaction that is ready to be included
    /// takes the place of the oldest one waiting behind a nonce gap.
    pub fn insert(&mut self, tx: CheckedTx, state: &LedgerState) -> Result<(), SubmitError> {
        let t = tx.tx();
        let size = t.encoded_len();
        if size > MAX_TX_BYTES {
            return Err(SubmitError::TooLarge(size));
        }
        if state.balance(&t.sender) == 0 && state.node(&t.sender).is_none() {
            return Err(SubmitError::UnknownSender);
        }
        let (expected, ok) = if t.action.uses_nonce() {
            let expected = state.nonce(&t.sender);
            (
                expected,
                t.nonce >= expected && t.nonce <= expected + MAX_NONCE_AHEAD,
            )
        } else {
            (0, t.nonce == 0)
        };
        if !ok {
            return Err(TxError::Nonce {
                account: t.sender,
                expected,
                got: t.nonce,
            }
            .into());
        }
        let id = t.id();
        if self.ids.contains_key(&id) {
            return Err(SubmitError::Duplicate);
        }
        let (count, bytes) = self
            .senders
            .get(&t.sender)
            .map_or((0, 0), |q| (q.count, q.bytes));
        if count >= MAX_PER_SENDER || bytes + size > MAX_SENDER_BYTES {
            return Err(SubmitError::SenderFull(count));
        }
        if t.action.uses_nonce()
            && self
                .senders
                .get(&t.sender)
                .is_some_and(|q| q.nonces.contains(&t.nonce))
        {
            return Err(SubmitError::NonceTaken(t.nonce));
        }
        let ready =
            !t.action.uses_nonce() || t.nonce <= self.next_nonce(&t.sender, state.nonce(&t.sender));
        while self.txs.len() >= MAX_MEMPOOL || self.bytes + size > MAX_MEMPOOL_BYTES {
            if !ready || !self.evict_oldest_gap(state) {
                return Err(SubmitError::Full);
            }
        }
        self.ids.insert(id, t.signature);
        let q = self.senders.entry(t.sender).or_default();
        q.count += 1;
        q.bytes += size;
        if t.action.uses_nonce() {
            q.nonces.insert(t.nonce);
        }
        self.bytes += size;
        self.txs.push(Queued {
            id,
            size,
            tx,
            arrived: state.height(),
        });
        Ok(())
    }

    /// Drops the oldest transaction waiting behind a nonce gap; false if there is none.
    fn evict_oldest_gap(&mut self, state: &LedgerState) -> bool {
        let Some(victim) = self
            .txs
            .iter()
            .position(|q| !self.is_ready(q.tx.tx(), state))
        else {
            return false;
        };
        let q = self.txs.remove(victim);
        self.forget(&q);
        true
    }

    fn forget(&mut self, q: &Queued) {
        self.ids.remove(&q.id);
        self.bytes -= q.size;
        let t = q.tx.tx();
        if let Some(s) = self.senders.get_mut(&t.sender) {
            s.count -= 1;
            s.bytes -= q.size;
            if t.action.uses_nonce() {
                s.nonces.remove(&t.nonce);
            }
            if s.count == 0 {
                self.senders.remove(&t.sender);
            }
        }
    }

    /// Keeps the transactions for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&Hash, &Transaction) -> bool) {
        let txs = std::mem::take(&mut self.txs);
        for q in txs {
            if keep(&q.id, q.tx.tx()) {
                self.txs.push(q);
            } else {
                self.forget(&q);
            }
        }
    }

    /// After a finalized block: drops what it included, what its nonces made stale, and
    /// transactions that have waited behind a gap for more than [`MAX_GAP_BLOCKS`] blocks.
    pub fn after_block(&mut self, included: &HashSet<Hash>, state: &LedgerState) {
        self.retain(|id, tx| {
            !included.contains(id)
                && (!tx.action.uses_nonce() || tx.nonce >= state.nonce(&tx.sender))
        });
        let gapped: HashSet<Hash> = self
            .txs
            .iter()
            .filter(|q| {
                q.arrived + MAX_GAP_BLOCKS < state.height() && !self.is_ready(q.tx.tx(), state)
            })
            .map(|q| q.id)
            .collect();
        if !gapped.is_empty() {
            self.retain(|id, _| !gapped.contains(id));
        }
    }

    /// Whether exactly this transaction (signature included) is waiting here, and so has had
    /// its signature checked.
    pub fn holds(&self, tx: &Transaction) -> bool {
        self.ids.get(&tx.id()) == Some(&tx.signature)
    }

    /// Transactions for the next block, oldest first, up to `budget` encoded bytes (one that
    /// does not fit waits for a later block). Only transactions that are ready after `state`
    /// (the finalized state) are offered: one waiting behind a nonce gap costs nothing.
    pub fn candidates(&self, budget: usize, state: &LedgerState) -> Vec<CheckedTx> {
        let mut left = budget;
        self.txs
            .iter()
            .filter(|q| self.is_ready(q.tx.tx(), state))
            .filter(|q| {
                let fits = q.size <= left;
                if fits {
                    left -= q.size;
                }
                fits
            })
            .map(|q| q.tx.clone())
            .collect()
    }

    /// The nonce the sender's next nonce-ordered transaction should carry, after
    /// `finalized_nonce` and the ones waiting here.
    pub fn next_nonce(&self, sender: &PublicKey, finalized_nonce: u64) -> u64 {
        self.senders
            .get(sender)
            .map_or(finalized_nonce, |q| q.next_nonce(finalized_nonce))
    }

    /// What the sender's waiting transactions would take from its balance (transfers, stakes,
    /// escrows at `state`'s prices), so a client cannot spend one balance on many requests.
    pub fn pending_spend(&self, sender: &PublicKey, state: &LedgerState) -> u64 {
        if !self.senders.contains_key(sender) {
            return 0;
        }
        self.txs
            .iter()
            .map(|q| q.tx.tx())
            .filter(|t| t.sender == *sender)
            .map(|t| match &t.action {
                Action::Transfer { amount, .. } => *amount,
                Action::RegisterNode { stake, .. } => *stake,
                Action::RegisterName { .. } => state.params().name_fee,
                Action::OpenRequest {
                    model,
                    listing,
                    mode,
                    ..
                } => state.fee(listing, model, *mode).unwrap_or(0),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }
}
