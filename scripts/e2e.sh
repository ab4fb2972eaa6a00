#!/usr/bin/env bash
# End-to-end suite on a real Docker Swarm: the walkthrough's Docker steps (shared/seed), typed
# as a user types them, with our locally built images; then `docker stack deploy -c stack.yml`.
# Prints each check, the propagation times, and a closing `e2e: N passed, M failed[, K skipped]`
# line; exits non-zero when anything failed or Docker cannot run. Removes everything it created.
#
#   scripts/e2e.sh [STEP…]         (default: every step of E2E_STEPS, in order)
#
# Environment (defaults in brackets):
#   E2E_SKIP_BUILD [0]   1 = use the sluice-* images already built (no scripts/build-images.sh)
#   E2E_RELEASE [0]      1 = build the images from the release profile (default: the faster
#                        debug build, scripts/build-images.sh --debug)
#   E2E_ROUNDS [5]       create/rm rounds of go-demo measured for the propagation percentiles
#   E2E_TARGET_MS [1000] the p50 bound checked for task running -> 200 and service rm -> 503
#   E2E_WAIT [30]        bound of one wait, seconds;  E2E_POLL [0.05] poll interval, seconds
#   E2E_DEADLINE [540]   seconds (after the image build) past which the remaining steps are
#                        skipped, which counts as a failure
#   E2E_KEEP [0]         1 = leave the services and networks in place (debugging)
#   E2E_LOCK_WAIT [900]  seconds to wait for another run of the suite on this engine to finish
#                        (runs share the service names, so they take /tmp/sluice-e2e.lock)
#
# Adding a step (e.g. the walkthrough's auth, stats or TCP sections): write `step_<name>` in a
# file under scripts/e2e/ using the helpers of scripts/e2e/lib.sh (run, check, wait_until,
# track, every_replica, front, …), source it below, and put <name> into E2E_STEPS at the
# walkthrough's position. A step returns non-zero only when the steps after it cannot run
# meaningfully; its checks are counted either way.
# shellcheck source-path=SCRIPTDIR
set -Euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E_WAIT=${E2E_WAIT:-30}
E2E_DEADLINE=${E2E_DEADLINE:-540}

# shellcheck source=e2e/lib.sh
source "$ROOT/scripts/e2e/lib.sh"
# shellcheck source=e2e/seed.sh
source "$ROOT/scripts/e2e/seed.sh"
# shellcheck source=e2e/stack.sh
source "$ROOT/scripts/e2e/stack.sh"
# shellcheck source=e2e/tcp.sh
source "$ROOT/scripts/e2e/tcp.sh"
# shellcheck source=e2e/acme.sh
source "$ROOT/scripts/e2e/acme.sh"
# shellcheck source=e2e/rolling.sh
source "$ROOT/scripts/e2e/rolling.sh"

# The walkthrough's order (after swarm_crate, the listener crate's own Swarm test). Steps
# whose failure stops the suite are in E2E_FATAL.
E2E_STEPS=(
    swarm_crate
    networks listener proxy go_demo_db
    go_demo scale_demo paths domain remove timing
    recreate scale_proxy label_change rolling_update
    rewrite tcp
    stack
    acme
    rolling
)
E2E_FATAL=" networks listener proxy "

# The service and network names the suite creates; a leftover of an earlier, killed run is
# removed first (only when it runs one of our images).
OWN_SERVICES=(go-demo go-demo-db proxy swarm-listener proxy_proxy proxy_swarm-listener redis
    roll-proxy roll-listener roll-exit roll-drain roll-health roll-one roll-ws
    acme-pebble acme-proxy acme-listener acme-app)
OWN_NETWORKS=(proxy go-demo roll acme-e2e)

SWARM_INITIALISED=0
FINISHED=0
TRAP_SET=0

