#!/usr/bin/env bash
# A three-node Docker Swarm (1 manager, 2 workers) on this one machine, for the multi-node
# end-to-end test (scripts/e2e/cluster-test.sh) and for trying Sluice across nodes by hand.
#
#   scripts/e2e/cluster.sh up       create it (idempotent: a healthy cluster is kept as it is)
#   scripts/e2e/cluster.sh down     remove everything it created, also after a failed run
#   scripts/e2e/cluster.sh status   print what exists; exit 0 only when the swarm is healthy
#   scripts/e2e/cluster.sh load     (re)load the sluice-* images of the host engine into every node
#   scripts/e2e/cluster.sh env      print `export DOCKER_HOST=…` for the manager
#
# Layout (every name starts with "sluice" or "slc", so nothing collides with the host engine):
#   bridge slc-br0 (no address on the host), one network namespace per node, sluice-n1..n3,
#   with a veth (host side slc-n1..) into it, addresses $CLUSTER_NET.11-13/24; a namespace
#   sluice-cl ($CLUSTER_NET.2) with no engine, where test clients run; one dockerd per node:
#     nsenter --net=/var/run/netns/sluice-nN dockerd  (in its own UTS namespace, hostname
#       sluice-nN)  -H unix:///var/run/docker-sluice-nN.sock
#       --data-root /var/lib/sluice-cluster/nN  --exec-root /var/run/sluice-cluster/nN
#       --pidfile /var/run/sluice-cluster/nN.pid  --config-file /var/lib/sluice-cluster/daemon.json
#       --bridge=none
#   `ip netns exec` is not used: it remounts /sys, and dockerd then fails with "Devices cgroup
#   isn't mounted". Each engine keeps --iptables=true: its rules go into its own namespace's
#   tables, never the host's. --bridge=none: swarm services need no docker0 (they use the
#   overlay networks and docker_gwbridge, inside the node's namespace). The host's FORWARD
#   policy is DROP once the host engine ran, and bridged frames cross it (br_netfilter), so
#   `iptables -I DOCKER-USER -i slc-br0 -o slc-br0 -j ACCEPT` (and the same in FORWARD, for
#   when the host engine has not made DOCKER-USER yet), tagged with the comment sluice-cluster.
#   The host engine (/var/run/docker.sock) is only read from (docker save); its swarm is never
#   touched.
#
# Environment: CLUSTER_NET [10.231.7] the /24 of the nodes (choose one that no route uses);
#              CLUSTER_WAIT [60] bound of each wait, seconds.
# Needs: root, ip (iproute2), nsenter and unshare (util-linux), iptables, dockerd (docker.io).
set -Euo pipefail

CLUSTER_NET=${CLUSTER_NET:-10.231.7}
CLUSTER_WAIT=${CLUSTER_WAIT:-60}
BRIDGE=slc-br0
NODES=(n1 n2 n3)
CLIENT_NS=sluice-cl
STATE=/var/lib/sluice-cluster
RUN=/var/run/sluice-cluster
RULE_COMMENT=sluice-cluster
IMAGES=(sluice-proxy sluice-listener sluice-demo)
IMAGE_TAG=${SLUICE_IMAGE_TAG:-latest}

say() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- naming ---------------------------------------------------------------------------------

node_ns() { echo "sluice-$1"; }
node_sock() { echo "/var/run/docker-sluice-$1.sock"; }
node_addr() { echo "$CLUSTER_NET.$((10 + ${1#n}))"; }
node_pidfile() { echo "$RUN/$1.pid"; }
node_log() { echo "$STATE/$1.log"; }
ndocker() {
    local node=$1
    shift
    docker -H "unix://$(node_sock "$node")" "$@"
}

# wait_for SECONDS CMD… — polls CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    while ! "$@"; do
        ((SECONDS >= end)) && return 1
        sleep 0.2
    done
}

# --- engines --------------------------------------------------------------------------------

