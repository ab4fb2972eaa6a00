#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the end-to-end
# suite on a real Docker Swarm (it needs a running Docker engine: .ci/run starts one, and the
# suite fails, saying why, when there is none).
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
