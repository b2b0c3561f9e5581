//! A blocking HTTP client for one node's API.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{multipart, Client, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use verity_core::manifest::publish_statement;
use verity_core::wire::{
    Account, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Health, InferBody,
    InferResponse, LedgerStatus, ModelList, NameInfo, PublishMeta, PublishResponse, Submitted,
};
use verity_core::{Hash, ModelId, ModelManifest, NodeKey, PublicKey, Receipt};
use verity_ledger::proof::InclusionProof;
use verity_ledger::Transaction;

/// The manifests of a `GET /v1/models` answer (OpenAI's list shape).
fn manifests(list: ModelList) -> Vec<ModelManifest> {
    list.data.into_iter().map(|m| m.manifest).collect()
}

pub struct NodeClient {
    base: String,
    http: Client,
}

/// Largest model a download keeps in memory or on disk (the node's own limit is lower).
const MAX_MODEL_BYTES: u64 = 4 << 30;
/// Longest server-sent event line accepted from a node (the final chunk holds the receipt).
const MAX_EVENT_BYTES: u64 = 64 << 20;

/// Turns error answers into readable errors: Verity's `{"error":{"code","message"}}` and
/// OpenAI's `{"error":{"message","type","param","code"}}` alike.
fn check(resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: Value = resp.json().unwrap_or_default();
    bail!("node answered {status} {}", error_text(&body["error"]))
}

/// `(code, param p): message` from an error object.
pub fn error_text(error: &Value) -> String {
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("(no message)");
    match error["param"].as_str() {
        Some(param) => format!("({code}, param {param}): {message}"),
        None => format!("({code}): {message}"),
    }
}

/// Reads a chat completion's server-sent events: each `data:` event's JSON goes to
/// `on_chunk` until `data: [DONE]`. An `{"error": ...}` event, an invalid event, or a stream
/// that ends before `[DONE]` is an error.
fn read_events(
    reader: &mut dyn BufRead,
    on_chunk: &mut dyn FnMut(&Value) -> Result<()>,
) -> Result<()> {
    read_events_capped(reader, MAX_EVENT_BYTES, on_chunk)
}

/// [`read_events`] with events of at most `max_event` bytes.
fn read_events_capped(
    reader: &mut dyn BufRead,
    max_event: u64,
    on_chunk: &mut dyn FnMut(&Value) -> Result<()>,
) -> Result<()> {
    let mut data = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(max_event)
            .read_until(b'\n', &mut line)
            .context("the chat stream broke off")?;
        if n == 0 {
            bail!("the chat stream ended before `data: [DONE]`");
        }
        if !line.ends_with(b"\n") && n as u64 == max_event {
            bail!("a chat stream event is longer than {max_event} bytes");
        }
        let text = std::str::from_utf8(&line)
            .context("the chat stream is not UTF-8")?
            .trim_end_matches(['\n', '\r']);
        if let Some(payload) = text.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(payload.strip_prefix(' ').unwrap_or(payload));
            // Many `data:` lines make one event: the event as a whole is capped too.
            if data.len() as u64 > max_event {
                bail!("a chat stream event is longer than {max_event} bytes");
            }
            continue;
        }
        // Other fields (`event:`, `id:`) and comments (`:`) are ignored; a blank line ends
        // an event.
        if !text.is_empty() || data.is_empty() {
            continue;
        }
        let event = std::mem::take(&mut data);
        if event == "[DONE]" {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(&event).map_err(|e| {
            let shown: String = event.chars().take(200).collect();
            anyhow!("the chat stream sent an invalid event ({e}): {shown}")
        })?;
        if chunk.get("error").is_some() {
            bail!("generation failed {}", error_text(&chunk["error"]));
        }
        on_chunk(&chunk)?;
    }
}

