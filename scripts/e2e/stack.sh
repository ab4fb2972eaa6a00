# shellcheck shell=bash
# `docker stack deploy -c stack.yml proxy` (the README's way to run Sluice): replaces the
# walkthrough's hand-made proxy and swarm-listener services with the stack, checks that a new
# proxy syncs an existing service from the listener, that it routes, and that a removal reaches
# it through the stack's `proxy` alias. Sourced by scripts/e2e.sh (step `stack`).

# free_port FROM TO — the first port in the range nothing on 127.0.0.1 accepts connections on.
free_port() {
    local p
    for ((p = $1; p <= $2; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

stack_proxy_200() { status_is 200 "http://127.0.0.1:$STACK_HTTP/demo/hello"; }
stack_proxy_503() { status_is 503 "http://127.0.0.1:$STACK_HTTP/demo/hello"; }
seed_proxy_gone() {
    [[ -z $(docker ps -aq --filter label=com.docker.swarm.service.name=proxy) ]] &&
        [[ -z $(docker ps -aq --filter label=com.docker.swarm.service.name=swarm-listener) ]]
}

step_stack() {
    STACK_HTTP=$(free_port 18080 18179) || { fail "no free port in 18080-18179"; return 1; }
    local https
    https=$(free_port 18443 18542) || { fail "no free port in 18443-18542"; return 1; }
    run docker service rm proxy swarm-listener || return 1
    wait_until 40 seed_proxy_gone || note "the walkthrough's proxy containers are still stopping"
    wait_until 30 go_demo_gone || note "old go-demo containers are still stopping"
    # A service that exists before the stack: the new proxy must get it from the listener.
    create_go_demo_unmeasured || return 1
    track stack proxy
    run env SLUICE_HTTP_PORT="$STACK_HTTP" SLUICE_HTTPS_PORT="$https" \
        docker stack deploy --resolve-image never -c "$ROOT/stack.yml" proxy || return 1
    check "the stack's proxy and swarm-listener are running" \
        wait_until "$E2E_WAIT" stack_converged || return 1
    note "the stack's proxy answers on 127.0.0.1:$STACK_HTTP (stack.yml, SLUICE_HTTP_PORT)"
    check "the stack's proxy routes the go-demo created before it (LISTENER_ADDRESS sync)" \
        wait_until "$E2E_WAIT" stack_proxy_200
    check "the stack's proxy serves go-demo's 'hello, world!'" \
        body_is "hello, world!" "http://127.0.0.1:$STACK_HTTP/demo/hello"
    check "SERVICE_NAME is the stack's service name (template {{.Service.Name}})" stack_service_name
    run docker service rm go-demo || return 1
    check "after docker service rm go-demo the stack's proxy answers 503" \
        wait_until "$E2E_WAIT" stack_proxy_503
    run docker stack rm proxy || return 1
}

stack_converged() { converged proxy_proxy 1 && converged proxy_swarm-listener 1; }

stack_service_name() {
    local c
    c=$(containers proxy_proxy | head -n1)
    [[ -n $c ]] && docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$c" |
        grep -cx 'SERVICE_NAME=proxy_proxy' >/dev/null
}

# The walkthrough's go-demo, unmeasured (the stack's proxy is not running yet).
create_go_demo_unmeasured() {
    track service go-demo
    run docker service create --detach --no-resolve-image --name go-demo \
        -e DB=go-demo-db \
        --network go-demo \
        --network proxy \
        --label com.df.notify=true \
        --label com.df.distribute=true \
        --label com.df.servicePath=/demo \
        --label com.df.port=8080 \
        "$DEMO_IMAGE" || return 1
    check "go-demo is running" wait_until "$E2E_WAIT" converged go-demo 1
}
