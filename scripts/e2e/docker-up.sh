#!/usr/bin/env bash
# Makes a Docker Swarm manager available for scripts/e2e.sh (called by scripts/test.sh):
#   1. installs docker.io (and curl) with apt-get when `dockerd` is missing (as root, or with
#      sudo, which it announces first);
#   2. starts dockerd (log: /tmp/dockerd.log) when the engine does not answer, waiting ≤ 60 s;
#   3. `docker swarm init --advertise-addr 127.0.0.1` when the engine is not in a swarm.
# Exits non-zero, saying why, when Docker cannot run here; scripts/e2e.sh then fails loudly
# at its own preflight (it never passes without a working engine).
set -uo pipefail

say() { printf 'docker-up: %s\n' "$*" >&2; }

# Root runs commands itself; anyone else through sudo (announced), when there is one.
as_root=()
if ((EUID != 0)) && command -v sudo >/dev/null; then
    as_root=(sudo)
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    say "installing ${missing[*]} (${as_root[*]:+sudo }apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        say "cannot install ${missing[*]} (run as root, or install them: apt-get install ${missing[*]})"
        exit 1
    fi
fi

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: /tmp/dockerd.log)${as_root[*]:+ with sudo}"
    # fd 9 is the e2e lock (scripts/e2e.sh): the daemon must not inherit it and hold it forever.
    nohup "${as_root[@]}" dockerd >/tmp/dockerd.log 2>&1 </dev/null 9>&- &
    for ((i = 0; i < 120; i++)); do
        docker info >/dev/null 2>&1 && break
        if ! kill -0 $! 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        say "dockerd did not come up; the end of /tmp/dockerd.log:"
        tail -n 30 /tmp/dockerd.log >&2
        exit 1
    fi
fi
say "Docker engine $(docker info --format '{{.ServerVersion}}' 2>/dev/null) is up"

state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)
if [[ $state != active ]]; then
    say "docker swarm init --advertise-addr 127.0.0.1 (state was: $state)"
    if ! "${as_root[@]}" docker swarm init --advertise-addr 127.0.0.1 >/dev/null; then
        say "docker swarm init failed"
        exit 1
    fi
fi
exit 0
