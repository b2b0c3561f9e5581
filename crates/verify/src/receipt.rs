//! Receipts of tensor models: one node's, a quorum's, an inclusion proof's, and the answer
//! to a request a client just sent.

use crate::evidence::{Evidence, SettledQuorum, ZkReceipt};
use crate::report::{fail, Check, Failure, Report};
use verity_core::wire::{InferResponse, QuorumResult, ValidatorSet};
use verity_core::{
    verify_quorum, verify_receipt, Expectations, InferenceRequest, Mode, PublicKey, Receipt,
    TensorMap, VerifyError,
};
use verity_inclusion::InclusionProof;

/// Which check a failed core receipt check was.
fn check_of(e: &VerifyError) -> Check {
    match e {
        VerifyError::UnsupportedVersion(_)
        | VerifyError::OutputHash { .. }
        | VerifyError::Signature(_) => Check::Signature,
        VerifyError::InputHash { .. } => Check::InputHash,
        VerifyError::NodeKey { .. } => Check::NodeKey,
        VerifyError::Request { .. }
        | VerifyError::Mode { .. }
        | VerifyError::Model { .. }
        | VerifyError::Chain { .. } => Check::Request,
        VerifyError::Reexecution(_) => Check::Reexecution,
        VerifyError::Quorum(_) => Check::Quorum,
    }
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Failure {
        Failure::new(check_of(&e), e.to_string())
    }
}

/// One receipt against what the verifier knows, recording what held.
pub(crate) fn receipt(
    r: &Receipt,
    expect: &Expectations<'_>,
    report: &mut Report,
) -> Result<(), Failure> {
    verify_receipt(r, expect)?;
    report.ok(
        Check::Signature,
        format!(
            "signature by node {} over model {}, output hash {}",
            r.node, r.model, r.output_hash
        ),
    );
    if expect.inputs.is_some() {
        report.ok(Check::InputHash, format!("input hash {}", r.input_hash));
    }
    if let Some(k) = expect.node {
        report.ok(Check::NodeKey, format!("signed by the expected node {k}"));
    }
    if let Some(q) = expect.request {
        report.ok(
            Check::Request,
            format!("answers request {q} in {} mode", r.mode),
        );
    }
    Ok(())
}

/// A quorum's receipts: k distinct signers, one output; with an expected node, that node among
/// the signers.
pub(crate) fn quorum(
    q: &QuorumResult,
    inputs: Option<&TensorMap>,
    node: Option<PublicKey>,
    report: &mut Report,
) -> Result<(), Failure> {
    verify_quorum(&q.receipts, inputs, None)?;
    let first = &q.receipts[0];
    if first.request_hash != q.request {
        return fail(
            Check::Quorum,
            format!(
                "the receipts answer request {}, the file names {}",
                first.request_hash, q.request
            ),
        );
    }
    report.ok(
        Check::Quorum,
        format!(
            "{} signatures by distinct nodes over output {}, model {}, request {}",
            q.receipts.len(),
            first.output_hash,
            first.model,
            q.request
        ),
    );
    if inputs.is_some() {
        report.ok(Check::InputHash, format!("input hash {}", first.input_hash));
    }
    if let Some(k) = node {
        if !q.receipts.iter().any(|r| r.node == k) {
            return fail(
                Check::NodeKey,
                format!("node {k} signed none of the receipts"),
            );
        }
        report.ok(Check::NodeKey, format!("node {k} is among the signers"));
    }
    Ok(())
}

