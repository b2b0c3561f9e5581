//! Transactions waiting for a block, with the limits that keep a peer or client from
//! filling or jamming the pool.

use crate::state::LedgerState;
use crate::tx::{Action, Transaction};
use crate::TxError;
use std::collections::{HashMap, HashSet};
use verity_core::{Hash, PublicKey};

/// Transactions a validator holds.
pub const MAX_MEMPOOL: usize = 20_000;
/// Transactions one sender may have waiting.
pub const MAX_PER_SENDER: usize = 2_048;
/// Largest encoded transaction accepted (a block holds several).
pub const MAX_TX_BYTES: usize = 1 << 20;
/// How far past its finalized nonce a sender may queue.
pub const MAX_NONCE_AHEAD: u64 = 64;

/// Why a transaction was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("the transaction is already queued")]
    Duplicate,
    #[error("the transaction pool is full; retry later")]
    Full,
    #[error("the sender has {0} transactions waiting; retry when some are included")]
    SenderFull(usize),
    #[error("the transaction is {0} bytes; at most {MAX_TX_BYTES}")]
    TooLarge(usize),
    #[error("the sender has no balance and is not a registered node")]
    UnknownSender,
}

#[derive(Default)]
pub struct Mempool {
    /// In arrival order, with their ids and encoded sizes.
    txs: Vec<(Hash, usize, Transaction)>,
    ids: HashSet<Hash>,
    per_sender: HashMap<PublicKey, usize>,
}

impl Mempool {
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Queues `tx` if it is well-formed for `state` (the finalized state): valid signature,
    /// bounded size, a funded or registered sender, a nonce that is not stale nor too far
    /// ahead (0 for escrow actions), and room in the pool.
    pub fn insert(&mut self, tx: Transaction, state: &LedgerState) -> Result<(), SubmitError> {
        let size = tx.encoded_len();
        if size > MAX_TX_BYTES {
            return Err(SubmitError::TooLarge(size));
        }
        if !tx.signature_is_valid(state.chain_id()) {
            return Err(TxError::Signature.into());
        }
        if state.balance(&tx.sender) == 0 && state.node(&tx.sender).is_none() {
            return Err(SubmitError::UnknownSender);
        }
        let (expected, ok) = if tx.action.uses_nonce() {
            let expected = state.nonce(&tx.sender);
            (
                expected,
                tx.nonce >= expected && tx.nonce <= expected + MAX_NONCE_AHEAD,
            )
        } else {
            (0, tx.nonce == 0)
        };
        if !ok {
            return Err(TxError::Nonce {
                account: tx.sender,
                expected,
                got: tx.nonce,
            }
            .into());
        }
        if self.txs.len() >= MAX_MEMPOOL {
            return Err(SubmitError::Full);
        }
        let queued = self.per_sender.get(&tx.sender).copied().unwrap_or(0);
        if queued >= MAX_PER_SENDER {
            return Err(SubmitError::SenderFull(queued));
        }
        let id = tx.id();
        if !self.ids.insert(id) {
            return Err(SubmitError::Duplicate);
        }
        *self.per_sender.entry(tx.sender).or_default() += 1;
        self.txs.push((id, size, tx));
        Ok(())
    }

    /// Keeps the transactions for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&Hash, &Transaction) -> bool) {
        let (ids, per_sender) = (&mut self.ids, &mut self.per_sender);
        self.txs.retain(|(id, _, tx)| {
            if keep(id, tx) {
                return true;
            }
            ids.remove(id);
            if let Some(n) = per_sender.get_mut(&tx.sender) {
                *n -= 1;
                if *n == 0 {
                    per_sender.remove(&tx.sender);
                }
            }
            false
        });
    }

    /// Transactions for the next block, oldest first, up to `budget` encoded bytes (one that
    /// does not fit waits for a later block).
    pub fn candidates(&self, budget: usize) -> Vec<Transaction> {
        let mut left = budget;
        self.txs
            .iter()
            .filter(|(_, size, _)| {
                let fits = *size <= left;
                if fits {
                    left -= size;
                }
                fits
            })
            .map(|(_, _, tx)| tx.clone())
            .collect()
    }

    /// The nonce the sender's next nonce-ordered transaction should carry, after
    /// `finalized_nonce` and the ones waiting here.
    pub fn next_nonce(&self, sender: &PublicKey, finalized_nonce: u64) -> u64 {
        let mut pending: Vec<u64> = self
            .txs
            .iter()
            .map(|(_, _, t)| t)
            .filter(|t| t.sender == *sender && t.action.uses_nonce())
            .map(|t| t.nonce)
            .collect();
        pending.sort_unstable();
        pending.into_iter().fold(
            finalized_nonce,
            |next, n| if n == next { next + 1 } else { next },
        )
    }

    /// What the sender's waiting transactions would take from its balance (transfers, stakes,
    /// escrows at `state`'s prices), so a client cannot spend one balance on many requests.
    pub fn pending_spend(&self, sender: &PublicKey, state: &LedgerState) -> u64 {
        self.txs
            .iter()
            .map(|(_, _, t)| t)
            .filter(|t| t.sender == *sender)
            .map(|t| match &t.action {
                Action::Transfer { amount, .. } => *amount,
                Action::RegisterNode { stake, .. } => *stake,
                Action::OpenRequest {
                    model, executors, ..
                } => state
                    .model(model)
                    .map_or(0, |m| m.price.saturating_mul((*executors).max(1) as u64)),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }
}
