//! HTTP handlers. Each one validates, delegates to the store or executor, and maps errors.

use crate::error::ApiError;
use crate::executor::inspect;
use crate::executor::Loaded;
use crate::metrics::InferLabels;
use crate::store::BlobWriter;
use crate::Node;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use verity_core::manifest::{publish_statement, validate_name_version};
use verity_core::receipt::ReceiptBody;
use verity_core::tensor::hash_map;
use verity_core::wire::{
    Health, InferBody, InferQuery, InferResponse, ModelList, ModelObject, PublishMeta,
    PublishResponse, ShowQuery,
};
use verity_core::{
    Hash, InferenceRequest, Mode, ModelFormat, ModelId, ModelManifest, Receipt, SignedRequest,
    TensorMap,
};
use verity_engine::{quantize_onnx, Calibration};

/// Name suffix of the canonical model derived at publish time.
pub const CANONICAL_SUFFIX: &str = ".int8";

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

pub async fn health(State(node): State<Arc<Node>>) -> Result<Json<Health>, ApiError> {
    Ok(Json(Health {
        status: "ok".into(),
        node: node.key.public(),
        version: env!("CARGO_PKG_VERSION").into(),
        models: node.store.model_count()?,
        receipts: node.store.receipt_count()?,
        chain_id: node.chain().ok().map(|c| c.validators.chain_id.clone()),
    }))
}

pub async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    name: Option<String>,
}

/// Every hub model (or the versions of `name`) in OpenAI's list shape ([`ModelList`]).
pub async fn list_models(
    State(node): State<Arc<Node>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ModelList>, ApiError> {
    let mut all = node.store.manifests()?;
    if let Some(name) = q.name {
        all.retain(|m| m.name == name);
    }
    all.sort_by(|a, b| {
        (&a.name, version_key(&a.version), a.created_at_ms).cmp(&(
            &b.name,
            version_key(&b.version),
            b.created_at_ms,
        ))
    });
    Ok(Json(ModelList {
        object: "list".into(),
        data: all.into_iter().map(ModelObject::from).collect(),
    }))
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// `blake3:<hex>`, `name@version`, or `name` (its highest version).
pub fn resolve(node: &Node, reference: &str) -> Result<ModelManifest, ApiError> {
    let id = if reference.starts_with("blake3:") {
        reference
            .parse::<ModelId>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    } else if let Some((name, version)) = reference.split_once('@') {
        node.store
            .resolve_name(name, version)?
            .ok_or_else(|| ApiError::not_found(format!("no model {name}@{version}")))?
    } else {
        let latest = node
            .store
            .manifests()?
            .into_iter()
            .filter(|m| m.name == reference)
            .max_by_key(|m| version_key(&m.version));
        return latest.ok_or_else(|| ApiError::not_found(format!("no model named `{reference}`")));
    };
    node.store
        .manifest(&id)?
        .ok_or_else(|| ApiError::not_found(format!("unknown model {id}")))
}

/// A model's manifest, as an OpenAI model object (it still reads as a [`ModelManifest`]). A
/// networked node that lacks it asks its peers which id the reference names, then fetches
/// those bytes and checks them against the id.
pub async fn show_model(
    State(node): State<Arc<Node>>,
    Path(reference): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<ModelObject>, ApiError> {
    let m = match resolve(&node, &reference) {
        Err(e) if e.status == StatusCode::NOT_FOUND && !q.local && node.chain.is_some() => {
            crate::peers::resolve_remote(&node, &reference).await
        }
        other => other,
    }?;
    Ok(Json(m.into()))
}

pub async fn download_model(
    State(node): State<Arc<Node>>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let m = resolve(&node, &reference)?;
    let file = tokio::fs::File::open(node.store.blob_path(&m.id))
        .await
        .map_err(|e| ApiError::internal(format!("model bytes unavailable: {e}")))?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, m.size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Multipart upload with parts `meta` (JSON [`PublishMeta`]), `model` (the file, streamed to
/// disk while hashed) and optionally `calibration` (JSON samples). Either everything is
/// published (the model, and its canonical int8 form when calibration is given) or nothing.
pub async fn publish(
    State(node): State<Arc<Node>>,
    mut form: Multipart,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    let mut meta: Option<PublishMeta> = None;
    let mut blob: Option<BlobWriter> = None;
    let mut calibration: Option<Vec<u8>> = None;
    while let Some(mut field) = form.next_field().await? {
        match field.name().unwrap_or_default() {
            "meta" => {
                let bytes = field.bytes().await?;
                meta = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| ApiError::bad_request(format!("meta: {e}")))?,
                );
            }
            "model" => {
                let mut w = node.store.new_blob()?;
                let mut received = 0u64;
                while let Some(chunk) = field.chunk().await? {
                    received += chunk.len() as u64;
                    // Past the limit, keep reading (bounded by the route's body limit) without
                    // storing, so the client gets the 413 instead of a reset connection.
                    if received <= node.config.max_model_bytes {
                        w.write(&chunk)?;
                    }
                }
                if received > node.config.max_model_bytes {
                    return Err(ApiError::too_large(format!(
                        "model of {received} bytes exceeds this node's limit of {} bytes",
                        node.config.max_model_bytes
                    )));
                }
                blob = Some(w);
            }
            "calibration" => calibration = Some(field.bytes().await?.to_vec()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part `{other}`"
                )))
            }
        }
    }
    let meta = meta.ok_or_else(|| ApiError::bad_request("missing `meta` part"))?;
    let blob = blob.ok_or_else(|| ApiError::bad_request("missing `model` part"))?;
    validate_name_version(&meta.name, &meta.version).map_err(ApiError::bad_request)?;
    if blob.len() != meta.size {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "truncated_upload",
            format!("received {} of {} bytes", blob.len(), meta.size),
        ));
    }
    if blob.id() != meta.id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "hash_mismatch",
            format!("received bytes hash to {}, not {}", blob.id(), meta.id),
        ));
    }
    let calib_hash = calibration
        .as_deref()
        .map(|c| Hash::of(verity_core::hash::domain::CALIBRATION, c));
    if calib_hash != meta.calibration_hash {
        return Err(ApiError::bad_request(
            "calibration_hash does not match the calibration part",
        ));
    }
    let statement = publish_statement(&meta.name, &meta.version, &meta.id, calib_hash.as_ref());
    if !meta.publisher.verify(&statement.0, &meta.signature) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "publisher signature does not cover this name, version and model",
        ));
    }
    let node2 = node.clone();
    let (models, response) =
        blocking(move || prepare_publish(&node2, meta, blob, calibration, calib_hash)).await?;
    let (models, loaded) = models;
    let store_node = node.clone();
    blocking(move || Ok(store_node.store.publish(models)?)).await?;
    for (id, l) in loaded {
        node.executor.warm(id, l);
    }
    node.metrics
        .models_published
        .inc_by(1 + response.canonical.is_some() as u64);
    Ok((StatusCode::CREATED, Json(response)))
}

