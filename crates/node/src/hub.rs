//! The model hub: publishing (checked against the publisher's claim and signature, with the
//! canonical int8 form derived from calibration data), listing, and finding a model by id,
//! `name@version` or `name`, here or (on a network) at a peer.

use crate::executor::{self, inspect, Loaded};
use crate::node::Node;
use crate::peers::{self, PeerError};
use crate::store::{BlobWriter, StoreError};
use std::sync::Arc;
use verity_core::manifest::{publish_statement, validate_name_version};
use verity_core::wire::{PublishMeta, PublishResponse};
use verity_core::{Hash, ModelFormat, ModelId, ModelManifest};
use verity_engine::{quantize_onnx, Calibration, EngineError, Interpreter};
use verity_ledger::state::{version_key, ModelEntry, CANONICAL_SUFFIX};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A reference that cannot name a model (a malformed id).
    #[error("{0}")]
    BadReference(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A publication refused for what it claims or carries.
    #[error("{0}")]
    Invalid(String),
    #[error("model of {received} bytes exceeds this node's limit of {limit} bytes")]
    TooLarge { received: u64, limit: u64 },
    #[error("received {received} of {claimed} bytes")]
    Truncated { received: u64, claimed: u64 },
    #[error("received bytes hash to {received}, not {claimed}")]
    HashMismatch { received: ModelId, claimed: ModelId },
    #[error("publisher signature does not cover this name, version and model")]
    PublisherSignature,
    #[error("publisher {0} may not publish on this node")]
    PublisherNotAllowed(verity_core::PublicKey),
    #[error("this node's model store is full: {room} bytes of room were left")]
    StoreFull { room: u64 },
    #[error(transparent)]
    Job(#[from] crate::scheduler::JobError),
    #[error("model bytes unavailable: {0}")]
    FileUnavailable(std::io::Error),
    /// The node failed (an upload it cannot read back, a task that stopped).
    #[error("{0}")]
    Internal(String),
}

impl HubError {
    /// Whether the model is simply not here, nor at any peer asked (rather than the lookup
    /// failing).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            HubError::NotFound(_) | HubError::Peer(PeerError::NoModel(_))
        )
    }
}

/// Every hub model (or the versions of `name`), by name, version and age. On a network these
/// are the network's models, from the ledger registry (with the technical fields from this
/// node's copy, else a peer's); a standalone node lists its own.
pub async fn list(node: &Arc<Node>, name: Option<&str>) -> Result<Vec<ModelManifest>, HubError> {
    let mut all = match &node.chain {
        None => node.store.manifests()?,
        Some(chain) => {
            let listed: Vec<ModelEntry> = chain.app.read(|s| {
                s.models()
                    .filter(|m| name.is_none_or(|n| m.name == n))
                    .cloned()
                    .collect()
            });
            let mut found = Vec::with_capacity(listed.len());
            for entry in listed {
                let manifest = match node.store.manifest(&entry.model)? {
                    Some(m) => Some(m),
                    None => peers::manifest(node, &entry.model).await,
                };
                found.extend(manifest.map(|m| ModelManifest {
                    name: entry.name,
                    version: entry.version,
                    publisher: entry.publisher,
                    ..m
                }));
            }
            found
        }
    };
    if let Some(name) = name {
        all.retain(|m| m.name == name);
    }
    all.sort_by(|a, b| {
        (&a.name, version_key(&a.version), a.created_at_ms).cmp(&(
            &b.name,
            version_key(&b.version),
            b.created_at_ms,
        ))
    });
    Ok(all)
}

/// On a network, names are the ledger's: `name@version`, or `name` (its highest version),
/// resolves only to a model the name's owner registered there. None for an id, or a node
/// without a ledger.
fn ledger_listing(node: &Node, reference: &str) -> Option<Result<ModelEntry, HubError>> {
    let chain = node.chain.as_ref()?;
    if reference.starts_with("blake3:") {
        return None;
    }
    let (name, version) = match reference.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (reference, None),
    };
    let entry = chain.app.read(|s| {
        let id = s.model_named(name, version)?;
        s.models()
            .find(|m| m.model == id && m.name == name && version.is_none_or(|v| m.version == v))
            .cloned()
    });
    Some(entry.ok_or_else(|| {
        HubError::NotFound(format!(
            "no model `{reference}` is registered on the ledger (`verity model publish \
             --price` registers one)"
        ))
    }))
}

