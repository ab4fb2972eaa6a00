# shellcheck shell=bash
# Scenarios under load on the three-node cluster, sourced by cluster-test.sh (run in the
# client namespace, DOCKER_HOST = the manager). Each runs a bounded load (cluster-load.sh)
# through one proxy task, marks the moment of its event, and prints requests, failures and p99.
# A scenario that misses its target fails loudly; nothing is retried to hide it.
#
#   task_states      (issue 13 item 4) every proxy task's task set of go-demo (GET
#                    /v1/sluice/tasks, pushed by the listener on the manager) names exactly the
#                    tasks the manager lists as running, on the workers, all running
#   rolling_update   `docker service update --force go-demo` (its tasks on both workers, the
#                    listener on the manager); target: 0 failed
#   drain            `docker node update --availability drain` a worker; target: 0 failed
#   node_lost        a worker's engine killed and its link cut (the node is lost); target: only
#                    requests in flight at the kill fail; measured: until Sluice stops choosing
#                    the dead addresses (the start of the last failed or slow request)
#   node_join        a new node joins (the lost one, wiped; lost first when node_lost did not
#                    run); target: its proxy task routes the full state at its first ready
#                    /ping; 0 failed through the other proxy
#   manager_restart  the manager's engine restarted; load through a worker's proxy; target: 0
#                    failed; a label change made as soon as it is back reaches every proxy
#                    task; measured: until the manager's overlay rejoins the workers' gossip

# shellcheck disable=SC2034 # SCENARIO_NOTE is read by load_report (cluster-load.sh)
SCENARIO_NOTE="" # a line about the event's timings, printed under the scenario's summary
CLUSTER_LEAD_IN=${CLUSTER_LEAD_IN:-3} # seconds of load before each event
CLUSTER_LOST_BOUND_MS=${CLUSTER_LOST_BOUND_MS:-10000} # measured here: 5.6-7.5 s (docs/swarm.md)
# Bounds of the manager restart's waits, seconds: Swarm's own recovery took 13.5-27 s for the
# control plane and 45-105 s for the overlay here (docs/swarm.md), so they leave room for it.
CLUSTER_RECOVERY_WAIT=${CLUSTER_RECOVERY_WAIT:-120}
CLUSTER_GOSSIP_WAIT=${CLUSTER_GOSSIP_WAIT:-180}

demo_only_on() { [[ $(demo_nodes) == "$1 " ]] && service_converged go-demo "$DEMO_REPLICAS"; }
node_state() { docker node inspect --format '{{.Status.State}}' "sluice-$1" 2>/dev/null; }
node_is() { [[ $(node_state "$1") == "$2" ]]; }

# rebalance — go-demo back on both workers (Swarm does not move running tasks by itself).
rebalance() {
    run docker service update --detach --force go-demo || return 1
    wait_until 90 rebalanced || { fail "go-demo did not spread back over both workers (on: $(demo_nodes))"; return 1; }
    note "go-demo rebalanced over $(demo_nodes)"
}
rebalanced() { update_completed go-demo && service_converged go-demo "$DEMO_REPLICAS" && [[ $(demo_nodes) == "n2 n3 " ]]; }

update_started() {
    docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null
}
# update_done_since SERVICE STARTED N — an update that started after STARTED completed, N tasks run.
update_done_since() {
    local started
    started=$(update_started "$1")
    [[ -n $started && $started != "$2" ]] && update_completed "$1" && service_converged "$1" "$3"
}

# The task states a proxy holds come from the manager's task list (the listener's push), not
# from container events, which each engine sees only for its own node: the proxy on the manager
# knows the state of the tasks on the workers.
TASK_SET_OF='
import json, sys
shown = json.load(sys.stdin)
services = (shown.get("membership") or {}).get("services") or {}
for task in (services.get(sys.argv[1]) or {}).get("tasks") or []:
    print(task.get("id", "?"), task.get("state", "?"), task.get("desiredState", "?"))
