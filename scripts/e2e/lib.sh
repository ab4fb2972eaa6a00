# shellcheck shell=bash
# Helpers of the end-to-end suite (sourced by scripts/e2e.sh): reporting, bounded waits, HTTP
# probes, finding the proxy's tasks and their host ports, timing, and tracking what the suite
# creates so the exit trap can remove it.
#
# Conventions every step follows:
# - `run docker …` prints the command as a user would type it, runs it, and records a failure
#   (with the command's output) when it exits non-zero;
# - `check "what" cmd…` records one assertion (pass/fail); `fail "why"` records a failure;
# - every wait is `wait_until SECONDS cmd…` (bounded; polls every E2E_POLL seconds);
# - `track service|network|stack|secret|config NAME` before creating something, so the trap
#   removes it even if the suite is interrupted.

E2E_WAIT=${E2E_WAIT:-60}       # default bound of one wait, seconds
E2E_POLL=${E2E_POLL:-0.05}     # poll interval of waits, seconds
E2E_CURL_TIMEOUT=${E2E_CURL_TIMEOUT:-3}

PASSED=0
FAILED=0
# shellcheck disable=SC2034 # counted by scripts/e2e.sh
SKIPPED=0
FAILURES=()
CURRENT_STEP=""
TRACKED=()

log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*"; }
note() { printf '         %s\n' "$*"; }

pass() {
    PASSED=$((PASSED + 1))
    printf '  ok     %s\n' "$*"
}

fail() {
    FAILED=$((FAILED + 1))
    FAILURES+=("${CURRENT_STEP:-setup}: $*")
    printf '  FAIL   %s\n' "$*"
}

# check DESCRIPTION CMD… — one assertion: CMD succeeds. Returns CMD's success, so
# `check … || return 1` stops a step and `check … || show_why` explains a failure.
check() {
    local what=$1
    shift
    if "$@"; then
        pass "$what"
        return 0
    fi
    fail "$what"
    return 1
}

# run CMD… — echoes and runs a command; on failure prints its output and records a failure.
run() {
    local out status arg
    printf '  $'
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            printf ' %s' "$arg"
        else
            printf " '%s'" "${arg//\'/\'\\\'\'}"
        fi
    done
    printf '\n'
    out=$("$@" 2>&1)
    status=$?
    if [[ $status -ne 0 ]]; then
        printf '%s\n' "$out" | sed 's/^/         | /'
        fail "command exited with status $status: $*"
        return 1
    fi
    return 0
}

# wait_until SECONDS CMD… — polls CMD until it succeeds or SECONDS pass. Returns CMD's success.
wait_until() {
    local limit=$1
    shift
    local end_ns=$(($(now_ns) + ${limit%.*} * 1000000000))
    while :; do
        "$@" && return 0
        (($(now_ns) >= end_ns)) && return 1
        sleep "$E2E_POLL"
    done
}

# --- time -----------------------------------------------------------------------------------

now_ns() { date +%s%N; }

# ms_between START_NS END_NS — milliseconds, may be negative.
ms_between() { echo $((($2 - $1) / 1000000)); }

