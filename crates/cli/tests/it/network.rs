//! Four validator processes on loopback: quorum inferences settle on the ledger, a killed
//! validator does not stop service, its restart catches up to the same state roots, and a
//! node that signs tampered outputs is caught as a recorded disagreement.

use crate::common::{fixture, text, verity};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verity_core::Mode;
use verity_engine::testing::pool_then_relus;

const NODES: usize = 4;

struct Net {
    dir: tempfile::TempDir,
    base: u16,
    children: Vec<Option<Child>>,
    http: reqwest::blocking::Client,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Net {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base as usize + i)
    }
    fn config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}/config.json"))
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("user.key")
    }
    fn cli(&self, node: usize) -> Command {
        let mut c = verity();
        c.arg("--node")
            .arg(self.url(node))
            .arg("--key")
            .arg(self.key());
        c
    }
    fn start(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{i}.log"))).unwrap();
        let child = verity()
            .args(["node", "--config"])
            .arg(self.config(i))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
        self.wait_for(&format!("node {i} healthy"), || {
            self.get(i, "/health").is_some()
        });
    }
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap(); // SIGKILL: no clean shutdown
            c.wait().unwrap();
        }
    }
    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(i)))
            .send()
            .ok()?;
        resp.status().is_success().then(|| resp.json().ok())?
    }
    fn height(&self, i: usize) -> u64 {
        self.get(i, "/v1/ledger").expect("ledger")["height"]
            .as_u64()
            .unwrap()
    }
    fn state_root_at(&self, i: usize, height: u64) -> Option<String> {
        self.get(i, &format!("/v1/blocks/{height}"))
            .map(|b| b["state_root"].as_str().unwrap().to_string())
    }
    fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    /// A quorum inference through `node`, waiting for its settlement and checking its signers
    /// against the ledger's draw (their inclusion proofs, under the validator set); returns the
    /// saved quorum's JSON and the settling height, or the failure's output.
    fn quorum(&self, node: usize, n: usize) -> Result<(Value, u64), String> {
        let out = self.dir.path().join(format!("quorum-{n}.json"));
        let o = self
            .cli(node)
            .args(["infer", "digits-mlp.int8@1.0", "--mode", "quorum", "--wait"])
            .arg("--input")
            .arg(fixture("digit_input_mlp.json"))
            .arg("--validators")
            .arg(self.dir.path().join("validators.json"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        if !o.status.success() {
            assert!(!out.exists(), "no receipt is saved for a failed quorum");
            return Err(text(&o));
        }
        let stdout = String::from_utf8_lossy(&o.stdout);
        let height = stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("settled  request ")?
                    .split(" at height ")
                    .nth(1)
            })
            .and_then(|h| h.trim().parse().ok())
            .unwrap_or_else(|| panic!("not settled: {stdout}"));
        assert!(stdout.contains("signers  drawn by the ledger"), "{stdout}");
        let settled: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(settled["inclusion"].as_array().map(Vec::len), Some(3));
        Ok((settled["quorum"].clone(), height))
    }
    fn all_healthy(&self) -> bool {
        (0..NODES).all(|i| self.children[i].is_none() || self.get(i, "/health").is_some())
    }

    /// The attacks of issue 12, each against a running network: every node stays up and
    /// serves, and the network keeps settling.
    fn survive_attacks(&self) {
        // Hostile models published to node 0: refused by their cost before anything runs.
        let hostile = [
            (
                "pool-bomb",
                pool_then_relus(1, 1 << 20, 1 << 20, (1 << 20) - 1, 0),
            ),
            (
                "padding-bomb",
                pool_then_relus(1, 1 << 14, 1, (1 << 14) - 1, 64),
            ),
        ];
        for (name, bytes) in hostile {
            let file = self.dir.path().join(format!("{name}.vq8"));
            std::fs::write(&file, bytes).unwrap();
            let o = self
                .cli(0)
                .args(["model", "publish"])
                .arg(&file)
                .args(["--name", name, "--version", "1.0", "--price", "10"])
                .output()
                .unwrap();
            assert!(!o.status.success(), "{name} was published");
            assert!(text(&o).contains("limit"), "{}", text(&o));
        }
        assert!(self.all_healthy());

        // Slowloris against node 1: half-sent request heads are cut after the header timeout
        // while the network keeps serving quorums.
        let mut held: Vec<std::net::TcpStream> = (0..100)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", self.base + 1)).ok())
            .collect();
        for c in &mut held {
            let _ = std::io::Write::write_all(c, b"GET /health HTTP/1.1\r\nHost: x\r\n");
        }
        self.quorum(0, 100).expect("quorum served during slowloris");
        for (i, c) in held.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut sink = Vec::new();
            let closed = match std::io::Read::read_to_end(c, &mut sink) {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            assert!(closed, "slowloris connection {i} is still open");
        }

        // Transaction spam at node 2: parked nonce-gap transactions and badly signed ones.
        let key = std::fs::read_to_string(self.key()).unwrap();
        let seed: [u8; 32] = hex::decode(key.trim()).unwrap().try_into().unwrap();
        let user = verity_core::NodeKey::from_seed(seed);
        let health = self.get(2, "/health").unwrap();
        let chain = health["chain_id"].as_str().unwrap().to_string();
        let account = self
            .get(2, &format!("/v1/accounts/{}", user.public()))
            .unwrap();
        let nonce = account["nonce"].as_u64().unwrap();
        let post = |tx: &verity_core::tx::Transaction| {
            self.http
                .post(format!("{}/v1/tx", self.url(2)))
                .json(tx)
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        let transfer = |n: u64| {
            verity_core::tx::Transaction::new(
                &user,
                &chain,
                n,
                verity_core::tx::Action::Transfer {
                    to: verity_core::NodeKey::from_seed([3; 32]).public(),
                    amount: 1,
                },
            )
        };
        for n in nonce + 2..nonce + 40 {
            assert_eq!(post(&transfer(n)), 200, "gap transaction {n}");
        }
        for n in 0..300 {
            let mut forged = transfer(nonce + 1000 + n);
            forged.signature.0[0] ^= 1;
            assert_eq!(post(&forged), 401);
        }
        let h = self.height(2);
        self.quorum(2, 101)
            .expect("quorum served after transaction spam");
        self.wait_for("blocks after the spam", || self.height(2) > h);

        // A model only node 0 has, asked of node 3 by 16 clients at once: node 3 fetches it
        // from a peer once, and every client gets it.
        let o = self
            .cli(0)
            .args(["model", "publish"])
            .arg(fixture("digits_cnn.onnx"))
            .args(["--name", "digits-cnn", "--version", "1.0", "--price", "10"])
            .arg("--calibration")
            .arg(fixture("digits_calib_cnn.json"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let id = self.get(0, "/v1/models/digits-cnn.int8@1.0").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let asked: Vec<_> = (0..16u8)
            .map(|i| {
                let url = format!("{}/v1/models/{id}", self.url(3));
                // Sixteen clients, each from its own loopback address.
                let from = std::net::IpAddr::from([127, 0, 0, 10 + i]);
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .local_address(from)
                        .build()
                        .ok()?;
                    client.get(url).send().map(|r| r.status().as_u16()).ok()
                })
            })
            .collect();
        for a in asked {
            assert_eq!(a.join().unwrap(), Some(200));
        }
        let log = std::fs::read_to_string(self.dir.path().join("node-3.log")).unwrap();
        let fetches = log
            .lines()
            .filter(|l| l.contains("model fetched from a peer") && l.contains(&id))
            .count();
        assert_eq!(fetches, 1, "node 3 fetched {id} {fetches} times");
        assert!(self.all_healthy());
    }

    /// The user's key, from the file the CLI uses.
    fn user(&self) -> verity_core::NodeKey {
        let key = std::fs::read_to_string(self.key()).unwrap();
        let seed: [u8; 32] = hex::decode(key.trim()).unwrap().try_into().unwrap();
        verity_core::NodeKey::from_seed(seed)
    }

    fn balance_of(&self, i: usize, key: &verity_core::PublicKey) -> u64 {
        self.get(i, &format!("/v1/accounts/{key}"))
            .and_then(|a| a["balance"].as_u64())
            .unwrap_or(0)
    }

    /// Rational cheaters against payment (issue 13 findings 1 and 2): spending one price on
    /// four requests at four entry nodes at once, and asking executors directly with an escrow
    /// that was never submitted. Neither gets work without paying for it.
    fn cheaters_get_no_unpaid_work(&self, model: &str) {
        // A client funded with exactly one price (10).
        let poor = verity_core::NodeKey::from_seed([42; 32]);
        let poor_file = self.dir.path().join("poor.key");
        std::fs::write(&poor_file, hex::encode([42u8; 32])).unwrap();
        let o = self
            .cli(0)
            .args(["ledger", "transfer", &poor.public().to_string(), "10"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        self.wait_for("the transfer", || self.balance_of(0, &poor.public()) == 10);
        let runs: Vec<_> = (0..NODES)
            .map(|i| {
                let mut c = verity();
                c.arg("--node")
                    .arg(self.url(i))
                    .arg("--key")
                    .arg(&poor_file)
                    .args(["infer", "digits-mlp.int8@1.0", "--wait", "--input"])
                    .arg(fixture("digit_input_mlp.json"));
                std::thread::spawn(move || c.output().unwrap())
            })
            .collect();
        let outputs: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        let served = outputs.iter().filter(|o| o.status.success()).count();
        let all: Vec<String> = outputs.iter().map(text).collect();
        assert_eq!(served, 1, "one price bought {served} results: {all:#?}");
        self.wait_for("the one payment to settle", || {
            self.balance_of(0, &poor.public()) == 0
        });

        // Executors asked directly with a valid escrow that never reached the ledger.
        let user = self.user();
        let health = self.get(0, "/health").unwrap();
        let chain = health["chain_id"].as_str().unwrap().to_string();
        let before = self.balance_of(0, &user.public());
        let inputs: verity_core::TensorMap =
            serde_json::from_slice(&std::fs::read(fixture("digit_input_mlp.json")).unwrap())
                .unwrap();
        let request = verity_core::InferenceRequest {
            model: model.parse().unwrap(),
            inputs,
            mode: verity_core::Mode::Quorum { k: 3 },
            params: Default::default(),
            nonce: 777_777,
            client: user.public(),
        };
        let escrow = verity_core::tx::Transaction::new(
            &user,
            &chain,
            0,
            verity_core::tx::Action::OpenRequest {
                request: request.hash(),
                model: request.model,
                listing: "digits-mlp.int8@1.0".into(),
                mode: Mode::Quorum { k: 3 },
                node: None,
            },
        );
        let body = verity_core::wire::InferBody {
            signed: request.clone().sign(&user),
            escrow: Some(escrow),
        };
        let asked: Vec<_> = (0..NODES)
            .map(|i| {
                let url = format!("{}/v1/execute", self.url(i));
                let body = serde_json::to_vec(&body).unwrap();
                std::thread::spawn(move || {
                    reqwest::blocking::Client::new()
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .map(|r| r.status().as_u16())
                        .ok()
                })
            })
            .collect();
        for a in asked {
            assert_eq!(a.join().unwrap(), Some(402), "an executor worked unpaid");
        }
        assert_eq!(self.balance_of(0, &user.public()), before);

        // A request that cannot run (its nonce is spent at that node) is refused before its
        // escrow is opened, so the client pays nothing for it.
        let node0 = verity_core::PublicKey::from_hex(health["node"].as_str().unwrap()).unwrap();
        let signed_request = |params: &[(&str, &str)]| {
            let mut r = request.clone();
            r.mode = verity_core::Mode::Signed;
            r.params = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let escrow = verity_core::tx::Transaction::new(
                &user,
                &chain,
                0,
                verity_core::tx::Action::OpenRequest {
                    request: r.hash(),
                    model: r.model,
                    listing: "digits-mlp.int8@1.0".into(),
                    mode: Mode::Signed,
                    node: Some(node0),
                },
            );
            serde_json::to_vec(&verity_core::wire::InferBody {
                signed: r.sign(&user),
                escrow: Some(escrow),
            })
            .unwrap()
        };
        let post = |body: Vec<u8>| {
            let r = self
                .http
                .post(format!("{}/v1/infer?wait=true", self.url(0)))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .unwrap();
            (r.status().as_u16(), r.text().unwrap_or_default())
        };
        let (status, body) = post(signed_request(&[]));
        assert_eq!(status, 200, "{body}");
        self.wait_for("the paid request to settle", || {
            self.balance_of(0, &user.public()) == before - 10
        });
        let (status, body) = post(signed_request(&[("again", "1")]));
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("replayed_nonce"), "{body}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(self.balance_of(0, &user.public()), before - 10);
    }

    /// Issue 13 findings 7 and 8, against a running network: another key publishes the same
    /// name at a higher version, and lists the owner's model file under its own name at a
    /// ruinous price. The name still resolves to its owner's listing on every node, the owner's
    /// price is untouched, and every node lists the network's models.
    fn names_stay_with_their_owner(&self, model: &str) {
        let squatter = self.dir.path().join("squatter.key");
        std::fs::write(&squatter, hex::encode([43u8; 32])).unwrap();
        let squat = verity_core::NodeKey::from_seed([43; 32]);
        let o = self
            .cli(0)
            .args(["ledger", "transfer", &squat.public().to_string(), "5000"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        self.wait_for("the squatter's funds", || {
            self.balance_of(0, &squat.public()) == 5000
        });
        let as_squatter = |node: usize| {
            let mut c = verity();
            c.arg("--node")
                .arg(self.url(node))
                .arg("--key")
                .arg(&squatter);
            c
        };
        let o = as_squatter(1)
            .args(["model", "publish"])
            .arg(fixture("digits_mlp.onnx"))
            .args(["--name", "digits-mlp", "--version", "9.0", "--price", "1"])
            .arg("--calibration")
            .arg(fixture("digits_calib_mlp.json"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "a squatter registered the name");
        assert!(text(&o).contains("belongs to"), "{}", text(&o));
        // The squatter claims a name of its own and lists the owner's canonical file under it.
        let o = as_squatter(1)
            .args(["ledger", "register-name", "squat"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        self.wait_for("the squatter's name", || {
            self.get(2, "/v1/names/squat").is_some()
        });
        let o = as_squatter(1)
            .args([
                "ledger",
                "register-model",
                model,
                "squat",
                "1.0",
                &u64::MAX.to_string(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        self.wait_for("the squatter's listing", || {
            self.get(2, "/v1/names/squat")
                .is_some_and(|n| n["models"].as_array().is_some_and(|m| !m.is_empty()))
        });
        for i in 0..NODES {
            let m = self.get(i, "/v1/models/digits-mlp.int8").unwrap();
            assert_eq!(m["id"], model, "node {i}");
            assert_eq!(m["version"], "1.0", "node {i}");
            let owner = self.get(i, "/v1/names/digits-mlp").unwrap();
            assert_eq!(owner["owner"], m["publisher"], "node {i}");
            assert!(
                self.get(i, "/v1/models/digits-mlp@9.0").is_none(),
                "node {i} resolves the squatter's version"
            );
            // The network's models, listed by every node (not only where they were published).
            let listed = self.get(i, "/v1/models").unwrap();
            let names: Vec<&str> = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["name"].as_str())
                .collect();
            assert!(
                names.contains(&"digits-mlp") && names.contains(&"digits-mlp.int8"),
                "node {i} lists {names:?}"
            );
        }
    }

    /// The node-to-node dispute filing and the proof store, attacked: malformed bodies and
    /// hashes, a dispute over a request with no open escrow (a settled quorum, replayed), and
    /// receipts that agree. None is filed; unknown proofs are 404.
    fn dispute_and_proof_endpoints_refuse_what_they_cannot_back(&self, settled: &Value) {
        assert_eq!(
            self.status_of(self.http.get(format!("{}/v1/proofs/nothex", self.url(1)))),
            400
        );
        let unknown = format!("{}/v1/proofs/{}", self.url(1), "00".repeat(32));
        assert_eq!(self.status_of(self.http.get(unknown)), 404);
        let disputes = format!("{}/v1/disputes", self.url(1));
        let body = |b: Vec<u8>| {
            self.http
                .post(&disputes)
                .header("content-type", "application/json")
                .body(b)
        };
        assert_eq!(self.status_of(body(b"{not json".to_vec())), 400);
        // A megabyte of nesting: refused at the JSON depth limit, the node unharmed.
        let deep = self.status_of(body(vec![b'['; 1 << 20]));
        assert!(matches!(deep, 400 | 413 | 422), "{deep}");
        assert!(self.get(1, "/health").is_some());
        // A quorum request signed by the user, with the receipts of a settled quorum: its
        // escrow is not open (it never was, for this request), so nobody files it.
        let user = self.user();
        let inputs: verity_core::TensorMap =
            serde_json::from_slice(&std::fs::read(fixture("digit_input_mlp.json")).unwrap())
                .unwrap();
        let receipts: Vec<verity_core::Receipt> =
            serde_json::from_value(settled["receipts"].clone()).unwrap();
        let request = verity_core::InferenceRequest {
            model: receipts[0].model,
            inputs,
            mode: Mode::Quorum { k: 3 },
            params: Default::default(),
            nonce: 4_242,
            client: user.public(),
        };
        let dispute = verity_core::wire::DisputeBody {
            signed: request.sign(&user),
            receipts,
        };
        let resp = self.http.post(&disputes).json(&dispute);
        assert_eq!(self.status_of(resp), 402);
        let before = self.get(1, "/v1/disputes").unwrap();
        assert!(
            before
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["kind"] != "quorum"),
            "{before}"
        );
    }

    fn status_of(&self, request: reqwest::blocking::RequestBuilder) -> u16 {
        request.send().unwrap().status().as_u16()
    }

    /// All running nodes report the same state root at a height every one of them finalized.
    fn assert_same_state(&self) {
        let running: Vec<usize> = (0..NODES).filter(|i| self.children[*i].is_some()).collect();
        let common = running.iter().map(|i| self.height(*i)).min().unwrap();
        let roots: Vec<_> = running
            .iter()
            .map(|i| self.state_root_at(*i, common))
            .collect();
        assert!(roots[0].is_some(), "block {common} is known");
        assert!(
            roots.iter().all(|r| *r == roots[0]),
            "state roots differ at height {common}: {roots:?}"
        );
    }
}

/// A base port with every node's two listeners free (API at base + i, p2p at base + 100 + i),
/// probed from `from` (tests running at once start from different places).
fn free_base_port(from: u16) -> u16 {
    for attempt in 0..200u16 {
        let base = from + (std::process::id() as u16 % 50) * 200 + attempt * 7 % 180;
        let all_free = (0..NODES as u16)
            .flat_map(|i| [base + i, base + 100 + i])
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free ports");
}

#[test]
fn four_processes_serve_quorums_survive_a_kill_catch_up_and_catch_a_tampering_node() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(21000);
    let mut net = Net {
        dir,
        base,
        children: (0..NODES).map(|_| None).collect(),
        http: reqwest::blocking::Client::new(),
    };
    let init = verity()
        .arg("--key")
        .arg(net.key())
        .args(["devnet", "--init-only", "--dir"])
        .arg(net.dir.path())
        .args(["--base-port", &base.to_string()])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    for i in 0..NODES {
        net.start(i);
    }
    // An idle validator holds little memory: its p2p mailboxes are sized by the message quota,
    // which once made every node hold 5.3 GB before serving anything.
    for c in net.children.iter().flatten() {
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap();
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert!(rss_kb < 200 * 1024, "an idle node holds {rss_kb} kB");
    }

    // Publish to node 0 only: the name is claimed on the ledger, and the model and its
    // canonical form listed under it at a price, in the same command.
    let o = net
        .cli(0)
        .args(["model", "publish"])
        .arg(fixture("digits_mlp.onnx"))
        .args(["--name", "digits-mlp", "--version", "1.0", "--price", "10"])
        .arg("--calibration")
        .arg(fixture("digits_calib_mlp.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let model = net.get(0, "/v1/models/digits-mlp.int8@1.0").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    net.wait_for("the listing to be finalized everywhere", || {
        (0..NODES).all(|i| net.get(i, &format!("/v1/prices/{model}")).is_some())
    });
    net.names_stay_with_their_owner(&model);

    // Quorum inferences through different entry nodes, each settled and verifiable offline.
    let validators = net.dir.path().join("validators.json");
    let mut settled = Vec::new();
    let mut heights = Vec::new();
    for n in 0..3 {
        let (q, height) = net.quorum(n % NODES, n).expect("quorum served");
        heights.push((n % NODES, height));
        assert_eq!(q["receipts"].as_array().unwrap().len(), 3);
        let file = net.dir.path().join(format!("quorum-{n}.json"));
        let o = verity()
            .arg("verify")
            .arg(&file)
            .arg("--input")
            .arg(fixture("digit_input_mlp.json"))
            .arg("--validators")
            .arg(&validators)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        settled.push(q);
    }
    // A signed-mode inference on a network is paid through the ledger too.
    let user = net.get(0, "/health").map(|_| ()).and_then(|_| {
        let key = std::fs::read_to_string(net.key()).ok()?;
        let seed: [u8; 32] = hex::decode(key.trim()).ok()?.try_into().ok()?;
        Some(verity_core::NodeKey::from_seed(seed).public())
    });
    let user = user.expect("user key");
    let balance = |i: usize| {
        net.get(i, &format!("/v1/accounts/{user}")).unwrap()["balance"]
            .as_u64()
            .unwrap()
    };
    let before = balance(2);
    let o = net
        .cli(2)
        .args(["infer", "digits-mlp.int8@1.0", "--wait", "--out"])
        .arg(net.dir.path().join("signed.json"))
        .arg("--input")
        .arg(fixture("digit_input_mlp.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("settled  request"), "{}", text(&o));
    assert_eq!(balance(2), before - 10, "the signed request cost one price");

    // zk mode on a network: one node executes and proves, the ledger settles it like signed
    // mode, and the proof checks offline with the model fetched by id.
    let before = balance(1);
    let zk_receipt = net.dir.path().join("zk.json");
    let o = net
        .cli(1)
        .args([
            "infer",
            "digits-mlp.int8@1.0",
            "--mode",
            "zk",
            "--wait",
            "--out",
        ])
        .arg(&zk_receipt)
        .arg("--input")
        .arg(fixture("digit_input_mlp.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("settled  request") && text(&o).contains("zk proof"));
    assert_eq!(balance(1), before - 10, "the zk request cost one price");
    // It settled only once the validators had fetched the proof and verified it.
    let disputes = net.get(1, "/v1/disputes").unwrap();
    let proof = disputes
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "proof")
        .unwrap_or_else(|| panic!("no proof judged: {disputes}"));
    assert_eq!(proof["verdict"], proof["signed"][0][1], "{proof}");
    assert_eq!(proof["slashed"], serde_json::json!([]), "{proof}");
    let o = net
        .cli(1)
        .arg("verify")
        .arg(&zk_receipt)
        .arg("--input")
        .arg(fixture("digit_input_mlp.json"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("zk proof"),
        "{}",
        text(&o)
    );

    net.survive_attacks();
    net.cheaters_get_no_unpaid_work(&model);
    net.dispute_and_proof_endpoints_refuse_what_they_cannot_back(&settled[0]);

    // Nodes that were never published to fetched the model from a peer, by hash.
    assert!(
        (1..NODES).any(|i| net.get(i, &format!("/v1/models/{model}")).is_some()),
        "executors fetched the model"
    );

    // Transactions are gossiped: some settlement was proposed by a validator other than the
    // entry node that received it.
    let keys: Vec<String> = (0..NODES)
        .map(|i| {
            net.get(i, "/health").unwrap()["node"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let gossiped = heights.iter().any(|(entry, h)| {
        net.get(0, &format!("/v1/blocks/{h}")).unwrap()["proposer"] != keys[*entry].as_str()
    });
    assert!(
        gossiped,
        "only entry nodes proposed their own settlements: {heights:?}"
    );

    // Kill validator 3; 3 of 4 keep the ledger live and spares keep quorums served.
    net.kill(3);
    let h = net.height(0);
    for n in 3..7 {
        let (q, height) = net
            .quorum(n % 3, n)
            .expect("quorum served with a validator down");
        assert!(height > h);
        settled.push(q);
    }

    // Restart it from its storage: it catches up and agrees on the state.
    net.start(3);
    let target = net.height(0);
    net.wait_for("the restarted validator to catch up", || {
        net.height(3) >= target
    });
    net.assert_same_state();
    // It serves inclusion proofs for the receipts settled while it was down (their blocks
    // came by backfill; certificates it lacks are fetched from peers), and they verify.
    let proof = net.dir.path().join("proof.json");
    for q in &settled[3..] {
        let r: verity_core::Receipt = serde_json::from_value(q["receipts"][0].clone()).unwrap();
        let o = net
            .cli(3)
            .args(["ledger", "proof", &r.id().to_hex(), "--out"])
            .arg(&proof)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let o = verity()
            .arg("verify")
            .arg(&proof)
            .arg("--validators")
            .arg(&validators)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }

    // Make node 3 a liar: it signs corrupted outputs. The first quorum that reaches it goes
    // before the validators, who re-execute it: the liar is slashed, the client refunded, the
    // honest executors paid; the client gets an error, never the output as verified.
    net.kill(3);
    let config = net.config(3);
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["tamper_outputs"] = Value::Bool(true);
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    net.start(3);
    let liar = net.get(3, "/health").unwrap()["node"]
        .as_str()
        .unwrap()
        .to_string();
    let stake_of = |key: &str| {
        net.get(0, "/v1/ledger").unwrap()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["key"] == key)
            .map(|n| n["stake"].as_u64().unwrap())
    };
    let liar_stake = stake_of(&liar).unwrap();
    let user = net.user().public();
    let start_balance = net.balance_of(0, &user);
    let (mut caught, mut paid) = (0, 0u64);
    for n in 7..20 {
        match net.quorum(0, n) {
            Ok((q, _)) => {
                paid += 1;
                let signers: Vec<&str> = q["receipts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["node"].as_str().unwrap())
                    .collect();
                assert!(
                    !signers.contains(&liar.as_str()),
                    "the liar's output passed"
                );
            }
            Err(e) => {
                assert!(e.contains("quorum_disagreement"), "{e}");
                caught += 1;
                break;
            }
        }
    }
    assert!(caught > 0, "the tampering node was never asked");
    let judged = |d: &Value| d["kind"] == "quorum" && d["decided_at"].is_u64();
    net.wait_for("the validators to judge the disagreements", || {
        net.get(1, "/v1/disputes")
            .and_then(|d| d.as_array().map(|a| a.iter().filter(|d| judged(d)).count()))
            .unwrap_or(0)
            >= caught
    });
    let slash = 60_000_000;
    for d in net.get(2, "/v1/disputes").unwrap().as_array().unwrap() {
        if !judged(d) {
            continue;
        }
        let signed = d["signed"].as_array().unwrap();
        let (lies, honest): (Vec<&Value>, Vec<&Value>) =
            signed.iter().partition(|s| s[0] == liar.as_str());
        assert_eq!(lies.len(), 1, "evidence names the liar: {d}");
        // The verdict is the honest executors' output, and only the liar lost stake.
        assert!(honest.iter().all(|s| s[1] == d["verdict"]), "{d}");
        assert_eq!(d["slashed"], serde_json::json!([[liar, slash]]), "{d}");
    }
    // The devnet's slash is its minimum stake: a liar is slashed below it and no longer drawn.
    assert!(liar_stake - slash < 60_000_000);
    net.wait_for("node 0 to see the liar slashed and deregistered", || {
        stake_of(&liar).is_none()
    });
    // Every disputed request was refunded: the client paid for the settled quorums only (plus
    // what of the slash does not divide among the validators that judged: less than one unit
    // per validator).
    let expected = start_balance - paid * 3 * 10;
    let refunded = |b: u64| (expected..expected + NODES as u64).contains(&b);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !refunded(net.balance_of(0, &user)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let balance = net.balance_of(0, &user);
    assert!(
        refunded(balance),
        "{paid} settled, {caught} refunded: balance {balance}, expected {expected}"
    );
    net.assert_same_state();
    let logs = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let log = logs(&net.dir.path().join("node-0.log"));
    assert!(!log.contains("panicked"), "{log}");
}

/// Waits up to `secs` for `ready`, panicking with `what` otherwise.
fn wait_until(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_devnet_restarts_a_node_that_dies_while_the_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port(11000);
    let out = dir.path().join("devnet.out");
    let err = dir.path().join("devnet.err");
    let mut devnet = verity()
        .arg("--key")
        .arg(dir.path().join("user.key"))
        .args(["devnet", "--no-llm", "--dir"])
        .arg(dir.path().join("net"))
        .args(["--base-port", &base.to_string()])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_until("the devnet to serve", 600, || {
        assert!(
            devnet.try_wait().unwrap().is_none(),
            "{}{}",
            read(&out),
            read(&err)
        );
        read(&out).contains("Serving;")
    });
    let http = reqwest::blocking::Client::new();
    let healthy = |i: usize| {
        http.get(format!("http://127.0.0.1:{}/health", base as usize + i))
            .timeout(Duration::from_secs(5))
            .send()
            .is_ok_and(|r| r.status().is_success())
    };
    let pids = |d: &Path| -> Vec<String> {
        read(&d.join("net/pids"))
            .lines()
            .map(str::to_string)
            .collect()
    };
    let before = pids(dir.path());
    assert_eq!(before.len(), NODES);
    // A node dies without warning.
    let killed = Command::new("kill")
        .args(["-9", &before[2]])
        .status()
        .unwrap();
    assert!(killed.success());
    // The others keep serving ...
    for i in [0, 1, 3] {
        assert!(healthy(i), "node {i} stopped when node 2 died");
    }
    // ... and the devnet reports the death and brings the node back.
    wait_until("node 2 to be restarted", 120, || {
        let now = pids(dir.path());
        now.len() == NODES && now[2] != before[2] && healthy(2)
    });
    assert!(read(&err).contains("node 2 exited"), "{}", read(&err));
    assert!((0..NODES).all(healthy));
    // Stopping the devnet stops every node it runs.
    let stopped = Command::new("kill")
        .args(["-TERM", &devnet.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    devnet.wait().unwrap();
    for pid in pids(dir.path()) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} outlived the devnet"
        );
    }
}
