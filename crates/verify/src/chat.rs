//! Chat receipts: an LLM answer bound to its canonical request. The receipt's inputs are the
//! request's canonical bytes and its outputs the tokens, text and finish reason, so the
//! signature and hash checks are the ordinary ones; on top come the request itself, the text a
//! client was shown, the request the client sent, and re-running the generation.

use crate::report::{fail, Check, Failure, Report};
use std::time::Instant;
use verity_core::chat::read_chat_outputs;
use verity_core::wire::{ChatCompletionRequest, ChatReceipt};
use verity_core::{ChatRequest, Expectations, FinishReason, ModelId, PublicKey, Receipt};

/// What a chat receipt signs, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAnswer {
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
}

/// The offline checks of a chat receipt with its request: version, output hash, input hash
/// (the request's canonical bytes), signature, request hash, model, receipt id, and (when
/// given) the signer.
pub fn receipt(
    v: &ChatReceipt,
    node: Option<PublicKey>,
    report: &mut Report,
) -> Result<SignedAnswer, Failure> {
    let (r, q) = (&v.receipt, &v.request);
    crate::receipt::receipt(
        r,
        &Expectations {
            inputs: Some(&q.inputs()),
            node,
            request: Some(q.hash()),
            model: Some(q.model),
            ..Default::default()
        },
        report,
    )?;
    if let Some(id) = &v.receipt_id {
        if *id != r.id().to_hex() {
            return fail(
                Check::Evidence,
                format!("receipt id mismatch: {id} given, the receipt is {}", r.id()),
            );
        }
    }
    let (tokens, text, finish) = read_chat_outputs(&r.outputs)
        .map_err(|e| Failure::new(Check::Evidence, format!("not a chat receipt: {e}")))?;
    report.ok(
        Check::Request,
        format!(
            "the receipt signs request {}: {} messages, max_tokens {}, temperature {}, top_p {}, \
             top_k {}, seed {}; {} tokens, {} bytes of text, finish {}, engine {} {}",
            r.request_hash,
            q.messages.len(),
            q.max_tokens,
            q.temperature,
            q.top_p,
            q.top_k,
            q.seed,
            tokens.len(),
            text.len(),
            finish.name(),
            r.engine.name,
            r.engine.version
        ),
    );
    Ok(SignedAnswer {
        tokens,
        text,
        finish,
    })
}

/// The text a client was shown, and the finish reason it was told, are what the receipt signs.
pub fn shown(
    signed: &SignedAnswer,
    text: &str,
    finish: Option<&str>,
    report: &mut Report,
) -> Result<(), Failure> {
    if text != signed.text {
        return fail(
            Check::ShownText,
            format!(
                "the text shown ({} bytes) is not the text its receipt signs ({} bytes)",
                text.len(),
                signed.text.len()
            ),
        );
    }
    if let Some(f) = finish {
        if f != signed.finish.name() {
            return fail(
                Check::ShownText,
                format!(
                    "the answer says finish_reason {f}, the receipt {}",
                    signed.finish.name()
                ),
            );
        }
    }
    report.ok(Check::ShownText, "the text shown is the text signed");
    Ok(())
}

/// A compact receipt (the `verity-receipt` header) is the body's receipt.
pub fn compact_header(header: &str, r: &Receipt) -> Result<(), Failure> {
    let joined = Receipt::from_compact_base64(header, r.outputs.clone()).map_err(|e| {
        Failure::new(
            Check::Evidence,
            format!("the verity-receipt header is not a compact receipt: {e}"),
        )
    })?;
    if &joined != r {
        return fail(
            Check::Evidence,
            "the verity-receipt header and the body's receipt differ",
        );
    }
    Ok(())
}

