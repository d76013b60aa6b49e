#!/usr/bin/env bash
# Serving benchmark: the same ONNX models (a logistic regression and a 50-tree GBDT) served by
# `mlflow models serve` and by `mltrail serve` (every prediction logged), wrk for 15 s at
# concurrency 1, 16 and 64 with 1-row and 100-row bodies, plus a no-op endpoint of ours as the
# ceiling and onnxruntime's in-process rows/s as the kernel reference. Not a test: it prints
# numbers and ratios and writes bench/results/serving.json.
#   bench/serving.sh [--duration 15]
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
MLTRAIL_SETUP_BENCH=1 scripts/setup.sh
cargo build --release --locked --bin mltrail
cargo build --release --locked -p mltrail-serving --example kernel_bench
exec .venv/bin/python bench/serving.py --mltrail target/release/mltrail --kernel-bench target/release/examples/kernel_bench "$@"
