//! Signed transactions and their canonical encoding (docs/economics.md lists the actions).

use crate::encode::{Decoder, Encoder};
use crate::hash::domain;
use crate::keys::Signature;
use crate::request::Mode;
use crate::tensor::{Tensor, TensorMap};
use crate::{CoreError, Hash, ModelId, NodeKey, PublicKey, Receipt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Move balance to another account.
    Transfer { to: PublicKey, amount: u64 },
    /// Register the sender as an executor node, locking `stake` from its balance.
    /// `capabilities` say what it serves (e.g. `quorum`: canonical int8 quorum execution).
    RegisterNode {
        stake: u64,
        endpoint: String,
        #[serde(default)]
        capabilities: Vec<String>,
    },
    /// Claim a model name for the sender, for the ledger's `name_fee`: from then on only the
    /// sender registers versions under it (and under its canonical `<name>.int8`).
    RegisterName { name: String },
    /// Register a model (by id) as `name@version`, with a price per execution paid to each
    /// executor. Only the name's owner may; the version must be new.
    RegisterModel {
        model: ModelId,
        name: String,
        version: String,
        price: u64,
    },
    /// Re-price the listing `name@version`; only its publisher may.
    SetPrice {
        name: String,
        version: String,
        price: u64,
    },
    /// Open an inference request in `mode`: escrows `price * max(k, 1)` from the client's
    /// balance. `signed` and `zk` requests name the one node the client chose (paid `price`);
    /// `quorum:k` is served by k ranked executors.
    OpenRequest {
        request: Hash,
        model: ModelId,
        /// The listing (`name@version`) whose price the client pays; it must list `model`.
        listing: String,
        mode: Mode,
        /// Signed and zk mode: the node the client asked, the only one that may settle it.
        /// Must be absent for quorum requests (the ledger ranks those).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<PublicKey>,
    },
    /// Settle an open request with its receipts: k receipts by distinct eligible nodes, for
    /// this request, model and mode, with equal output hashes. Pays each executor, except in
    /// zk mode: there `proof` is the hash of the proof the executor serves, and the request
    /// waits for the validators' verdicts on it.
    Settle {
        request: Hash,
        receipts: Vec<Receipt>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Hash>,
    },
    /// Opens a dispute over a quorum whose receipts disagree, filed by one of its eligible
    /// executors with the request's inputs, so that every validator can re-execute it.
    Disagree {
        request: Hash,
        inputs: TensorMap,
        receipts: Vec<Receipt>,
    },
    /// A validator's verdict on a disputed request: the output hash it computed (quorum), or
    /// for a zk settlement the receipt's output hash if the proof verifies and the zero hash
    /// if it does not.
    Verdict { request: Hash, output: Hash },
    /// Take back the escrow of a request nobody settled within the timeout.
    Refund { request: Hash },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub sender: PublicKey,
    pub nonce: u64,
    pub action: Action,
    pub signature: Signature,
}

fn put_receipts(e: &mut Encoder, receipts: &[Receipt]) {
    e.u64(receipts.len() as u64);
    for r in receipts {
        r.encode_into(e);
    }
}

fn get_receipts(d: &mut Decoder<'_>) -> Result<Vec<Receipt>, CoreError> {
    let n = d.count(200)?;
    (0..n).map(|_| Receipt::decode_from(d)).collect()
}

/// An optional 32-byte value: tag 0 (absent) or tag 1 and the bytes.
fn get_option(d: &mut Decoder<'_>) -> Result<Option<[u8; 32]>, CoreError> {
    match d.u8()? {
        0 => Ok(None),
        1 => Ok(Some(d.fixed32()?)),
        t => Err(CoreError::Malformed(format!("option tag {t}"))),
    }
}

