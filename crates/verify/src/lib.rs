//! Every offline check of every Verity mode, in one library that needs no node.
//!
//! Given an evidence file ([`Evidence`]: a receipt, a quorum's receipts, an inclusion proof,
//! a zk receipt or proof file, a chat receipt or completion) and what the verifier knows
//! ([`Context`]: the inputs, the expected node, the validator set, where to get model bytes),
//! [`verify`] returns a [`Report`] of what was established, or a [`Failure`] naming the check
//! that failed. It prints nothing. The CLI, the node's tests and every later client (SDK,
//! proxy, explorer) call it; nothing else re-implements a check.
//!
//! Clients that just sent a request check the answer with [`infer_answer`] and the `chat`
//! module's functions, which also make sure the receipt answers *their* request.

pub mod chat;
pub mod evidence;
mod receipt;
pub mod report;
mod tensor;
pub mod zk;

pub use evidence::{Completion, Evidence, ProofFile, SettledQuorum, ZkReceipt};
pub use receipt::infer_answer;
pub use report::{Check, Established, Failure, Report};
pub use verity_core::wire::{ChatReceipt, QuorumResult, ValidatorSet};
pub use verity_inclusion::InclusionProof;

use report::fail;
use verity_core::{Expectations, Mode, ModelId, PublicKey, TensorMap};

/// Where model bytes come from for a zk proof or a re-execution: a file, a download, a
/// node. The verifier hashes whatever it gets against the model id; a source is not trusted.
pub trait ModelSource {
    fn model_bytes(&self, id: &ModelId) -> Result<Vec<u8>, String>;
}

impl<F: Fn(&ModelId) -> Result<Vec<u8>, String>> ModelSource for F {
    fn model_bytes(&self, id: &ModelId) -> Result<Vec<u8>, String> {
        self(id)
    }
}

/// What the verifier knows and wants besides the evidence.
#[derive(Clone, Copy, Default)]
pub struct Context<'a> {
    /// The inputs the verifier believes were used (needed for zk receipts and re-execution).
    pub inputs: Option<&'a TensorMap>,
    /// The node the verifier requires to have signed.
    pub node: Option<PublicKey>,
    /// Quorum signers must be in it; inclusion proofs are checked against it.
    pub validators: Option<&'a ValidatorSet>,
    /// Re-run the model and require identical outputs.
    pub reexecute: bool,
    /// Model bytes, for zk proofs and re-execution.
    pub models: Option<&'a dyn ModelSource>,
}

impl Context<'_> {
    /// The model's bytes, checked against its id.
    fn model(&self, id: &ModelId, report: &mut Report) -> Result<Vec<u8>, Failure> {
        let Some(source) = self.models else {
            return fail(
                Check::Model,
                format!("model {id} is needed and no source was given"),
            );
        };
        let bytes = source
            .model_bytes(id)
            .map_err(|e| Failure::new(Check::Model, format!("cannot get model {id}: {e}")))?;
        model_matches(&bytes, id, report)?;
        Ok(bytes)
    }

    fn expectations(&self) -> Expectations<'_> {
        Expectations {
            inputs: self.inputs,
            node: self.node,
            chain: self.validators.map(|set| set.chain_id.as_str()),
            ..Default::default()
        }
    }
}

/// The model file hashes to the id a receipt or proof names.
fn model_matches(bytes: &[u8], id: &ModelId, report: &mut Report) -> Result<(), Failure> {
    let got = ModelId::of_bytes(bytes);
    if got != *id {
        return fail(
            Check::Model,
            format!("the model file hashes to {got}, the evidence names {id}"),
        );
    }
    if !report.has(Check::Model) {
        report.ok(Check::Model, format!("model file hashes to {id}"));
    }
    Ok(())
}

/// Verifies any evidence offline. On failure, the [`Failure`] carries what had been
/// established before the failing check.
pub fn verify(evidence: &Evidence, ctx: &Context<'_>) -> Result<Report, Failure> {
    let mut report = Report::default();
    match run(evidence, ctx, &mut report) {
        Ok(()) => Ok(report),
        Err(f) => Err(f.after(report)),
    }
}

