//! The ledger state machine: fees, stakes, escrows, settlement, disagreements, refunds,
//! replay protection, and block validation across replicas.

use std::collections::BTreeMap;
use verity_core::receipt::ReceiptBody;
use verity_core::{EngineId, Hash, Mode, ModelId, NodeKey, Receipt, Tensor, TensorMap};
use verity_ledger::consensus::CheckedTx;
use verity_ledger::state::{BlockError, Closed, GenesisNode};
use verity_ledger::{
    Action, Block, Genesis, LedgerState, Params, ReceiptProof, Transaction, TxError,
};

#[path = "state/golden.rs"]
mod golden;
#[path = "state/judgement.rs"]
mod judgement;
#[path = "state/mempool.rs"]
mod mempool;

fn key(i: u8) -> NodeKey {
    NodeKey::from_seed([i; 32])
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: "test".into(),
        accounts: (1..=6).map(|i| (key(i).public(), 1_000_000)).collect(),
        nodes: (1..=4)
            .map(|i| GenesisNode {
                key: key(i).public(),
                stake: 10_000,
                endpoint: format!("http://127.0.0.1:{i}"),
                capabilities: vec!["quorum".into()],
            })
            .collect(),
        params: Params {
            min_stake: 1_000,
            refund_after: 5,
            quorum_spares: 1,
            ..Params::default()
        },
    }
}

fn receipt(node: &NodeKey, request: Hash, model: ModelId, value: f32) -> Receipt {
    quorum_receipt(node, request, model, value, 3)
}

fn quorum_receipt(node: &NodeKey, request: Hash, model: ModelId, value: f32, k: u32) -> Receipt {
    let outputs: TensorMap = BTreeMap::from([(
        "y".to_string(),
        Tensor::from_f32(vec![1], &[value]).unwrap(),
    )]);
    let engine = EngineId {
        name: "verity-int8".into(),
        version: "semantics-v1".into(),
    };
    let inputs = TensorMap::new();
    let trace_root = Some(Hash::of("trace", b"t"));
    ReceiptBody {
        chain_id: "test".into(),
        ..ReceiptBody::new(
            request,
            model,
            &inputs,
            outputs,
            engine,
            trace_root,
            Mode::Quorum { k },
        )
    }
    .sign(node)
}

/// Transactions with their signatures checked, as a validator's pool hands them to `propose`.
fn checked<const N: usize>(txs: [Transaction; N]) -> Vec<CheckedTx> {
    txs.into_iter()
        .map(|t| CheckedTx::check(t, "test").unwrap())
        .collect()
}

pub(crate) struct Chain {
    state: LedgerState,
    nonces: BTreeMap<u8, u64>,
}

impl Chain {
    fn new() -> Chain {
        Chain::from(genesis())
    }
    fn from(g: Genesis) -> Chain {
        Chain {
            state: LedgerState::from_genesis(&g).unwrap(),
            nonces: BTreeMap::new(),
        }
    }
    fn tx(&mut self, who: u8, action: Action) -> Transaction {
        if !action.uses_nonce() {
            return Transaction::new(&key(who), "test", 0, action);
        }
        let n = self.nonces.entry(who).or_default();
        let tx = Transaction::new(&key(who), "test", *n, action);
        *n += 1;
        tx
    }
    /// Claims the name `m` for `who` (if nobody has) and registers `MODEL` as `m@1.0` at
    /// `price`.
    fn price(&mut self, who: u8, price: u64) {
        if self.state.name_owner("m").is_none() {
            self.run(who, Action::RegisterName { name: "m".into() })
                .unwrap();
        }
        self.run(
            who,
            Action::RegisterModel {
                model: MODEL,
                name: "m".into(),
                version: "1.0".into(),
                price,
            },
        )
        .unwrap();
    }
    /// A block with no transactions.
    fn empty_block(&mut self) {
        let block = self.state.propose(vec![], key(1).public(), 0).block;
        self.state.apply_block(&block).unwrap();
    }
    /// Applies in a block of its own; returns the error if the tx was rejected.
    fn run(&mut self, who: u8, action: Action) -> Result<Vec<Hash>, TxError> {
        let tx = self.tx(who, action);
        let uses_nonce = tx.action.uses_nonce();
        let tx = CheckedTx::check(tx, "test").inspect_err(|_| {
            if uses_nonce {
                *self.nonces.get_mut(&who).unwrap() -= 1;
            }
        })?;
        let mut proposal = self.state.propose(vec![tx], key(1).public(), 0);
        let block = proposal.block;
        if let Some((tx, e)) = proposal.rejected.pop() {
            if tx.action.uses_nonce() {
                *self.nonces.get_mut(&who).unwrap() -= 1;
            }
            return Err(e);
        }
        Ok(self.state.apply_block(&block).unwrap())
    }
}