/// Blobs with their manifests, the models loaded while checking them (cached once
/// published), and the response.
type Prepared = (
    (Vec<(BlobWriter, ModelManifest)>, Vec<(ModelId, Loaded)>),
    PublishResponse,
);

fn prepare_publish(
    node: &Node,
    meta: PublishMeta,
    blob: BlobWriter,
    calibration: Option<Vec<u8>>,
    calib_hash: Option<Hash>,
) -> Result<Prepared, ApiError> {
    let bytes = std::fs::read(blob.path()).map_err(|e| ApiError::internal(e.to_string()))?;
    let info = inspect(&bytes)?;
    let now = verity_core::now_ms();
    let manifest_for =
        |id, format, inspection: &verity_engine::Inspection, name: String, size| ModelManifest {
            id,
            name,
            version: meta.version.clone(),
            format,
            inputs: inspection.inputs.clone(),
            outputs: inspection.outputs.clone(),
            operators: inspection.operators.clone(),
            size,
            publisher: meta.publisher,
            created_at_ms: now,
            parent: None,
            calibration_hash: None,
            canonical: None,
        };
    let mut model = manifest_for(meta.id, info.format, &info, meta.name.clone(), meta.size);
    let mut items = vec![];
    let mut loaded = vec![];
    let mut canonical = None;
    match (info.format, calibration) {
        (ModelFormat::VerityInt8, Some(_)) => {
            return Err(ApiError::bad_request(
                "this model is already canonical int8; calibration data is only for float models",
            ))
        }
        (ModelFormat::VerityInt8, None) => {}
        (ModelFormat::Gguf, Some(_)) => {
            return Err(ApiError::bad_request(
                "calibration data is only for float ONNX models, not GGUF language models",
            ))
        }
        // Checked by the GGUF reader in `inspect`; the runtime loads it when first served.
        (ModelFormat::Gguf, None) => {}
        (ModelFormat::Onnx, calibration) => {
            if let Some(c) = calibration {
                let qmodel = quantize_onnx(&bytes, &Calibration::from_json(&c)?)?;
                let q = qmodel.encode();
                let qinfo = inspect(&q)?;
                let qblob = node.store.blob_from_bytes(&q)?;
                let mut cm = manifest_for(
                    qinfo.id,
                    ModelFormat::VerityInt8,
                    &qinfo,
                    format!("{}{CANONICAL_SUFFIX}", meta.name),
                    q.len() as u64,
                );
                cm.parent = Some(meta.id);
                cm.calibration_hash = calib_hash;
                model.canonical = Some(cm.id);
                canonical = Some(cm.clone());
                loaded.push((
                    cm.id,
                    Loaded::Canonical(verity_engine::Interpreter::new(qmodel)),
                ));
                items.push((qblob, cm));
            }
            // Refuse float models the float engine cannot serve.
            let float = verity_engine::float_engine::FloatModel::load(&bytes)?;
            loaded.push((meta.id, Loaded::Float(Box::new(float))));
        }
    }
    items.insert(0, (blob, model.clone()));
    Ok(((items, loaded), PublishResponse { model, canonical }))
}