'
task_set_of() { curl -s --max-time 3 "$(api_url "$1" /v1/sluice/tasks)" | python3 -c "$TASK_SET_OF" "$2" 2>/dev/null | sort; }
manager_running_ids() {
    docker service ps --no-trunc -q --filter desired-state=running go-demo 2>/dev/null |
        while read -r id; do
            [[ $(docker inspect --format '{{.Status.State}}' "$id" 2>/dev/null) == running ]] && echo "$id running running"
        done | sort
}
task_set_matches() { [[ -n $2 && $(task_set_of "$1" go-demo) == "$2" ]]; }

step_task_states() {
    local node want got
    if ! status_is 200 "$(api_url n1 /v1/sluice/tasks)"; then
        fail "the proxy has no task membership (GET /v1/sluice/tasks answers $(http_code "$(api_url n1 /v1/sluice/tasks)"))"
        return 1
    fi
    want=$(manager_running_ids)
    note "the manager lists go-demo's running tasks: $(awk '{ print substr($1, 1, 12) }' <<<"$want" | tr '\n' ' ')on $(demo_nodes)"
    for node in $(up_nodes); do
        if wait_until 10 task_set_matches "$node" "$want"; then
            pass "the proxy on $node holds go-demo's $DEMO_REPLICAS running tasks on the workers, as the manager lists them"
        else
            got=$(task_set_of "$node" go-demo)
            fail "the proxy on $node holds another task set for go-demo: ${got//$'\n'/; }"
        fi
    done
}

# A rolling update across nodes: the tasks that stop are on the workers, the listener on the
# manager. A request sent to a task's address after its container is gone is swallowed by the
# overlay (no RST: the connect timeout), so the proxy must stop choosing a task once the
# manager says it is shutting down.
step_rolling_update() {
    load_start rolling "$(node_url n1 /demo/hello)" "${CLUSTER_ROLLING_SECONDS:-40}"
    sleep "$CLUSTER_LEAD_IN"
    load_mark rolling
    local before t0=$SECONDS
    before=$(update_started go-demo)
    run docker service update --detach --force go-demo || { load_wait rolling; return 1; }
    if wait_until 120 update_done_since go-demo "$before" "$DEMO_REPLICAS"; then
        SCENARIO_NOTE="update --force of go-demo's $DEMO_REPLICAS tasks (on $(demo_nodes)) completed $((SECONDS - t0)) s after it began"
        note "$SCENARIO_NOTE"
    else
        fail "the update --force of go-demo did not complete within 120 s"
    fi
    load_wait rolling
    load_report rolling
    check "rolling update: 0 failed requests through the proxy on n1 (failed: $LOAD_FAILED)" test "$LOAD_FAILED" -eq 0 ||
        load_failures_of rolling | sed 's/^/           | /'
    check "the proxy on n1 reaches exactly the new go-demo tasks" wait_until 20 reaches_every_task n1
    wait_until 90 rebalanced || note "go-demo is not spread over both workers (on: $(demo_nodes))"
}

step_drain() {
    load_start drain "$(node_url n1 /demo/hello)" 25
    sleep "$CLUSTER_LEAD_IN" # a baseline before the event
    load_mark drain
    run docker node update --availability drain sluice-n2 || { load_wait drain; return 1; }
    local t0=$SECONDS
    check "go-demo's $DEMO_REPLICAS tasks moved to n3" wait_until "$E2E_WAIT" demo_only_on n3 &&
        note "rescheduled in $((SECONDS - t0))s"
    SCENARIO_NOTE="go-demo's tasks all on n3 $((SECONDS - t0))s after the drain"
    load_wait drain
    load_report drain
    check "drain: 0 failed requests through the proxy on n1 (failed: $LOAD_FAILED)" test "$LOAD_FAILED" -eq 0 ||
        load_failures_of drain | sed 's/^/           | /'
    run docker node update --availability active sluice-n2
    check "the proxy task on n2 is back and ready after the node is active again" \
        wait_until "$E2E_WAIT" n2_proxy_back
    rebalance
}
n2_proxy_back() { global_converged && proxy_ready n2; }

