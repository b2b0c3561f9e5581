//! One file per `verity` command: each holds its clap arguments and an `execute`.

pub mod chat;
pub mod devnet;
pub mod infer;
pub mod ledger;
pub mod model;
pub mod node;
pub mod prove;
pub mod receipt;
pub mod run;
pub mod status;
pub mod verify;
pub mod verify_inclusion;
pub mod verify_proof;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use verity_core::TensorMap;
use verity_verify::{Established, Failure, Report};

/// What every command may need from the global options.
pub struct Ctx {
    /// The node API to talk to.
    pub node: String,
    /// The client key file (created on first use).
    pub key: PathBuf,
    /// Whether to draw progress bars (stderr is a terminal).
    pub progress: bool,
}

impl Ctx {
    pub fn new(node: String, key: Option<PathBuf>) -> Ctx {
        Ctx {
            node,
            key: key.unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".verity/client.key")
            }),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    pub fn client(&self) -> Result<crate::client::NodeClient> {
        crate::client::NodeClient::new(&self.node)
    }

    pub fn key(&self) -> Result<verity_core::NodeKey> {
        Ok(verity_core::NodeKey::load_or_create(&self.key)?)
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a whole file, naming it in the error.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_inputs(path: &Path) -> Result<TensorMap> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid input file", path.display()))
}

fn print_established(established: &[Established]) {
    for e in established {
        println!("ok  {}", e.detail);
    }
}

/// Prints what a verification established.
pub fn print_report(report: &Report) {
    print_established(&report.established);
}

/// Prints what held before a check failed, and turns the failure into the command's error.
pub fn failed(f: Failure) -> anyhow::Error {
    print_established(&f.established);
    anyhow::anyhow!("{} check failed: {}", f.check, f.message)
}

/// A preview of each output: its first values and argmax, or its type and shape.
pub fn print_outputs(outputs: &TensorMap) {
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
