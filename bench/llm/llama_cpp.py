"""llama.cpp (through llama-cpp-python, pinned 0.3.36) on the same GGUF and the same prompt token
ids as the Rust side (bench/llm/src/main.rs): prefill tokens/s (eval of the prompt after reset())
and greedy decode tokens/s (one eval per token, argmax of the last logits). Prints one JSON line.

Usage: python llama_cpp.py MODEL.gguf prompts.json
Environment: BENCH_RUNS (default 5), BENCH_STEPS (default 64), BENCH_THREADS (default 2).
Every measurement is preceded by one untimed warm-up run; the median of the timed runs counts.
"""
import json, os, statistics, sys, time

import numpy as np

# This file is itself named llama_cpp.py: drop its folder from the import path so that
# `import llama_cpp` finds the package, not this script.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import llama_cpp  # noqa: E402

RUNS = max(1, int(os.environ.get("BENCH_RUNS", "5")))
STEPS = max(1, int(os.environ.get("BENCH_STEPS", "64")))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
FIRST_TOKENS = 16

gguf, prompts_path = sys.argv[1], sys.argv[2]
prompts = json.load(open(prompts_path))
short, long = prompts["short"], prompts["long"]

t = time.perf_counter()
# logits_all=False: only the last position's logits are computed, as in Verity and candle.
m = llama_cpp.Llama(gguf, n_ctx=512, n_batch=512, n_threads=THREADS, n_threads_batch=THREADS,
                    logits_all=False, verbose=False)
load_s = time.perf_counter() - t
n_vocab = m.n_vocab()


def last_logits():
    return np.ctypeslib.as_array(m._ctx.get_logits_ith(-1), shape=(n_vocab,))


def prefill(tokens):
    m.reset()
    m.eval(tokens)
    return last_logits()


def timed(f):
    f()  # warm-up
    return [f() for _ in range(RUNS)]


def time_prefill(tokens):
    def run():
        t = time.perf_counter()
        logits = prefill(tokens)
        s = time.perf_counter() - t
        assert np.isfinite(logits).all()
        return s
    return timed(run)


generated = []


def decode_run():
    global generated
    logits = prefill(short)
    tokens = []
    t = time.perf_counter()
    for _ in range(STEPS):
        token = int(np.argmax(logits))
        tokens.append(token)
        m.eval([token])
        logits = last_logits()
    s = time.perf_counter() - t
    generated = tokens
    return s


short_s = time_prefill(short)
long_s = time_prefill(long)
decode_s = timed(decode_run)
first = generated[:FIRST_TOKENS]
print(json.dumps({
    "engine": "llama.cpp",
    "llama_cpp_python": llama_cpp.__version__,
    "threads": THREADS,
    "runs": RUNS,
    "load_s": load_s,
    "prefill_short_tokens": len(short),
    "prefill_short_tok_s": len(short) / statistics.median(short_s),
    "prefill_short_s": short_s,
    "prefill_long_tokens": len(long),
    "prefill_long_tok_s": len(long) / statistics.median(long_s),
    "prefill_long_s": long_s,
    "decode_steps": STEPS,
    "decode_tok_s": STEPS / statistics.median(decode_s),
    "decode_s": decode_s,
    "first_tokens": first,
    "first_text": m.detokenize(first).decode("utf-8", "replace"),
}))
