//! A blocking HTTP client for one node's API.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{multipart, Client, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use verity_core::manifest::publish_statement;
use verity_core::{Hash, ModelId, ModelManifest, NodeKey, PublicKey, Receipt};
use verity_ledger::proof::InclusionProof;
use verity_ledger::Transaction;
use verity_node::api::{Health, InferBody, InferResponse, PublishMeta, PublishResponse};
use verity_node::ledger_api::{Account, LedgerStatus, ModelPrice, Submitted};

pub struct NodeClient {
    base: String,
    http: Client,
}

/// Turns `{"error":{"code","message"}}` answers into readable errors.
fn check(resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: serde_json::Value = resp.json().unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"].as_str().unwrap_or("(no message)");
    bail!("node answered {status} ({code}): {message}")
}

/// A byte-count progress bar, hidden when stderr is not a terminal.
fn progress_bar(visible: bool, len: u64, verb: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&format!(
        "{verb} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style)
}

struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl NodeClient {
    pub fn new(base: &str) -> Result<NodeClient> {
        let http = Client::builder().timeout(None).build()?;
        Ok(NodeClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("cannot reach node at {}", self.base))?;
        Ok(check(resp)?.json()?)
    }

    pub fn health(&self) -> Result<Health> {
        self.get("/health")
    }

    pub fn list(&self) -> Result<Vec<ModelManifest>> {
        self.get("/v1/models")
    }

    pub fn versions(&self, name: &str) -> Result<Vec<ModelManifest>> {
        self.get(&format!("/v1/models?name={name}"))
    }

    pub fn show(&self, reference: &str) -> Result<ModelManifest> {
        self.get(&format!("/v1/models/{reference}"))
    }

    pub fn receipt(&self, id: &Hash) -> Result<Receipt> {
        self.get(&format!("/v1/receipts/{id}"))
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .with_context(|| format!("cannot reach node at {}", self.base))?;
        Ok(check(resp)?.json()?)
    }

    /// Sends a signed request (and, for quorum mode, its escrow); with `wait`, the answer
    /// comes once the settlement is finalized.
    pub fn infer(&self, body: &InferBody, wait: bool) -> Result<InferResponse> {
        self.post(&format!("/v1/infer?wait={wait}"), body)
    }

    pub fn submit(&self, tx: &Transaction) -> Result<Submitted> {
        self.post("/v1/tx", tx)
    }

    pub fn account(&self, key: &PublicKey) -> Result<Account> {
        self.get(&format!("/v1/accounts/{key}"))
    }

    pub fn ledger(&self) -> Result<LedgerStatus> {
        self.get("/v1/ledger")
    }

    /// The model's price on the ledger, or None if it is not registered.
    pub fn price(&self, model: &ModelId) -> Result<Option<ModelPrice>> {
        let url = format!("{}/v1/prices/{model}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .with_context(|| format!("cannot reach node at {}", self.base))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(check(resp)?.json()?))
    }

    pub fn proof(&self, receipt: &Hash) -> Result<InclusionProof> {
        self.get(&format!("/v1/receipts/{receipt}/proof"))
    }

    /// Downloads a model's bytes, re-hashing them; a mismatch is an error and nothing is kept.
    pub fn pull(&self, id: &ModelId, dest: &Path, progress: bool) -> Result<()> {
        let url = format!("{}/v1/models/{id}/file", self.base);
        let resp = check(
            self.http
                .get(&url)
                .send()
                .with_context(|| format!("cannot reach node at {}", self.base))?,
        )?;
        let bar = progress_bar(progress, resp.content_length().unwrap_or(0), "downloading");
        let mut reader = Progress {
            inner: resp,
            bar: bar.clone(),
        };
        let tmp = dest.with_extension("partial");
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let result = (|| -> Result<()> {
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                std::io::Write::write_all(&mut file, &buf[..n])?;
            }
            let got = ModelId::from_hasher(&hasher);
            if got != *id {
                bail!("downloaded bytes hash to {got}, not {id}; nothing was kept");
            }
            file.sync_all()?;
            std::fs::rename(&tmp, dest)?;
            Ok(())
        })();
        bar.finish_and_clear();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Uploads a model (and optional calibration) with a progress bar; signs the claim.
    /// `id` is the file's id, computed by the caller from the bytes it already read; the node
    /// re-hashes what arrives and refuses a mismatch.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        file: &Path,
        id: ModelId,
        name: &str,
        version: &str,
        calibration: Option<&[u8]>,
        key: &NodeKey,
        progress: bool,
    ) -> Result<PublishResponse> {
        let bytes_len = std::fs::metadata(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        let calibration_hash =
            calibration.map(|c| Hash::of(verity_core::hash::domain::CALIBRATION, c));
        let meta = PublishMeta {
            name: name.to_string(),
            version: version.to_string(),
            id,
            size: bytes_len,
            calibration_hash,
            publisher: key.public(),
            signature: key
                .sign(&publish_statement(name, version, &id, calibration_hash.as_ref()).0),
        };
        let bar = progress_bar(progress, bytes_len, "uploading");
        let reader = Progress {
            inner: std::fs::File::open(file)?,
            bar: bar.clone(),
        };
        let mut form = multipart::Form::new()
            .text("meta", serde_json::to_string(&meta)?)
            .part(
                "model",
                multipart::Part::reader_with_length(reader, bytes_len).file_name("model"),
            );
        if let Some(c) = calibration {
            form = form.part(
                "calibration",
                multipart::Part::bytes(c.to_vec()).file_name("calibration.json"),
            );
        }
        let url = format!("{}/v1/models", self.base);
        let resp = self
            .http
            .post(&url)
            .multipart(form)
            .send()
            .map_err(|e| anyhow!("upload to {} failed: {e}", self.base));
        bar.finish_and_clear();
        Ok(check(resp?)?.json()?)
    }
}
