//! The replicated state and its transition function.

use crate::block::{receipts_root, txs_root, Block, BlockHeader};
use crate::error::TxError;
use crate::tx::{Action, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use verity_core::encode::Encoder;
use verity_core::hash::domain;
use verity_core::verify::{verify_receipt, Expectations};
use verity_core::{Hash, ModelId, PublicKey, Receipt};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Smallest stake an executor node may lock.
    pub min_stake: u64,
    /// Blocks after which the client of an unsettled request may take its escrow back.
    pub refund_after: u64,
    /// Extra executors, beyond k, eligible for a quorum request (so one node being down does
    /// not stall requests that ranked it): a request may be settled by any k of the first
    /// `k + quorum_spares` nodes in its ranking.
    #[serde(default = "default_spares")]
    pub quorum_spares: u32,
}

fn default_spares() -> u32 {
    1
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_stake: 1_000,
            refund_after: 100,
            quorum_spares: default_spares(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisNode {
    pub key: PublicKey,
    pub stake: u64,
    pub endpoint: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The capability that makes a node eligible for quorum requests (it runs the canonical
/// int8 engine).
pub const CAPABILITY_QUORUM: &str = "quorum";

/// Checks a node's API endpoint: an http(s) URL of at most 256 bytes without whitespace
/// (other nodes call it).
fn check_endpoint(endpoint: &str) -> Result<(), TxError> {
    let scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
    if !scheme
        || endpoint.len() > 256
        || endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(TxError::Invalid(
            "endpoint must be an http(s) URL of at most 256 bytes".into(),
        ));
    }
    Ok(())
}

/// Checks a node's capability list: at most 16 names of 1..=64 bytes, sorted and distinct,
/// so equal sets have one encoding.
fn check_capabilities(caps: &[String]) -> Result<(), TxError> {
    let bad = |m: &str| Err(TxError::Invalid(format!("capabilities: {m}")));
    if caps.len() > 16 {
        return bad("at most 16");
    }
    if caps.iter().any(|c| c.is_empty() || c.len() > 64) {
        return bad("each 1 to 64 bytes");
    }
    if caps.windows(2).any(|w| w[0] >= w[1]) {
        return bad("must be sorted and distinct");
    }
    Ok(())
}

/// The starting state: funded accounts and the initial (validator) nodes with locked stake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub accounts: Vec<(PublicKey, u64)>,
    pub nodes: Vec<GenesisNode>,
    #[serde(default)]
    pub params: Params,
}

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
    /// The nodes allowed to sign for this request, best-ranked first (fixed when opened).
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
    accounts: BTreeMap<PublicKey, Account>,
    nodes: BTreeMap<PublicKey, NodeEntry>,
    models: BTreeMap<ModelId, ModelEntry>,
    escrows: BTreeMap<Hash, Escrow>,
    closed: BTreeMap<Hash, Closed>,
    disagreements: Vec<Disagreement>,
}

/// A block built by [`LedgerState::propose`], with the state after it and what it left out.
pub struct Proposal {
    pub block: Block,
    /// The state after applying `block` (what `apply_block` would produce).
    pub state: LedgerState,
    /// Ids of the receipts the block settles, in order.
    pub receipts: Vec<Hash>,
    /// Candidate transactions left out, with the reasons.
    pub rejected: Vec<(Transaction, TxError)>,
}

/// Why a proposed block is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block height {got}, expected {expected}")]
    Height { expected: u64, got: u64 },
    #[error("block does not extend the last block")]
    Parent,
    #[error("transaction {index} is invalid: {error}")]
    Tx { index: usize, error: TxError },
    #[error("block time goes backwards")]
    Time,
    #[error("{0} root does not match the block's contents")]
    Root(&'static str),
}

/// Receipts that settle an escrow for `executors` (0 means signed mode: one node's receipt).
fn signers(executors: u32) -> u32 {
    executors.max(1)
}

impl LedgerState {
    pub fn from_genesis(g: &Genesis) -> Result<LedgerState, TxError> {
        let mut s = LedgerState {
            params: g.params.clone(),
            chain_id: g.chain_id.clone(),
            height: 0,
            last_digest: Hash::default(),
            last_timestamp_ms: 0,
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            models: BTreeMap::new(),
            escrows: BTreeMap::new(),
            closed: BTreeMap::new(),
            disagreements: Vec::new(),
        };
        for (key, balance) in &g.accounts {
            let a = s.accounts.entry(*key).or_default();
            a.balance = a
                .balance
                .checked_add(*balance)
                .ok_or_else(|| TxError::Invalid("genesis balance overflow".into()))?;
        }
        for n in &g.nodes {
            if n.stake < s.params.min_stake {
                return Err(TxError::StakeTooLow {
                    stake: n.stake,
                    min: s.params.min_stake,
                });
            }
            check_capabilities(&n.capabilities)?;
            check_endpoint(&n.endpoint)?;
            if s.nodes
                .insert(
                    n.key,
                    NodeEntry {
                        stake: n.stake,
                        endpoint: n.endpoint.clone(),
                        capabilities: n.capabilities.clone(),
                    },
                )
                .is_some()
            {
                return Err(TxError::NodeExists(n.key));
            }
        }
        s.last_digest = s.genesis_block().digest();
        Ok(s)
    }

    /// The height-0 block every chain starts from: no transactions, committing to the genesis
    /// state. Only meaningful on a state fresh from [`LedgerState::from_genesis`].
    pub fn genesis_block(&self) -> Block {
        let mut at_zero = self.clone();
        at_zero.last_digest = Hash::default();
        Block {
            header: BlockHeader {
                height: 0,
                parent: Hash::default(),
                timestamp_ms: 0,
                proposer: PublicKey([0; 32]),
                txs_root: txs_root(&[]),
                receipts_root: receipts_root(&[]),
                state_root: at_zero.state_root(),
            },
            txs: vec![],
        }
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

    /// The registered nodes with the `quorum` capability, ranked for `request` by the hash of
    /// the request and the node's key, so nobody (client, entry node or executor) can choose
    /// who executes.
    pub fn rank_executors(&self, request: &Hash) -> Vec<PublicKey> {
        let mut ranked: Vec<(Hash, PublicKey)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.capabilities.iter().any(|c| c == CAPABILITY_QUORUM))
            .map(|(k, _)| {
                let mut e = Encoder::new();
                e.fixed32(&request.0).fixed32(&k.0);
                (Hash::of(domain::EXECUTOR_RANK, &e.finish()), *k)
            })
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(_, k)| k).collect()
    }

    /// The nodes allowed to sign a quorum of `k` for `request` (the first `k + spares` ranked).
    pub fn eligible_executors(&self, request: &Hash, k: u32) -> Vec<PublicKey> {
        let mut ranked = self.rank_executors(request);
        ranked.truncate(k.saturating_add(self.params.quorum_spares) as usize);
        ranked
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

    fn debit(&mut self, key: &PublicKey, amount: u64) -> Result<(), TxError> {
        let have = self.balance(key);
        if have < amount {
            return Err(TxError::Balance { need: amount, have });
        }
        self.accounts.entry(*key).or_default().balance = have - amount;
        Ok(())
    }

    fn credit(&mut self, key: &PublicKey, amount: u64) {
        let a = self.accounts.entry(*key).or_default();
        // Credits only move existing supply, so they cannot exceed u64 in total.
        a.balance = a.balance.saturating_add(amount);
    }

    /// Checks receipts for `request`: valid signatures, the escrowed model, distinct
    /// registered nodes. Returns their output hashes.
    fn check_receipts(
        &self,
        request: &Hash,
        escrow: &Escrow,
        receipts: &[Receipt],
    ) -> Result<Vec<Hash>, TxError> {
        let mut seen = BTreeSet::new();
        receipts
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let bad = |reason: String| TxError::Receipt { index, reason };
                verify_receipt(r, &Expectations::default()).map_err(|e| bad(e.to_string()))?;
                if r.request_hash != *request {
                    return Err(bad("names another request".into()));
                }
                // One named node (signed or zk mode), or a quorum of k.
                if r.mode.executors() != escrow.executors {
                    return Err(bad(format!(
                        "mode {} does not match the escrow's {} executors",
                        r.mode, escrow.executors
                    )));
                }
                if r.model != escrow.model {
                    return Err(bad("names another model".into()));
                }
                if !escrow.eligible.contains(&r.node) {
                    return Err(bad(format!(
                        "signer {} is not an eligible executor for this request",
                        r.node
                    )));
                }
                if !seen.insert(r.node) {
                    return Err(bad(format!("node {} signed twice", r.node)));
                }
                Ok(r.output_hash)
            })
            .collect()
    }

    /// Applies one transaction at `height`. On error nothing changes. Returns the ids of the
    /// receipts it settled.
    pub fn apply_tx(&mut self, tx: &Transaction, height: u64) -> Result<Vec<Hash>, TxError> {
        if !tx.signature_is_valid(&self.chain_id) {
            return Err(TxError::Signature);
        }
        let expected = if tx.action.uses_nonce() {
            self.nonce(&tx.sender)
        } else {
            0
        };
        if tx.nonce != expected {
            return Err(TxError::Nonce {
                account: tx.sender,
                expected,
                got: tx.nonce,
            });
        }
        let settled = self.apply_action(&tx.sender, &tx.action, height)?;
        if tx.action.uses_nonce() {
            self.accounts.entry(tx.sender).or_default().nonce += 1;
        }
        Ok(settled)
    }

    fn apply_action(
        &mut self,
        sender: &PublicKey,
        action: &Action,
        height: u64,
    ) -> Result<Vec<Hash>, TxError> {
        match action {
            Action::Transfer { to, amount } => {
                if *amount == 0 {
                    return Err(TxError::ZeroAmount);
                }
                self.debit(sender, *amount)?;
                self.credit(to, *amount);
            }
            Action::RegisterNode {
                stake,
                endpoint,
                capabilities,
            } => {
                if self.nodes.contains_key(sender) {
                    return Err(TxError::NodeExists(*sender));
                }
                if *stake < self.params.min_stake {
                    return Err(TxError::StakeTooLow {
                        stake: *stake,
                        min: self.params.min_stake,
                    });
                }
                check_endpoint(endpoint)?;
                check_capabilities(capabilities)?;
                self.debit(sender, *stake)?;
                self.nodes.insert(
                    *sender,
                    NodeEntry {
                        stake: *stake,
                        endpoint: endpoint.clone(),
                        capabilities: capabilities.clone(),
                    },
                );
            }
            Action::RegisterModel { model, price } => {
                if self.models.contains_key(model) {
                    return Err(TxError::ModelExists(*model));
                }
                self.models.insert(
                    *model,
                    ModelEntry {
                        publisher: *sender,
                        price: *price,
                    },
                );
            }
            Action::OpenRequest {
                request,
                model,
                executors,
                node,
            } => {
                if *executors > verity_core::request::MAX_QUORUM {
                    return Err(TxError::QuorumSize(*executors));
                }
                if self.escrows.contains_key(request) || self.closed.contains_key(request) {
                    return Err(TxError::RequestExists(*request));
                }
                let price = self
                    .models
                    .get(model)
                    .ok_or(TxError::UnknownModel(*model))?
                    .price;
                let amount = price
                    .checked_mul(signers(*executors) as u64)
                    .ok_or_else(|| TxError::Invalid("fee overflows".into()))?;
                let eligible = match (executors, node) {
                    (0, Some(n)) if self.nodes.contains_key(n) => vec![*n],
                    (0, _) => {
                        return Err(TxError::Invalid(
                            "a signed-mode request names one registered node".into(),
                        ))
                    }
                    (k, None) => self.eligible_executors(request, *k),
                    (_, Some(_)) => {
                        return Err(TxError::Invalid(
                            "a quorum request cannot name its executors".into(),
                        ))
                    }
                };
                if eligible.len() < *executors as usize {
                    return Err(TxError::Invalid(format!(
                        "{executors} executors asked, {} nodes registered",
                        eligible.len()
                    )));
                }
                self.debit(sender, amount)?;
                self.escrows.insert(
                    *request,
                    Escrow {
                        client: *sender,
                        model: *model,
                        executors: *executors,
                        amount,
                        opened_at: height,
                        eligible,
                    },
                );
            }
            Action::Settle { request, receipts } => {
                let escrow = self
                    .escrows
                    .get(request)
                    .ok_or(TxError::UnknownRequest(*request))?
                    .clone();
                let k = signers(escrow.executors);
                if receipts.len() != k as usize {
                    return Err(TxError::Invalid(format!(
                        "{} receipts for a request that needs {k}",
                        receipts.len(),
                    )));
                }
                let outputs = self.check_receipts(request, &escrow, receipts)?;
                if outputs.iter().any(|o| *o != outputs[0]) {
                    return Err(TxError::Disagreement);
                }
                let share = escrow.amount / k as u64;
                for r in receipts {
                    self.credit(&r.node, share);
                }
                // Integer division leftovers go back to the client.
                self.credit(&escrow.client, escrow.amount - share * k as u64);
                self.escrows.remove(request);
                self.closed.insert(*request, Closed::Settled { height });
                return Ok(receipts.iter().map(Receipt::id).collect());
            }
            Action::Disagree { request, receipts } => {
                let escrow = self
                    .escrows
                    .get(request)
                    .ok_or(TxError::UnknownRequest(*request))?
                    .clone();
                if escrow.executors < 2 || receipts.len() < 2 || receipts.len() > 16 {
                    return Err(TxError::Invalid(
                        "a disagreement needs 2 to 16 receipts".into(),
                    ));
                }
                let outputs = self.check_receipts(request, &escrow, receipts)?;
                if outputs.iter().all(|o| *o == outputs[0]) {
                    return Err(TxError::NoDisagreement);
                }
                self.credit(&escrow.client, escrow.amount);
                self.escrows.remove(request);
                self.closed.insert(*request, Closed::Disagreed { height });
                self.disagreements.push(Disagreement {
                    request: *request,
                    height,
                    receipts: receipts.clone(),
                });
            }
            Action::Refund { request } => {
                let escrow = self
                    .escrows
                    .get(request)
                    .ok_or(TxError::UnknownRequest(*request))?
                    .clone();
                if escrow.client != *sender {
                    return Err(TxError::NotClient("take back an escrow"));
                }
                let from = escrow.opened_at.saturating_add(self.params.refund_after);
                if height < from {
                    return Err(TxError::TooEarly {
                        request: *request,
                        from,
                    });
                }
                self.credit(sender, escrow.amount);
                self.escrows.remove(request);
                self.closed.insert(*request, Closed::Refunded { height });
            }
        }
        Ok(vec![])
    }

    /// Builds the next block from candidate transactions: invalid ones are left out (with
    /// their reasons). Does not change `self`.
    pub fn propose(
        &self,
        candidates: Vec<Transaction>,
        proposer: PublicKey,
        timestamp_ms: u64,
    ) -> Proposal {
        let mut next = self.clone();
        let height = self.height + 1;
        let timestamp_ms = timestamp_ms.max(self.last_timestamp_ms);
        let mut txs = Vec::new();
        let mut rejected = Vec::new();
        let mut receipt_ids = Vec::new();
        for tx in candidates {
            match next.apply_tx(&tx, height) {
                Ok(ids) => {
                    receipt_ids.extend(ids);
                    txs.push(tx);
                }
                Err(e) => rejected.push((tx, e)),
            }
        }
        let mut header = BlockHeader {
            height,
            parent: self.last_digest,
            timestamp_ms,
            proposer,
            txs_root: txs_root(&txs),
            receipts_root: receipts_root(&receipt_ids),
            state_root: Hash::default(),
        };
        next.height = height;
        next.last_digest = self.last_digest;
        header.state_root = next.state_root();
        let block = Block { header, txs };
        // The post-state, exactly as `apply_block` would leave it, without re-executing.
        next.last_digest = block.digest();
        next.last_timestamp_ms = timestamp_ms;
        Proposal {
            block,
            state: next,
            receipts: receipt_ids,
            rejected,
        }
    }

    /// Validates `block` against this state and applies it. Every transaction must apply and
    /// every root must match. On error nothing changes. Returns the settled receipt ids.
    pub fn apply_block(&mut self, block: &Block) -> Result<Vec<Hash>, BlockError> {
        let h = &block.header;
        if h.height != self.height + 1 {
            return Err(BlockError::Height {
                expected: self.height + 1,
                got: h.height,
            });
        }
        if h.parent != self.last_digest {
            return Err(BlockError::Parent);
        }
        if h.timestamp_ms < self.last_timestamp_ms {
            return Err(BlockError::Time);
        }
        if h.txs_root != txs_root(&block.txs) {
            return Err(BlockError::Root("transactions"));
        }
        let mut next = self.clone();
        let mut receipt_ids = Vec::new();
        for (index, tx) in block.txs.iter().enumerate() {
            receipt_ids.extend(
                next.apply_tx(tx, h.height)
                    .map_err(|error| BlockError::Tx { index, error })?,
            );
        }
        if h.receipts_root != receipts_root(&receipt_ids) {
            return Err(BlockError::Root("receipts"));
        }
        next.height = h.height;
        if h.state_root != next.state_root() {
            return Err(BlockError::Root("state"));
        }
        next.last_digest = block.digest();
        next.last_timestamp_ms = h.timestamp_ms;
        *self = next;
        Ok(receipt_ids)
    }
}
