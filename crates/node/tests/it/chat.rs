//! OpenAI-compatible chat over real sockets with the real SmolLM2 (Q4_1 GGUF): completions
//! whose receipts verify offline (from the body and from the compact header), tampering,
//! determinism through the API, streaming, the JSON constraint, cancellation, and errors in
//! OpenAI's shape.

use crate::common::node;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use verity_core::chat::read_chat_outputs;
use verity_core::wire::ChatReceipt;
use verity_core::{ChatRequest, FinishReason, ModelFormat, ModelId, Receipt};
use verity_verify::{Failure, Report};

/// What a non-streaming completion gave: the body, its receipt and request, and the header.
struct Completion {
    body: Value,
    receipt: Receipt,
    request: ChatRequest,
    header: String,
}

fn complete(body: Value) -> Completion {
    let resp = node().chat_raw(&body.to_string());
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get("verity-receipt")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = resp.json().unwrap();
    assert_eq!(status, 200, "{body}");
    Completion {
        receipt: serde_json::from_value(body["verity"]["receipt"].clone()).unwrap(),
        request: serde_json::from_value(body["verity"]["request"].clone()).unwrap(),
        body,
        header,
    }
}

fn greedy(content: &str, max_tokens: u32) -> Value {
    json!({
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// The verification library's offline checks of a chat receipt with its request.
fn verify(r: &Receipt, request: &ChatRequest) -> Result<(), Failure> {
    let evidence = ChatReceipt {
        receipt: r.clone(),
        request: request.clone(),
        receipt_id: None,
    };
    verity_verify::chat::receipt(&evidence, None, &mut Report::default()).map(|_| ())
}

/// Whether a verification failed with a message naming what broke.
fn refused(result: Result<(), Failure>, what: &str) -> bool {
    result.is_err_and(|f| f.message.contains(what))
}

#[test]
fn completion_receipt_verifies_offline_and_binds_request_and_output() {
    let n = node();
    let c = complete(greedy("What is the capital of France?", 16));
    let content = c.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty(), "{}", c.body);
    assert_eq!(c.body["object"], "chat.completion");
    assert_eq!(c.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c.body["model"], json!(n.model));
    assert_eq!(c.body["system_fingerprint"], "verity-llm-v1");

    // The receipt verifies with the request's inputs; its outputs are the message.
    verify(&c.receipt, &c.request).unwrap();
    assert_eq!(c.receipt.request_hash, c.request.hash());
    assert_eq!((c.receipt.model, c.request.model), (n.model, n.model));
    assert_eq!(c.receipt.engine.name, verity_llm::RUNTIME_NAME);
    assert_eq!(c.receipt.engine.version, verity_llm::RUNTIME_VERSION);
    let (tokens, text, finish) = read_chat_outputs(&c.receipt.outputs).unwrap();
    assert_eq!(text, content);
    assert_eq!(c.body["choices"][0]["finish_reason"], finish.name());
    assert_eq!(c.body["usage"]["completion_tokens"], tokens.len());
    let usage = &c.body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + tokens.len() as u64)
    );
    // The canonical request states what was asked (defaults filled in: greedy means seed 0).
    assert_eq!(
        (c.request.max_tokens, c.request.temperature, c.request.seed),
        (16, 0.0, 0)
    );
    assert_eq!(
        c.request.messages[0].content,
        "What is the capital of France?"
    );
    let id = c.receipt.id().to_hex();
    assert_eq!(c.body["verity"]["receipt_id"], id);
    assert_eq!(c.body["id"], format!("chatcmpl-{}", &id[..24]));
    // Stored like every receipt.
    let (s, stored) = n.get(&format!("/v1/receipts/{id}"));
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_value::<Receipt>(stored).unwrap(),
        c.receipt
    );

    // The compact header: a few hundred bytes, and with the body's outputs it is the receipt.
    assert!(
        !c.header.is_empty() && c.header.len() < 1024,
        "{}",
        c.header
    );
    let joined = Receipt::from_compact_base64(&c.header, c.receipt.outputs.clone()).unwrap();
    assert_eq!(joined, c.receipt);
    verify(&joined, &c.request).unwrap();
    let other = verity_core::chat::chat_outputs(&tokens, "Paris, of course.", finish);
    let joined = Receipt::from_compact_base64(&c.header, other).unwrap();
    assert!(refused(verify(&joined, &c.request), "output hash mismatch"));

    // Tampering with the text, the tokens, the request, the signature or the model fails.
    let tampered = |f: &dyn Fn(&mut Receipt, &mut ChatRequest)| {
        let (mut r, mut q) = (c.receipt.clone(), c.request.clone());
        f(&mut r, &mut q);
        verify(&r, &q)
    };
    let text_changed = tampered(&|r, _| {
        r.outputs = verity_core::chat::chat_outputs(&tokens, "Berlin", finish);
    });
    assert!(refused(text_changed, "output hash mismatch"));
    let tokens_changed = tampered(&|r, _| {
        let mut t = tokens.clone();
        t[0] ^= 1;
        r.outputs = verity_core::chat::chat_outputs(&t, &text, finish);
    });
    assert!(refused(tokens_changed, "output hash mismatch"));
    // Outputs and output hash replaced together: the signature no longer holds.
    let rehashed = tampered(&|r, _| {
        r.outputs = verity_core::chat::chat_outputs(&tokens, "Berlin", finish);
        r.output_hash = verity_core::tensor::hash_map(&r.outputs);
    });
    assert!(refused(rehashed, "signature check failed"));
    let request_changed = tampered(&|_, q| q.messages[0].content.push('?'));
    assert!(refused(request_changed, "input hash mismatch"));
    let seed_changed = tampered(&|_, q| q.seed = 1);
    assert!(refused(seed_changed, "input hash mismatch"));
    let signature_changed = tampered(&|r, _| r.signature.0[7] ^= 1);
    assert!(refused(signature_changed, "signature check failed"));
    let model_changed = tampered(&|r, _| r.model = ModelId([1; 32]));
    assert!(refused(model_changed, "signature check failed"));
    let finish_changed = tampered(&|r, _| {
        let other = match finish {
            FinishReason::Stop => FinishReason::Length,
            FinishReason::Length => FinishReason::Stop,
        };
        r.outputs = verity_core::chat::chat_outputs(&tokens, &text, other);
    });
    assert!(refused(finish_changed, "output hash mismatch"));
}

