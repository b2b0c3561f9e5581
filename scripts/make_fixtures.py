#!/usr/bin/env python3
"""Generate the small, committed test fixtures in `fixtures/`.

Reproducible: every random draw is seeded, BLAS is pinned to one thread and
all outputs are serialised in a fixed order, so running this script twice
yields byte-identical files.

    python3 scripts/make_fixtures.py

Requires: numpy, scikit-learn, onnx (1.17), onnxruntime.
"""

import os

# Pin BLAS/OpenMP to a single thread *before* numpy is imported so that the
# floating-point reduction order (and hence the trained weights) is identical
# on every run and every machine configuration.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures"

OPSET = 13
IR_VERSION = 8
N_CALIB = 200
ORT_TOL = 1e-4


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def fmt_f32(v) -> str:
    """Shortest decimal string that round-trips to the same float32."""
    s = str(np.float32(v))
    if s in ("nan", "inf", "-inf"):
        raise ValueError(f"non-finite value {v}")
    return s


def json_f32_list(arr) -> str:
    return "[" + ",".join(fmt_f32(v) for v in np.asarray(arr, np.float32).ravel()) + "]"


def json_int_list(arr) -> str:
    return "[" + ",".join(str(int(v)) for v in np.asarray(arr).ravel()) + "]"


def tensor_json(arr) -> str:
    arr = np.asarray(arr, np.float32)
    return (
        '{"dtype":"f32","shape":'
        + json_int_list(arr.shape)
        + ',"data":'
        + json_f32_list(arr)
        + "}"
    )


def write_text(name: str, text: str) -> None:
    path = OUT / name
    path.write_text(text, encoding="utf-8", newline="\n")
    # Sanity: every JSON file must parse.
    if name.endswith(".json"):
        json.loads(text)


def write_input_file(name: str, arr) -> None:
    write_text(name, '{"input":' + tensor_json(arr) + "}\n")


def save_model(model: onnx.ModelProto, name: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    (OUT / name).write_bytes(model.SerializeToString(deterministic=True))


def init(name: str, arr) -> TensorProto:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    return numpy_helper.from_array(arr, name=name)


def make_model(nodes, inits, in_shape, out_name, out_shape, graph_name) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="verity-make_fixtures",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    return model


def ort_session(name: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(OUT / name), so, providers=["CPUExecutionProvider"])


def ort_run_each(sess: ort.InferenceSession, xs: np.ndarray, in_shape) -> np.ndarray:
    """Run the batch-1 model sample by sample; returns stacked outputs."""
    outs = []
    for x in xs:
        (o,) = sess.run(None, {"input": x.reshape(in_shape).astype(np.float32)})
        outs.append(o[0])
    return np.stack(outs)


def check_against_ort(name, sess, xs, in_shape, ref_fn):
    got = ort_run_each(sess, xs, in_shape)
    ref = ref_fn(xs).astype(np.float32)
    diff = float(np.max(np.abs(got - ref)))
    print(f"  {name}: ORT vs numpy max|diff| = {diff:.3g} over {len(xs)} samples")
    if not diff < ORT_TOL:
        sys.exit(f"FAIL: {name} ORT output differs from numpy reference by {diff}")
    return got


# --------------------------------------------------------------------------
# Generic numpy NN pieces
# --------------------------------------------------------------------------


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def xent_grad(logits, y):
    """Mean cross-entropy loss and d(loss)/d(logits)."""
    p = softmax(logits)
    n = logits.shape[0]
    loss = -np.mean(np.log(p[np.arange(n), y] + 1e-12))
    g = p
    g[np.arange(n), y] -= 1.0
    return loss, (g / n).astype(np.float32)


class Adam:
    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.params = params
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        self.t += 1
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            upd = self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)
            self.params[k] -= upd.astype(np.float32)


def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def accuracy(logits, y):
    return float(np.mean(np.argmax(logits, axis=1) == y))


# --------------------------------------------------------------------------
# MLP: 64 -> 32 -> relu -> 10
# --------------------------------------------------------------------------


def mlp_forward(p, x):
    h = np.maximum(x @ p["W1"].T + p["b1"], 0.0)
    return h @ p["W2"].T + p["b2"]


