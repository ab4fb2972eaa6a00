# shellcheck shell=bash
# The walkthrough (shared/seed) on the three-node cluster, sourced by cluster-test.sh and run
# in the client namespace with DOCKER_HOST set to the manager. Differences from the
# single-node suite (scripts/e2e/seed.sh), all because there are several nodes:
# - the proxy is a global service (one task per node) publishing 80 and 8080 in `mode=host`
#   on every node's own address ($CLUSTER_NET.11-13), so each task is queried on its node;
# - the listener mounts the manager engine's socket, /var/run/docker-sluice-n1.sock (on a
#   real cluster: /var/run/docker.sock of the manager it runs on);
# - go-demo runs 4 replicas constrained to the workers (`node.role==worker`).

PROXY_IMAGE=sluice-proxy:$SLUICE_IMAGE_TAG
LISTENER_IMAGE=sluice-listener:$SLUICE_IMAGE_TAG
DEMO_IMAGE=sluice-demo:$SLUICE_IMAGE_TAG
DEMO_REPLICAS=${DEMO_REPLICAS:-4}
PROBE=(--max-time 3)

# up_nodes — the nodes whose engine answers (a lost node is skipped by the checks).
up_nodes() {
    local node
    for node in "${NODES[@]}"; do
        engine_answers "$node" && [[ ! -e $LOAD_DIR/lost-$node ]] && echo "$node"
    done
}

node_url() { printf 'http://%s%s' "$(node_addr "$1")" "$2"; }
api_url() { printf 'http://%s:8080%s' "$(node_addr "$1")" "$2"; }

# on_every_proxy CMD… — CMD NODE succeeds for the proxy task of every node that is up.
on_every_proxy() {
    local node
    for node in $(up_nodes); do "$@" "$node" || return 1; done
}

proxy_ready() { status_is 200 "$(api_url "$1" /v1/docker-flow-proxy/ping)"; }
proxy_status() { status_is "$1" "$(node_url "$3" "$2")"; }
digest_of() { header_value x-sluice-digest "$(api_url "$1" /v1/docker-flow-proxy/config)"; }

digests_agree() {
    local node d first=""
    for node in $(up_nodes); do
        d=$(digest_of "$node")
        [[ -n $d ]] || return 1
        [[ -z $first ]] && first=$d
        [[ $d == "$first" ]] || return 1
    done
}

show_digests() {
    local node
    for node in $(up_nodes); do
        note "proxy on $node ($(node_addr "$node")): digest $(digest_of "$node")"
    done
}

# running_tasks SERVICE — "<node> <container id (12)>" per running task, from the manager.
running_tasks() {
    local ids
    ids=$(docker service ps -q --filter desired-state=running "$1" 2>/dev/null)
    [[ -n $ids ]] || return 0
    # shellcheck disable=SC2086
    docker inspect --format '{{if eq .Status.State "running"}}{{.NodeID}} {{.Status.ContainerStatus.ContainerID}}{{end}}' $ids 2>/dev/null |
        while read -r node_id cid; do
            [[ -n $cid ]] || continue
            printf '%s %s\n' "$(docker node inspect --format '{{.Description.Hostname}}' "$node_id" 2>/dev/null | sed 's/^sluice-//')" "${cid:0:12}"
        done
}

# service_converged SERVICE N — N tasks running, as the manager sees them.
service_converged() { [[ $(running_tasks "$1" | wc -l) == "$2" ]]; }

# global_converged — one running proxy task on every node that is up.
global_converged() {
    local node tasks
    tasks=$(running_tasks proxy | awk '{ print $1 }' | sort | tr '\n' ' ')
    [[ $tasks == "$(up_nodes | sort | tr '\n' ' ')" ]]
}

demo_nodes() { running_tasks go-demo | awk '{ print $1 }' | sort -u | tr '\n' ' '; }

# served_by NODE COUNT — the X-Served-By values of COUNT requests through NODE's proxy.
served_by() {
    local node=$1 i
    for ((i = 0; i < $2; i++)); do
        header_value x-served-by "$(node_url "$node" /demo/hello)"
    done | sort -u | tr '\n' ' '
}

# reaches_every_task NODE — NODE's proxy reaches exactly the running go-demo tasks.
reaches_every_task() {
    local want
    want=$(running_tasks go-demo | awk '{ print $2 }' | sort | tr '\n' ' ')
    [[ -n $want && $(served_by "$1" $((4 * DEMO_REPLICAS))) == "$want" ]]
}

step_networks() {
    track network proxy
    run docker network create --driver overlay proxy || return 1
    track network go-demo
    run docker network create --driver overlay go-demo || return 1
}

