#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the end-to-end
# suite on a real Docker Swarm. It sets up what it needs first, so on a fresh machine it is
# the only command to run after cloning:
#   - a Docker engine in a single-node swarm (scripts/e2e/docker-up.sh installs docker.io with
#     apt-get when it is missing and starts dockerd when it does not answer);
#   - headless Chromium for the dashboard test (apt-get install chromium when it is missing).
# Installing needs root, or sudo (it says so before using it). When something cannot be set
# up, the part of the suite that needs it fails and says why; nothing is skipped silently
# (CI=1 is set so the dashboard test fails instead of skipping without a browser).
#
#   scripts/test.sh            set up, then run everything
#   TEST_NO_SETUP=1 scripts/test.sh    run without installing or starting anything
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }

# install_chromium — headless Chromium for crates/sluice/tests/stats.rs.
install_chromium() {
    local browser
    for browser in chromium chromium-browser google-chrome; do
        command -v "$browser" >/dev/null && return 0
    done
    local sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            say "chromium is missing and this is not root: install it (apt-get install chromium)"
            return 1
        fi
        sudo=(sudo)
    fi
    say "installing chromium with ${sudo[*]:+sudo }apt-get (for the dashboard test)"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
}

if [[ ${TEST_NO_SETUP:-0} != 1 ]]; then
    echo "== set-up: Docker engine and swarm (scripts/e2e/docker-up.sh)"
    scripts/e2e/docker-up.sh || say "Docker is not available; the end-to-end suite will fail and say why"
    echo "== set-up: Chromium"
    install_chromium || say "no chromium; the dashboard browser test will fail"
    command -v pebble >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null; } || say "no pebble; the ACME tests (crates/sluice/tests/acme.rs) will fail"
fi
export CI=${CI:-1}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== end-to-end suite on Docker Swarm (scripts/e2e.sh)"
# Its last step, `rolling` (scripts/e2e/rolling.sh), runs the rolling-update scenarios under
# load (ROLLING_CI_SCENARIOS, by default all of them), each with the target 0 failed requests.
ROLLING_SCENARIOS=${ROLLING_CI_SCENARIOS:-exit drain health one ws} scripts/e2e.sh
# The three-node Swarm test bed (docs/swarm.md, "Across nodes"). CI runs the walkthrough and
# the scenarios whose targets Sluice meets today; `scripts/e2e/cluster-test.sh` with no
# arguments also runs the lost-worker scenario, whose target (only requests in flight fail)
# is still missed (see docs/swarm.md).
echo "== three-node Swarm on this machine (scripts/e2e/cluster-test.sh)"
scripts/e2e/cluster-test.sh ${CLUSTER_CI_STEPS:-networks listener proxy go_demo every_route task_states label_change rolling_update drain node_lost node_join manager_restart remove}
