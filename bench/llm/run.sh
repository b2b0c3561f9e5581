#!/usr/bin/env bash
# LLM benchmark, one run on one machine and one GGUF file (SmolLM2-135M-Instruct Q4_1):
# prefill and greedy-decode tokens/s of Verity's runtime, llama.cpp (llama-cpp-python) and
# candle (quantized_llama) on the same prompt token ids, and the cost of verifying a chat
# generation by re-execution. Writes bench/llm/out/results.md (and the raw JSON lines beside it).
#
# Usage: bash bench/llm/run.sh
# Environment: BENCH_THREADS (default: the machine's cores), BENCH_RUNS (timed runs per figure,
# median reported; default 5), BENCH_STEPS (decode steps and re-executed tokens; default 64),
# LLM_PYTHON (a python with llama-cpp-python==0.3.36; default: the venv
# ~/.cache/verity/llm-venv, created from bench/llm/requirements.txt when missing).
#
# Notes: every engine gets the same threads (RAYON_NUM_THREADS for Verity and candle, whose
# quantized matmuls use a spin-barrier pool sized from it; n_threads/n_threads_batch for
# llama.cpp, an OpenMP build). llama.cpp and candle spin-wait between operations, so their figures
# collapse when other processes compete for the cores: run on an idle machine (see the uptime lines).
# candle 0.11.1 has x86 SIMD kernels for Q4_0, Q8_0 and the K-quants but not for Q4_1, which this
# file's layers use: its Q4_1 matmuls run the generic scalar dot product.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT=bench/llm/out
mkdir -p "$OUT"
THREADS="${BENCH_THREADS:-$(nproc)}"
export BENCH_RUNS="${BENCH_RUNS:-5}" BENCH_STEPS="${BENCH_STEPS:-64}" BENCH_THREADS="$THREADS"
export RAYON_NUM_THREADS="$THREADS"   # Verity's rayon pool; candle reads it too
unset CANDLE_NUM_THREADS
echo "start: $(uptime)" | tee "$OUT/uptime.txt"

GGUF="$(bash scripts/fetch_smollm2.sh)"

VENV="${VERITY_CACHE:-$HOME/.cache/verity}/llm-venv"
PY="${LLM_PYTHON:-$VENV/bin/python}"
if ! "$PY" -c "import llama_cpp, numpy" 2>/dev/null; then
  echo "installing llama-cpp-python into $VENV (builds llama.cpp: several minutes)" >&2
  python3 -m venv "$VENV"
  PY="$VENV/bin/python"
  "$PY" -m pip install --quiet -r bench/llm/requirements.txt
fi

# The main target dir is shared so that the Verity crates' builds are reused.
export CARGO_TARGET_DIR="$ROOT/target"
t0=$(date +%s)
cargo build --release --manifest-path bench/llm/Cargo.toml
echo "cargo build --release (bench/llm): $(( $(date +%s) - t0 )) s" | tee "$OUT/build.txt"
BIN="$CARGO_TARGET_DIR/release/verity-llm-bench"

"$BIN" prompts "$GGUF" > "$OUT/prompts.json"
: > "$OUT/results.jsonl"
echo "verity..." >&2
"$BIN" verity "$GGUF" "$OUT/prompts.json" >> "$OUT/results.jsonl"
echo "llama.cpp..." >&2
"$PY" bench/llm/llama_cpp.py "$GGUF" "$OUT/prompts.json" >> "$OUT/results.jsonl"
echo "candle..." >&2
if ! "$BIN" candle "$GGUF" "$OUT/prompts.json" >> "$OUT/results.jsonl" 2> "$OUT/candle.err"; then
  cat "$OUT/candle.err" >&2
  python3 -c 'import json,sys; print(json.dumps({"engine": "candle", "error": open(sys.argv[1]).read().strip()}))' \
    "$OUT/candle.err" >> "$OUT/results.jsonl"
fi
echo "verity re-execution..." >&2
"$BIN" reexecute "$GGUF" >> "$OUT/results.jsonl"
echo "end: $(uptime)" | tee -a "$OUT/uptime.txt"

