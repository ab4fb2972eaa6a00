#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and (when a Docker
# engine can run here) the end-to-end suite on a real Swarm.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== end-to-end suite on Docker Swarm (scripts/e2e.sh)"
scripts/e2e.sh