/// Reads everything from `reader` into `sink` while hashing it, up to `MAX_MODEL_BYTES`;
/// the bytes must hash to `id`.
fn copy_verified(reader: &mut dyn Read, sink: &mut dyn std::io::Write, id: &ModelId) -> Result<()> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_MODEL_BYTES {
            bail!("the download exceeds {MAX_MODEL_BYTES} bytes; nothing was kept");
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])?;
    }
    let got = ModelId::from_hasher(&hasher);
    if got != *id {
        bail!("downloaded bytes hash to {got}, not {id}; nothing was kept");
    }
    Ok(())
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
        Ok(manifests(self.get("/v1/models")?))
    }

    pub fn versions(&self, name: &str) -> Result<Vec<ModelManifest>> {
        Ok(manifests(self.get(&format!("/v1/models?name={name}"))?))
    }

    pub fn show(&self, reference: &str) -> Result<ModelManifest> {
        self.get(&format!("/v1/models/{reference}"))
    }

    pub fn receipt(&self, id: &Hash) -> Result<Receipt> {
        self.get(&format!("/v1/receipts/{id}"))
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Ok(self.post_response(path, body)?.json()?)
    }

    /// POSTs `body` as JSON; a non-success status is an error.
    fn post_response<B: Serialize>(&self, path: &str, body: &B) -> Result<Response> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .with_context(|| format!("cannot reach node at {}", self.base))?;
        check(resp)
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

    /// Who owns a model name on the ledger, or None if nobody claimed it.
    pub fn name(&self, name: &str) -> Result<Option<NameInfo>> {
        self.get_optional(&format!("/v1/names/{name}"))
    }

    /// GET `path`, None on 404.
    fn get_optional<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let url = format!("{}{path}", self.base);
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
        let resp = self.get_file(&url)?;
        let bar = progress_bar(progress, resp.content_length().unwrap_or(0), "downloading");
        let mut reader = Progress {
            inner: resp,
            bar: bar.clone(),
        };
        let tmp = dest.with_extension("partial");
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let result = (|| -> Result<()> {
            copy_verified(&mut reader, &mut file, id)?;
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

    /// A model's bytes in memory, from this node (`GET /v1/models/{id}/file`) or from `url`
    /// when given; they must hash to `id`.
    pub fn model_bytes(&self, id: &ModelId, url: Option<&str>, progress: bool) -> Result<Vec<u8>> {
        let url = match url {
            Some(u) => u.to_string(),
            None => format!("{}/v1/models/{id}/file", self.base),
        };
        let resp = self.get_file(&url)?;
        let len = resp.content_length().unwrap_or(0);
        let bar = progress_bar(progress, len, "downloading");
        let mut reader = Progress {
            inner: resp,
            bar: bar.clone(),
        };
        let mut bytes = Vec::with_capacity(len.min(MAX_MODEL_BYTES) as usize);
        let result = copy_verified(&mut reader, &mut bytes, id);
        bar.finish_and_clear();
        result.with_context(|| format!("downloading {url}"))?;
        Ok(bytes)
    }

    fn get_file(&self, url: &str) -> Result<Response> {
        check(
            self.http
                .get(url)
                .send()
                .with_context(|| format!("cannot reach {url}"))?,
        )
    }

    /// `POST /v1/chat/completions` without streaming: the `chat.completion` body and the
    /// compact receipt header, if any.
    pub fn chat(&self, body: &ChatCompletionRequest) -> Result<(ChatCompletion, Option<String>)> {
        let resp = self.chat_request(body)?;
        let header = resp
            .headers()
            .get("verity-receipt")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .json()
            .context("the node's chat answer is not valid JSON")?;
        Ok((body, header))
    }

    /// `POST /v1/chat/completions` with `stream: true`: calls `on_chunk` with every
    /// `chat.completion.chunk` as it arrives, until `data: [DONE]`. An `{"error": ...}` event
    /// or a stream that ends before `[DONE]` is an error.
    pub fn chat_stream(
        &self,
        body: &ChatCompletionRequest,
        on_chunk: &mut dyn FnMut(ChatCompletionChunk) -> Result<()>,
    ) -> Result<()> {
        let resp = self.chat_request(body)?;
        read_events(&mut BufReader::new(resp), &mut |v| {
            on_chunk(
                serde_json::from_value(v.clone())
                    .context("the chat stream sent a chunk that is not a chat.completion.chunk")?,
            )
        })
    }

    fn chat_request(&self, body: &ChatCompletionRequest) -> Result<Response> {
        self.post_response("/v1/chat/completions", body)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &str) -> (Result<()>, Vec<Value>) {
        let mut got = vec![];
        let r = read_events(&mut stream.as_bytes(), &mut |c| {
            got.push(c.clone());
            Ok(())
        });
        (r, got)
    }

    #[test]
    fn server_sent_events_are_read_until_done() {
        let (r, got) = events(
            ": comment\n\ndata: {\"a\": 1}\n\nevent: x\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n",
        );
        r.unwrap();
        assert_eq!(
            got,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        // Nothing after [DONE] is read.
        let (r, got) = events("data: [DONE]\n\ndata: {\"a\": 1}\n\n");
        r.unwrap();
        assert!(got.is_empty());

        let (r, got) = events("data: {\"a\": 1}\n\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("ended before"));
        assert_eq!(got.len(), 1);
        let (r, _) = events(
            "data: {\"error\": {\"message\": \"boom\", \"type\": \"server_error\", \"param\": null, \"code\": null}}\n\n",
        );
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("boom") && e.contains("server_error"), "{e}");
        let (r, _) = events("data: {nope\n\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("invalid event"));
        // An event made of many short data lines is capped as a whole.
        let many = "data: x\n".repeat(600);
        let r = read_events_capped(&mut many.as_bytes(), 1000, &mut |_| Ok(()));
        assert!(format!("{:#}", r.unwrap_err()).contains("longer than"));
    }

    #[test]
    fn openai_and_verity_errors_read_alike() {
        let oai = serde_json::json!({"message": "too hot", "type": "invalid_request_error",
                                     "param": "temperature", "code": "invalid_value"});
        assert_eq!(
            error_text(&oai),
            "(invalid_value, param temperature): too hot"
        );
        let verity = serde_json::json!({"code": "not_found", "message": "no model"});
        assert_eq!(error_text(&verity), "(not_found): no model");
        let no_code = serde_json::json!({"message": "m", "type": "server_error", "code": null});
        assert_eq!(error_text(&no_code), "(server_error): m");
    }
}
