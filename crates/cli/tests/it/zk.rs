//! zk mode end to end: `verity prove` / `verify-proof` offline, and `infer --mode zk` on a real
//! node process whose proof `verity verify` checks; tampered files are rejected.

use std::path::{Path, PathBuf};

use crate::common::{fails, fixture, ok, spawn_node, standalone_config, verity};

fn quantize(dir: &Path, onnx: &str, calib: &str) -> PathBuf {
    let out = dir.join(format!("{onnx}.q8"));
    ok(verity()
        .args(["model", "quantize"])
        .arg(fixture(onnx))
        .arg("--calibration")
        .arg(fixture(calib))
        .arg("--out")
        .arg(&out));
    out
}

#[test]
fn prove_and_verify_proof_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cnn = quantize(d, "digits_cnn.onnx", "digits_calib_cnn.json");
    let proof = d.join("proof.json");
    let out = ok(verity()
        .arg("prove")
        .arg(&cnn)
        .arg("--input")
        .arg(fixture("digit_input_cnn.json"))
        .arg("--out")
        .arg(&proof));
    assert!(out.contains("argmax=2") && out.contains("proof "), "{out}");
    let out = ok(verity()
        .arg("verify-proof")
        .arg(&proof)
        .arg("--model")
        .arg(&cnn));
    assert!(out.contains("proof verified"), "{out}");

    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let tampered = d.join("tampered.json");
    let check = |edit: &dyn Fn(&mut serde_json::Value), model: &Path, expect: &str| {
        let mut v = original.clone();
        edit(&mut v);
        std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
        let out = fails(
            verity()
                .arg("verify-proof")
                .arg(&tampered)
                .arg("--model")
                .arg(model),
        );
        assert!(out.contains(expect), "expected `{expect}` in: {out}");
    };
    // Another output that is a valid int8 multiple of the scale: the proof does not cover it.
    let logits = original["outputs"]["logits"]["data"].as_array().unwrap();
    let (a, b) = (logits[0].clone(), logits[1].clone());
    check(
        &|v| {
            v["outputs"]["logits"]["data"][0] = b.clone();
            v["outputs"]["logits"]["data"][1] = a.clone();
        },
        &cnn,
        "does not verify",
    );
    check(
        &|v| v["inputs"]["input"]["data"][20] = serde_json::json!(0.75),
        &cnn,
        "does not verify",
    );
    check(
        &|v| {
            let p = v["proof"].as_str().unwrap();
            let mid = p.len() / 2;
            let flipped = if &p[mid..mid + 1] == "A" { "B" } else { "A" };
            v["proof"] = serde_json::json!(format!("{}{flipped}{}", &p[..mid], &p[mid + 1..]));
        },
        &cnn,
        "proof",
    );
    let mlp = quantize(d, "digits_mlp.onnx", "digits_calib_mlp.json");
    check(&|_| {}, &mlp, "hashes to");

    // An operator outside the circuit is refused by name.
    let ops = quantize(d, "ops_mix.onnx", "ops_calib.json");
    let out = fails(
        verity()
            .arg("prove")
            .arg(&ops)
            .arg("--input")
            .arg(fixture("ops_input.json"))
            .arg("--out")
            .arg(d.join("ops.json")),
    );
    assert!(out.contains("Softmax"), "{out}");
}

#[test]
fn infer_in_zk_mode_returns_a_proof_verify_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let node = spawn_node(&standalone_config(d));
    let key = d.join("client.key");
    let cli = || {
        let mut c = verity();
        c.args(["--node", &node.url, "--key"]).arg(&key);
        c
    };
    ok(cli()
        .args(["model", "publish"])
        .arg(fixture("digits_mlp.onnx"))
        .args(["--name", "mlp", "--version", "1.0", "--calibration"])
        .arg(fixture("digits_calib_mlp.json")));
    let receipt = d.join("receipt.json");
    let input = fixture("digit_input_mlp.json");
    let out = ok(cli()
        .args(["infer", "mlp.int8@1.0", "--mode", "zk", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&receipt));
    assert!(out.contains("zk proof"), "{out}");
    // The model is fetched from the node by id and re-hashed; the proof is checked offline.
    let out = ok(cli().arg("verify").arg(&receipt).arg("--input").arg(&input));
    assert!(
        out.contains("zk proof") && out.contains("receipt verified"),
        "{out}"
    );
    let out = fails(cli().arg("verify").arg(&receipt));
    assert!(out.contains("--input"), "{out}");

    // A receipt whose outputs were changed and re-signed by a lying node would still need a
    // proof; here the proof of another run is attached: rejected.
    let other = d.join("other.json");
    let other_input = d.join("other_input.json");
    std::fs::write(
        &other_input,
        std::fs::read_to_string(&input)
            .unwrap()
            .replacen("0.0", "0.9375", 3),
    )
    .unwrap();
    ok(cli()
        .args(["infer", "mlp.int8@1.0", "--mode", "zk", "--input"])
        .arg(&other_input)
        .arg("--out")
        .arg(&other));
    let mut swapped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    swapped["zk_proof"] = theirs["zk_proof"].clone();
    std::fs::write(&other, serde_json::to_vec(&swapped).unwrap()).unwrap();
    let out = fails(cli().arg("verify").arg(&other).arg("--input").arg(&input));
    assert!(out.contains("does not verify"), "{out}");

    // A model with an operator outside the circuit is refused before it runs.
    ok(cli()
        .args(["model", "publish"])
        .arg(fixture("ops_mix.onnx"))
        .args(["--name", "ops", "--version", "1.0", "--calibration"])
        .arg(fixture("ops_calib.json")));
    let out = fails(
        cli()
            .args(["infer", "ops.int8@1.0", "--mode", "zk", "--input"])
            .arg(fixture("ops_input.json")),
    );
    assert!(
        out.contains("Softmax") && out.contains("not_provable"),
        "{out}"
    );
}