const MODEL: ModelId = ModelId([7; 32]);

#[test]
fn transfers_nonces_and_rejections_change_nothing() {
    let mut c = Chain::new();
    let supply = c.state.total_supply();
    c.run(
        5,
        Action::Transfer {
            to: key(9).public(),
            amount: 250,
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&key(9).public()), 250);
    assert_eq!(c.state.balance(&key(5).public()), 1_000_000 - 250);
    let root = c.state.state_root();
    // Replay of an old transaction, overdraft, zero amount: rejected with reasons, no change.
    let replay = Transaction::new(
        &key(5),
        "test",
        0,
        Action::Transfer {
            to: key(9).public(),
            amount: 250,
        },
    );
    let mut s = c.state.clone();
    assert!(matches!(
        s.apply_tx(&replay, 9),
        Err(TxError::Nonce {
            expected: 1,
            got: 0,
            ..
        })
    ));
    assert!(matches!(
        c.run(
            5,
            Action::Transfer {
                to: key(9).public(),
                amount: 10_000_000
            }
        ),
        Err(TxError::Balance { .. })
    ));
    assert_eq!(
        c.run(
            5,
            Action::Transfer {
                to: key(9).public(),
                amount: 0
            }
        ),
        Err(TxError::ZeroAmount)
    );
    let mut forged = c.tx(
        5,
        Action::Transfer {
            to: key(9).public(),
            amount: 1,
        },
    );
    forged.action = Action::Transfer {
        to: key(9).public(),
        amount: 500,
    };
    assert_eq!(s.apply_tx(&forged, 9), Err(TxError::Signature));
    // Signed for another chain: invalid here.
    let elsewhere = Transaction::new(
        &key(5),
        "another-chain",
        1,
        Action::Transfer {
            to: key(9).public(),
            amount: 1,
        },
    );
    assert_eq!(s.apply_tx(&elsewhere, 9), Err(TxError::Signature));
    assert_eq!(c.state.state_root(), root);
    assert_eq!(c.state.total_supply(), supply);
}

