//! `verity infer`: sign a request (and, on a network, its escrow), send it, check the answer
//! against the request before showing anything, and save the evidence.

use super::verify::validator_set;
use super::{failed, print_outputs, read_inputs, write_file, Ctx};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::path::PathBuf;
use verity_core::wire::InferBody;
use verity_core::{InferenceRequest, Mode};
use verity_ledger::{Action, Transaction};
use verity_verify::{Context, Evidence, SettledQuorum};

/// Ask the node to run a model and save the signed receipt.
#[derive(Args)]
pub struct InferArgs {
    /// Model id, name@version or name.
    model: String,
    /// Inputs as JSON: {"name": {"dtype":"f32","shape":[...],"data":[...]}}.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the receipt (default: receipt-<id>.json); in quorum mode, all k.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// `signed` (one node), `quorum` (3 nodes), `quorum:K`, or `zk` (one node, with a
    /// succinct proof of the canonical execution).
    #[arg(long, default_value = "signed")]
    mode: String,
    /// Return once the settlement is finalized on the ledger; in quorum mode, also fetch
    /// each receipt's inclusion proof, which shows the signers are the executors the ledger
    /// drew for the request.
    #[arg(long)]
    wait: bool,
    /// The network's validator set (JSON): check the answer against it before showing it (the
    /// network's chain id, and with `--wait` each receipt's inclusion proof).
    #[arg(long)]
    validators: Option<PathBuf>,
}

impl InferArgs {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let client = ctx.client()?;
        let manifest = client.show(&self.model)?;
        let key = ctx.key()?;
        let mode = Mode::parse(&self.mode)?;
        let validators = self.validators.as_deref().map(validator_set).transpose()?;
        if validators.is_some() && matches!(mode, Mode::Quorum { .. }) && !self.wait {
            bail!("--validators checks who the ledger drew for a quorum: add --wait");
        }
        let request = InferenceRequest {
            model: manifest.id,
            inputs: read_inputs(&self.input)?,
            mode,
            params: Default::default(),
            nonce: verity_core::random_nonce()?,
            client: key.public(),
        };
        // Quorum requests always pay through the ledger; signed and zk ones when the node has
        // one (the escrow then names that node, the only one that may settle it).
        let health = client.health()?;
        let named = match (mode, &health.chain_id) {
            (Mode::Signed | Mode::Zk, None) => None,
            (Mode::Signed | Mode::Zk, Some(_)) => Some(Some(health.node)),
            (Mode::Quorum { .. }, _) => Some(None),
        };
        let escrow = match named {
            None => None,
            Some(node) => Some(Transaction::new(
                &key,
                health
                    .chain_id
                    .as_deref()
                    .context("quorum mode needs a node that is part of a network")?,
                0,
                Action::OpenRequest {
                    request: request.hash(),
                    model: manifest.id,
                    // The node shows the listing the reference resolved to on the ledger.
                    listing: format!("{}@{}", manifest.name, manifest.version),
                    mode,
                    node,
                },
            )),
        };
        let body = InferBody {
            signed: request.sign(&key),
            escrow,
        };
        let resp = client.infer(&body, self.wait)?;
        // Nothing from the node is shown before it checks out against our own request, on the
        // network we addressed.
        let chain = health.chain_id.as_deref().unwrap_or_default();
        if let Some(set) = &validators {
            if set.chain_id != chain {
                bail!(
                    "the node is on chain {chain:?}, the validator set is for {:?}",
                    set.chain_id
                );
            }
        }
        let (mut evidence, _) =
            verity_verify::infer_answer(&body.signed.request, chain, &resp).map_err(failed)?;
        if let (Evidence::Quorum(q), Some(_)) = (&evidence, resp.settled_height) {
            let inclusion = q
                .receipts
                .iter()
                .map(|r| client.proof(&r.id()))
                .collect::<Result<Vec<_>>>()
                .context("fetching the settled receipts' inclusion proofs")?;
            evidence = Evidence::SettledQuorum(Box::new(SettledQuorum {
                quorum: q.clone(),
                inclusion,
            }));
        }
        if let Some(set) = &validators {
            let ctx = Context {
                inputs: Some(&body.signed.request.inputs),
                validators: Some(set),
                ..Default::default()
            };
            verity_verify::verify(&evidence, &ctx).map_err(failed)?;
        }
        let path = self.out.unwrap_or_else(|| {
            PathBuf::from(format!("receipt-{}.json", &resp.receipt_id.to_hex()[..16]))
        });
        write_file(&path, &serde_json::to_vec_pretty(&evidence)?)?;
        println!(
            "model    {} ({}@{})",
            manifest.id, manifest.name, manifest.version
        );
        print_outputs(&resp.receipt.outputs);
        println!(
            "engine   {} {}",
            resp.receipt.engine.name, resp.receipt.engine.version
        );
        match &evidence {
            Evidence::Quorum(q) => {
                for r in &q.receipts {
                    println!("signed   {} receipt {}", r.node, r.id());
                }
            }
            Evidence::SettledQuorum(s) => {
                for r in &s.quorum.receipts {
                    println!("signed   {} receipt {}", r.node, r.id());
                }
                match &validators {
                    Some(_) => println!(
                        "signers  drawn by the ledger: every receipt is settled in a block the \
                         validators finalized (checked against --validators)"
                    ),
                    None => println!(
                        "signers  inclusion proofs saved; check them offline with `verity verify \
                         <file> --validators <set>`"
                    ),
                }
            }
            _ => {}
        }
        let request = body.signed.request.hash();
        match (resp.settled_height, &body.escrow) {
            (Some(h), _) => println!("settled  request {request} at height {h}"),
            (None, Some(_)) => {
                println!("settling request {request} (escrow + settlement submitted)")
            }
            (None, None) => {}
        }
        println!("receipt  {} -> {}", resp.receipt_id, path.display());
        if let Some(proof) = &resp.zk_proof {
            println!(
                "zk proof {} base64 characters, saved with the receipt; check it with \
                 `verity verify {} --input {}`",
                proof.len(),
                path.display(),
                self.input.display()
            );
        }
        Ok(())
    }
}