#[test]
fn same_request_gives_the_same_tokens() {
    let body = json!({
        "model": "SmolLM2-135M-Instruct@1.0",
        "messages": [
            {"role": "system", "content": "You are a poet."},
            {"role": "user", "content": "Write about the sea."},
        ],
        "max_tokens": 12,
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 40,
        "seed": 1234,
    });
    let a = complete(body.clone());
    let b = complete(body);
    assert_eq!(a.request, b.request);
    assert_eq!(a.request.seed, 1234);
    assert_eq!(
        read_chat_outputs(&a.receipt.outputs).unwrap(),
        read_chat_outputs(&b.receipt.outputs).unwrap()
    );
    assert_eq!(a.receipt.output_hash, b.receipt.output_hash);
    // The model is also usable by its content id.
    let by_id = complete(json!({
        "model": node().model,
        "messages": [{"role": "user", "content": "Write about the sea."}],
        "max_tokens": 4,
        "temperature": 0,
    }));
    verify(&by_id.receipt, &by_id.request).unwrap();
}

/// The `data:` payloads of a server-sent event stream.
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

#[test]
fn streaming_deltas_concatenate_to_the_receipt_text() {
    let mut body = greedy("Name three colors.", 16);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = node().chat_raw(&body.to_string());
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(&resp.text().unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.windows(2).all(|w| w[0]["id"] == w[1]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    // The last chunk is usage only; the one before ends the choice and carries the receipt.
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    let end = &chunks[chunks.len() - 2];
    let finish = end["choices"][0]["finish_reason"].as_str().unwrap();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let receipt: Receipt = serde_json::from_value(end["verity"]["receipt"].clone()).unwrap();
    let request: ChatRequest = serde_json::from_value(end["verity"]["request"].clone()).unwrap();
    verify(&receipt, &request).unwrap();
    let (tokens, text, reason) = read_chat_outputs(&receipt.outputs).unwrap();
    assert!(!text.is_empty());
    assert_eq!(streamed, text);
    assert_eq!(finish, reason.name());
    assert_eq!(usage["usage"]["completion_tokens"], tokens.len());
    // Streaming and not give the same generation for the same request.
    let plain = complete(greedy("Name three colors.", 16));
    assert_eq!(plain.request, request);
    assert_eq!(plain.receipt.output_hash, receipt.output_hash);
}

#[test]
fn json_object_output_parses() {
    let c = complete(json!({
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Give a JSON object with the key \"capital\" for France."}],
        "max_tokens": 24,
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }));
    verify(&c.receipt, &c.request).unwrap();
    assert!(c.request.json_object);
    let content = c.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(c.body["choices"][0]["finish_reason"], "stop", "{content}");
    let parsed: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    assert!(parsed.is_object(), "{content}");
}

