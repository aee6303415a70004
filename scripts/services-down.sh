#!/usr/bin/env bash
# Stop the infrastructure processes that scripts/services.sh started itself (broker, Redis, dockerd).
# Processes it found already running, and the system's Postgres cluster, are left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
for name in kafka redis dockerd; do
    pidfile="$RUN_DIR/pids/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" && echo "[services-down] stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
done
