# shellcheck shell=bash
# A bounded load for scripts/e2e/cluster-test.sh: paced GET requests through one proxy task,
# one line per request (start time, latency, status, X-Served-By), then a summary with
# requests, failures and p99, and what happened after a marked event (a drain, a kill, …).
# Runs python3's standard library only (http.client; no third-party package).
#
#   load_start NAME URL SECONDS          starts the load in the background (LOAD_PID)
#   load_mark NAME                       records "now" as the event of NAME's load
#   load_wait NAME                       waits for the load to end (bounded by SECONDS + 15)
#   load_report NAME                     prints the summary; sets LOAD_REQUESTS, LOAD_FAILED,
#                                        LOAD_P99, LOAD_AFTER_FAILED, LOAD_INFLIGHT_FAILED,
#                                        LOAD_LAST_BAD_MS (when the last bad request ended)
#                                        and LOAD_LAST_BAD_START_MS (when it started), both
#                                        in ms after the mark, -1 if none
#
# Settings: CLUSTER_LOAD_RATE [100] requests per second in all; CLUSTER_LOAD_THREADS [32] (enough that requests hung on a dead address do not stall the load);
# CLUSTER_LOAD_TIMEOUT [10] seconds one request may take before it counts as failed;
# CLUSTER_SLOW_MS [1000] a 200 slower than this counts as "bad" for LOAD_LAST_BAD_MS.

CLUSTER_LOAD_RATE=${CLUSTER_LOAD_RATE:-100}
CLUSTER_LOAD_THREADS=${CLUSTER_LOAD_THREADS:-32}
CLUSTER_LOAD_TIMEOUT=${CLUSTER_LOAD_TIMEOUT:-10}
CLUSTER_SLOW_MS=${CLUSTER_SLOW_MS:-1000}
LOAD_DIR=${LOAD_DIR:-} # made by load_init (the results of each load, removed at the end)
declare -A LOAD_PIDS=() LOAD_SECONDS=()

# The client: THREADS threads share RATE requests/s, a new connection per request (so a
# closed keep-alive connection is never counted as a failure of the proxy), each request
# bounded by TIMEOUT; it stops by itself after SECONDS.
LOAD_CLIENT='
import http.client, sys, threading, time
from urllib.parse import urlsplit
url, seconds, rate, threads, timeout, out = sys.argv[1:7]
u = urlsplit(url)
seconds, rate, threads, timeout = float(seconds), float(rate), int(threads), float(timeout)
interval = threads / rate
end = time.monotonic() + seconds
lines, lock = [], threading.Lock()
def worker(i):
    nxt = time.monotonic() + i * interval / threads
    while True:
        now = time.monotonic()
        if now >= end:
            return
        if nxt > now:
            time.sleep(nxt - now)
        nxt = max(nxt + interval, time.monotonic())
        t0, m0 = time.time(), time.monotonic()
        status, served = "ERR", "-"
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        try:
            conn.request("GET", u.path or "/", headers={"Connection": "close"})
            r = conn.getresponse()
            r.read()
            status, served = str(r.status), r.getheader("X-Served-By") or "-"
        except Exception as e:
            status = "ERR:" + type(e).__name__
        finally:
            conn.close()
        ms = (time.monotonic() - m0) * 1000
        with lock:
            lines.append("%d %.1f %s %s" % (t0 * 1000, ms, status, served))
ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
with open(out, "w") as f:
    f.write("\n".join(sorted(lines, key=lambda l: int(l.split()[0]))) + "\n")
'

# The summary: requests, failures (non-200 or no answer), p50/p99/max latency, the replicas
# that answered, and, relative to the mark: failures of requests in flight at the mark,
# failures of requests started after it, and the last bad request (failed or slower than
# SLOW_MS) after it: when it started (the last time the proxy chose a bad address) and ended.
LOAD_SUMMARY='
import sys
path, mark, slow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = []
for line in open(path):
    p = line.split()
    if len(p) == 4:
        rows.append((int(p[0]), float(p[1]), p[2], p[3]))
n = len(rows)
bad = [r for r in rows if r[2] != "200"]
lat = sorted(r[1] for r in rows)
def pct(q):
    if not lat: return 0.0
    k = max(1, min(len(lat), int(q / 100 * len(lat) + 0.999999)))
    return lat[k - 1]
served = {}
for r in rows:
    if r[2] == "200": served[r[3]] = served.get(r[3], 0) + 1
kinds = {}
for r in bad: kinds[r[2]] = kinds.get(r[2], 0) + 1
print("  requests %d, failed %d%s, p50 %.1f ms, p99 %.1f ms, max %.1f ms; answered by %d replica(s): %s" % (
    n, len(bad), (" (" + ", ".join("%s x%d" % kv for kv in sorted(kinds.items())) + ")") if bad else "",
    pct(50), pct(99), lat[-1] if lat else 0, len(served),
    " ".join("%s:%d" % kv for kv in sorted(served.items()))))
