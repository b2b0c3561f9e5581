//! Four validators running Commonware simplex + marshal over the ledger, in Commonware's
//! deterministic runtime with a simulated network: liveness, agreement on the state root,
//! crash tolerance, and reproducibility from a seed.

use commonware_cryptography::{ed25519, Signer};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{deterministic, Clock, Quota, Runner, Supervisor};
use commonware_utils::ordered::Set;
use commonware_utils::{probability, NZUsize, NZU32};
use std::time::Duration;
use verity_core::{NodeKey, PublicKey};
use verity_ledger::consensus::LedgerApp;
use verity_ledger::proof::{
    encode_finalization, verify_inclusion, InclusionError, InclusionProof, ValidatorSet,
};
use verity_ledger::state::GenesisNode;
use verity_ledger::validator::{self, Channels, MarshalMailbox, CHANNELS};
use verity_ledger::{Action, Genesis, Params, ReceiptProof, Transaction};

const N: usize = 4;
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

fn validator_keys() -> Vec<ed25519::PrivateKey> {
    (0..N as u64).map(ed25519::PrivateKey::from_seed).collect()
}

/// Verity key with the same seed bytes as the consensus key (both Ed25519).
fn verity_public(k: &ed25519::PrivateKey) -> PublicKey {
    let bytes: [u8; 32] = k.public_key().as_ref().try_into().expect("32-byte key");
    PublicKey(bytes)
}

fn client(i: u8) -> NodeKey {
    NodeKey::from_seed([100 + i; 32])
}

/// The Verity node key holding the same Ed25519 secret as the consensus key.
fn verity_key(k: &ed25519::PrivateKey) -> NodeKey {
    use commonware_codec::Encode;
    let seed: [u8; 32] = k.encode()[..].try_into().expect("32-byte seed");
    let key = NodeKey::from_seed(seed);
    assert_eq!(key.public(), verity_public(k));
    key
}

fn validator_set(keys: &[ed25519::PrivateKey]) -> ValidatorSet {
    ValidatorSet {
        chain_id: "verity-sim".into(),
        validators: keys.iter().map(verity_public).collect(),
    }
}

fn genesis(keys: &[ed25519::PrivateKey]) -> Genesis {
    Genesis {
        chain_id: "verity-sim".into(),
        accounts: (0..3).map(|i| (client(i).public(), 1_000_000)).collect(),
        nodes: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisNode {
                key: verity_public(k),
                stake: 10_000,
                endpoint: format!("http://sim-{i}"),
                capabilities: vec!["quorum".into()],
            })
            .collect(),
        params: Params::default(),
    }
}

async fn start_validator(
    context: &deterministic::Context,
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    key: ed25519::PrivateKey,
    idx: usize,
    genesis: &Genesis,
) -> (LedgerApp, MarshalMailbox) {
    let pk = key.public_key();
    let control = oracle.control(pk.clone());
    let mut channels = Vec::new();
    for c in CHANNELS {
        channels.push(control.register(c, QUOTA).await.expect("channel"));
    }
    let channels =
        Channels::from(<[_; 5]>::try_from(channels).unwrap_or_else(|_| panic!("five channels")));
    let v = validator::start(
        context.child("validator").with_attribute("index", idx),
        key,
        genesis,
        &format!("v{idx}"),
        channels,
        oracle.manager(),
        control,
    )
    .await
    .expect("validator starts");
    (v.app, v.marshal)
}

async fn network(
    context: &deterministic::Context,
    participants: &Set<ed25519::PublicKey>,
) -> Oracle<ed25519::PublicKey, deterministic::Context> {
    let max = validator::max_message_size(N);
    let (net, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: max,
            max_peers_per_set: NZUsize!(N),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        participants.iter().cloned(),
    )
    .await;
    net.start();
    let link = Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        success_rate: probability!(1.0),
    };
    for a in participants.iter() {
        for b in participants.iter() {
            if a != b {
                oracle
                    .add_link(a.clone(), b.clone(), link.clone())
                    .await
                    .expect("link");
            }
        }
    }
    oracle
}

/// Runs 4 validators, submits transfers, and returns (per-validator finalized logs, auditor
/// fingerprint).
fn run(seed: u64, crash_one: bool) -> (Vec<Vec<(u64, verity_core::Hash)>>, String) {
    let (logs, state, balance) = run_full(seed, crash_one);
    assert_eq!(balance, 1_000_050, "the five transfers were finalized");
    (logs, state)
}

