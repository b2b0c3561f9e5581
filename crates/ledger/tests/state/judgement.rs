//! Verdicts and slashing (issue 13 finding 4, security review findings 11 and 12): a quorum
//! that disagrees, or a zk settlement, is judged by the validators' verdicts; the side they
//! contradict loses stake. Each test plays a rational cheater and checks that it loses.

use super::{genesis, key, quorum_receipt, Chain, MODEL};
use verity_core::receipt::ReceiptBody;
use verity_core::{Hash, Mode, Receipt, TensorMap};
use verity_ledger::state::{Closed, Question};
use verity_ledger::{Action, Genesis, Params, TxError};

const PRICE: u64 = 10;
const CLIENT: u8 = 5;
const STAKE: u64 = 10_000;

/// A chain where `MODEL` costs `PRICE` and the client has opened `req` in `mode` (naming
/// `node` in signed and zk mode), with its executors drawn.
fn escrow(g: Genesis, req: Hash, mode: Mode, node: Option<u8>) -> Chain {
    let mut c = Chain::from(g);
    c.price(6, PRICE);
    c.run(
        CLIENT,
        Action::OpenRequest {
            request: req,
            model: MODEL,
            listing: "m@1.0".into(),
            mode,
            node: node.map(|n| key(n).public()),
        },
    )
    .unwrap();
    c.empty_block();
    c
}

fn quorum_escrow(g: Genesis, req: Hash, k: u32) -> Chain {
    escrow(g, req, Mode::Quorum { k }, None)
}

fn stake(c: &Chain, node: u8) -> Option<u64> {
    c.state.node(&key(node).public()).map(|n| n.stake)
}

fn balance(c: &Chain, who: u8) -> u64 {
    c.state.balance(&key(who).public())
}

fn verdict(c: &mut Chain, validator: u8, req: Hash, output: Hash) -> Result<Vec<Hash>, TxError> {
    c.run(
        validator,
        Action::Verdict {
            request: req,
            output,
        },
    )
}

#[test]
fn a_lying_executor_is_slashed_the_client_refunded_and_the_honest_paid() {
    let req = Hash::of("req", b"lie");
    let mut c = quorum_escrow(genesis(), req, 3);
    let supply = c.state.total_supply();
    let client_before = balance(&c, CLIENT) + 3 * PRICE;
    let receipts = vec![
        quorum_receipt(&key(1), req, MODEL, 0.5, 3),
        quorum_receipt(&key(2), req, MODEL, 0.5, 3),
        quorum_receipt(&key(3), req, MODEL, 0.9, 3),
    ];
    let (honest, lie) = (receipts[0].output_hash, receipts[2].output_hash);
    let before: Vec<u64> = (1..=4).map(|n| balance(&c, n)).collect();
    c.run(
        1,
        Action::Disagree {
            request: req,
            inputs: TensorMap::new(),
            receipts: receipts.clone(),
        },
    )
    .unwrap();
    // While judged, the escrow stays locked: no settlement, no second dispute, no refund.
    let settle = Action::Settle {
        request: req,
        receipts: receipts[..2].to_vec(),
        proof: None,
    };
    assert_eq!(c.run(6, settle), Err(TxError::Disputed(req)));
    assert!(c.state.disputes().contains_key(&req));
    // Only validators judge, once each.
    assert!(verdict(&mut c, CLIENT, req, honest).is_err());
    verdict(&mut c, 3, req, lie).unwrap();
    assert!(verdict(&mut c, 3, req, honest).is_err());
    verdict(&mut c, 1, req, honest).unwrap();
    verdict(&mut c, 2, req, honest).unwrap();
    assert!(
        c.state.disputes().contains_key(&req),
        "2 of 4 cannot decide"
    );
    verdict(&mut c, 4, req, honest).unwrap();

    assert_eq!(
        c.state.closed(&req),
        Some(Closed::Judged {
            height: c.state.height()
        })
    );
    assert!(c.state.escrow(&req).is_none());
    assert_eq!(
        balance(&c, CLIENT),
        client_before,
        "the client is refunded in full"
    );
    // The liar lost its stake twice: as an executor and as a validator whose verdict the
    // deciding 2f+1 contradict. The slashed 2,000 pay the honest executors their share and the
    // agreeing validators for re-executing.
    let slash = Params::default().slash;
    assert_eq!(stake(&c, 3), Some(STAKE - 2 * slash));
    let pool = 2 * slash - 2 * PRICE;
    assert_eq!(balance(&c, 1), before[0] + PRICE + pool / 3);
    assert_eq!(balance(&c, 2), before[1] + PRICE + pool / 3);
    assert_eq!(balance(&c, 3), before[2], "lying earns nothing");
    assert_eq!(balance(&c, 4), before[3] + pool / 3);
    assert_eq!(
        c.state.total_supply(),
        supply,
        "slashed stake is moved, not minted or lost"
    );
    let j = &c.state.judgements()[0];
    assert_eq!((j.request, j.verdict), (req, Some(honest)));
    assert_eq!(
        j.slashed,
        vec![(key(3).public(), slash), (key(3).public(), slash)]
    );
    // A verdict after the decision has nothing left to judge.
    assert_eq!(
        verdict(&mut c, 1, req, honest),
        Err(TxError::NotDisputed(req))
    );
}

