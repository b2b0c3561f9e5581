#!/usr/bin/env bash
# zk benchmark, one run on one machine: Verity's STARK prover vs EZKL (Halo2/KZG, PyPI
# ezkl==23.0.5) on the same ONNX models: MLP 784-128-10, MLP 784-256-256-10, a LeNet-5-style
# CNN on 1x28x28, and the digits fixtures (MLP and CNN). Each system proves each model in its
# own process, so peak RSS is per model. Writes bench/zk/out/results.md and the raw JSON lines.
#
# Usage: bash bench/zk/run.sh
# Environment: ZK_PYTHON (a python with ezkl==23.0.5; default: the venv ~/.cache/verity/zk-venv,
# created when missing), BENCH_RUNS (Verity prove/verify runs per model, median; default 3).
# EZKL runs once per model (its setup alone takes minutes on the larger models). EZKL's SRS is
# made locally with gen_srs (a test SRS; nothing is downloaded).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT=bench/zk/out
mkdir -p "$OUT"
RUNS="${BENCH_RUNS:-3}"
VENV="$HOME/.cache/verity/zk-venv"
PY="${ZK_PYTHON:-$VENV/bin/python}"
if ! "$PY" -c "import ezkl" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q ezkl==23.0.5 onnx==1.17.0 numpy
  PY="$VENV/bin/python"
fi
echo "start: $(uptime)" | tee "$OUT/uptime.txt"
python3 bench/zk/make_models.py "$OUT"
CARGO_TARGET_DIR=target cargo build --release --manifest-path bench/zk/Cargo.toml
F=fixtures
MODELS=(
  digits-mlp "$F/digits_mlp.onnx" "$F/digits_calib_mlp.json" "$F/digit_input_mlp.json"
  digits-cnn "$F/digits_cnn.onnx" "$F/digits_calib_cnn.json" "$F/digit_input_cnn.json"
  mlp-784-128-10 "$OUT/mlp-784-128-10.onnx" "$OUT/mlp-784-128-10_calib.json" "$OUT/mlp-784-128-10_input.json"
  mlp-784-256-256-10 "$OUT/mlp-784-256-256-10.onnx" "$OUT/mlp-784-256-256-10_calib.json" "$OUT/mlp-784-256-256-10_input.json"
  lenet5 "$OUT/lenet5.onnx" "$OUT/lenet5_calib.json" "$OUT/lenet5_input.json"
)
: > "$OUT/raw.jsonl"
for ((i = 0; i < ${#MODELS[@]}; i += 4)); do
  name="${MODELS[i]}"; args=("${MODELS[@]:i:4}")
  for system in verity ezkl; do
    if [ "$system" = verity ]; then
      cmd=(./target/release/verity-zk-bench "${args[@]}" "$RUNS")
    else
      cmd=("$PY" bench/zk/ezkl_bench.py "${args[@]}" "$OUT/ezkl-$name")
    fi
    # EZKL prints tables on stdout: the JSON line is the last one.
    /usr/bin/time -f "%M" -o "$OUT/rss.txt" "${cmd[@]}" > "$OUT/stdout.txt"
    tail -n 1 "$OUT/stdout.txt" > "$OUT/line.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['peak_rss_mb']=int(open(sys.argv[2]).read().split()[-1])/1024; print(json.dumps(r))" \
      "$OUT/line.json" "$OUT/rss.txt" | tee -a "$OUT/raw.jsonl"
  done
done
echo "end: $(uptime)" | tee -a "$OUT/uptime.txt"
python3 - "$OUT" <<'PY'
import json, os, platform, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/raw.jsonl")]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
by = {(r["system"], r["model"]): r for r in rows}
models = list(dict.fromkeys(r["model"] for r in rows))
kb = lambda b: f"{b / 1024:.0f} KB" if b >= 10240 else f"{b:,} B"
lines = [
    f"Machine: {cpu}, {os.cpu_count()} cores; both systems use all cores. One process per system and model.",
    "Setup: Verity compiles the circuit and commits its preprocessed columns; EZKL runs `setup` (keys) only "
    "(its calibration and `gen_srs` come on top, see raw.jsonl). Prove includes running the model "
    "(Verity: execution + proof; EZKL: `gen_witness` + `prove`). Verity figures are medians of "
    f"{rows[0].get('runs', 1)} runs; EZKL runs once.",
    "",
    "| model | setup Verity / EZKL | prove Verity / EZKL | prove speedup | verify Verity / EZKL | proof size Verity / EZKL | peak RSS Verity / EZKL |",
    "|---|---|---|---|---|---|---|",
]
for m in models:
    v, e = by.get(("verity", m)), by.get(("ezkl", m))
    if not v or not e:
        continue
    lines.append(
        f"| {m} | {v['setup_s']:.2f} s / {e['setup_s']:.1f} s | {v['prove_s']:.2f} s / {e['prove_s']:.1f} s "
        f"| **{e['prove_s'] / v['prove_s']:.0f}x** | {v['verify_s'] * 1e3:.1f} ms / {e['verify_s'] * 1e3:.0f} ms "
        f"| {kb(v['proof_bytes'])} / {kb(e['proof_bytes'])} | {v['peak_rss_mb']:.0f} MB / {e['peak_rss_mb']:.0f} MB |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