/// The ledger's name, version and publisher for a registered model (a node's stored
/// manifest keeps whatever name was published or claimed by a peer; the ledger's is the one
/// its owner registered): `listing`, else the model's first listing.
fn ledger_identity(node: &Node, m: ModelManifest, listing: Option<&ModelEntry>) -> ModelManifest {
    let first = || node.chain.as_ref()?.app.read(|s| s.model(&m.id).cloned());
    match listing.cloned().or_else(first) {
        Some(entry) => ModelManifest {
            name: entry.name,
            version: entry.version,
            publisher: entry.publisher,
            ..m
        },
        None => m,
    }
}

/// `blake3:<hex>`, `name@version`, or `name` (its highest version), on this node. On a network
/// a name resolves through the ledger registry.
pub fn resolve(node: &Node, reference: &str) -> Result<ModelManifest, HubError> {
    let listing = ledger_listing(node, reference).transpose()?;
    let id = if let Some(entry) = &listing {
        entry.model
    } else if reference.starts_with("blake3:") {
        reference
            .parse::<ModelId>()
            .map_err(|e| HubError::BadReference(e.to_string()))?
    } else if let Some((name, version)) = reference.split_once('@') {
        node.store
            .resolve_name(name, version)?
            .ok_or_else(|| HubError::NotFound(format!("no model {name}@{version}")))?
    } else {
        let latest = node
            .store
            .manifests()?
            .into_iter()
            .filter(|m| m.name == reference)
            .max_by_key(|m| version_key(&m.version));
        return latest.ok_or_else(|| HubError::NotFound(format!("no model named `{reference}`")));
    };
    node.store
        .manifest(&id)?
        .map(|m| ledger_identity(node, m, listing.as_ref()))
        .ok_or_else(|| HubError::NotFound(format!("model {id} ({reference}) is not on this node")))
}

/// A model by reference. A networked node that lacks it (and may ask, `allow_peers`) fetches
/// it by id (a name's id comes from the ledger) and checks the bytes against the id.
pub async fn find(
    node: &Arc<Node>,
    reference: &str,
    allow_peers: bool,
) -> Result<ModelManifest, HubError> {
    match resolve(node, reference) {
        Err(e) if e.is_not_found() && allow_peers && node.chain.is_some() => {
            match ledger_listing(node, reference).transpose()? {
                Some(entry) => {
                    let m = peers::fetch_model(node, &entry.model).await?;
                    Ok(ledger_identity(node, m, Some(&entry)))
                }
                None => {
                    let id = reference
                        .parse::<ModelId>()
                        .map_err(|e| HubError::BadReference(e.to_string()))?;
                    Ok(ledger_identity(node, by_id(node, &id).await?, None))
                }
            }
        }
        other => other,
    }
}

/// A model by id, fetched from a peer (and verified by hash) if this node lacks it. The
/// execution paths call this: the manifest keeps its stored name (no ledger read here).
pub async fn by_id(node: &Arc<Node>, id: &ModelId) -> Result<ModelManifest, HubError> {
    if let Some(m) = node.store.manifest(id)? {
        return Ok(m);
    }
    match &node.chain {
        Some(_) => Ok(peers::fetch_model(node, id).await?),
        None => Err(HubError::NotFound(format!("unknown model {id}"))),
    }
}

/// A model's file, opened for streaming, and its size.
pub async fn open_file(node: &Node, reference: &str) -> Result<(tokio::fs::File, u64), HubError> {
    let m = resolve(node, reference)?;
    let file = tokio::fs::File::open(node.store.blob_path(&m.id))
        .await
        .map_err(HubError::FileUnavailable)?;
    Ok((file, m.size))
}

/// A model file being received: written to the store (and hashed) while it fits under the
/// node's limit, only counted beyond it, so the client is told the limit instead of having its
/// connection reset.
pub struct Upload {
    blob: BlobWriter,
    received: u64,
    limit: u64,
    /// Disk the store may still take when the upload began.
    room: u64,
}

