#!/usr/bin/env bash
# Tracking benchmark: mltrail server vs mlflow server (SQLite on disk, --workers 1 and the
# default 4), side by side in one run. Not a test: it prints numbers and ratios.
#   bench/tracking.sh [--runs 100000] [--duration 10]
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
MLTRAIL_SETUP_BENCH=1 scripts/setup.sh
cargo build --release --locked --bin mltrail
exec .venv/bin/python bench/tracking.py --mltrail target/release/mltrail "$@"