#[test]
fn quorum_request_is_escrowed_then_settled_and_paid() {
    let mut c = Chain::new();
    let supply = c.state.total_supply();
    c.price(6, 30);
    let req = Hash::of("req", b"1");
    c.run(
        5,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode: Mode::Quorum { k: 3 },
            node: None,
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&key(5).public()), 1_000_000 - 90);
    assert_eq!(c.state.escrow(&req).unwrap().amount, 90);
    let receipts: Vec<Receipt> = (1..=3).map(|i| receipt(&key(i), req, MODEL, 0.5)).collect();
    // Wrong count, duplicate signer, unregistered signer, other request: rejected.
    assert!(c
        .run(
            6,
            Action::Settle {
                request: req,
                receipts: receipts[..2].to_vec(),
                proof: None,
            }
        )
        .is_err());
    let dup = vec![
        receipts[0].clone(),
        receipts[0].clone(),
        receipts[1].clone(),
    ];
    assert!(matches!(
        c.run(
            6,
            Action::Settle {
                request: req,
                receipts: dup,
                proof: None,
            }
        ),
        Err(TxError::Receipt { index: 1, .. })
    ));
    let stranger = vec![
        receipts[0].clone(),
        receipts[1].clone(),
        receipt(&key(9), req, MODEL, 0.5),
    ];
    assert!(matches!(
        c.run(
            6,
            Action::Settle {
                request: req,
                receipts: stranger,
                proof: None,
            }
        ),
        Err(TxError::Receipt { index: 2, .. })
    ));
    let other = vec![
        receipts[0].clone(),
        receipts[1].clone(),
        receipt(&key(3), Hash::of("req", b"2"), MODEL, 0.5),
    ];
    assert!(matches!(
        c.run(
            6,
            Action::Settle {
                request: req,
                receipts: other,
                proof: None,
            }
        ),
        Err(TxError::Receipt { index: 2, .. })
    ));
    let mut tampered = receipts.clone();
    tampered[1].timestamp_ms += 1;
    assert!(matches!(
        c.run(
            6,
            Action::Settle {
                request: req,
                receipts: tampered,
                proof: None,
            }
        ),
        Err(TxError::Receipt { index: 1, .. })
    ));

    let before: Vec<u64> = (1..=3).map(|i| c.state.balance(&key(i).public())).collect();
    let ids = c
        .run(
            6,
            Action::Settle {
                request: req,
                receipts: receipts.clone(),
                proof: None,
            },
        )
        .unwrap();
    assert_eq!(ids, receipts.iter().map(Receipt::id).collect::<Vec<_>>());
    for (i, b) in (1..=3).zip(before) {
        assert_eq!(
            c.state.balance(&key(i).public()),
            b + 30,
            "executor {i} paid"
        );
    }
    assert!(
        matches!(c.state.closed(&req), Some(Closed::Settled { .. }))
            && c.state.escrow(&req).is_none()
    );
    // Settling or reopening the same request again is refused.
    assert!(c
        .run(
            6,
            Action::Settle {
                request: req,
                receipts,
                proof: None,
            }
        )
        .is_err());
    assert_eq!(
        c.run(
            5,
            Action::OpenRequest {
                request: req,
                model: MODEL,
                listing: "m@1.0".into(),
                mode: Mode::Quorum { k: 1 },
                node: None
            }
        ),
        Err(TxError::RequestExists(req))
    );
    assert_eq!(c.state.total_supply(), supply);
}

#[test]
fn only_the_ranked_executors_may_sign_and_escrow_actions_need_no_nonce() {
    let mut c = Chain::new();
    c.price(6, 10);
    let req = Hash::of("req", b"k1");
    c.run(
        5,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode: Mode::Quorum { k: 1 },
            node: None,
        },
    )
    .unwrap();
    // The executors are drawn by the next block, seeded by the digest of the block that
    // opened the request: nobody knew it when the request was signed.
    assert!(c.state.escrow(&req).unwrap().eligible.is_empty());
    let drawn = c.state.executors_of(&req).unwrap();
    let seed = c.state.last_digest();
    c.empty_block();
    let escrow = c.state.escrow(&req).unwrap().clone();
    // k = 1 with one spare: the two best-ranked of the four nodes, as anyone can recompute.
    assert_eq!(escrow.eligible, drawn);
    assert_eq!(escrow.eligible, c.state.eligible_executors(&seed, &req, 1));
    assert_eq!(escrow.eligible.len(), 2);
    let ranked = c.state.rank_executors(&seed, &req);
    let outsider = (1..=4u8).find(|i| key(*i).public() == ranked[3]).unwrap();
    let sign = |i: u8| quorum_receipt(&key(i), req, MODEL, 0.5, 1);
    assert!(matches!(
        c.run(
            6,
            Action::Settle {
                request: req,
                receipts: vec![sign(outsider)],
                proof: None,
            }
        ),
        Err(TxError::Receipt { index: 0, .. })
    ));
    // A receipt whose mode names another quorum size is refused.
    let wrong_mode = receipt(&key(1), req, MODEL, 0.5);
    let second = (1..=4u8).find(|i| key(*i).public() == ranked[1]).unwrap();
    assert!(c
        .run(
            6,
            Action::Settle {
                request: req,
                receipts: vec![wrong_mode],
                proof: None,
            }
        )
        .is_err());
    // The spare (second-ranked) node may settle; the sender's nonce does not move.
    let nonce = c.state.nonce(&key(6).public());
    c.run(
        6,
        Action::Settle {
            request: req,
            receipts: vec![sign(second)],
            proof: None,
        },
    )
    .unwrap();
    assert_eq!(c.state.nonce(&key(6).public()), nonce);
    // An escrow transaction with a non-zero nonce is malformed.
    let tx = Transaction::new(&key(5), "test", 3, Action::Refund { request: req });
    assert!(matches!(
        c.state.clone().apply_tx(&tx, 99),
        Err(TxError::Nonce { expected: 0, .. })
    ));
}

