#!/usr/bin/env bash
# Start the five Chronoverse services in the background (after `make services`), apply migrations
# and create topics. Pids and logs go under $RUN_DIR. A service that is already running is left
# alone, so running this twice starts nothing twice.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
OFFSET=${CHRONOVERSE_UP_PORT_OFFSET:-0}
BIN="$ROOT/.venv/bin"
[ -f "$RUN_DIR/env" ] || { echo "[up] $RUN_DIR/env missing: run 'make services' first" >&2; exit 1; }
set -a; . "$RUN_DIR/env"; set +a
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"

"$BIN/chronoverse" migrate
"$BIN/chronoverse" topics create

HTTP_PORT=$((${CHRONOVERSE_HTTP_PORT:-8080} + OFFSET))
GRPC_PORT=$((${CHRONOVERSE_GRPC_PORT:-50051} + OFFSET))
declare -A HEALTH=(
    [server]=$((9100 + OFFSET))
    [scheduling-worker]=$((9101 + OFFSET))
    [workflow-worker]=$((9102 + OFFSET))
    [execution-worker]=$((9103 + OFFSET))
    [log-processor]=$((9104 + OFFSET))
)
SERVICES=(server scheduling-worker workflow-worker execution-worker log-processor)

running() {  # running <service>: true if its pid file names a live process of that service
    local pidfile="$RUN_DIR/pids/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "chronoverse-$1"
}

for svc in "${SERVICES[@]}"; do
    if running "$svc"; then
        echo "[up] $svc already running (pid $(cat "$RUN_DIR/pids/$svc.pid"))"
        continue
    fi
    CHRONOVERSE_HTTP_PORT=$HTTP_PORT CHRONOVERSE_GRPC_PORT=$GRPC_PORT \
    CHRONOVERSE_HEALTH_PORT=${HEALTH[$svc]} CHRONOVERSE_LOG_FORMAT=${CHRONOVERSE_LOG_FORMAT:-json} \
        nohup "$BIN/chronoverse-$svc" >>"$RUN_DIR/logs/$svc.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/pids/$svc.pid"
    echo "[up] started $svc (pid $!)"
done

for svc in "${SERVICES[@]}"; do
    deadline=$((SECONDS + 60))
    until "$BIN/python" -c "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=3)" \
        "http://127.0.0.1:${HEALTH[$svc]}/readyz" 2>/dev/null; do
        if ! running "$svc"; then
            echo "[up] $svc exited; last lines of $RUN_DIR/logs/$svc.log:" >&2
            tail -n 20 "$RUN_DIR/logs/$svc.log" >&2
            exit 1
        fi
        [ $SECONDS -lt $deadline ] || { echo "[up] $svc not ready after 60s" >&2; exit 1; }
        sleep 0.3
    done
done

cat <<MSG
[up] Chronoverse is running.
     HTTP API  http://127.0.0.1:$HTTP_PORT   (docs: /docs, OpenAPI: /openapi.json)
     gRPC API  127.0.0.1:$GRPC_PORT
     health    server $((9100 + OFFSET)), scheduling $((9101 + OFFSET)), workflow $((9102 + OFFSET)), execution $((9103 + OFFSET)), log $((9104 + OFFSET))  (/healthz /readyz /metrics)
     logs      $RUN_DIR/logs/<service>.log     stop: make down
MSG
