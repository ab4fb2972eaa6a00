#!/usr/bin/env bash
# The multi-node end-to-end test: the walkthrough (shared/seed) on a three-node Swarm made on
# this machine by scripts/e2e/cluster.sh, then scenarios under load (drain, a worker lost, a
# new node joining, the manager's engine restarted). Prints each check, what each scenario
# measured (requests, failures, p99), its own duration, and ends with
# `cluster: N passed, M failed`; exits non-zero when anything failed. Removes the cluster at
# the end (also when interrupted or failed).
#
#   scripts/e2e/cluster-test.sh [STEP…]     (default: every step of CLUSTER_STEPS, in order)
#
# Environment (defaults in brackets):
#   CLUSTER_SKIP_BUILD [0]  1 = use the sluice-*:$SLUICE_IMAGE_TAG images of the host engine
#   CLUSTER_RELEASE [0]     1 = build and test the release profile
#   SLUICE_IMAGE_TAG [cluster] tag of the images (not `latest`, which scripts/e2e.sh uses)
#   CLUSTER_KEEP [0]        1 = leave the cluster and its services up (scripts/e2e/cluster.sh down)
#   CLUSTER_DEADLINE [900]  seconds after the cluster is up past which remaining steps are skipped
#   E2E_WAIT [60]           bound of one wait, seconds;  CLUSTER_LOAD_* see cluster-load.sh
#
# The test runs its probes from the namespace sluice-cl (no engine in it), the host side
# (image build, cluster up/down) from the host's namespace. The docker CLI talks to the
# manager (DOCKER_HOST=unix:///var/run/docker-sluice-n1.sock); the host engine is only used to
# build the images.
# shellcheck source-path=SCRIPTDIR
set -Euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export SLUICE_IMAGE_TAG=${SLUICE_IMAGE_TAG:-cluster}
export E2E_WAIT=${E2E_WAIT:-60}
CLUSTER_DEADLINE=${CLUSTER_DEADLINE:-900}

# shellcheck source=cluster.sh
source "$HERE/cluster.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*"; }

# --- host side ------------------------------------------------------------------------------

build_images() {
    if [[ ${CLUSTER_SKIP_BUILD:-0} == 1 ]]; then
        log "CLUSTER_SKIP_BUILD=1: using the host engine's sluice-*:$SLUICE_IMAGE_TAG images"
        return 0
    fi
    local cargo_flags=(-p sluice -p sluice-demo) image_flags=(--no-build)
    if [[ ${CLUSTER_RELEASE:-0} == 1 ]]; then
        cargo_flags+=(--release)
        image_flags+=(--release)
    elif "$ROOT/scripts/build-images.sh" --help 2>/dev/null | grep -q -- '--debug'; then
        image_flags+=(--debug) # the script's default profile is release: ask for debug
    fi
    log "cargo build ${cargo_flags[*]}"
    (cd "$ROOT" && cargo build -q "${cargo_flags[@]}") || return 1
    log "scripts/build-images.sh ${image_flags[*]} (tag $SLUICE_IMAGE_TAG, host engine)"
    "$ROOT/scripts/build-images.sh" "${image_flags[@]}"
}

# shellcheck disable=SC2317 # called by the EXIT trap
outer_finish() {
    ((OUTER_FINISHED)) && return
    OUTER_FINISHED=1
    if [[ ${CLUSTER_KEEP:-0} == 1 ]]; then
        log "CLUSTER_KEEP=1: leaving the cluster up (scripts/e2e/cluster.sh down removes it)"
    else
        log "removing the cluster"
        (cmd_down) 2>&1 | sed 's/^/  /'
    fi
    local passed=0 failed=0
    if [[ -s $RESULTS ]]; then read -r passed failed <"$RESULTS"; fi
    passed=$((passed + PASSED))
    failed=$((failed + FAILED))
    if ((INNER_RAN)) && [[ ! -s $RESULTS ]]; then
        log "the checks in the client namespace ended without writing their results"
        failed=$((failed + 1))
    fi
    rm -f "$RESULTS"
    log "finished in $((SECONDS - SUITE_STARTED))s (image build ${BUILD_SECONDS:-0}s, cluster up ${UP_SECONDS:-0}s)"
    echo "cluster: $passed passed, $failed failed"
    [[ $failed == 0 ]]
}

