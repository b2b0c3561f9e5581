//! What a verification established, and which check failed: structured, so the CLI prints
//! it, an SDK returns it and an explorer shows it, and none of them re-decides anything.

use std::fmt;

/// One kind of check. A [`Failure`] names the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// The evidence file parses and fits what was asked (inputs or validators where needed).
    Evidence,
    /// Version, output hash and the node's signature over the receipt.
    Signature,
    /// The receipt's input hash is the hash of the inputs the verifier holds.
    InputHash,
    /// The receipt is signed by the node the verifier expected.
    NodeKey,
    /// The receipt answers the request that was sent: its hash, mode, model and parameters.
    Request,
    /// k receipts by distinct nodes over one output for one request.
    Quorum,
    /// Every quorum signer is a known validator.
    Signers,
    /// The receipt's Merkle path leads to a header a quorum of validators finalized.
    Inclusion,
    /// The model bytes used for a proof or a re-execution hash to the receipt's model id.
    Model,
    /// A succinct proof that the model maps these inputs to these outputs.
    ZkProof,
    /// The text a client was shown (and its finish reason) is what the receipt signs.
    ShownText,
    /// Re-running the model locally gives the very outputs the receipt signs.
    Reexecution,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Evidence => "evidence",
            Check::Signature => "signature",
            Check::InputHash => "input hash",
            Check::NodeKey => "node key",
            Check::Request => "request",
            Check::Quorum => "quorum",
            Check::Signers => "signers",
            Check::Inclusion => "inclusion",
            Check::Model => "model",
            Check::ZkProof => "zk proof",
            Check::ShownText => "shown text",
            Check::Reexecution => "re-execution",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A check that held, with what it established in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established {
    pub check: Check,
    pub detail: String,
}

/// Everything a successful verification established, in the order it was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub established: Vec<Established>,
}

impl Report {
    pub(crate) fn ok(&mut self, check: Check, detail: impl Into<String>) {
        self.established.push(Established {
            check,
            detail: detail.into(),
        });
    }

    /// Whether `check` was established.
    pub fn has(&self, check: Check) -> bool {
        self.established.iter().any(|e| e.check == check)
    }
}

/// The check that failed, why, and what had been established before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{check} check failed: {message}")]
pub struct Failure {
    pub check: Check,
    pub message: String,
    pub established: Vec<Established>,
}

impl Failure {
    pub fn new(check: Check, message: impl Into<String>) -> Failure {
        Failure {
            check,
            message: message.into(),
            established: Vec::new(),
        }
    }

    /// Attaches what had been established before the failure.
    pub(crate) fn after(mut self, report: Report) -> Failure {
        let mut established = report.established;
        established.append(&mut self.established);
        self.established = established;
        self
    }
}

/// Shorthand for a failed `check`.
pub(crate) fn fail<T>(check: Check, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::new(check, message))
}