#[test]
fn refunds_only_to_the_client_after_the_timeout_and_stakes_lock_balance() {
    let mut c = Chain::new();
    c.price(6, 10);
    let req = Hash::of("req", b"r");
    c.run(
        5,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode: Mode::Quorum { k: 1 },
            node: None,
        },
    )
    .unwrap();
    assert!(matches!(
        c.run(5, Action::Refund { request: req }),
        Err(TxError::TooEarly { .. })
    ));
    for _ in 0..5 {
        c.run(
            6,
            Action::Transfer {
                to: key(6).public(),
                amount: 1,
            },
        )
        .unwrap();
    }
    assert_eq!(
        c.run(6, Action::Refund { request: req }),
        Err(TxError::NotClient("take back an escrow"))
    );
    c.run(5, Action::Refund { request: req }).unwrap();
    assert_eq!(c.state.balance(&key(5).public()), 1_000_000);

    assert!(matches!(
        c.run(
            5,
            Action::RegisterNode {
                stake: 10,
                endpoint: "x".into(),
                capabilities: vec![],
            }
        ),
        Err(TxError::StakeTooLow { .. })
    ));
    c.run(
        5,
        Action::RegisterNode {
            stake: 5_000,
            endpoint: "http://127.0.0.1:9".into(),
            capabilities: vec!["quorum".into(), "signed".into()],
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&key(5).public()), 995_000);
    assert_eq!(c.state.node(&key(5).public()).unwrap().stake, 5_000);
    // A node with the quorum capability is ranked for quorum requests; one without is not.
    assert!(c
        .state
        .rank_executors(&Hash::default(), &Hash::of("req", b"any"))
        .contains(&key(5).public()));
    assert!(
        matches!(
            c.run(
                6,
                Action::RegisterNode {
                    stake: 5_000,
                    endpoint: "http://z".into(),
                    capabilities: vec!["signed".into(), "quorum".into()],
                }
            ),
            Err(TxError::Invalid(_))
        ),
        "unsorted capabilities are refused"
    );
    assert!(
        matches!(
            c.run(
                6,
                Action::RegisterNode {
                    stake: 5_000,
                    endpoint: "file:///etc/passwd".into(),
                    capabilities: vec![],
                }
            ),
            Err(TxError::Invalid(_))
        ),
        "endpoints are http(s) URLs"
    );
    assert_eq!(
        c.run(
            5,
            Action::RegisterNode {
                stake: 5_000,
                endpoint: "y".into(),
                capabilities: vec![],
            }
        ),
        Err(TxError::NodeExists(key(5).public()))
    );
}

