"""TreeSHAP speed: mltrail against shap 0.51, side by side, one thread each.

The model is the golden one: scikit-learn's GradientBoostingClassifier (30 trees, depth 3, seed 0)
on the 9 numeric columns of tests/golden/data/reference.csv. shap explains scikit-learn's trees;
mltrail explains their ONNX export (tests/golden/models/gbc.onnx), as `mltrail serve` would. Both
explain the same 10,000 rows (reference.csv then current.csv):
  - path-dependent TreeSHAP (mltrail recounts covers from reference.csv, shap reads scikit-learn's);
  - interventional TreeSHAP against reference rows 0-99.
Prints the median of 3 runs (CPU seconds for shap, whose C++ kernel is single-threaded; wall
seconds for mltrail, which uses one thread), the ratio, and the largest difference between the two
sets of values (the check that both did the same work).

    bench/explain-venv.sh          # once: bench/.work/explain-venv with shap 0.51 and fairlearn 0.15
    bench/.work/explain-venv/bin/python bench/explain.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
COLUMNS = ["income", "age", "debt_ratio", "num_accounts", "credit_history_months", "loan_amount",
           "utilization", "num_dependents", "savings"]


def cpu_median(fn, reps=3):
    runs, out = [], None
    for _ in range(reps):
        c0 = time.process_time()
        out = fn()
        runs.append(time.process_time() - c0)
    return float(np.median(runs)), out


def main():
    ref = pd.read_csv(GOLDEN / "data" / "reference.csv")
    cur = pd.read_csv(GOLDEN / "data" / "current.csv")
    xtr = ref[COLUMNS].to_numpy(dtype=float)
    x = np.vstack([xtr, cur[COLUMNS].to_numpy(dtype=float)])
    gbc = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(xtr, ref["label"].to_numpy())

    path = shap.TreeExplainer(gbc, model_output="raw")
    inter = shap.TreeExplainer(gbc, data=xtr[:100], model_output="raw")
    theirs = {}
    t_path, theirs["tree_path_dependent"] = cpu_median(lambda: path.shap_values(x))
    t_inter, theirs["interventional_bg100"] = cpu_median(lambda: inter.shap_values(x, check_additivity=False))

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mltrail-explain", "--example", "tree_shap_speed"],
                   cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([str(ROOT / "target" / "release" / "examples" / "tree_shap_speed"), "--values", tmp],
                             check=True, capture_output=True, text=True).stdout
        ours = json.loads(out)
        values = {name: np.fromfile(Path(tmp) / f"{name}.f64", dtype="<f8").reshape(-1, len(COLUMNS))
                  for name in theirs}

    # Rows where shap's interventional kernel, rounding thresholds to the nearest float32, takes
    # another branch than scikit-learn and ONNX (which round them down) at some split: float32(x)
    # equals float32(threshold) but is above the float64 threshold (tests/golden/README).
    x32 = x.astype(np.float32)
    edge = np.zeros(len(x), dtype=bool)
    for est in gbc.estimators_[:, 0]:
        t = est.tree_
        for node in np.where(t.children_left != -1)[0]:
            f, thr = t.feature[node], t.threshold[node]
            edge |= (x32[:, f] == np.float32(thr)) & (x32[:, f].astype(float) > thr)
    keep = np.where(~edge)[0]
    print(f"shap {shap.__version__}, {len(x)} rows, {gbc.n_estimators_} trees of depth 3, one thread each"
          f" (values compared on all rows but {int(edge.sum())} threshold-edge rows)")
    for name, t_shap in (("tree_path_dependent", t_path), ("interventional_bg100", t_inter)):
        diff = float(np.max(np.abs(values[name][keep] - theirs[name][keep])))
        print(f"{name:22s} shap {t_shap:7.3f} s | mltrail {ours[name]:7.3f} s | shap/mltrail {t_shap / ours[name]:5.2f}x"
              f" | largest difference {diff:.1e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
