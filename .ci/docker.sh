#!/usr/bin/env bash
# Make a Docker engine and the offline database images available for CI -- or say loudly why not.
#
# It never fails its caller: without Docker the rest of CI still runs (SQLite cells, local-server tests), and the
# matrix records PostgreSQL/MySQL cells as not-run with the reason. Exit status is always 0; the outcome is the
# first line of build/docker-status (override: GREENLIGHT_DOCKER_STATUS), also appended to $GITHUB_ENV if set:
#     ready                   engine answers, offline images built
#     no-images: <reason>     engine answers, image build failed (the matrix falls back to registry images)
#     unavailable: <reason>   no engine
#
# Steps: install Debian's docker.io (and debootstrap) if missing, start dockerd in the background if it is not
# running (log: build/dockerd.log), wait until `docker info` answers, then build the images the project's own
# tests start (`python3 -m matrix.images --tested`: PostgreSQL 15, MariaDB 10.11, MySQL 9.7, one per entrypoint;
# images whose recipe did not change are kept as they are). `nox -s images` builds every image of the matrix.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT/build"
STATUS_FILE=${GREENLIGHT_DOCKER_STATUS:-$ROOT/build/docker-status}
DOCKERD_LOG=$ROOT/build/dockerd.log
DOCKERD_TIMEOUT=${GREENLIGHT_DOCKERD_TIMEOUT:-60}

finish() {
    # $1: status line. Written where CI steps can read it, then exit 0 whatever happened.
    printf '%s\n' "$1" >"$STATUS_FILE"
    if [ -n "${GITHUB_ENV:-}" ]; then
        printf 'GREENLIGHT_DOCKER=%s\n' "${1%%:*}" >>"$GITHUB_ENV"
    fi
    echo "docker.sh: $1"
    exit 0
}

loud() {
    echo "################################################################################" >&2
    echo "# .ci/docker.sh: $1" >&2
    shift
    for text in "$@"; do printf '%s\n' "$text" | sed 's/^/#   /' >&2; done
    echo "################################################################################" >&2
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        echo "needs root (not root, and no password-less sudo): $*" >&2
        return 1
    fi
}

engine_answers() {
    timeout 15 docker info >/dev/null 2>&1
}

install_packages() {
    # $@: Debian packages. Output goes to a log; its tail is the error message.
    local log=$ROOT/build/apt-install.log
    if ! { as_root apt-get update && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "$@"; } >"$log" 2>&1; then
        tail -n 5 "$log"
        return 1
    fi
}

# 1. The engine's binaries.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    echo "docker.sh: installing docker.io"
    if ! error=$(install_packages docker.io); then
        loud "DOCKER IS NOT AVAILABLE: apt-get install docker.io failed" "$error" \
            "PostgreSQL/MySQL cells will be recorded as not-run."
        finish "unavailable: apt-get install docker.io failed: $(echo "$error" | tail -n 1)"
    fi
fi

# 2. The engine itself.
if ! engine_answers; then
    echo "docker.sh: starting dockerd (log: $DOCKERD_LOG)"
    as_root sh -c "nohup setsid dockerd >'$DOCKERD_LOG' 2>&1 </dev/null &" || true
    waited=0
    until engine_answers; do
        if [ "$waited" -ge "$DOCKERD_TIMEOUT" ]; then
            error=$(tail -n 5 "$DOCKERD_LOG" 2>/dev/null || echo "no log")
            loud "DOCKER IS NOT AVAILABLE: dockerd did not answer within ${DOCKERD_TIMEOUT}s" "$error" \
                "PostgreSQL/MySQL cells will be recorded as not-run."
            finish "unavailable: dockerd did not answer within ${DOCKERD_TIMEOUT}s: $(echo "$error" | tail -n 1)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
fi
echo "docker.sh: engine $(docker info --format '{{.ServerVersion}}' 2>/dev/null) answers"

# 3. The offline images (no registry here): debootstrap needs root and the debootstrap package.
# The keyring matters on Ubuntu (GitHub's runners), whose debootstrap cannot verify Debian's archive without it.
if ! command -v debootstrap >/dev/null 2>&1 || [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    if ! error=$(install_packages debootstrap debian-archive-keyring); then
        loud "OFFLINE IMAGES NOT BUILT: apt-get install debootstrap debian-archive-keyring failed" "$error"
        finish "no-images: apt-get install debootstrap debian-archive-keyring failed: $(echo "$error" | tail -n 1)"
    fi
fi
if ! (cd "$ROOT" && as_root python3 -m matrix.images --tested); then
    loud "OFFLINE IMAGES NOT BUILT: python3 -m matrix.images --tested failed (see above)" \
        "Containers will only start from images already present or pullable."
    finish "no-images: python3 -m matrix.images --tested failed"
fi
finish "ready"
