#!/usr/bin/env bash
# Drift benchmark: the same reference/current CSV pair at 100k and 1M rows x 13 columns
# (../shared/golden/gen_data.py --rows N) through Evidently's DataDriftPreset and `mltrail drift`,
# in one run. Not a test: prints times, peak memory and whether the verdicts agree; writes
# bench/results/drift.json.
#   bench/drift.sh [--rows 100000,1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/evidently-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
  echo "bench: creating $venv with Evidently 0.7.23 (the version ../shared/golden was computed with)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check evidently==0.7.23 pandas==2.3.3 numpy==2.4.6 scipy==1.17.1
fi
cargo build --release --locked --bin mltrail
exec python3 bench/drift.py --mltrail target/release/mltrail --evidently-python "$venv/bin/python" "$@"
