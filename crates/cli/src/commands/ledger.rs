//! `verity ledger`: status, accounts, transfers, model prices and inclusion proofs.

use super::{write_file, Ctx};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use verity_core::{ModelId, PublicKey};
use verity_ledger::{Action, Transaction};

/// Ledger commands: status, accounts, transactions, inclusion proofs.
#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Chain id, finalized height, state root, validators and nodes.
    Status,
    /// Balance and nonce of an account (default: your key).
    Account {
        /// The account's public key, hex.
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
    },
    /// Send balance to another account.
    Transfer { to: String, amount: u64 },
    /// Claim a model name (for the ledger's name fee): only you can then register versions
    /// under it.
    RegisterName { name: String },
    /// Register a model as name@version (a name you own) with its price per executor, so
    /// requests can escrow fees for it. `verity model publish --price` does this for you.
    RegisterModel {
        model: ModelId,
        name: String,
        version: String,
        price: u64,
    },
    /// Re-price a listing (name@version) you published.
    SetPrice {
        name: String,
        version: String,
        price: u64,
    },
    /// Fetch a settled receipt's inclusion proof (Merkle path, header, finalization).
    Proof {
        receipt: String,
        #[arg(long, short)]
        out: PathBuf,
    },
}

impl LedgerCommand {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let client = ctx.client()?;
        let send = |action: Action| -> Result<()> {
            let key = ctx.key()?;
            let nonce = client.account(&key.public())?.next_nonce;
            let chain_id = client.ledger()?.chain_id;
            let id = client
                .submit(&Transaction::new(&key, &chain_id, nonce, action))?
                .id;
            println!("submitted transaction {id} (nonce {nonce})");
            Ok(())
        };
        match self {
            LedgerCommand::Status => {
                let s = client.ledger()?;
                println!("chain       {}", s.chain_id);
                println!("height      {}", s.height);
                println!("last block  {}", s.last_block);
                println!("state root  {}", s.state_root);
                for n in &s.nodes {
                    let role = if s.validators.validators.contains(&n.key) {
                        "validator"
                    } else {
                        "executor"
                    };
                    println!(
                        "node        {} {role} stake {} {}",
                        n.key, n.stake, n.endpoint
                    );
                }
                Ok(())
            }
            LedgerCommand::Account { account } => {
                let who = match account {
                    Some(k) => PublicKey::from_hex(&k)?,
                    None => ctx.key()?.public(),
                };
                let a = client.account(&who)?;
                println!(
                    "{} balance {} nonce {} (next {})",
                    a.key, a.balance, a.nonce, a.next_nonce
                );
                Ok(())
            }
            LedgerCommand::Transfer { to, amount } => send(Action::Transfer {
                to: PublicKey::from_hex(&to)?,
                amount,
            }),
            LedgerCommand::RegisterName { name } => send(Action::RegisterName { name }),
            LedgerCommand::RegisterModel {
                model,
                name,
                version,
                price,
            } => send(Action::RegisterModel {
                model,
                name,
                version,
                price,
            }),
            LedgerCommand::SetPrice {
                name,
                version,
                price,
            } => send(Action::SetPrice {
                name,
                version,
                price,
            }),
            LedgerCommand::Proof { receipt, out } => {
                let id = verity_core::Hash::from_hex(&receipt).context("receipt id")?;
                let proof = client.proof(&id)?;
                write_file(&out, &serde_json::to_vec_pretty(&proof)?)?;
                println!(
                    "proof for receipt {id} (block {} at height {}) -> {}",
                    proof.header.digest(),
                    proof.header.height,
                    out.display()
                );
                Ok(())
            }
        }
    }
}
