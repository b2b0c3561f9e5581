//! The node's durable state: model blobs as content-addressed files and an embedded redb
//! database for manifests, the name index, receipts and spent nonces.
//!
//! Durability rules: a blob is written to a temporary file, fsynced and renamed into place
//! before the database transaction that makes it visible commits; redb commits are durable
//! (fsync) when `commit` returns. A crash therefore leaves either nothing visible or
//! everything, never a manifest without its bytes.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use verity_core::wire::ProofBundle;
use verity_core::{Hash, ModelId, ModelManifest, PublicKey, Receipt};

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const RECEIPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("receipts");
const NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("nonces");
const PROOFS: TableDefinition<&str, &[u8]> = TableDefinition::new("proofs");

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("{name}@{version} is already published as {id}")]
    DuplicateName {
        name: String,
        version: String,
        id: ModelId,
    },
    #[error("model {id} is already published as {name}@{version}")]
    DuplicateId {
        id: ModelId,
        name: String,
        version: String,
    },
    #[error("nonce {nonce} was already used by client {client}")]
    Replay { client: PublicKey, nonce: u64 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.into()) }
    })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: Database,
    blobs: PathBuf,
    tmp: PathBuf,
    /// Bytes of committed blobs (for the node's disk quota).
    used: std::sync::atomic::AtomicU64,
}

/// A blob being received: written to a temp file and hashed as it arrives.
pub struct BlobWriter {
    file: std::fs::File,
    path: PathBuf,
    hasher: blake3::Hasher,
    len: u64,
}

impl BlobWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk)?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn id(&self) -> ModelId {
        ModelId::from_hasher(&self.hasher)
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed blobs were renamed away; anything left here is an abandoned upload.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn name_key(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

fn nonce_key(client: &PublicKey, nonce: u64) -> Vec<u8> {
    let mut k = client.0.to_vec();
    k.extend_from_slice(&nonce.to_be_bytes());
    k
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let blobs = dir.join("blobs");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&blobs)?;
        // Leftovers from an interrupted upload are garbage.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let db = Database::create(dir.join("verity.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(MODELS)?;
        txn.open_table(NAMES)?;
        txn.open_table(RECEIPTS)?;
        txn.open_table(NONCES)?;
        txn.open_table(PROOFS)?;
        txn.commit()?;
        let mut used = 0;
        for entry in std::fs::read_dir(&blobs)? {
            used += entry?.metadata()?.len();
        }
        Ok(Store {
            db,
            blobs,
            tmp,
            used: used.into(),
        })
    }

    /// Bytes the committed blobs take.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_committed(&self, bytes: u64) {
        self.used
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn blob_path(&self, id: &ModelId) -> PathBuf {
        self.blobs.join(id.hex())
    }

    pub fn new_blob(&self) -> Result<BlobWriter> {
        let path = self.tmp.join(temp_name());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(BlobWriter {
            file,
            path,
            hasher: blake3::Hasher::new(),
            len: 0,
        })
    }

    /// Writes bytes already in memory (e.g. a derived canonical model) as a pending blob.
    pub fn blob_from_bytes(&self, bytes: &[u8]) -> Result<BlobWriter> {
        let mut w = self.new_blob()?;
        w.write(bytes)?;
        Ok(w)
    }

