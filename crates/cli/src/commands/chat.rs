//! `verity chat`: OpenAI-format requests to a node's `/v1/chat/completions`, tokens printed as
//! they stream in, and every answer's receipt checked offline before the turn counts: the
//! signature and hashes, the printed text equal to the signed text, and the signed request
//! equal to what was asked (same messages and parameters).

use super::{write_file, Ctx};
use crate::client::NodeClient;
use crate::fetch;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use verity_core::wire::{ChatCompletionRequest, ChatReceipt, ResponseFormat};
use verity_core::{ChatMessage, ModelFormat, ModelId};
use verity_verify::chat::SignedAnswer;
use verity_verify::Report;

/// Chat with a language model on the node (OpenAI's chat API), streaming the answer and
/// verifying its receipt. Without -m, an interactive conversation over stdin.
#[derive(Args)]
pub struct ChatArgs {
    /// Model id, name@version or name.
    #[arg(long, default_value = fetch::NAME)]
    model: String,
    /// A user message; several -m are successive turns of one conversation.
    #[arg(long = "message", short = 'm', value_name = "MESSAGE")]
    messages: Vec<String>,
    /// A system message that starts the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate per answer (default: what the context leaves).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature in [0, 2]; 0 is greedy (default 1).
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling threshold in (0, 1] (default 1).
    #[arg(long)]
    top_p: Option<f32>,
    /// Sample among the k most likely tokens only (default 0: all).
    #[arg(long)]
    top_k: Option<u32>,
    /// Sampling seed (default: 0 when greedy, random otherwise; the receipt states it).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop before this string (up to 4).
    #[arg(long)]
    stop: Vec<String>,
    /// Constrain the answer to one JSON object (response_format json_object).
    #[arg(long)]
    json: bool,
    /// Write the last answer's receipt and request as JSON (for `verity verify`).
    #[arg(long, value_name = "FILE")]
    receipt_out: Option<PathBuf>,
    /// Wait for the whole answer instead of streaming it.
    #[arg(long)]
    no_stream: bool,
}

/// What one turn produced, checked.
struct Answer {
    verity: ChatReceipt,
    signed: SignedAnswer,
}

impl ChatArgs {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let client = ctx.client()?;
        let manifest = client
            .show(&self.model)
            .with_context(|| format!("model `{}`", self.model))?;
        if manifest.format != ModelFormat::Gguf {
            bail!(
                "{}@{} ({}) is not a language model; chat needs a GGUF model such as smollm2 \
                 (`verity model fetch smollm2 --publish {}`)",
                manifest.name,
                manifest.version,
                manifest.id,
                ctx.node
            );
        }
        let mut asked = self.request(manifest.id)?;
        if !self.messages.is_empty() {
            // Each -m is one turn of a scripted conversation.
            for m in &self.messages {
                self.turn(&client, manifest.id, &mut asked, m)?;
            }
            return Ok(());
        }
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        if interactive {
            eprintln!(
                "chatting with {}@{} on {}; an empty line is skipped, Ctrl-D or /exit ends",
                manifest.name, manifest.version, ctx.node
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
            if let Err(e) = self.turn(&client, manifest.id, &mut asked, line) {
                if !interactive {
                    return Err(e);
                }
                // The turn is dropped from the conversation; the next one can go on.
                eprintln!("error: {e:#}");
            }
        }
        Ok(())
    }

    /// The request every turn sends, its messages aside.
    fn request(&self, model: ModelId) -> Result<ChatCompletionRequest> {
        let system = self.system.iter().map(|s| ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
        Ok(ChatCompletionRequest {
            model: model.to_string(),
            messages: system.collect(),
            stream: !self.no_stream,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            // A sampled request carries our own random seed, so the node cannot pick the
            // seed (and with it the answer) it prefers.
            seed: match (self.seed, self.temperature) {
                (None, t) if t != Some(0.0) => Some(verity_core::random_nonce()?),
                (s, _) => s,
            },
            stop: self.stop.clone(),
            response_format: self.json.then(|| ResponseFormat {
                kind: "json_object".into(),
            }),
            stream_options: None,
        })
    }

    /// Sends the conversation plus `user`, prints the answer, checks its receipt, and on
    /// success adds both messages to the conversation.
    fn turn(
        &self,
        client: &NodeClient,
        model: ModelId,
        asked: &mut ChatCompletionRequest,
        user: &str,
    ) -> Result<()> {
        let mut body = asked.clone();
        body.messages.push(ChatMessage {
            role: "user".into(),
            content: user.to_string(),
        });
        let mut report = Report::default();
        let answer = if body.stream {
            stream(client, &body, &mut report)?
        } else {
            complete(client, &body, &mut report)?
        };
        verity_verify::chat::request_matches(&body, model, &answer.verity.request, &mut report)?;
        let r = &answer.verity.receipt;
        eprintln!(
            "verified receipt {} by node {}: {} tokens, finish {}",
            r.id(),
            r.node,
            answer.signed.tokens.len(),
            answer.signed.finish.name()
        );
        if let Some(path) = &self.receipt_out {
            write_file(path, &serde_json::to_vec_pretty(&answer.verity)?)?;
        }
        body.messages.push(ChatMessage {
            role: "assistant".into(),
            content: answer.signed.text,
        });
        *asked = body;
        Ok(())
    }
}

/// Streams the answer to stdout as it arrives; the final chunk's receipt is then checked.
fn stream(
    client: &NodeClient,
    body: &ChatCompletionRequest,
    report: &mut Report,
) -> Result<Answer> {
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    let mut finish = None;
    let mut verity = None;
    client.chat_stream(body, &mut |chunk| {
        if chunk.verity.is_some() {
            verity = chunk.verity;
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            if let Some(delta) = choice.delta.content {
                text.push_str(&delta);
                out.write_all(delta.as_bytes())?;
                out.flush()?;
            }
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason;
            }
        }
        Ok(())
    })?;
    writeln!(out)?;
    let Some(verity) = verity else {
        bail!("the stream ended without a receipt (no `verity` member in its final chunk)")
    };
    checked(verity, &text, finish.as_deref(), report)
}

/// The whole answer at once; its compact receipt header must agree with the body's receipt.
fn complete(
    client: &NodeClient,
    body: &ChatCompletionRequest,
    report: &mut Report,
) -> Result<Answer> {
    let (resp, header) = client.chat(body)?;
    let choice = resp.choices.first().context("the answer has no choices")?;
    let answer = checked(
        resp.verity.clone(),
        &choice.message.content,
        Some(&choice.finish_reason),
        report,
    )?;
    if let Some(h) = header {
        verity_verify::chat::compact_header(&h, &answer.verity.receipt)?;
    }
    println!("{}", choice.message.content);
    Ok(answer)
}

/// Checks a receipt offline against the text that was shown and the finish reason given.
fn checked(
    verity: ChatReceipt,
    shown: &str,
    finish: Option<&str>,
    report: &mut Report,
) -> Result<Answer> {
    let signed = verity_verify::chat::receipt(&verity, None, report)?;
    verity_verify::chat::shown(&signed, shown, finish, report)?;
    Ok(Answer { verity, signed })
}
