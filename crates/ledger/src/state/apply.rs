//! The transition function: how a transaction, and a block of them, changes the state.
//!
//! Every check comes before the first mutation, so a rejected transaction changes nothing;
//! a block is applied to a copy and kept only if every transaction applies and every root
//! matches. docs/economics.md states the rules each action enforces.

use std::collections::{BTreeMap, BTreeSet};

use verity_core::manifest::validate_name_version;
use verity_core::tensor::hash_map;
use verity_core::verify::{verify_receipt, Expectations};
use verity_core::{Hash, Mode, ModelId, PublicKey, Receipt, TensorMap};

use super::genesis::{check_capabilities, check_endpoint};
use super::{Closed, Dispute, Escrow, Judgement, LedgerState, ModelEntry, NodeEntry, Question};
use crate::block::{receipts_root, txs_root, Block, BlockHeader};
use crate::error::TxError;
use crate::mempool::CheckedTx;
use crate::tx::{Action, Transaction};

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
    /// Builds the next block from candidate transactions (signatures already checked): invalid
    /// ones are left out (with their reasons). Does not change `self`.
    pub fn propose(
        &self,
        candidates: Vec<CheckedTx>,
        proposer: PublicKey,
        timestamp_ms: u64,
    ) -> Proposal {
        let mut next = self.clone();
        let height = self.height + 1;
        let timestamp_ms = timestamp_ms.max(self.last_timestamp_ms);
        next.begin_block(height, timestamp_ms);
        let mut txs = Vec::new();
        let mut rejected = Vec::new();
        let mut receipt_ids = Vec::new();
        for tx in candidates.into_iter().map(CheckedTx::into_tx) {
            match next.apply_signed(&tx, height) {
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
        next.committed_root = header.state_root;
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
        self.apply_block_checked(block, &[])
    }

    /// [`Self::apply_block`], skipping the signature check of transaction `i` when
    /// `checked[i]` holds: the caller has verified exactly that transaction before (it waits in
    /// the caller's pool, signature and all).
    pub fn apply_block_checked(
        &mut self,
        block: &Block,
        checked: &[bool],
    ) -> Result<Vec<Hash>, BlockError> {
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
        next.begin_block(h.height, h.timestamp_ms);
        let mut receipt_ids = Vec::new();
        for (index, tx) in block.txs.iter().enumerate() {
            let applied = if checked.get(index).copied().unwrap_or(false) {
                next.apply_signed(tx, h.height)
            } else {
                next.apply_tx(tx, h.height)
            };
            receipt_ids.extend(applied.map_err(|error| BlockError::Tx { index, error })?);
        }
        if h.receipts_root != receipts_root(&receipt_ids) {
            return Err(BlockError::Root("receipts"));
        }
        next.height = h.height;
        if h.state_root != next.state_root() {
            return Err(BlockError::Root("state"));
        }
        next.committed_root = h.state_root;
        next.last_digest = block.digest();
        next.last_timestamp_ms = h.timestamp_ms;
        *self = next;
        Ok(receipt_ids)
    }

    /// What every block does before its transactions: draws the executors of the quorum
    /// requests the last block opened, and closes the disputes whose verdict window has
    /// passed at this block's time.
    fn begin_block(&mut self, height: u64, timestamp_ms: u64) {
        self.last_timestamp_ms = timestamp_ms;
        self.draw_executors();
        let window = self.params.verdict_window_ms;
        let expired: Vec<Hash> = self
            .disputes
            .iter()
            .filter(|(_, d)| d.opened_ms.saturating_add(window) <= timestamp_ms)
            .map(|(r, _)| *r)
            .collect();
        for request in expired {
            self.judge(&request, None, height);
        }
    }

    /// Draws the executors of the quorum requests the last block opened, seeded by that
    /// block's digest.
    fn draw_executors(&mut self) {
        let seed = self.last_digest;
        for request in std::mem::take(&mut self.undrawn) {
            let Some(k) = self.escrows.get(&request).map(|e| e.mode.executors()) else {
                continue;
            };
            let eligible = self.eligible_executors(&seed, &request, k);
            if let Some(e) = self.escrows.get_mut(&request) {
                e.eligible = eligible;
            }
        }
    }

    /// Applies one transaction at `height`. On error nothing changes. Returns the ids of the
    /// receipts it settled.
    pub fn apply_tx(&mut self, tx: &Transaction, height: u64) -> Result<Vec<Hash>, TxError> {
        if !tx.signature_is_valid(&self.chain_id) {
            return Err(TxError::Signature);
        }
        self.apply_signed(tx, height)
    }

    /// [`Self::apply_tx`] for a transaction whose signature is known to be valid.
    fn apply_signed(&mut self, tx: &Transaction, height: u64) -> Result<Vec<Hash>, TxError> {
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
            Action::Transfer { to, amount } => self.transfer(sender, to, *amount)?,
            Action::RegisterNode {
                stake,
                endpoint,
                capabilities,
            } => self.register_node(sender, *stake, endpoint, capabilities)?,
            Action::RegisterName { name } => self.register_name(sender, name)?,
            Action::RegisterModel {
                model,
                name,
                version,
                price,
            } => self.register_model(sender, model, name, version, *price)?,
            Action::SetPrice {
                name,
                version,
                price,
            } => self.set_price(sender, name, version, *price)?,
            Action::OpenRequest {
                request,
                model,
                listing,
                mode,
                node,
            } => self.open_request(
                sender,
                request,
                (model, listing),
                *mode,
                node.as_ref(),
                height,
            )?,
            Action::Settle {
                request,
                receipts,
                proof,
            } => return self.settle(sender, request, receipts, *proof, height),
            Action::Disagree {
                request,
                inputs,
                receipts,
            } => self.disagree(sender, request, inputs, receipts)?,
            Action::Verdict { request, output } => {
                return self.verdict(sender, request, *output, height)
            }
            Action::Refund { request } => self.refund(sender, request, height)?,
        }
        Ok(vec![])
    }

    // Balances and stakes.

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

    fn transfer(&mut self, sender: &PublicKey, to: &PublicKey, amount: u64) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        self.debit(sender, amount)?;
        self.credit(to, amount);
        Ok(())
    }

    /// Registers the sender as a node, moving `stake` from its balance into locked stake.
    fn register_node(
        &mut self,
        sender: &PublicKey,
        stake: u64,
        endpoint: &str,
        capabilities: &[String],
    ) -> Result<(), TxError> {
        if self.nodes.contains_key(sender) {
            return Err(TxError::NodeExists(*sender));
        }
        if stake < self.params.min_stake {
            return Err(TxError::StakeTooLow {
                stake,
                min: self.params.min_stake,
            });
        }
        check_endpoint(endpoint)?;
        check_capabilities(capabilities)?;
        self.debit(sender, stake)?;
        self.nodes.insert(
            *sender,
            NodeEntry {
                stake,
                endpoint: endpoint.to_string(),
                capabilities: capabilities.to_vec(),
            },
        );
        Ok(())
    }

    // The model registry: names belong to whoever claimed them first; only a name's owner
    // registers versions under it, and only a model's publisher prices it.

    /// Claims `name` for the sender, paying `name_fee` to the validators.
    fn register_name(&mut self, sender: &PublicKey, name: &str) -> Result<(), TxError> {
        validate_name_version(name, "1.0").map_err(TxError::Invalid)?;
        if let Some(owner) = self.name_owner(name) {
            return Err(TxError::NameTaken {
                name: name.to_string(),
                owner,
            });
        }
        let fee = self.params.name_fee;
        self.debit(sender, fee)?;
        self.names.insert(name.to_string(), *sender);
        // The fee goes to the validators (what does not divide, to the first).
        let validators = self.validators.clone();
        let each = fee / validators.len().max(1) as u64;
        for v in &validators {
            self.credit(v, each);
        }
        if let Some(first) = validators.first() {
            self.credit(first, fee - each * validators.len() as u64);
        }
        Ok(())
    }

    fn register_model(
        &mut self,
        publisher: &PublicKey,
        model: &ModelId,
        name: &str,
        version: &str,
        price: u64,
    ) -> Result<(), TxError> {
        validate_name_version(name, version).map_err(TxError::Invalid)?;
        match self.name_owner(name) {
            Some(owner) if owner == *publisher => {}
            Some(owner) => {
                return Err(TxError::NameTaken {
                    name: name.to_string(),
                    owner,
                })
            }
            None => return Err(TxError::NameUnclaimed(name.to_string())),
        }
        if self.listing(name, version).is_some() {
            return Err(TxError::Invalid(format!(
                "{name}@{version} is already registered"
            )));
        }
        self.models.insert(
            (name.to_string(), version.to_string()),
            ModelEntry {
                model: *model,
                publisher: *publisher,
                name: name.to_string(),
                version: version.to_string(),
                price,
            },
        );
        Ok(())
    }

    fn set_price(
        &mut self,
        sender: &PublicKey,
        name: &str,
        version: &str,
        price: u64,
    ) -> Result<(), TxError> {
        let listing = format!("{name}@{version}");
        let entry = self
            .models
            .get_mut(&(name.to_string(), version.to_string()))
            .ok_or_else(|| TxError::UnknownListing(listing.clone()))?;
        if entry.publisher != *sender {
            return Err(TxError::NotPublisher(listing));
        }
        entry.price = price;
        Ok(())
    }

    // Requests: escrowed when opened, then settled, judged or refunded.

    /// Holds `price * max(k, 1)` from the client and fixes who may sign for the request: the
    /// named node in signed and zk mode, the first ranked executors for a quorum.
    fn open_request(
        &mut self,
        client: &PublicKey,
        request: &Hash,
        (model, listing): (&ModelId, &str),
        mode: Mode,
        node: Option<&PublicKey>,
        height: u64,
    ) -> Result<(), TxError> {
        let executors = mode.executors();
        if executors > verity_core::request::MAX_QUORUM {
            return Err(TxError::QuorumSize(executors));
        }
        if self.escrows.contains_key(request) || self.closed.contains_key(request) {
            return Err(TxError::RequestExists(*request));
        }
        // The one fee rule (a fee that overflows saturates, and no balance pays it).
        let amount = self
            .fee(listing, model, mode)
            .ok_or_else(|| TxError::UnknownListing(format!("{listing} listing {model}")))?;
        // A named node is eligible at once; a quorum is drawn by the next block.
        let eligible = match (executors, node) {
            (0, Some(n)) if self.nodes.contains_key(n) => vec![*n],
            (0, _) => {
                return Err(TxError::Invalid(
                    "a signed- or zk-mode request names one registered node".into(),
                ))
            }
            (k, None) => {
                let available = self.quorum_nodes().count();
                if available < k as usize {
                    return Err(TxError::Invalid(format!(
                        "{k} executors asked, {available} quorum nodes registered"
                    )));
                }
                vec![]
            }
            (_, Some(_)) => {
                return Err(TxError::Invalid(
                    "a quorum request cannot name its executors".into(),
                ))
            }
        };

        self.debit(client, amount)?;
        self.escrows.insert(
            *request,
            Escrow {
                client: *client,
                model: *model,
                mode,
                amount,
                opened_at: height,
                eligible,
            },
        );
        if executors > 0 {
            self.undrawn.push(*request);
        }
        Ok(())
    }

    /// The escrow of a request that is open and not under judgement.
    fn open_escrow(&self, request: &Hash) -> Result<Escrow, TxError> {
        if self.disputes.contains_key(request) {
            return Err(TxError::Disputed(*request));
        }
        self.escrows
            .get(request)
            .cloned()
            .ok_or(TxError::UnknownRequest(*request))
    }

    /// Checks receipts for `request`: valid signatures, the escrowed model and mode, distinct
    /// eligible executors. Returns their output hashes.
    fn check_receipts(
        &self,
        request: &Hash,
        escrow: &Escrow,
        receipts: &[Receipt],
    ) -> Result<Vec<Hash>, TxError> {
        if escrow.eligible.is_empty() {
            return Err(TxError::Invalid(
                "the request's executors are drawn when the block after its escrow is built".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        receipts
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let bad = |reason: String| TxError::Receipt { index, reason };
                let expect = Expectations {
                    request: Some(*request),
                    model: Some(escrow.model),
                    chain: Some(&self.chain_id),
                    ..Default::default()
                };
                verify_receipt(r, &expect).map_err(|e| bad(e.to_string()))?;
                if r.mode != escrow.mode {
                    return Err(bad(format!(
                        "mode {} does not match the escrow's {}",
                        r.mode, escrow.mode
                    )));
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

    /// Pays each of the k agreeing executors its share of the escrow and returns the ids of
    /// the receipts settled. A zk receipt is not paid yet: its executor names the proof it
    /// serves, and the validators judge that proof first.
    fn settle(
        &mut self,
        sender: &PublicKey,
        request: &Hash,
        receipts: &[Receipt],
        proof: Option<Hash>,
        height: u64,
    ) -> Result<Vec<Hash>, TxError> {
        let escrow = self.open_escrow(request)?;
        let k = signers(escrow.mode.executors());
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
        match (escrow.mode, proof) {
            (Mode::Zk, Some(proof)) => {
                // The proof hash is the executor's own statement (it serves that proof).
                if *sender != receipts[0].node {
                    return Err(TxError::Invalid(
                        "a zk settlement is sent by the executor that serves the proof".into(),
                    ));
                }
                self.open_dispute(request, Question::Proof { proof }, receipts);
                return Ok(vec![]);
            }
            (Mode::Zk, None) => {
                return Err(TxError::Invalid(
                    "a zk settlement names the hash of its proof".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(TxError::Invalid(
                    "only a zk settlement carries a proof".into(),
                ))
            }
            (_, None) => {}
        }
        let share = escrow.amount / k as u64;
        for r in receipts {
            self.credit(&r.node, share);
        }
        // Integer division leftovers go back to the client.
        self.credit(&escrow.client, escrow.amount - share * k as u64);
        self.escrows.remove(request);
        self.closed.insert(*request, Closed::Settled { height });
        Ok(receipts.iter().map(Receipt::id).collect())
    }

    /// Puts a quorum whose receipts disagree before the validators, who re-execute it on
    /// `inputs`. Only one of the request's eligible executors may file it (it is the party
    /// whose payment the disagreement holds up).
    fn disagree(
        &mut self,
        sender: &PublicKey,
        request: &Hash,
        inputs: &TensorMap,
        receipts: &[Receipt],
    ) -> Result<(), TxError> {
        let escrow = self.open_escrow(request)?;
        if escrow.mode.executors() < 2 || receipts.len() < 2 || receipts.len() > 16 {
            return Err(TxError::Invalid(
                "a disagreement needs 2 to 16 receipts of a quorum".into(),
            ));
        }
        if !escrow.eligible.contains(sender) {
            return Err(TxError::Invalid(
                "only an eligible executor of the request may file a disagreement".into(),
            ));
        }
        let outputs = self.check_receipts(request, &escrow, receipts)?;
        if outputs.iter().all(|o| *o == outputs[0]) {
            return Err(TxError::NoDisagreement);
        }
        let input_hash = hash_map(inputs);
        if let Some(index) = receipts.iter().position(|r| r.input_hash != input_hash) {
            return Err(TxError::Receipt {
                index,
                reason: "its input hash is not the hash of the filed inputs".into(),
            });
        }
        let question = Question::Quorum {
            inputs: inputs.clone(),
        };
        self.open_dispute(request, question, receipts);
        Ok(())
    }

    fn open_dispute(&mut self, request: &Hash, question: Question, receipts: &[Receipt]) {
        self.disputes.insert(
            *request,
            Dispute {
                question,
                opened_ms: self.last_timestamp_ms,
                receipts: receipts.to_vec(),
                verdicts: BTreeMap::new(),
            },
        );
    }

    /// Records a validator's verdict; once `verdict_threshold` verdicts name the same output,
    /// the dispute is decided. Returns the receipts settled by the decision (a zk receipt
    /// whose proof holds).
    fn verdict(
        &mut self,
        validator: &PublicKey,
        request: &Hash,
        output: Hash,
        height: u64,
    ) -> Result<Vec<Hash>, TxError> {
        if !self.validators.contains(validator) {
            return Err(TxError::Invalid(
                "only a validator may submit a verdict".into(),
            ));
        }
        let threshold = self.verdict_threshold();
        let dispute = self
            .disputes
            .get_mut(request)
            .ok_or(TxError::NotDisputed(*request))?;
        if dispute.verdicts.contains_key(validator) {
            return Err(TxError::Invalid(format!(
                "validator {validator} already gave its verdict on {request}"
            )));
        }
        dispute.verdicts.insert(*validator, output);
        let agreeing = dispute.verdicts.values().filter(|o| **o == output).count();
        if agreeing < threshold {
            return Ok(vec![]);
        }
        Ok(self.judge(request, Some(output), height))
    }

    /// Closes a dispute. With a verdict: executors whose receipts it contradicts and
    /// validators whose verdicts it contradicts lose `slash` of their stake each; the pool
    /// pays the executors it confirms their share, then the agreeing validators (for their
    /// re-execution). A quorum's client is refunded in full (it got no answer); a zk escrow
    /// pays its executor if the proof held and is refunded if it did not. Without a verdict
    /// (the window closed), the client is refunded and nobody gains or loses stake.
    fn judge(&mut self, request: &Hash, verdict: Option<Hash>, height: u64) -> Vec<Hash> {
        let (Some(dispute), Some(escrow)) =
            (self.disputes.remove(request), self.escrows.remove(request))
        else {
            return vec![];
        };
        let mut slashed = Vec::new();
        let mut settled = vec![];
        let mut client_refund = escrow.amount;
        if let Some(verdict) = verdict {
            let mut pool = 0u64;
            let mut confirmed = Vec::new();
            for r in &dispute.receipts {
                if r.output_hash == verdict {
                    confirmed.push(r.node);
                } else {
                    let taken = self.slash(&r.node);
                    pool += taken;
                    slashed.push((r.node, taken));
                }
            }
            // A validator whose receipt was judged wrong gets nothing back from its own slash.
            let liars: Vec<PublicKey> = slashed.iter().map(|(k, _)| *k).collect();
            let mut agreeing = Vec::new();
            for (v, output) in &dispute.verdicts {
                if *output == verdict {
                    if !liars.contains(v) {
                        agreeing.push(*v);
                    }
                } else {
                    let taken = self.slash(v);
                    pool += taken;
                    slashed.push((*v, taken));
                }
            }
            let k = signers(escrow.mode.executors()) as u64;
            let share = escrow.amount / k;
            if escrow.mode == Mode::Zk && !confirmed.is_empty() {
                // The proof held: the executor is paid from the escrow, as if settled.
                self.credit(&confirmed[0], escrow.amount);
                client_refund = 0;
                settled = dispute.receipts.iter().map(Receipt::id).collect();
            } else {
                for node in &confirmed {
                    let paid = share.min(pool);
                    self.credit(node, paid);
                    pool -= paid;
                }
            }
            let each = pool / agreeing.len().max(1) as u64;
            for v in &agreeing {
                self.credit(v, each);
                pool -= each;
            }
            client_refund += pool;
        }
        self.credit(&escrow.client, client_refund);
        let height_closed = if settled.is_empty() {
            Closed::Judged { height }
        } else {
            Closed::Settled { height }
        };
        self.closed.insert(*request, height_closed);
        self.judgements.push(Judgement {
            request: *request,
            height,
            question: dispute.question,
            receipts: dispute.receipts,
            verdict,
            slashed,
        });
        settled
    }

    /// Takes up to `slash` from a node's stake and returns what was taken. A node left below
    /// the minimum stake is deregistered (no longer drawn), and the rest returns to its
    /// balance.
    fn slash(&mut self, key: &PublicKey) -> u64 {
        let (min, amount) = (self.params.min_stake, self.params.slash);
        let Some(node) = self.nodes.get_mut(key) else {
            return 0;
        };
        let taken = node.stake.min(amount);
        node.stake -= taken;
        if node.stake < min {
            let rest = node.stake;
            self.nodes.remove(key);
            self.credit(key, rest);
        }
        taken
    }

    /// Returns an escrow nobody settled to its client, once `refund_after` blocks have passed.
    fn refund(&mut self, sender: &PublicKey, request: &Hash, height: u64) -> Result<(), TxError> {
        let escrow = self.open_escrow(request)?;
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
        Ok(())
    }
}
