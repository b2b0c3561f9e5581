//! The Verity node: content-addressed model store, receipts database, executor, HTTP API and
//! metrics. `verity node` and `verity devnet` run it; tests start it in-process.
//!
//! Layers, each importing only those below it:
//! - [`http`]: handlers; they read requests, call services and map their errors to statuses;
//! - services: [`hub`], [`inference`], [`quorum`], [`settle`], [`chat`], [`zk`], [`peers`];
//! - [`node`] (the shared context) over the stores and machinery: [`store`], [`cache`],
//!   [`scheduler`], [`executor`], [`chain`], [`metrics`].

pub mod cache;
pub mod chain;
pub mod chat;
pub mod executor;
pub mod http;
pub mod hub;
pub mod inference;
pub mod judge;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod quorum;
pub mod scheduler;
pub mod settle;
pub mod store;
pub mod zk;

pub use node::{Node, NodeConfig};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::{infer, ledger, limits, models};
use node::load_key;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest chat-completions body (the canonical request holds at most 64 KiB of messages;
/// JSON escapes may inflate that several times).
const MAX_CHAT_BODY_BYTES: usize = 1 << 20;

async fn count_errors(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if resp.status().as_u16() >= 400 {
        node.metrics
            .http_errors
            .get_or_create(&metrics::HttpLabels {
                status: resp.status().as_u16(),
            })
            .inc();
    }
    limits::add_retry_after(&mut resp);
    resp
}

pub fn router(node: Arc<Node>) -> Router {
    let upload_limit = (node.config.max_model_bytes as usize)
        .saturating_add(models::MAX_CALIBRATION_BYTES + (1 << 20));
    // Endpoints that run models, store uploads or fetch from peers: each client gets a share.
    let expensive = Router::new()
        .route(
            "/v1/models",
            post(models::publish).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/v1/models/{reference}", get(models::show_model))
        .route("/v1/models/{reference}/file", get(models::download_model))
        .route(
            "/v1/chat/completions",
            post(http::chat::completions).layer(DefaultBodyLimit::max(MAX_CHAT_BODY_BYTES)),
        )
        .route("/v1/infer", post(infer::infer))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            limits::client_share,
        ));
    Router::new()
        .route("/health", get(models::health))
        .route("/metrics", get(models::metrics))
        .route("/v1/models", get(models::list_models))
        // Paid work only (its escrow is open on the ledger) and bounded by the inference lane;
        // entry nodes forward many clients' quorums from one address, so no per-client share.
        .route("/v1/execute", post(infer::execute_for_peer))
        .route("/v1/receipts/{id}", get(infer::get_receipt))
        .route("/v1/receipts/{id}/proof", get(ledger::receipt_proof))
        .route("/v1/proofs/{hash}", get(infer::get_proof))
        .route("/v1/tx", post(ledger::submit_tx))
        .route("/v1/ledger", get(ledger::status))
        .route("/v1/prices/{model}", get(ledger::price))
        .route("/v1/names/{name}", get(ledger::name))
        .route("/v1/blocks/{height}", get(ledger::block))
        .route(
            "/v1/disputes",
            get(ledger::disputes).post(infer::file_dispute),
        )
        .route("/v1/accounts/{key}", get(ledger::account))
        .route("/v1/requests/{hash}", get(ledger::request_status))
        .merge(expensive)
        .layer(DefaultBodyLimit::max(node.config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            limits::deadline,
        ))
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
    serve(Arc::new(Node::open(config, key, None)?)).await
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
    serve(Arc::new(Node::open(config, key, Some(chain))?)).await
}

async fn serve(node: Arc<Node>) -> anyhow::Result<RunningNode> {
    let listener = tokio::net::TcpListener::bind(node.config.listen).await?;
    let addr = listener.local_addr()?;
    let app = router(node.clone());
    let limits = http::server::ConnectionLimits {
        max_connections: node.config.max_connections,
        client_connections: node.config.client_connections,
        header_timeout: std::time::Duration::from_secs(node.config.header_timeout_secs),
    };
    let task = tokio::spawn(http::server::serve(listener, app, limits));
    if node.chain.is_some() {
        tokio::spawn(judge::run(node.clone()));
    }
    Ok(RunningNode { addr, node, task })
}
