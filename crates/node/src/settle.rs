//! Payment through the ledger, the same for every mode, and always before work: the client's
//! escrow is checked, submitted and waited for until a finalized block has opened it (the
//! client's balance is debited there); only then does any node execute. The transaction that
//! closes it (a settlement, or a quorum's disagreement) follows, optionally waited for too.

use crate::node::{NoLedger, Node};
use std::time::Duration;
use verity_core::{Hash, InferenceRequest, Mode, ModelId};
use verity_ledger::consensus::{EscrowProgress, SubmitError};
use verity_ledger::state::Closed;
use verity_ledger::{Action, Transaction};

/// How long `wait` waits for the settlement to be finalized.
const FINALITY_WAIT: Duration = Duration::from_secs(30);
/// How long an executor waits for its ledger to reach the block that opened a request.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    NoLedger(#[from] NoLedger),
    #[error(
        "escrow must be the client's OpenRequest {{request: {request}, model: {model}, \
         mode: {mode}{node}}} with nonce 0"
    )]
    NotTheEscrow {
        request: Hash,
        model: ModelId,
        mode: Mode,
        /// `, node: <key>` when the escrow must name this node.
        node: String,
    },
    #[error("the escrow transaction's signature does not verify")]
    EscrowSignature,
    #[error("request {0} was already escrowed")]
    AlreadyEscrowed(Hash),
    #[error("the ledger has no listing {listing} of model {model} (RegisterModel)")]
    NoListing { listing: String, model: ModelId },
    #[error(
        "the request costs {fee}; the client can spend {balance} (finalized balance minus its \
         waiting transactions)"
    )]
    InsufficientFunds { fee: u64, balance: u64 },
    #[error("quorum of {asked} asked, {available} nodes with the quorum capability")]
    QuorumTooLarge { asked: u32, available: usize },
    #[error("escrow is not an OpenRequest")]
    NotOpenRequest,
    #[error("{0}")]
    LedgerBusy(SubmitError),
    #[error("the ledger refused the escrow: {0}")]
    EscrowRefused(String),
    #[error("the escrow was not finalized within {}s", FINALITY_WAIT.as_secs())]
    EscrowTimeout,
    #[error("request {0} has no open escrow on the finalized ledger")]
    NotOpen(Hash),
}

/// Checks the client's escrow for `req`, and refuses early what the ledger would refuse, so no
/// node works for nothing.
pub fn check_escrow(
    node: &Node,
    req: &InferenceRequest,
    escrow: &Transaction,
) -> Result<(), SettleError> {
    let chain = node.chain()?;
    let request = req.hash();
    let k = req.mode.executors();
    // Signed and zk mode name the node the client asked (this one); quorum mode names none.
    let named = match req.mode {
        Mode::Signed | Mode::Zk => Some(node.key.public()),
        Mode::Quorum { .. } => None,
    };
    let listing = match &escrow.action {
        Action::OpenRequest {
            request: r,
            model,
            listing,
            mode,
            node: n,
        } if *r == request && *model == req.model && *mode == req.mode && *n == named => {
            Some(listing.as_str())
        }
        _ => None,
    };
    let Some(listing) = listing.filter(|_| escrow.sender == req.client && escrow.nonce == 0) else {
        return Err(SettleError::NotTheEscrow {
            request,
            model: req.model,
            mode: req.mode,
            node: named.map(|n| format!(", node: {n}")).unwrap_or_default(),
        });
    };
    if !escrow.signature_is_valid(&chain.validators.chain_id) {
        return Err(SettleError::EscrowSignature);
    }
    let balance = chain.app.spendable(&req.client);
    let (fee, known, nodes) = chain.app.read(|s| {
        (
            s.fee(listing, &req.model, req.mode),
            s.escrow(&request).is_some() || s.closed(&request).is_some(),
            s.quorum_nodes().count(),
        )
    });
    if known {
        return Err(SettleError::AlreadyEscrowed(request));
    }
    let fee = fee.ok_or_else(|| SettleError::NoListing {
        listing: listing.to_string(),
        model: req.model,
    })?;
    if balance < fee {
        return Err(SettleError::InsufficientFunds { fee, balance });
    }
    if nodes < k as usize {
        return Err(SettleError::QuorumTooLarge {
            asked: k,
            available: nodes,
        });
    }
    Ok(())
}

/// Submits the client's escrow and waits until a finalized block opens it; returns that
/// block's height. Work starts only after this: a request whose escrow cannot be paid (another
/// request or a transfer spent the balance first) is refused, never executed.
pub async fn open(node: &Node, escrow: &Transaction) -> Result<u64, SettleError> {
    let chain = node.chain()?;
    if !matches!(escrow.action, Action::OpenRequest { .. }) {
        return Err(SettleError::NotOpenRequest);
    }
    chain
        .submit(vec![escrow.clone()])
        .await
        .map_err(SettleError::LedgerBusy)?;
    let start = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + FINALITY_WAIT;
    loop {
        match chain.app.escrow_progress(escrow) {
            EscrowProgress::Open { height } => {
                node.metrics
                    .escrow_wait
                    .observe(start.elapsed().as_secs_f64());
                return Ok(height);
            }
            EscrowProgress::Refused(why) => return Err(SettleError::EscrowRefused(why)),
            EscrowProgress::Waiting if tokio::time::Instant::now() > deadline => {
                return Err(SettleError::EscrowTimeout)
            }
            EscrowProgress::Waiting => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Checks that `request` is open on the finalized ledger for this client, model and quorum
/// size (what an executor asks before it works for another node), waiting briefly for this
/// node's ledger to catch up with the block that opened it.
pub async fn require_open(node: &Node, req: &InferenceRequest) -> Result<(), SettleError> {
    let chain = node.chain()?;
    let request = req.hash();
    let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
    loop {
        let open = chain.app.read(|s| {
            s.escrow(&request).is_some_and(|e| {
                e.client == req.client && e.model == req.model && e.mode == req.mode
            })
        });
        if open {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(SettleError::NotOpen(request));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Gossips the transaction that closes an open request; with `wait`, returns the settling
/// block's height.
pub async fn settle(
    node: &Node,
    request: Hash,
    close: Action,
    wait: bool,
) -> Result<Option<u64>, SettleError> {
    let chain = node.chain()?;
    let close = Transaction::new(&node.key, &chain.validators.chain_id, 0, close);
    chain
        .submit(vec![close])
        .await
        .map_err(SettleError::LedgerBusy)?;
    Ok(if wait {
        wait_settled(node, &request).await
    } else {
        None
    })
}

/// The height of the block that settled `request`, once finalized (None on timeout).
async fn wait_settled(node: &Node, request: &Hash) -> Option<u64> {
    let chain = node.chain().ok()?;
    let deadline = tokio::time::Instant::now() + FINALITY_WAIT;
    while tokio::time::Instant::now() < deadline {
        match chain.app.read(|s| s.closed(request)) {
            Some(Closed::Settled { height }) => return Some(height),
            Some(_) => return None,
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}