def train_mlp(xtr, ytr, rng, epochs=60, batch=32):
    p = {
        "W1": he(rng, (32, 64), 64),
        "b1": np.zeros(32, np.float32),
        "W2": he(rng, (10, 32), 32),
        "b2": np.zeros(10, np.float32),
    }
    opt = Adam(p, lr=2e-3)
    n = len(xtr)
    for ep in range(epochs):
        perm = rng.permutation(n)
        tot = 0.0
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x, y = xtr[idx], ytr[idx]
            z1 = x @ p["W1"].T + p["b1"]
            h = np.maximum(z1, 0.0)
            logits = h @ p["W2"].T + p["b2"]
            loss, g = xent_grad(logits, y)
            tot += loss * len(idx)
            gW2 = g.T @ h
            gb2 = g.sum(0)
            gh = g @ p["W2"]
            gz1 = gh * (z1 > 0)
            gW1 = gz1.T @ x
            gb1 = gz1.sum(0)
            opt.step({"W1": gW1 + 1e-4 * p["W1"], "b1": gb1, "W2": gW2 + 1e-4 * p["W2"], "b2": gb2})
        if ep % 20 == 19 or ep == epochs - 1:
            print(f"    mlp epoch {ep + 1:3d} loss {tot / n:.4f} train acc {accuracy(mlp_forward(p, xtr), ytr):.4f}")
    return p


