//! The chain's starting point: funded accounts, the initial (validator) nodes with their
//! locked stake, and the parameters every later transaction is judged by.
//!
//! The node checks here are also the ones `RegisterNode` applies, so a node registered at
//! genesis and one registered by a transaction obey the same rules.

use serde::{Deserialize, Serialize};
use verity_core::{Hash, PublicKey};

use super::{LedgerState, NodeEntry};
use crate::block::{receipts_root, txs_root, Block, BlockHeader};
use crate::error::TxError;

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
    /// Stake taken from an executor whose receipt the validators' verdict contradicts, and
    /// from a validator whose verdict contradicts the deciding 2f+1 (docs/economics.md says
    /// why this figure makes lying unprofitable).
    #[serde(default = "default_slash")]
    pub slash: u64,
    /// How long (block time, ms) the validators have to decide a dispute; after it the client
    /// is refunded and nobody is paid or slashed.
    #[serde(default = "default_verdict_window_ms")]
    pub verdict_window_ms: u64,
    /// What claiming a model name costs (paid to the validators): squatting many names costs
    /// many fees.
    #[serde(default = "default_name_fee")]
    pub name_fee: u64,
}

fn default_spares() -> u32 {
    1
}
fn default_slash() -> u64 {
    1_000
}
fn default_verdict_window_ms() -> u64 {
    120_000
}
fn default_name_fee() -> u64 {
    1_000
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_stake: 1_000,
            refund_after: 100,
            quorum_spares: default_spares(),
            slash: default_slash(),
            verdict_window_ms: default_verdict_window_ms(),
            name_fee: default_name_fee(),
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

/// The starting state: funded accounts and the initial (validator) nodes with locked stake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub accounts: Vec<(PublicKey, u64)>,
    pub nodes: Vec<GenesisNode>,
    #[serde(default)]
    pub params: Params,
}

/// Checks a node's API endpoint: an http(s) URL of at most 256 bytes without whitespace
/// (other nodes call it).
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), TxError> {
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
pub(super) fn check_capabilities(caps: &[String]) -> Result<(), TxError> {
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

impl LedgerState {
    pub fn from_genesis(g: &Genesis) -> Result<LedgerState, TxError> {
        let mut s = LedgerState::empty(g.chain_id.clone(), g.params.clone());
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
        s.validators = g.nodes.iter().map(|n| n.key).collect();
        s.validators.sort();
        let genesis = s.genesis_block();
        s.last_digest = genesis.digest();
        s.committed_root = genesis.header.state_root;
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
}
