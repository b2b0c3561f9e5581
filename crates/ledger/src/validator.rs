//! One validator: the ledger application, Commonware marshal (block dissemination, backfill,
//! finalized-block archive) and the simplex consensus engine, wired over five p2p channels.
//!
//! The same function runs a validator in the deterministic simulation (simulated network,
//! in-memory storage) and in `verity node` (tokio runtime, authenticated TCP, files): it is
//! generic over the runtime context and the p2p channel types.

use crate::consensus::{genesis_block, ChainBlock, LedgerApp, MAX_BLOCK_BYTES};
use crate::proof::ValidatorSet;
use crate::state::{BlockError, Genesis};
use crate::TxError;
use commonware_broadcast::buffered;
use commonware_consensus::marshal::core::{Actor, Mailbox};
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::marshal::{Config as MarshalConfig, Start};
use commonware_consensus::simplex::config::{Config, Floor, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::{self, Engine};
use commonware_consensus::types::{Epoch, FixedEpocher, Height, ViewDelta};
use commonware_cryptography::certificate::{ConstantProvider, Verifier as _};
use commonware_cryptography::{ed25519, Digested, Digestible, Sha256, Signer};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use commonware_storage::archive::immutable;
use commonware_utils::ordered::Set;
use commonware_utils::{NZDuration, NZUsize, NZU16, NZU64};
use rand_core::CryptoRng;
use std::time::Duration;

/// Marshal's handle: finalized blocks and their certificates by height.
pub type MarshalMailbox = Mailbox<Scheme, Standard<ChainBlock>>;

/// The p2p channels a validator uses, by purpose. Every validator must number them alike.
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub certificate_requests: (S, R),
    pub block_requests: (S, R),
    pub blocks: (S, R),
}

/// Channel numbers of [`Channels`], in field order.
pub const CHANNELS: [u64; 5] = [0, 1, 2, 3, 4];

impl<S, R> From<[(S, R); 5]> for Channels<S, R> {
    /// The channels registered for [`CHANNELS`], in that order.
    fn from(
        [votes, certificates, certificate_requests, block_requests, blocks]: [(S, R); 5],
    ) -> Self {
        Channels {
            votes,
            certificates,
            certificate_requests,
            block_requests,
            blocks,
        }
    }
}

/// The largest p2p message a validator sends (all validators must agree on it).
pub fn max_message_size(validators: usize) -> u32 {
    commonware_p2p::max_message_size(&[
        simplex::max_payload_size::<Scheme, crate::consensus::Digest>(validators as u32),
        MAX_BLOCK_BYTES + 1024,
    ]) as u32
}

/// The validator set of a genesis, in the order consensus uses (sorted keys).
pub fn participants(genesis: &Genesis) -> Result<Set<ed25519::PublicKey>, TxError> {
    let set = ValidatorSet {
        chain_id: genesis.chain_id.clone(),
        validators: genesis.nodes.iter().map(|n| n.key).collect(),
    };
    verity_inclusion::participants(&set)
        .map_err(|e| TxError::Invalid(format!("genesis validators: {e}")))
}

/// The Commonware signing key holding the same Ed25519 secret as a Verity node key.
pub fn consensus_key(seed: [u8; 32]) -> ed25519::PrivateKey {
    use commonware_codec::DecodeExt;
    // Any 32 bytes are a valid Ed25519 secret, so decoding cannot fail.
    ed25519::PrivateKey::decode(commonware_codec::Copying(&seed[..]))
        .expect("32-byte Ed25519 secret")
}

pub use crate::consensus::verity_public;

