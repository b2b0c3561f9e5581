//! The node as every service sees it: its configuration, key, stores, model cache, admission
//! lanes, metrics and (on a network) its ledger.

use crate::cache::ModelCache;
use crate::chain::{Chain, NetworkConfig};
use crate::metrics::Metrics;
use crate::scheduler::{Lane, PerClient, RateLimit, Scheduler, SingleFlight};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use verity_core::NodeKey;
use verity_engine::CostLimits;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Holds `node.key`, `verity.redb` and `blobs/`.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Largest model file accepted for publishing.
    #[serde(default = "default_max_model_bytes")]
    pub max_model_bytes: u64,
    /// Largest inference request body.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Join a network as a ledger validator. Without it the node serves `signed` mode alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkConfig>,
    /// Chat generations run at once; more wait in line.
    #[serde(default = "default_chat_concurrency")]
    pub chat_concurrency: usize,
    /// Chat requests that may wait for a generation slot; beyond that, 429.
    #[serde(default = "default_chat_queue")]
    pub chat_queue: usize,
    /// Tensor inferences (`/v1/infer`, and quorum executions for peers) run at once.
    #[serde(default = "default_infer_concurrency")]
    pub infer_concurrency: usize,
    /// Tensor inferences that may wait for a slot; beyond that, 429.
    #[serde(default = "default_infer_queue")]
    pub infer_queue: usize,
    /// zk circuit compilations and proofs run at once (each uses every core and much memory).
    #[serde(default = "default_zk_concurrency")]
    pub zk_concurrency: usize,
    /// zk jobs that may wait for a slot; beyond that, 429.
    #[serde(default = "default_zk_queue")]
    pub zk_queue: usize,
    /// Memory, in estimated bytes, for loaded models kept between requests (tensor engines,
    /// language models and zk circuits share it; least recently used go first).
    #[serde(default = "default_model_cache_bytes")]
    pub model_cache_bytes: u64,
    /// Seconds a connection may take to send a request head (idle keep-alive included).
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// Seconds a request may take to produce its response, reading its body included.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Open connections the node accepts; beyond that new ones are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections one client address may hold.
    #[serde(default = "default_client_connections")]
    pub client_connections: usize,
    /// Expensive requests (inference, chat, publishing, model fetches) one client address may
    /// have in flight; beyond that, 429 with `Retry-After`.
    #[serde(default = "default_client_concurrency")]
    pub client_concurrency: usize,
    /// Most bytes of values one tensor inference may hold at once; models above are refused.
    #[serde(default = "default_max_inference_bytes")]
    pub max_inference_bytes: u64,
    /// Most multiply-accumulates one tensor inference may take; models above are refused.
    #[serde(default = "default_max_inference_work")]
    pub max_inference_work: u64,
    /// Disk the model store may use, in bytes; a publish or fetch beyond it is refused.
    #[serde(default = "default_max_store_bytes")]
    pub max_store_bytes: u64,
    /// Publishes one client address may make per hour.
    #[serde(default = "default_publishes_per_hour")]
    pub publishes_per_hour: u32,
    /// Keys allowed to publish; empty means anyone (a public hub).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publishers: Vec<verity_core::PublicKey>,
    /// Testing fault detection only: sign deliberately corrupted outputs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tamper_outputs: bool,
}

fn default_max_model_bytes() -> u64 {
    512 << 20
}
fn default_max_request_bytes() -> usize {
    16 << 20
}
fn default_chat_concurrency() -> usize {
    1
}
fn default_chat_queue() -> usize {
    16
}
fn default_infer_concurrency() -> usize {
    4
}
fn default_infer_queue() -> usize {
    64
}
fn default_zk_concurrency() -> usize {
    1
}
fn default_zk_queue() -> usize {
    8
}
fn default_model_cache_bytes() -> u64 {
    4 << 30
}
fn default_max_inference_bytes() -> u64 {
    CostLimits::default().peak_bytes
}
fn default_max_inference_work() -> u64 {
    CostLimits::default().work
}
fn default_max_store_bytes() -> u64 {
    64 << 30
}
fn default_publishes_per_hour() -> u32 {
    120
}
fn default_header_timeout_secs() -> u64 {
    10
}
fn default_request_timeout_secs() -> u64 {
    300
}
fn default_max_connections() -> usize {
    1024
}
fn default_client_connections() -> usize {
    128
}
fn default_client_concurrency() -> usize {
    8
}