#[test]
fn replicas_agree_and_reject_tampered_blocks() {
    let mut a = Chain::new();
    let mut b = LedgerState::from_genesis(&genesis()).unwrap();
    let t0 = a.tx(6, Action::RegisterName { name: "m".into() });
    let t1 = a.tx(
        6,
        Action::RegisterModel {
            model: MODEL,
            name: "m".into(),
            version: "1.0".into(),
            price: 7,
        },
    );
    let req = Hash::of("req", b"b");
    let t2 = a.tx(
        5,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode: Mode::Quorum { k: 2 },
            node: None,
        },
    );
    let bad = Transaction::new(
        &key(4),
        "test",
        99,
        Action::Transfer {
            to: key(1).public(),
            amount: 1,
        },
    );
    let p1 = a
        .state
        .propose(checked([t0, t1, bad, t2]), key(2).public(), 10);
    assert_eq!(
        p1.rejected.len(),
        1,
        "the bad-nonce transaction is left out"
    );
    let block1 = p1.block;
    a.state.apply_block(&block1).unwrap();
    assert_eq!(
        a.state, p1.state,
        "propose's post-state equals applying the block"
    );
    b.apply_block(&Block::decode(&block1.encode()).unwrap())
        .unwrap();
    assert_eq!(a.state.state_root(), b.state_root());

    // Drawn by the next block (which settles), from the digest of the one that opened it.
    let eligible = &a.state.executors_of(&req).unwrap();
    let signer = |n: usize| (1..=4u8).find(|i| key(*i).public() == eligible[n]).unwrap();
    let receipts = vec![
        quorum_receipt(&key(signer(0)), req, MODEL, 1.0, 2),
        quorum_receipt(&key(signer(1)), req, MODEL, 1.0, 2),
    ];
    let t3 = a.tx(
        6,
        Action::Settle {
            request: req,
            receipts: receipts.clone(),
            proof: None,
        },
    );
    let block2 = a.state.propose(checked([t3]), key(3).public(), 20).block;
    // Tampering with the block: each is rejected and leaves the replica unchanged.
    let root_before = b.state_root();
    let mut t = block2.clone();
    t.txs.clear();
    assert_eq!(b.apply_block(&t), Err(BlockError::Root("transactions")));
    let mut t = block2.clone();
    t.header.receipts_root = Hash::default();
    assert_eq!(b.apply_block(&t), Err(BlockError::Root("receipts")));
    let mut t = block2.clone();
    t.header.state_root = Hash::default();
    assert_eq!(b.apply_block(&t), Err(BlockError::Root("state")));
    let mut t = block2.clone();
    t.header.parent = Hash::default();
    assert_eq!(b.apply_block(&t), Err(BlockError::Parent));
    assert_eq!(
        b.apply_block(&block1),
        Err(BlockError::Height {
            expected: 2,
            got: 1
        })
    );
    let mut t = block2.clone();
    t.header.timestamp_ms = 5;
    assert_eq!(b.apply_block(&t), Err(BlockError::Time));
    assert_eq!(b.state_root(), root_before);

    let ids = b.apply_block(&block2).unwrap();
    a.state.apply_block(&block2).unwrap();
    assert_eq!(a.state.state_root(), b.state_root());
    // Each settled receipt is provably under the block's receipts root.
    for (i, r) in receipts.iter().enumerate() {
        let p = ReceiptProof::new(&ids, i).unwrap();
        assert!(p.verify(&block2.header.receipts_root, &r.id()));
    }
}

#[test]
fn truncated_or_corrupted_blocks_do_not_decode_or_apply() {
    let mut c = Chain::new();
    let t = c.tx(
        5,
        Action::Transfer {
            to: key(9).public(),
            amount: 3,
        },
    );
    let block = c.state.propose(checked([t]), key(1).public(), 0).block;
    let bytes = block.encode();
    for cut in 0..bytes.len() {
        assert!(Block::decode(&bytes[..cut]).is_err());
    }
    // Bytes 40..80 are the timestamp and the proposer: the proposer's own choices, bound by
    // consensus (leader signature) and the monotonic-time rule, not by the state machine.
    for pos in (0..bytes.len()).filter(|p| !(40..80).contains(p)) {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        if let Ok(decoded) = Block::decode(&b) {
            assert!(
                c.state.clone().apply_block(&decoded).is_err(),
                "flip at {pos} accepted"
            );
        }
    }
}

