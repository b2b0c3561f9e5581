"""EZKL on one model, one process (so peak RSS is the model's own): settings, calibration,
circuit, a locally generated test SRS (gen_srs: no download), setup, witness, prove, verify.
Prints one JSON line. Usage: python ezkl_bench.py NAME MODEL.onnx CALIB.json INPUT.json WORKDIR

Visibility: input private, output public, parameters fixed (the same statement shape as
Verity's: the model is fixed, the output is public). Calibration target "resources"."""
import asyncio
import inspect
import json
import os
import sys
import time

import ezkl


def call(fn, *args, **kwargs):
    r = fn(*args, **kwargs)
    return asyncio.run(r) if inspect.isawaitable(r) else r


name, onnx_path, calib_path, input_path, work = sys.argv[1:6]
os.makedirs(work, exist_ok=True)
p = lambda f: os.path.join(work, f)


def ezkl_input(src, dst, samples):
    t = json.load(open(src))["input"]
    per = len(t["data"]) // t["shape"][0]
    json.dump({"input_data": [t["data"][: per * samples]]}, open(dst, "w"))


ezkl_input(calib_path, p("calib.json"), 8)
ezkl_input(input_path, p("input.json"), 1)
timings = {}


def timed(key, fn, *args, **kwargs):
    t = time.perf_counter()
    r = call(fn, *args, **kwargs)
    timings[key] = time.perf_counter() - t
    return r


args = ezkl.PyRunArgs()
args.input_visibility = "private"
args.output_visibility = "public"
args.param_visibility = "fixed"
timed("gen_settings_s", ezkl.gen_settings, onnx_path, p("settings.json"), py_run_args=args)
timed("calibrate_s", ezkl.calibrate_settings, p("calib.json"), onnx_path, p("settings.json"), "resources")
timed("compile_s", ezkl.compile_circuit, onnx_path, p("network.compiled"), p("settings.json"))
logrows = json.load(open(p("settings.json")))["run_args"]["logrows"]
timed("gen_srs_s", ezkl.gen_srs, p("kzg.srs"), logrows)
timed("setup_s", ezkl.setup, p("network.compiled"), p("vk.key"), p("pk.key"), p("kzg.srs"))
timed("witness_s", ezkl.gen_witness, p("input.json"), p("network.compiled"), p("witness.json"))
timed("prove_only_s", ezkl.prove, p("witness.json"), p("network.compiled"), p("pk.key"), p("proof.json"), p("kzg.srs"))
ok = timed("verify_s", ezkl.verify, p("proof.json"), p("settings.json"), p("vk.key"), p("kzg.srs"))
assert ok, "EZKL proof did not verify"
proof = json.load(open(p("proof.json")))
hex_proof = proof.get("hex_proof") or ""
proof_bytes = len(hex_proof) // 2 - 1 if hex_proof.startswith("0x") else len(bytes(proof["proof"]))
pk_bytes = os.path.getsize(p("pk.key"))
for big in ("pk.key", "kzg.srs"):  # up to GBs per model: keep the disk bounded
    os.remove(p(big))
print(json.dumps({
    "system": "ezkl", "model": name, "logrows": logrows, "proof_bytes": proof_bytes,
    "prove_s": timings["witness_s"] + timings["prove_only_s"],
    "pk_bytes": pk_bytes, **timings,
}))
