//! `verity verify-proof`: a `verity prove` proof file against the model file, offline.

use super::{failed, print_report, read_file};
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::PathBuf;
use verity_verify::{Context, Evidence, ProofFile};

/// Verify offline a `verity prove` proof file against the model file.
#[derive(Args)]
pub struct VerifyProofArgs {
    proof: PathBuf,
    /// The canonical model file; its hash must be the model id the proof names.
    #[arg(long)]
    model: PathBuf,
}

impl VerifyProofArgs {
    pub fn execute(self) -> Result<()> {
        let file: ProofFile =
            serde_json::from_slice(&read_file(&self.proof)?).with_context(|| {
                format!(
                    "{} is not a proof file (`verity prove` output)",
                    self.proof.display()
                )
            })?;
        let bytes = read_file(&self.model)?;
        let source = |_: &verity_core::ModelId| Ok(bytes.clone());
        let report = verity_verify::verify(
            &Evidence::Proof(Box::new(file)),
            &Context {
                models: Some(&source),
                ..Default::default()
            },
        )
        .map_err(failed)?;
        print_report(&report);
        println!("proof verified");
        Ok(())
    }
}
