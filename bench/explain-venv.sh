#!/usr/bin/env bash
# Makes sure bench/.work/explain-venv has SHAP 0.51, Fairlearn 0.15 and scikit-learn 1.9 (the
# versions tests/golden/golden/{shap_tree,fairness}.json were computed with) and prints its
# python. Used by the explanation and fairness benchmarks, which run them as the peers.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/explain-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import shap, fairlearn, sklearn" 2>/dev/null; then
  echo "bench: creating $venv with SHAP 0.51.0 and Fairlearn 0.15.0" >&2
  mkdir -p bench/.work
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check shap==0.51.0 fairlearn==0.15.0 \
    scikit-learn==1.9.1 numpy==2.4.6 pandas==2.3.3 >&2
fi
echo "$venv/bin/python"
