//! LLM benchmark: prompt processing (prefill) and greedy decode speed of Verity's runtime and of
//! candle (`quantized_llama`) on the same GGUF file and the same prompt token ids, and the cost
//! of verifying a chat generation by re-execution. Prints one JSON object per line.
//!
//!   verity-llm-bench prompts   <gguf>                 prompt token ids (Verity's tokenizer and
//!                                                     chat template), for every engine
//!   verity-llm-bench verity    <gguf> <prompts.json>  Verity's runtime
//!   verity-llm-bench candle    <gguf> <prompts.json>  candle's quantized llama
//!   verity-llm-bench reexecute <gguf>                 original generation vs load + re-run
//!
//! Environment: BENCH_RUNS (timed runs per measurement, median reported; default 5),
//! BENCH_STEPS (decode steps; default 64), RAYON_NUM_THREADS (threads, both engines).
//! Every measurement is preceded by one untimed warm-up run.

use serde_json::{json, Value};
use std::time::Instant;
use verity_core::{ChatMessage, ChatRequest, ModelId};
use verity_llm::Llm;

/// The short prompt: a fixed chat question (the template adds SmolLM2's system prompt).
const SHORT_QUESTION: &str = "What is the capital of France?";

/// The long prompt: a ~200-token chat message.
const LONG_QUESTION: &str = "Read the following passage and then answer the question after it.\n\n\
The printing press was developed around 1440 by Johannes Gutenberg, a goldsmith from Mainz. \
His system combined a hand mould for casting metal type, an oil-based ink that stuck to metal, \
and a screw press adapted from the ones used to make wine and paper. Before it, books in Europe \
were copied by hand or printed from carved wooden blocks, which made them rare and expensive. \
Within fifty years, printing shops had opened in more than two hundred cities, and millions of \
books were in circulation. Cheaper books helped spread literacy, allowed scientists to share \
their results quickly and exactly, and carried new religious and political ideas across the \
continent. Historians often list the press among the inventions that shaped the modern world.\n\n\
Question: in two sentences, why was the printing press important?";

/// The generation that `reexecute` verifies: a request that runs to its token limit.
const REEXECUTE_QUESTION: &str = "Write a long story about a lighthouse keeper and a storm.";

/// How many of the first greedy tokens are printed for comparison across engines.
const FIRST_TOKENS: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: verity-llm-bench prompts|verity|candle|reexecute <gguf> [prompts.json]";
    let (cmd, gguf) = match (args.get(1), args.get(2)) {
        (Some(c), Some(g)) => (c.as_str(), g.as_str()),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    let prompts = || -> Prompts {
        let path = args.get(3).unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(2)
        });
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let ids = |k: &str| -> Vec<u32> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        };
        Prompts {
            short: ids("short"),
            long: ids("long"),
        }
    };
    let line = match cmd {
        "prompts" => make_prompts(gguf),
        "verity" => bench_verity(gguf, &prompts()),
        "candle" => bench_candle(gguf, &prompts()),
        "reexecute" => bench_reexecute(gguf),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    println!("{line}");
}

