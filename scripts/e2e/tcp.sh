# shellcheck shell=bash
# The walkthrough's "Using TCP Request Mode" step (shared/seed), typed as a user types it, with
# our images. Sourced by scripts/e2e.sh; `step_tcp` is one step of E2E_STEPS there.
#
# Deviations, for the reasons given in scripts/e2e/seed.sh:
# - redis is `sluice-demo tcp --port 6379` (a redis-like line protocol: PING -> +PONG);
# - the proxy publishes 6379 as `mode=host` without a fixed host port; the suite finds each
#   replica's host port with `docker port` and talks to 127.0.0.1:<port> instead of telnet.

# redis_ping PORT — `PING` through 127.0.0.1:PORT answers `+PONG`.
redis_ping() {
    local reply
    reply=$(timeout "$E2E_CURL_TIMEOUT" bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r line <&3 && printf "%s" "$line"' _ "$1" 2>/dev/null) || return 1
    [[ ${reply%$'\r'} == "+PONG" ]]
}

# every_proxy_pongs — every running proxy replica publishes 6379 and answers PING with +PONG.
every_proxy_pongs() {
    local c port n=0
    for c in $(containers proxy); do
        port=$(host_port "$c" 6379)
        [[ -n $port ]] || return 1
        redis_ping "$port" || return 1
        n=$((n + 1))
    done
    ((n > 0))
}

# no_proxy_pongs — no proxy replica answers on 6379 any more (the listener closed).
no_proxy_pongs() {
    local c port
    for c in $(containers proxy); do
        port=$(host_port "$c" 6379)
        [[ -n $port ]] && redis_ping "$port" && return 1
    done
    return 0
}

# listed_as_tcp — every replica's /config shows the 6379 tcp listener.
listed_as_tcp() { curl -s --max-time "$E2E_CURL_TIMEOUT" "http://127.0.0.1:$3/v1/docker-flow-proxy/config" | grep -q 'listen 6379 mode=tcp'; }

step_tcp() {
    run docker service update --detach --publish-add mode=host,target=6379 proxy || return 1
    check "the proxy update publishing port 6379 completes" wait_until 120 update_completed proxy || return 1
    check "every proxy replica is ready again" wait_until "$E2E_WAIT" every_replica replica_ready || return 1
    refresh_front
    track service redis
    run docker service create --detach --no-resolve-image --name redis \
        --network proxy \
        --label com.df.notify=true \
        --label com.df.distribute=true \
        --label com.df.port=6379 \
        --label com.df.srcPort=6379 \
        --label com.df.reqMode=tcp \
        "$DEMO_IMAGE" tcp --port 6379 || return 1
    check "redis is running" wait_until "$E2E_WAIT" converged redis 1 || return 1
    check "PING through every proxy replica's port 6379 answers +PONG" \
        wait_until "$E2E_WAIT" every_proxy_pongs
    check "every replica lists the tcp listener on 6379" wait_until "$E2E_WAIT" every_replica listed_as_tcp
    check "HTTP keeps answering beside the TCP listener" every_replica replica_ready
    run docker service rm redis || return 1
    check "the 6379 listener closes when its last service goes" wait_until "$E2E_WAIT" no_proxy_pongs
}
