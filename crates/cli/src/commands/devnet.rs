//! `verity devnet`: a local network of validator processes with the sample models.

use super::Ctx;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Start a local network: validator nodes as separate processes on loopback, a genesis with
/// your key funded, the sample models published and priced; print the endpoints.
#[derive(Args)]
pub struct DevnetArgs {
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
}

impl DevnetArgs {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        crate::devnet::run(
            &self.dir,
            &crate::devnet::Layout {
                nodes: self.nodes,
                base_port: self.base_port,
            },
            &ctx.key,
            self.init_only,
            self.no_wait,
            !self.no_llm,
        )
    }
}
