use thiserror::Error;
use verity_core::{Hash, PublicKey};

/// Why a transaction was rejected. A rejected transaction changes nothing (not even the
/// sender's nonce).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TxError {
    #[error("bad signature")]
    Signature,
    #[error("nonce {got} but account {account} expects {expected}")]
    Nonce {
        account: PublicKey,
        expected: u64,
        got: u64,
    },
    #[error("insufficient balance: need {need}, have {have}")]
    Balance { need: u64, have: u64 },
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("stake {stake} is below the minimum {min}")]
    StakeTooLow { stake: u64, min: u64 },
    #[error("node {0} is already registered")]
    NodeExists(PublicKey),
    #[error("no listing {0} on the ledger")]
    UnknownListing(String),
    #[error("the name `{name}` belongs to {owner}")]
    NameTaken { name: String, owner: PublicKey },
    #[error("the name `{0}` is not claimed: send RegisterName first")]
    NameUnclaimed(String),
    #[error("only the publisher of {0} may price it")]
    NotPublisher(String),
    #[error("request {0} already exists")]
    RequestExists(Hash),
    #[error("request {0} is not open")]
    UnknownRequest(Hash),
    #[error("request {0} is being judged by the validators")]
    Disputed(Hash),
    #[error("request {0} is not being judged")]
    NotDisputed(Hash),
    #[error("quorum size {0} is above 16")]
    QuorumSize(u32),
    #[error("receipt {index}: {reason}")]
    Receipt { index: usize, reason: String },
    #[error("receipts disagree on the output; record a disagreement instead")]
    Disagreement,
    #[error("receipts agree; there is no disagreement to record")]
    NoDisagreement,
    #[error("only the client may {0}")]
    NotClient(&'static str),
    #[error("request {request} can be refunded from height {from}")]
    TooEarly { request: Hash, from: u64 },
    #[error("invalid field: {0}")]
    Invalid(String),
}
