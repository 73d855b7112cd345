#!/usr/bin/env bash
# Builds the images the Docker test harness runs, without any registry:
#
#   base     lockd-base:<hash>  Debian bookworm + python3, venv, iptables, iproute2, made with
#            `mmdebstrap | docker import`. Built only when no image carries the hash of its recipe.
#   project  lockd-node:<hash>  cluster/docker/Dockerfile on that base, installing the project
#            and its dependencies from a wheelhouse built on the host (`pip wheel`), with
#            --network none and PIP_NO_INDEX=1. Built only when the hash of its inputs (sources,
#            Dockerfile, dependency wheels, base tag) is new. Also tagged lockd-node:latest.
#
# Usage: build-images.sh [all|base|project]   (default all)
#   project needs the base already built (exit 3 and a message if it is missing).
# The last line on stdout is the project image tag (for `all` and `project`).
# Cache (wheelhouse, build context, lock): $LOCKD_DOCKER_CACHE, default ~/.cache/lockd-docker.
# Needs: docker (running), mmdebstrap (base only), python3.11 with pip (wheelhouse).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${LOCKD_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockd-docker}
MIRROR=${LOCKD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,iptables,iproute2
DOCKER=${DOCKER:-docker}
WHAT=${1:-all}

T0=$(date +%s%N)
say() {
    local ms=$(( ($(date +%s%N) - T0) / 1000000 ))
    printf 'build-images [%3d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2
}
die() { echo "build-images: ERROR: $*" >&2; exit "${2:-1}"; }

case $WHAT in all|base|project) ;; *) die "usage: $0 [all|base|project]" 2 ;; esac
"$DOCKER" info >/dev/null 2>&1 || die "docker is not usable (is dockerd running? try .ci/docker-setup.sh)"

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
elif command -v python3.11 >/dev/null; then PY=python3.11
else PY=python3; fi

hash_of() { sha256sum | cut -c1-16; }

# ------------------------------------------------------------------ base image
build_base_rootfs() {   # writes a rootfs tar of the base to stdout; its text is part of the hash
    mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='chroot "$1" env -i PATH=/usr/bin:/bin python3 -m venv /opt/venv' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" - "$MIRROR"
}
BASE_HASH=$( { declare -f build_base_rootfs; echo "$SUITE $BASE_PACKAGES $MIRROR v1"; } | hash_of)
BASE_TAG=lockd-base:$BASE_HASH

ensure_base() {
    if "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
        say "base image $BASE_TAG exists"
        return
    fi
    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (apt-get install mmdebstrap, or run .ci/docker-setup.sh)"
    say "building base image $BASE_TAG (mmdebstrap $SUITE from $MIRROR; about a minute)"
    local tmp; tmp=$(mktemp -d)
    # A file, not a pipe: a failed mmdebstrap must not leave a half image behind.
    if ! build_base_rootfs > "$tmp/rootfs.tar"; then rm -rf "$tmp"; die "mmdebstrap failed"; fi
    say "rootfs $(du -h "$tmp/rootfs.tar" | cut -f1); importing"
    "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8 PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'LABEL lockd.image=base' \
        --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$BASE_TAG" >/dev/null \
        || { rm -rf "$tmp"; die "docker import failed"; }
    rm -rf "$tmp"
    # Older bases of this project are no longer used by anything we build.
    "$DOCKER" images --filter label=lockd.image=base --format '{{.Repository}}:{{.Tag}}' \
        | grep -vx "$BASE_TAG" | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
    say "base image $BASE_TAG built ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{printf "%d MB", $1/1e6}'))"
}

