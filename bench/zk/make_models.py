"""Makes the zk benchmark's models (not committed): MLP 784-128-10, MLP 784-256-256-10 and a
LeNet-5-style CNN on 1x28x28, all with seeded random weights, plus 32 calibration samples and one
input each, in Verity's tensor JSON. Usage: python3 bench/zk/make_models.py OUT_DIR"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(11)


def he(shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def save(name, nodes, inits, in_shape, out_shape):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, out / f"{name}.onnx")
    x = rng.random([32] + in_shape[1:], dtype=np.float32)
    tensor = lambda a: {"dtype": "f32", "shape": list(a.shape), "data": [float(v) for v in a.ravel()]}
    json.dump({"input": tensor(x)}, open(out / f"{name}_calib.json", "w"))
    json.dump({"input": tensor(x[:1])}, open(out / f"{name}_input.json", "w"))


def gemm(nodes, inits, prev, a, b, i, relu):
    inits += [numpy_helper.from_array(he((b, a), a), f"w{i}"),
              numpy_helper.from_array((rng.standard_normal(b) * 0.01).astype(np.float32), f"b{i}")]
    y = f"fc{i}" if relu else "logits"
    nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [y], transB=1))
    if relu:
        nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
        y = f"r{i}"
    return y


def mlp(name, dims):
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        prev = gemm(nodes, inits, prev, a, b, i, i < len(dims) - 2)
    save(name, nodes, inits, [1, dims[0]], [1, dims[-1]])


def lenet():
    nodes, inits = [], []
    for i, (cin, cout, pad) in enumerate([(1, 6, 2), (6, 16, 0)]):
        inits += [numpy_helper.from_array(he((cout, cin, 5, 5), cin * 25), f"k{i}"),
                  numpy_helper.from_array((rng.standard_normal(cout) * 0.01).astype(np.float32), f"kb{i}")]
        src = "input" if i == 0 else "p0"
        nodes += [
            helper.make_node("Conv", [src, f"k{i}", f"kb{i}"], [f"c{i}"], kernel_shape=[5, 5], pads=[pad] * 4, strides=[1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"cr{i}"]),
            helper.make_node("MaxPool", [f"cr{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
    nodes.append(helper.make_node("Flatten", ["p1"], ["flat"], axis=1))
    prev = "flat"
    for i, (a, b) in enumerate([(400, 120), (120, 84), (84, 10)]):
        prev = gemm(nodes, inits, prev, a, b, i, i < 2)
    save("lenet5", nodes, inits, [1, 1, 28, 28], [1, 10])


mlp("mlp-784-128-10", [784, 128, 10])
mlp("mlp-784-256-256-10", [784, 256, 256, 10])
lenet()