def export_mlp(p):
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["fc1_out"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("Gemm", ["relu1_out", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
    ]
    inits = [
        init("fc1.weight", p["W1"]),
        init("fc1.bias", p["b1"]),
        init("fc2.weight", p["W2"]),
        init("fc2.bias", p["b2"]),
    ]
    return make_model(nodes, inits, [1, 64], "logits", [1, 10], "digits_mlp")


# --------------------------------------------------------------------------
# CNN building blocks (NCHW, 3x3 kernels, stride 1, pad 1)
# --------------------------------------------------------------------------


def im2col3(x):
    """x: (N,C,H,W) -> cols (N*H*W, C*9) with column order (c, kh, kw)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, c, 9, h, w), dtype=x.dtype)
    for kh in range(3):
        for kw in range(3):
            cols[:, :, kh * 3 + kw] = xp[:, :, kh : kh + h, kw : kw + w]
    # -> (N, H, W, C, 9) -> (N*H*W, C*9)
    return cols.transpose(0, 3, 4, 1, 2).reshape(n * h * w, c * 9)


def col2im3(dcols, shape):
    n, c, h, w = shape
    d = dcols.reshape(n, h, w, c, 9).transpose(0, 3, 4, 1, 2)
    dxp = np.zeros((n, c, h + 2, w + 2), dtype=dcols.dtype)
    for kh in range(3):
        for kw in range(3):
            dxp[:, :, kh : kh + h, kw : kw + w] += d[:, :, kh * 3 + kw]
    return dxp[:, :, 1:-1, 1:-1]


def conv3_forward(x, W, b):
    n, _, h, w = x.shape
    o = W.shape[0]
    cols = im2col3(x)
    out = cols @ W.reshape(o, -1).T + b
    return out.reshape(n, h, w, o).transpose(0, 3, 1, 2), cols


def conv3_backward(dout, cols, W, x_shape, need_dx):
    o = W.shape[0]
    d = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dW = (d.T @ cols).reshape(W.shape)
    db = d.sum(0)
    dx = col2im3(d @ W.reshape(o, -1), x_shape) if need_dx else None
    return dx, dW, db


def maxpool2_forward(x):
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = np.argmax(win, axis=-1)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, arg


def maxpool2_backward(dout, arg, x_shape):
    n, c, h, w = x_shape
    dwin = np.zeros((n, c, h // 2, w // 2, 4), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    return dwin.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def avgpool2_forward(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def avgpool2_backward(dout):
    return np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3) * np.float32(0.25)


def cnn_forward(p, x, cache=False):
    """Trained (BN-free) CNN. x: (N,1,8,8)."""
    z1, cols1 = conv3_forward(x, p["C1"], p["c1"])
    a1 = np.maximum(z1, 0.0)
    m1, arg1 = maxpool2_forward(a1)
    z2, cols2 = conv3_forward(m1, p["C2"], p["c2"])
    a2 = np.maximum(z2, 0.0)
    m2 = avgpool2_forward(a2)
    f = m2.reshape(len(x), -1)
    logits = f @ p["F"].T + p["f"]
    if cache:
        return logits, (x, z1, cols1, a1, m1, arg1, z2, cols2, f)
    return logits


def train_cnn(xtr, ytr, rng, epochs=30, batch=32):
    p = {
        "C1": he(rng, (8, 1, 3, 3), 9),
        "c1": np.zeros(8, np.float32),
        "C2": he(rng, (16, 8, 3, 3), 72),
        "c2": np.zeros(16, np.float32),
        "F": he(rng, (10, 64), 64),
        "f": np.zeros(10, np.float32),
    }
    opt = Adam(p, lr=3e-3)
    n = len(xtr)
    for ep in range(epochs):
        if ep == int(epochs * 0.7):
            opt.lr = 1e-3
        perm = rng.permutation(n)
        tot = 0.0
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x, y = xtr[idx], ytr[idx]
            logits, (x, z1, cols1, a1, m1, arg1, z2, cols2, f) = cnn_forward(p, x, cache=True)
            loss, g = xent_grad(logits, y)
            tot += loss * len(idx)
            gF = g.T @ f
            gf = g.sum(0)
            df = g @ p["F"]
            dm2 = df.reshape(len(idx), 16, 2, 2)
            da2 = avgpool2_backward(dm2)
            dz2 = da2 * (z2 > 0)
            dm1, gC2, gc2 = conv3_backward(dz2, cols2, p["C2"], m1.shape, need_dx=True)
            da1 = maxpool2_backward(dm1, arg1, a1.shape)
            dz1 = da1 * (z1 > 0)
            _, gC1, gc1 = conv3_backward(dz1, cols1, p["C1"], x.shape, need_dx=False)
            wd = 1e-4
            opt.step(
                {
                    "C1": gC1 + wd * p["C1"],
                    "c1": gc1,
                    "C2": gC2 + wd * p["C2"],
                    "c2": gc2,
                    "F": gF + wd * p["F"],
                    "f": gf,
                }
            )
        if ep % 10 == 9 or ep == epochs - 1:
            print(f"    cnn epoch {ep + 1:3d} loss {tot / n:.4f} train acc {accuracy(cnn_forward(p, xtr), ytr):.4f}")
    return p


BN_EPS = 1e-5


def factor_bn(p, rng):
    """Split trained conv1 (W,b) into conv1' (W',b') followed by a non-trivial
    BatchNormalization so that BN(conv1'(x)) == conv1(x).

    BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta.  With s = sqrt(var+eps):
    W' = W * s / gamma,  b' = (b - beta) * s / gamma + mean.
    """
    c = p["C1"].shape[0]
    gamma = rng.uniform(0.5, 2.0, c).astype(np.float32)
    beta = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    mean = rng.uniform(-1.0, 1.0, c).astype(np.float32)
    var = rng.uniform(0.25, 4.0, c).astype(np.float32)
    s = np.sqrt(var.astype(np.float64) + BN_EPS)
    k = s / gamma.astype(np.float64)
    W1 = (p["C1"].astype(np.float64) * k[:, None, None, None]).astype(np.float32)
    b1 = ((p["c1"].astype(np.float64) - beta) * k + mean).astype(np.float32)
    return {"W": W1, "b": b1, "gamma": gamma, "beta": beta, "mean": mean, "var": var}


def cnn_export_forward(p, bn, x):
    """numpy forward of exactly the exported graph (explicit BN)."""
    z1, _ = conv3_forward(x, bn["W"], bn["b"])
    sh = (1, -1, 1, 1)
    y = (z1 - bn["mean"].reshape(sh)) / np.sqrt(bn["var"].reshape(sh) + np.float32(BN_EPS))
    y = y * bn["gamma"].reshape(sh) + bn["beta"].reshape(sh)
    a1 = np.maximum(y, 0.0)
    m1, _ = maxpool2_forward(a1)
    z2, _ = conv3_forward(m1, p["C2"], p["c2"])
    a2 = np.maximum(z2, 0.0)
    m2 = avgpool2_forward(a2)
    return m2.reshape(len(x), -1) @ p["F"].T + p["f"]


def export_cnn(p, bn):
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "conv1.weight", "conv1.bias"],
            ["conv1_out"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[1, 1],
        ),
        helper.make_node(
            "BatchNormalization",
            ["conv1_out", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"],
            ["bn1_out"],
            name="bn1",
            epsilon=BN_EPS,
        ),
        helper.make_node("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        helper.make_node(
            "MaxPool", ["relu1_out"], ["pool1_out"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Conv",
            ["pool1_out", "conv2.weight", "conv2.bias"],
            ["conv2_out"],
            name="conv2",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[1, 1],
        ),
        helper.make_node("Relu", ["conv2_out"], ["relu2_out"], name="relu2"),
        helper.make_node(
            "AveragePool", ["relu2_out"], ["pool2_out"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["pool2_out"], ["flat_out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        init("conv1.weight", bn["W"]),
        init("conv1.bias", bn["b"]),
        init("bn1.scale", bn["gamma"]),
        init("bn1.bias", bn["beta"]),
        init("bn1.mean", bn["mean"]),
        init("bn1.var", bn["var"]),
        init("conv2.weight", p["C2"]),
        init("conv2.bias", p["c2"]),
        init("fc.weight", p["F"]),
        init("fc.bias", p["f"]),
    ]
    return make_model(nodes, inits, [1, 1, 8, 8], "logits", [1, 10], "digits_cnn")


# --------------------------------------------------------------------------
# ops_mix: untrained model exercising assorted ops
# --------------------------------------------------------------------------


def make_ops_params(rng):
    def w(shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    return {
        "g1w": w((12, 16), 16),  # Gemm transB=1: [out, in]
        "g1b": w((12,), 16),
        "mmw": w((16, 12), 16),  # MatMul: [in, out]
        "mmb": w((12,), 16),
        "g2w": w((5, 24), 24),
        "g2b": w((5,), 24),
    }


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ops_forward(q, x):
    a = x @ q["g1w"].T + q["g1b"]
    b = sigmoid(a)
    c = np.tanh(x @ q["mmw"] + q["mmb"])
    d = b + c
    e = np.concatenate([d, np.maximum(a, 0.0)], axis=1)
    f = e.reshape(len(x), 24)
    g = f @ q["g2w"].T + q["g2b"]
    return softmax(g.astype(np.float64))


def export_ops(q):
    nodes = [
        helper.make_node("Gemm", ["input", "gemm1.weight", "gemm1.bias"], ["a"], name="gemm1", transB=1),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
        helper.make_node("MatMul", ["input", "matmul.weight"], ["mm_out"], name="matmul"),
        helper.make_node("Add", ["mm_out", "matmul.bias"], ["mm_biased"], name="add_bias"),
        helper.make_node("Tanh", ["mm_biased"], ["c"], name="tanh"),
        helper.make_node("Add", ["b", "c"], ["d"], name="add_bc"),
        helper.make_node("Relu", ["a"], ["relu_a"], name="relu"),
        helper.make_node("Concat", ["d", "relu_a"], ["e"], name="concat", axis=1),
        helper.make_node("Reshape", ["e", "reshape.shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "gemm2.weight", "gemm2.bias"], ["g"], name="gemm2", transB=1),
        helper.make_node("Softmax", ["g"], ["probs"], name="softmax", axis=-1),
    ]
    inits = [
        init("gemm1.weight", q["g1w"]),
        init("gemm1.bias", q["g1b"]),
        init("matmul.weight", q["mmw"]),
        init("matmul.bias", q["mmb"]),
        init("reshape.shape", np.array([1, 24], dtype=np.int64)),
        init("gemm2.weight", q["g2w"]),
        init("gemm2.bias", q["g2b"]),
    ]
    return make_model(nodes, inits, [1, 16], "probs", [1, 5], "ops_mix")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main():
    t0 = time.time()
    OUT.mkdir(parents=True, exist_ok=True)

    # ---- data ----
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)  # values are exactly k/16
    y = digits.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    print(f"digits: train {len(xtr)}, test {len(xte)}")

    # ---- MLP ----
    print("training MLP ...")
    p_mlp = train_mlp(xtr, ytr, np.random.default_rng(0))
    save_model(export_mlp(p_mlp), "digits_mlp.onnx")

    # ---- CNN ----
    print("training CNN ...")
    xtr_img, xte_img = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    p_cnn = train_cnn(xtr_img, ytr, np.random.default_rng(1))
    bn = factor_bn(p_cnn, np.random.default_rng(2))
    fold_diff = float(np.max(np.abs(cnn_export_forward(p_cnn, bn, xte_img) - cnn_forward(p_cnn, xte_img))))
    print(f"  conv+BN refactoring: max|diff| vs trained conv = {fold_diff:.3g}")
    assert fold_diff < 1e-4, fold_diff
    save_model(export_cnn(p_cnn, bn), "digits_cnn.onnx")

    # ---- ops_mix ----
    rng_ops = np.random.default_rng(3)
    q = make_ops_params(rng_ops)
    save_model(export_ops(q), "ops_mix.onnx")
    # Inputs on a 1/1024 grid in [-1, 1) so they print short and exact.
    ops_calib = (np.round(rng_ops.uniform(-1.0, 1.0, (N_CALIB, 16)) * 1024) / 1024).astype(np.float32)
    ops_input = (np.round(rng_ops.uniform(-1.0, 1.0, (1, 16)) * 1024) / 1024).astype(np.float32)

    # ---- verification with onnxruntime ----
    print("verifying with onnxruntime ...")
    s_mlp = ort_session("digits_mlp.onnx")
    s_cnn = ort_session("digits_cnn.onnx")
    s_ops = ort_session("ops_mix.onnx")
    for sess, name, shp_in, shp_out, out in (
        (s_mlp, "digits_mlp", [1, 64], [1, 10], "logits"),
        (s_cnn, "digits_cnn", [1, 1, 8, 8], [1, 10], "logits"),
        (s_ops, "ops_mix", [1, 16], [1, 5], "probs"),
    ):
        (i,), (o,) = sess.get_inputs(), sess.get_outputs()
        assert (i.name, i.shape, i.type) == ("input", shp_in, "tensor(float)"), (name, i)
        assert (o.name, o.shape, o.type) == (out, shp_out, "tensor(float)"), (name, o)

    out_mlp = check_against_ort("digits_mlp", s_mlp, xte, [1, 64], lambda xs: mlp_forward(p_mlp, xs))
    out_cnn = check_against_ort(
        "digits_cnn", s_cnn, xte, [1, 1, 8, 8], lambda xs: cnn_export_forward(p_cnn, bn, xs.reshape(-1, 1, 8, 8))
    )
    ops_all = np.concatenate([ops_calib, ops_input])
    out_ops = check_against_ort("ops_mix", s_ops, ops_all, [1, 16], lambda xs: ops_forward(q, xs))
    print(f"  ops_mix probs range [{out_ops.min():.3f}, {out_ops.max():.3f}]")

    acc_mlp = accuracy(out_mlp, yte)
    acc_cnn = accuracy(out_cnn, yte)
    print(f"float test accuracy (onnxruntime, {len(yte)} samples): MLP {acc_mlp:.4f}, CNN {acc_cnn:.4f}")
    if acc_mlp < 0.95 or acc_cnn < 0.95:
        sys.exit("FAIL: accuracy below 0.95")

    # ---- JSON fixtures ----
    calib_idx = np.sort(np.random.default_rng(4).choice(len(xtr), N_CALIB, replace=False))
    calib = xtr[calib_idx]
    write_input_file("digits_calib_mlp.json", calib.reshape(N_CALIB, 64))
    write_input_file("digits_calib_cnn.json", calib.reshape(N_CALIB, 1, 8, 8))
    write_input_file("ops_calib.json", ops_calib)
    write_input_file("digit_input_mlp.json", xte[:1].reshape(1, 64))
    write_input_file("digit_input_cnn.json", xte[:1].reshape(1, 1, 8, 8))
    write_input_file("ops_input.json", ops_input)
    write_text(
        "digits_test.json",
        '{"n":%d,"features":64,"x":%s,"y":%s}\n' % (len(xte), json_f32_list(xte), json_int_list(yte)),
    )

    # ---- README ----
    n_te = len(xte)
    readme = f"""# Test fixtures

Generated by `scripts/make_fixtures.py`. Regenerate with:

```sh
python3 scripts/make_fixtures.py
```

(needs `numpy`, `scikit-learn`, `onnx==1.17.0`, `onnxruntime`; no network access
and no torch). The script is fully seeded and pins BLAS to one thread, so rerunning
it produces byte-identical files. It checks every model with `onnx.checker`
and compares onnxruntime against an independent numpy forward pass
(max abs diff < {ORT_TOL:g}).

Data: `sklearn.datasets.load_digits()` (8x8 grey-scale digits, 1797 samples),
pixels scaled by 1/16 to [0, 1] (so every value is exactly k/16), float32,
split with `train_test_split(test_size=0.25, random_state=0, stratify=y)`
into {len(xtr)} train / {n_te} test samples.

## Float accuracy (onnxruntime, {n_te} held-out test samples)

| model | accuracy |
|---|---|
| `digits_mlp.onnx` | {acc_mlp:.4f} ({int(round(acc_mlp * n_te))}/{n_te}) |
| `digits_cnn.onnx` | {acc_cnn:.4f} ({int(round(acc_cnn * n_te))}/{n_te}) |

## Files

- **`digits_mlp.onnx`** — two-layer MLP trained with numpy (Adam, cross-entropy).
  Input `input` float32 `[1,64]`; `Gemm(64->32, transB=1) -> Relu -> Gemm(32->10, transB=1)`;
  output `logits` float32 `[1,10]`. Opset {OPSET}, IR version {IR_VERSION}, weights stored as initializers.

- **`digits_cnn.onnx`** — small CNN trained with numpy (im2col conv, Adam).
  Input `input` float32 `[1,1,8,8]`; `Conv(1->8, 3x3, pads 1, stride 1, bias) ->
  BatchNormalization -> Relu -> MaxPool(2x2, stride 2) -> Conv(8->16, 3x3, pads 1, bias) ->
  Relu -> AveragePool(2x2, stride 2) -> Flatten(axis=1) -> Gemm(64->10, transB=1)`;
  output `logits` float32 `[1,10]`. The network was trained without BN; the trained first
  conv was then factored into conv' + a non-trivial BatchNormalization (seeded random
  gamma in [0.5,2], beta in [-0.5,0.5], mean in [-1,1], var in [0.25,4], epsilon 1e-5) such
  that `BN(conv'(x)) == conv(x)`, so BN folding is exercised without changing the function.
  Opset {OPSET}, IR version {IR_VERSION}.

- **`ops_mix.onnx`** — untrained (seeded, weights ~ N(0, 1/fan_in)) model exercising
  assorted ops. Input `input` float32 `[1,16]`:
  `a = Gemm(16->12, transB=1)(input)`, `b = Sigmoid(a)`,
  `c = Tanh(Add(MatMul(input, W[16x12]), bias[12]))`, `d = Add(b, c)`,
  `e = Concat(axis=1)(d, Relu(a))` (`[1,24]`), `f = Reshape(e, [1,24])` (int64 shape initializer),
  `g = Gemm(24->5, transB=1)(f)`, output `probs = Softmax(axis=-1)(g)` float32 `[1,5]`.

- **`digits_calib_mlp.json`** — calibration set for the MLP:
  `{{"input": {{"dtype":"f32","shape":[{N_CALIB},64],"data":[...]}}}}`, {N_CALIB} samples drawn
  (seeded, without replacement, in ascending index order) from the **train** split.

- **`digits_calib_cnn.json`** — the same {N_CALIB} train samples as `digits_calib_mlp.json`,
  shape `[{N_CALIB},1,8,8]`.

- **`ops_calib.json`** — calibration set for `ops_mix.onnx`: {N_CALIB} seeded samples,
  uniform in [-1,1) rounded to multiples of 1/1024, shape `[{N_CALIB},16]`.

- **`digits_test.json`** — the whole held-out test split:
  `{{"n": {n_te}, "features": 64, "x": [{n_te}*64 floats, row-major], "y": [{n_te} int labels]}}`.
  Values are exact multiples of 1/16.

- **`digit_input_mlp.json`** / **`digit_input_cnn.json`** — first test sample (label
  {int(yte[0])}) as a single CLI input, shapes `[1,64]` / `[1,1,8,8]`, same
  `{{"input": {{"dtype":"f32","shape":[...],"data":[...]}}}}` format.

- **`ops_input.json`** — one seeded random input for `ops_mix.onnx`, shape `[1,16]`.

Floats in JSON are printed as the shortest decimal that round-trips to the same float32.
"""
    write_text("README.md", readme)

    print("files:")
    total = 0
    for f in sorted(OUT.iterdir()):
        sz = f.stat().st_size
        total += sz
        print(f"  {f.name:28s} {sz:8d} bytes")
    print(f"  {'total':28s} {total:8d} bytes")
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