impl NodeConfig {
    /// The most a tensor model may cost to be admitted (published, fetched or loaded).
    pub fn cost_limits(&self) -> CostLimits {
        CostLimits {
            peak_bytes: self.max_inference_bytes,
            work: self.max_inference_work,
        }
    }

    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            data_dir,
            listen,
            max_model_bytes: default_max_model_bytes(),
            max_request_bytes: default_max_request_bytes(),
            chat_concurrency: default_chat_concurrency(),
            chat_queue: default_chat_queue(),
            infer_concurrency: default_infer_concurrency(),
            infer_queue: default_infer_queue(),
            zk_concurrency: default_zk_concurrency(),
            zk_queue: default_zk_queue(),
            model_cache_bytes: default_model_cache_bytes(),
            header_timeout_secs: default_header_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_connections: default_max_connections(),
            client_connections: default_client_connections(),
            client_concurrency: default_client_concurrency(),
            max_inference_bytes: default_max_inference_bytes(),
            max_inference_work: default_max_inference_work(),
            max_store_bytes: default_max_store_bytes(),
            publishes_per_hour: default_publishes_per_hour(),
            publishers: Vec::new(),
            network: None,
            tamper_outputs: false,
        }
    }
}

/// Distinct models fetched from peers at once (each streams to disk, then is read once to
/// check it).
const MAX_CONCURRENT_FETCHES: usize = 2;
/// Publications waiting to be checked (read, quantized, loaded) behind the one being checked.
const PUBLISH_QUEUE: usize = 8;

pub struct Node {
    pub config: NodeConfig,
    pub key: NodeKey,
    pub store: Arc<Store>,
    /// Loaded models (tensor engines, language models, zk circuits), read from `store`.
    pub models: ModelCache,
    pub metrics: Metrics,
    /// Admission to generation, inference and proving.
    pub scheduler: Scheduler,
    /// Expensive requests in flight per client address.
    pub client_requests: Arc<PerClient>,
    /// Publishes per client address.
    pub publish_rate: RateLimit,
    /// Model fetches from peers: one per model id, a few at once.
    pub fetches: SingleFlight,
    /// The ledger this node validates, when it is part of a network.
    pub chain: Option<Chain>,
    /// Client for other nodes' APIs (quorum execution, model fetch).
    pub http: reqwest::Client,
}

/// What a ledger-backed operation finds on a node started without a network.
#[derive(Debug, thiserror::Error)]
#[error("this node runs without a ledger (no `network` in its config)")]
pub struct NoLedger;

/// The node's signing key from its data directory, created on first start.
pub(crate) fn load_key(config: &NodeConfig) -> anyhow::Result<NodeKey> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(NodeKey::load_or_create(&config.data_dir.join("node.key"))?)
}

impl Node {
    pub(crate) fn open(
        config: NodeConfig,
        key: NodeKey,
        chain: Option<Chain>,
    ) -> anyhow::Result<Node> {
        let store = Arc::new(Store::open(&config.data_dir)?);
        Ok(Node {
            models: ModelCache::new(store.clone(), config.model_cache_bytes),
            scheduler: Scheduler {
                chat: Lane::new("generating", config.chat_concurrency, config.chat_queue),
                infer: Lane::new(
                    "running inferences",
                    config.infer_concurrency,
                    config.infer_queue,
                ),
                prove: Lane::new("proving", config.zk_concurrency, config.zk_queue),
                publish: Lane::new("checking publications", 1, PUBLISH_QUEUE),
            },
            client_requests: Arc::new(PerClient::new(config.client_concurrency)),
            publish_rate: RateLimit::new(config.publishes_per_hour),
            fetches: SingleFlight::new(MAX_CONCURRENT_FETCHES),
            config,
            key,
            store,
            metrics: Metrics::new(),
            chain,
            http: reqwest::Client::new(),
        })
    }

    /// The ledger, if this node is on a network.
    pub fn chain(&self) -> Result<&Chain, NoLedger> {
        self.chain.as_ref().ok_or(NoLedger)
    }
}
