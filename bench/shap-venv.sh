#!/usr/bin/env bash
# Makes sure bench/.work/shap-venv has SHAP 0.51 and scikit-learn 1.9 (the versions
# tests/golden/golden/shap_tree.json was computed with) and prints its python. Used by the
# explanation benchmark, which runs shap as the peer.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/shap-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import shap, sklearn" 2>/dev/null; then
  echo "bench: creating $venv with SHAP 0.51.0" >&2
  mkdir -p bench/.work
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check shap==0.51.0 scikit-learn==1.9.1 numpy==2.4.6 pandas==2.3.3 >&2
fi
echo "$venv/bin/python"
