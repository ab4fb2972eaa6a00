# shellcheck shell=bash
# ACME on the real single-node Swarm (issue 14, "Tests"): one service with the `acmeDomain`
# label gets a certificate from a CA (Debian's pebble, in a container on the overlay) and every
# proxy replica serves it over HTTPS. Sourced by scripts/e2e.sh; the step is `acme`.
#
# The step brings its own stack, so no other step changes and it runs alone too
# (`scripts/e2e.sh acme`):
#   - the overlay network acme-e2e;
#   - acme-pebble: a local image holding the host's /usr/bin/pebble (and what `ldd` lists), its
#     configuration and TLS certificate (made here with openssl) as a docker config and secret;
#     it validates on ports 80/443 of the name it is given and resolves names with Docker's
#     embedded DNS (`-dnsserver 127.0.0.11:53`);
#   - acme-proxy: ACME_E2E_REPLICAS replicas with API_USER/API_PASS (needed to share keys),
#     SERVICE_NAME=acme-proxy (peers are tasks.acme-proxy), ACME_DIRECTORY on acme-pebble,
#     ACME_CA_FILE (pebble's test CA, a docker config), ACME_CHALLENGE=http-01, and the network
#     alias app.acme.test: with dnsrr the name resolves to every proxy task, so pebble validates
#     against whichever task Docker's DNS gives it first, not necessarily the one that orders;
#   - acme-listener, notifying acme-proxy (as the walkthrough's listener does the proxy);
#   - acme-app: `sluice-demo http` created with the labels a user types.
# Checks: every proxy task serves a certificate for app.acme.test that verifies against
# pebble's root (fetched from its management API) and whose issuer is pebble's intermediate,
# all tasks serve the same one, each routes https://app.acme.test/demo/hello to acme-app,
# pebble logged exactly one order (its only domain is app.acme.test), the replicas' metrics
# count one order and one lease holder, and every task's dashboard shows the certificate as
# valid.
#
# The proxy tasks publish 443 and 8080 `mode=host` (no ingress mesh here); the checks use those
# host ports on 127.0.0.1 with `--resolve app.acme.test:<port>:127.0.0.1`.
#
# Without /usr/bin/pebble the step is skipped, except with CI=true, where it fails.
# Environment (defaults in brackets): ACME_E2E_REPLICAS [3]; ACME_E2E_WAIT [90] seconds from
# `docker service create acme-app` until every task serves the certificate.

ACME_E2E_REPLICAS=${ACME_E2E_REPLICAS:-3}
ACME_E2E_WAIT=${ACME_E2E_WAIT:-90}
ACME_DOMAIN=app.acme.test
ACME_NET=acme-e2e
ACME_API_USER=acme-e2e
ACME_API_PASS=acme-e2e-pass
PEBBLE_IMAGE=sluice-e2e-pebble:latest
ACME_DIR=""  # this run's files (certificates, pebble's root, the image's context)
ACME_ROOT="" # pebble's root CA (PEM), which the issued chains verify against

# acme_endpoints — one line per running acme-proxy task: "<container> <443 port> <8080 port>".
acme_endpoints() {
    local c
    for c in $(containers acme-proxy); do
        printf '%s %s %s\n' "$c" "$(host_port "$c" 443)" "$(host_port "$c" 8080)"
    done
}

# acme_every CMD… — CMD "<container> <https port> <api port>" succeeds for every running
# acme-proxy task, and there are ACME_E2E_REPLICAS of them.
acme_every() {
    local lines c https api n=0
    lines=$(acme_endpoints)
    [[ -n $lines ]] || return 1
    while read -r c https api; do
        [[ -n $https && -n $api ]] || return 1
        "$@" "$c" "$https" "$api" || return 1
        n=$((n + 1))
    done <<<"$lines"
    ((n == ACME_E2E_REPLICAS))
}

acme_ready() { status_is 200 "http://127.0.0.1:$3/v1/docker-flow-proxy/ping"; }

# acme_leaf HTTPS_PORT — the PEM leaf certificate the task serves for SNI app.acme.test.
acme_leaf() {
    openssl s_client -connect "127.0.0.1:$1" -servername "$ACME_DOMAIN" </dev/null 2>/dev/null |
        openssl x509 2>/dev/null
}

