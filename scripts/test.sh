#!/usr/bin/env bash
# The test command: set up (idempotent), lint, type-check, then every test
# against a real Kafka broker and a real Redis server started by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# exit code 5 (no tests collected) is a failure like any other non-zero code
exec .venv/bin/pytest -p no:cacheprovider "$@"
