#!/usr/bin/env bash
# Runs the whole suite RUNS times in a row while CPU-bound burners keep every core busy,
# the way CI's shared 2-core machine can be. Stops at the first failing run.
#   make test-loaded RUNS=3
set -euo pipefail
runs=${1:-3}
cores=$(nproc)
limit=$((90 * 60))   # the burners never outlive CI's hard limit
burners=()
stop_burners() { for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_burners EXIT
for _ in $(seq "$cores"); do
    timeout "$limit" python3 -c 'while True: pass' &
    burners+=($!)
done
echo "under load: $cores CPU-bound burners (pids ${burners[*]}), $runs runs"
for run in $(seq "$runs"); do
    echo "=== run $run of $runs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    started=$(date +%s)
    HATCHWAY_PYSSM_PYTHON=${HATCHWAY_PYSSM_PYTHON:?} .venv/bin/python -m pytest -q "${@:2}"
    echo "=== run $run passed in $(( $(date +%s) - started )) s, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
