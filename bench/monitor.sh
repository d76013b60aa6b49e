#!/usr/bin/env bash
# Monitor benchmark: one window of N logged predictions (100k and 1M, the drift benchmark's data)
# evaluated by a monitor in `mltrail server`, and Evidently's DataDriftPreset on the same rows, in
# one run. Not a test: prints times, server memory and whether the verdicts agree; writes
# bench/results/monitor.json.
#   bench/monitor.sh [--rows 100000,1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
evidently_python=$(bench/evidently-venv.sh)
[ -x .venv/bin/python ] || scripts/setup.sh
cargo build --release --locked --bin mltrail
exec .venv/bin/python bench/monitor.py --mltrail target/release/mltrail --evidently-python "$evidently_python" "$@"
