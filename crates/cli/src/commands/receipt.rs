//! `verity receipt`: fetch a stored receipt from the node.

use super::{write_file, Ctx};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Fetch a stored receipt by id from the node.
#[derive(Args)]
pub struct ReceiptArgs {
    id: String,
    #[arg(long, short)]
    out: Option<PathBuf>,
}

impl ReceiptArgs {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let id = verity_core::Hash::from_hex(&self.id).context("receipt id")?;
        let r = ctx.client()?.receipt(&id)?;
        let json = serde_json::to_vec_pretty(&r)?;
        match self.out {
            Some(p) => write_file(&p, &json)?,
            None => println!("{}", String::from_utf8_lossy(&json)),
        }
        Ok(())
    }
}
