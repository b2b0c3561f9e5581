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
use verity_core::{Hash, Mode, ModelId, PublicKey, Receipt, TensorMap};

pub use apply::{BlockError, Proposal};
pub use genesis::{Genesis, GenesisNode, Params};

/// The name suffix of a canonical int8 model derived from a float one at publication; its
/// name belongs to the owner of the float model's name.
pub const CANONICAL_SUFFIX: &str = ".int8";

/// Orders versions numerically part by part (`1.10` after `1.9`).
pub fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

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

/// A model listed as `name@version` by the name's owner, at its price. The same file (id) may
/// be listed under several names, each priced by its own publisher: nobody can take a model's
/// price away from its publisher by listing its bytes first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelEntry {
    pub model: ModelId,
    pub publisher: PublicKey,
    pub name: String,
    pub version: String,
    pub price: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Escrow {
    pub client: PublicKey,
    pub model: ModelId,
    pub mode: Mode,
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
    Settled {
        height: u64,
    },
    /// A dispute was decided by the validators' verdicts (see [`Judgement`]), or expired.
    Judged {
        height: u64,
    },
    Refunded {
        height: u64,
    },
}

impl Closed {
    fn tag(self) -> (u8, u64) {
        match self {
            Closed::Settled { height } => (1, height),
            Closed::Judged { height } => (2, height),
            Closed::Refunded { height } => (3, height),
        }
    }
}

/// What the validators are asked to judge.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Question {
    /// Quorum receipts that disagree: each validator re-executes the model on `inputs`.
    Quorum { inputs: TensorMap },
    /// A zk settlement: each validator fetches the proof with this hash from the executor and
    /// verifies it against the receipt.
    Proof { proof: Hash },
}

/// A request the validators are judging: its escrow stays locked until 2f+1 verdicts agree or
/// the window closes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dispute {
    pub question: Question,
    /// Block time (ms) when it was opened; the verdict window runs from here.
    pub opened_ms: u64,
    pub receipts: Vec<Receipt>,
    /// Each validator's verdict so far: the output hash it found correct.
    pub verdicts: BTreeMap<PublicKey, Hash>,
}

