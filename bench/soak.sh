#!/usr/bin/env bash
# Soak: the tracking server and a serving deployment for 30 minutes at 80 % of their measured
# capacity with a monitor evaluating; RSS and p99 over time in docs/soak.png and
# bench/results/soak.json. Not a test (docs/reliability.md has the results).
#   bench/soak.sh [--minutes 30] [--load 0.8]
set -euo pipefail
cd "$(dirname "$0")/.."
MLTRAIL_SETUP_BENCH=1 scripts/setup.sh
cargo build --release --locked --bin mltrail
exec .venv/bin/python bench/soak.py --binary target/release/mltrail "$@"