# ------------------------------------------------------------------ wheelhouse (host)
# The third-party dependencies of the two distributions (client/pyproject.toml, pyproject.toml;
# the server's requirement on lockd-client is the client wheel below, not a download). The
# wheelhouse is rebuilt only when the list changes.
deps() {
    "$PY" -c 'import tomllib, sys
deps = [d for f in sys.argv[1:] for d in tomllib.load(open(f, "rb"))["project"]["dependencies"]]
print("\n".join(d for d in deps if not d.replace("_", "-").startswith("lockd-client")))' \
        "$ROOT/client/pyproject.toml" "$ROOT/pyproject.toml"
}
ensure_wheels() {
    local reqs; reqs=$(deps)
    WHEELS=$CACHE/wheels-$(printf '%s\n' "$reqs" | hash_of)
    if [ -f "$WHEELS/.complete" ]; then
        say "wheelhouse $WHEELS is complete"
        return
    fi
    say "building wheelhouse $WHEELS (pip wheel of the dependencies)"
    rm -rf "$WHEELS" "$WHEELS.tmp"
    mkdir -p "$WHEELS.tmp"
    printf '%s\n' "$reqs" > "$WHEELS.tmp/requirements.txt"
    # (pip's log goes to a file: this machine's pip config adds noisy warnings for every name)
    "$PY" -m pip wheel -q --disable-pip-version-check -w "$WHEELS.tmp" -r "$WHEELS.tmp/requirements.txt" \
        >"$CACHE/pip.log" 2>&1 || { tail -30 "$CACHE/pip.log" >&2; die "pip wheel of the dependencies failed"; }
    touch "$WHEELS.tmp/.complete"
    mv "$WHEELS.tmp" "$WHEELS"
    find "$CACHE" -maxdepth 1 -name 'wheels-*' ! -path "$WHEELS" -exec rm -rf {} + 2>/dev/null || true
    say "wheelhouse: $(ls "$WHEELS"/*.whl | wc -l) wheels"
}

# ------------------------------------------------------------------ project image
SOURCES=(pyproject.toml README.md lockd client cluster/lockd_cluster
         cluster/docker/Dockerfile cluster/docker/lockd-entrypoint cluster/docker/lockd-fw)

source_files() {   # NUL-separated, sorted, without caches
    (cd "$ROOT" && find "${SOURCES[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
        ! -path '*.egg-info*' -print0 | sort -z)
}

ensure_project() {
    "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1 \
        || die "base image $BASE_TAG is missing: run 'make docker-images' (or .ci/docker-setup.sh)" 3
    ensure_wheels
    local h
    h=$( { cd "$ROOT" && source_files | xargs -0 sha256sum; ls "$WHEELS"; echo "$BASE_TAG"; } | hash_of)
    local tag=lockd-node:$h
    if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
        say "project image $tag exists"
    else
        say "building project image $tag"
        local ctx=$CACHE/context
        rm -rf "$ctx"
        mkdir -p "$ctx/wheels" "$ctx/prebuilt"
        (cd "$ROOT" && source_files | tar --null -T - -cf -) | tar -C "$ctx" -xf -
        cp "$WHEELS"/*.whl "$WHEELS/requirements.txt" "$ctx/wheels/"
        # The project wheel is built from the staged copy (no build/ or egg-info in the tree).
        local iso=()    # the venv's setuptools (>= 68, as pyproject.toml asks) saves 2 s
        "$PY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 68)' \
            2>/dev/null && iso=(--no-build-isolation)
        # Two wheels: lockd-client (client/) and lockd, which requires it.
        "$PY" -m pip wheel -q --disable-pip-version-check --no-deps "${iso[@]}" -w "$ctx/prebuilt" \
            "$ctx/client" "$ctx" \
            >"$CACHE/pip.log" 2>&1 || { tail -30 "$CACHE/pip.log" >&2; die "pip wheel of the project failed"; }
        rm -rf "$ctx/build" "$ctx"/*.egg-info "$ctx/client/build" "$ctx"/client/*.egg-info
        "$DOCKER" build --network none -f cluster/docker/Dockerfile \
            --build-arg BASE="$BASE_TAG" --build-arg PIP_NO_INDEX=1 \
            --label lockd.image=node \
            -t "$tag" "$ctx" >"$CACHE/build.log" 2>&1 \
            || { cat "$CACHE/build.log" >&2; die "docker build failed"; }
        rm -rf "$ctx"
        say "project image $tag built"
    fi
    "$DOCKER" tag "$tag" lockd-node:latest
    # Keep only the current project image (older ones only hold stale code).
    "$DOCKER" images --filter label=lockd.image=node --format '{{.Repository}}:{{.Tag}}' \
        | grep -vx -e "$tag" -e lockd-node:latest | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
    echo "$tag"
}

mkdir -p "$CACHE"
# One build at a time per cache (concurrent test runs share the staging directory).
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another build-images.sh held $CACHE/.lock for 15 minutes"
case $WHAT in
    base) ensure_base ;;
    project) ensure_project ;;
    all) ensure_base; ensure_project ;;
esac