/// Starts the simulated network and the 4 validators; returns their keys, apps and mailboxes.
async fn start_chain(
    context: &deterministic::Context,
) -> (
    Vec<ed25519::PrivateKey>,
    Set<ed25519::PublicKey>,
    Oracle<ed25519::PublicKey, deterministic::Context>,
    Vec<(LedgerApp, MarshalMailbox)>,
) {
    let keys = validator_keys();
    let participants: Set<ed25519::PublicKey> =
        Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>()).expect("unique");
    let genesis = genesis(&keys);
    let oracle = network(context, &participants).await;
    let mut nodes = Vec::new();
    for (i, k) in keys.iter().cloned().enumerate() {
        nodes.push(start_validator(context, &oracle, k, i, &genesis).await);
    }
    (keys, participants, oracle, nodes)
}

fn runner(seed: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    )
}

fn run_full(seed: u64, crash_one: bool) -> (Vec<Vec<(u64, verity_core::Hash)>>, String, u64) {
    runner(seed).start(|context| async move {
        let (keys, participants, oracle, nodes) = start_chain(&context).await;
        let apps: Vec<LedgerApp> = nodes.into_iter().map(|(app, _)| app).collect();
        // Every validator's mempool gets the same transfers; whoever proposes includes them.
        for n in 0..5u64 {
            let tx = Transaction::new(
                &client(0),
                "verity-sim",
                n,
                Action::Transfer {
                    to: client(1).public(),
                    amount: 10,
                },
            );
            apps.iter()
                .for_each(|a| a.submit(tx.clone()).expect("queued"));
        }
        if crash_one {
            // Cut validator 3 off entirely: 3 of 4 remain, which is a quorum.
            let victim = keys[3].public_key();
            for other in participants.iter().filter(|p| **p != victim) {
                let _ = oracle.remove_link(victim.clone(), other.clone()).await;
                let _ = oracle.remove_link(other.clone(), victim.clone()).await;
            }
        }
        let live: Vec<&LedgerApp> = if crash_one {
            apps[..3].iter().collect()
        } else {
            apps.iter().collect()
        };
        while !live.iter().all(|a| a.finalized_height() >= 12) {
            context.sleep(Duration::from_millis(100)).await;
        }
        if crash_one {
            // Heal the partition: the isolated validator must catch up from its peers.
            let victim = keys[3].public_key();
            let link = Link {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(5),
                success_rate: probability!(1.0),
            };
            for other in participants.iter().filter(|p| **p != victim) {
                oracle
                    .add_link(victim.clone(), other.clone(), link.clone())
                    .await
                    .expect("link");
                oracle
                    .add_link(other.clone(), victim.clone(), link.clone())
                    .await
                    .expect("link");
            }
            let target = apps[0].finalized_height() + 3;
            while apps[3].finalized_height() < target {
                context.sleep(Duration::from_millis(100)).await;
            }
        }
        let logs = apps
            .iter()
            .map(|a| {
                a.finalized_log()
                    .values()
                    .map(|f| (f.height, f.state_root))
                    .collect()
            })
            .collect();
        let balance = apps[0].finalized_state().balance(&client(1).public());
        eprintln!(
            "seed {seed} crash={crash_one}: heights {:?}, virtual time {:?}",
            apps.iter()
                .map(|a| a.finalized_height())
                .collect::<Vec<_>>(),
            context.current()
        );
        (logs, context.auditor().state(), balance)
    })
}

#[test]
fn four_validators_agree_stay_live_with_one_cut_off_and_it_catches_up() {
    let (logs, _) = run(7, false);
    let common = logs.iter().map(Vec::len).min().unwrap_or(0);
    assert!(common >= 12, "all validators finalized at least 12 blocks");
    for l in &logs[1..] {
        assert_eq!(
            l[..common],
            logs[0][..common],
            "validators disagree on a finalized state root"
        );
    }
    // Validator 3 is cut off while the others finalize 12 blocks, then reconnected: it
    // backfills the missed blocks and reaches the same state roots.
    let (logs, _) = run(7, true);
    let common = logs.iter().map(Vec::len).min().unwrap_or(0);
    assert!(common >= 12, "the reconnected validator caught up");
    for l in &logs[1..] {
        assert_eq!(l[..common], logs[0][..common]);
    }
}

#[test]
fn same_seed_same_run() {
    let (a_logs, a_state) = run(11, false);
    let (b_logs, b_state) = run(11, false);
    assert_eq!(a_logs, b_logs);
    assert_eq!(a_state, b_state);
}