/// The signed request is the one sent: same model, messages and parameters (unset ones at the
/// API's defaults: temperature 1, top_p 1, top_k 0, no stop strings; a greedy request without
/// a seed gets seed 0; any `max_tokens` and sampled seed when unset).
pub fn request_matches(
    asked: &ChatCompletionRequest,
    model: ModelId,
    signed: &ChatRequest,
    report: &mut Report,
) -> Result<(), Failure> {
    let mut wrong = Vec::new();
    if signed.messages != asked.messages {
        wrong.push("other messages than those sent".to_string());
    }
    let mut differ = |what: &str, asked: String, signed: String| {
        if asked != signed {
            wrong.push(format!("{what} {signed} instead of {asked}"));
        }
    };
    differ("model", model.to_string(), signed.model.to_string());
    if let Some(n) = asked.max_tokens {
        differ("max_tokens", n.to_string(), signed.max_tokens.to_string());
    }
    let temperature = asked.temperature.unwrap_or(1.0);
    differ(
        "temperature",
        temperature.to_string(),
        signed.temperature.to_string(),
    );
    differ(
        "top_p",
        asked.top_p.unwrap_or(1.0).to_string(),
        signed.top_p.to_string(),
    );
    differ(
        "top_k",
        asked.top_k.unwrap_or(0).to_string(),
        signed.top_k.to_string(),
    );
    match (asked.seed, temperature == 0.0) {
        (Some(s), _) => differ("seed", s.to_string(), signed.seed.to_string()),
        (None, true) => differ("seed", "0".into(), signed.seed.to_string()),
        (None, false) => {}
    }
    differ(
        "stop",
        format!("{:?}", asked.stop),
        format!("{:?}", signed.stop),
    );
    differ(
        "json_object",
        asked.json_object().to_string(),
        signed.json_object.to_string(),
    );
    if !wrong.is_empty() {
        return fail(
            Check::Request,
            format!(
                "the receipt signs another request than the one sent: {}",
                wrong.join(", ")
            ),
        );
    }
    report.ok(Check::Request, "the signed request is the one sent");
    Ok(())
}

/// Re-runs a chat generation with this build's LLM runtime and requires the very tokens, text
/// and finish reason the receipt signs. `model` must already hash to the receipt's model id.
pub fn reexecute(
    v: &ChatReceipt,
    signed: &SignedAnswer,
    model: &[u8],
    report: &mut Report,
) -> Result<(), Failure> {
    use verity_llm::{Llm, RUNTIME_NAME, RUNTIME_VERSION};
    let r = &v.receipt;
    if (r.engine.name.as_str(), r.engine.version.as_str()) != (RUNTIME_NAME, RUNTIME_VERSION) {
        return fail(
            Check::Reexecution,
            format!(
                "runtime version mismatch: the receipt was produced by {} {}, this verifier runs \
                 {RUNTIME_NAME} {RUNTIME_VERSION}; bit-exact re-execution needs the same runtime",
                r.engine.name, r.engine.version
            ),
        );
    }
    let start = Instant::now();
    let llm = Llm::load(model).map_err(|e| {
        Failure::new(
            Check::Reexecution,
            format!("cannot load the model for re-execution: {e}"),
        )
    })?;
    let loaded = start.elapsed();
    let g = llm
        .generate(&v.request, &mut |_| true)
        .map_err(|e| Failure::new(Check::Reexecution, format!("re-execution failed: {e}")))?;
    let total = start.elapsed();
    let tokens = &signed.tokens;
    if g.tokens != *tokens {
        let at = g
            .tokens
            .iter()
            .zip(tokens)
            .position(|(a, b)| a != b)
            .unwrap_or(g.tokens.len().min(tokens.len()));
        return fail(
            Check::Reexecution,
            format!(
                "tokens differ from position {at} (local {:?}, receipt {:?}; {} local tokens, {} \
                 in the receipt)",
                g.tokens.get(at),
                tokens.get(at),
                g.tokens.len(),
                tokens.len()
            ),
        );
    }
    if g.text != signed.text {
        return fail(Check::Reexecution, "same tokens but the text differs");
    }
    if g.finish_reason != signed.finish {
        return fail(
            Check::Reexecution,
            format!(
                "finish reason {} locally, {} in the receipt",
                g.finish_reason.name(),
                signed.finish.name()
            ),
        );
    }
    report.ok(
        Check::Reexecution,
        format!(
            "re-executed in {:.2} s (model load {:.2} s; {} prompt + {} generated tokens): \
             identical tokens, text and finish reason",
            total.as_secs_f64(),
            loaded.as_secs_f64(),
            g.prompt_tokens,
            g.tokens.len()
        ),
    );
    Ok(())
}
