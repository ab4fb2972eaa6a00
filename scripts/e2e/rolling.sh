# shellcheck shell=bash
# Rolling updates under load on the real single-node Swarm (issue 10, "Tests"): zero failed
# requests while Swarm updates, scales or drains a service. Sourced by scripts/e2e.sh; the step
# `rolling` runs the scenarios of ROLLING_SCENARIOS in order:
#
#   exit     a 3-replica app that exits at once on SIGTERM (`sluice-demo http --on-sigterm exit`)
#   drain    the same app draining on SIGTERM (`--on-sigterm drain`): stops accepting, finishes
#            its in-flight requests, keeps its WebSockets until the stop grace
#            each under `service update --force` stop-first, start-first, and `scale 3->1->3`
#   health   a 3-replica app with a HEALTHCHECK whose new tasks take 3 s to become healthy
#            (they answer 503 to everything until then): update --force stop-first, start-first
#   one      a one-replica app, stop-first `update --force`, the proxy's TIMEOUT_QUEUE above
#            its restart time: requests wait for the new task instead of failing
#   ws       a WebSocket opened through the proxy to the draining app, whose tasks are then all
#            updated at once: it must stay open until the drain deadline (com.df.drainTimeout),
#            and a proxy with task membership must close it by then (+3 s)
#
# In every load scenario two loads run at once through the proxy for the whole window (lead-in,
# the event, convergence, tail): 1 ms requests (/demo/slow?ms=1, ROLLING_FAST_RATE req/s over
# ROLLING_FAST_CONCURRENCY keep-alive connections) and 300 ms requests (/demo/slow?ms=300,
# ROLLING_SLOW_RATE req/s over ROLLING_SLOW_CONCURRENCY connections), from `sluice-demo load
# http` (no retries; a failure is any answer but 2xx, or none within 10 s). Target: 0 failed
# requests in each. Each scenario prints requests, failures, p99, and the percentiles of
# `sluice_propagation_seconds` on the proxy's /metrics over the scenario (when it exports it).
#
# The step brings its own proxy and listener (roll-proxy, roll-listener, overlay network roll),
# so it runs alone too: `scripts/e2e.sh rolling`.
#
# Environment (defaults in brackets): ROLLING_SCENARIOS ["exit drain health one ws"];
# ROLLING_FAST_RATE [200] ROLLING_FAST_CONCURRENCY [8] ROLLING_SLOW_RATE [40]
# ROLLING_SLOW_CONCURRENCY [16]; ROLLING_LEAD_IN [2] and ROLLING_TAIL [3] seconds of load before
# the event and after convergence; ROLLING_TIMEOUT_QUEUE [20] the proxy's TIMEOUT_QUEUE;
# ROLLING_DRAIN_TIMEOUT [6] the ws scenario's com.df.drainTimeout (seconds).

ROLLING_SCENARIOS=${ROLLING_SCENARIOS:-exit drain health one ws}
ROLLING_FAST_RATE=${ROLLING_FAST_RATE:-200}
ROLLING_FAST_CONCURRENCY=${ROLLING_FAST_CONCURRENCY:-8}
ROLLING_SLOW_RATE=${ROLLING_SLOW_RATE:-40}
ROLLING_SLOW_CONCURRENCY=${ROLLING_SLOW_CONCURRENCY:-16}
ROLLING_LEAD_IN=${ROLLING_LEAD_IN:-2}
ROLLING_TAIL=${ROLLING_TAIL:-3}
ROLLING_TIMEOUT_QUEUE=${ROLLING_TIMEOUT_QUEUE:-20}
ROLLING_DRAIN_TIMEOUT=${ROLLING_DRAIN_TIMEOUT:-6}
ROLLING_STOP_GRACE=20 # the ws scenario's --stop-grace-period: well past the drain deadline

HEALTH_IMAGE=sluice-demo-health:${SLUICE_IMAGE_TAG:-latest}
ROLL_FRONT="" # host ports of roll-proxy's 80 and 8080
ROLL_API=""
ROLL_DIR=""
ROLL_LINES=() # the closing table: one line per load of each scenario
declare -A ROLL_PIDS=()

roll_demo_bin() {
    local profile=debug
    [[ ${E2E_RELEASE:-0} == 1 ]] && profile=release
    printf '%s/%s/sluice-demo' "${CARGO_TARGET_DIR:-$ROOT/target}" "$profile"
}

roll_ready() { status_is 200 "http://127.0.0.1:$ROLL_API/v1/docker-flow-proxy/ping"; }

