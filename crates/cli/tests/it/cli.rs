//! The `verity` binary end to end: offline inspection, a real node process that is published
//! to, queried, killed with SIGKILL and restarted, and receipt verification with tampering.

use crate::common::{fails, fixture, ok, spawn_node, standalone_config, verity, NodeProcess};

#[test]
fn inspect_works_offline_and_fails_on_bad_files() {
    let out = ok(verity()
        .args(["model", "inspect"])
        .arg(fixture("digits_cnn.onnx")));
    assert!(
        out.contains("format     onnx")
            && out.contains("canonical  yes")
            && out.contains("BatchNormalization"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"hello").unwrap();
    let out = fails(verity().args(["model", "inspect"]).arg(&junk));
    assert!(out.contains("not a valid"), "{out}");
    let bytes = std::fs::read(fixture("digits_mlp.onnx")).unwrap();
    std::fs::write(&junk, &bytes[..bytes.len() - 300]).unwrap();
    fails(verity().args(["model", "inspect"]).arg(&junk));
    fails(verity().args(["model", "inspect", "/nonexistent/file.onnx"]));
}

#[test]
fn node_process_publish_infer_verify_kill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = standalone_config(d);
    let key = d.join("client.key");
    let mut node = spawn_node(&config);
    let cli = |node: &NodeProcess| {
        let mut c = verity();
        c.args(["--node", &node.url, "--key"]).arg(&key);
        c
    };

    let out = ok(cli(&node)
        .args(["model", "publish"])
        .arg(fixture("digits_cnn.onnx"))
        .args(["--name", "cnn", "--version", "1.0", "--calibration"])
        .arg(fixture("digits_calib_cnn.json")));
    assert!(out.contains("canonical cnn.int8@1.0"), "{out}");
    let dup = fails(
        cli(&node)
            .args(["model", "publish"])
            .arg(fixture("digits_cnn.onnx"))
            .args(["--name", "cnn", "--version", "1.0"]),
    );
    assert!(dup.contains("already"), "{dup}");

    let receipt = d.join("receipt.json");
    let out = ok(cli(&node)
        .args(["infer", "cnn.int8@1.0", "--input"])
        .arg(fixture("digit_input_cnn.json"))
        .arg("--out")
        .arg(&receipt));
    assert!(out.contains("argmax=2"), "{out}");
    let receipt_id = out
        .lines()
        .find(|l| l.starts_with("receipt"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();

    let out = ok(cli(&node)
        .arg("verify")
        .arg(&receipt)
        .arg("--input")
        .arg(fixture("digit_input_cnn.json"))
        .arg("--reexecute"));
    assert!(
        out.contains("identical outputs and layer trace root"),
        "{out}"
    );

    // Tampered receipt files make `verify` exit non-zero and say which check failed.
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let tampered = d.join("tampered.json");
    let check = |edit: &dyn Fn(&mut serde_json::Value), expect: &str| {
        let mut v = original.clone();
        edit(&mut v);
        std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
        let out = fails(
            verity()
                .arg("verify")
                .arg(&tampered)
                .arg("--input")
                .arg(fixture("digit_input_cnn.json")),
        );
        assert!(out.contains(expect), "expected `{expect}` in: {out}");
    };
    check(
        &|v| v["outputs"]["logits"]["data"][3] = serde_json::json!(99.0),
        "output hash mismatch",
    );
    check(
        &|v| v["timestamp_ms"] = serde_json::json!(1),
        "signature check failed",
    );
    check(
        &|v| v["trace_root"] = serde_json::json!("00".repeat(32)),
        "signature check failed",
    );
    check(
        &|v| v["model"] = serde_json::json!(format!("blake3:{}", "ab".repeat(32))),
        "signature check failed",
    );
    let other_input = d.join("other_input.json");
    std::fs::write(
        &other_input,
        std::fs::read_to_string(fixture("digit_input_cnn.json"))
            .unwrap()
            .replacen("0.0", "0.5", 1),
    )
    .unwrap();
    let out = fails(
        verity()
            .arg("verify")
            .arg(&receipt)
            .arg("--input")
            .arg(&other_input),
    );
    assert!(out.contains("input hash mismatch"), "{out}");
    let out = fails(
        verity()
            .arg("verify")
            .arg(&receipt)
            .args(["--node-key", &"11".repeat(32)]),
    );
    assert!(out.contains("node key") || out.contains("invalid"), "{out}");

    // SIGKILL the node, restart it on the same data: receipts and models survive.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    drop(node);
    let node = spawn_node(&config);
    let fetched = d.join("fetched.json");
    ok(cli(&node)
        .args(["receipt", &receipt_id, "--out"])
        .arg(&fetched));
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&fetched).unwrap()).unwrap();
    assert_eq!(a, original, "receipt changed across a restart");
    let list = ok(cli(&node).args(["model", "list"]));
    assert!(list.contains("cnn.int8") && list.contains("cnn "), "{list}");
    // Pull re-hashes; re-execution can fetch the model from the node by id.
    let id = original["model"].as_str().unwrap().to_string();
    let pulled = d.join("pulled.q8");
    ok(cli(&node)
        .args(["model", "pull", &id, "--out"])
        .arg(&pulled));
    ok(cli(&node)
        .arg("verify")
        .arg(&fetched)
        .arg("--input")
        .arg(fixture("digit_input_cnn.json"))
        .arg("--reexecute")
        .arg("--model")
        .arg(&pulled));
    let out = fails(
        cli(&node)
            .args(["infer", "missing@1.0", "--input"])
            .arg(fixture("digit_input_cnn.json")),
    );
    assert!(out.contains("404"), "{out}");
}