impl Action {
    /// Whether the sender's account nonce orders and de-duplicates this action. Escrow
    /// actions need none (their nonce must be 0): each names a request, and a request can be
    /// opened and closed once, so a replay is rejected anyway and a failed escrow transaction
    /// cannot leave a gap that stalls the sender's later transactions.
    pub fn uses_nonce(&self) -> bool {
        matches!(
            self,
            Action::Transfer { .. }
                | Action::RegisterNode { .. }
                | Action::RegisterName { .. }
                | Action::RegisterModel { .. }
                | Action::SetPrice { .. }
        )
    }

    pub fn encode_into(&self, e: &mut Encoder) {
        match self {
            Action::Transfer { to, amount } => {
                e.u8(1).fixed32(&to.0).u64(*amount);
            }
            Action::RegisterNode {
                stake,
                endpoint,
                capabilities,
            } => {
                e.u8(2)
                    .u64(*stake)
                    .str(endpoint)
                    .u64(capabilities.len() as u64);
                for c in capabilities {
                    e.str(c);
                }
            }
            Action::RegisterModel {
                model,
                name,
                version,
                price,
            } => {
                e.u8(3).fixed32(&model.0).str(name).str(version).u64(*price);
            }
            Action::RegisterName { name } => {
                e.u8(9).str(name);
            }
            Action::SetPrice {
                name,
                version,
                price,
            } => {
                e.u8(10).str(name).str(version).u64(*price);
            }
            Action::OpenRequest {
                request,
                model,
                listing,
                mode,
                node,
            } => {
                e.u8(4)
                    .fixed32(&request.0)
                    .fixed32(&model.0)
                    .str(listing)
                    .str(&mode.name());
                match node {
                    None => e.u8(0),
                    Some(k) => e.u8(1).fixed32(&k.0),
                };
            }
            Action::Settle {
                request,
                receipts,
                proof,
            } => {
                e.u8(5).fixed32(&request.0);
                put_receipts(e, receipts);
                match proof {
                    None => e.u8(0),
                    Some(p) => e.u8(1).fixed32(&p.0),
                };
            }
            Action::Disagree {
                request,
                inputs,
                receipts,
            } => {
                e.u8(6).fixed32(&request.0).u64(inputs.len() as u64);
                for (name, t) in inputs {
                    e.str(name);
                    t.encode_into(e);
                }
                put_receipts(e, receipts);
            }
            Action::Verdict { request, output } => {
                e.u8(8).fixed32(&request.0).fixed32(&output.0);
            }
            Action::Refund { request } => {
                e.u8(7).fixed32(&request.0);
            }
        }
    }

    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Action, CoreError> {
        Ok(match d.u8()? {
            1 => Action::Transfer {
                to: PublicKey(d.fixed32()?),
                amount: d.u64()?,
            },
            2 => Action::RegisterNode {
                stake: d.u64()?,
                endpoint: d.str()?.to_string(),
                capabilities: (0..d.count(8)?)
                    .map(|_| d.str().map(str::to_string))
                    .collect::<Result<_, _>>()?,
            },
            3 => Action::RegisterModel {
                model: ModelId(d.fixed32()?),
                name: d.str()?.to_string(),
                version: d.str()?.to_string(),
                price: d.u64()?,
            },
            9 => Action::RegisterName {
                name: d.str()?.to_string(),
            },
            10 => Action::SetPrice {
                name: d.str()?.to_string(),
                version: d.str()?.to_string(),
                price: d.u64()?,
            },
            4 => Action::OpenRequest {
                request: Hash(d.fixed32()?),
                model: ModelId(d.fixed32()?),
                listing: d.str()?.to_string(),
                mode: Mode::parse(d.str()?)?,
                node: get_option(d)?.map(PublicKey),
            },
            5 => Action::Settle {
                request: Hash(d.fixed32()?),
                receipts: get_receipts(d)?,
                proof: get_option(d)?.map(Hash),
            },
            6 => Action::Disagree {
                request: Hash(d.fixed32()?),
                inputs: {
                    let mut inputs = TensorMap::new();
                    for _ in 0..d.count(16)? {
                        let name = d.str()?.to_string();
                        inputs.insert(name, Tensor::decode_from(d)?);
                    }
                    inputs
                },
                receipts: get_receipts(d)?,
            },
            7 => Action::Refund {
                request: Hash(d.fixed32()?),
            },
            8 => Action::Verdict {
                request: Hash(d.fixed32()?),
                output: Hash(d.fixed32()?),
            },
            t => return Err(CoreError::Malformed(format!("unknown action tag {t}"))),
        })
    }
}