roll_setup() {
    ROLL_DIR=$(mktemp -d /tmp/sluice-rolling.XXXXXX)
    DEMO_BIN=$(roll_demo_bin)
    [[ -x $DEMO_BIN ]] || { fail "$DEMO_BIN is missing (scripts/build-images.sh builds it)"; return 1; }
    track network roll
    run docker network create --driver overlay roll || return 1
    track service roll-listener
    run docker service create --detach --no-resolve-image --name roll-listener \
        --network roll \
        --endpoint-mode dnsrr \
        --mount "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock" \
        -e DF_NOTIFY_CREATE_SERVICE_URL=http://roll-proxy:8080/v1/docker-flow-proxy/reconfigure \
        -e DF_NOTIFY_REMOVE_SERVICE_URL=http://roll-proxy:8080/v1/docker-flow-proxy/remove \
        --constraint 'node.role==manager' \
        "$LISTENER_IMAGE" || return 1
    track service roll-proxy
    run docker service create --detach --no-resolve-image --name roll-proxy \
        --publish mode=host,target=80 \
        --publish mode=host,target=8080 \
        --network roll \
        --endpoint-mode dnsrr \
        -e MODE=swarm \
        -e SERVICE_NAME=roll-proxy \
        -e LISTENER_ADDRESS=roll-listener \
        -e TIMEOUT_QUEUE="$ROLLING_TIMEOUT_QUEUE" \
        "$PROXY_IMAGE" || return 1
    check "roll-listener and roll-proxy are running" \
        wait_until "$E2E_WAIT" roll_infra_converged || return 1
    read -r _ ROLL_FRONT ROLL_API < <(endpoints roll-proxy)
    [[ -n $ROLL_FRONT && -n $ROLL_API ]] || { fail "roll-proxy publishes no host ports"; return 1; }
    check "roll-proxy is ready (127.0.0.1:$ROLL_FRONT, API 127.0.0.1:$ROLL_API)" \
        wait_until "$E2E_WAIT" roll_ready
}
roll_infra_converged() { converged roll-listener 1 && converged roll-proxy 1; }

