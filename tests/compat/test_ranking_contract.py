"""`mltrail check ranking`, the contract check a front-end team runs in its own CI: what the
recommender served against what the front end displayed. A front end that keeps the served
order passes; one that re-sorts alphabetically fails on its first re-sorted list, and the check
names the sort. Kendall τ and nDCG@k equal scipy's and scikit-learn's."""
import json
import subprocess

import numpy as np
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score

CATALOG = [f"item-{c}{n:02d}" for c in "qwertyuiop" for n in range(10)]


def check(server, served, displayed, tmp_path, *args):
    (tmp_path / "served.json").write_text(json.dumps(served))
    (tmp_path / "displayed.json").write_text(json.dumps(displayed))
    return subprocess.run([server["binary"], "check", "ranking", "--served", str(tmp_path / "served.json"),
                           "--displayed", str(tmp_path / "displayed.json"), *args],
                          capture_output=True, text=True, timeout=60)


def impressions(seed=5, n=40):
    rng = np.random.default_rng(seed)
    return [{"id": f"imp-{i}", "items": list(rng.choice(CATALOG, size=8, replace=False))} for i in range(n)]


def test_a_faithful_front_end_passes_and_its_numbers_equal_scipy_and_sklearn(server, tmp_path):
    served = impressions()
    rng = np.random.default_rng(6)
    # The front end shows the first six in the served order; users click one or two of them.
    displayed = [{"id": s["id"], "items": s["items"][:6],
                  "clicked": list(rng.choice(s["items"][:6], size=rng.integers(1, 3), replace=False))} for s in served]
    done = check(server, served, displayed, tmp_path, "--k", "5", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["agreement"] == 1.0 and summary["kendall_tau"] == 1.0
    # nDCG@5 of the served order from the clicks, as scikit-learn computes it.
    want = np.mean([ndcg_score([[1.0 if x in d["clicked"] else 0.0 for x in s["items"]]],
                               [list(range(len(s["items"]), 0, -1))], k=5) for s, d in zip(served, displayed)])
    assert abs(summary["ndcg_served"] - want) < 1e-12

    # A shuffled display: Kendall τ is scipy's, impression by impression, on average.
    shuffled = [{"id": s["id"], "items": list(rng.permutation(s["items"]))} for s in served]
    done = check(server, served, shuffled, tmp_path, "--json")
    assert done.returncode == 1
    taus = [kendalltau([s["items"].index(x) for x in d["items"]], range(len(d["items"]))).statistic
            for s, d in zip(served, shuffled)]
    assert abs(json.loads(done.stdout)["kendall_tau"] - np.mean(taus)) < 1e-12


def test_a_front_end_that_sorts_alphabetically_fails_on_its_first_list_and_is_named(server, tmp_path):
    served = impressions()
    displayed = [{"id": s["id"], "items": sorted(s["items"])} for s in served]
    done = check(server, served, displayed, tmp_path)
    assert done.returncode == 1
    first = next(s["id"] for s in served if sorted(s["items"]) != s["items"])
    assert f"impression `{first}`" in done.stderr, done.stderr
    assert "alphabetical order of item ids in 100 % of impressions" in done.stderr, done.stderr
    assert "0.0 % displayed in the served order" in done.stdout

    # Bad input: one line saying what is wrong, exit 2, whatever the other file says.
    served[3]["items"][1] = served[3]["items"][0]
    bad = check(server, served, displayed, tmp_path)
    assert bad.returncode == 2 and "is listed twice" in bad.stderr and "[3]" in bad.stderr
    bad = check(server, impressions()[:2], displayed, tmp_path)
    assert bad.returncode == 2 and "imp-2" in bad.stderr and "not in" in bad.stderr
