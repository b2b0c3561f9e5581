//! Pinned encodings: one signed transaction of every action, and a block header.
//!
//! Signatures, transaction ids and block digests are computed over these bytes by every
//! validator and client, so a change to any of them splits the network from old data. A
//! deliberate change must bump the version of what changed (its `verity/…/vN` domain) and
//! regenerate the vectors in the same commit with
//! `VERITY_REGEN_GOLDEN=1 cargo test -p verity-ledger --test state golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use verity_core::encode::{Decoder, Encoder};
use verity_core::hash::domain;
use verity_core::receipt::ReceiptBody;
use verity_core::tensor::hash_map;
use verity_core::{EngineId, Hash, Mode, ModelId, NodeKey, Receipt, Tensor, TensorMap};
use verity_ledger::block::{receipts_root, txs_root, BlockHeader};
use verity_ledger::{Action, Transaction};

const CHAIN_ID: &str = "verity-golden";

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/ledger.json")
}

fn regenerating() -> bool {
    std::env::var("VERITY_REGEN_GOLDEN").as_deref() == Ok("1")
}

/// Keys from fixed seeds (Ed25519 signing is deterministic, so signatures are too).
fn key(seed: u8) -> NodeKey {
    NodeKey::from_seed([seed; 32])
}

const MODEL: ModelId = ModelId([0x4d; 32]);
const REQUEST: Hash = Hash([0x52; 32]);

fn receipt(node: &NodeKey, logit: f32, mode: Mode, trace_root: Option<Hash>) -> Receipt {
    let outputs: TensorMap = BTreeMap::from([(
        "logits".to_string(),
        Tensor::from_f32(vec![1, 2], &[logit, -0.5]).unwrap(),
    )]);
    ReceiptBody {
        chain_id: CHAIN_ID.into(),
        request_hash: REQUEST,
        model: MODEL,
        input_hash: Hash([0x49; 32]),
        output_hash: hash_map(&outputs),
        outputs,
        trace_root,
        engine: EngineId {
            name: "verity-int8".into(),
            version: "semantics-v1".into(),
        },
        mode,
        timestamp_ms: 1_700_000_000_123,
    }
    .sign(node)
}

/// One transaction of every action (both forms of `OpenRequest`), named.
fn transactions() -> Vec<(&'static str, Transaction)> {
    let (client, node_a, node_b) = (key(0xc1), key(0xa1), key(0xb1));
    let quorum = Mode::Quorum { k: 2 };
    let agreeing = vec![
        receipt(&node_a, 1.25, quorum, Some(Hash([0x54; 32]))),
        receipt(&node_b, 1.25, quorum, Some(Hash([0x54; 32]))),
    ];
    let disagreeing = vec![
        agreeing[0].clone(),
        receipt(&node_b, 3.0, quorum, Some(Hash([0x54; 32]))),
    ];
    let signed_by = |who: &NodeKey, nonce, action| Transaction::new(who, CHAIN_ID, nonce, action);
    vec![
        (
            "transfer",
            signed_by(
                &client,
                7,
                Action::Transfer {
                    to: node_a.public(),
                    amount: 250,
                },
            ),
        ),
        (
            "register_node",
            signed_by(
                &node_a,
                0,
                Action::RegisterNode {
                    stake: 10_000,
                    endpoint: "https://node-a.example:7000".into(),
                    capabilities: vec!["quorum".into(), "signed".into()],
                },
            ),
        ),
        (
            "register_model",
            signed_by(
                &client,
                8,
                Action::RegisterModel {
                    model: MODEL,
                    name: "digits-mlp.int8".into(),
                    version: "1.0".into(),
                    price: 40,
                },
            ),
        ),
        (
            "register_name",
            signed_by(
                &client,
                9,
                Action::RegisterName {
                    name: "digits-mlp".into(),
                },
            ),
        ),
        (
            "set_price",
            signed_by(
                &client,
                10,
                Action::SetPrice {
                    name: "digits-mlp.int8".into(),
                    version: "1.0".into(),
                    price: 55,
                },
            ),
        ),
        (
            "open_request_quorum",
            signed_by(
                &client,
                0,
                Action::OpenRequest {
                    request: REQUEST,
                    model: MODEL,
                    listing: "digits-mlp.int8@1.0".into(),
                    mode: Mode::Quorum { k: 2 },
                    node: None,
                },
            ),
        ),
        (
            "open_request_signed",
            signed_by(
                &client,
                0,
                Action::OpenRequest {
                    request: REQUEST,
                    model: MODEL,
                    listing: "digits-mlp.int8@1.0".into(),
                    mode: Mode::Signed,
                    node: Some(node_a.public()),
                },
            ),
        ),
        (
            "settle",
            signed_by(
                &node_a,
                0,
                Action::Settle {
                    request: REQUEST,
                    receipts: agreeing,
                    proof: None,
                },
            ),
        ),
        (
            "settle_signed",
            signed_by(
                &node_a,
                0,
                Action::Settle {
                    request: REQUEST,
                    receipts: vec![receipt(&node_a, 1.25, Mode::Signed, None)],
                    proof: None,
                },
            ),
        ),
        (
            "settle_zk",
            signed_by(
                &node_a,
                0,
                Action::Settle {
                    request: REQUEST,
                    receipts: vec![receipt(&node_a, 1.25, Mode::Zk, None)],
                    proof: Some(Hash([0x50; 32])),
                },
            ),
        ),
        (
            "disagree",
            signed_by(
                &node_b,
                0,
                Action::Disagree {
                    request: REQUEST,
                    inputs: BTreeMap::from([(
                        "x".to_string(),
                        Tensor::from_f32(vec![2], &[0.5, -1.0]).unwrap(),
                    )]),
                    receipts: disagreeing,
                },
            ),
        ),
        (
            "verdict",
            signed_by(
                &node_a,
                0,
                Action::Verdict {
                    request: REQUEST,
                    output: Hash([0x4f; 32]),
                },
            ),
        ),
        (
            "refund",
            signed_by(&client, 0, Action::Refund { request: REQUEST }),
        ),
    ]
}

