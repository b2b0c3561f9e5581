"""Times onnxruntime (float, default session options) on NAME MODEL INPUT triples, same
method as the Rust harness: warm-up, then the median per-call latency over >= 1.5 s."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

args = sys.argv[1:]
for name, model, inp in zip(args[0::3], args[1::3], args[2::3]):
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {k: np.array(v["data"], dtype=np.float32).reshape(v["shape"]) for k, v in json.load(open(inp)).items()}
    for _ in range(50):
        sess.run(None, feed)
    samples, start = [], time.perf_counter()
    while len(samples) < 200 or time.perf_counter() - start < 1.5:
        t = time.perf_counter_ns()
        sess.run(None, feed)
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    print(json.dumps({"model": name, "engine": f"onnxruntime-{ort.__version__}-f32",
                      "median_us": samples[len(samples) // 2], "iters": len(samples)}))