pub async fn infer(
    State(node): State<Arc<Node>>,
    Query(q): Query<InferQuery>,
    body: Result<Json<InferBody>, JsonRejection>,
) -> Result<Json<InferResponse>, ApiError> {
    let Json(body) = body?;
    check_client_signature(&body.signed)?;
    match body.signed.request.mode {
        Mode::Signed | Mode::Zk => {
            // On a network every served inference is paid through the ledger.
            let escrow = match (&node.chain, body.escrow) {
                (None, _) => None,
                (Some(_), Some(escrow)) => {
                    crate::quorum::check_escrow(&node, &body.signed.request, &escrow)?;
                    Some(escrow)
                }
                (Some(_), None) => {
                    return Err(ApiError::bad_request(
                        "this node is on a network: send `escrow`, the client's signed OpenRequest (executors 0)",
                    ))
                }
            };
            let request = body.signed.request.hash();
            let manifest = model_for(&node, &body.signed.request.model).await?;
            // Refuse unprovable models before running (and before the nonce is spent).
            let circuit = match body.signed.request.mode {
                Mode::Zk => {
                    let node = node.clone();
                    let manifest = manifest.clone();
                    Some(blocking(move || node.circuits.get(&node.store, &manifest)).await?)
                }
                _ => None,
            };
            let inputs = circuit.as_ref().map(|_| body.signed.request.inputs.clone());
            let receipt = execute(&node, body.signed.request, manifest).await?;
            let zk_proof = match (circuit, inputs) {
                (Some(zk), Some(inputs)) => {
                    Some(blocking(move || crate::zk::prove(&zk, &inputs)).await?)
                }
                _ => None,
            };
            let settled_height = match escrow {
                Some(escrow) => {
                    let close = verity_ledger::Action::Settle {
                        request,
                        receipts: vec![receipt.clone()],
                    };
                    crate::quorum::settle(&node, escrow, close, q.wait).await?
                }
                None => None,
            };
            Ok(Json(InferResponse {
                receipt_id: receipt.id(),
                receipt,
                settled_height,
                quorum: None,
                zk_proof,
            }))
        }
        Mode::Quorum { .. } => {
            let escrow = body.escrow.ok_or_else(|| {
                ApiError::bad_request(
                    "quorum mode needs `escrow`: the client's signed OpenRequest transaction",
                )
            })?;
            crate::quorum::serve(&node, body.signed, escrow, q.wait)
                .await
                .map(Json)
        }
    }
}

