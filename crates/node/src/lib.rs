//! The Verity node: content-addressed model store, receipts database, executor, HTTP API and
//! metrics. `verity node` and `verity devnet` run it; tests start it in-process.

pub mod api;
pub mod chain;
pub mod chat;
pub mod error;
pub mod executor;
pub mod ledger_api;
pub mod metrics;
pub mod openai;
pub mod peers;
pub mod quorum;
pub mod store;
pub mod zk;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use verity_core::NodeKey;

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
    pub network: Option<chain::NetworkConfig>,
    /// Chat generations run at once; more wait in line.
    #[serde(default = "default_chat_concurrency")]
    pub chat_concurrency: usize,
    /// Chat requests that may wait for a generation slot; beyond that, 429.
    #[serde(default = "default_chat_queue")]
    pub chat_queue: usize,
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
/// Largest chat-completions body (the canonical request holds at most 64 KiB of messages;
/// JSON escapes may inflate that several times).
const MAX_CHAT_BODY_BYTES: usize = 1 << 20;

impl NodeConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            data_dir,
            listen,
            max_model_bytes: default_max_model_bytes(),
            max_request_bytes: default_max_request_bytes(),
            chat_concurrency: default_chat_concurrency(),
            chat_queue: default_chat_queue(),
            network: None,
            tamper_outputs: false,
        }
    }
}

pub struct Node {
    pub config: NodeConfig,
    pub key: NodeKey,
    pub store: Arc<store::Store>,
    pub executor: executor::Executor,
    pub metrics: metrics::Metrics,
    /// Admission to chat generation.
    pub chat: chat::ChatSlots,
    /// The ledger this node validates, when it is part of a network.
    pub chain: Option<chain::Chain>,
    /// Client for other nodes' APIs (quorum execution, model fetch).
    pub http: reqwest::Client,
    /// Compiled zk circuits of the models served in zk mode.
    pub circuits: zk::Circuits,
}

fn load_key(config: &NodeConfig) -> anyhow::Result<NodeKey> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(NodeKey::load_or_create(&config.data_dir.join("node.key"))?)
}

impl Node {
    fn open(
        config: NodeConfig,
        key: NodeKey,
        chain: Option<chain::Chain>,
    ) -> anyhow::Result<Arc<Node>> {
        let store = Arc::new(store::Store::open(&config.data_dir)?);
        let executor = executor::Executor::new(store.clone());
        let chat = chat::ChatSlots::new(config.chat_concurrency, config.chat_queue);
        Ok(Arc::new(Node {
            chat,
            config,
            key,
            store,
            executor,
            circuits: Default::default(),
            metrics: metrics::Metrics::new(),
            chain,
            http: reqwest::Client::new(),
        }))
    }

    /// The ledger, or the error a handler returns when this node has none.
    pub fn chain(&self) -> Result<&chain::Chain, error::ApiError> {
        self.chain.as_ref().ok_or_else(|| {
            error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "no_ledger",
                "this node runs without a ledger (no `network` in its config)",
            )
        })
    }
}

async fn count_errors(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status().as_u16() >= 400 {
        node.metrics
            .http_errors
            .get_or_create(&metrics::HttpLabels {
                status: resp.status().as_u16(),
            })
            .inc();
    }
    resp
}

pub fn router(node: Arc<Node>) -> Router {
    let upload_limit = (node.config.max_model_bytes as usize).saturating_add(64 << 20);
    Router::new()
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .route(
            "/v1/models",
            get(api::list_models)
                .post(api::publish)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/models/{reference}", get(api::show_model))
        .route("/v1/models/{reference}/file", get(api::download_model))
        .route(
            "/v1/chat/completions",
            post(chat::completions).layer(DefaultBodyLimit::max(MAX_CHAT_BODY_BYTES)),
        )
        .route("/v1/infer", post(api::infer))
        .route("/v1/execute", post(api::execute_for_peer))
        .route("/v1/receipts/{id}", get(api::get_receipt))
        .route("/v1/receipts/{id}/proof", get(ledger_api::receipt_proof))
        .route("/v1/tx", post(ledger_api::submit_tx))
        .route("/v1/ledger", get(ledger_api::status))
        .route("/v1/prices/{model}", get(ledger_api::price))
        .route("/v1/blocks/{height}", get(ledger_api::block))
        .route("/v1/disagreements", get(ledger_api::disagreements))
        .route("/v1/accounts/{key}", get(ledger_api::account))
        .route("/v1/requests/{hash}", get(ledger_api::request_status))
        .layer(DefaultBodyLimit::max(node.config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            count_errors,
        ))
        .with_state(node)
}

/// A node serving on a bound socket.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the node's storage, binds its listener and serves in a background task, without a
/// ledger (`signed` mode only).
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let key = load_key(&config)?;
    serve(Node::open(config, key, None)?).await
}

/// Starts the node as a validator of its network (`config.network`) on Commonware's tokio
/// runtime, then serves the API on the same runtime.
pub async fn start_networked(
    context: commonware_runtime::tokio::Context,
    config: NodeConfig,
) -> anyhow::Result<RunningNode> {
    let key = load_key(&config)?;
    let network = config
        .network
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the config has no `network` section"))?;
    let chain = chain::start(context, &key, &network).await?;
    serve(Node::open(config, key, Some(chain))?).await
}

async fn serve(node: Arc<Node>) -> anyhow::Result<RunningNode> {
    let listener = tokio::net::TcpListener::bind(node.config.listen).await?;
    let addr = listener.local_addr()?;
    let app = router(node.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(RunningNode { addr, node, task })
}
