//! `verity verify-inclusion`: a receipt's inclusion proof against a validator set, offline.

use super::verify::validator_set;
use super::{failed, print_report, read_file};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use verity_verify::{Context, Evidence};

/// Verify offline that a receipt was committed by the ledger: its Merkle path, the block
/// header and the block's finalization certificate against a validator set file.
#[derive(Args)]
pub struct VerifyInclusionArgs {
    proof: PathBuf,
    /// Validator set (JSON: {"chain_id", "validators": [hex keys]}), e.g. from genesis.
    #[arg(long)]
    validators: PathBuf,
}

impl VerifyInclusionArgs {
    pub fn execute(self) -> Result<()> {
        let evidence = Evidence::parse(&read_file(&self.proof)?).map_err(failed)?;
        if !matches!(evidence, Evidence::Inclusion(_)) {
            anyhow::bail!("{} is not an inclusion proof", self.proof.display());
        }
        let set = validator_set(&self.validators)?;
        let report = verity_verify::verify(
            &evidence,
            &Context {
                validators: Some(&set),
                ..Default::default()
            },
        )
        .map_err(failed)?;
        print_report(&report);
        println!("inclusion verified");
        Ok(())
    }
}
