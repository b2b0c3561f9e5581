"""Drives a Verity node with the official `openai` Python client (crates/node/tests/openai_client.rs).

Usage: python3 openai_client.py BASE_URL MODEL
Prints one JSON object: the models listed, a non-streaming completion (content, the `verity`
member of the body, the `verity-receipt` header), a streaming one (the deltas and the `verity`
member of the final chunk) and the error an unknown model gives. The Rust test verifies the
receipts.
"""

import json
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
messages = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
out = {"openai_version": openai.__version__}

out["models"] = [m.id for m in client.models.list()]

raw = client.chat.completions.with_raw_response.create(
    model=model, messages=messages, max_tokens=16, temperature=0
)
completion = raw.parse()
out["plain"] = {
    "header": raw.headers.get("verity-receipt"),
    "id": completion.id,
    "content": completion.choices[0].message.content,
    "finish_reason": completion.choices[0].finish_reason,
    "completion_tokens": completion.usage.completion_tokens,
    "verity": completion.model_extra["verity"],
}

deltas, verity, finish, usage = [], None, None, None
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=16,
    temperature=0.7,
    seed=7,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.completion_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            deltas.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
    extra = (chunk.model_extra or {}).get("verity")
    if extra is not None:
        verity = extra
out["stream"] = {
    "content": "".join(deltas),
    "finish_reason": finish,
    "completion_tokens": usage,
    "verity": verity,
}

try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
    out["error"] = None
except openai.NotFoundError as e:
    out["error"] = {"status": e.status_code, "code": e.code, "param": e.param}

try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=4, n=2)
    out["bad_request"] = None
except openai.BadRequestError as e:
    out["bad_request"] = {"status": e.status_code, "code": e.code, "param": e.param}

print(json.dumps(out))
