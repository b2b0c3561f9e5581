"""Reference tokenizations for crates/llm/tests/tokenizer.rs, computed by llama.cpp itself
(through llama-cpp-python, loading only the vocabulary of the SmolLM2 GGUF), independently of
Verity's tokenizer: token ids of a fixed set of strings with and without special-token parsing,
llama.cpp's detokenization of those ids, and the model's chat template rendered the way
llama-cpp-python renders it (Jinja2, trim_blocks and lstrip_blocks) with the tokens of each
rendered prompt.

Usage: python scripts/llm_tokenizer_reference.py $(bash scripts/fetch_smollm2.sh) \
           > fixtures/llm/tokenizer_reference.json
(needs `pip install llama-cpp-python`, which builds llama.cpp; the fixture was made with the
version recorded in it).
"""
import json, sys
import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

STRINGS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345 and 3.14",
    "1,000,000.00 costs $42.50 (or 7%)",
    "I'm sure you're right, don't worry: we'll see, they've said it's fine, he'd know.",
    "I'M SURE YOU'RE RIGHT, DON'T",
    "'s 'tis ''quoted'' rock'n'roll",
    "  two leading spaces",
    "trailing spaces   ",
    "   ",
    " ",
    "multiple   spaces\tand\ttabs\n\nnewlines\r\nwindows",
    "\n\n\n",
    " \t x \n\n y",
    "a  \n  b",
    "end \n",
    "    indented = 4\n        deeper = 8",
    "café naïve résumé Ångström Zürich",
    "Привет, мир!",
    "日本語のテキストです。",
    "中文测试，标点符号！",
    "한국어 문장입니다",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "👋🌍 🚀🔥 🤗",
    "family: 👨\u200d👩\u200d👧 flag: 🇫🇷",
    "½ ² ³ Ⅻ ① ٣ ৫",
    "nbsp\u00a0here, ideographic\u3000space, zero\u200bwidth",
    "fn main() {\n    println!(\"{}\", x + 1);\n}",
    "def f(x):\n\treturn x**2  # square\n",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path?q=1&lang=en#frag",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|im_end|>more",
    "<|im_start|><|im_end|><|im_start|>",
    "<|im_start not closed <im_start> |im_end|>",
    "<repo_name>verity<file_sep>src/lib.rs\n<filename>",
    "control\x01\x04\x07bytes\x00",
    "unassigned \u0378 and new-in-16 \u1c89 letters",
]

CONVERSATIONS = [
    {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi! Say <b>hello</b> in 3 languages."},
            {"role": "assistant", "content": "Hello, Bonjour, Hola."},
        ],
        "add_generation_prompt": False,
    },
]

llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)


def tokenize(text, special):
    return llm.tokenize(text.encode(), add_bos=False, special=special)


def detokenize(ids):
    return llm.detokenize(ids, special=True).decode("utf-8", errors="replace")


out = {
    "llama_cpp_python": llama_cpp.__version__,
    "vocab_size": llm.n_vocab(),
    "bos": llm.token_bos(),
    "eos": llm.token_eos(),
    "strings": [],
    "chats": [],
}
for text in STRINGS:
    ids = tokenize(text, True)
    out["strings"].append({
        "text": text,
        "ids": ids,
        "ids_no_special": tokenize(text, False),
        "decoded": detokenize(ids),
    })

template = llm.metadata["tokenizer.chat_template"]
formatter = Jinja2ChatFormatter(
    template=template,
    bos_token=llm._model.token_get_text(llm.token_bos()),
    eos_token=llm._model.token_get_text(llm.token_eos()),
)
for chat in CONVERSATIONS:
    # The formatter reads this attribute when it renders (its chat handler always sets it).
    formatter.add_generation_prompt = chat["add_generation_prompt"]
    prompt = formatter(messages=chat["messages"]).prompt
    out["chats"].append({**chat, "prompt": prompt, "ids": tokenize(prompt, True)})

json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
print()
