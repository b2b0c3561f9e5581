//! A node with SmolLM2 (Q4_1 GGUF) published, shared by the tests of one test binary.

use reqwest::blocking::{multipart, Client};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use verity_core::manifest::publish_statement;
use verity_core::wire::PublishMeta;
use verity_core::{ModelId, NodeKey};
use verity_node::NodeConfig;

/// The model the LLM tests use: `$VERITY_SMOLLM2_GGUF`, or the cache `scripts/fetch_smollm2.sh`
/// fills (`$VERITY_CACHE` or `~/.cache/verity`).
pub fn smollm2_path() -> PathBuf {
    verity_llm::smollm2::local_file().expect("set HOME, VERITY_CACHE or VERITY_SMOLLM2_GGUF")
}

pub fn smollm2_bytes() -> Vec<u8> {
    let path = smollm2_path();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/fetch_smollm2.sh` first",
            path.display()
        )
    })
}

pub struct TestNode {
    pub url: String,
    pub http: Client,
    pub key: NodeKey,
    /// The published SmolLM2's id.
    pub model: ModelId,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// One node per test binary, with SmolLM2 published as `SmolLM2-135M-Instruct@1.0`.
pub fn node() -> &'static TestNode {
    static NODE: OnceLock<TestNode> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(verity_node::start(config)).unwrap();
        let mut node = TestNode {
            url: format!("http://{}", running.addr),
            // Generations in debug builds take a while; never let the client give up first.
            http: Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .unwrap(),
            key: NodeKey::from_seed([9; 32]),
            model: ModelId([0; 32]),
            _rt: rt,
            _dir: dir,
        };
        let bytes = smollm2_bytes();
        let (status, body) = node.publish("SmolLM2-135M-Instruct", "1.0", bytes);
        assert_eq!(status, 201, "{body}");
        node.model = serde_json::from_value(body["model"]["id"].clone()).unwrap();
        node
    })
}

impl TestNode {
    pub fn meta(&self, name: &str, version: &str, model: &[u8]) -> PublishMeta {
        let id = ModelId::of_bytes(model);
        PublishMeta {
            name: name.into(),
            version: version.into(),
            id,
            size: model.len() as u64,
            calibration_hash: None,
            publisher: self.key.public(),
            signature: self
                .key
                .sign(&publish_statement(name, version, &id, None).0),
        }
    }

    pub fn publish(&self, name: &str, version: &str, model: Vec<u8>) -> (u16, Value) {
        let form = multipart::Form::new()
            .text(
                "meta",
                serde_json::to_string(&self.meta(name, version, &model)).unwrap(),
            )
            .part("model", multipart::Part::bytes(model).file_name("m"));
        let resp = self
            .http
            .post(format!("{}/v1/models", self.url))
            .multipart(form)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.url)).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    pub fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// POSTs a raw chat-completions body.
    pub fn chat_raw(&self, body: &str) -> reqwest::blocking::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    }
}
