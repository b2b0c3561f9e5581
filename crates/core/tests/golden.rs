//! Golden vectors for the signed encodings (docs/receipts.md): the exact bytes and hashes of a
//! tensor, an inference request, a signed receipt (full and compact) and a chat request, from
//! fixed keys and values (every transaction kind is pinned in `fixtures/golden/ledger.json`). Any change to an encoding fails here; an
//! intended change bumps the encoding's version and regenerates the file with
//! `scripts/regen_golden.sh` in the same commit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};
use verity_core::encode::Encoder;
use verity_core::receipt::{EngineId, ReceiptBody};
use verity_core::tensor::hash_map;
use verity_core::{
    ChatMessage, ChatRequest, Hash, InferenceRequest, Mode, ModelId, NodeKey, Tensor, TensorMap,
};

fn vectors() -> Value {
    let node = NodeKey::from_seed([1; 32]);
    let client = NodeKey::from_seed([2; 32]);
    let tensor = Tensor::from_f32(vec![2, 2], &[0.5, -1.0, 2.25, 0.0]).unwrap();
    let inputs: TensorMap = [("x".to_string(), tensor.clone())].into();
    let outputs: TensorMap = [(
        "y".to_string(),
        Tensor::from_i8(vec![3], &[-128, 0, 127]).unwrap(),
    )]
    .into();
    let request = InferenceRequest {
        model: ModelId::of_bytes(b"golden model"),
        inputs: inputs.clone(),
        mode: Mode::Quorum { k: 3 },
        params: BTreeMap::from([("temperature".to_string(), "0".to_string())]),
        nonce: 42,
        client: client.public(),
    };
    let signed = request.clone().sign(&client);
    let receipt = ReceiptBody {
        chain_id: "verity-golden".into(),
        request_hash: request.hash(),
        model: request.model,
        input_hash: hash_map(&inputs),
        output_hash: hash_map(&outputs),
        outputs,
        trace_root: Some(Hash::of("verity/trace-node/v1", b"golden")),
        engine: EngineId {
            name: "verity-int8".into(),
            version: "1".into(),
        },
        mode: request.mode,
        timestamp_ms: 1_700_000_000_000,
    }
    .sign(&node);
    let mut full = Encoder::new();
    receipt.encode_into(&mut full);
    let chat = ChatRequest {
        model: ModelId::of_bytes(b"golden llm"),
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi \u{1F600}".into(),
            },
        ],
        max_tokens: 16,
        temperature: 0.7,
        top_p: 0.9,
        top_k: 40,
        seed: 7,
        stop: vec!["\n\n".into()],
        json_object: false,
    };
    json!({
        "tensor": {"encoding": hex::encode(tensor.encode()), "hash": tensor.hash()},
        "inference_request": {
            "hash": request.hash(),
            "signature": hex::encode(signed.signature.0),
        },
        "receipt": {
            "id": receipt.id(),
            "signature": hex::encode(receipt.signature.0),
            "encoding": hex::encode(full.finish()),
            "compact_base64": receipt.to_compact_base64(),
        },
        "chat_request": {"encoding": hex::encode(chat.encode()), "hash": chat.hash()},
    })
}

#[test]
fn signed_encodings_match_their_golden_vectors() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/core.json");
    let now = vectors();
    if std::env::var_os("VERITY_REGEN_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    let pinned: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .expect("fixtures/golden/core.json (scripts/regen_golden.sh writes it)");
    for (what, value) in pinned.as_object().unwrap() {
        assert_eq!(
            &now[what], value,
            "the {what} encoding changed: bump its version and regenerate the vectors"
        );
    }
    assert_eq!(now, pinned);
}
