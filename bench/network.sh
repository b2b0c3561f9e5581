#!/usr/bin/env bash
# Quorum throughput, settlement finality and offline proof verification on a 4-process devnet.
# Usage: bash bench/network.sh [SECONDS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p verity-cli --bench network -- "${1:-20}" "${2:-8}"