#[test]
fn signed_mode_escrow_is_settled_only_by_the_named_node() {
    let mut c = Chain::new();
    c.price(6, 25);
    let req = Hash::of("req", b"signed");
    c.run(
        5,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode: Mode::Signed,
            node: Some(key(4).public()),
        },
    )
    .unwrap();
    assert_eq!(c.state.escrow(&req).unwrap().amount, 25);
    let signed = |node: u8| {
        let quorum = receipt(&key(node), req, MODEL, 0.5);
        ReceiptBody {
            mode: Mode::Signed,
            ..ReceiptBody::from(quorum)
        }
        .sign(&key(node))
    };
    // A quorum-mode receipt, another registered node than the one the client named, an
    // unregistered signer, or two receipts: refused. A signed request cannot be disagreed.
    let refused = [
        vec![receipt(&key(4), req, MODEL, 0.5)],
        vec![signed(1)],
        vec![signed(9)],
        vec![signed(4), signed(2)],
    ];
    assert!(c
        .run(
            6,
            Action::Disagree {
                request: req,
                inputs: TensorMap::new(),
                receipts: vec![signed(4), signed(1)],
            }
        )
        .is_err());
    for receipts in refused {
        assert!(c
            .run(
                6,
                Action::Settle {
                    request: req,
                    receipts,
                    proof: None,
                }
            )
            .is_err());
    }
    let before = c.state.balance(&key(4).public());
    c.run(
        6,
        Action::Settle {
            request: req,
            receipts: vec![signed(4)],
            proof: None,
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&key(4).public()), before + 25);
}

#[test]
fn a_client_grinding_request_nonces_cannot_choose_its_quorum() {
    // Four honest quorum nodes and three Sybils run by the client (security review finding 6).
    let sybils: Vec<NodeKey> = (20..23).map(key).collect();
    let node = |k: &NodeKey| GenesisNode {
        key: k.public(),
        stake: 10_000,
        endpoint: "http://127.0.0.1:1".into(),
        capabilities: vec!["quorum".into()],
    };
    let g = Genesis {
        chain_id: "test".into(),
        accounts: vec![(key(10).public(), 1_000_000), (key(6).public(), 1_000)],
        nodes: (1..=4)
            .map(key)
            .chain((20..23).map(key))
            .map(|k| node(&k))
            .collect(),
        params: Params {
            min_stake: 1_000,
            refund_after: 5,
            quorum_spares: 1,
            ..Params::default()
        },
    };
    let mut state = LedgerState::from_genesis(&g).unwrap();
    let block = |state: &mut LedgerState, txs: Vec<CheckedTx>| {
        let p = state.propose(txs, key(1).public(), 0);
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
        state.apply_block(&p.block).unwrap();
    };
    let name = Transaction::new(
        &key(6),
        "test",
        0,
        Action::RegisterName { name: "m".into() },
    );
    let price = Transaction::new(
        &key(6),
        "test",
        1,
        Action::RegisterModel {
            model: MODEL,
            name: "m".into(),
            version: "1.0".into(),
            price: 1,
        },
    );
    block(&mut state, checked([name, price]));
    let captured = |state: &LedgerState, seed: &Hash, request: &Hash| {
        let eligible = state.eligible_executors(seed, request, 3);
        eligible
            .iter()
            .filter(|k| sybils.iter().any(|s| s.public() == **k))
            .count()
            >= 3
    };
    // The client grinds request hashes until its Sybils hold three of the four places under
    // every seed it can know: the digest of the last block.
    let tip = state.last_digest();
    let ground: Vec<Hash> = (0u64..)
        .map(|nonce| Hash::of("req", &nonce.to_le_bytes()))
        .filter(|r| captured(&state, &tip, r))
        .take(20)
        .collect();
    let opens = ground
        .iter()
        .map(|r| {
            let tx = Transaction::new(
                &key(10),
                "test",
                0,
                Action::OpenRequest {
                    request: *r,
                    model: MODEL,
                    listing: "m@1.0".into(),
                    mode: Mode::Quorum { k: 3 },
                    node: None,
                },
            );
            CheckedTx::check(tx, "test").unwrap()
        })
        .collect();
    block(&mut state, opens);
    block(&mut state, vec![]);
    // The draw used the digest of the block that opened them: the grinding bought nothing
    // (by chance alone, 3 Sybils of 7 hold 3 of 4 places 4 times in 35).
    let still = ground
        .iter()
        .filter(|r| {
            let e = &state.escrow(r).unwrap().eligible;
            e.iter()
                .filter(|k| sybils.iter().any(|s| s.public() == **k))
                .count()
                >= 3
        })
        .count();
    assert!(
        still <= 6,
        "{still} of 20 ground requests kept a Sybil quorum"
    );
}