/// A header over the transactions above, settling the receipts of the quorum `Settle`.
fn header(txs: &[Transaction]) -> BlockHeader {
    let settled: Vec<Hash> = txs
        .iter()
        .filter_map(|tx| match &tx.action {
            Action::Settle {
                receipts,
                proof: None,
                ..
            } => Some(receipts.iter().map(Receipt::id)),
            _ => None,
        })
        .flatten()
        .collect();
    BlockHeader {
        height: 42,
        parent: Hash([0x50; 32]),
        timestamp_ms: 1_700_000_001_000,
        proposer: key(0xa1).public(),
        txs_root: txs_root(txs),
        receipts_root: receipts_root(&settled),
        state_root: Hash([0x53; 32]),
    }
}

fn encoded(write: impl FnOnce(&mut Encoder)) -> String {
    let mut e = Encoder::new();
    write(&mut e);
    hex::encode(e.finish())
}

fn vectors() -> Value {
    let named = transactions();
    let txs: Vec<Transaction> = named.iter().map(|(_, tx)| tx.clone()).collect();
    let header = header(&txs);
    json!({
        "about": "Canonical encodings of signed transactions (one per action) and of a block \
                  header, with their hashes. Regenerate only together with a version bump.",
        "chain_id": CHAIN_ID,
        "domains": {
            "tx": domain::TX,
            "tx_signature": domain::TX_SIGNATURE,
            "receipt": domain::RECEIPT,
            "block": domain::BLOCK,
            "receipts_node": domain::RECEIPTS_NODE,
        },
        "transactions": named
            .iter()
            .map(|(name, tx)| json!({
                "action": name,
                "id": tx.id().to_hex(),
                "signing_hash": tx.signing_hash(CHAIN_ID).to_hex(),
                "encoded": encoded(|e| tx.encode_into(e)),
            }))
            .collect::<Vec<_>>(),
        "block_header": {
            "txs_root": header.txs_root.to_hex(),
            "receipts_root": header.receipts_root.to_hex(),
            "digest": header.digest().to_hex(),
            "encoded": encoded(|e| header.encode_into(e)),
        },
    })
}

fn pinned() -> Value {
    let path = vectors_path();
    let text = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with VERITY_REGEN_GOLDEN=1)",
            path.display()
        )
    });
    serde_json::from_slice(&text).unwrap()
}

const CHANGED: &str = "differs from fixtures/golden/ledger.json: if the encoding changed on \
                       purpose, bump its version and regenerate with VERITY_REGEN_GOLDEN=1";

#[test]
fn transaction_and_block_encodings_match_the_pinned_vectors() {
    let derived = vectors();
    if regenerating() {
        let text = serde_json::to_string_pretty(&derived).unwrap();
        std::fs::write(vectors_path(), text + "\n").unwrap();
    }
    let pinned = pinned();

    for field in ["chain_id", "domains"] {
        assert_eq!(derived[field], pinned[field], "{field} {CHANGED}");
    }
    let (ours, theirs) = (&derived["transactions"], &pinned["transactions"]);
    assert_eq!(
        ours.as_array().map(Vec::len),
        theirs.as_array().map(Vec::len),
        "number of transactions {CHANGED}"
    );
    for (i, tx) in ours.as_array().into_iter().flatten().enumerate() {
        assert_eq!(*tx, theirs[i], "transaction {} {CHANGED}", tx["action"]);
    }
    assert_eq!(
        derived["block_header"], pinned["block_header"],
        "block_header {CHANGED}"
    );
    pinned_bytes_decode_to_the_same_values(&pinned);
}

/// The pinned bytes are not only reproduced but still understood: they decode to the same
/// transactions, whose signatures hold on the golden chain only, and to the same header.
fn pinned_bytes_decode_to_the_same_values(pinned: &Value) {
    let bytes = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    let named = transactions();
    for ((name, tx), entry) in named.iter().zip(pinned["transactions"].as_array().unwrap()) {
        let raw = bytes(&entry["encoded"]);
        let mut d = Decoder::new(&raw);
        let decoded = Transaction::decode_from(&mut d)
            .and_then(|tx| d.expect_end().map(|()| tx))
            .unwrap_or_else(|e| panic!("{name}: the pinned bytes no longer decode: {e}"));
        assert_eq!(decoded, *tx, "{name}");
        assert!(decoded.signature_is_valid(CHAIN_ID), "{name}");
        assert!(!decoded.signature_is_valid("another-chain"), "{name}");
    }
    let txs: Vec<Transaction> = named.into_iter().map(|(_, tx)| tx).collect();
    let raw = bytes(&pinned["block_header"]["encoded"]);
    let mut d = Decoder::new(&raw);
    assert_eq!(BlockHeader::decode_from(&mut d).unwrap(), header(&txs));
    d.expect_end().unwrap();
}
