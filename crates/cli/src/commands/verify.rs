//! `verity verify`: any evidence file, offline, through the verification library.

use super::{failed, print_report, read_file, read_inputs, Ctx};
use crate::client::NodeClient;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use verity_core::wire::ValidatorSet;
use verity_core::{ModelId, PublicKey};
use verity_verify::{Context, Evidence};

/// Verify offline a receipt, a quorum's receipts, a receipt's inclusion proof (with
/// --validators), a zk receipt or proof file (with the model), or a chat receipt: signatures,
/// hashes, Merkle path and finalization certificate, proofs; with --reexecute, bit-equal
/// outputs.
#[derive(Args)]
pub struct VerifyArgs {
    receipt: PathBuf,
    /// Validator set file: quorum signers must be in it; inclusion proofs are checked
    /// against it.
    #[arg(long)]
    validators: Option<PathBuf>,
    /// The inputs you believe were used (required for --reexecute and zk receipts).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Require this node key (hex) to be the signer.
    #[arg(long)]
    node_key: Option<String>,
    /// Re-run the model locally and require identical outputs (and trace root; for chat
    /// receipts, identical tokens, text and finish reason).
    #[arg(long)]
    reexecute: bool,
    /// The model for --reexecute and zk proofs: a file, or a node URL (or a model file URL)
    /// to download it from; otherwise fetched from --node. Its hash must be the model id.
    #[arg(long, value_name = "PATH_OR_URL")]
    model: Option<String>,
}

pub fn validator_set(path: &Path) -> Result<ValidatorSet> {
    serde_json::from_slice(&read_file(path)?).context("not a valid validator set")
}

impl VerifyArgs {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let evidence = Evidence::parse(&read_file(&self.receipt)?).map_err(failed)?;
        let inputs = self.input.as_deref().map(read_inputs).transpose()?;
        let validators = self.validators.as_deref().map(validator_set).transpose()?;
        let node = self
            .node_key
            .as_deref()
            .map(PublicKey::from_hex)
            .transpose()
            .context("--node-key")?;
        match &evidence {
            Evidence::Inclusion(_) if validators.is_none() => {
                bail!("an inclusion proof is checked against a validator set: add --validators")
            }
            Evidence::Zk(_) if inputs.is_none() => {
                bail!("a zk proof is checked against the inputs: add --input")
            }
            _ => {}
        }
        let source = |id: &ModelId| {
            model_bytes(ctx, self.model.as_deref(), id).map_err(|e| format!("{e:#}"))
        };
        let report = verity_verify::verify(
            &evidence,
            &Context {
                inputs: inputs.as_ref(),
                node,
                validators: validators.as_ref(),
                reexecute: self.reexecute,
                models: Some(&source),
            },
        )
        .map_err(failed)?;
        print_report(&report);
        println!("receipt verified ({})", evidence.kind());
        Ok(())
    }
}

/// The model bytes: a local file, a download from a URL (a node, or a model file's URL), or
/// from --node. The verification library checks them against the id.
fn model_bytes(ctx: &Ctx, model: Option<&str>, id: &ModelId) -> Result<Vec<u8>> {
    match model {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let file_url = url.contains("/v1/models/").then_some(url);
            NodeClient::new(url)?.model_bytes(id, file_url, ctx.progress)
        }
        Some(path) => read_file(Path::new(path)),
        None => ctx.client()?.model_bytes(id, None, ctx.progress),
    }
}