struct Prompts {
    short: Vec<u32>,
    long: Vec<u32>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runs() -> usize {
    env_usize("BENCH_RUNS", 5).max(1)
}

fn steps() -> usize {
    env_usize("BENCH_STEPS", 64).max(1)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// One untimed warm-up call, then `runs()` timed calls; returns the seconds of each timed call.
fn timed(mut f: impl FnMut() -> f64) -> Vec<f64> {
    f();
    (0..runs()).map(|_| f()).collect()
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

fn load_verity(gguf: &str) -> Llm {
    let bytes = std::fs::read(gguf)
        .unwrap_or_else(|e| panic!("{gguf}: {e}; run `bash scripts/fetch_smollm2.sh`"));
    Llm::load(&bytes).expect("the GGUF loads in Verity's runtime")
}

fn user(question: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: question.into(),
    }]
}

fn make_prompts(gguf: &str) -> Value {
    let llm = load_verity(gguf);
    let short = llm.prompt(&user(SHORT_QUESTION)).unwrap().tokens().to_vec();
    let long = llm.prompt(&user(LONG_QUESTION)).unwrap().tokens().to_vec();
    json!({
        "short_question": SHORT_QUESTION,
        "long_question": LONG_QUESTION,
        "short": short,
        "long": long,
    })
}

/// What every engine reports, from three closures over its own model: prefill of a token list
/// from an empty cache (returns the last logits), and one decode step (token -> logits).
fn bench_engine(
    engine: &str,
    threads: usize,
    load_s: f64,
    p: &Prompts,
    prefill: &mut dyn FnMut(&[u32]) -> Vec<f32>,
    decode: &mut dyn FnMut(u32) -> Vec<f32>,
    decode_text: &dyn Fn(&[u32]) -> String,
) -> Value {
    let steps = steps();
    let mut time_prefill = |tokens: &[u32]| {
        timed(|| {
            let t = Instant::now();
            let logits = prefill(tokens);
            let s = t.elapsed().as_secs_f64();
            assert!(logits.iter().all(|l| l.is_finite()));
            s
        })
    };
    let short = time_prefill(&p.short);
    let long = time_prefill(&p.long);
    // Decode: prefill the short prompt (untimed), then `steps` greedy steps, each an argmax
    // over the logits and a one-token forward pass.
    let mut generated = vec![];
    let dec = timed(|| {
        let mut logits = prefill(&p.short);
        let mut tokens = Vec::with_capacity(steps);
        let t = Instant::now();
        for _ in 0..steps {
            let token = argmax(&logits);
            tokens.push(token);
            logits = decode(token);
        }
        let s = t.elapsed().as_secs_f64();
        generated = tokens;
        s
    });
    let first: Vec<u32> = generated.iter().copied().take(FIRST_TOKENS).collect();
    let rate = |n: usize, s: &[f64]| n as f64 / median(s.to_vec());
    json!({
        "engine": engine,
        "threads": threads,
        "runs": runs(),
        "load_s": load_s,
        "prefill_short_tokens": p.short.len(),
        "prefill_short_tok_s": rate(p.short.len(), &short),
        "prefill_short_s": short,
        "prefill_long_tokens": p.long.len(),
        "prefill_long_tok_s": rate(p.long.len(), &long),
        "prefill_long_s": long,
        "decode_steps": steps,
        "decode_tok_s": rate(steps, &dec),
        "decode_s": dec,
        "first_tokens": first,
        "first_text": decode_text(&first),
    })
}

fn bench_verity(gguf: &str, p: &Prompts) -> Value {
    let t = Instant::now();
    let llm = load_verity(gguf);
    let load_s = t.elapsed().as_secs_f64();
    let m = llm.model();
    let cache = std::cell::RefCell::new(m.new_cache());
    bench_engine(
        "verity",
        rayon_threads(),
        load_s,
        p,
        &mut |tokens| {
            let mut c = cache.borrow_mut();
            *c = m.new_cache();
            m.forward(tokens, &mut c, false)
        },
        &mut |token| m.forward(&[token], &mut cache.borrow_mut(), false),
        &|ids| llm.tokenizer().decode(ids),
    )
}

/// Threads of the global rayon pool Verity's runtime computes on (RAYON_NUM_THREADS).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn bench_candle(gguf: &str, p: &Prompts) -> Value {
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    let dev = Device::Cpu;
    let t = Instant::now();
    let mut file = std::fs::File::open(gguf)
        .unwrap_or_else(|e| panic!("{gguf}: {e}; run `bash scripts/fetch_smollm2.sh`"));
    let content = gguf_file::Content::read(&mut file).unwrap_or_else(|e| {
        eprintln!("candle: reading the GGUF: {e}");
        std::process::exit(1)
    });
    let model = ModelWeights::from_gguf(content, &mut file, &dev).unwrap_or_else(|e| {
        eprintln!("candle: quantized_llama::ModelWeights::from_gguf: {e}");
        std::process::exit(1)
    });
    let load_s = t.elapsed().as_secs_f64();
    // Only to print the first tokens as text (candle's tokenizer is not used).
    let llm = load_verity(gguf);
    let state = std::cell::RefCell::new((model, 0usize));
    let run = |tokens: &[u32], reset: bool| -> Vec<f32> {
        let mut s = state.borrow_mut();
        let (model, pos) = &mut *s;
        if reset {
            model.clear_kv_cache();
            *pos = 0;
        }
        let input = Tensor::new(tokens, &dev).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, *pos).unwrap_or_else(|e| {
            eprintln!("candle: forward: {e}");
            std::process::exit(1)
        });
        *pos += tokens.len();
        logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap()
    };
    bench_engine(
        "candle",
        candle_core::utils::get_num_threads(),
        load_s,
        p,
        &mut |tokens| run(tokens, true),
        &mut |token| run(&[token], false),
        &|ids| llm.tokenizer().decode(ids),
    )
}

/// Verification by re-execution of a chat generation: what the verifier pays (read the model
/// file, hash it to check the receipt's model id, load it, generate again and compare) against
/// what the serving node paid for the generation itself (model already loaded).
fn bench_reexecute(gguf: &str) -> Value {
    let max_tokens = steps() as u32;
    let request = ChatRequest {
        model: ModelId([0; 32]),
        messages: user(REEXECUTE_QUESTION),
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        stop: vec![],
        json_object: false,
    };
    let served = load_verity(gguf);
    let mut original = None;
    let original_s = timed(|| {
        let t = Instant::now();
        let g = served.generate(&request, &mut |_| true).unwrap();
        let s = t.elapsed().as_secs_f64();
        original = Some(g);
        s
    });
    let original = original.unwrap();
    let mut parts: Vec<[f64; 4]> = vec![];
    let mut identical = true;
    for i in 0..=runs() {
        let t = Instant::now();
        let bytes = std::fs::read(gguf).unwrap();
        let read = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let id = ModelId::of_bytes(&bytes);
        let hash = t.elapsed().as_secs_f64();
        std::hint::black_box(id);
        let t = Instant::now();
        let llm = Llm::load(&bytes).unwrap();
        let load = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let g = llm.generate(&request, &mut |_| true).unwrap();
        let rerun = t.elapsed().as_secs_f64();
        identical &= g == original;
        if i > 0 {
            // i == 0 is the warm-up.
            parts.push([read, hash, load, rerun]);
        }
    }
    let col = |k: usize| median(parts.iter().map(|p| p[k]).collect());
    let total = median(parts.iter().map(|p| p.iter().sum()).collect());
    let orig = median(original_s.clone());
    json!({
        "engine": "verity-reexecute",
        "threads": rayon_threads(),
        "runs": runs(),
        "question": REEXECUTE_QUESTION,
        "max_tokens": max_tokens,
        "prompt_tokens": original.prompt_tokens,
        "generated_tokens": original.tokens.len(),
        "finish_reason": original.finish_reason.name(),
        "original_s": orig,
        "original_runs_s": original_s,
        "read_file_s": col(0),
        "hash_model_s": col(1),
        "load_s": col(2),
        "rerun_s": col(3),
        "verify_total_s": total,
        "rerun_over_original": col(3) / orig,
        "verify_total_over_original": total / orig,
        "bit_identical": identical,
    })
}
