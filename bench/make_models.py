"""Makes the benchmark-only models (not committed): a 784-256-256-10 MLP with seeded random
weights, its calibration samples and one input. Usage: python3 bench/make_models.py OUT_DIR"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
dims = [784, 256, 256, 10]
nodes, inits, prev = [], [], "input"
for i, (a, b) in enumerate(zip(dims, dims[1:])):
    w = (rng.standard_normal((b, a)) * np.sqrt(2.0 / a)).astype(np.float32)
    bias = (rng.standard_normal(b) * 0.01).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
    y = f"h{i}" if i < len(dims) - 2 else "logits"
    nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [y], transB=1))
    if i < len(dims) - 2:
        nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
        y = f"r{i}"
    prev = y
graph = helper.make_graph(
    nodes, "mlp784", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 784])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, out / "mlp784.onnx")
x = rng.random((64, 784), dtype=np.float32)
json.dump({"input": {"dtype": "f32", "shape": [64, 784], "data": [float(v) for v in x.ravel()]}},
          open(out / "mlp784_calib.json", "w"))
json.dump({"input": {"dtype": "f32", "shape": [1, 784], "data": [float(v) for v in x[0]]}},
          open(out / "mlp784_input.json", "w"))
