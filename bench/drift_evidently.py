"""Evidently's DataDriftPreset on a reference/current CSV pair (run in the Evidently venv).

    python drift_evidently.py REFERENCE.csv CURRENT.csv OUT.json

Columns are declared as tests/golden/gen_data.py makes them (the label is left out).
"""
import json
import sys

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

NUMERIC = ["income", "age", "debt_ratio", "num_accounts", "credit_history_months", "loan_amount",
           "utilization", "num_dependents", "savings"]
CATEGORICAL = ["region", "employment_type", "sex", "age_group"]


def main():
    ref_path, cur_path, out = sys.argv[1:4]
    ref, cur = pd.read_csv(ref_path), pd.read_csv(cur_path)
    dd = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    features = NUMERIC + CATEGORICAL
    snap = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(cur[features], data_definition=dd),
        reference_data=Dataset.from_pandas(ref[features], data_definition=dd))
    d = snap.dict()
    drifted = {}
    for t in d["tests"]:
        p = t["metric_config"]["params"]
        if p["type"].endswith("ValueDrift"):
            drifted[p["column"]] = t["status"] == "FAIL"
    count = share = None
    for m in d["metrics"]:
        if m["config"]["type"].endswith("DriftedColumnsCount"):
            count, share = int(m["value"]["count"]), float(m["value"]["share"])
    json.dump({"drifted": drifted, "drifted_columns": count, "share": share, "drift": share >= 0.5}, open(out, "w"))


if __name__ == "__main__":
    main()
