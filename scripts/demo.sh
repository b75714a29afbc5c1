#!/usr/bin/env bash
# The main job: set up (idempotent), then run the demo (stack, workers,
# simulated fleet, live summary). Extra arguments go to `meterseg demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/meterseg demo "$@"
