//! Registering published models on a network's ledger: the publisher claims the name (once,
//! for the ledger's name fee) and registers each version with its price, then waits until the
//! registry is final. `verity model publish --price` and the devnet's samples both go here.

use crate::client::NodeClient;
use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use verity_core::{ModelManifest, NodeKey};
use verity_ledger::state::CANONICAL_SUFFIX;
use verity_ledger::{Action, Transaction};

/// How long to wait for the registrations to be finalized.
const FINALITY_WAIT: Duration = Duration::from_secs(60);

/// Registers `models` (their ids, names and versions) at `price` per executor, claiming their
/// names first where nobody has. A model already registered is left as it is; a name another
/// key owns is an error.
pub fn register(
    client: &NodeClient,
    publisher: &NodeKey,
    models: &[&ModelManifest],
    price: u64,
) -> Result<()> {
    let chain_id = client.ledger()?.chain_id;
    let me = publisher.public();
    let mut nonce = client.account(&me)?.next_nonce;
    let mut send = |action: Action| -> Result<()> {
        client.submit(&Transaction::new(publisher, &chain_id, nonce, action))?;
        nonce += 1;
        Ok(())
    };
    let mut claimed = Vec::new();
    let mut waiting = Vec::new();
    for m in models {
        if listed(client, m)? {
            continue;
        }
        // The canonical `<name>.int8` belongs to the owner of `<name>`.
        let base = m.name.strip_suffix(CANONICAL_SUFFIX).unwrap_or(&m.name);
        match client.name(base)? {
            Some(info) if info.owner != me => {
                bail!("the name `{base}` belongs to {} on the ledger", info.owner)
            }
            Some(_) => {}
            None if claimed.iter().any(|c| c == base) => {}
            None => {
                send(Action::RegisterName {
                    name: base.to_string(),
                })?;
                claimed.push(base.to_string());
            }
        }
        send(Action::RegisterModel {
            model: m.id,
            name: m.name.clone(),
            version: m.version.clone(),
            price,
        })?;
        waiting.push(m);
    }
    let deadline = Instant::now() + FINALITY_WAIT;
    for m in waiting {
        while !listed(client, m)? {
            if Instant::now() > deadline {
                bail!(
                    "the ledger did not list {}@{} within {} s",
                    m.name,
                    m.version,
                    FINALITY_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Whether the ledger lists `m` under its name and version.
fn listed(client: &NodeClient, m: &ModelManifest) -> Result<bool> {
    Ok(client.name(&m.name)?.is_some_and(|n| {
        n.models
            .iter()
            .any(|l| l.version == m.version && l.model == m.id)
    }))
}