# roll_app NAME REPLICAS IMAGE [SERVICE OPTIONS…] -- [APP ARGS…] — a demo app behind roll-proxy
# at http://NAME.test/demo/…; waits until the proxy reaches all its replicas.
roll_app() {
    local name=$1 replicas=$2 image=$3 opts=() args=()
    shift 3
    while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
    (($#)) && shift
    args=("$@")
    track service "$name"
    run docker service create --detach --no-resolve-image --name "$name" \
        --replicas "$replicas" \
        --network roll \
        --label com.df.notify=true \
        --label com.df.servicePath=/demo \
        --label com.df.serviceDomain="$name.test" \
        --label com.df.port=8080 \
        "${opts[@]}" \
        "$image" http --port 8080 "${args[@]}" || return 1
    check "$name: $replicas task(s) running" wait_until 90 converged "$name" "$replicas" || return 1
    check "$name: the proxy reaches all $replicas task(s)" wait_until "$E2E_WAIT" roll_reaches "$name" "$replicas"
}

# roll_reaches NAME N — requests through the proxy are answered by N distinct replicas.
roll_reaches() {
    local i seen
    declare -A got=()
    for ((i = 0; i < 6 * $2; i++)); do
        seen=$(header_value x-served-by "http://127.0.0.1:$ROLL_FRONT/demo/hello" -H "Host: $1.test")
        [[ -n $seen ]] && got[$seen]=1
    done
    ((${#got[@]} == $2))
}

roll_remove() {
    run docker service rm "$1"
    wait_until 40 no_containers_of "$1" || note "$1's containers are still stopping"
}

# --- load -----------------------------------------------------------------------------------

# roll_load_start NAME SERVICE — the fast and the slow load on SERVICE, in the background.
roll_load_start() {
    local name=$1 service=$2 kind path rate conc
    for kind in fast slow; do
        if [[ $kind == fast ]]; then
            path="/demo/slow?ms=1" rate=$ROLLING_FAST_RATE conc=$ROLLING_FAST_CONCURRENCY
        else
            path="/demo/slow?ms=300" rate=$ROLLING_SLOW_RATE conc=$ROLLING_SLOW_CONCURRENCY
        fi
        "$DEMO_BIN" load http "http://127.0.0.1:$ROLL_FRONT$path" --host "$service.test" \
            --rate "$rate" --concurrency "$conc" --seconds 300 --timeout 10 \
            >"$ROLL_DIR/$name-$kind.out" 2>"$ROLL_DIR/$name-$kind.err" &
        ROLL_PIDS[$name-$kind]=$!
    done
}

# roll_load_stop NAME — SIGTERM to both loads; they let their requests in flight end (≤ 10 s).
roll_load_stop() {
    local key pid
    for key in "$1-fast" "$1-slow"; do
        pid=${ROLL_PIDS[$key]:-}
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until 20 roll_gone "$pid"; then
            note "load $key did not stop: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        unset "ROLL_PIDS[$key]"
    done
}
roll_gone() { ! kill -0 "$1" 2>/dev/null; }

# roll_field KEY LINE — the value of KEY=value in a `load:` line.
roll_field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# roll_report KEY NAME — one line per load, a check of 0 failures each, the first failures shown.
roll_report() {
    local name=$1 kind line requests failures p99 label
    for kind in fast slow; do
        line=$(grep '^load:' "$ROLL_DIR/$name-$kind.out" 2>/dev/null)
        label="$2 [$([[ $kind == fast ]] && echo '1 ms' || echo '300 ms') requests]"
        if [[ -z $line ]]; then
            fail "$label: the load printed no result ($(head -c 300 "$ROLL_DIR/$name-$kind.err" 2>/dev/null))"
            ROLL_LINES+=("$(printf '%-46s no result' "$label")")
            continue
        fi
        requests=$(roll_field requests "$line")
        failures=$(roll_field failures "$line")
        p99=$(roll_field p99_ms "$line")
        ROLL_LINES+=("$(printf '%-46s requests %6s  failed %4s  p99 %8s ms' "$label" "$requests" "$failures" "$p99")")
        if ((requests > 0 && failures == 0)); then
            pass "$label: 0 failed of $requests (p99 $p99 ms)"
        else
            fail "$label: $failures failed of $requests (p99 $p99 ms)"
            grep '^failure:' "$ROLL_DIR/$name-$kind.out" | head -n 5 | sed 's/^/           | /'
        fi
    done
}

# --- propagation (sluice_propagation_seconds on roll-proxy's /metrics) --------------------------

roll_metrics() {
    curl -s --max-time "$E2E_CURL_TIMEOUT" "http://127.0.0.1:$ROLL_API/metrics" 2>/dev/null |
        grep '^sluice_propagation_seconds_bucket' || true
}

# roll_propagation BEFORE_FILE AFTER_FILE — p50/p90/p99 per series of the histogram's growth
# between the two scrapes (upper bucket bounds, in ms).
roll_propagation() {
    [[ -s $2 ]] || { echo "sluice_propagation_seconds: not exported by this proxy"; return; }
    awk '
        function series(line,   s) { s = line; sub(/^sluice_propagation_seconds_bucket/, "", s);
            sub(/ [^ ]*$/, "", s); gsub(/,?le="[^"]*"/, "", s); sub(/\{,/, "{", s); return s }
        function le(line,   m) { match(line, /le="[^"]*"/); return substr(line, RSTART + 4, RLENGTH - 5) }
        FNR == NR { before[series($0) SUBSEP le($0)] = $NF; next }
        { k = series($0); b = le($0); n = $NF - before[k SUBSEP b]; cnt[k, b] = n
          if (!(k in seen)) { seen[k] = 1; order[++ns] = k }; bounds[k] = bounds[k] " " b }
        END {
            for (i = 1; i <= ns; i++) {
                k = order[i]; nb = split(substr(bounds[k], 2), bs, " "); total = cnt[k, "+Inf"]
                if (total <= 0) continue
                out = sprintf("%s n=%d", (k == "" ? "all" : k), total)
                split("50 90 99", ps, " ")
                for (j = 1; j <= 3; j++) {
                    for (m = 1; m <= nb; m++) if (cnt[k, bs[m]] >= ps[j] / 100 * total) break
                    v = bs[m]; out = out sprintf(" p%s<=%s", ps[j], (v == "+Inf" ? v : sprintf("%.0fms", v * 1000)))
                }
                print out; any = 1
            }
            if (!any) print "sluice_propagation_seconds: no observation during the scenario"
        }' "$1" "$2"
}

# --- scenarios --------------------------------------------------------------------------------

# roll_updated SERVICE STARTED_BEFORE N — an update that started after STARTED_BEFORE completed
# and N tasks run (no container of an old task left).
roll_updated() {
    local started state
    started=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null)
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$1" 2>/dev/null)
    [[ -n $started && $started != "$2" && $state == completed ]] && converged "$1" "$3"
}
roll_update_started() {
    docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null
}

# event_update SERVICE ORDER — `docker service update --force --update-order ORDER`, to the end.
event_update() {
    local before t0
    before=$(roll_update_started "$1")
    t0=$SECONDS
    run docker service update --detach --force --update-order "$2" "$1" || return 1
    if wait_until 120 roll_updated "$1" "$before" 3; then
        note "update --force $2 of $1 completed in $((SECONDS - t0)) s"
    else
        fail "the update --force $2 of $1 did not complete within 120 s"
        return 1
    fi
}

# event_scale SERVICE — `docker service scale SERVICE=1`, then back to 3.
event_scale() {
    local t0=$SECONDS
    run docker service scale --detach "$1=1" >/dev/null || return 1
    wait_until 60 converged "$1" 1 || { fail "$1 did not scale down to 1 within 60 s"; return 1; }
    run docker service scale --detach "$1=3" >/dev/null || return 1
    wait_until 90 converged "$1" 3 || { fail "$1 did not scale back to 3 within 90 s"; return 1; }
    note "scale 3->1->3 of $1 done in $((SECONDS - t0)) s"
}

# event_update_one SERVICE — stop-first update of a one-replica service.
event_update_one() {
    local before t0
    before=$(roll_update_started "$1")
    t0=$SECONDS
    run docker service update --detach --force --update-order stop-first "$1" || return 1
    if wait_until 120 roll_updated "$1" "$before" 1; then
        note "update --force stop-first of the single task of $1 completed in $((SECONDS - t0)) s"
    else
        fail "the update of $1 did not complete within 120 s"
        return 1
    fi
}

# roll_scenario NAME SERVICE EVENT… — both loads on SERVICE around EVENT; report.
roll_scenario() {
    local name=$1 service=$2 started=$SECONDS key=${1//[^A-Za-z0-9_-]/_}
    shift 2
    log "rolling scenario $name"
    roll_metrics >"$ROLL_DIR/$key.before"
    roll_load_start "$key" "$service"
    sleep "$ROLLING_LEAD_IN" # load before the event: the baseline
    "$@"
    sleep "$ROLLING_TAIL" # load after convergence: the new tasks serve
    roll_load_stop "$key"
    roll_metrics >"$ROLL_DIR/$key.after"
    roll_report "$key" "$name"
    local prop
    prop=$(roll_propagation "$ROLL_DIR/$key.before" "$ROLL_DIR/$key.after")
    note "propagation: ${prop//$'\n'/; }"
    ROLL_LINES+=("$(printf '%-46s load window %d s; propagation: %s' "" $((SECONDS - started)) "${prop//$'\n'/; }")")
}

roll_matrix() {
    local mode=$1 service=roll-$1
    roll_app "$service" 3 "$DEMO_IMAGE" -- --on-sigterm "$mode" || return 1
    roll_scenario "$mode/stop-first" "$service" event_update "$service" stop-first
    roll_scenario "$mode/start-first" "$service" event_update "$service" start-first
    roll_scenario "$mode/scale-3-1-3" "$service" event_scale "$service"
    roll_remove "$service"
}

roll_health_image() {
    local build=(docker build -q -t "$HEALTH_IMAGE" -)
    [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1 && build=(env DOCKER_BUILDKIT=0 "${build[@]}")
    printf 'FROM %s\nHEALTHCHECK --interval=1s --timeout=2s --start-period=30s --retries=3 CMD ["/usr/local/bin/sluice-demo", "health"]\n' \
        "$DEMO_IMAGE" | "${build[@]}" >/dev/null 2>"$ROLL_DIR/health-build.log" ||
        { cat "$ROLL_DIR/health-build.log"; return 1; }
}

scenario_exit() { roll_matrix exit; }
scenario_drain() { roll_matrix drain; }

scenario_health() {
    check "an image with a HEALTHCHECK ($HEALTH_IMAGE: sluice-demo health every 1 s)" roll_health_image || return 1
    roll_app roll-health 3 "$HEALTH_IMAGE" -- --on-sigterm drain --healthy-after 3 || return 1
    roll_scenario "health/stop-first" roll-health event_update roll-health stop-first
    roll_scenario "health/start-first" roll-health event_update roll-health start-first
    roll_remove roll-health
}

scenario_one() {
    roll_app roll-one 1 "$DEMO_IMAGE" -- --on-sigterm exit || return 1
    roll_scenario "one/stop-first (TIMEOUT_QUEUE=${ROLLING_TIMEOUT_QUEUE})" roll-one event_update_one roll-one
    roll_remove roll-one
}

scenario_ws() {
    roll_app roll-ws 3 "$DEMO_IMAGE" --stop-grace-period "${ROLLING_STOP_GRACE}s" \
        --label com.df.drainTimeout="$ROLLING_DRAIN_TIMEOUT" -- \
        --on-sigterm drain --drain-seconds $((ROLLING_STOP_GRACE + 30)) || return 1
    local out=$ROLL_DIR/ws.out pid t_update opened ended open_after why
    "$DEMO_BIN" load ws "ws://127.0.0.1:$ROLL_FRONT/demo/ws" --host roll-ws.test \
        --interval-ms 200 --seconds $((ROLLING_STOP_GRACE + 30)) >"$out" 2>"$ROLL_DIR/ws.err" &
    pid=$!
    if ! wait_until 10 grep -q '^ws: opened' "$out"; then
        fail "ws: no WebSocket through the proxy ($(head -c 300 "$ROLL_DIR/ws.err"))"
        kill "$pid" 2>/dev/null
        roll_remove roll-ws
        return 1
    fi
    sleep 1 # a few echoes before the update
    t_update=$(($(now_ns) / 1000000))
    run docker service update --detach --force --update-parallelism 3 roll-ws
    wait_until $((ROLLING_STOP_GRACE + 40)) roll_gone "$pid" || kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    opened=$(sed -n 's/^ws: opened at_ms=\([0-9]*\).*/\1/p' "$out")
    ended=$(sed -n 's/^ws: ended at_ms=\([0-9]*\).*/\1/p' "$out")
    why=$(sed -n 's/^ws: ended .* why=//p' "$out")
    if [[ -z $ended ]]; then
        fail "ws: the client reported no end ($(tail -c 300 "$out"))"
    else
        open_after=$((ended - t_update))
        note "ws: opened $((t_update - opened)) ms before the update, ended $open_after ms after it ($why; drain deadline ${ROLLING_DRAIN_TIMEOUT} s, stop grace ${ROLLING_STOP_GRACE} s)"
        ROLL_LINES+=("$(printf '%-46s open %s ms after the update (%s); drainTimeout %s s, stop grace %s s' \
            "ws [drain app]" "$open_after" "$why" "$ROLLING_DRAIN_TIMEOUT" "$ROLLING_STOP_GRACE")")
        check "ws: the WebSocket stayed open until the drain deadline (${ROLLING_DRAIN_TIMEOUT} s; ended after $open_after ms: $why)" \
            test "$open_after" -ge $((ROLLING_DRAIN_TIMEOUT * 1000 - 500))
        # A proxy with task membership (it answers GET /v1/sluice/tasks) closes the tunnels of a
        # draining task at its deadline; one without it leaves them to the app (stop grace).
        if status_is 200 "http://127.0.0.1:$ROLL_API/v1/sluice/tasks"; then
            check "ws: the proxy closed it at the drain deadline (ended after $open_after ms, bound $((ROLLING_DRAIN_TIMEOUT + 3)) s)" \
                test "$open_after" -le $(((ROLLING_DRAIN_TIMEOUT + 3) * 1000))
        else
            note "ws: this proxy has no task membership (GET /v1/sluice/tasks): the drain deadline is not its to enforce"
        fi
    fi
    wait_until 60 roll_updated_any roll-ws || note "roll-ws update still running"
    roll_remove roll-ws
}
roll_updated_any() { update_completed "$1" && converged "$1" 3; }

step_rolling() {
    local started=$SECONDS scenario
    for scenario in $ROLLING_SCENARIOS; do
        declare -F "scenario_$scenario" >/dev/null || { fail "unknown rolling scenario $scenario"; return 1; }
    done
    ROLL_LINES=()
    roll_setup || return 1
    note "loads through roll-proxy: 1 ms requests at $ROLLING_FAST_RATE req/s over $ROLLING_FAST_CONCURRENCY connections, 300 ms requests at $ROLLING_SLOW_RATE req/s over $ROLLING_SLOW_CONCURRENCY connections; TIMEOUT_QUEUE=$ROLLING_TIMEOUT_QUEUE"
    for scenario in $ROLLING_SCENARIOS; do
        "scenario_$scenario"
    done
    log "rolling updates under load (0 failed requests expected in each):"
    printf '  %s\n' "${ROLL_LINES[@]}"
    log "the rolling scenarios took $((SECONDS - started)) s"
    rm -rf "$ROLL_DIR"
}