impl Upload {
    pub fn new(node: &Node) -> Result<Upload, HubError> {
        Ok(Upload {
            blob: node.store.new_blob()?,
            received: 0,
            limit: node.config.max_model_bytes,
            room: node
                .config
                .max_store_bytes
                .saturating_sub(node.store.used_bytes()),
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), HubError> {
        self.received += chunk.len() as u64;
        if self.received > self.room {
            return Err(HubError::StoreFull { room: self.room });
        }
        if self.received <= self.limit {
            self.blob.write(chunk)?;
        }
        Ok(())
    }

    /// The received file, unless it went past the limit.
    pub fn finish(self) -> Result<BlobWriter, HubError> {
        if self.received > self.limit {
            return Err(HubError::TooLarge {
                received: self.received,
                limit: self.limit,
            });
        }
        Ok(self.blob)
    }
}

/// Publishes a received model (and its canonical int8 form when calibration is given): either
/// everything is published or nothing.
pub async fn publish(
    node: &Arc<Node>,
    meta: PublishMeta,
    blob: BlobWriter,
    calibration: Option<Vec<u8>>,
) -> Result<PublishResponse, HubError> {
    validate_name_version(&meta.name, &meta.version).map_err(HubError::Invalid)?;
    if blob.len() != meta.size {
        return Err(HubError::Truncated {
            received: blob.len(),
            claimed: meta.size,
        });
    }
    if blob.id() != meta.id {
        return Err(HubError::HashMismatch {
            received: blob.id(),
            claimed: meta.id,
        });
    }
    let calib_hash = calibration
        .as_deref()
        .map(|c| Hash::of(verity_core::hash::domain::CALIBRATION, c));
    if calib_hash != meta.calibration_hash {
        return Err(HubError::Invalid(
            "calibration_hash does not match the calibration part".into(),
        ));
    }
    let statement = publish_statement(&meta.name, &meta.version, &meta.id, calib_hash.as_ref());
    if !meta.publisher.verify(&statement.0, &meta.signature) {
        return Err(HubError::PublisherSignature);
    }
    let allowed = &node.config.publishers;
    if !allowed.is_empty() && !allowed.contains(&meta.publisher) {
        return Err(HubError::PublisherNotAllowed(meta.publisher));
    }
    let worker = node.clone();
    let prepared = node
        .scheduler
        .publish
        .run(move || prepare(&worker, meta, blob, calibration, calib_hash))
        .await??;
    let Prepared {
        items,
        loaded,
        response,
    } = prepared;
    let worker = node.clone();
    blocking(move || Ok(worker.store.publish(items)?)).await?;
    for (id, model, file_bytes) in loaded {
        executor::keep(&node.models, id, model, file_bytes);
    }
    node.metrics
        .models_published
        .inc_by(1 + response.canonical.is_some() as u64);
    Ok(response)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
}

/// A publication checked and ready to commit.
struct Prepared {
    /// Blobs with their manifests: the model first, then its canonical form if derived.
    items: Vec<(BlobWriter, ModelManifest)>,
    /// The models loaded while checking them (cached once published), with their file sizes.
    loaded: Vec<(ModelId, Loaded, u64)>,
    response: PublishResponse,
}

fn prepare(
    node: &Node,
    meta: PublishMeta,
    blob: BlobWriter,
    calibration: Option<Vec<u8>>,
    calib_hash: Option<Hash>,
) -> Result<Prepared, HubError> {
    let bytes = std::fs::read(blob.path()).map_err(|e| HubError::Internal(e.to_string()))?;
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
    let limits = node.config.cost_limits();
    if let Some(cost) = &info.cost {
        cost.check(&limits)?;
    }
    let mut model = manifest_for(meta.id, info.format, &info, meta.name.clone(), meta.size);
    let mut items = vec![];
    let mut loaded = vec![];
    let mut canonical = None;
    match (info.format, calibration) {
        (ModelFormat::VerityInt8, Some(_)) => {
            return Err(HubError::Invalid(
                "this model is already canonical int8; calibration data is only for float models"
                    .into(),
            ))
        }
        (ModelFormat::VerityInt8, None) => {}
        (ModelFormat::Gguf, Some(_)) => {
            return Err(HubError::Invalid(
                "calibration data is only for float ONNX models, not GGUF language models".into(),
            ))
        }
        // Checked by the GGUF reader in `inspect`; the runtime loads it when first served.
        (ModelFormat::Gguf, None) => {}
        (ModelFormat::Onnx, calibration) => {
            if let Some(c) = calibration {
                let qmodel = quantize_onnx(&bytes, &Calibration::from_json(&c)?)?;
                qmodel.cost().check(&limits)?;
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
                let interpreter = Loaded::Canonical(Interpreter::new(qmodel));
                loaded.push((cm.id, interpreter, q.len() as u64));
                items.push((qblob, cm));
            }
            // Refuse float models the float engine cannot serve.
            let float = verity_engine::float_engine::FloatModel::load(&bytes, &limits)?;
            loaded.push((meta.id, Loaded::Float(Box::new(float)), meta.size));
        }
    }
    items.insert(0, (blob, model.clone()));
    Ok(Prepared {
        items,
        loaded,
        response: PublishResponse { model, canonical },
    })
}
