#!/usr/bin/env bash
# Run the test suite against the infrastructure that `make services` started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
set -a; . "$RUN_DIR/env"; set +a
cd "$ROOT"
exec "$ROOT/.venv/bin/pytest" "$@"