#[test]
fn verify_inclusion_accepts_the_fixture_and_rejects_tampering() {
    let proof = fixture("inclusion/inclusion_proof.json");
    let set = fixture("inclusion/validators.json");
    let out = ok(verity()
        .arg("verify-inclusion")
        .arg(&proof)
        .arg("--validators")
        .arg(&set));
    assert!(out.contains("inclusion verified"), "{out}");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("p.json");
    let check = |edit: &dyn Fn(&mut serde_json::Value), expect: &str| {
        let mut v = original.clone();
        edit(&mut v);
        std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
        // Both the dedicated command and `verity verify` refuse it.
        for command in ["verify-inclusion", "verify"] {
            let out = fails(
                verity()
                    .arg(command)
                    .arg(&tampered)
                    .arg("--validators")
                    .arg(&set),
            );
            assert!(out.contains(expect), "expected `{expect}` in: {out}");
        }
    };
    let out = ok(verity()
        .arg("verify")
        .arg(&proof)
        .arg("--validators")
        .arg(&set));
    assert!(out.contains("receipt verified"), "{out}");
    let out = fails(verity().arg("verify").arg(&proof));
    assert!(out.contains("--validators"), "{out}");
    check(
        &|v| v["path"]["index"] = serde_json::json!(0),
        "Merkle path",
    );
    check(
        &|v| v["header"]["height"] = serde_json::json!(99),
        "another block",
    );
    check(
        &|v| {
            let f = v["finalization"].as_str().unwrap().to_string();
            let flipped = if f.ends_with('0') { "1" } else { "0" };
            v["finalization"] = serde_json::json!(format!("{}{flipped}", &f[..f.len() - 1]));
        },
        "do not verify",
    );
    check(
        &|v| v["receipt"]["timestamp_ms"] = serde_json::json!(1),
        "signature check failed",
    );
    let other_set = dir.path().join("set.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&set).unwrap()).unwrap();
    s["validators"][0] = serde_json::json!("11".repeat(32));
    std::fs::write(&other_set, serde_json::to_vec(&s).unwrap()).unwrap();
    let out = fails(
        verity()
            .arg("verify-inclusion")
            .arg(&proof)
            .arg("--validators")
            .arg(&other_set),
    );
    assert!(
        out.contains("validator set") || out.contains("do not verify"),
        "{out}"
    );
}
