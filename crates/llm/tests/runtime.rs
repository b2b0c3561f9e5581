//! The LLM runtime on the real SmolLM2 GGUF:
//! - correctness against llama.cpp (fixtures/llm/generation_reference.json, made by
//!   scripts/llm_generation_reference.py with llama-cpp-python): same prompt tokens, the same
//!   greedy start, and high top-1 agreement when both read llama.cpp's continuation;
//! - determinism: same tokens and logits fingerprint across runs and thread counts, and under
//!   `qemu-x86_64 -cpu` for older CPU models (scalar kernels, no AVX2) and `VERITY_ISA` caps
//!   versus the host;
//! - seeded sampling is reproducible, JSON mode yields a JSON object, stop strings cut.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use verity_core::{ChatMessage, ChatRequest, FinishReason, ModelId};
use verity_llm::Llm;

fn llm() -> &'static Llm {
    static LLM: OnceLock<Llm> = OnceLock::new();
    LLM.get_or_init(|| {
        let path = common::smollm2_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `bash scripts/fetch_smollm2.sh`",
                path.display()
            )
        });
        Llm::load(&bytes).expect("SmolLM2 loads")
    })
}

fn request(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: ModelId([0; 32]),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: question.into(),
        }],
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        stop: vec![],
        json_object: false,
    }
}

