#!/usr/bin/env bash
# Run the test suite against the infrastructure that `make services` started.
#
# With arguments, they go to pytest as they are. Without, the unit, integration, e2e and deploy
# tiers run, then the browser tier (tests/browser: the dashboard in Chromium, against a stack of
# its own, kept out of the main run so that its stack and browser do not idle through it), then
# the chaos tier (tests/chaos: faults injected into a Postgres, Redis, broker and Docker daemon of
# its own, so the shared instances are never restarted). Each runs even when an earlier one
# failed, and the script fails if any did.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
set -a; . "$RUN_DIR/env"; set +a
cd "$ROOT"
if [ $# -gt 0 ]; then
    exec "$ROOT/.venv/bin/pytest" "$@"
fi
status=0
"$ROOT/.venv/bin/pytest" --ignore=tests/chaos --ignore=tests/browser || status=$?
"$ROOT/.venv/bin/pytest" tests/browser || status=$?
"$ROOT/.venv/bin/pytest" tests/chaos || status=$?
exit "$status"