/// Runs a request for another node that chose this one as a quorum executor.
/// The executor checks the client's escrow itself (signature, funds, request never opened),
/// so nobody gets work done by calling executors directly without paying.
pub async fn execute_for_peer(
    State(node): State<Arc<Node>>,
    body: Result<Json<InferBody>, JsonRejection>,
) -> Result<Json<Receipt>, ApiError> {
    let Json(InferBody { signed, escrow }) = body?;
    check_client_signature(&signed)?;
    let Mode::Quorum { k } = signed.request.mode else {
        return Err(ApiError::bad_request(
            "only quorum requests are executed for peers",
        ));
    };
    let escrow = escrow.ok_or_else(|| ApiError::bad_request("missing the client's escrow"))?;
    crate::quorum::check_escrow(&node, &signed.request, &escrow)?;
    let hash = signed.request.hash();
    let me = node.key.public();
    if !node
        .chain()?
        .app
        .read(|s| s.eligible_executors(&hash, k).contains(&me))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_eligible",
            format!("this node is not an eligible executor for request {hash}"),
        ));
    }
    let manifest = model_for(&node, &signed.request.model).await?;
    Ok(Json(execute(&node, signed.request, manifest).await?))
}

fn check_client_signature(signed: &SignedRequest) -> Result<(), ApiError> {
    if signed.signature_is_valid() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the request signature does not verify under its client key",
    ))
}

/// The model's manifest, fetched from a peer (and verified by hash) if this node lacks it.
pub(crate) async fn model_for(node: &Arc<Node>, id: &ModelId) -> Result<ModelManifest, ApiError> {
    if let Some(m) = node.store.manifest(id)? {
        return Ok(m);
    }
    match &node.chain {
        Some(_) => crate::peers::fetch_model(node, id).await,
        None => Err(ApiError::not_found(format!("unknown model {id}"))),
    }
}

/// Runs a request on this node and commits its signed receipt. The (client, nonce) pair is
/// accepted once per node.
pub(crate) async fn execute(
    node: &Arc<Node>,
    req: InferenceRequest,
    manifest: ModelManifest,
) -> Result<Receipt, ApiError> {
    if node.store.nonce_used(&req.client, req.nonce)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "replayed_nonce",
            format!("nonce {} was already used by this client", req.nonce),
        ));
    }
    if manifest.format == ModelFormat::Gguf {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "chat_model",
            format!(
                "{} is a language model: use POST /v1/chat/completions",
                manifest.id
            ),
        ));
    }
    if matches!(req.mode, Mode::Quorum { .. }) && manifest.format != ModelFormat::VerityInt8 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_canonical",
            format!(
                "quorum mode needs a canonical int8 model (bit-identical on every node); {} is {:?}",
                manifest.id, manifest.format
            ),
        ));
    }
    let node2 = node.clone();
    blocking(move || {
        let outcome = node2.executor.run(&manifest, &req.inputs);
        let engine = match &outcome {
            Ok(o) => o.engine.name.clone(),
            Err(_) => "none".to_string(),
        };
        let outcome = outcome.map_err(|e| {
            node2
                .metrics
                .inferences
                .get_or_create(&InferLabels {
                    engine: engine.clone(),
                    outcome: "error".into(),
                })
                .inc();
            ApiError::from(e)
        })?;
        node2.metrics.inference_seconds.observe(outcome.seconds);
        node2
            .metrics
            .inferences
            .get_or_create(&InferLabels {
                engine,
                outcome: "ok".into(),
            })
            .inc();
        let mut outputs = outcome.outputs;
        if node2.config.tamper_outputs {
            tamper(&mut outputs);
        }
        let receipt = ReceiptBody {
            request_hash: req.hash(),
            model: req.model,
            input_hash: hash_map(&req.inputs),
            output_hash: hash_map(&outputs),
            outputs,
            trace_root: outcome.trace_root,
            engine: outcome.engine,
            mode: req.mode,
            timestamp_ms: verity_core::now_ms(),
        }
        .sign(&node2.key);
        node2
            .store
            .commit_receipt(&receipt, &req.client, req.nonce)?;
        Ok(receipt)
    })
    .await
}

/// A faulty node for tests of fault detection (`tamper_outputs` in the config): flips the
/// lowest bit of the first output element and signs the result as if it were honest.
fn tamper(outputs: &mut TensorMap) {
    if let Some(t) = outputs.values_mut().next() {
        let mut data = t.data().to_vec();
        if let Some(b) = data.first_mut() {
            *b ^= 1;
        }
        if let Ok(flipped) = verity_core::Tensor::from_bytes(t.dtype(), t.shape().to_vec(), data) {
            *t = flipped;
        }
    }
}

pub async fn get_receipt(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let id = Hash::from_hex(&id).map_err(|e| ApiError::bad_request(format!("receipt id: {e}")))?;
    node.store
        .receipt(&id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown receipt {id}")))
}