engine_pid() {
    local f
    f=$(node_pidfile "$1")
    [[ -r $f ]] || return 1
    local pid
    pid=$(<"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

engine_answers() { ndocker "$1" info --format '{{.ID}}' >/dev/null 2>&1; }

# start_engine NODE — starts the node's dockerd in its namespace (no-op when it answers).
start_engine() {
    local node=$1 ns
    ns=$(node_ns "$node")
    engine_answers "$node" && return 0
    mkdir -p "$STATE/$node" "$RUN/$node"
    [[ -r $STATE/daemon.json ]] || echo '{}' >"$STATE/daemon.json"
    # fds 8 and 9 may be locks of the caller (cluster-test.sh's, scripts/e2e.sh's): the daemon
    # must not inherit them.
    # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
    nohup unshare --uts sh -c 'hostname "$0" && exec "$@"' "$ns" \
        nsenter --net="/var/run/netns/$ns" \
        dockerd \
        --data-root "$STATE/$node" \
        --exec-root "$RUN/$node" \
        -H "unix://$(node_sock "$node")" \
        --pidfile "$(node_pidfile "$node")" \
        --config-file "$STATE/daemon.json" \
        --bridge=none \
        >>"$(node_log "$node")" 2>&1 </dev/null 8>&- 9>&- &
    if ! wait_for "$CLUSTER_WAIT" engine_answers "$node"; then
        tail -n 20 "$(node_log "$node")" | sed 's/^/  dockerd| /' >&2
        die "the engine of $node did not answer within ${CLUSTER_WAIT}s (log: $(node_log "$node"))"
    fi
    say "engine $node up: $(node_sock "$node") in namespace $ns, $(node_addr "$node")"
}

# stop_engine NODE [SIGNAL] — stops the node's dockerd (TERM, then KILL after 20 s).
stop_engine() {
    local node=$1 sig=${2:-TERM} pid
    pid=$(engine_pid "$node") || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! wait_for 20 bash -c "! kill -0 $pid 2>/dev/null"; then
        say "dockerd of $node ($pid) did not stop in 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 bash -c "! kill -0 $pid 2>/dev/null" || true
    fi
}

# leftover_pids NODE — containerd, shims and their containers left by a node's engine (their
# command lines name the node's own exec root, which nothing else uses).
leftover_pids() {
    local pat="$RUN/$1/" pid children
    for pid in $(pgrep -f -- "$pat" || true); do
        children=$(pgrep -P "$pid" || true)
        echo "$pid" "${children//$'\n'/ }"
    done
}

kill_leftovers() {
    local node=$1 pids
    pids=$(leftover_pids "$node" | tr ' ' '\n' | sort -u | tr '\n' ' ')
    [[ -n ${pids// /} ]] || return 0
    say "killing processes left by the engine of $node: $pids"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
}

# --- network ------------------------------------------------------------------------------

rule_args() { echo "-i $BRIDGE -o $BRIDGE -m comment --comment $RULE_COMMENT -j ACCEPT"; }

add_rules() {
    local chain
    for chain in DOCKER-USER FORWARD; do
        iptables -w -nL "$chain" >/dev/null 2>&1 || continue
        # shellcheck disable=SC2046
        iptables -w -C "$chain" $(rule_args) 2>/dev/null ||
            iptables -w -I "$chain" $(rule_args) || die "iptables -I $chain failed"
    done
}

remove_rules() {
    local chain i
    command -v iptables >/dev/null || return 0
    for chain in DOCKER-USER FORWARD; do
        for ((i = 0; i < 20; i++)); do
            # shellcheck disable=SC2046
            iptables -w -D "$chain" $(rule_args) 2>/dev/null || break
        done
    done
}

route_taken() {
    # A route for our /24 that is not our own bridge's would collide.
    ip route show | grep -v " dev $BRIDGE " | grep -q "^$CLUSTER_NET\."
}

make_network() {
    route_taken && die "a route on this host already covers $CLUSTER_NET.0/24; set CLUSTER_NET"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || die "cannot create the bridge $BRIDGE"
    fi
    ip link set "$BRIDGE" up
    local node ns host_if addr
    for node in "${NODES[@]}" cl; do
        if [[ $node == cl ]]; then ns=$CLIENT_NS addr=$CLUSTER_NET.2; else ns=$(node_ns "$node") addr=$(node_addr "$node"); fi
        host_if=slc-$node
        [[ -e /var/run/netns/$ns ]] || ip netns add "$ns" || die "ip netns add $ns failed"
        if ! ip link show "$host_if" >/dev/null 2>&1; then
            ip link add "$host_if" type veth peer name "$host_if-p" netns "$ns" ||
                die "cannot create the veth $host_if"
            ip -n "$ns" link set "$host_if-p" name eth0
        fi
        ip link set "$host_if" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr replace "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    add_rules
}

remove_network() {
    local node ns
    for node in "${NODES[@]}" cl; do
        if [[ $node == cl ]]; then ns=$CLIENT_NS; else ns=$(node_ns "$node"); fi
        ip link del "slc-$node" 2>/dev/null || true
        [[ -e /var/run/netns/$ns ]] && { ip netns del "$ns" 2>/dev/null || say "cannot delete namespace $ns"; }
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_rules
}

# unmount_under DIR… — every mount point below DIR, deepest first (a killed engine leaves
# overlay, shm and netns mounts behind).
unmount_under() {
    local dir mp
    for dir in "$@"; do
        dir=$(realpath -m "$dir") # mountinfo names /run, not the /var/run symlink
        while read -r mp; do
            umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || say "cannot unmount $mp"
        done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    done
}

# --- swarm ----------------------------------------------------------------------------------

swarm_state() { ndocker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

ready_nodes() {
    ndocker n1 node ls --format '{{.Status}} {{.Availability}}' 2>/dev/null | grep -c '^Ready Active' || true
}

all_ready() { [[ $(ready_nodes) == "${#NODES[@]}" ]]; }

form_swarm() {
    local manager=${NODES[0]} token node
    if [[ $(swarm_state "$manager") != active ]]; then
        ndocker "$manager" swarm init --advertise-addr "$(node_addr "$manager")" \
            --listen-addr "$(node_addr "$manager"):2377" >/dev/null ||
            die "docker swarm init on $manager failed"
    fi
    token=$(ndocker "$manager" swarm join-token -q worker) || die "no join token"
    for node in "${NODES[@]:1}"; do
        join_node "$node" "$token"
    done
    wait_for "$CLUSTER_WAIT" all_ready || die "only $(ready_nodes) of ${#NODES[@]} nodes are Ready and Active"
}

# join_node NODE [TOKEN] — joins NODE to the manager's swarm as a worker.
join_node() {
    local node=$1 token=${2:-}
    [[ $(swarm_state "$node") == active ]] && return 0
    [[ -n $token ]] || token=$(ndocker "${NODES[0]}" swarm join-token -q worker) || die "no join token"
    ndocker "$node" swarm join --token "$token" --advertise-addr "$(node_addr "$node")" \
        --listen-addr "$(node_addr "$node"):2377" "$(node_addr "${NODES[0]}"):2377" >/dev/null ||
        die "docker swarm join on $node failed"
}

# --- images ---------------------------------------------------------------------------------

image_id() { docker "$@" image inspect --format '{{.Id}}' 2>/dev/null; }

load_images() {
    local refs=() image node missing=()
    for image in "${IMAGES[@]}"; do
        refs+=("$image:$IMAGE_TAG")
        docker image inspect "$image:$IMAGE_TAG" >/dev/null 2>&1 || missing+=("$image:$IMAGE_TAG")
    done
    ((${#missing[@]} == 0)) || die "the host engine has no ${missing[*]} (run scripts/build-images.sh)"
    local tar=$STATE/images.tar saved=0
    for node in "${NODES[@]}"; do
        engine_answers "$node" || continue
        local same=1
        for image in "${refs[@]}"; do
            [[ $(docker image inspect --format '{{.Id}}' "$image") == \
                "$(ndocker "$node" image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ]] || same=0
        done
        ((same)) && continue
        if ((!saved)); then
            docker save -o "$tar" "${refs[@]}" || die "docker save failed"
            saved=1
        fi
        ndocker "$node" load -q -i "$tar" >/dev/null || die "docker load into $node failed"
        say "images loaded into $node"
    done
    rm -f "$tar"
}

# --- commands -------------------------------------------------------------------------------

healthy() {
    local node
    for node in "${NODES[@]}"; do
        engine_answers "$node" || return 1
    done
    [[ -e /var/run/netns/$CLIENT_NS ]] && all_ready
}

cmd_up() {
    [[ $EUID == 0 ]] || die "must run as root"
    local tool
    for tool in ip nsenter unshare iptables dockerd docker; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    if healthy; then
        say "the cluster is already up"
    else
        if [[ -d $STATE || -d $RUN ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
            say "removing what an earlier, unhealthy cluster left"
            cmd_down
        fi
        local started=$SECONDS node
        make_network
        for node in "${NODES[@]}"; do start_engine "$node" & done
        wait
        for node in "${NODES[@]}"; do engine_answers "$node" || die "the engine of $node is not up"; done
        form_swarm
        say "swarm of ${#NODES[@]} nodes formed in $((SECONDS - started))s"
    fi
    load_images
    cmd_status
}

cmd_down() {
    local node
    for node in "${NODES[@]}"; do stop_engine "$node" & done
    wait
    for node in "${NODES[@]}"; do kill_leftovers "$node"; done
    unmount_under "$RUN" "$STATE"
    remove_network
    for node in "${NODES[@]}"; do rm -f "$(node_sock "$node")"; done
    rm -rf "$RUN" "$STATE"
    say "removed: engines, namespaces, bridge $BRIDGE, firewall rules, $STATE, $RUN"
}

cmd_status() {
    local node ok=0
    for node in "${NODES[@]}"; do
        if engine_answers "$node"; then
            printf '  %s  %-15s  engine up (pid %s), swarm %s\n' "$node" "$(node_addr "$node")" \
                "$(engine_pid "$node" || echo '?')" "$(swarm_state "$node")" >&2
        else
            printf '  %s  %-15s  engine down\n' "$node" "$(node_addr "$node")" >&2
        fi
    done
    if engine_answers "${NODES[0]}"; then
        ndocker "${NODES[0]}" node ls 2>&1 | sed 's/^/  /' >&2
    fi
    healthy && ok=1
    ((ok)) && say "healthy: ${#NODES[@]} nodes Ready; export DOCKER_HOST=unix://$(node_sock "${NODES[0]}")"
    ((ok))
}

# Sourced (by cluster-test.sh): define the functions only.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
    return 0
fi

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    load) load_images ;;
    env) echo "export DOCKER_HOST=unix://$(node_sock "${NODES[0]}")" ;;
    *) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
