#!/usr/bin/env bash
# Rewrites the golden vectors under fixtures/golden/ from the current code. Run it only when a
# semantics change is intended, then review and commit the diff: the golden tests exist so
# that such a change is never silent.
#
# Each line is one golden test run with VERITY_REGEN_GOLDEN=1 (the test writes its file instead
# of comparing). Add yours below.
set -euo pipefail
cd "$(dirname "$0")/.."
export VERITY_REGEN_GOLDEN=1

# Canonical int8 engine: fixtures/golden/canonical.json
cargo test -p verity-engine --test canonical golden::

# Signed encodings (tensor, request, receipt, chat request, transaction): fixtures/golden/core.json
cargo test -p verity-core --test golden