#[test]
fn a_front_running_disagreement_costs_the_liar_and_a_liar_at_the_minimum_stake_is_removed() {
    // Security review finding 11: an eligible executor that proposes puts its own wrong
    // receipt and a copied honest one ahead of the honest Settle. It used to void the
    // quorum at no cost; now it pays with all of its stake and is no longer drawn.
    let mut g = genesis();
    g.params.slash = STAKE;
    let req = Hash::of("req", b"front-run");
    let mut c = quorum_escrow(g, req, 2);
    let eligible = c.state.escrow(&req).unwrap().eligible.clone();
    let index = |k: &verity_core::PublicKey| (1..=4).find(|i| key(*i).public() == *k).unwrap();
    let (honest, liar) = (index(&eligible[0]), index(&eligible[1]));
    let honest_receipt = quorum_receipt(&key(honest), req, MODEL, 0.5, 2);
    let wrong = quorum_receipt(&key(liar), req, MODEL, 0.7, 2);
    c.run(
        liar,
        Action::Disagree {
            request: req,
            inputs: TensorMap::new(),
            receipts: vec![honest_receipt.clone(), wrong],
        },
    )
    .unwrap();
    let liar_balance = balance(&c, liar);
    let validators: Vec<u8> = (1..=4).filter(|v| *v != liar).collect();
    for v in validators {
        verdict(&mut c, v, req, honest_receipt.output_hash).unwrap();
    }
    assert_eq!(
        stake(&c, liar),
        None,
        "slashed below the minimum: deregistered"
    );
    assert_eq!(balance(&c, liar), liar_balance);
    assert_eq!(c.state.quorum_nodes().count(), 3);
}

