#!/usr/bin/env bash
# Makes sure bench/.work/art-venv has IBM's Adversarial Robustness Toolbox 1.20.1 with the
# scikit-learn, skl2onnx and onnx the compatibility suite pins, and prints its python. Used by
# bench/robustness.py, which runs ART as the peer of `mltrail robustness`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=bench/.work/art-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import art, sklearn, skl2onnx, packaging" 2>/dev/null; then
  echo "bench: creating $venv with adversarial-robustness-toolbox 1.20.1" >&2
  mkdir -p bench/.work
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check adversarial-robustness-toolbox==1.20.1 \
    scikit-learn==1.9.1 numpy==2.4.6 pandas==2.3.3 skl2onnx==1.20.0 onnx==1.23.2 packaging >&2
fi
echo "$venv/bin/python"
