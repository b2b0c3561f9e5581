//! `verity chat`: OpenAI-format requests to a node's `/v1/chat/completions`, tokens printed as
//! they stream in, and every answer's receipt checked offline before the turn counts: the
//! signature and hashes, the printed text equal to the signed text, and the signed request
//! equal to what was asked (same messages and parameters).

use crate::client::NodeClient;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use verity_core::chat::read_chat_outputs;
use verity_core::verify::Expectations;
use verity_core::{
    verify_receipt, ChatMessage, ChatRequest, FinishReason, ModelFormat, ModelId, Receipt,
};

/// What `verity chat` asks for. Unset parameters take the API's defaults (OpenAI's:
/// temperature 1, top_p 1; top_k off; no stop strings; max_tokens what the context leaves).
pub struct ChatOptions {
    pub model: String,
    pub messages: Vec<String>,
    pub system: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub json: bool,
    pub receipt_out: Option<PathBuf>,
    pub stream: bool,
}

/// The `verity` member of a chat answer, and the receipt file `--receipt-out` writes
/// (`verity verify` reads it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatReceipt {
    pub receipt: Receipt,
    pub request: ChatRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

/// What one turn produced, checked.
struct Answer {
    text: String,
    verity: ChatReceipt,
    tokens: usize,
    finish: FinishReason,
}

pub fn run(node: &str, o: &ChatOptions) -> Result<()> {
    let client = NodeClient::new(node)?;
    let manifest = client
        .show(&o.model)
        .with_context(|| format!("model `{}`", o.model))?;
    if manifest.format != ModelFormat::Gguf {
        bail!(
            "{}@{} ({}) is not a language model; chat needs a GGUF model such as smollm2 \
             (`verity model fetch smollm2 --publish {node}`)",
            manifest.name,
            manifest.version,
            manifest.id
        );
    }
    let mut history = Vec::new();
    if let Some(s) = &o.system {
        history.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    if !o.messages.is_empty() {
        // Each -m is one turn of a scripted conversation.
        for m in &o.messages {
            turn(&client, manifest.id, o, &mut history, m)?;
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "chatting with {}@{} on {node}; an empty line is skipped, Ctrl-D or /exit ends",
            manifest.name, manifest.version
        );
    }
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("cannot read stdin")?;
        let line = line.trim();
        if line == "/exit" || line == "/quit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if let Err(e) = turn(&client, manifest.id, o, &mut history, line) {
            if !interactive {
                return Err(e);
            }
            // The turn is dropped from the conversation; the next one can go on.
            eprintln!("error: {e:#}");
        }
    }
    Ok(())
}

