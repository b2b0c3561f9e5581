//! Attacks on the transaction pool (security review finding 3, issue 12 finding 7): parked
//! nonce-gap transactions, megabyte transactions, and badly signed floods against the lock.

use super::key;
use std::collections::HashSet;
use std::time::Duration;
use verity_core::NodeKey;
use verity_ledger::consensus::{CheckedTx, LedgerApp, Mempool, SubmitError};
use verity_ledger::mempool::{MAX_GAP_BLOCKS, MAX_MEMPOOL, MAX_MEMPOOL_BYTES, MAX_SENDER_BYTES};
use verity_ledger::state::GenesisNode;
use verity_ledger::{Action, Genesis, LedgerState, Params, Transaction, TxError};

/// 313 accounts holding 1 unit each (the cheapest senders there are), and an honest one.
fn spammers() -> Vec<NodeKey> {
    (0..313u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            NodeKey::from_seed(seed)
        })
        .collect()
}

fn genesis(funded: &[NodeKey]) -> Genesis {
    Genesis {
        chain_id: "test".into(),
        accounts: funded
            .iter()
            .map(|k| (k.public(), 1))
            .chain([(key(1).public(), 1_000_000)])
            .collect(),
        nodes: vec![GenesisNode {
            key: key(1).public(),
            stake: 10_000,
            endpoint: "http://127.0.0.1:1".into(),
            capabilities: vec![],
        }],
        params: Params::default(),
    }
}

fn transfer(from: &NodeKey, nonce: u64) -> CheckedTx {
    let tx = Transaction::new(
        from,
        "test",
        nonce,
        Action::Transfer {
            to: key(2).public(),
            amount: 1,
        },
    );
    CheckedTx::check(tx, "test").unwrap()
}

/// Applies an empty block on top of `state`, as every validator would.
fn empty_block(state: &mut LedgerState) {
    let block = state.propose(vec![], key(1).public(), 0).block;
    state.apply_block(&block).unwrap();
    assert_eq!(state.committed_root(), block.header.state_root);
}

#[test]
fn parked_gap_transactions_neither_jam_the_pool_nor_reach_proposals() {
    let spam = spammers();
    let mut state = LedgerState::from_genesis(&genesis(&spam)).unwrap();
    let mut pool = Mempool::default();
    // Each spammer parks 64 transfers behind a nonce it never sends.
    for k in &spam {
        for nonce in 1..=64 {
            match pool.insert(transfer(k, nonce), &state) {
                Ok(()) | Err(SubmitError::Full) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(pool.len(), MAX_MEMPOOL);
    // An honest transaction still gets in (a parked one makes room) ...
    pool.insert(transfer(&key(1), 0), &state).unwrap();
    // ... and is the only one a proposal is offered: no parked signature is checked again.
    let offered = pool.candidates(4 << 20, &state);
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].tx().sender, key(1).public());
    // Parked transactions expire after MAX_GAP_BLOCKS finalized blocks.
    let mut included = HashSet::new();
    included.insert(offered[0].tx().id());
    for _ in 0..=MAX_GAP_BLOCKS {
        empty_block(&mut state);
        pool.after_block(&included, &state);
    }
    assert_eq!(pool.len(), 0, "parked transactions outlived their expiry");
}

#[test]
fn the_pool_is_bounded_in_bytes_overall_and_per_sender() {
    let senders: Vec<NodeKey> = (0..80u8)
        .map(|i| NodeKey::from_seed([i ^ 0xa5; 32]))
        .collect();
    let state = LedgerState::from_genesis(&genesis(&senders)).unwrap();
    // Transactions of nearly 1 MiB each (the endpoint is only checked when applied).
    let big = |from: &NodeKey, nonce: u64| {
        let tx = Transaction::new(
            from,
            "test",
            nonce,
            Action::RegisterNode {
                stake: 1,
                endpoint: "x".repeat(1_000_000),
                capabilities: vec![],
            },
        );
        CheckedTx::check(tx, "test").unwrap()
    };
    let mut pool = Mempool::default();
    let one = &senders[0];
    let accepted = (0..64)
        .filter(|&n| pool.insert(big(one, n), &state).is_ok())
        .count();
    assert!(
        accepted * 1_000_000 <= MAX_SENDER_BYTES,
        "{accepted} accepted"
    );
    assert!(matches!(
        pool.insert(big(one, accepted as u64), &state),
        Err(SubmitError::SenderFull(_))
    ));
    for k in &senders[1..] {
        match pool.insert(big(k, 0), &state) {
            Ok(()) | Err(SubmitError::Full) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(pool.bytes() <= MAX_MEMPOOL_BYTES, "{} bytes", pool.bytes());
    assert!(pool.bytes() > MAX_MEMPOOL_BYTES - (1 << 20));
}

#[test]
fn a_transaction_taking_a_queued_nonce_is_refused() {
    let state = LedgerState::from_genesis(&genesis(&[])).unwrap();
    let mut pool = Mempool::default();
    pool.insert(transfer(&key(1), 0), &state).unwrap();
    let other = Transaction::new(
        &key(1),
        "test",
        0,
        Action::Transfer {
            to: key(3).public(),
            amount: 5,
        },
    );
    let other = CheckedTx::check(other, "test").unwrap();
    assert_eq!(pool.insert(other, &state), Err(SubmitError::NonceTaken(0)));
}

#[test]
fn badly_signed_transactions_are_refused_without_waiting_for_the_ledger_lock() {
    let app = LedgerApp::new(&genesis(&[]), key(1).public()).unwrap();
    let mut forged = transfer(&key(1), 0).into_tx();
    forged.signature.0[0] ^= 1;
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let holder = {
        let app = app.clone();
        std::thread::spawn(move || {
            app.read(|_| {
                hold.send(()).unwrap();
                wait.recv().ok();
            })
        })
    };
    held.recv().unwrap();
    // The lock is held: a submission that checked signatures under it would block here.
    let (done, result) = std::sync::mpsc::channel();
    let submitter = {
        let app = app.clone();
        std::thread::spawn(move || done.send(app.submit(forged)).unwrap())
    };
    let refused = result.recv_timeout(Duration::from_secs(60));
    release.send(()).unwrap();
    holder.join().unwrap();
    submitter.join().unwrap();
    assert_eq!(
        refused.expect("the submission waited for the ledger lock"),
        Err(SubmitError::Tx(TxError::Signature))
    );
}
