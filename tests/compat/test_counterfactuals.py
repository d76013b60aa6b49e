"""Counterfactuals of served predictions (`GET /api/v1/predictions/{id}/counterfactual` on
`mltrail serve`): the change found flips the decision when the deployment scores it again, moves
only the features asked about and keeps them in their ranges; ranges that cannot flip the
decision say so; bad requests are refused naming the field."""
import pandas as pd
import requests

from test_robustness import labelled, store
from test_serving import credit_model, start_serve  # noqa: F401  (credit_model is a fixture)


def test_counterfactuals_flip_respect_ranges_and_say_none(server, client, credit_model, tmp_path, unique):
    name, frame = credit_model
    training = store(server, labelled(frame, 3), tmp_path, unique("train"))
    client.set_model_version_tag(name, "1", "mltrail.training_data", training)
    proc, url = start_serve(server, f"{name}/1", tmp_path, "--deployment", unique("cf"))
    try:
        rows = frame.head(40)
        body = {"dataframe_split": {"columns": list(frame.columns), "data": rows.values.tolist()}}
        answered = requests.post(f"{url}/api/v1/predict", json=body, timeout=60).json()["predictions"]
        declined = [p for p in answered if p["outputs"]["label"] == 0][:5]
        assert declined, "some rows are declined"
        # The training data as stored (the CSV's decimal text, read back as doubles).
        stored = pd.read_csv(tmp_path / f"{training.split('@')[0]}.csv")
        lo_income, hi_income = float(stored.income.min()), float(stored.income.max())
        for p in declined:
            answer = requests.get(f"{url}/api/v1/predictions/{p['prediction_id']}/counterfactual",
                                  params={"features": "income,debt_ratio", "ranges": "debt_ratio:0..0.9"}, timeout=60)
            assert answer.status_code == 200, answer.text
            cf = answer.json()
            assert cf["decision"] == "0" and cf["found"], cf
            assert cf["ranges"]["debt_ratio"] == [0.0, 0.9]
            assert cf["ranges"]["income"] == [lo_income, hi_income]  # the training data's range
            inputs = cf["counterfactual"]["inputs"]
            # Only the features asked about move, and they stay in their ranges.
            assert inputs["age"] == rows.values.tolist()[answered.index(p)][1]
            assert {c["feature"] for c in cf["counterfactual"]["changes"]} <= {"income", "debt_ratio"}
            assert 0.0 <= inputs["debt_ratio"] <= 0.9 and lo_income <= inputs["income"] <= hi_income
            # The deployment, asked again, decides otherwise.
            again = requests.post(f"{url}/api/v1/predict", timeout=60,
                                  json={"dataframe_split": {"columns": list(frame.columns),
                                                            "data": [[inputs[c] for c in frame.columns]]}})
            assert again.json()["predictions"][0]["outputs"]["label"] == int(cf["counterfactual"]["decision"]) == 1
            assert cf["counterfactual"]["distance"] > 0

        # Values as a client sent them (not float32) come back exactly where nothing changed.
        sent = {"dataframe_split": {"columns": ["income", "age", "debt_ratio"], "data": [[40.1, 33.3, 0.45]]}}
        one = requests.post(f"{url}/api/v1/predict", json=sent, timeout=60).json()["predictions"][0]
        assert one["outputs"]["label"] == 0
        cf = requests.get(f"{url}/api/v1/predictions/{one['prediction_id']}/counterfactual",
                          params={"features": "income,debt_ratio"}, timeout=60).json()
        assert cf["found"] and cf["counterfactual"]["inputs"]["age"] == 33.3
        assert all(c["feature"] != "age" for c in cf["counterfactual"]["changes"])
        for c in cf["counterfactual"]["changes"]:
            assert c["from"] == {"income": 40.1, "debt_ratio": 0.45}[c["feature"]] and c["to"] != c["from"]

        # Age alone, held near its value, cannot flip this model's decision: verified.
        p = declined[0]
        age = float(frame.age.iloc[answered.index(p)])
        none = requests.get(f"{url}/api/v1/predictions/{p['prediction_id']}/counterfactual",
                            params={"features": "age", "ranges": f"age:{age - 0.5}..{age + 0.5}"}, timeout=60).json()
        assert none["found"] is False and "verified" in none["reason"], none

        for params, field in [({"features": "nope"}, "features"), ({}, "features"),
                              ({"features": "age", "ranges": "age:5..1"}, "ranges"),
                              ({"features": "age", "ranges": "income:1..2"}, "ranges"),
                              ({"features": "age", "ranges": "age=1..2"}, "ranges")]:
            bad = requests.get(f"{url}/api/v1/predictions/{p['prediction_id']}/counterfactual", params=params, timeout=30)
            assert bad.status_code == 400 and bad.json()["column"] == field, (params, bad.text)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
