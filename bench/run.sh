#!/usr/bin/env bash
# Canonical int8 engine vs onnxruntime (float) vs tract (float), same machine, one run.
# Usage: bash bench/run.sh        (writes bench/out/results.md)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
mkdir -p "$OUT"
python3 -c "import onnxruntime, onnx, numpy" 2>/dev/null || pip install -q onnxruntime onnx numpy
python3 bench/make_models.py "$OUT"
F=fixtures
MODELS=(
  digits-mlp "$F/digits_mlp.onnx" "$F/digits_calib_mlp.json" "$F/digit_input_mlp.json"
  digits-cnn "$F/digits_cnn.onnx" "$F/digits_calib_cnn.json" "$F/digit_input_cnn.json"
  mlp-784-256-256-10 "$OUT/mlp784.onnx" "$OUT/mlp784_calib.json" "$OUT/mlp784_input.json"
)
CARGO_TARGET_DIR=target cargo build --release --manifest-path bench/Cargo.toml
ORT_DYLIB=$(python3 -c "import onnxruntime, os, glob; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*'))[0])")
export ORT_DYLIB
./target/release/verity-bench "${MODELS[@]}" > "$OUT/rust.jsonl"
ORT_ARGS=()
for ((i = 0; i < ${#MODELS[@]}; i += 4)); do ORT_ARGS+=("${MODELS[i]}" "${MODELS[i+1]}" "${MODELS[i+3]}"); done
python3 bench/ort_bench.py "${ORT_ARGS[@]}" > "$OUT/ort.jsonl"
python3 - "$OUT" <<'PY'
import json, sys, platform, os
out = sys.argv[1]
rows = [json.loads(l) for f in ("rust.jsonl", "ort.jsonl") for l in open(f"{out}/{f}")]
models = list(dict.fromkeys(r["model"] for r in rows))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
lines = [f"Machine: {cpu}, {os.cpu_count()} cores. Median latency per inference (µs), batch 1. "
         "verity, tract and onnxruntime (1 thread) are interleaved in one process; onnxruntime with its "
         "default thread pool and the Python API are measured separately.", "",
         "| model | verity-int8 (canonical, bit-exact) | onnxruntime f32, 1 thread | onnxruntime f32, default | onnxruntime f32, Python | tract f32 | ort 1T / verity | ort default / verity | tract / verity |",
         "|---|---|---|---|---|---|---|---|---|"]
for m in models:
    by = {r["engine"]: r["median_us"] for r in rows if r["model"] == m}
    v, o1, od, t = by["verity-int8"], by["onnxruntime-capi-f32-1thread"], by["onnxruntime-capi-f32-default"], by["tract-f32"]
    op = next(us for e, us in by.items() if e.startswith("onnxruntime-1"))
    lines.append(f"| {m} | {v:.1f} | {o1:.1f} | {od:.1f} | {op:.1f} | {t:.1f} | {o1 / v:.2f}x | {od / v:.2f}x | {t / v:.2f}x |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