/// Sends the conversation plus `user`, prints the answer, checks its receipt, and on success
/// adds both messages to the history.
fn turn(
    client: &NodeClient,
    model: ModelId,
    o: &ChatOptions,
    history: &mut Vec<ChatMessage>,
    user: &str,
) -> Result<()> {
    let mut messages = history.clone();
    messages.push(ChatMessage {
        role: "user".into(),
        content: user.to_string(),
    });
    let body = request_body(model, &messages, o);
    let answer = if o.stream {
        stream(client, &body)?
    } else {
        complete(client, &body)?
    };
    check_request(&answer.verity.request, model, &messages, o)?;
    let r = &answer.verity.receipt;
    eprintln!(
        "verified receipt {} by node {}: {} tokens, finish {}",
        r.id(),
        r.node,
        answer.tokens,
        answer.finish.name()
    );
    if let Some(path) = &o.receipt_out {
        std::fs::write(path, serde_json::to_vec_pretty(&answer.verity)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    messages.push(ChatMessage {
        role: "assistant".into(),
        content: answer.text,
    });
    *history = messages;
    Ok(())
}

fn request_body(model: ModelId, messages: &[ChatMessage], o: &ChatOptions) -> Value {
    let mut body = json!({"model": model, "messages": messages, "stream": o.stream});
    if let Some(n) = o.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(t) = o.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = o.top_p {
        body["top_p"] = json!(p);
    }
    if let Some(k) = o.top_k {
        body["top_k"] = json!(k);
    }
    if let Some(s) = o.seed {
        body["seed"] = json!(s);
    }
    if !o.stop.is_empty() {
        body["stop"] = json!(o.stop);
    }
    if o.json {
        body["response_format"] = json!({"type": "json_object"});
    }
    body
}

/// Streams the answer to stdout as it arrives; the final chunk's receipt is then checked.
fn stream(client: &NodeClient, body: &Value) -> Result<Answer> {
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    let mut finish = None;
    let mut verity = None;
    client.chat_stream(body, &mut |chunk| {
        if let Some(v) = chunk.get("verity") {
            verity = Some(v.clone());
        }
        let choice = &chunk["choices"][0];
        if let Some(delta) = choice["delta"]["content"].as_str() {
            text.push_str(delta);
            out.write_all(delta.as_bytes())?;
            out.flush()?;
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
        Ok(())
    })?;
    writeln!(out)?;
    let Some(verity) = verity else {
        bail!("the stream ended without a receipt (no `verity` member in its final chunk)")
    };
    checked(verity, &text, finish.as_deref())
}

/// The whole answer at once; its compact receipt header must agree with the body's receipt.
fn complete(client: &NodeClient, body: &Value) -> Result<Answer> {
    let (resp, header) = client.chat(body)?;
    let choice = &resp["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .context("the answer has no choices[0].message.content")?
        .to_string();
    let answer = checked(
        resp.get("verity")
            .cloned()
            .context("the answer carries no receipt (no `verity` member)")?,
        &text,
        choice["finish_reason"].as_str(),
    )?;
    if let Some(h) = header {
        let r = &answer.verity.receipt;
        let joined = Receipt::from_compact_base64(&h, r.outputs.clone())
            .context("the verity-receipt header is not a compact receipt")?;
        if &joined != r {
            bail!("the verity-receipt header and the body's receipt differ");
        }
    }
    println!("{text}");
    Ok(answer)
}

/// Checks a receipt offline against the text that was shown and the finish reason given.
fn checked(verity: Value, shown: &str, finish: Option<&str>) -> Result<Answer> {
    let verity: ChatReceipt =
        serde_json::from_value(verity).context("the answer's `verity` member is malformed")?;
    let (tokens, text, reason) = verify_chat(&verity)?;
    if text != shown {
        bail!(
            "the text shown ({} bytes) is not the text the receipt signs ({} bytes)",
            shown.len(),
            text.len()
        );
    }
    if let Some(f) = finish {
        if f != reason.name() {
            bail!(
                "the answer says finish_reason {f}, the receipt {}",
                reason.name()
            );
        }
    }
    Ok(Answer {
        text,
        tokens: tokens.len(),
        finish: reason,
        verity,
    })
}

/// The offline checks of a chat receipt with its request: version, output hash, input hash
/// (the request's canonical bytes), signature, request hash, model, receipt id. Returns the
/// signed tokens, text and finish reason.
pub fn verify_chat(v: &ChatReceipt) -> Result<(Vec<u32>, String, FinishReason)> {
    let (r, q) = (&v.receipt, &v.request);
    verify_receipt(
        r,
        &Expectations {
            inputs: Some(&q.inputs()),
            node: None,
            ..Default::default()
        },
    )?;
    if r.request_hash != q.hash() {
        bail!(
            "request hash mismatch: the receipt says {}, the request hashes to {}",
            r.request_hash,
            q.hash()
        );
    }
    if q.model != r.model {
        bail!(
            "model mismatch: the receipt names {}, its request {}",
            r.model,
            q.model
        );
    }
    if let Some(id) = &v.receipt_id {
        if *id != r.id().to_hex() {
            bail!("receipt id mismatch: {id} given, the receipt is {}", r.id());
        }
    }
    read_chat_outputs(&r.outputs).context("not a chat receipt")
}

/// The signed request must be the one asked for: same model, messages and parameters (unset
/// ones at the API's defaults; a greedy request without a seed gets seed 0).
fn check_request(
    got: &ChatRequest,
    model: ModelId,
    messages: &[ChatMessage],
    o: &ChatOptions,
) -> Result<()> {
    let mut wrong = Vec::new();
    if got.messages != messages {
        wrong.push("other messages than those sent".to_string());
    }
    let mut differ = |what: &str, asked: String, signed: String| {
        if asked != signed {
            wrong.push(format!("{what} {signed} instead of {asked}"));
        }
    };
    differ("model", model.to_string(), got.model.to_string());
    if let Some(n) = o.max_tokens {
        differ("max_tokens", n.to_string(), got.max_tokens.to_string());
    }
    let temperature = o.temperature.unwrap_or(1.0);
    differ(
        "temperature",
        temperature.to_string(),
        got.temperature.to_string(),
    );
    differ(
        "top_p",
        o.top_p.unwrap_or(1.0).to_string(),
        got.top_p.to_string(),
    );
    differ(
        "top_k",
        o.top_k.unwrap_or(0).to_string(),
        got.top_k.to_string(),
    );
    match (o.seed, temperature == 0.0) {
        (Some(s), _) => differ("seed", s.to_string(), got.seed.to_string()),
        (None, true) => differ("seed", "0".into(), got.seed.to_string()),
        (None, false) => {}
    }
    differ("stop", format!("{:?}", o.stop), format!("{:?}", got.stop));
    differ(
        "json_object",
        o.json.to_string(),
        got.json_object.to_string(),
    );
    if !wrong.is_empty() {
        bail!(
            "the receipt signs another request than the one sent: {}",
            wrong.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ChatOptions {
        ChatOptions {
            model: "smollm2".into(),
            messages: vec![],
            system: None,
            max_tokens: None,
            temperature: None,
            top_p: None,
            top_k: None,
            seed: None,
            stop: vec![],
            json: false,
            receipt_out: None,
            stream: true,
        }
    }

    fn signed(messages: &[ChatMessage]) -> ChatRequest {
        ChatRequest {
            model: ModelId([3; 32]),
            messages: messages.to_vec(),
            max_tokens: 100,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 12345,
            stop: vec![],
            json_object: false,
        }
    }

    #[test]
    fn the_signed_request_must_be_the_one_asked_for() {
        let messages = vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }];
        let model = ModelId([3; 32]);
        // Unset parameters: the API's defaults; any max_tokens and (sampled) seed.
        let o = options();
        let q = signed(&messages);
        check_request(&q, model, &messages, &o).unwrap();
        let body = request_body(model, &messages, &o);
        assert_eq!(body["stream"], json!(true));
        assert!(body.get("temperature").is_none() && body.get("seed").is_none());

        let mut o = options();
        o.temperature = Some(0.0);
        o.max_tokens = Some(12);
        o.stop = vec!["\n".into()];
        o.json = true;
        let mut q = signed(&messages);
        (q.temperature, q.max_tokens, q.seed) = (0.0, 12, 0);
        q.stop = vec!["\n".into()];
        q.json_object = true;
        check_request(&q, model, &messages, &o).unwrap();
        let body = request_body(model, &messages, &o);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stop"], json!(["\n"]));

        type Change = Box<dyn Fn(&mut ChatRequest)>;
        let changes: Vec<(Change, &str)> = vec![
            (Box::new(|q| q.temperature = 0.5), "temperature"),
            (Box::new(|q| q.max_tokens = 13), "max_tokens"),
            // Greedy without a seed given must be seed 0.
            (Box::new(|q| q.seed = 1), "seed"),
            (Box::new(|q| q.top_p = 0.9), "top_p"),
            (Box::new(|q| q.top_k = 5), "top_k"),
            (Box::new(|q| q.stop.clear()), "stop"),
            (Box::new(|q| q.json_object = false), "json_object"),
            (Box::new(|q| q.model = ModelId([4; 32])), "model"),
            (Box::new(|q| q.messages[0].content.push('!')), "messages"),
        ];
        for (change, name) in changes {
            let mut other = q.clone();
            change(&mut other);
            let e = check_request(&other, model, &messages, &o).unwrap_err();
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
    }
}