after_failed = inflight_failed = 0
last_bad = last_bad_start = -1
slow_after = 0
if mark > 0:
    for t, ms, st, _ in rows:
        done = t + ms
        is_bad = st != "200" or ms > slow
        if st != "200":
            if t >= mark: after_failed += 1
            elif done >= mark: inflight_failed += 1
        if is_bad and done >= mark:
            last_bad = max(last_bad, int(done - mark))
            last_bad_start = max(last_bad_start, int(t - mark))
        if st == "200" and ms > slow and done >= mark:
            slow_after += 1
    print("  after the event: %d failed among requests in flight at it, %d failed among requests started after it, %d slower than %d ms; last bad request %s" % (
        inflight_failed, after_failed, slow_after, slow,
        ("started %d ms and ended %d ms after the event" % (last_bad_start, last_bad)) if last_bad >= 0 else "- (none)"))
print("VARS %d %d %.0f %d %d %d %d" % (n, len(bad), pct(99), after_failed, inflight_failed, last_bad, last_bad_start))
'

load_init() { [[ -n $LOAD_DIR ]] || LOAD_DIR=$(mktemp -d /tmp/sluice-cluster-load.XXXXXX); }

load_start() {
    local name=$1 url=$2 seconds=$3
    LOAD_SECONDS[$name]=$seconds
    rm -f "$LOAD_DIR/$name.out" "$LOAD_DIR/$name.mark"
    python3 -c "$LOAD_CLIENT" "$url" "$seconds" "$CLUSTER_LOAD_RATE" "$CLUSTER_LOAD_THREADS" \
        "$CLUSTER_LOAD_TIMEOUT" "$LOAD_DIR/$name.out" 2>"$LOAD_DIR/$name.err" &
    LOAD_PIDS[$name]=$!
    note "load '$name': $CLUSTER_LOAD_RATE req/s for ${seconds}s to $url (pid ${LOAD_PIDS[$name]})"
}

load_mark() { echo $(($(date +%s%N) / 1000000)) >"$LOAD_DIR/$1.mark"; }

load_running() { kill -0 "${LOAD_PIDS[$1]}" 2>/dev/null; }

load_wait() {
    local name=$1
    if ! wait_until $((${LOAD_SECONDS[$name]} + CLUSTER_LOAD_TIMEOUT + 5)) bash -c "! kill -0 ${LOAD_PIDS[$name]} 2>/dev/null"; then
        note "load '$name' did not stop by itself: ending it (pid ${LOAD_PIDS[$name]})"
        kill "${LOAD_PIDS[$name]}" 2>/dev/null || true
    fi
    wait "${LOAD_PIDS[$name]}" 2>/dev/null || true
}

load_report() {
    local name=$1 mark=0 out vars
    [[ -r $LOAD_DIR/$name.mark ]] && mark=$(<"$LOAD_DIR/$name.mark")
    if [[ ! -s $LOAD_DIR/$name.out ]]; then
        note "load '$name' wrote no results: $(head -c 400 "$LOAD_DIR/$name.err" 2>/dev/null)"
        LOAD_REQUESTS=0 LOAD_FAILED=0 LOAD_P99=0 LOAD_AFTER_FAILED=0 LOAD_INFLIGHT_FAILED=0
        LOAD_LAST_BAD_MS=-1 LOAD_LAST_BAD_START_MS=-1
        return 1
    fi
    out=$(python3 -c "$LOAD_SUMMARY" "$LOAD_DIR/$name.out" "$mark" "$CLUSTER_SLOW_MS")
    grep -v '^VARS ' <<<"$out"
    vars=$(sed -n 's/^VARS //p' <<<"$out")
    read -r LOAD_REQUESTS LOAD_FAILED LOAD_P99 LOAD_AFTER_FAILED LOAD_INFLIGHT_FAILED LOAD_LAST_BAD_MS \
        LOAD_LAST_BAD_START_MS <<<"$vars"
    local after=""
    if ((mark > 0)); then
        after=", failed: $LOAD_INFLIGHT_FAILED in flight at the event + $LOAD_AFTER_FAILED started after it"
        if ((LOAD_LAST_BAD_MS >= 0)); then
            after+=", last failed or >${CLUSTER_SLOW_MS} ms request started ${LOAD_LAST_BAD_START_MS} ms and ended ${LOAD_LAST_BAD_MS} ms after it"
        else
            after+=", no failed or >${CLUSTER_SLOW_MS} ms request after it"
        fi
    fi
    SCENARIO_LINES+=("$(printf '%-8s requests %s, failed %s, p99 %s ms%s' "$name:" "$LOAD_REQUESTS" "$LOAD_FAILED" "$LOAD_P99" "$after")")
    if [[ -n ${SCENARIO_NOTE:-} ]]; then
        SCENARIO_LINES+=("         $SCENARIO_NOTE")
        SCENARIO_NOTE=""
    fi
    return 0
}

# load_failures_of NAME — the failed requests of NAME's load, one per line (for diagnosis).
load_failures_of() {
    awk '$3 != "200"' "$LOAD_DIR/$1.out" 2>/dev/null | head -n "${2:-8}"
}
