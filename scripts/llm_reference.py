"""Reference values for crates/llm/tests/gguf.rs, computed with llama.cpp's own `gguf` Python
package (pip install gguf==0.19.0), independently of Verity's reader:
tensor directory entries and dequantized values of the SmolLM2 GGUF.

Usage: python3 scripts/llm_reference.py $(bash scripts/fetch_smollm2.sh) > fixtures/llm/smollm2_reference.json
"""
import json, sys
import numpy as np
import gguf
from gguf.quants import dequantize

r = gguf.GGUFReader(sys.argv[1])
f = r.fields
def text(key):
    p = f[key]
    return bytes(p.parts[p.data[0]]).decode()
def num(key):
    p = f[key]
    return int(p.parts[p.data[0]][0])
out = {
    "tensor_count": len(r.tensors),
    "architecture": text("general.architecture"),
    "block_count": num("llama.block_count"),
    "embedding_length": num("llama.embedding_length"),
    "vocab_tokens": len(f["tokenizer.ggml.tokens"].data),
    "tensors": [],
}
for name in ["token_embd.weight", "blk.0.attn_norm.weight", "blk.0.ffn_down.weight", "blk.29.attn_q.weight"]:
    t = next(t for t in r.tensors if t.name == name)
    values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    out["tensors"].append({
        "name": name,
        "type": t.tensor_type.name,
        "dims": [int(d) for d in t.shape],
        "start": int(t.data_offset),
        "first_bits": [int(v) for v in values[:64].view(np.uint32)],
        "sum": float(values.astype(np.float64).sum()),
    })
json.dump(out, sys.stdout, indent=1)
