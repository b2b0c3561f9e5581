//! `verity node`: run one node from its config file.

use super::read_file;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Run one node from a JSON config file (see docs/architecture.md).
#[derive(Args)]
pub struct NodeArgs {
    #[arg(long)]
    config: PathBuf,
}

impl NodeArgs {
    pub fn execute(self) -> Result<()> {
        let config: verity_node::NodeConfig =
            serde_json::from_slice(&read_file(&self.config)?).context("invalid node config")?;
        crate::devnet::serve_forever(config)
    }
}