python3 - "$OUT" "$THREADS" <<'PY'
import json, sys
out, threads = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(f"{out}/results.jsonl") if l.strip()]
by = {r["engine"]: r for r in rows}
prompts = json.load(open(f"{out}/prompts.json"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
uptime = [l.strip() for l in open(f"{out}/uptime.txt")]
ok = [r for r in rows if "error" not in r and r["engine"] != "verity-reexecute"]
ns, nl, steps = (ok[0]["prefill_short_tokens"], ok[0]["prefill_long_tokens"], ok[0]["decode_steps"]) if ok else (len(prompts["short"]), len(prompts["long"]), "?")
runs = ok[0]["runs"] if ok else "?"
def cell(text):
    return "`" + text.replace("\n", "⏎").replace("|", "\\|").replace("`", "'") + "`"
lines = [
    f"Machine: {cpu}, {threads} threads for every engine. SmolLM2-135M-Instruct Q4_1 GGUF, the same "
    f"prompt token ids for every engine (Verity's tokenizer and chat template). Median of {runs} runs "
    f"after one warm-up run; prefill = one forward pass over the prompt from an empty cache (last "
    f"position's logits only); decode = {steps} greedy steps after the {ns}-token prompt, one token at a time.",
    "",
    f"`uptime` at the {uptime[0]}  ",
    f"`uptime` at the {uptime[-1]}",
    "",
    f"| engine | prefill tok/s ({ns}-tok prompt) | prefill tok/s ({nl}-tok prompt) | decode tok/s | first tokens (greedy) |",
    "|---|---|---|---|---|",
]
names = {"verity": "Verity (bit-exact)", "llama.cpp": "llama.cpp (llama-cpp-python {v})", "candle": "candle 0.11.1 quantized_llama"}
for e in ("verity", "llama.cpp", "candle"):
    r = by.get(e)
    if r is None:
        continue
    name = names[e].format(v=r.get("llama_cpp_python", ""))
    if "error" in r:
        lines.append(f"| {name} | failed | | | {cell(r['error'][:200])} |")
        continue
    lines.append(f"| {name} | {r['prefill_short_tok_s']:.1f} | {r['prefill_long_tok_s']:.1f} | "
                 f"{r['decode_tok_s']:.1f} | {cell(r['first_text'])} |")
lines.append("")
for e in ("verity", "llama.cpp", "candle"):
    r = by.get(e)
    if r and "error" not in r:
        lines.append(f"- {e} first token ids: {r['first_tokens']}")
v, l = by.get("verity"), by.get("llama.cpp")
if v and l and "error" not in l:
    lines.append("")
    lines.append(f"Verity / llama.cpp: decode {v['decode_tok_s'] / l['decode_tok_s']:.2f}x, "
                 f"prefill {v['prefill_short_tok_s'] / l['prefill_short_tok_s']:.2f}x ({ns} tokens), "
                 f"{v['prefill_long_tok_s'] / l['prefill_long_tok_s']:.2f}x ({nl} tokens).")
x = by.get("verity-reexecute")
if x:
    lines += [
        "",
        f"Verification by re-execution (`--reexecute`) of a greedy chat generation of "
        f"{x['generated_tokens']} tokens (finish: {x['finish_reason']}; prompt {x['prompt_tokens']} tokens), "
        f"median of {x['runs']} runs:",
        "",
        "| step | seconds | vs. the original generation |",
        "|---|---|---|",
        f"| original generation (node, model already loaded) | {x['original_s']:.3f} | 1.00x |",
        f"| verifier: read the model file (page cache warm) | {x['read_file_s']:.3f} | {x['read_file_s'] / x['original_s']:.2f}x |",
        f"| verifier: hash it (BLAKE3 model id) | {x['hash_model_s']:.3f} | {x['hash_model_s'] / x['original_s']:.2f}x |",
        f"| verifier: load (parse GGUF, prepare weights, tokenizer) | {x['load_s']:.3f} | {x['load_s'] / x['original_s']:.2f}x |",
        f"| verifier: re-run the generation | {x['rerun_s']:.3f} | {x['rerun_over_original']:.2f}x |",
        f"| verifier: total | {x['verify_total_s']:.3f} | {x['verify_total_over_original']:.2f}x |",
        "",
        f"Re-executed output bit-identical to the original (tokens, text, logits fingerprint): {x['bit_identical']}.",
    ]
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
