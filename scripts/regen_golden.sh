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

# Signed encodings (tensor, request, receipt, chat request): fixtures/golden/core.json
cargo test -p verity-core --test golden

# zk: the committed digits-MLP proof is kept while it verifies; its statement is rewritten:
# fixtures/golden/zk_digits_mlp.{json,proof}
cargo test -p verity-zk --test prove golden

# Ledger transactions and block header: fixtures/golden/ledger.json
cargo test -p verity-ledger --test state golden

# The inclusion proof and settled quorum fixtures (a seeded consensus simulation):
# fixtures/inclusion/
VERITY_WRITE_FIXTURES="$PWD/fixtures/inclusion" cargo test -p verity-ledger --test simulation settled
