#!/usr/bin/env bash
# Makes sure bench/.work/evidently-venv has Evidently 0.7.23 (the version tests/golden/golden/drift.json
# was computed with) and prints its python. Used by the benchmarks that run Evidently as the peer.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/evidently-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
  echo "bench: creating $venv with Evidently 0.7.23" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check evidently==0.7.23 pandas==2.3.3 numpy==2.4.6 scipy==1.17.1 >&2
fi
echo "$venv/bin/python"