# die_preflight WHY — the suite cannot run: say why, count it as a failure, and stop.
die_preflight() {
    log "cannot run the end-to-end suite: $*"
    if ((TRAP_SET)); then
        fail "$*"
        exit 1 # the EXIT trap cleans up and prints the summary
    fi
    echo "e2e: 0 passed, 1 failed"
    exit 1
}

# take_lock — one run of the suite at a time on this machine (they use the same names).
take_lock() {
    exec 9>/tmp/sluice-e2e.lock
    if ! flock -n 9; then
        log "another scripts/e2e.sh is running; waiting up to ${E2E_LOCK_WAIT:-900}s for it"
        flock -w "${E2E_LOCK_WAIT:-900}" 9 || die_preflight "another scripts/e2e.sh still holds /tmp/sluice-e2e.lock"
    fi
}

preflight() {
    take_lock
    command -v docker >/dev/null ||
        die_preflight "the docker CLI is not installed (apt-get install -y docker.io; .ci/run does it)"
    command -v curl >/dev/null || die_preflight "curl is not installed"
    local info
    if ! info=$(docker info --format '{{.ServerVersion}}' 2>&1); then
        [[ -r /tmp/dockerd.log ]] && tail -n 20 /tmp/dockerd.log | sed 's/^/  dockerd.log| /'
        die_preflight "the Docker engine does not answer: $info (start it: dockerd > /tmp/dockerd.log 2>&1 &)"
    fi
    log "Docker engine $info, CLI $(docker version --format '{{.Client.Version}}' 2>/dev/null)"
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)
    if [[ $state != active ]]; then
        log "this engine is not in a swarm ($state): docker swarm init --advertise-addr 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>&1 ||
            die_preflight "docker swarm init failed: $(docker swarm init --advertise-addr 127.0.0.1 2>&1)"
        SWARM_INITIALISED=1
    fi
    [[ $(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null) == true ]] ||
        die_preflight "this node is not a swarm manager"
    remove_leftovers
}

remove_leftovers() {
    local name image stale=0
    docker stack ls --format '{{.Name}}' 2>/dev/null | grep -cx proxy >/dev/null &&
        { log "removing the stack 'proxy' left by an earlier run"; docker stack rm proxy >/dev/null 2>&1; stale=1; }
    for name in "${OWN_SERVICES[@]}"; do
        image=$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$name" 2>/dev/null) || continue
        if [[ $image != sluice-* ]]; then
            die_preflight "a service named $name already exists (image $image); remove it or run elsewhere"
        fi
        log "removing the service $name left by an earlier run"
        docker service rm "$name" >/dev/null 2>&1
        stale=1
    done
    if ((stale)); then
        wait_until 40 no_containers_of "${OWN_SERVICES[@]}" || log "some leftover containers are still stopping"
    fi
    for name in "${OWN_NETWORKS[@]}"; do
        if docker network inspect "$name" >/dev/null 2>&1; then
            log "removing the network $name left by an earlier run"
            wait_until 20 docker network rm "$name" >/dev/null 2>&1 ||
                die_preflight "a network named $name exists and cannot be removed (in use?)"
        fi
    done
}

build_images() {
    if [[ ${E2E_SKIP_BUILD:-0} == 1 ]]; then
        local image
        for image in "$PROXY_IMAGE" "$LISTENER_IMAGE" "$DEMO_IMAGE"; do
            docker image inspect "$image" >/dev/null 2>&1 ||
                die_preflight "E2E_SKIP_BUILD=1 but the image $image does not exist (run scripts/build-images.sh)"
        done
        return
    fi
    local profile=--debug
    [[ ${E2E_RELEASE:-0} == 1 ]] && profile=--release
    "$ROOT/scripts/build-images.sh" "$profile" || die_preflight "scripts/build-images.sh failed"
}

# The Rust tests that need a real swarm are #[ignore]d in `cargo test`; they are compiled
# here (before the step clock starts) and run by step_swarm_crate.
SWARM_TEST=(cargo test -p sluice-docker --test swarm)

