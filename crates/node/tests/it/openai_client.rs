//! The official `openai` Python client against a node serving SmolLM2: model listing, a
//! completion, a streamed completion and errors; the receipts it received verify offline.
//! Python: `$VERITY_PYTHON` or `python3`, with `openai` installed (`.ci/run` installs it).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use verity_core::chat::read_chat_outputs;
use verity_core::wire::ChatReceipt;
use verity_core::{ChatRequest, Receipt};

/// The receipt and request of a response's `verity` member, verified; returns the text.
fn verified(verity: &Value) -> (Receipt, ChatRequest, String) {
    let receipt: Receipt = serde_json::from_value(verity["receipt"].clone()).unwrap();
    let request: ChatRequest = serde_json::from_value(verity["request"].clone()).unwrap();
    let evidence: ChatReceipt = serde_json::from_value(verity.clone()).unwrap();
    assert!(evidence.receipt_id.is_some());
    let signed =
        verity_verify::chat::receipt(&evidence, None, &mut verity_verify::Report::default())
            .unwrap();
    assert_eq!(receipt.model, crate::common::node().model);
    (receipt, request, signed.text)
}

#[test]
fn openai_python_client_gets_verifiable_receipts() {
    let n = crate::common::node();
    let python = std::env::var("VERITY_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("{}/v1", n.url))
        .arg("SmolLM2-135M-Instruct")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{python} {} failed (is `openai` installed? `python3 -m pip install openai`):\n{stderr}",
        script.display()
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    eprintln!(
        "openai {}: {:?} / streamed {:?}",
        v["openai_version"], v["plain"]["content"], v["stream"]["content"]
    );
    assert!(v["models"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(n.model)));

    // Non-streaming: the body's receipt verifies and its text is the message content.
    let plain = &v["plain"];
    let (receipt, request, text) = verified(&plain["verity"]);
    assert!(!text.is_empty());
    assert_eq!(plain["content"], text);
    assert_eq!(request.temperature, 0.0);
    assert_eq!(request.messages.len(), 2);
    assert_eq!(
        plain["completion_tokens"],
        read_chat_outputs(&receipt.outputs).unwrap().0.len()
    );
    // The header's compact receipt, joined with the body's outputs, is the same receipt.
    let header = plain["header"].as_str().expect("verity-receipt header");
    let joined = Receipt::from_compact_base64(header, receipt.outputs.clone()).unwrap();
    assert_eq!(joined, receipt);

    // Streaming: the deltas the client assembled are the receipt's text.
    let stream = &v["stream"];
    let (receipt, request, text) = verified(&stream["verity"]);
    assert_eq!(stream["content"], text);
    assert_eq!((request.seed, request.temperature), (7, 0.7));
    let (tokens, _, finish) = read_chat_outputs(&receipt.outputs).unwrap();
    assert_eq!(stream["finish_reason"], finish.name());
    assert_eq!(stream["completion_tokens"], tokens.len());

    // Errors surface as the client's typed exceptions.
    assert_eq!(v["error"]["status"], 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["bad_request"]["status"], 400);
    assert_eq!(v["bad_request"]["param"], "n");
}
