"""Reference generations for crates/llm/tests/runtime.rs, computed by llama.cpp
(llama-cpp-python from PyPI) on the same SmolLM2 GGUF, independently of Verity's runtime:
for a fixed set of chat prompts, the prompt's token ids (llama.cpp's tokenizer) and llama.cpp's
greedy continuation (argmax of its logits, 24 tokens or until <|im_end|>).

Usage: pip install llama-cpp-python==0.3.36 &&
  python3 scripts/llm_generation_reference.py $(bash scripts/fetch_smollm2.sh) > fixtures/llm/generation_reference.json
"""
import json, sys
import numpy as np
import llama_cpp

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three primary colors.",
    "What is 12 times 7?",
    "Translate 'good morning' into Spanish.",
    "Give me a short tip for learning to code.",
    "Who wrote Romeo and Juliet?",
    "Describe a cat in five words.",
    "Why is the sky blue?",
]
STEPS = 24

m = llama_cpp.Llama(sys.argv[1], n_ctx=512, verbose=False, logits_all=True, n_threads=2)
end = m.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
out = {"llama_cpp_python": llama_cpp.__version__, "steps": STEPS, "prompts": []}
for q in QUESTIONS:
    text = SYSTEM + "<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n"
    prompt = m.tokenize(text.encode(), add_bos=False, special=True)
    m.reset()
    m.eval(prompt)
    generated = []
    for _ in range(STEPS):
        logits = np.array(m.scores[m.n_tokens - 1])
        token = int(np.argmax(logits))
        generated.append(token)
        if token == end:
            break
        m.eval([token])
    out["prompts"].append({"question": q, "prompt": prompt, "greedy": generated})
json.dump(out, sys.stdout, indent=1)