/// How a dispute ended, kept as evidence: the receipts, the verdict and who lost stake.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    pub request: Hash,
    pub height: u64,
    pub question: Question,
    pub receipts: Vec<Receipt>,
    /// The output 2f+1 validators agreed on (the zero hash: no valid proof); None when the
    /// window closed without agreement (the client is refunded, nobody slashed).
    pub verdict: Option<Hash>,
    /// Executors and validators whose stake was slashed, with the amounts.
    pub slashed: Vec<(PublicKey, u64)>,
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
    /// Model names and their owners.
    names: BTreeMap<String, PublicKey>,
    /// Listings by (name, version).
    models: BTreeMap<(String, String), ModelEntry>,
    escrows: BTreeMap<Hash, Escrow>,
    closed: BTreeMap<Hash, Closed>,
    /// The consensus validators (the genesis nodes), who judge disputes.
    validators: Vec<PublicKey>,
    disputes: BTreeMap<Hash, Dispute>,
    judgements: Vec<Judgement>,
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
            names: BTreeMap::new(),
            models: BTreeMap::new(),
            escrows: BTreeMap::new(),
            closed: BTreeMap::new(),
            validators: Vec::new(),
            disputes: BTreeMap::new(),
            judgements: Vec::new(),
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
    /// The first listing of the model file `id` (by name).
    pub fn model(&self, id: &ModelId) -> Option<&ModelEntry> {
        self.models.values().find(|m| m.model == *id)
    }
    /// The listing `name@version`.
    pub fn listing(&self, name: &str, version: &str) -> Option<&ModelEntry> {
        self.models.get(&(name.to_string(), version.to_string()))
    }
    pub fn nodes(&self) -> impl Iterator<Item = (&PublicKey, &NodeEntry)> {
        self.nodes.iter()
    }
    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    /// Who may register versions under `name`: its owner, or for a canonical form
    /// `<name>.int8` the owner of `<name>`.
    pub fn name_owner(&self, name: &str) -> Option<PublicKey> {
        self.names.get(name).copied().or_else(|| {
            let base = name.strip_suffix(CANONICAL_SUFFIX)?;
            self.names.get(base).copied()
        })
    }

    /// The model registered as `name@version`, or with no version the highest version
    /// registered under `name` (all by its owner).
    pub fn model_named(&self, name: &str, version: Option<&str>) -> Option<ModelId> {
        match version {
            Some(v) => self.listing(name, v).map(|m| m.model),
            None => self
                .models
                .values()
                .filter(|m| m.name == name)
                .max_by_key(|m| version_key(&m.version))
                .map(|m| m.model),
        }
    }

    /// What an escrow for `model` bought at `listing` (`name@version`) in `mode` holds from the
    /// client: the listing's price per executor times max(k, 1). None unless the listing
    /// exists and lists that model.
    pub fn fee(&self, listing: &str, model: &ModelId, mode: Mode) -> Option<u64> {
        let (name, version) = listing.split_once('@')?;
        self.listing(name, version)
            .filter(|m| m.model == *model)
            .map(|m| m.price.saturating_mul(mode.executors().max(1) as u64))
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
        Some(self.eligible_executors(&self.last_digest, request, escrow.mode.executors()))
    }

    /// The validators, who judge disputes with their verdicts.
    pub fn validators(&self) -> &[PublicKey] {
        &self.validators
    }

    /// Agreeing verdicts that decide a dispute: 2f+1 of n = 3f+1 validators (n - f in
    /// general, so any two deciding sets share an honest validator).
    pub fn verdict_threshold(&self) -> usize {
        let n = self.validators.len();
        n - n.saturating_sub(1) / 3
    }

    /// The requests the validators are judging.
    pub fn disputes(&self) -> &BTreeMap<Hash, Dispute> {
        &self.disputes
    }

    /// Decided (and expired) disputes, oldest first.
    pub fn judgements(&self) -> &[Judgement] {
        &self.judgements
    }

    /// Total of balances, stakes and escrows: constant under every transaction (slashed stake
    /// is paid out, never destroyed).
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
        e.u64(self.names.len() as u64);
        for (name, owner) in &self.names {
            e.str(name).fixed32(&owner.0);
        }
        e.u64(self.models.len() as u64);
        for m in self.models.values() {
            e.str(&m.name)
                .str(&m.version)
                .fixed32(&m.model.0)
                .fixed32(&m.publisher.0)
                .u64(m.price);
        }
        e.u64(self.escrows.len() as u64);
        for (k, x) in &self.escrows {
            e.fixed32(&k.0)
                .fixed32(&x.client.0)
                .fixed32(&x.model.0)
                .str(&x.mode.name())
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
        e.u64(self.validators.len() as u64);
        for v in &self.validators {
            e.fixed32(&v.0);
        }
        e.u64(self.disputes.len() as u64);
        for (k, d) in &self.disputes {
            e.fixed32(&k.0);
            encode_question(&mut e, &d.question);
            e.u64(d.opened_ms).u64(d.receipts.len() as u64);
            for r in &d.receipts {
                e.fixed32(&r.id().0);
            }
            e.u64(d.verdicts.len() as u64);
            for (v, output) in &d.verdicts {
                e.fixed32(&v.0).fixed32(&output.0);
            }
        }
        e.u64(self.judgements.len() as u64);
        for j in &self.judgements {
            e.fixed32(&j.request.0).u64(j.height);
            encode_question(&mut e, &j.question);
            e.u64(j.receipts.len() as u64);
            for r in &j.receipts {
                e.fixed32(&r.id().0);
            }
            match &j.verdict {
                None => e.u8(0),
                Some(h) => e.u8(1).fixed32(&h.0),
            };
            e.u64(j.slashed.len() as u64);
            for (k, amount) in &j.slashed {
                e.fixed32(&k.0).u64(*amount);
            }
        }
        Hash::of(domain::STATE, &e.finish())
    }
}

/// A dispute's question in the state root: the inputs' hash, or the proof's.
fn encode_question(e: &mut Encoder, q: &Question) {
    match q {
        Question::Quorum { inputs } => e.u8(1).fixed32(&verity_core::tensor::hash_map(inputs).0),
        Question::Proof { proof } => e.u8(2).fixed32(&proof.0),
    };
}
