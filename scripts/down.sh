#!/usr/bin/env bash
# Stop exactly the services `make up` started: SIGTERM, then SIGKILL after a grace period.
# The infrastructure (Postgres, Redis, broker, Docker) keeps running; see `make services-down`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
GRACE=${CHRONOVERSE_DOWN_GRACE_S:-20}
SERVICES=(server scheduling-worker workflow-worker execution-worker log-processor)

ours() {  # ours <pid> <service>
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "chronoverse-$2"
}

declare -A PIDS=()
for svc in "${SERVICES[@]}"; do
    pidfile="$RUN_DIR/pids/$svc.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if ours "$pid" "$svc"; then
        kill -TERM "$pid" 2>/dev/null || true
        PIDS[$svc]=$pid
    fi
    rm -f "$pidfile"
done

deadline=$((SECONDS + GRACE))
for svc in "${!PIDS[@]}"; do
    pid=${PIDS[$svc]}
    while ours "$pid" "$svc" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if ours "$pid" "$svc"; then
        echo "[down] $svc (pid $pid) ignored SIGTERM for ${GRACE}s; killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "[down] stopped $svc"
done
[ ${#PIDS[@]} -gt 0 ] || echo "[down] nothing was running"