# percentile P VALUES… — nearest-rank percentile of integer values (P in 1..100).
percentile() {
    local p=$1
    shift
    (($# == 0)) && { echo "n/a"; return; }
    printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ v[NR] = $1 } END {
        r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; print v[r] }'
}

# --- HTTP -----------------------------------------------------------------------------------

# http_code URL [CURL ARGS…] — the status code ("000" when no HTTP answer).
http_code() {
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time "$E2E_CURL_TIMEOUT" "$@" "$url" 2>/dev/null || true
}

# status_is CODE URL [CURL ARGS…]
status_is() {
    local want=$1
    shift
    [[ $(http_code "$@") == "$want" ]]
}

# body_is TEXT URL [CURL ARGS…] — a 200 whose body is TEXT (trailing newline ignored).
body_is() {
    local want=$1 url=$2 out
    shift 2
    out=$(curl -s -f --max-time "$E2E_CURL_TIMEOUT" "$@" "$url" 2>/dev/null) || return 1
    [[ $out == "$want" ]]
}

# header_value NAME URL [CURL ARGS…] — a response header's value (empty when absent).
header_value() {
    local name=$1 url=$2
    shift 2
    curl -s -o /dev/null -D - --max-time "$E2E_CURL_TIMEOUT" "$@" "$url" 2>/dev/null |
        tr -d '\r' | awk -v n="$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')" '
            { split($0, kv, ": "); if (tolower(kv[1]) == n) { sub(/^[^:]*: /, ""); print; exit } }'
}

# --- Swarm ----------------------------------------------------------------------------------

# containers SERVICE — IDs of the service's running containers on this node.
containers() {
    docker ps --filter "label=com.docker.swarm.service.name=$1" --filter status=running \
        --format '{{.ID}}' 2>/dev/null
}

# host_port CONTAINER PORT — the host port a `mode=host` publication gave PORT (empty if none).
host_port() {
    docker port "$1" "$2/tcp" 2>/dev/null | sed -n '1s/.*://p'
}

# task_of CONTAINER — the Swarm task ID of a container.
task_of() {
    docker inspect --format '{{index .Config.Labels "com.docker.swarm.task.id"}}' "$1" 2>/dev/null
}

# endpoints SERVICE — one line per running task: "<container> <http port> <api port>" (host
# ports on 127.0.0.1, from `--publish mode=host,target=80` and `target=8080`).
endpoints() {
    local c
    for c in $(containers "$1"); do
        printf '%s %s %s\n' "$c" "$(host_port "$c" 80)" "$(host_port "$c" 8080)"
    done
}

# front_port SERVICE — the host port of the first running task's port 80: the "front door"
# a user curls (there is no ingress mesh to pick a replica for us).
front_port() {
    endpoints "$1" | awk '$2 != "" { print $2; exit }'
}

# running_replicas SERVICE — how many of the service's tasks are running.
running_replicas() {
    docker service ps "$1" --filter desired-state=running --format '{{.CurrentState}}' 2>/dev/null |
        grep -c '^Running' || true
}

# converged SERVICE N — exactly N running tasks, and no container left over from older tasks.
converged() {
    [[ $(running_replicas "$1") == "$2" ]] && [[ $(containers "$1" | wc -l) == "$2" ]]
}

# task_running_ns SERVICE — when the (first) running task of SERVICE started running (ns).
task_running_ns() {
    local ids
    ids=$(docker service ps -q --filter desired-state=running "$1" 2>/dev/null) || return 1
    [[ -n $ids ]] || return 1
    # shellcheck disable=SC2086
    docker inspect --format '{{if eq .Status.State "running"}}{{.Status.Timestamp.UnixNano}}{{end}}' $ids \
        2>/dev/null | awk 'NF { print; found = 1; exit } END { exit !found }'
}

# update_completed SERVICE — the last `docker service update` finished rolling out.
update_completed() {
    local state
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$1" 2>/dev/null)
    [[ -z $state || $state == completed ]]
}

# --- cleanup ----------------------------------------------------------------------------------

# no_containers_of SERVICE… — no container (running or stopping) of these services is left.
no_containers_of() {
    local s
    for s in "$@"; do
        [[ -z $(docker ps -aq --filter "label=com.docker.swarm.service.name=$s" 2>/dev/null) ]] || return 1
    done
    return 0
}

# track KIND NAME — remember something the suite is about to create (removed by cleanup).
track() { TRACKED+=("$1:$2"); }

# cleanup — removes everything tracked: stacks, services, then (once their containers are gone)
# networks, secrets and configs. Bounded; never fails.
cleanup() {
    local item kind name services=() stacks=() networks=() secrets=() configs=()
    for item in "${TRACKED[@]}"; do
        kind=${item%%:*}
        name=${item#*:}
        case $kind in
            stack) stacks+=("$name") ;;
            service) services+=("$name") ;;
            network) networks+=("$name") ;;
            secret) secrets+=("$name") ;;
            config) configs+=("$name") ;;
        esac
    done
    for name in "${stacks[@]}"; do
        docker stack rm "$name" >/dev/null 2>&1 || true
    done
    for name in "${services[@]}"; do
        docker service rm "$name" >/dev/null 2>&1 || true
    done
    local all=("${services[@]}")
    for name in "${stacks[@]}"; do
        mapfile -t -O "${#all[@]}" all < <(docker ps -a --filter "label=com.docker.stack.namespace=$name" \
            --format '{{index .Labels "com.docker.swarm.service.name"}}' 2>/dev/null)
    done
    wait_until 40 no_containers_of "${all[@]}" || log "cleanup: some containers are still stopping"
    for name in "${secrets[@]}"; do
        docker secret rm "$name" >/dev/null 2>&1 || true
    done
    for name in "${configs[@]}"; do
        docker config rm "$name" >/dev/null 2>&1 || true
    done
    for name in "${networks[@]}"; do
        wait_until 20 docker network rm "$name" >/dev/null 2>&1 ||
            log "cleanup: cannot remove network $name"
    done
}