# acme_verified CONTAINER HTTPS_PORT API_PORT — the task answers https://app.acme.test/demo/hello
# with the demo's body over a chain that verifies against pebble's root.
acme_verified() {
    body_is "hello, world!" "https://$ACME_DOMAIN:$2/demo/hello" \
        --cacert "$ACME_ROOT" --resolve "$ACME_DOMAIN:$2:127.0.0.1"
}

# acme_issuer_is_pebble CONTAINER HTTPS_PORT API_PORT
acme_issuer_is_pebble() {
    local issuer
    issuer=$(acme_leaf "$2" | openssl x509 -noout -issuer 2>/dev/null)
    note "task $(task_of "$1" | cut -c1-12) (https 127.0.0.1:$2): $issuer"
    [[ $issuer == *"Pebble Intermediate CA"* ]]
}

acme_fingerprints() {
    local c https api
    while read -r c https api; do
        acme_leaf "$https" | openssl x509 -noout -fingerprint -sha256 2>/dev/null
    done < <(acme_endpoints)
}

acme_one_certificate() { [[ $(acme_fingerprints | sort -u | grep -c .) == 1 ]]; }

# acme_metric_sum NAME — the sum of an unlabelled metric over the acme-proxy tasks.
acme_metric_sum() {
    local c https api total=0 v
    while read -r c https api; do
        v=$(curl -s --max-time "$E2E_CURL_TIMEOUT" "http://127.0.0.1:$api/metrics" |
            awk -v m="$1" '$1 == m { print int($2) }')
        total=$((total + ${v:-0}))
    done < <(acme_endpoints)
    echo "$total"
}

acme_pebble_log() { docker logs "$(containers acme-pebble | head -n1)" 2>&1; }

# acme_dashboard_valid CONTAINER HTTPS_PORT API_PORT — the task's dashboard (STATS_URI on its
# https port) lists the certificate as valid.
acme_dashboard_valid() {
    curl -s --max-time "$E2E_CURL_TIMEOUT" --cacert "$ACME_ROOT" \
        --resolve "$ACME_DOMAIN:$2:127.0.0.1" "https://$ACME_DOMAIN:$2/admin?stats" |
        grep -q "data-name=\"acme-$ACME_DOMAIN\" data-state=\"valid\""
}

