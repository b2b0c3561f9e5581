//! `verity status`: the node's health.

use super::Ctx;
use anyhow::Result;

/// Show the node's health: key, version, model and receipt counts, chain.
pub fn execute(ctx: &Ctx) -> Result<()> {
    let h = ctx.client()?.health()?;
    let chain = h
        .chain_id
        .map(|c| format!(", validator of chain {c}"))
        .unwrap_or_default();
    println!(
        "{} node {} v{}: {} models, {} receipts{chain}",
        h.status, h.node, h.version, h.models, h.receipts
    );
    Ok(())
}