#[test]
fn only_an_eligible_executor_may_file_a_disagreement_over_the_filed_inputs() {
    let req = Hash::of("req", b"file");
    let mut c = quorum_escrow(genesis(), req, 2);
    let eligible = c.state.escrow(&req).unwrap().eligible.clone();
    let outsider = (1..=4)
        .find(|i| !eligible.contains(&key(*i).public()))
        .unwrap();
    let signer = |k: &verity_core::PublicKey| (1..=4).find(|i| key(*i).public() == *k).unwrap();
    let receipts = vec![
        quorum_receipt(&key(signer(&eligible[0])), req, MODEL, 0.5, 2),
        quorum_receipt(&key(signer(&eligible[1])), req, MODEL, 0.9, 2),
    ];
    let disagree = |inputs: TensorMap| Action::Disagree {
        request: req,
        inputs,
        receipts: receipts.clone(),
    };
    let only_executors =
        TxError::Invalid("only an eligible executor of the request may file a disagreement".into());
    // The client, a validator that was not drawn, and a stranger are refused.
    assert_eq!(
        c.run(CLIENT, disagree(TensorMap::new())),
        Err(only_executors.clone())
    );
    assert_eq!(
        c.run(outsider, disagree(TensorMap::new())),
        Err(only_executors.clone())
    );
    assert_eq!(c.run(9, disagree(TensorMap::new())), Err(only_executors));
    // Inputs the receipts do not answer cannot be filed (the validators would judge them).
    let other = TensorMap::from([(
        "x".to_string(),
        verity_core::Tensor::from_f32(vec![1], &[1.0]).unwrap(),
    )]);
    assert!(matches!(
        c.run(signer(&eligible[0]), disagree(other)),
        Err(TxError::Receipt { index: 0, .. })
    ));
    c.run(signer(&eligible[0]), disagree(TensorMap::new()))
        .unwrap();
    assert!(matches!(
        &c.state.disputes()[&req].question,
        Question::Quorum { inputs } if inputs.is_empty()
    ));
}

/// A chain where the client has opened a zk request named to node 4.
fn zk_escrow(req: Hash) -> Chain {
    escrow(genesis(), req, Mode::Zk, Some(4))
}

fn zk_receipt(req: Hash, mode: Mode) -> Receipt {
    ReceiptBody {
        mode,
        ..ReceiptBody::from(quorum_receipt(&key(4), req, MODEL, 0.5, 3))
    }
    .sign(&key(4))
}

#[test]
fn a_zk_receipt_is_paid_only_after_the_validators_verify_its_proof() {
    // Security review finding 12: a zk escrow used to settle on a signature alone.
    let req = Hash::of("req", b"zk");
    let mut c = zk_escrow(req);
    let receipt = zk_receipt(req, Mode::Zk);
    let settle = |receipt: &Receipt, proof: Option<Hash>| Action::Settle {
        request: req,
        receipts: vec![receipt.clone()],
        proof,
    };
    let proof = Hash::of("proof", b"p");
    // No proof hash, a signed-mode receipt, or a sender other than the prover: refused.
    assert!(c.run(4, settle(&receipt, None)).is_err());
    assert!(matches!(
        c.run(4, settle(&zk_receipt(req, Mode::Signed), Some(proof))),
        Err(TxError::Receipt { .. })
    ));
    assert!(c.run(1, settle(&receipt, Some(proof))).is_err());
    let executor_before = balance(&c, 4);
    assert_eq!(
        c.run(4, settle(&receipt, Some(proof))),
        Ok(vec![]),
        "nothing settled yet"
    );
    assert_eq!(
        balance(&c, 4),
        executor_before,
        "not paid before the verdicts"
    );
    assert!(matches!(
        c.state.disputes()[&req].question,
        Question::Proof { proof: p } if p == proof
    ));
    // Validator 1 says the proof fails, three say it holds: the receipt settles in the block
    // of the deciding verdict (so it gets an inclusion proof), and validator 1 is slashed.
    verdict(&mut c, 1, req, Hash::default()).unwrap();
    verdict(&mut c, 2, req, receipt.output_hash).unwrap();
    verdict(&mut c, 3, req, receipt.output_hash).unwrap();
    let settled = verdict(&mut c, 4, req, receipt.output_hash).unwrap();
    assert_eq!(settled, vec![receipt.id()]);
    assert_eq!(
        c.state.closed(&req),
        Some(Closed::Settled {
            height: c.state.height()
        })
    );
    assert_eq!(stake(&c, 1), Some(STAKE - Params::default().slash));
    assert!(balance(&c, 4) >= executor_before + PRICE);
}

