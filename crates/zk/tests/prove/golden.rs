//! A committed proof of the digits MLP that must keep verifying.
//!
//! Clients keep proofs and check them later, so a change that breaks old proofs (the proof
//! system, its parameters, the circuit's layout or the statement's encoding) must be deliberate:
//! bump the version of what changed (e.g. the `verity/zk-statement/v1` domain) and regenerate
//! the vectors in the same commit with
//! `VERITY_REGEN_GOLDEN=1 cargo test -p verity-zk --test prove golden`.

use std::path::Path;

use serde_json::{json, Value};
use verity_core::hash::domain;
use verity_core::TensorMap;
use verity_engine::canonical::CanonicalModel;
use verity_engine::Interpreter;
use verity_zk::{Statement, ZkModel};

use super::{fixture, mlp};

/// The statement, commitment and proof digest the committed proof was made for.
const VECTORS: &str = "golden/zk_digits_mlp.json";
/// The proof itself (postcard-encoded `BatchProof`, as `ZkModel::prove` returns it).
const PROOF: &str = "golden/zk_digits_mlp.proof";
/// The fixed input the proof is about.
const INPUT: &str = "digit_input_mlp.json";

fn regenerating() -> bool {
    std::env::var("VERITY_REGEN_GOLDEN").as_deref() == Ok("1")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with VERITY_REGEN_GOLDEN=1)",
            path.display()
        )
    })
}

/// The statement a verifier derives today: the fixture input, and the canonical engine's
/// outputs for it mapped back to int8.
fn derived_statement(model: &[u8], zk: &ZkModel, input: &TensorMap) -> Statement {
    let engine = Interpreter::new(CanonicalModel::decode(model).unwrap());
    let outputs = engine.run(input).unwrap().outputs;
    zk.statement(input, &outputs).unwrap()
}

fn vectors(zk: &ZkModel, statement: &Statement, proof: &[u8]) -> Value {
    json!({
        "about": "A proof of the digits MLP (fixtures/digits_mlp.onnx quantized with \
                  fixtures/digits_calib_mlp.json) on fixtures/digit_input_mlp.json. It must keep \
                  verifying; regenerate only together with a version bump.",
        "model_id": zk.model_id().hex(),
        "commitment": hex(&zk.commitment()),
        "statement": {
            "domain": domain::ZK_STATEMENT,
            "input": statement.input,
            "output": statement.output,
            "digest": statement.digest().to_hex(),
        },
        "proof": {
            "bytes": proof.len(),
            "blake3": blake3::hash(proof).to_hex().to_string(),
        },
    })
}

#[test]
fn the_committed_proof_still_verifies() {
    let (model, zk) = mlp();
    let input: TensorMap = serde_json::from_slice(&read(&fixture(INPUT))).unwrap();
    let statement = derived_statement(model, zk, &input);

    if regenerating() {
        // Proving is not deterministic (grinding runs in parallel): keep a committed proof
        // that still verifies, so regenerating changes nothing unless something changed.
        let kept = std::fs::read(fixture(PROOF))
            .ok()
            .filter(|proof| zk.verify(&statement, proof).is_ok());
        let proof = kept.unwrap_or_else(|| {
            let (_, proven, proof) = zk.prove(&input).unwrap();
            assert_eq!(proven, statement);
            proof
        });
        let text = serde_json::to_string_pretty(&vectors(zk, &statement, &proof)).unwrap();
        std::fs::write(fixture(PROOF), &proof).unwrap();
        std::fs::write(fixture(VECTORS), text + "\n").unwrap();
    }
    let proof = read(&fixture(PROOF));
    let pinned: Value = serde_json::from_slice(&read(&fixture(VECTORS))).unwrap();

    // The statement and the model commitment are derived now exactly as they were then.
    let derived = vectors(zk, &statement, &proof);
    for field in ["model_id", "commitment", "statement", "proof"] {
        assert_eq!(
            derived[field], pinned[field],
            "{field} differs from {VECTORS}: if an encoding changed on purpose, bump its \
             version and regenerate with VERITY_REGEN_GOLDEN=1"
        );
    }

    zk.verify(&statement, &proof)
        .expect("the committed proof no longer verifies");

    let last = proof.len() - 1;
    for at in [0, 1, last / 3, last / 2, 2 * last / 3, last - 1, last] {
        let mut flipped = proof.clone();
        flipped[at] ^= 0x01;
        assert!(
            zk.verify(&statement, &flipped).is_err(),
            "byte {at} of {last} flipped"
        );
    }
}