#[test]
fn settled_quorum_receipt_has_an_offline_inclusion_proof() {
    use commonware_consensus::types::Height;
    use verity_core::receipt::ReceiptBody;
    use verity_core::{EngineId, Hash, Mode, ModelId, Tensor, TensorMap};

    runner(3).start(|context| async move {
        let (keys, _participants, _oracle, nodes) = start_chain(&context).await;
        // A model, a quorum request (k = 3) and its settlement by three validators' receipts.
        let model = ModelId([9; 32]);
        let request = Hash::of("request", b"r1");
        let outputs: TensorMap = [(
            "y".to_string(),
            Tensor::from_f32(vec![1], &[0.25]).expect("tensor"),
        )]
        .into();
        let receipts: Vec<_> = keys[..3]
            .iter()
            .map(|k| {
                let engine = EngineId {
                    name: "verity-int8".into(),
                    version: "semantics-v1".into(),
                };
                let (inputs, mode) = (TensorMap::new(), Mode::Quorum { k: 3 });
                ReceiptBody {
                    chain_id: "verity-sim".into(),
                    ..ReceiptBody::new(request, model, &inputs, outputs.clone(), engine, None, mode)
                }
                .sign(&verity_key(k))
            })
            .collect();
        let txs = [
            Transaction::new(
                &client(2),
                "verity-sim",
                0,
                Action::RegisterName { name: "m".into() },
            ),
            Transaction::new(
                &client(2),
                "verity-sim",
                1,
                Action::RegisterModel {
                    model,
                    name: "m".into(),
                    version: "1.0".into(),
                    price: 40,
                },
            ),
            Transaction::new(
                &client(0),
                "verity-sim",
                0,
                Action::OpenRequest {
                    request,
                    model,
                    listing: "m@1.0".into(),
                    mode: Mode::Quorum { k: 3 },
                    node: None,
                },
            ),
        ];
        for tx in txs {
            nodes
                .iter()
                .for_each(|(a, _)| a.submit(tx.clone()).expect("queued"));
        }
        // Work (and so settlement) comes after the escrow is final, and its executors are
        // drawn by the block after the one that opened it.
        while nodes[0].0.read(|s| s.escrow(&request).is_none()) {
            context.sleep(Duration::from_millis(100)).await;
        }
        let settle = Transaction::new(
            &client(2),
            "verity-sim",
            0,
            Action::Settle {
                request,
                receipts: receipts.clone(),
                proof: None,
            },
        );
        nodes
            .iter()
            .for_each(|(a, _)| a.submit(settle.clone()).expect("queued"));
        let settled_at = loop {
            if let Some(f) = nodes[0]
                .0
                .finalized_log()
                .values()
                .find(|f| !f.receipts.is_empty())
            {
                break f.clone();
            }
            context.sleep(Duration::from_millis(100)).await;
        };
        let mailbox = &nodes[1].1;
        let block = mailbox
            .get_block(Height::new(settled_at.height))
            .await
            .expect("block");
        let finalization = mailbox
            .get_finalization(Height::new(settled_at.height))
            .await
            .expect("finalization");
        let set = validator_set(&keys);
        let proof = InclusionProof {
            receipt: receipts[1].clone(),
            path: ReceiptProof::new(&settled_at.receipts, 1).expect("leaf"),
            header: block.inner().block().header.clone(),
            finalization: encode_finalization(&finalization),
        };
        verify_inclusion(&proof, &set).expect("valid proof");
        // The JSON forms round-trip (they are what `verity verify-inclusion` reads).
        let json = serde_json::to_string(&proof).expect("json");
        verify_inclusion(&serde_json::from_str(&json).expect("json"), &set)
            .expect("valid after JSON");
        if let Some(dir) = std::env::var_os("VERITY_WRITE_FIXTURES") {
            let dir = std::path::PathBuf::from(dir);
            std::fs::write(
                dir.join("inclusion_proof.json"),
                serde_json::to_vec_pretty(&proof).expect("json"),
            )
            .expect("write");
            std::fs::write(
                dir.join("validators.json"),
                serde_json::to_vec_pretty(&set).expect("json"),
            )
            .expect("write");
            // The whole quorum with every receipt's inclusion proof (`verity infer --wait`
            // saves this): the signers are the executors the ledger accepted.
            let inclusion: Vec<InclusionProof> = (0..receipts.len())
                .map(|i| InclusionProof {
                    receipt: receipts[i].clone(),
                    path: ReceiptProof::new(&settled_at.receipts, i).expect("leaf"),
                    ..proof.clone()
                })
                .collect();
            let settled = serde_json::json!({
                "quorum": {"request": request, "receipts": receipts},
                "inclusion": inclusion,
            });
            std::fs::write(
                dir.join("settled_quorum.json"),
                serde_json::to_vec_pretty(&settled).expect("json"),
            )
            .expect("write");
        }
        // Executors were paid through the ledger (validators also share the name's fee).
        let state = nodes[0].0.finalized_state();
        let fee_share = state.params().name_fee / keys.len() as u64;
        assert_eq!(state.balance(&verity_public(&keys[1])), 40 + fee_share);

        // Tampering with any part is rejected.
        let mut t = proof.clone();
        t.path.path[0].0[3] ^= 1;
        assert_eq!(verify_inclusion(&t, &set), Err(InclusionError::Path));
        let mut t = proof.clone();
        t.path.index = 0;
        assert_eq!(verify_inclusion(&t, &set), Err(InclusionError::Path));
        let mut t = proof.clone();
        t.receipt = receipts[0].clone();
        assert_eq!(verify_inclusion(&t, &set), Err(InclusionError::Path));
        let mut t = proof.clone();
        t.receipt.timestamp_ms += 1;
        assert!(matches!(
            verify_inclusion(&t, &set),
            Err(InclusionError::Receipt(_))
        ));
        let mut t = proof.clone();
        t.header.receipts_root = verity_ledger::receipts_root(&[receipts[1].id()]);
        t.path = ReceiptProof::new(&[receipts[1].id()], 0).expect("leaf");
        assert_eq!(
            verify_inclusion(&t, &set),
            Err(InclusionError::WrongBlock),
            "a forged root is not the finalized header"
        );
        let mut t = proof.clone();
        let mut bytes = hex::decode(&t.finalization).expect("hex");
        let last = bytes.len() - 5;
        bytes[last] ^= 0x01; // inside the last signature
        t.finalization = hex::encode(bytes);
        assert_eq!(verify_inclusion(&t, &set), Err(InclusionError::Signatures));
        let mut other = set.clone();
        other.validators[2] = verity_public(&ed25519::PrivateKey::from_seed(99));
        assert_eq!(
            verify_inclusion(&proof, &other),
            Err(InclusionError::Signatures)
        );
        let mut other = set.clone();
        other.chain_id = "another-chain".into();
        assert_eq!(
            verify_inclusion(&proof, &other),
            Err(InclusionError::Signatures)
        );
        let mut t = proof.clone();
        t.finalization.truncate(20);
        assert!(matches!(
            verify_inclusion(&t, &set),
            Err(InclusionError::Malformed(_))
        ));
    });
}

