#!/usr/bin/env bash
# Drift benchmark: the same reference/current CSV pair at 100k and 1M rows x 13 columns
# (tests/golden/gen_data.py --rows N) through Evidently's DataDriftPreset and `mltrail drift`,
# in one run. Not a test: prints times, peak memory and whether the verdicts agree; writes
# bench/results/drift.json.
#   bench/drift.sh [--rows 100000,1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
evidently_python=$(bench/evidently-venv.sh)
cargo build --release --locked --bin mltrail
exec python3 bench/drift.py --mltrail target/release/mltrail --evidently-python "$evidently_python" "$@"
