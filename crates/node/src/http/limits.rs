//! Per-request bounds: a deadline on every request (a slow upload cannot hold a connection and a
//! temporary file forever), a per-client share of the expensive endpoints (one client cannot
//! take every place in the node's lanes), and `Retry-After` on every 429.

use super::error::ApiError;
use super::openai::OaiError;
use crate::node::Node;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Seconds a client refused with 429 is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The client address hyper accepted the request from (unspecified for in-process calls).
fn client_of(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Errors in the shape the endpoint speaks: OpenAI's for chat, the native one elsewhere.
fn refuse(path: &str, e: ApiError) -> Response {
    if path.starts_with("/v1/chat/") {
        OaiError::from(e).into_response()
    } else {
        e.into_response()
    }
}

/// Admits an expensive request only while its client holds fewer than its share of them. A
/// streamed answer keeps its place until the stream ends.
pub async fn client_share(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let Some(held) = node.client_requests.enter(client_of(&req)) else {
        let limit = node.config.client_concurrency;
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("this client already has {limit} expensive requests in flight; retry later"),
        );
        return refuse(req.uri().path(), e);
    };
    let resp = next.run(req).await;
    let streamed = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streamed {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _ = &held;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Ends a request that has not produced its response within the node's request timeout
/// (reading the body included). Blocking work already running keeps its lane slot until it
/// returns, so the bound on concurrent work holds regardless.
pub async fn deadline(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(node.config.request_timeout_secs);
    let path = req.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => refuse(
            &path,
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request took longer than {}s", limit.as_secs()),
            ),
        ),
    }
}

/// Tells every refused client when to come back.
pub fn add_retry_after(resp: &mut Response) {
    if resp.status() == StatusCode::TOO_MANY_REQUESTS
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
}