fn error_of(body: &str) -> (u16, Value) {
    let resp = node().chat_raw(body);
    let status = resp.status().as_u16();
    let v: Value = resp.json().unwrap();
    let e = &v["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(e.get(key).is_some(), "{key} missing: {v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    (status, e.clone())
}

#[test]
fn errors_have_openai_shape() {
    let with = |extra: Value| {
        let mut b = greedy("Hi", 4);
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    let (s, e) = error_of(&with(json!({"model": "no-such-model"})));
    assert_eq!(
        (s, &e["code"], &e["param"]),
        (404, &json!("model_not_found"), &json!("model"))
    );
    let (s, e) = error_of(&with(json!({"model": format!("{}", ModelId([5; 32]))})));
    assert_eq!((s, &e["code"]), (404, &json!("model_not_found")));
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "Hi"}]}),
            "messages[0].role",
        ),
        (json!({"temperature": 5}), "temperature"),
        (json!({"max_tokens": 100000}), "max_tokens"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (json!({"logprobs": true}), "logprobs"),
    ];
    for (extra, param) in cases {
        let (s, e) = error_of(&with(extra.clone()));
        assert_eq!(s, 400, "{extra}: {e}");
        assert_eq!(e["type"], "invalid_request_error", "{extra}");
        assert_eq!(e["param"], param, "{extra}");
    }
    let (s, e) = error_of("{\"model\": \"SmolLM2-135M-Instruct\", \"messages\": [");
    assert_eq!((s, &e["type"]), (400, &json!("invalid_request_error")));
    // More tokens than the context holds.
    let (s, e) = error_of(&with(json!({"max_tokens": 4096, "messages": [
        {"role": "user", "content": "many words ".repeat(5000)}
    ]})));
    assert_eq!(
        (s, &e["code"]),
        (400, &json!("context_length_exceeded")),
        "{e}"
    );
    // A tensor model is not a chat model, and a chat model is not run by /v1/infer.
    let onnx = std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/digits_mlp.onnx"),
    )
    .unwrap();
    let (s, _) = node().publish("digits-mlp", "1.0", onnx);
    assert!(s == 201 || s == 409);
    let (s, e) = error_of(&with(json!({"model": "digits-mlp"})));
    assert_eq!(
        (s, &e["code"], &e["param"]),
        (400, &json!("model_not_supported"), &json!("model"))
    );
    let key = &node().key;
    let infer = verity_core::InferenceRequest {
        model: node().model,
        inputs: Default::default(),
        mode: verity_core::Mode::Signed,
        params: Default::default(),
        nonce: 1,
        client: key.public(),
    }
    .sign(key);
    let resp = node()
        .http
        .post(format!("{}/v1/infer", node().url))
        .json(&infer)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(resp.json::<Value>().unwrap()["error"]["code"], "chat_model");
    // A body over the chat limit.
    let (s, e) = error_of(&with(json!({"messages": [
        {"role": "user", "content": "x".repeat(2 << 20)}
    ]})));
    assert_eq!((s, &e["code"]), (413, &json!("request_too_large")), "{e}");
}

#[test]
fn models_are_listed_in_openai_shape_and_gguf_is_checked_at_publish() {
    let n = node();
    let (s, list) = n.get("/v1/models");
    assert_eq!((s, &list["object"]), (200, &json!("list")));
    let m = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(n.model))
        .expect("SmolLM2 listed");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "verity");
    assert!(m["created"].as_u64().is_some());
    assert_eq!(m["name"], "SmolLM2-135M-Instruct");
    assert_eq!(m["format"], json!(ModelFormat::Gguf));
    assert!(m["operators"].as_array().unwrap().contains(&json!("llama")));
    let (s, one) = n.get("/v1/models/SmolLM2-135M-Instruct");
    assert_eq!(
        (s, &one["id"], &one["object"]),
        (200, &json!(n.model), &json!("model"))
    );

    // A file with GGUF's magic that is not a GGUF file is refused, and nothing is kept.
    let mut junk = b"GGUF".to_vec();
    junk.extend([0xff; 64]);
    let (s, b) = n.publish("junk", "1.0", junk);
    assert_eq!(
        (s, &b["error"]["code"]),
        (400, &json!("invalid_model")),
        "{b}"
    );
    // A truncated copy of the real file, too.
    let cut = crate::common::smollm2_bytes()[..1 << 20].to_vec();
    let (s, b) = n.publish("cut", "1.0", cut);
    assert_eq!(
        (s, &b["error"]["code"]),
        (400, &json!("invalid_model")),
        "{b}"
    );
    let (_, list) = n.get("/v1/models");
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["name"] != "junk" && m["name"] != "cut"));
}

fn metric(name: &str) -> f64 {
    node()
        .get_text("/metrics")
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_client_that_leaves_cancels_its_generation() {
    use std::io::Read;
    let before = metric("verity_chat_completions_total{outcome=\"cancelled\"}");
    let mut body = greedy("Tell me a very long story about a dragon.", 2000);
    body["stream"] = json!(true);
    let mut resp = node().chat_raw(&body.to_string());
    assert_eq!(resp.status().as_u16(), 200);
    let mut first = [0u8; 64];
    let n = resp.read(&mut first).unwrap();
    assert!(n > 0);
    drop(resp);
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric("verity_chat_completions_total{outcome=\"cancelled\"}") <= before {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The slot is free again: a new request is served.
    let c = complete(greedy("Hi", 2));
    verify(&c.receipt, &c.request).unwrap();
    assert!(metric("verity_chat_completion_tokens_total") > 0.0);
}
