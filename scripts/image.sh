#!/usr/bin/env bash
# Build the Chronoverse image from the Dockerfile, as `docker compose build` would.
#
#   scripts/image.sh [TAG]        (default TAG: chronoverse:dev)
#
# The Dockerfile starts FROM python:3.11-slim-bookworm and copies uv from
# ghcr.io/astral-sh/uv:0.13.9. Where those cannot be pulled (these dev and CI machines reach no
# registry), stand-ins are imported under the same names, labelled chronoverse.stand-in:
#   - python:3.11-slim-bookworm from local/python:3.11 (debootstrap, made by scripts/services.sh)
#     plus this machine's CA bundle, so uv trusts the same TLS roots the host does;
#   - ghcr.io/astral-sh/uv:0.13.9 from the uv binary scripts/bootstrap.sh installed.
# An image that already exists under either name is used as it is, unless it is an older
# stand-in (its label differs from STAND_IN below); a real image is never replaced.
# The build uses the host network: dockerd here runs without a bridge.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
TAG=${1:-chronoverse:dev}
PYTHON_IMAGE=python:3.11-slim-bookworm
UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
UV_BIN="$RUN_DIR/tools/uv/bin/uv"
STAND_IN=2  # bump when the stand-ins change

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }
present() {  # a real image, or a stand-in of the current revision
    local label
    label=$(docker image inspect -f '{{index .Config.Labels "chronoverse.stand-in"}}' "$1" 2>/dev/null) || return 1
    [ -z "$label" ] || [ "$label" = "$STAND_IN" ]
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! present "$PYTHON_IMAGE"; then
    present local/python:3.11 || die "local/python:3.11 is missing: run \`make services\` first"
    log "importing a stand-in for $PYTHON_IMAGE from local/python:3.11"
    mkdir -p "$work/python"
    cp /etc/ssl/certs/ca-certificates.crt "$work/python/"
    cat >"$work/python/Dockerfile" <<'DOCKERFILE'
FROM local/python:3.11
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The official image's PATH (useradd and groupadd live in /usr/sbin).
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
ARG STAND_IN
LABEL chronoverse.stand-in=$STAND_IN
DOCKERFILE
    docker build --quiet --network host --build-arg STAND_IN="$STAND_IN" \
        -t "$PYTHON_IMAGE" "$work/python" >/dev/null
fi

if ! present "$UV_IMAGE"; then
    [ -x "$UV_BIN" ] || die "$UV_BIN is missing: run \`make install\` first"
    log "importing a stand-in for $UV_IMAGE from $UV_BIN"
    mkdir -p "$work/uv"
    cp "$UV_BIN" "$work/uv/uv"
    tar -C "$work/uv" -c uv | docker import -c "LABEL chronoverse.stand-in=$STAND_IN" - "$UV_IMAGE" >/dev/null
fi

log "building $TAG"
docker build --force-rm --network host -t "$TAG" "$ROOT"
