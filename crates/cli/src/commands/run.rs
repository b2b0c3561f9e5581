//! `verity run`: execute a canonical model file locally, no node.

use super::{read_file, read_inputs};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use verity_core::ModelId;

/// Run a model file locally (no node) and print outputs, output hash and trace root.
#[derive(Args)]
pub struct RunArgs {
    model: PathBuf,
    #[arg(long)]
    input: PathBuf,
}

impl RunArgs {
    pub fn execute(self) -> Result<()> {
        let bytes = read_file(&self.model)?;
        let inputs = read_inputs(&self.input)?;
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
}