# lose_node NODE — the node dies: its link goes down (no FIN, no RST: in-flight connections
# hang, as when a machine loses power), then its engine, containerd, shims and containers are
# killed (SIGKILL, by pid).
lose_node() {
    local node=$1 c pids=""
    for c in $(ndocker "$node" ps -q 2>/dev/null); do
        pids+=" $(ndocker "$node" inspect --format '{{.State.Pid}}' "$c" 2>/dev/null)"
    done
    pids+=" $(engine_pid "$node") $(leftover_pids "$node" | tr '\n' ' ')"
    ip -n "$(node_ns "$node")" link set eth0 down
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    touch "$LOAD_DIR/lost-$node"
    note "$node lost: link down, killed pids$pids"
}

step_node_lost() {
    load_start lost "$(node_url n1 /demo/hello)" "${CLUSTER_LOST_SECONDS:-45}"
    sleep "$CLUSTER_LEAD_IN"
    note "go-demo before: $(running_tasks go-demo | tr '\n' ',')"
    local t0
    t0=$(now_ns)
    load_mark lost
    lose_node n3
    local down_ms="-" moved_ms="-"
    if wait_until "$E2E_WAIT" node_is n3 down; then
        down_ms=$(ms_between "$t0" "$(now_ns)")
        note "the manager marked n3 down $down_ms ms after the kill"
    else
        fail "the manager did not mark n3 down within ${E2E_WAIT}s"
    fi
    if wait_until "$E2E_WAIT" demo_only_on n2; then
        moved_ms=$(ms_between "$t0" "$(now_ns)")
        note "go-demo runs $DEMO_REPLICAS tasks on n2 $moved_ms ms after the kill"
    else
        fail "go-demo was not rescheduled onto n2 within ${E2E_WAIT}s of the kill"
    fi
    SCENARIO_NOTE="n3 marked down after $down_ms ms, go-demo rescheduled after $moved_ms ms"
    load_wait lost
    load_report lost
    check "node lost: no request started after the kill failed (failed: $LOAD_AFTER_FAILED; $LOAD_INFLIGHT_FAILED in flight at the kill)" \
        test "$LOAD_AFTER_FAILED" -eq 0 || load_failures_of lost | sed 's/^/           | /'
    check "node lost: Sluice stopped choosing the dead addresses within ${CLUSTER_LOST_BOUND_MS} ms (the last failed or >${CLUSTER_SLOW_MS} ms request started ${LOAD_LAST_BAD_START_MS} ms after the kill)" \
        test "$LOAD_LAST_BAD_START_MS" -lt "$CLUSTER_LOST_BOUND_MS"
    check "the proxy on n1 reaches exactly the rescheduled go-demo tasks" wait_until 20 reaches_every_task n1
}

# rejoin_fresh NODE — the lost node comes back as a new machine: its old node entry is removed,
# its engine's files wiped, its link up, a new engine started and joined as a worker.
rejoin_fresh() {
    local node=$1
    run docker node rm --force "sluice-$node" || true
    kill_leftovers "$node"
    unmount_under "$RUN/$node" "$STATE/$node"
    rm -rf "${RUN:?}/$node" "${STATE:?}/$node"
    ip -n "$(node_ns "$node")" link set eth0 up
    (start_engine "$node") || return 1
    (load_images) || return 1
    rm -f "$LOAD_DIR/lost-$node"
    (join_node "$node") || return 1
}

