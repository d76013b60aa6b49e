#!/usr/bin/env bash
# Monitor benchmark: one window of N logged predictions (100k and 1M, the drift benchmark's data)
# evaluated by a monitor in `mltrail server`, and Evidently's DataDriftPreset on the same rows, in
# one run. Not a test: prints times, server memory and whether the verdicts agree; writes
# bench/results/monitor.json.
#   bench/monitor.sh [--rows 100000,1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/evidently-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
  echo "bench: creating $venv with Evidently 0.7.23 (the version ../shared/golden was computed with)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check evidently==0.7.23 pandas==2.3.3 numpy==2.4.6 scipy==1.17.1
fi
[ -x .venv/bin/python ] || scripts/setup.sh
cargo build --release --locked --bin mltrail
exec .venv/bin/python bench/monitor.py --mltrail target/release/mltrail --evidently-python "$venv/bin/python" "$@"