    /// Makes blobs and their manifests visible atomically. Fails, keeping nothing, if any
    /// name@version is taken.
    pub fn publish(&self, items: Vec<(BlobWriter, ModelManifest)>) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let names = txn.open_table(NAMES)?;
            let models = txn.open_table(MODELS)?;
            for (_, m) in &items {
                if let Some(existing) = models.get(m.id.to_string().as_str())? {
                    let old: ModelManifest = decode(existing.value())?;
                    return Err(StoreError::DuplicateId {
                        id: m.id,
                        name: old.name,
                        version: old.version,
                    });
                }
                if let Some(existing) = names.get(name_key(&m.name, &m.version).as_str())? {
                    let id = existing
                        .value()
                        .parse()
                        .map_err(|_| StoreError::Corrupt("name index".into()))?;
                    return Err(StoreError::DuplicateName {
                        name: m.name.clone(),
                        version: m.version.clone(),
                        id,
                    });
                }
            }
        }
        for (w, _) in &items {
            w.file.sync_all()?;
            std::fs::rename(&w.path, self.blob_path(&w.id()))?;
            self.count_committed(w.len());
        }
        {
            let mut models = txn.open_table(MODELS)?;
            let mut names = txn.open_table(NAMES)?;
            for (_, m) in &items {
                let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                models.insert(m.id.to_string().as_str(), json.as_slice())?;
                names.insert(
                    name_key(&m.name, &m.version).as_str(),
                    m.id.to_string().as_str(),
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores a model fetched from a peer (already checked against its id). Its name is not
    /// indexed here: a peer's word is no authority over names; requests name the id.
    pub fn import(&self, blob: BlobWriter, m: &ModelManifest) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut models = txn.open_table(MODELS)?;
            if models.get(m.id.to_string().as_str())?.is_some() {
                return Ok(()); // fetched concurrently; the blob is the same bytes
            }
            blob.file.sync_all()?;
            std::fs::rename(&blob.path, self.blob_path(&blob.id()))?;
            self.count_committed(blob.len());
            let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            models.insert(m.id.to_string().as_str(), json.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Reads and decodes one JSON record.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        let Some(v) = t.get(key)? else {
            return Ok(None);
        };
        decode(v.value()).map(Some)
    }

    fn count(&self, table: TableDefinition<&str, &[u8]>) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(table)?.len()?)
    }

    pub fn manifest(&self, id: &ModelId) -> Result<Option<ModelManifest>> {
        self.get_json(MODELS, &id.to_string())
    }

    pub fn model_count(&self) -> Result<u64> {
        self.count(MODELS)
    }

    pub fn resolve_name(&self, name: &str, version: &str) -> Result<Option<ModelId>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(NAMES)?;
        let Some(v) = t.get(name_key(name, version).as_str())? else {
            return Ok(None);
        };
        v.value()
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt("name index".into()))
    }

    pub fn manifests(&self) -> Result<Vec<ModelManifest>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MODELS)?;
        let mut out = vec![];
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    pub fn nonce_used(&self, client: &PublicKey, nonce: u64) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(NONCES)?;
        Ok(t.get(nonce_key(client, nonce).as_slice())?.is_some())
    }

    /// Records the receipt and spends its nonce in one transaction; a nonce spent meanwhile by
    /// a concurrent request makes this fail with [`StoreError::Replay`] and stores nothing.
    pub fn commit_receipt(&self, receipt: &Receipt, client: &PublicKey, nonce: u64) -> Result<()> {
        let json = serde_json::to_vec(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        {
            let mut nonces = txn.open_table(NONCES)?;
            let key = nonce_key(client, nonce);
            if nonces.get(key.as_slice())?.is_some() {
                return Err(StoreError::Replay {
                    client: *client,
                    nonce,
                });
            }
            nonces.insert(key.as_slice(), receipt.timestamp_ms)?;
            let mut receipts = txn.open_table(RECEIPTS)?;
            receipts.insert(receipt.id().to_hex().as_str(), json.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a receipt that spends no nonce (chat completions: the canonical request, not a
    /// client signature, identifies them).
    pub fn put_receipt(&self, receipt: &Receipt) -> Result<()> {
        let json = serde_json::to_vec(receipt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(RECEIPTS)?
            .insert(receipt.id().to_hex().as_str(), json.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn receipt(&self, id: &Hash) -> Result<Option<Receipt>> {
        self.get_json(RECEIPTS, &id.to_hex())
    }

    /// Keeps a zk proof (and the inputs it proves) under its hash, to serve to the validators
    /// who judge its settlement and to anyone holding the receipt.
    pub fn put_proof(&self, hash: &Hash, bundle: &ProofBundle) -> Result<()> {
        let json = serde_json::to_vec(bundle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(PROOFS)?
            .insert(hash.to_hex().as_str(), json.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn proof(&self, hash: &Hash) -> Result<Option<ProofBundle>> {
        self.get_json(PROOFS, &hash.to_hex())
    }

    pub fn receipt_count(&self) -> Result<u64> {
        self.count(RECEIPTS)
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A name unique within this process's `tmp/` (the redb lock gives one process per data dir;
/// `create_new` refuses any clash).
fn temp_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{t:x}-{n}")
}