step_node_join() {
    # Run on its own (without node_lost), n3 is still there: it goes first, without load.
    if [[ ! -e $LOAD_DIR/lost-n3 ]]; then
        lose_node n3
        wait_until "$E2E_WAIT" demo_only_on n2 || note "go-demo was not rescheduled onto n2"
    fi
    load_start join "$(node_url n1 /demo/hello)" 30
    sleep "$CLUSTER_LEAD_IN"
    load_mark join
    local t0 t_ready ok=0 hello digest
    t0=$(now_ns)
    if ! rejoin_fresh n3; then
        fail "n3 could not join again as a new node"
        load_wait join
        return 1
    fi
    note "n3 joined as a new node $(ms_between "$t0" "$(now_ns)") ms after the start (engine, images, join)"
    # The first moment its proxy task says ready, it must route the full state.
    if wait_until "$E2E_WAIT" proxy_ready n3; then
        t_ready=$(now_ns)
        hello=$(http_code "$(node_url n3 /demo/hello)")
        digest=$(digest_of n3)
        ok=1
        note "the proxy task on n3 was ready $(ms_between "$t0" "$t_ready") ms after the start; at once: /demo/hello $hello, digest $digest (n1: $(digest_of n1))"
        SCENARIO_NOTE="n3's proxy ready $(ms_between "$t0" "$t_ready") ms after the node was started; at that moment /demo/hello $hello, digest ${digest:-none} vs n1 $(digest_of n1)"
    fi
    check "the new node's proxy task became ready" test "$ok" -eq 1
    check "at its first ready /ping the new proxy task routes /demo/hello (200; got ${hello:-none})" test "${hello:-}" == 200
    check "at its first ready /ping the new proxy task has the full state (digest = n1's)" \
        test "${digest:-}" == "$(digest_of n1)"
    check "the new node's proxy reaches every go-demo task" wait_until 20 reaches_every_task n3
    load_wait join
    load_report join
    check "node join: 0 failed requests through the proxy on n1 (failed: $LOAD_FAILED)" test "$LOAD_FAILED" -eq 0 ||
        load_failures_of join | sed 's/^/           | /'
    rebalance
}

# up_ready — every node that is up (a lost node, when node_lost ran alone, is not) is Ready.
up_ready() { [[ $(ready_nodes) == "$(up_nodes | wc -l)" ]]; }

manager_back() {
    engine_answers n1 && up_ready && listener_on_manager && global_converged && proxy_ready n1
}

# why_not_back — which part of manager_back is still missing.
why_not_back() {
    local part missing=""
    for part in "engine_answers n1" up_ready listener_on_manager global_converged "proxy_ready n1"; do
        # shellcheck disable=SC2086 # word splitting of the part is wanted
        $part || missing+="$part; "
    done
    echo "${missing:-nothing}"
    docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}' 2>&1 | sed 's/^/           | /'
    docker service ps --filter desired-state=running --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' \
        swarm-listener proxy 2>&1 | head -n 8 | sed 's/^/           | /'
}