/// A running validator.
pub struct Validator {
    pub app: LedgerApp,
    pub marshal: MarshalMailbox,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("genesis: {0}")]
    Genesis(#[from] TxError),
    #[error("this node's key is not a genesis validator")]
    NotAValidator,
    #[error("storage: {0}")]
    Storage(String),
    #[error("persisted block {0} is missing")]
    MissingBlock(u64),
    #[error("persisted blocks do not apply: {0}")]
    History(#[from] BlockError),
}

/// Starts a validator on `context` with storage partitions named after `prefix`. After a
/// restart it rebuilds the ledger state from the blocks marshal persisted, then continues.
pub async fn start<E, S, R, P, B>(
    context: E,
    key: ed25519::PrivateKey,
    genesis: &Genesis,
    prefix: &str,
    channels: Channels<S, R>,
    peers: P,
    blocker: B,
) -> Result<Validator, StartError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey> + Clone,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
{
    let pk = key.public_key();
    let participants = participants(genesis)?;
    let app = LedgerApp::new(genesis, verity_public(&pk))?;
    let gblock = ChainBlock::new(genesis_block(genesis)?);
    let gdigest = gblock.digest();
    let namespace = ValidatorSet {
        chain_id: genesis.chain_id.clone(),
        validators: vec![],
    }
    .namespace();
    let scheme = Scheme::signer(&namespace, participants, key).ok_or(StartError::NotAValidator)?;
    let page_cache = CacheRef::new(NZU16!(1024), NZUsize!(10));

    let marshal_cfg = MarshalConfig {
        provider: ConstantProvider::<Scheme, Epoch>::new(scheme.clone()),
        epocher: FixedEpocher::new(NZU64!(u64::MAX)),
        start: Start::Genesis(Digested::precomputed(gblock, gdigest)),
        partition_prefix: prefix.to_string(),
        mailbox_size: NZUsize!(1024),
        view_retention: ViewDelta::new(10),
        prunable_items_per_section: NZU64!(10),
        page_cache: page_cache.clone(),
        replay_buffer: NZUsize!(1024),
        key_write_buffer: NZUsize!(4096),
        value_write_buffer: NZUsize!(4096),
        block_codec_config: MAX_BLOCK_BYTES,
        max_repair: NZUsize!(10),
        max_pending_acks: NZUsize!(16),
        strategy: Sequential,
    };
    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: pk.clone(),
            peer_provider: peers.clone(),
            blocker: blocker.clone(),
            mailbox_size: NZUsize!(1024),
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.block_requests,
    );
    let (bcast, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: pk.clone(),
            mailbox_size: NZUsize!(1024),
            deque_size: 10,
            priority: false,
            codec_config: MAX_BLOCK_BYTES,
            peer_provider: peers,
            strategy: Sequential,
        },
    );
    bcast.start(channels.blocks);
    let archive_cfg = |name: &str, codec_config| immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-table"),
        freezer_table_initial_size: 64,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 10,
        freezer_key_partition: format!("{prefix}-{name}-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-value"),
        freezer_value_target_size: 1 << 20,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: NZUsize!(1024),
        freezer_key_write_buffer: NZUsize!(4096),
        freezer_value_write_buffer: NZUsize!(4096),
        ordinal_write_buffer: NZUsize!(4096),
    };
    let finalizations = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_cfg("fin", Scheme::certificate_codec_config_unbounded()),
    )
    .await
    .map_err(|e| StartError::Storage(e.to_string()))?;
    let blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_cfg("blocks", MAX_BLOCK_BYTES),
    )
    .await
    .map_err(|e| StartError::Storage(e.to_string()))?;
    let (actor, marshal, floor) =
        Actor::init(context.child("marshal"), finalizations, blocks, marshal_cfg).await;
    actor.start(app.clone(), buffer, resolver);
    let processed = floor.processed().map_or(0, |p| p.height().get());
    let mut history = Vec::new();
    for h in 1..=processed {
        let block = marshal
            .get_block(Height::new(h))
            .await
            .ok_or(StartError::MissingBlock(h))?;
        history.push(block.inner().block().clone());
    }
    app.restore(history)?;
    let inline = Inline::new(
        context.child("inline"),
        app.clone(),
        marshal.clone(),
        FixedEpocher::new(NZU64!(u64::MAX)),
    );
    let engine = Engine::new(
        context.child("engine"),
        Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            track_historical_votes: false,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: Floor::Genesis(gdigest),
            replay_buffer: NZUsize!(1024 * 1024),
            write_buffer: NZUsize!(1024 * 1024),
            page_cache,
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(3),
            view_retention: ViewDelta::new(10),
            skip: SkipPolicy::Enabled {
                timeout: Duration::from_secs(5),
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
        },
    );
    engine.start(
        channels.votes,
        channels.certificates,
        channels.certificate_requests,
    );
    Ok(Validator { app, marshal })
}