#[test]
fn a_zk_receipt_whose_proof_fails_costs_its_executor_and_refunds_the_client() {
    let req = Hash::of("req", b"zk-lie");
    let mut c = zk_escrow(req);
    let supply = c.state.total_supply();
    let client_before = balance(&c, CLIENT) + PRICE;
    let receipt = zk_receipt(req, Mode::Zk);
    c.run(
        4,
        Action::Settle {
            request: req,
            receipts: vec![receipt],
            proof: Some(Hash::of("proof", b"bogus")),
        },
    )
    .unwrap();
    let executor_before = balance(&c, 4);
    for v in 1..=3 {
        verdict(&mut c, v, req, Hash::default()).unwrap();
    }
    assert_eq!(
        c.state.closed(&req),
        Some(Closed::Judged {
            height: c.state.height()
        })
    );
    // The slash pays the three agreeing validators; what does not divide goes to the client.
    let slash = Params::default().slash;
    assert_eq!(balance(&c, CLIENT), client_before + slash % 3);
    assert_eq!(stake(&c, 4), Some(STAKE - slash));
    assert_eq!(
        balance(&c, 4),
        executor_before,
        "an unproven answer earns nothing"
    );
    assert_eq!(c.state.total_supply(), supply);
}

#[test]
fn a_dispute_the_validators_do_not_decide_expires_with_a_refund_and_no_slashing() {
    let req = Hash::of("req", b"split");
    let mut c = quorum_escrow(genesis(), req, 3);
    let client_before = balance(&c, CLIENT) + 3 * PRICE;
    let receipts = vec![
        quorum_receipt(&key(1), req, MODEL, 0.5, 3),
        quorum_receipt(&key(2), req, MODEL, 0.5, 3),
        quorum_receipt(&key(3), req, MODEL, 0.9, 3),
    ];
    let (a, b) = (receipts[0].output_hash, receipts[2].output_hash);
    c.run(
        2,
        Action::Disagree {
            request: req,
            inputs: TensorMap::new(),
            receipts,
        },
    )
    .unwrap();
    // Two against two never reaches 3 of 4.
    verdict(&mut c, 1, req, a).unwrap();
    verdict(&mut c, 2, req, a).unwrap();
    verdict(&mut c, 3, req, b).unwrap();
    verdict(&mut c, 4, req, b).unwrap();
    assert!(c.state.disputes().contains_key(&req));
    // The client cannot take the escrow back while the validators judge.
    assert_eq!(
        c.run(CLIENT, Action::Refund { request: req }),
        Err(TxError::Disputed(req))
    );
    // A block past the window closes it.
    let window = Params::default().verdict_window_ms;
    let block = c.state.propose(vec![], key(1).public(), window + 1).block;
    c.state.apply_block(&block).unwrap();
    assert_eq!(
        c.state.closed(&req),
        Some(Closed::Judged {
            height: c.state.height()
        })
    );
    assert_eq!(balance(&c, CLIENT), client_before);
    assert!((1..=4).all(|n| stake(&c, n) == Some(STAKE)));
    assert_eq!(c.state.judgements()[0].verdict, None);
}

#[test]
fn a_receipt_signed_for_another_network_settles_nothing() {
    // Issue 13 finding 9: receipts name their chain, so one signed on a devnet (or any other
    // network) is no evidence on this one.
    let req = Hash::of("req", b"other chain");
    let mut c = quorum_escrow(genesis(), req, 1);
    let executor = c.state.escrow(&req).unwrap().eligible[0];
    let signer = (1..=4).find(|i| key(*i).public() == executor).unwrap();
    let ours = quorum_receipt(&key(signer), req, MODEL, 0.5, 1);
    let theirs = ReceiptBody {
        chain_id: "another-devnet".into(),
        ..ReceiptBody::from(ours.clone())
    }
    .sign(&key(signer));
    let settle = |r: &Receipt| Action::Settle {
        request: req,
        receipts: vec![r.clone()],
        proof: None,
    };
    assert!(matches!(
        c.run(6, settle(&theirs)),
        Err(TxError::Receipt { reason, .. }) if reason.contains("another-devnet")
    ));
    assert_eq!(c.run(6, settle(&ours)), Ok(vec![ours.id()]));
}
