//! The replicated state: accounts, nodes, models, open escrows and closed requests, the
//! queries other parts of the node make of it, and the state root that commits to all of it.
//!
//! Where it starts is in `genesis`; how transactions and blocks change it is in `apply`
//! (docs/economics.md states the rules).

mod apply;
mod genesis;

use std::collections::BTreeMap;

use serde::Serialize;
use verity_core::encode::Encoder;
use verity_core::hash::domain;
use verity_core::{Hash, ModelId, PublicKey, Receipt};

pub use apply::{BlockError, Proposal};
pub use genesis::{Genesis, GenesisNode, Params};

/// The capability that makes a node eligible for quorum requests (it runs the canonical
/// int8 engine).
pub const CAPABILITY_QUORUM: &str = "quorum";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Account {
    balance: u64,
    nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeEntry {
    pub stake: u64,
    pub endpoint: String,
    pub capabilities: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    pub publisher: PublicKey,
    pub price: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Escrow {
    pub client: PublicKey,
    pub model: ModelId,
    pub executors: u32,
    pub amount: u64,
    pub opened_at: u64,
    /// The nodes allowed to sign for this request, best-ranked first. A signed- or zk-mode
    /// escrow names its node when opened; a quorum's are drawn when the next block is built,
    /// from the digest of the block that opened it (unknown to the client when it signed), and
    /// are empty until then.
    pub eligible: Vec<PublicKey>,
}

/// What became of a request that is no longer open. Closed requests cannot be opened again,
/// which is what makes escrow transactions replay-safe without account nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Closed {
    Settled { height: u64 },
    Disagreed { height: u64 },
    Refunded { height: u64 },
}

impl Closed {
    fn tag(self) -> (u8, u64) {
        match self {
            Closed::Settled { height } => (1, height),
            Closed::Disagreed { height } => (2, height),
            Closed::Refunded { height } => (3, height),
        }
    }
}

/// Conflicting signed receipts for one request, kept as evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disagreement {
    pub request: Hash,
    pub height: u64,
    pub receipts: Vec<Receipt>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LedgerState {
    params: Params,
    chain_id: String,
    height: u64,
    last_digest: Hash,
    last_timestamp_ms: u64,
    /// The state root the last block's header commits to (kept so readers need not hash the
    /// whole state; it is not part of the root itself).
    committed_root: Hash,
    accounts: BTreeMap<PublicKey, Account>,
    nodes: BTreeMap<PublicKey, NodeEntry>,
    models: BTreeMap<ModelId, ModelEntry>,
    escrows: BTreeMap<Hash, Escrow>,
    closed: BTreeMap<Hash, Closed>,
    disagreements: Vec<Disagreement>,
    /// Quorum requests opened in the last block, whose executors the next block draws (an
    /// index of the escrows with no `eligible` yet, so it is not part of the root).
    undrawn: Vec<Hash>,
}

impl LedgerState {
    /// A chain with nothing in it yet, before genesis funds and registers anyone.
    fn empty(chain_id: String, params: Params) -> LedgerState {
        LedgerState {
            params,
            chain_id,
            height: 0,
            last_digest: Hash::default(),
            last_timestamp_ms: 0,
            committed_root: Hash::default(),
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            models: BTreeMap::new(),
            escrows: BTreeMap::new(),
            closed: BTreeMap::new(),
            disagreements: Vec::new(),
            undrawn: Vec::new(),
        }
    }

    /// The state root committed by the last block (genesis included), read without hashing.
    pub fn committed_root(&self) -> Hash {
        self.committed_root
    }

    pub fn height(&self) -> u64 {
        self.height
    }
    pub fn last_digest(&self) -> Hash {
        self.last_digest
    }
    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }
    pub fn nonce(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.nonce)
    }
    pub fn node(&self, key: &PublicKey) -> Option<&NodeEntry> {
        self.nodes.get(key)
    }
    pub fn escrow(&self, request: &Hash) -> Option<&Escrow> {
        self.escrows.get(request)
    }
    pub fn closed(&self, request: &Hash) -> Option<Closed> {
        self.closed.get(request).copied()
    }
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn model(&self, id: &ModelId) -> Option<&ModelEntry> {
        self.models.get(id)
    }
    pub fn nodes(&self) -> impl Iterator<Item = (&PublicKey, &NodeEntry)> {
        self.nodes.iter()
    }

    /// What an escrow for `model` with `executors` (0 for signed mode) holds from the client:
    /// the price per executor times max(k, 1). None for a model without a price.
    pub fn fee(&self, model: &ModelId, executors: u32) -> Option<u64> {
        self.models
            .get(model)
            .map(|m| m.price.saturating_mul(executors.max(1) as u64))
    }

    /// The registered nodes with the `quorum` capability.
    pub fn quorum_nodes(&self) -> impl Iterator<Item = &PublicKey> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.capabilities.iter().any(|c| c == CAPABILITY_QUORUM))
            .map(|(k, _)| k)
    }

    /// The quorum nodes ranked for `request` by the hash of `seed`, the request and the node's
    /// key. The seed is the digest of the block that opened the request, which did not exist
    /// when the client chose its request (docs/economics.md says who can still bias it).
    pub fn rank_executors(&self, seed: &Hash, request: &Hash) -> Vec<PublicKey> {
        let mut ranked: Vec<(Hash, PublicKey)> = self
            .quorum_nodes()
            .map(|k| {
                let mut e = Encoder::new();
                e.fixed32(&seed.0).fixed32(&request.0).fixed32(&k.0);
                (Hash::of(domain::EXECUTOR_RANK, &e.finish()), *k)
            })
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(_, k)| k).collect()
    }

    /// The nodes allowed to sign a quorum of `k` for `request` drawn with `seed` (the first
    /// `k + spares` ranked).
    pub fn eligible_executors(&self, seed: &Hash, request: &Hash, k: u32) -> Vec<PublicKey> {
        let mut ranked = self.rank_executors(seed, request);
        ranked.truncate(k.saturating_add(self.params.quorum_spares) as usize);
        ranked
    }

    /// The executors of an open request: its `eligible`, or, for a quorum opened in the last
    /// block (drawn only when the next is built), the draw that block will make.
    pub fn executors_of(&self, request: &Hash) -> Option<Vec<PublicKey>> {
        let escrow = self.escrows.get(request)?;
        if !escrow.eligible.is_empty() {
            return Some(escrow.eligible.clone());
        }
        Some(self.eligible_executors(&self.last_digest, request, escrow.executors))
    }
    pub fn disagreements(&self) -> &[Disagreement] {
        &self.disagreements
    }

    /// Total of balances, stakes and escrows: constant under every transaction.
    pub fn total_supply(&self) -> u128 {
        let b: u128 = self.accounts.values().map(|a| a.balance as u128).sum();
        let s: u128 = self.nodes.values().map(|n| n.stake as u128).sum();
        let e: u128 = self.escrows.values().map(|e| e.amount as u128).sum();
        b + s + e
    }

    /// Commitment to the whole state (docs/economics.md §state root).
    pub fn state_root(&self) -> Hash {
        let mut e = Encoder::new();
        e.str(&self.chain_id)
            .u64(self.height)
            .fixed32(&self.last_digest.0);
        e.u64(self.accounts.len() as u64);
        for (k, a) in &self.accounts {
            e.fixed32(&k.0).u64(a.balance).u64(a.nonce);
        }
        e.u64(self.nodes.len() as u64);
        for (k, n) in &self.nodes {
            e.fixed32(&k.0)
                .u64(n.stake)
                .str(&n.endpoint)
                .u64(n.capabilities.len() as u64);
            for c in &n.capabilities {
                e.str(c);
            }
        }
        e.u64(self.models.len() as u64);
        for (k, m) in &self.models {
            e.fixed32(&k.0).fixed32(&m.publisher.0).u64(m.price);
        }
        e.u64(self.escrows.len() as u64);
        for (k, x) in &self.escrows {
            e.fixed32(&k.0)
                .fixed32(&x.client.0)
                .fixed32(&x.model.0)
                .u32(x.executors)
                .u64(x.amount)
                .u64(x.opened_at)
                .u64(x.eligible.len() as u64);
            for n in &x.eligible {
                e.fixed32(&n.0);
            }
        }
        e.u64(self.closed.len() as u64);
        for (k, c) in &self.closed {
            let (tag, height) = c.tag();
            e.fixed32(&k.0).u8(tag).u64(height);
        }
        e.u64(self.disagreements.len() as u64);
        for d in &self.disagreements {
            e.fixed32(&d.request.0)
                .u64(d.height)
                .u64(d.receipts.len() as u64);
            for r in &d.receipts {
                e.fixed32(&r.id().0);
            }
        }
        Hash::of(domain::STATE, &e.finish())
    }
}
