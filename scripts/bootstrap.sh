#!/usr/bin/env bash
# Create .venv with the locked dependencies (uv.lock). uv itself lives in a private venv under
# $RUN_DIR/tools so the project's .venv holds exactly what the lock file says.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
UV_VERSION=0.13.9
UV="$RUN_DIR/tools/uv/bin/uv"
if ! "$UV" --version 2>/dev/null | grep -q "$UV_VERSION"; then
    echo "[bootstrap] installing uv $UV_VERSION" >&2
    python3 -m venv "$RUN_DIR/tools/uv"
    "$RUN_DIR/tools/uv/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
cd "$ROOT"
# Bytecode compiled up front, as the image does (UV_COMPILE_BYTECODE=1): otherwise, with
# PYTHONDONTWRITEBYTECODE set, every process compiles each module it imports and keeps the
# compiler's leftovers (1.5-5 MiB of RSS at rest; docs/benchmarks.md, Footprint).
UV_PROJECT_ENVIRONMENT="$ROOT/.venv" "$UV" sync --locked --extra dev --quiet --compile-bytecode