#[test]
fn names_belong_to_their_first_claimant_and_only_the_publisher_prices() {
    // Issue 13 findings 7 and 8: any key used to take over a name with a higher version, and
    // to list any model id first at any price, forever.
    let mut c = Chain::new();
    let supply = c.state.total_supply();
    let (owner, squatter) = (6, 5);
    let fee = c.state.params().name_fee;
    let before = c.state.balance(&key(owner).public());
    c.run(
        owner,
        Action::RegisterName {
            name: "smollm2".into(),
        },
    )
    .unwrap();
    assert_eq!(c.state.balance(&key(owner).public()), before - fee);
    assert_eq!(
        c.state.total_supply(),
        supply,
        "the fee goes to the validators"
    );
    let list = |name: &str, version: &str, model: ModelId, price| Action::RegisterModel {
        model,
        name: name.into(),
        version: version.into(),
        price,
    };
    let taken = |name: &str| {
        Err(TxError::NameTaken {
            name: name.into(),
            owner: key(owner).public(),
        })
    };
    // The squatter can neither claim the name, nor list a version under it or its canonical
    // form, nor list under a name nobody claimed.
    assert_eq!(
        c.run(
            squatter,
            Action::RegisterName {
                name: "smollm2".into()
            }
        ),
        taken("smollm2")
    );
    assert_eq!(
        c.run(squatter, list("smollm2", "999.0", MODEL, 1)),
        taken("smollm2")
    );
    assert_eq!(
        c.run(squatter, list("smollm2.int8", "1.0", MODEL, 1)),
        taken("smollm2.int8")
    );
    assert_eq!(
        c.run(squatter, list("free", "1.0", MODEL, 1)),
        Err(TxError::NameUnclaimed("free".into()))
    );
    c.run(owner, list("smollm2", "1.0", MODEL, 10)).unwrap();
    let newer = ModelId([8; 32]);
    c.run(owner, list("smollm2", "1.1", newer, 10)).unwrap();
    assert!(
        c.run(owner, list("smollm2", "1.1", MODEL, 10)).is_err(),
        "versions are final"
    );
    assert_eq!(c.state.model_named("smollm2", None), Some(newer));
    assert_eq!(c.state.model_named("smollm2", Some("1.0")), Some(MODEL));
    // Listing the owner's file under the squatter's own name, at a ruinous price, does not
    // touch the owner's listing; only the owner re-prices it.
    c.run(
        squatter,
        Action::RegisterName {
            name: "squat".into(),
        },
    )
    .unwrap();
    c.run(squatter, list("squat", "1.0", MODEL, u64::MAX))
        .unwrap();
    let set_price = |price| Action::SetPrice {
        name: "smollm2".into(),
        version: "1.0".into(),
        price,
    };
    assert_eq!(
        c.run(squatter, set_price(u64::MAX)),
        Err(TxError::NotPublisher("smollm2@1.0".into()))
    );
    c.run(owner, set_price(12)).unwrap();
    assert_eq!(
        c.state.fee("smollm2@1.0", &MODEL, Mode::Quorum { k: 3 }),
        Some(36)
    );
    assert_eq!(
        c.state.fee("smollm2@1.0", &newer, Mode::Signed),
        None,
        "listing names another model"
    );
    // A client pays the listing it names.
    let req = Hash::of("req", b"names");
    c.run(
        4,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "smollm2@1.0".into(),
            mode: Mode::Signed,
            node: Some(key(1).public()),
        },
    )
    .unwrap();
    assert_eq!(c.state.escrow(&req).unwrap().amount, 12);
}
