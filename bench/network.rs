//! Network benchmark (not a test): starts a 4-validator devnet as separate processes, then
//! measures on the digits MLP (canonical int8):
//! - quorum-verified inferences per second (k = 3, several concurrent clients, entry nodes
//!   round-robin), each answer carrying 3 signatures the client checks;
//! - settlement finality: from the entry node's answer (escrow + settlement submitted) until
//!   the settling block is finalized, polled by the client every 2 ms (p50, p99);
//! - offline verification of a receipt with its inclusion proof, and of a quorum's receipts.
//!
//! Run: `bash bench/network.sh` (or `cargo bench -p verity-cli --bench network -- SECONDS CLIENTS`).

use reqwest::blocking::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use verity_core::wire::{InferBody, InferResponse};
use verity_core::{verify_quorum, InferenceRequest, Mode, ModelId, NodeKey, TensorMap};
use verity_ledger::proof::{verify_inclusion, InclusionProof, ValidatorSet};
use verity_ledger::{Action, Transaction};

const NODES: usize = 4;
const K: u32 = 3;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Devnet {
    dir: PathBuf,
    base: u16,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("pids")) {
            for pid in pids.lines() {
                let _ = Command::new("kill").arg(pid).status();
            }
        }
    }
}

impl Devnet {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base as usize + i)
    }
}

/// The devnet's canonical digits MLP, as listed on its ledger.
const LISTING: &str = "digits-mlp.int8@1.0";

fn request(key: &NodeKey, chain_id: &str, model: ModelId, inputs: &TensorMap) -> InferBody {
    let req = InferenceRequest {
        model,
        inputs: inputs.clone(),
        mode: Mode::Quorum { k: K },
        params: Default::default(),
        nonce: verity_core::random_nonce().expect("randomness"),
        client: key.public(),
    };
    let escrow = Transaction::new(
        key,
        chain_id,
        0,
        Action::OpenRequest {
            request: req.hash(),
            model,
            listing: LISTING.into(),
            mode: Mode::Quorum { k: K },
            node: None,
        },
    );
    InferBody {
        signed: req.sign(key),
        escrow: Some(escrow),
    }
}

fn infer(http: &Client, url: &str, body: &InferBody) -> InferResponse {
    let resp = http
        .post(format!("{url}/v1/infer"))
        .json(body)
        .send()
        .expect("node reachable");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().unwrap_or_default()
    );
    resp.json().expect("response")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("verity-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = 23000 + (std::process::id() % 100) as u16 * 200;
    let net = Devnet {
        dir: dir.clone(),
        base,
    };
    let key_path = dir.join("user.key");
    let out = Command::new(env!("CARGO_BIN_EXE_verity"))
        .arg("--key")
        .arg(&key_path)
        .args(["devnet", "--no-wait", "--no-llm", "--dir"])
        .arg(&dir)
        .args(["--base-port", &base.to_string()])
        .output()
        .expect("verity devnet");
    assert!(
        out.status.success(),
        "devnet failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = NodeKey::load_or_create(&key_path).expect("key");
    let http = Client::new();
    let manifest: Value = http
        .get(format!("{}/v1/models/{LISTING}", net.url(0)))
        .send()
        .and_then(|r| r.json())
        .expect("model");
    let model: ModelId = manifest["id"].as_str().expect("id").parse().expect("id");
    let ledger: Value = http
        .get(format!("{}/v1/ledger", net.url(0)))
        .send()
        .and_then(|r| r.json())
        .expect("ledger");
    let chain_id = ledger["chain_id"].as_str().expect("chain id").to_string();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let inputs: TensorMap = serde_json::from_slice(
        &std::fs::read(fixtures.join("digit_input_mlp.json")).expect("input"),
    )
    .expect("input json");
    // Warm every node (model fetch from peers, executor cache).
    for i in 0..NODES {
        infer(
            &http,
            &net.url(i),
            &request(&key, &chain_id, model, &inputs),
        );
    }

    // Throughput: concurrent clients, entry nodes round-robin, answers checked client-side.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let stop = stop.clone();
            let url = net.url(c % NODES);
            let inputs = inputs.clone();
            let key = NodeKey::from_seed(key.secret_bytes());
            let chain_id = chain_id.clone();
            std::thread::spawn(move || {
                let http = Client::new();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = request(&key, &chain_id, model, &inputs);
                    let t = Instant::now();
                    let r = infer(&http, &url, &body);
                    let q = r.quorum.expect("quorum result");
                    verify_quorum(&q.receipts, Some(&inputs), None).expect("valid quorum");
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let served = latencies.len();

    // Finality: one client, each settlement watched until its block is finalized.
    let mut finality = Vec::new();
    let mut last = None;
    for i in 0..100 {
        let url = net.url(i % NODES);
        let body = request(&key, &chain_id, model, &inputs);
        let hash = body.signed.request.hash();
        let r = infer(&http, &url, &body);
        let t = Instant::now();
        loop {
            let s: Value = http
                .get(format!("{url}/v1/requests/{hash}"))
                .send()
                .and_then(|r| r.json())
                .expect("status");
            if s["status"] == "settled" {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "not settled: {s}");
            std::thread::sleep(Duration::from_millis(2));
        }
        finality.push(t.elapsed().as_secs_f64() * 1e3);
        last = r.quorum;
    }
    finality.sort_by(f64::total_cmp);

    // Offline verification of a receipt's inclusion proof and of a quorum.
    let q = last.expect("a settled quorum");
    // Node 1 may not have finalized the settling block yet: ask until it has.
    let proof_url = format!("{}/v1/receipts/{}/proof", net.url(1), q.receipts[0].id());
    let t = Instant::now();
    let proof: InclusionProof = loop {
        let resp = http.get(&proof_url).send().expect("node reachable");
        if resp.status().is_success() {
            break resp.json().expect("proof");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no proof: {}",
            resp.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let set: ValidatorSet =
        serde_json::from_slice(&std::fs::read(dir.join("validators.json")).expect("set"))
            .expect("set json");
    let runs = 500;
    let t = Instant::now();
    for _ in 0..runs {
        verify_inclusion(&proof, &set).expect("proof verifies");
    }
    let inclusion_us = t.elapsed().as_secs_f64() * 1e6 / runs as f64;
    let t = Instant::now();
    for _ in 0..runs {
        verify_quorum(&q.receipts, Some(&inputs), Some(&set.validators)).expect("quorum");
    }
    let quorum_us = t.elapsed().as_secs_f64() * 1e6 / runs as f64;

    println!("| measure (4 validator processes, 2 cores, digits MLP int8, k = 3) | value |");
    println!("|---|---|");
    println!(
        "| quorum-verified inferences/s ({clients} clients, {seconds} s) | {:.1} |",
        served as f64 / elapsed
    );
    println!(
        "| quorum answer latency p50 / p99 (3 executions + signatures) | {:.1} / {:.1} ms |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "| settlement finality p50 / p99 (submitted -> finalized, 100 requests) | {:.1} / {:.1} ms |",
        percentile(&finality, 0.5),
        percentile(&finality, 0.99)
    );
    println!("| offline verify: receipt + inclusion proof (path, header, 3-of-4 certificate) | {inclusion_us:.0} µs |");
    println!(
        "| offline verify: quorum of 3 receipts (signatures, hashes, input) | {quorum_us:.0} µs |"
    );
}