# acme_pebble_image — a local image holding the host's pebble and the libraries it loads.
acme_pebble_image() {
    local ctx=$ACME_DIR/image line lib
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/etc"
    chmod 1777 "$ctx/rootfs/tmp"
    cp /usr/bin/pebble "$ctx/rootfs/usr/bin/pebble"
    while IFS= read -r line; do
        lib=""
        if [[ $line =~ =\>\ (/[^ ]+) ]]; then
            lib=${BASH_REMATCH[1]}
        elif [[ $line =~ ^[[:space:]]*(/[^ ]+)\ \( ]]; then
            lib=${BASH_REMATCH[1]}
        fi
        if [[ -n $lib ]]; then
            mkdir -p "$ctx/rootfs$(dirname "$lib")"
            cp -L "$lib" "$ctx/rootfs$lib"
        fi
    done < <(ldd /usr/bin/pebble 2>/dev/null || true)
    printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
    printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/bin/pebble"]\n' >"$ctx/Dockerfile"
    if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
        export DOCKER_BUILDKIT=0
    fi
    run docker build --quiet --tag "$PEBBLE_IMAGE" "$ctx"
}

# acme_pebble_files — pebble's TLS certificate (signed by a CA made here, which the proxies
# trust through ACME_CA_FILE) and its configuration.
acme_pebble_files() {
    local d=$ACME_DIR
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=sluice e2e pebble CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=acme-pebble" \
        -keyout "$d/pebble.key" -out "$d/pebble.csr" >/dev/null 2>&1 || return 1
    printf '%s\n' 'subjectAltName=DNS:acme-pebble,DNS:localhost,IP:127.0.0.1' \
        'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' \
        >"$d/pebble.ext"
    openssl x509 -req -in "$d/pebble.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/pebble.ext" -out "$d/pebble.pem" >/dev/null 2>&1 || return 1
    printf '{"pebble":{"listenAddress":"0.0.0.0:14000","managementListenAddress":"0.0.0.0:15000","certificate":"/etc/pebble/cert.pem","privateKey":"/run/secrets/acme-pebble-key","httpPort":80,"tlsPort":443,"ocspResponderURL":"","externalAccountBindingRequired":false}}\n' \
        >"$d/pebble.json"
}

# acme_root — pebble's root CA from its management API (it makes a new one at each start).
acme_root() {
    local port
    port=$(host_port "$(containers acme-pebble | head -n1)" 15000)
    [[ -n $port ]] || return 1
    curl -sf --max-time "$E2E_CURL_TIMEOUT" --cacert "$ACME_DIR/ca.pem" \
        "https://127.0.0.1:$port/roots/0" -o "$ACME_ROOT" && grep -q 'BEGIN CERTIFICATE' "$ACME_ROOT"
}

acme_infra_converged() {
    converged acme-pebble 1 && converged acme-listener 1 && converged acme-proxy "$ACME_E2E_REPLICAS"
}

acme_setup() {
    ACME_DIR=$(mktemp -d /tmp/sluice-e2e-acme.XXXXXX)
    ACME_ROOT=$ACME_DIR/pebble-root.pem
    acme_pebble_files || { fail "openssl could not make pebble's certificate"; return 1; }
    acme_pebble_image || return 1
    local name
    for name in acme-pebble-config acme-pebble-cert acme-pebble-ca; do
        docker config rm "$name" >/dev/null 2>&1 || true
    done
    docker secret rm acme-pebble-key >/dev/null 2>&1 || true
    track config acme-pebble-config
    run docker config create acme-pebble-config "$ACME_DIR/pebble.json" || return 1
    track config acme-pebble-cert
    run docker config create acme-pebble-cert "$ACME_DIR/pebble.pem" || return 1
    track secret acme-pebble-key
    run docker secret create acme-pebble-key "$ACME_DIR/pebble.key" || return 1
    track config acme-pebble-ca
    run docker config create acme-pebble-ca "$ACME_DIR/ca.pem" || return 1
    track network "$ACME_NET"
    run docker network create --driver overlay "$ACME_NET" || return 1

    track service acme-pebble
    run docker service create --detach --no-resolve-image --name acme-pebble \
        --network "$ACME_NET" \
        --endpoint-mode dnsrr \
        --publish mode=host,target=15000 \
        --config source=acme-pebble-config,target=/etc/pebble/pebble.json \
        --config source=acme-pebble-cert,target=/etc/pebble/cert.pem \
        --secret acme-pebble-key \
        -e PEBBLE_VA_NOSLEEP=1 \
        -e PEBBLE_WFE_NONCEREJECT=0 \
        "$PEBBLE_IMAGE" -config /etc/pebble/pebble.json -dnsserver 127.0.0.11:53 || return 1
    track service acme-listener
    run docker service create --detach --no-resolve-image --name acme-listener \
        --network "$ACME_NET" \
        --endpoint-mode dnsrr \
        --mount "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock" \
        -e DF_NOTIFY_CREATE_SERVICE_URL=http://acme-proxy:8080/v1/docker-flow-proxy/reconfigure \
        -e DF_NOTIFY_REMOVE_SERVICE_URL=http://acme-proxy:8080/v1/docker-flow-proxy/remove \
        -e DF_PROXY_USER="$ACME_API_USER" \
        -e DF_PROXY_PASS="$ACME_API_PASS" \
        --constraint 'node.role==manager' \
        "$LISTENER_IMAGE" || return 1
    track service acme-proxy
    run docker service create --detach --no-resolve-image --name acme-proxy \
        --replicas "$ACME_E2E_REPLICAS" \
        --network "name=$ACME_NET,alias=$ACME_DOMAIN" \
        --endpoint-mode dnsrr \
        --publish mode=host,target=443 \
        --publish mode=host,target=8080 \
        --config source=acme-pebble-ca,target=/etc/sluice/pebble-ca.pem \
        -e MODE=swarm \
        -e SERVICE_NAME=acme-proxy \
        -e LISTENER_ADDRESS=acme-listener \
        -e API_USER="$ACME_API_USER" \
        -e API_PASS="$ACME_API_PASS" \
        -e DEFAULT_PORTS=80,443:ssl \
        -e ACME_DIRECTORY=https://acme-pebble:14000/dir \
        -e ACME_CA_FILE=/etc/sluice/pebble-ca.pem \
        -e ACME_CHALLENGE=http-01 \
        -e ACME_EMAIL=ops@acme.test \
        -e ACME_LEASE_TIMEOUT=6 \
        -e STATS_USER=none \
        -e STATS_PASS=none \
        "$PROXY_IMAGE" || return 1
    check "acme-pebble, acme-listener and $ACME_E2E_REPLICAS acme-proxy tasks are running" \
        wait_until 60 acme_infra_converged || return 1
    check "every acme-proxy task is ready" wait_until "$E2E_WAIT" acme_every acme_ready || return 1
    check "pebble's root CA is served by its management API" wait_until "$E2E_WAIT" acme_root
}

# acme_why — what the proxies and pebble said, when the certificate did not arrive.
acme_why() {
    local c
    for c in $(containers acme-proxy); do
        note "--- acme-proxy task $(task_of "$c" | cut -c1-12): ACME lines of its log"
        docker logs "$c" 2>&1 | grep -i acme | tail -n 15 | sed 's/^/         | /'
    done
    note "--- acme-pebble's log"
    acme_pebble_log | tail -n 25 | sed 's/^/         | /'
}

step_acme() {
    acme_run
    [[ -n $ACME_DIR ]] && rm -rf "$ACME_DIR"
    return 0
}

acme_run() {
    if [[ ! -x /usr/bin/pebble ]]; then
        if [[ ${CI:-} == true ]]; then
            fail "CI=true but /usr/bin/pebble is missing (apt-get install pebble; scripts/test.sh does it)"
            return 0
        fi
        SKIPPED=$((SKIPPED + 1))
        log "skip acme: /usr/bin/pebble is missing (apt-get install pebble)"
        return 0
    fi
    acme_setup || return 0

    track service acme-app
    local created
    created=$(now_ns)
    run docker service create --detach --no-resolve-image --name acme-app \
        --network "$ACME_NET" \
        --label com.df.notify=true \
        --label com.df.distribute=true \
        --label com.df.servicePath=/demo \
        --label com.df.serviceDomain="$ACME_DOMAIN" \
        --label com.df.acmeDomain="$ACME_DOMAIN" \
        --label com.df.port=8080 \
        "$DEMO_IMAGE" || return 0
    if ! check "every acme-proxy task serves https://$ACME_DOMAIN/demo/hello with a certificate from pebble (bound ${ACME_E2E_WAIT}s)" \
        wait_until "$ACME_E2E_WAIT" acme_every acme_verified; then
        acme_why
        return 0
    fi
    note "$ACME_E2E_REPLICAS tasks served it $(ms_between "$created" "$(now_ns)") ms after docker service create acme-app"
    check "the issuer is pebble's intermediate on every task (not the proxy's default certificate)" \
        acme_every acme_issuer_is_pebble
    check "every task serves the same certificate" acme_one_certificate
    local orders issued holders ordered
    orders=$(acme_pebble_log | grep -c 'Added order')
    issued=$(acme_pebble_log | grep -c 'Issued certificate serial')
    check "pebble saw exactly one order (for $ACME_DOMAIN, its only domain) and issued one certificate (orders $orders, issued $issued)" \
        test "$orders" = 1 -a "$issued" = 1 || acme_why
    holders=$(acme_metric_sum sluice_acme_lease_holder)
    ordered=$(acme_metric_sum sluice_acme_orders_total)
    check "one replica holds the lease and the replicas made one order in all (holders $holders, orders $ordered)" \
        test "$holders" = 1 -a "$ordered" = 1
    check "every task's dashboard shows acme-$ACME_DOMAIN as valid" \
        wait_until 15 acme_every acme_dashboard_valid
    return 0
}