fn generate(r: &ChatRequest) -> verity_llm::Generation {
    let mut streamed = String::new();
    let g = llm()
        .generate(r, &mut |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(streamed, g.text, "streamed pieces add up to the text");
    g
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_generation_agrees_with_llama_cpp() {
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/llm/generation_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect()
    };
    let model = llm().model();
    let (mut agree, mut total, mut first_tokens_equal) = (0, 0, 0);
    let mut prefixes = vec![];
    for p in reference["prompts"].as_array().unwrap() {
        let question = p["question"].as_str().unwrap();
        let expected_prompt = ids(&p["prompt"]);
        let greedy = ids(&p["greedy"]);
        let r = request(question, greedy.len() as u32);
        assert_eq!(
            llm().prompt(&r.messages).unwrap().tokens(),
            expected_prompt,
            "prompt tokens for {question:?}"
        );
        // Free-running greedy generation: how long it stays on llama.cpp's path.
        let ours = generate(&r).tokens;
        let prefix = ours.iter().zip(&greedy).take_while(|(a, b)| a == b).count();
        prefixes.push(prefix);
        first_tokens_equal += (ours.first() == greedy.first()) as usize;
        // Teacher-forced: both read llama.cpp's tokens; compare the next-token choice.
        let mut cache = model.new_cache();
        let mut input = expected_prompt.clone();
        input.extend(&greedy[..greedy.len() - 1]);
        let logits = model.forward(&input, &mut cache, true);
        let vocab = model.config.vocab;
        for (i, expected) in greedy.iter().enumerate() {
            let row = expected_prompt.len() - 1 + i;
            agree += (argmax(&logits[row * vocab..(row + 1) * vocab]) == *expected) as usize;
            total += 1;
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "top-1 agreement with llama.cpp: {agree}/{total} = {:.1} %; greedy prefixes equal to \
         llama.cpp's: {prefixes:?} tokens; first token equal in {first_tokens_equal}/{}",
        100.0 * rate,
        prefixes.len()
    );
    // Where the two differ, llama.cpp's own top two logits are within ~0.1 of each other
    // (e.g. prompts 1 and 5, first token): quantization noise decides, in either engine.
    assert!(rate >= 0.9, "top-1 agreement {rate}");
    assert!(first_tokens_equal >= prefixes.len() / 2);
    // The first prompt's greedy start is llama.cpp's, token for token.
    assert!(prefixes[0] >= 6, "{prefixes:?}");
}

#[test]
fn same_tokens_and_logits_across_runs_and_thread_counts() {
    let r = request("Name two planets.", 12);
    let first = generate(&r);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let again = pool.install(|| generate(&r));
        assert_eq!(again, first, "{threads} threads");
    }
    // Prompt processing in one batch equals feeding the tokens one at a time.
    let model = llm().model();
    let prompt = llm().prompt(&r.messages).unwrap().tokens().to_vec();
    let mut batch = model.new_cache();
    let batched = model.forward(&prompt, &mut batch, false);
    let mut single = model.new_cache();
    let mut last = vec![];
    for t in &prompt {
        last = model.forward(&[*t], &mut single, false);
    }
    assert!(batched
        .iter()
        .zip(&last)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn seeded_sampling_is_reproducible_and_the_seed_matters() {
    let mut r = request("Tell me a story about a dragon.", 16);
    r.temperature = 0.9;
    r.top_p = 0.95;
    r.top_k = 50;
    r.seed = 7;
    let a = generate(&r);
    assert_eq!(generate(&r), a);
    let others: Vec<Vec<u32>> = (8..11)
        .map(|seed| {
            r.seed = seed;
            generate(&r).tokens
        })
        .collect();
    assert!(
        others.iter().any(|t| *t != a.tokens),
        "seeds change samples"
    );
}

#[test]
fn json_mode_produces_one_json_object() {
    let mut r = request("Describe a cat as JSON with the keys name and age.", 64);
    r.json_object = true;
    let g = generate(&r);
    eprintln!("json mode: {:?} ({:?})", g.text, g.finish_reason);
    if g.finish_reason == FinishReason::Stop {
        let v: serde_json::Value = serde_json::from_str(&g.text).expect("complete JSON");
        assert!(v.is_object());
    } else {
        assert!(g.text.trim_start().starts_with('{'));
    }
}

#[test]
fn stop_strings_and_max_tokens_end_generation() {
    let mut r = request("Count from 1 to 20.", 40);
    let full = generate(&r);
    // A stop string taken from the middle of the answer cuts it at its first occurrence.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut_at = full.text.find(&stop).unwrap();
    r.stop = vec![stop];
    let stopped = generate(&r);
    assert_eq!(stopped.text, full.text[..cut_at]);
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    r.stop.clear();
    r.max_tokens = 3;
    let short = generate(&r);
    assert_eq!(
        (short.tokens.len(), short.finish_reason),
        (3, FinishReason::Length)
    );
    assert_eq!(short.tokens[..], full.tokens[..3]);
    // A prompt made for other messages cannot serve this request.
    let other = llm()
        .prompt(&request("Something else.", 1).messages)
        .unwrap();
    assert!(matches!(
        llm().generate_from(&r, &other, &mut |_| true),
        Err(verity_llm::LlmError::InvalidRequest(_))
    ));
    // Context overflow is an error, not a truncation.
    r.messages[0].content = "word ".repeat(3000);
    r.max_tokens = 10;
    assert!(matches!(
        llm().generate(&r, &mut |_| true),
        Err(verity_llm::LlmError::ContextFull { .. })
    ));
}

/// The numerics are pinned: any change to them (docs/llm-semantics.md) changes this
/// fingerprint, and must come with a new runtime version.
#[test]
fn logits_fingerprint_is_pinned() {
    let g = generate(&request("Hi", 2));
    assert_eq!(
        g.logits_hash.to_hex(),
        "ea20cb92d57e97e61419870ebd8b6976afbf9512747c457359f85c328d493047"
    );
    assert_eq!(verity_llm::RUNTIME_VERSION, "1");
    // Sampling (libm exp, the BLAKE3 stream) and a system message are pinned too.
    let mut r = request("Write a word.", 4);
    r.messages.insert(
        0,
        ChatMessage {
            role: "system".into(),
            content: "Answer briefly.".into(),
        },
    );
    (r.temperature, r.top_p, r.top_k, r.seed) = (0.8, 0.9, 40, 7);
    let g = generate(&r);
    assert_eq!(g.tokens, [49, 103, 14143, 30]);
    assert_eq!(
        g.logits_hash.to_hex(),
        "3c2a5377b23e867112be6b4784bcc63d79af0674ddda764f2a9c447b79f5446a"
    );
}

/// Child side of the cross-CPU test: prints the fingerprint of a short generation.
#[test]
fn print_fingerprint_for_cross_cpu_check() {
    if std::env::var_os("VERITY_LLM_FINGERPRINT_CHILD").is_none() {
        return;
    }
    let g = generate(&request("Hi", 2));
    println!("FINGERPRINT {} {:?}", g.logits_hash, g.tokens);
}

#[test]
fn logits_identical_under_emulated_older_cpus() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIPPED: host is not x86_64");
        return;
    }
    if Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "qemu-x86_64 is required in CI (apt-get install qemu-user)"
        );
        eprintln!("SKIPPED: qemu-x86_64 not installed (apt-get install qemu-user)");
        return;
    }
    let me = std::env::current_exe().unwrap();
    // `isa` caps the kernels through the one switch (`VERITY_ISA`).
    let run = |qemu_cpu: Option<&str>, isa: Option<&str>| -> String {
        let mut c = match qemu_cpu {
            Some(cpu) => {
                let mut c = Command::new("qemu-x86_64");
                c.args(["-cpu", cpu]).arg(&me);
                c
            }
            None => Command::new(&me),
        };
        c.args([
            "--exact",
            "print_fingerprint_for_cross_cpu_check",
            "--nocapture",
        ])
        .env("VERITY_LLM_FINGERPRINT_CHILD", "1")
        .env("RAYON_NUM_THREADS", "2");
        if let Some(isa) = isa {
            c.env(verity_core::isa::ISA_VAR, isa);
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{qemu_cpu:?}: {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.lines()
            .find(|l| l.starts_with("FINGERPRINT"))
            .unwrap_or_else(|| panic!("no fingerprint from {qemu_cpu:?}: {out}"))
            .to_string()
    };
    let host = run(None, None);
    // The narrower kernels on this CPU.
    for isa in ["portable", "avx2"] {
        assert_eq!(run(None, Some(isa)), host, "VERITY_ISA={isa} vs host");
    }
    // Nehalem: SSE4.2, no AVX (scalar kernels). Haswell: AVX2 (the SIMD kernels).
    for cpu in ["Nehalem", "Haswell"] {
        assert_eq!(run(Some(cpu), None), host, "{cpu} vs host");
    }
}
