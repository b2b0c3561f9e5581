//! Payment through the ledger, the same for every mode: check the client's escrow before any
//! work is done, then gossip it together with the transaction that closes it (a settlement,
//! or a quorum's disagreement), and optionally wait until that is finalized.

use crate::node::{NoLedger, Node};
use std::time::Duration;
use verity_core::{Hash, InferenceRequest, Mode, ModelId};
use verity_ledger::consensus::SubmitError;
use verity_ledger::state::Closed;
use verity_ledger::{Action, Transaction};

/// How long `wait` waits for the settlement to be finalized.
const FINALITY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    NoLedger(#[from] NoLedger),
    #[error(
        "escrow must be the client's OpenRequest {{request: {request}, model: {model}, \
         executors: {executors}{node}}} with nonce 0"
    )]
    NotTheEscrow {
        request: Hash,
        model: ModelId,
        executors: u32,
        /// `, node: <key>` when the escrow must name this node.
        node: String,
    },
    #[error("the escrow transaction's signature does not verify")]
    EscrowSignature,
    #[error("request {0} was already escrowed")]
    AlreadyEscrowed(Hash),
    #[error("model {0} has no price on the ledger (RegisterModel)")]
    ModelNotRegistered(ModelId),
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
    let opens_this = matches!(
        &escrow.action,
        Action::OpenRequest { request: r, model, executors, node: n }
            if *r == request && *model == req.model && *executors == k && *n == named
    );
    if !opens_this || escrow.sender != req.client || escrow.nonce != 0 {
        return Err(SettleError::NotTheEscrow {
            request,
            model: req.model,
            executors: k,
            node: named.map(|n| format!(", node: {n}")).unwrap_or_default(),
        });
    }
    if !escrow.signature_is_valid(&chain.validators.chain_id) {
        return Err(SettleError::EscrowSignature);
    }
    let balance = chain.app.spendable(&req.client);
    let (price, known, nodes) = chain.app.read(|s| {
        (
            s.model(&req.model).map(|m| m.price),
            s.escrow(&request).is_some() || s.closed(&request).is_some(),
            s.rank_executors(&request).len(),
        )
    });
    if known {
        return Err(SettleError::AlreadyEscrowed(request));
    }
    let price = price.ok_or(SettleError::ModelNotRegistered(req.model))?;
    let fee = price.saturating_mul(k.max(1) as u64);
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

/// Gossips the client's escrow together with the transaction that closes it (in one batch,
/// so every validator sees them in order); with `wait`, returns the settling block's height.
pub async fn settle(
    node: &Node,
    escrow: Transaction,
    close: Action,
    wait: bool,
) -> Result<Option<u64>, SettleError> {
    let chain = node.chain()?;
    let request = match &escrow.action {
        Action::OpenRequest { request, .. } => *request,
        _ => return Err(SettleError::NotOpenRequest),
    };
    let close = Transaction::new(&node.key, &chain.validators.chain_id, 0, close);
    chain
        .submit(vec![escrow, close])
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