outer_main() {
    SUITE_STARTED=$SECONDS
    OUTER_FINISHED=0
    INNER_RAN=0
    [[ $EUID == 0 ]] || { echo "cluster-test: must run as root"; echo "cluster: 0 passed, 1 failed"; exit 1; }
    exec 8>/tmp/sluice-cluster.lock
    if ! flock -w 900 8; then
        echo "cluster-test: another cluster-test.sh holds /tmp/sluice-cluster.lock"
        echo "cluster: 0 passed, 1 failed"
        exit 1
    fi
    RESULTS=$(mktemp /tmp/sluice-cluster-results.XXXXXX)
    trap 'outer_finish; exit $?' EXIT
    trap 'log interrupted; fail "interrupted by a signal"; exit 130' INT TERM
    command -v python3 >/dev/null || { fail "python3 is missing (the load client needs it)"; exit 1; }
    docker info >/dev/null 2>&1 ||
        { fail "the host engine does not answer (scripts/e2e/docker-up.sh starts it); it builds the images"; exit 1; }
    local t=$SECONDS
    if ! build_images; then fail "building the images failed"; exit 1; fi
    BUILD_SECONDS=$((SECONDS - t))
    t=$SECONDS
    log "scripts/e2e/cluster.sh up"
    if ! (cmd_up) 2>&1 | sed 's/^/  /'; then
        fail "scripts/e2e/cluster.sh up failed"
        exit 1
    fi
    if ! healthy; then fail "the cluster is not healthy after up"; exit 1; fi
    pass "a 3-node swarm is up (1 manager, 2 workers), the images loaded into every engine"
    UP_SECONDS=$((SECONDS - t))
    INNER_RAN=1
    # The checks run in the client namespace: its probes reach the nodes over the bridge.
    nsenter --net="/var/run/netns/$CLIENT_NS" env CLUSTER_RESULTS="$RESULTS" \
        bash "${BASH_SOURCE[0]}" --inside "$@"
    exit 0 # outer_finish (EXIT trap) prints the summary and sets the status
}

# --- inside the client namespace --------------------------------------------------------------

# shellcheck source=cluster-load.sh
source "$HERE/cluster-load.sh"
# shellcheck source=cluster-seed.sh
source "$HERE/cluster-seed.sh"
# shellcheck source=cluster-scenarios.sh
source "$HERE/cluster-scenarios.sh"

CLUSTER_STEPS=(networks listener proxy go_demo every_route task_states label_change
    rolling_update drain node_lost node_join manager_restart remove)
CLUSTER_FATAL=" networks listener proxy go_demo "
SCENARIO_LINES=()

# shellcheck disable=SC2317 # called by the EXIT trap
inner_finish() {
    ((INNER_FINISHED)) && return
    INNER_FINISHED=1
    if [[ ${CLUSTER_KEEP:-0} != 1 ]]; then
        log "removing the services and networks: ${TRACKED[*]:-nothing}"
        cleanup
        rm -rf "$LOAD_DIR"
    else
        log "CLUSTER_KEEP=1: the load results (one line per request) are in $LOAD_DIR"
    fi
    echo
    if ((${#SCENARIO_LINES[@]})); then
        log "scenarios (load through one proxy task):"
        printf '  %s\n' "${SCENARIO_LINES[@]}"
    fi
    if ((${#FAILURES[@]})); then
        log "failures:"
        printf '  - %s\n' "${FAILURES[@]}"
    fi
    echo "$PASSED $FAILED" >"$CLUSTER_RESULTS"
}

inner_main() {
    INNER_FINISHED=0
    DOCKER_HOST=unix://$(node_sock n1)
    export DOCKER_HOST
    load_init
    trap inner_finish EXIT
    trap 'trap - INT TERM; log interrupted; fail "interrupted by a signal"; inner_finish; exit 130' INT TERM
    local steps=("$@") step stop="" started=$SECONDS t
    ((${#steps[@]})) || steps=("${CLUSTER_STEPS[@]}")
    for step in "${steps[@]}"; do
        declare -F "step_$step" >/dev/null || { fail "unknown step $step (known: ${CLUSTER_STEPS[*]})"; return 1; }
    done
    for step in "${steps[@]}"; do
        CURRENT_STEP=$step
        if [[ -z $stop ]] && ((SECONDS - started > CLUSTER_DEADLINE)); then
            stop="the test ran past CLUSTER_DEADLINE=${CLUSTER_DEADLINE}s"
            fail "$stop"
        fi
        if [[ -n $stop ]]; then
            log "skip $step ($stop)"
            continue
        fi
        log "step $step"
        t=$SECONDS
        if ! "step_$step"; then
            log "step $step failed after $((SECONDS - t))s"
            [[ $CLUSTER_FATAL == *" $step "* ]] && stop="step $step failed"
        else
            log "step $step done in $((SECONDS - t))s"
        fi
    done
    CURRENT_STEP=""
}

if [[ ${1:-} == --inside ]]; then
    shift
    inner_main "$@"
    exit 0
fi
outer_main "$@"