/// Every receipt of a settled quorum has an inclusion proof under a block the validators
/// finalized: the ledger, which accepts only the executors it drew for the request, settled
/// exactly these signers.
pub(crate) fn settled_signers(
    s: &SettledQuorum,
    set: &ValidatorSet,
    expect: &Expectations<'_>,
    report: &mut Report,
) -> Result<(), Failure> {
    let mut heights = std::collections::BTreeSet::new();
    let mut inclusion = Report::default();
    for r in &s.quorum.receipts {
        let Some(p) = s.inclusion.iter().find(|p| p.receipt == *r) else {
            return fail(
                Check::Signers,
                format!(
                    "receipt {} by {} has no inclusion proof: nothing shows the ledger drew its \
                     signer",
                    r.id(),
                    r.node
                ),
            );
        };
        self::inclusion(p, set, expect, &mut inclusion)?;
        heights.insert(p.header.height);
    }
    report.ok(
        Check::Inclusion,
        format!(
            "every receipt is settled in a block finalized by a quorum of the {} validators of \
             chain {} (height {heights:?})",
            set.validators.len(),
            set.chain_id
        ),
    );
    report.ok(
        Check::Signers,
        format!(
            "the {} signers are executors the ledger drew for request {}",
            s.quorum.receipts.len(),
            s.quorum.request
        ),
    );
    Ok(())
}

/// An inclusion proof against a validator set, then its receipt against what is known.
pub(crate) fn inclusion(
    p: &InclusionProof,
    set: &ValidatorSet,
    expect: &Expectations<'_>,
    report: &mut Report,
) -> Result<(), Failure> {
    verity_inclusion::verify_inclusion(p, set).map_err(|e| match e {
        verity_inclusion::InclusionError::Receipt(e) => e.into(),
        other => Failure::new(Check::Inclusion, other.to_string()),
    })?;
    receipt(&p.receipt, expect, report)?;
    report.ok(
        Check::Inclusion,
        format!(
            "receipt {} is leaf {} of {} under receipts root {} of block {} at height {}, \
             finalized by a quorum of the {} validators of chain {}",
            p.receipt.id(),
            p.path.index,
            p.path.total,
            p.header.receipts_root,
            p.header.digest(),
            p.header.height,
            set.validators.len(),
            set.chain_id
        ),
    );
    Ok(())
}

/// Checks a node's answer to `/v1/infer` against the request the client signed, before
/// anything from it is shown: every receipt holds on its own and answers exactly that request
/// (hash, mode, model, inputs) on the network it was sent to (`chain`: the node's chain id, ""
/// for a standalone node). Returns the evidence to keep.
pub fn infer_answer(
    own: &InferenceRequest,
    chain: &str,
    resp: &InferResponse,
) -> Result<(Evidence, Report), Failure> {
    let mut report = Report::default();
    let expect = Expectations {
        chain: Some(chain),
        ..Expectations::answering(own)
    };
    let evidence = match (&resp.quorum, own.mode) {
        (Some(q), Mode::Quorum { .. }) => {
            quorum(q, Some(&own.inputs), None, &mut report)?;
            // The quorum check made every receipt agree with the first on request, model,
            // inputs, engine and mode: the first answering our request covers them all.
            verify_receipt(&q.receipts[0], &expect)?;
            if !q.receipts.contains(&resp.receipt) || resp.receipt_id != resp.receipt.id() {
                return fail(
                    Check::Request,
                    "the answer's receipt is not one of its quorum's receipts",
                );
            }
            report.ok(
                Check::Request,
                format!("every receipt answers request {}", own.hash()),
            );
            Evidence::Quorum(q.clone())
        }
        (None, Mode::Quorum { .. }) => {
            return fail(
                Check::Quorum,
                "a quorum request was answered without its receipts",
            )
        }
        (Some(_), _) => {
            return fail(
                Check::Request,
                "a single-node request was answered as a quorum",
            )
        }
        (None, mode) => {
            receipt(&resp.receipt, &expect, &mut report)?;
            if resp.receipt_id != resp.receipt.id() {
                return fail(
                    Check::Request,
                    "the answer's receipt id is not its receipt's id",
                );
            }
            match (&resp.zk_proof, mode) {
                (Some(proof), Mode::Zk) => Evidence::Zk(Box::new(ZkReceipt {
                    receipt: resp.receipt.clone(),
                    zk_proof: proof.clone(),
                })),
                (None, Mode::Zk) => return fail(Check::ZkProof, "the node sent no zk proof"),
                _ => Evidence::Single(Box::new(resp.receipt.clone())),
            }
        }
    };
    Ok((evidence, report))
}
