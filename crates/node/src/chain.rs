//! The node's seat on the network: it runs one ledger validator (Commonware simplex over
//! authenticated TCP, blocks in Commonware storage under the data directory), gossips
//! transactions to the other validators, and serves inclusion proofs for settled receipts.

use anyhow::{anyhow, Context as _};
use commonware_consensus::types::Height;
use commonware_cryptography::{ed25519, ChaCha20Poly1305, Signer as _};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager as _, Receiver as _, Recipients, Sender as _};
use commonware_runtime::{tokio as cw_tokio, Quota, Spawner as _, Supervisor as _};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::ordered::Map;
use commonware_utils::{NZUsize, NZU32};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use verity_core::encode::{Decoder, Encoder};
use verity_core::{CoreError, Hash, NodeKey, PublicKey};
use verity_ledger::consensus::{LedgerApp, SubmitError};
use verity_ledger::proof::{encode_finalization, InclusionProof, ValidatorSet};
use verity_ledger::tx::{decode_txs, encode_txs, Action};
use verity_ledger::validator::{self, Channels, MarshalMailbox, CHANNELS};
use verity_ledger::{Genesis, ReceiptProof, Transaction};

/// How this node joins a network (the `network` section of its config file).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The genesis file every validator shares.
    pub genesis: PathBuf,
    /// Where this node accepts validator connections.
    pub p2p_listen: SocketAddr,
    /// Each validator's p2p address, by public key (this node's own entry is ignored).
    pub peers: BTreeMap<PublicKey, SocketAddr>,
}

/// The p2p channel carrying transaction batches between validators.
const TX_CHANNEL: u64 = 5;
/// Largest transaction batch accepted from a peer.
const MAX_BATCH: usize = 1024;

/// Messages per second each peer may send on each channel. Commonware sizes every channel's
/// mailbox as peers x this burst, so the quota is memory: 100,000/s made an idle node hold
/// 5.3 GB. A validator sends a few consensus messages per view and gossips transactions in
/// batches of up to 1,024, so 1,024/s per peer and channel leaves ample headroom.
const QUOTA: Quota = Quota::per_second(NZU32!(1024));

/// The running ledger as the HTTP handlers see it.
pub struct Chain {
    pub app: LedgerApp,
    marshal: MarshalMailbox,
    pub validators: ValidatorSet,
    gossip: mpsc::Sender<Vec<Transaction>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("receipt {0} is not settled in a finalized block")]
    NotSettled(Hash),
    #[error("block or certificate at height {0} is not available")]
    Unavailable(u64),
}

impl Chain {
    /// Queues transactions here and sends them to every other validator, keeping their order
    /// (an escrow and its settlement travel together).
    pub async fn submit(&self, txs: Vec<Transaction>) -> Result<(), SubmitError> {
        for tx in &txs {
            match self.app.submit(tx.clone()) {
                // Already queued (e.g. the client sent its escrow twice): keep going, so the
                // transaction that closes it is queued too.
                Ok(()) | Err(SubmitError::Duplicate) => {}
                Err(e) => return Err(e),
            }
        }
        // A full gossip queue only delays inclusion until this validator proposes.
        let _ = self.gossip.try_send(txs);
        Ok(())
    }

    /// The receipt's Merkle path in the block that settled it, that block's header and its
    /// finalization certificate: everything `verify_inclusion` needs.
    pub async fn inclusion_proof(&self, receipt: &Hash) -> Result<InclusionProof, ProofError> {
        let height = self
            .app
            .receipt_height(receipt)
            .ok_or(ProofError::NotSettled(*receipt))?;
        let block = self
            .marshal
            .get_block(Height::new(height))
            .await
            .ok_or(ProofError::Unavailable(height))?;
        let finalization = self
            .marshal
            .get_finalization(Height::new(height))
            .await
            .ok_or(ProofError::Unavailable(height))?;
        let block = block.inner().block();
        let receipts: Vec<_> = block
            .txs
            .iter()
            .filter_map(|tx| match &tx.action {
                Action::Settle { receipts, .. } => Some(receipts),
                _ => None,
            })
            .flatten()
            .collect();
        let ids: Vec<Hash> = receipts.iter().map(|r| r.id()).collect();
        let index = ids
            .iter()
            .position(|id| id == receipt)
            .ok_or(ProofError::NotSettled(*receipt))?;
        Ok(InclusionProof {
            receipt: receipts[index].clone(),
            path: ReceiptProof::new(&ids, index).ok_or(ProofError::NotSettled(*receipt))?,
            header: block.header.clone(),
            finalization: encode_finalization(&finalization),
        })
    }
}

fn encode_batch(txs: &[Transaction]) -> Vec<u8> {
    let mut e = Encoder::new();
    encode_txs(txs, &mut e);
    e.finish()
}

