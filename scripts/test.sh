#!/usr/bin/env bash
# Run the test suite against the infrastructure that `make services` started.
#
# With arguments, they go to pytest as they are. Without, every tier runs, then the chaos tier
# (tests/chaos: faults injected into a Postgres, Redis, broker and Docker daemon of its own, so
# the shared instances are never restarted); it runs even when an earlier tier failed, and the
# script fails if either did.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
set -a; . "$RUN_DIR/env"; set +a
cd "$ROOT"
if [ $# -gt 0 ]; then
    exec "$ROOT/.venv/bin/pytest" "$@"
fi
status=0
"$ROOT/.venv/bin/pytest" --ignore=tests/chaos || status=$?
"$ROOT/.venv/bin/pytest" tests/chaos || status=$?
exit "$status"