fn run(evidence: &Evidence, ctx: &Context<'_>, report: &mut Report) -> Result<(), Failure> {
    let needs = |what: &str| {
        fail(
            Check::Evidence,
            format!("{} evidence is checked {what}", evidence.kind()),
        )
    };
    match evidence {
        Evidence::Chat(c) => chat_evidence(c, None, ctx, report)?,
        Evidence::Completion(c) => chat_evidence(&c.verity, c.shown_text(), ctx, report)?,
        Evidence::Single(r) => {
            receipt::receipt(r, &ctx.expectations(), report)?;
            if r.mode == Mode::Zk {
                return fail(
                    Check::ZkProof,
                    "this zk receipt was saved without its proof",
                );
            }
            tensor::maybe_reexecute(r, ctx, report)?;
        }
        Evidence::Quorum(q) => {
            if ctx.validators.is_some() {
                return fail(
                    Check::Signers,
                    "a quorum file shows k signatures, not that the ledger drew their signers: \
                     check the settled quorum `verity infer --mode quorum --wait` saves, or each \
                     receipt's `verity ledger proof`",
                );
            }
            receipt::quorum(q, ctx.inputs, ctx.node, report)?;
            tensor::maybe_reexecute(&q.receipts[0], ctx, report)?;
        }
        Evidence::SettledQuorum(s) => {
            let Some(set) = ctx.validators else {
                return needs("against a validator set: give one");
            };
            receipt::quorum(&s.quorum, ctx.inputs, ctx.node, report)?;
            receipt::settled_signers(s, set, &ctx.expectations(), report)?;
            tensor::maybe_reexecute(&s.quorum.receipts[0], ctx, report)?;
        }
        Evidence::Inclusion(p) => {
            let Some(set) = ctx.validators else {
                return needs("against a validator set: give one");
            };
            receipt::inclusion(p, set, &ctx.expectations(), report)?;
            tensor::maybe_reexecute(&p.receipt, ctx, report)?;
        }
        Evidence::Zk(z) => {
            let r = &z.receipt;
            receipt::receipt(r, &ctx.expectations(), report)?;
            if r.mode != Mode::Zk {
                return fail(
                    Check::ZkProof,
                    format!(
                        "the receipt attached to the proof is in {} mode, not zk",
                        r.mode
                    ),
                );
            }
            let Some(inputs) = ctx.inputs else {
                return needs("against the inputs: give them");
            };
            let bytes = ctx.model(&r.model, report)?;
            zk::check_proof(&bytes, &r.model, inputs, &r.outputs, &z.zk_proof, report)?;
            tensor::maybe_reexecute(r, ctx, report)?;
        }
        Evidence::Proof(p) => {
            if ctx.inputs.is_some_and(|i| *i != p.inputs) {
                return fail(
                    Check::InputHash,
                    "the proof is about other inputs than those given",
                );
            }
            let bytes = ctx.model(&p.model, report)?;
            zk::check_proof(&bytes, &p.model, &p.inputs, &p.outputs, &p.proof, report)?;
        }
    }
    Ok(())
}

/// A chat receipt (with the text a saved answer showed, if any), and its re-execution.
fn chat_evidence(
    v: &ChatReceipt,
    shown: Option<&str>,
    ctx: &Context<'_>,
    report: &mut Report,
) -> Result<(), Failure> {
    if ctx.inputs.is_some() || ctx.validators.is_some() {
        return fail(
            Check::Evidence,
            "a chat receipt is checked against the request it carries and one node's \
             signature: inputs and validators do not apply",
        );
    }
    let signed = chat::receipt(v, ctx.node, report)?;
    if let Some(text) = shown {
        chat::shown(&signed, text, None, report)?;
    }
    if ctx.reexecute {
        let bytes = ctx.model(&v.receipt.model, report)?;
        chat::reexecute(v, &signed, &bytes, report)?;
    }
    Ok(())
}