fn decode_batch(bytes: &[u8]) -> Result<Vec<Transaction>, CoreError> {
    let mut d = Decoder::new(bytes);
    let txs = decode_txs(&mut d, MAX_BATCH)?;
    d.expect_end()?;
    Ok(txs)
}

pub fn read_genesis(path: &std::path::Path) -> anyhow::Result<Genesis> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("malformed genesis {}", path.display()))
}

/// Starts the p2p network and this node's validator on the Commonware tokio runtime.
pub async fn start(
    context: cw_tokio::Context,
    key: &NodeKey,
    config: &NetworkConfig,
) -> anyhow::Result<Chain> {
    let genesis = read_genesis(&config.genesis)?;
    let signer = validator::consensus_key(key.secret_bytes());
    let me = signer.public_key();
    let participants = validator::participants(&genesis)?;
    if participants.position(&me).is_none() {
        return Err(anyhow!(
            "this node's key {} is not a validator in {}",
            key.public(),
            config.genesis.display()
        ));
    }
    let mut addresses = Vec::new();
    for pk in participants.iter() {
        let verity = validator::verity_public(pk);
        let addr = if *pk == me {
            config.p2p_listen
        } else {
            *config
                .peers
                .get(&verity)
                .ok_or_else(|| anyhow!("no p2p address configured for validator {verity}"))?
        };
        addresses.push((pk.clone(), Address::from(addr)));
    }
    let addresses: Map<ed25519::PublicKey, Address> = addresses
        .try_into()
        .map_err(|_| anyhow!("duplicate validator in genesis"))?;

    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let namespace = format!("verity-p2p/{}", genesis.chain_id);
    // Commonware's production settings refuse private addresses; a network whose validators
    // all sit on loopback or private addresses (a devnet, a LAN) gets its local settings with
    // fast redials instead.
    let private = config.peers.values().all(|a| match a.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        std::net::IpAddr::V6(ip) => ip.is_loopback(),
    });
    let settings = if private {
        lookup::Config::local
    } else {
        lookup::Config::recommended
    };
    let mut p2p_cfg = settings(
        handshake,
        namespace.as_bytes(),
        config.p2p_listen,
        NZUsize!(participants.len().max(1)),
        validator::max_message_size(participants.len()),
        NZUsize!(4096),
    );
    if private {
        p2p_cfg.dial_frequency = Duration::from_millis(200);
        p2p_cfg.peer_connection_cooldown = Duration::from_millis(250);
    }
    let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p_cfg);
    let _ = oracle.track(0, addresses);
    let channels = Channels::from(CHANNELS.map(|c| network.register(c, QUOTA)));
    let (mut tx_sender, mut tx_receiver) = network.register(TX_CHANNEL, QUOTA);
    network.start();
    let v = validator::start(
        context.child("validator"),
        signer,
        &genesis,
        "ledger",
        channels,
        oracle.clone(),
        oracle,
    )
    .await?;

    // Outgoing gossip: batches from the API to every other validator.
    let (gossip, mut outbox) = mpsc::channel::<Vec<Transaction>>(1024);
    context.child("gossip_out").spawn(|_| async move {
        while let Some(batch) = outbox.recv().await {
            tx_sender.send(Recipients::All, encode_batch(&batch), false);
        }
    });
    // Incoming gossip: queue what verifies; a peer's bad batch is dropped.
    let app = v.app.clone();
    context.child("gossip_in").spawn(|_| async move {
        while let Ok((peer, bytes)) = tx_receiver.recv().await {
            let batch = match decode_batch(bytes.as_ref()) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(?peer, "undecodable transaction batch: {e}");
                    continue;
                }
            };
            for tx in batch {
                if let Err(e) = app.submit(tx) {
                    tracing::debug!(?peer, "gossiped transaction not queued: {e}");
                }
            }
        }
    });
    Ok(Chain {
        app: v.app,
        marshal: v.marshal,
        validators: ValidatorSet {
            chain_id: genesis.chain_id.clone(),
            validators: participants.iter().map(validator::verity_public).collect(),
        },
        gossip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_batches_round_trip_and_reject_garbage() {
        let key = NodeKey::from_seed([3; 32]);
        let txs: Vec<Transaction> = (0..3)
            .map(|n| {
                Transaction::new(
                    &key,
                    "test",
                    n,
                    Action::Transfer {
                        to: key.public(),
                        amount: 1 + n,
                    },
                )
            })
            .collect();
        let bytes = encode_batch(&txs);
        assert_eq!(decode_batch(&bytes).unwrap(), txs);
        assert!(decode_batch(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_batch(&longer).is_err());
        let mut e = Encoder::new();
        e.u64(u64::MAX);
        assert!(decode_batch(&e.finish()).is_err());
    }
}