build_swarm_test() {
    (cd "$ROOT" && "${SWARM_TEST[@]}" --no-run) >/tmp/sluice-e2e-swarm-build.log 2>&1 || {
        tail -n 30 /tmp/sluice-e2e-swarm-build.log | sed 's/^/  cargo| /'
        die_preflight "cannot build crates/docker/tests/swarm.rs (${SWARM_TEST[*]} --no-run)"
    }
}

# step_swarm_crate — crates/docker/tests/swarm.rs against this swarm: the listener library
# follows a real service through create, label and replica changes and removal. It must
# run its test and pass; a failure prints the test's output.
step_swarm_crate() {
    local out status
    log "${SWARM_TEST[*]} -- --ignored --nocapture"
    out=$(cd "$ROOT" && "${SWARM_TEST[@]}" -- --ignored --nocapture 2>&1)
    status=$?
    if ((status == 0)) && grep -qE 'test result: ok\. [1-9][0-9]* passed' <<<"$out"; then
        pass "crates/docker/tests/swarm.rs passed on this swarm"
        grep -E 'notification .* after the CLI returned' <<<"$out" | sed 's/^/         /'
        return 0
    fi
    printf '%s\n' "$out" | tail -n 60 | sed 's/^/         | /'
    fail "crates/docker/tests/swarm.rs failed or ran no test (${SWARM_TEST[*]} -- --ignored: status $status)"
    return 0
}

summary() {
    echo
    timing_report
    if ((${#FAILURES[@]})); then
        log "failures:"
        printf '  - %s\n' "${FAILURES[@]}"
    fi
    log "finished in $((SECONDS - SUITE_STARTED))s"
    echo "e2e: $PASSED passed, $FAILED failed$( ((SKIPPED)) && printf ', %d skipped' "$SKIPPED")"
}

finish() {
    ((FINISHED)) && return
    FINISHED=1
    if [[ ${E2E_KEEP:-0} == 1 ]]; then
        log "E2E_KEEP=1: leaving ${TRACKED[*]:-nothing} in place"
    else
        log "cleaning up: ${TRACKED[*]:-nothing}"
        cleanup
        if ((SWARM_INITIALISED)); then
            log "leaving the swarm this suite created"
            docker swarm leave --force >/dev/null 2>&1 || true
        fi
    fi
    summary
}

on_signal() {
    trap - INT TERM
    log "interrupted"
    fail "interrupted by a signal"
    finish
    exit 130
}

main() {
    SUITE_STARTED=$SECONDS
    local steps=("$@") step started
    ((${#steps[@]})) || steps=("${E2E_STEPS[@]}")
    for step in "${steps[@]}"; do
        declare -F "step_$step" >/dev/null || die_preflight "unknown step $step (known: ${E2E_STEPS[*]})"
    done
    preflight
    trap finish EXIT
    trap on_signal INT TERM
    TRAP_SET=1
    build_images
    build_swarm_test
    STEPS_STARTED=$SECONDS
    local stop=""
    for step in "${steps[@]}"; do
        CURRENT_STEP=$step
        if [[ -n $stop ]]; then
            SKIPPED=$((SKIPPED + 1))
            log "skip $step ($stop)"
            continue
        fi
        if ((SECONDS - STEPS_STARTED > E2E_DEADLINE)); then
            stop="the suite ran past E2E_DEADLINE=${E2E_DEADLINE}s"
            fail "$stop"
            SKIPPED=$((SKIPPED + 1))
            log "skip $step ($stop)"
            continue
        fi
        log "step $step"
        started=$SECONDS
        if ! "step_$step"; then
            log "step $step failed after $((SECONDS - started))s"
            if [[ $E2E_FATAL == *" $step "* ]]; then
                stop="step $step failed"
            fi
        else
            log "step $step done in $((SECONDS - started))s"
        fi
    done
    CURRENT_STEP=""
    finish
    trap - EXIT
    ((FAILED == 0))
}

main "$@"