#[test]
fn validators_restart_from_storage_and_continue() {
    // Run to height >= 8, stop everything, restart all four from their persisted storage.
    let (before, checkpoint) = runner(5).start_and_recover(|context| async move {
        let (_, _, _, nodes) = start_chain(&context).await;
        for n in 0..3u64 {
            let tx = Transaction::new(
                &client(0),
                "verity-sim",
                n,
                Action::Transfer {
                    to: client(1).public(),
                    amount: 7,
                },
            );
            nodes
                .iter()
                .for_each(|(a, _)| a.submit(tx.clone()).expect("queued"));
        }
        while !nodes.iter().all(|(a, _)| a.finalized_height() >= 8) {
            context.sleep(Duration::from_millis(100)).await;
        }
        nodes[0].0.finalized_log()
    });
    deterministic::Runner::from(checkpoint).start(|context| async move {
        let (_, _, _, nodes) = start_chain(&context).await;
        let restored = nodes[0].0.finalized_height();
        assert!(
            restored >= 8,
            "state restored from disk up to the persisted height, got {restored}"
        );
        let target = before.keys().max().copied().unwrap_or(0) + 4;
        while !nodes.iter().all(|(a, _)| a.finalized_height() >= target) {
            context.sleep(Duration::from_millis(100)).await;
        }
        for (a, _) in &nodes {
            let log = a.finalized_log();
            for (h, f) in &before {
                assert_eq!(log.get(h), Some(f), "height {h} changed across the restart");
            }
            assert_eq!(
                log.get(&target).map(|f| f.state_root),
                nodes[0]
                    .0
                    .finalized_log()
                    .get(&target)
                    .map(|f| f.state_root)
            );
        }
        assert_eq!(
            nodes[0].0.finalized_state().balance(&client(1).public()),
            1_000_021
        );
    });
}