/// The transaction's content id: sender, nonce and action, in the `verity/tx/v2` domain.
fn content_id(sender: &PublicKey, nonce: u64, action: &Action) -> Hash {
    let mut e = Encoder::new();
    e.fixed32(&sender.0).u64(nonce);
    action.encode_into(&mut e);
    Hash::of(domain::TX, &e.finish())
}

/// What the sender signs: the content id bound to one chain, so a transaction signed for one
/// chain (a devnet, a testnet) is invalid on every other.
fn signing_message(chain_id: &str, id: &Hash) -> Hash {
    let mut e = Encoder::new();
    e.str(chain_id).fixed32(&id.0);
    Hash::of(domain::TX_SIGNATURE, &e.finish())
}

impl Transaction {
    /// A transaction signed by `key` for the chain `chain_id`.
    pub fn new(key: &NodeKey, chain_id: &str, nonce: u64, action: Action) -> Transaction {
        let sender = key.public();
        let id = content_id(&sender, nonce, &action);
        let signature = key.sign(&signing_message(chain_id, &id).0);
        Transaction {
            sender,
            nonce,
            action,
            signature,
        }
    }

    /// Size of the canonical encoding, in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut e = Encoder::new();
        self.encode_into(&mut e);
        e.finish().len()
    }

    /// The transaction's id (hash of sender, nonce and action).
    pub fn id(&self) -> Hash {
        content_id(&self.sender, self.nonce, &self.action)
    }

    /// The hash the sender signs for the chain `chain_id`.
    pub fn signing_hash(&self, chain_id: &str) -> Hash {
        signing_message(chain_id, &self.id())
    }

    /// Whether the sender signed this transaction for the chain `chain_id`.
    pub fn signature_is_valid(&self, chain_id: &str) -> bool {
        self.sender
            .verify(&self.signing_hash(chain_id).0, &self.signature)
    }

    pub fn encode_into(&self, e: &mut Encoder) {
        e.fixed32(&self.sender.0).u64(self.nonce);
        self.action.encode_into(e);
        e.fixed64(&self.signature.0);
    }

    pub fn decode_from(d: &mut Decoder<'_>) -> Result<Transaction, CoreError> {
        let sender = PublicKey(d.fixed32()?);
        let nonce = d.u64()?;
        let action = Action::decode_from(d)?;
        let sig = d.fixed64()?;
        Ok(Transaction {
            sender,
            nonce,
            action,
            signature: Signature(sig),
        })
    }
}

/// Smallest encoded transaction (sender, nonce, action tag, signature): bounds how many a
/// hostile length prefix can claim.
const MIN_TX_BYTES: usize = 32 + 8 + 1 + 64;

/// Encodes a length-prefixed list of transactions (a block body, a gossip batch).
pub fn encode_txs(txs: &[Transaction], e: &mut Encoder) {
    e.u64(txs.len() as u64);
    for tx in txs {
        tx.encode_into(e);
    }
}

/// Decodes a list written by [`encode_txs`], refusing more than `max` transactions.
pub fn decode_txs(d: &mut Decoder<'_>, max: usize) -> Result<Vec<Transaction>, CoreError> {
    let n = d.count(MIN_TX_BYTES)?;
    if n > max {
        return Err(CoreError::Malformed(format!(
            "{n} transactions, at most {max} allowed"
        )));
    }
    (0..n).map(|_| Transaction::decode_from(d)).collect()
}
