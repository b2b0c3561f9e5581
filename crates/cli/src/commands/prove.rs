//! `verity prove`: prove a canonical model's run locally, no node.

use super::{failed, print_outputs, read_file, read_inputs, write_file};
use anyhow::Result;
use base64::Engine;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use verity_verify::ProofFile;

/// Prove locally (no node) that a canonical int8 model maps an input to its output: writes
/// the outputs and a succinct proof anyone can check with `verity verify-proof`.
#[derive(Args)]
pub struct ProveArgs {
    /// A canonical int8 model file (`verity model quantize` makes one from ONNX).
    model: PathBuf,
    #[arg(long)]
    input: PathBuf,
    /// Where to write the proof file.
    #[arg(long, short, default_value = "proof.json")]
    out: PathBuf,
}

impl ProveArgs {
    pub fn execute(self) -> Result<()> {
        let bytes = read_file(&self.model)?;
        let inputs = read_inputs(&self.input)?;
        let start = Instant::now();
        let zk = verity_verify::zk::setup(&bytes).map_err(failed)?;
        let setup_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let (outputs, _, proof) = zk.prove(&inputs)?;
        let prove_s = start.elapsed().as_secs_f64();
        let file = ProofFile {
            model: zk.model_id(),
            commitment: hex::encode(zk.commitment()),
            inputs,
            outputs,
            proof: base64::engine::general_purpose::STANDARD.encode(&proof),
        };
        write_file(&self.out, &serde_json::to_vec(&file)?)?;
        print_outputs(&file.outputs);
        println!("model    {}", file.model);
        println!(
            "proof    {} bytes, proven in {prove_s:.2} s (circuit setup {setup_s:.2} s); written to {}",
            proof.len(),
            self.out.display()
        );
        Ok(())
    }
}