step_listener() {
    track service swarm-listener
    run docker service create --detach --no-resolve-image --name swarm-listener \
        --network proxy \
        --endpoint-mode dnsrr \
        --mount "type=bind,source=$(node_sock n1),target=/var/run/docker.sock" \
        -e DF_NOTIFY_CREATE_SERVICE_URL=http://proxy:8080/v1/docker-flow-proxy/reconfigure \
        -e DF_NOTIFY_REMOVE_SERVICE_URL=http://proxy:8080/v1/docker-flow-proxy/remove \
        --constraint 'node.role==manager' \
        "$LISTENER_IMAGE" || return 1
    check "swarm-listener runs on the manager" wait_until "$E2E_WAIT" listener_on_manager
}

listener_on_manager() { [[ $(running_tasks swarm-listener | awk '{ print $1 }') == n1 ]]; }

step_proxy() {
    track service proxy
    run docker service create --detach --no-resolve-image --name proxy \
        --mode global \
        --publish mode=host,target=80,published=80 \
        --publish mode=host,target=8080,published=8080 \
        --network proxy \
        --endpoint-mode dnsrr \
        -e MODE=swarm \
        -e LISTENER_ADDRESS=swarm-listener \
        "$PROXY_IMAGE" || return 1
    check "the global proxy runs one task on each of the 3 nodes" wait_until "$E2E_WAIT" global_converged || return 1
    check "every proxy task is ready (/ping 200 on $CLUSTER_NET.11-13:8080)" \
        wait_until "$E2E_WAIT" on_every_proxy proxy_ready || return 1
    check "every proxy task answers 503 for /demo/hello before go-demo exists" \
        on_every_proxy proxy_status 503 /demo/hello
}

step_go_demo() {
    track service go-demo-db
    run docker service create --detach --no-resolve-image --name go-demo-db \
        --network go-demo \
        "$DEMO_IMAGE" tcp --port 27017 || return 1
    track service go-demo
    run docker service create --detach --no-resolve-image --name go-demo \
        -e DB=go-demo-db \
        --network go-demo \
        --network proxy \
        --label com.df.notify=true \
        --label com.df.distribute=true \
        --label com.df.servicePath=/demo \
        --label com.df.port=8080 \
        --replicas "$DEMO_REPLICAS" \
        --constraint 'node.role==worker' \
        "$DEMO_IMAGE" || return 1
    check "go-demo runs $DEMO_REPLICAS tasks" wait_until "$E2E_WAIT" service_converged go-demo "$DEMO_REPLICAS" || return 1
    check "go-demo's tasks are spread over both workers (on: $(demo_nodes))" test "$(demo_nodes)" == "n2 n3 "
    check "every proxy task answers /demo/hello with go-demo's body" \
        wait_until "$E2E_WAIT" on_every_proxy hello_ok
}

hello_ok() { body_is "hello, world!" "$(node_url "$1" /demo/hello)" "${PROBE[@]}"; }

step_every_route() {
    local node
    note "go-demo tasks (node container): $(running_tasks go-demo | tr '\n' ',' )"
    for node in $(up_nodes); do
        check "the proxy on $node reaches all $DEMO_REPLICAS go-demo tasks on both workers (X-Served-By: $(served_by "$node" 16))" \
            wait_until 20 reaches_every_task "$node"
    done
    check "every proxy task reports the same routing digest" wait_until 10 digests_agree
    show_digests
}

label_reached() {
    on_every_proxy proxy_status 200 /demo/person && on_every_proxy proxy_status 503 /demo/replica &&
        digests_agree
}

step_label_change() {
    local t0 before
    before=$(digest_of n1)
    t0=$(now_ns)
    run docker service update --detach --label-add com.df.servicePath=/demo/hello,/demo/person go-demo || return 1
    if wait_until "$E2E_WAIT" label_reached; then
        pass "the label change reached the proxy on every node in $(ms_between "$t0" "$(now_ns)") ms (digests agree)"
    else
        fail "the label change did not reach every proxy task"
        show_digests
        return 1
    fi
    check "the digest changed with the routes" test "$(digest_of n1)" != "$before"
}

removed_everywhere() { on_every_proxy proxy_status 503 /demo/hello && digests_agree; }

step_remove() {
    local t0
    t0=$(now_ns)
    run docker service rm go-demo || return 1
    if wait_until "$E2E_WAIT" removed_everywhere; then
        pass "the removal reached the proxy on every node ($(up_nodes | tr '\n' ' ')) in $(ms_between "$t0" "$(now_ns)") ms"
    else
        fail "after docker service rm go-demo, not every proxy task answers 503"
        show_digests
    fi
}
