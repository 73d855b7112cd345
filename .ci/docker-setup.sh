#!/usr/bin/env bash
# Prepares Docker for the Docker tests (tests/cluster/test_docker.py) on a Debian machine:
#   1. apt: docker.io, mmdebstrap and docker-compose (v1, for the compose-file test), only
#      when missing (root needed then)
#   2. dockerd started in the background when it is not running (bounded wait for the API)
#   3. images: cluster/docker/build-images.sh all (base only when its hash tag is missing,
#      project image only when its inputs changed; see that script)
# Idempotent; prints what it does; exits non-zero with a message on any failure.
# Env: LOCKD_DOCKERD_LOG (default /var/log/lockd-dockerd.log), LOCKD_DOCKER_CACHE (wheelhouse).
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s%N)
say() {
    local ms=$(( ($(date +%s%N) - T0) / 1000000 ))
    printf 'docker-setup [%3d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}
die() { echo "docker-setup: ERROR: $*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || echo "docker-setup: FAILED (exit $rc) after $(( ($(date +%s%N) - T0) / 1000000 )) ms" >&2' EXIT

# ------------------------------------------------------------------ 1. packages
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
    # Without root only docker itself is indispensable (the base may be built already).
    case " ${missing[*]} " in *" docker.io "*)
        die "missing ${missing[*]} and not root: apt-get install ${missing[*]}" ;; esac
    say "warning: ${missing[*]} missing (not root, not installing); carrying on"
    missing=()
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # No recommends: docker.io would pull apparmor, criu, git...; mmdebstrap needs none as root.
    # policy-rc.d 101: the package must not start a daemon of its own; step 2 does it.
    prc=/usr/sbin/policy-rc.d
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' > $prc; chmod +x $prc; added_prc=1; fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/lockd-docker-apt.log 2>&1 \
        || { [ -z "${added_prc:-}" ] || rm -f $prc; tail -20 /tmp/lockd-docker-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
    [ -z "${added_prc:-}" ] || rm -f $prc
    say "installed ${missing[*]}"
else
    say "docker.io, mmdebstrap and docker-compose are installed"
fi

# ------------------------------------------------------------------ 2. dockerd
if timeout 20 docker info >/dev/null 2>&1; then
    say "dockerd is running ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
else
    [ "$(id -u)" = 0 ] || die "docker is not usable and we are not root: start dockerd, or join the docker group"
    if pgrep -x dockerd >/dev/null; then
        die "a dockerd process exists but its API does not answer: see $(pgrep -ax dockerd | head -1)"
    fi
    # A pid file left by a dockerd that was killed makes the next one refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    LOG=${LOCKD_DOCKERD_LOG:-/var/log/lockd-dockerd.log}
    say "starting dockerd in the background (log: $LOG)"
    # Detached, every descriptor redirected: it must not hold the CI runner's output open.
    setsid dockerd </dev/null >>"$LOG" 2>&1 &
    for _ in $(seq 1 300); do                 # up to 60 s
        if docker info >/dev/null 2>&1; then break; fi
        if ! kill -0 $! 2>/dev/null; then tail -20 "$LOG" >&2; die "dockerd exited at start"; fi
        sleep 0.2
    done
    docker info >/dev/null 2>&1 || { tail -20 "$LOG" >&2; die "dockerd did not answer within 60 s"; }
    say "dockerd is up ($(docker version -f '{{.Server.Version}}'), pid $!)"
fi

# ------------------------------------------------------------------ 3. images
say "images: cluster/docker/build-images.sh all"
cluster/docker/build-images.sh all 2>&1 | sed -u 's/^/  /' || die "building the images failed"
say "images ready: $(docker images --filter label=lockd.image --format '{{.Repository}}:{{.Tag}} {{.Size}}' | tr '\n' ' ')"