step_manager_restart() {
    load_start manager "$(node_url n2 /demo/hello)" "${CLUSTER_MANAGER_SECONDS:-40}"
    sleep "$CLUSTER_LEAD_IN"
    load_mark manager
    local t0
    t0=$(now_ns)
    note "\$ kill -TERM $(engine_pid n1)   # the manager's dockerd (SIGKILL if it is not gone in 20 s)"
    stop_engine n1
    note "the manager's engine stopped after $(ms_between "$t0" "$(now_ns)") ms; starting it again"
    (start_engine n1) || { fail "the manager's engine did not start again"; load_wait manager; return 1; }
    if wait_until "$CLUSTER_RECOVERY_WAIT" manager_back; then
        note "manager back: 3 nodes Ready, listener and proxy on n1 running and ready $(ms_between "$t0" "$(now_ns)") ms after the stop"
        SCENARIO_NOTE="manager, listener and n1's proxy back and ready $(ms_between "$t0" "$(now_ns)") ms after the stop began"
    else
        fail "the swarm did not recover within ${CLUSTER_RECOVERY_WAIT}s of the manager's restart"
        note "still missing: $(why_not_back)"
    fi
    # A change made as soon as the manager is back (the load still runs). The manager's
    # overlay may still be cut off from the workers' gossip: then the listener reaches only
    # the proxy task on the manager, and that task cannot distribute the change to the others.
    local before t_change gossip="not within ${CLUSTER_GOSSIP_WAIT} s" right_after="reached every proxy task" lost=0
    before=$(digest_of n2)
    t_change=$(now_ns)
    run docker service update --detach --label-add com.df.servicePath=/demo,/after-restart go-demo || return 1
    if wait_until 30 changed_everywhere "$before"; then
        pass "a label change made right after the restart reaches every proxy task ($(ms_between "$t_change" "$(now_ns)") ms)"
    else
        # Expected while the manager's overlay is cut off: checked below, once it is whole.
        right_after="reached only: $(changed_nodes "$before") within 30 s"
        lost=1
        note "a label change made right after the restart $right_after (the overlay is still cut off)"
    fi
    load_wait manager
    load_report manager
    check "manager restart: 0 failed requests through the proxy on n2 (failed: $LOAD_FAILED)" test "$LOAD_FAILED" -eq 0 ||
        load_failures_of manager | sed 's/^/           | /'
    if wait_until "$CLUSTER_GOSSIP_WAIT" manager_gossip_whole; then
        gossip="$(ms_between "$t0" "$(now_ns)") ms after the stop began"
        note "the manager's overlay sees all 3 nodes again (gossip peers) $gossip"
        check "the proxy on n1 reaches every go-demo task again" wait_until 60 reaches_every_task n1
        if ((lost)); then
            # The proxies that missed it re-check the listener every LISTENER_RESYNC_INTERVAL
            # (15 s by default) and converge: bounded by that interval plus a margin.
            local t_whole
            t_whole=$(now_ns)
            if wait_until 30 changed_everywhere "$before"; then
                pass "the change missed during the partition reaches every proxy task $(ms_between "$t_whole" "$(now_ns)") ms after the overlay is whole (listener resync)"
                right_after+="; every proxy task $(ms_between "$t_whole" "$(now_ns)") ms after the overlay was whole"
            else
                fail "the change missed during the partition did not reach every proxy task within 30 s of the overlay being whole (reached only: $(changed_nodes "$before"))"
                show_digests
            fi
        fi
    else
        fail "the manager's overlay did not see the workers again within ${CLUSTER_GOSSIP_WAIT} s: $(manager_peers) peer(s)"
    fi
    SCENARIO_LINES+=("         (a change right after the restart $right_after; the manager's overlay rejoined the workers $gossip)")
    before=$(digest_of n2)
    t_change=$(now_ns)
    run docker service update --detach --label-add com.df.servicePath=/demo,/after-rejoin go-demo || return 1
    if wait_until 30 changed_everywhere "$before"; then
        pass "once the overlay is whole again, a label change reaches every proxy task ($(ms_between "$t_change" "$(now_ns)") ms)"
    else
        fail "once the overlay is whole again, a label change still did not reach every proxy task"
        show_digests
    fi
}

manager_peers() { docker network inspect --verbose proxy --format '{{len .Peers}}' 2>/dev/null; }
manager_gossip_whole() { [[ $(manager_peers) == "$(up_nodes | wc -l)" ]]; }

# changed_everywhere DIGEST — every proxy task's digest differs from DIGEST, and they agree.
changed_everywhere() {
    local node
    for node in $(up_nodes); do
        [[ $(digest_of "$node") != "$1" ]] || return 1
    done
    digests_agree
}

changed_nodes() {
    local node out=""
    for node in $(up_nodes); do
        [[ $(digest_of "$node") != "$1" ]] && out+="$node "
    done
    echo "${out:-none}"
}
