//! `verity devnet`: one local node with the sample models (embedded in the binary) published
//! through its real HTTP API, and `verity node`: serve until interrupted.

use crate::client::NodeClient;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use verity_core::NodeKey;
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn serve_forever(config: NodeConfig) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let running = verity_node::start(config).await?;
        eprintln!(
            "node {} listening on http://{}",
            running.node.key.public(),
            running.addr
        );
        until_stopped(running.task).await
    })
}

/// Serves until the server task ends (its error is returned) or Ctrl-C.
async fn until_stopped(task: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<()> {
    tokio::select! {
        r = task => { r??; }
        _ = tokio::signal::ctrl_c() => eprintln!("shutting down"),
    }
    Ok(())
}

pub fn run(dir: &Path, listen: SocketAddr, key: &Path, no_wait: bool) -> Result<()> {
    let rt = runtime()?;
    let running = rt
        .block_on(verity_node::start(NodeConfig::new(
            dir.join("node"),
            listen,
        )))
        .with_context(|| format!("cannot start the devnet node on {listen}"))?;
    let url = format!("http://{}", running.addr);
    let client = NodeClient::new(&url)?;
    let publisher = NodeKey::load_or_create(key)?;
    let samples_dir = dir.join("samples");
    std::fs::create_dir_all(&samples_dir)?;
    for (name, bytes) in SAMPLE_INPUTS {
        std::fs::write(samples_dir.join(name), bytes)?;
    }
    println!("Verity devnet");
    println!("  node      {}", running.node.key.public());
    println!("  api       {url}");
    println!("  health    {url}/health");
    println!("  metrics   {url}/metrics");
    println!("  models    {url}/v1/models");
    println!("  data      {}", dir.display());
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
                    &publisher,
                    false,
                )?;
                (r.model.id, r.canonical.map(|c| c.id))
            }
        };
        println!("  sample    {name}@{version}  float {float}");
        if let Some(c) = canonical {
            println!("            {name}.int8@{version}  canonical {c}");
        }
    }
    let input = samples_dir.join("digit_input_mlp.json");
    println!(
        "\nTry:\n  verity --node {url} infer digits-mlp.int8@1.0 --input {} --out receipt.json",
        input.display()
    );
    println!(
        "  verity --node {url} verify receipt.json --input {} --reexecute",
        input.display()
    );
    if no_wait {
        return Ok(());
    }
    println!("\nServing; press Ctrl-C to stop.");
    rt.block_on(until_stopped(running.task))
}
