"""Fairness numbers: mltrail against Fairlearn 0.15, side by side, at 1,000,000 rows.

The golden predictions file (tests/golden/data/predictions.csv: labels, predictions, scores, sex,
age group of 5,000 people) repeated to 1M rows. Both compute the same report: Fairlearn's
MetricFrame over 7 metrics (selection rate, accuracy, TPR, FPR, FNR, TNR, count) grouped by sex,
by age group and by both, with every view (group min/max, differences and ratios between groups
and to overall) and the 8 parity scalars by both methods (Fairlearn's scalar functions each build their own
MetricFrame, as a user calling them does). Two measurements, median of --reps runs (3):
  - compute: the data already in memory (pandas/numpy for Fairlearn; the `fairness_speed`
    example for mltrail);
  - end to end: reading the CSV and writing the report (pandas.read_csv + Fairlearn; the
    `mltrail fairness` command).
The reports are compared number by number (the check that both did the same work).

    bench/explain-venv.sh          # once
    bench/.work/explain-venv/bin/python bench/fairness.py [--rows 1000000] [--reps 1]
"""
import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import (MetricFrame, count, demographic_parity_difference, demographic_parity_ratio,
                               equal_opportunity_difference, equal_opportunity_ratio, equalized_odds_difference,
                               equalized_odds_ratio, false_negative_rate, false_positive_rate, selection_rate,
                               true_negative_rate, true_positive_rate)
from sklearn.metrics import accuracy_score

ROOT = Path(__file__).resolve().parent.parent
METRICS = {"selection_rate": selection_rate, "accuracy": accuracy_score, "true_positive_rate": true_positive_rate,
           "false_positive_rate": false_positive_rate, "false_negative_rate": false_negative_rate,
           "true_negative_rate": true_negative_rate, "count": count}


def fairlearn_report(p):
    y, yp = p.y_true.to_numpy(), p.y_pred.to_numpy()
    out = {"metric_frames": {}, "scalar": {}}
    for name, sf in (("sex", p["sex"]), ("age_group", p["age_group"]), ("sex_x_age_group", p[["sex", "age_group"]])):
        mf = MetricFrame(metrics=METRICS, y_true=y, y_pred=yp, sensitive_features=sf)
        views = {"overall": mf.overall, "group_min": mf.group_min(), "group_max": mf.group_max(),
                 "difference_between_groups": mf.difference(method="between_groups"),
                 "difference_to_overall": mf.difference(method="to_overall"),
                 "ratio_between_groups": mf.ratio(method="between_groups"),
                 "ratio_to_overall": mf.ratio(method="to_overall")}
        frame = {k: {m: float(v) for m, v in s.items()} for k, s in views.items()}
        frame["by_group"] = {(" & ".join(map(str, k)) if isinstance(k, tuple) else str(k)): {m: float(v) for m, v in row.items()}
                             for k, row in mf.by_group.iterrows()}
        out["metric_frames"][name] = frame
        out["scalar"][name] = {}
        for method in ("between_groups", "to_overall"):
            out["scalar"][name][method] = {
                "demographic_parity_difference": demographic_parity_difference(y, yp, sensitive_features=sf, method=method),
                "demographic_parity_ratio": demographic_parity_ratio(y, yp, sensitive_features=sf, method=method),
                "equalized_odds_difference": equalized_odds_difference(y, yp, sensitive_features=sf, method=method),
                "equalized_odds_difference_agg_mean": equalized_odds_difference(y, yp, sensitive_features=sf, method=method, agg="mean"),
                "equalized_odds_ratio": equalized_odds_ratio(y, yp, sensitive_features=sf, method=method),
                "equalized_odds_ratio_agg_mean": equalized_odds_ratio(y, yp, sensitive_features=sf, method=method, agg="mean"),
                "equal_opportunity_difference": equal_opportunity_difference(y, yp, sensitive_features=sf, method=method),
                "equal_opportunity_ratio": equal_opportunity_ratio(y, yp, sensitive_features=sf, method=method),
            }
    return out


def median(fn, reps=3):
    runs, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs)), out


def largest_difference(a, b, at=""):
    if isinstance(a, dict):
        return max((largest_difference(a[k], b[k], f"{at}.{k}") for k in a), default=0.0)
    return abs(float(a) - float(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3, help="runs per measurement (median); Fairlearn takes minutes at 1M rows")
    args = ap.parse_args()
    base = pd.read_csv(ROOT / "tests/golden/data/predictions.csv", dtype={"sex": str, "age_group": str})
    p = pd.concat([base] * (args.rows // len(base) + 1), ignore_index=True).iloc[:args.rows]
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "mltrail"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mltrail-explain", "--example", "fairness_speed"],
                   cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "predictions.csv"
        p.to_csv(csv, index=False, float_format="%.17g")
        t_fl, theirs = median(lambda: fairlearn_report(p), args.reps)
        t_fl_e2e, _ = median(lambda: fairlearn_report(pd.read_csv(csv, dtype={"sex": str, "age_group": str})), args.reps)
        ours_json = Path(tmp) / "ours.json"
        cmd = [str(ROOT / "target/release/mltrail"), "fairness", str(csv), "--label", "y_true", "--prediction", "y_pred",
               "--sensitive", "sex,age_group", "--json", str(ours_json)]
        t_ours_e2e, _ = median(lambda: subprocess.run(cmd, check=True, capture_output=True), args.reps)
        ours = json.loads(ours_json.read_text())
        compute = json.loads(subprocess.run([str(ROOT / "target/release/examples/fairness_speed"), str(args.rows)],
                                            check=True, capture_output=True, text=True).stdout)
    diff = max(largest_difference(theirs["metric_frames"], ours["metric_frames"]),
               largest_difference(theirs["scalar"], ours["scalar"]))
    print(f"{args.rows} rows, groups by sex, age group and both; largest difference {diff:.1e}")
    print(f"compute      fairlearn {t_fl:7.3f} s | mltrail {compute['seconds']:7.3f} s | fairlearn/mltrail {t_fl / compute['seconds']:6.1f}x")
    print(f"end to end   fairlearn {t_fl_e2e:7.3f} s | mltrail {t_ours_e2e:7.3f} s | fairlearn/mltrail {t_fl_e2e / t_ours_e2e:6.1f}x")


if __name__ == "__main__":
    main()
