"""Adversarial robustness: mltrail against IBM's Adversarial Robustness Toolbox 1.20.1, side by
side on the same models and rows.

Two scikit-learn tree ensembles on synthetic data min-max scaled to [0, 1] (ART's verifier
requires it): a binary GradientBoostingClassifier (50 trees, depth 3, init='zero' so that ART's
verifier, which leaves out the prior, decides as the model does) and a 3-class
RandomForestClassifier (20 trees, depth 5; ART's verifier is meaningless on binary forests).
mltrail reads their ONNX export (skl2onnx, float inputs: scikit-learn's trees compare float32
values too); ART reads the scikit-learn models. The same correctly classified test rows are
attacked at the same ε in L∞:

  - black box: ART's HopSkipJump(norm=inf, max_iter, max_eval, init_eval=100, init_size=100)
    against mltrail's HopSkipJump with the same settings; success = the example found flips the
    model's answer and lies within ε; queries are counted for both;
  - verification: ART's RobustnessVerificationTreeModelsCliqueMethod at ε (one search step,
    max_clique=2, max_level=2) against mltrail's clique method at the same depth and at its
    default depth (4 levels under a size limit); verified robust accuracy over the test rows;
  - mltrail's tree-threshold attack is reported beside them (ART has no counterpart here).

Seconds are wall time on one core: ART's HopSkipJump plus its verifier, against mltrail's whole
assessment (which also runs the tree attack and missing-feature accuracy), so the ratio is a
lower bound of the speed-up on the same work.

    bench/art-venv.sh                       # once: bench/.work/art-venv with ART 1.20.1
    bench/.work/art-venv/bin/python bench/robustness.py [--rows 200 --epsilon 0.05]
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from art.attacks.evasion import HopSkipJump  # noqa: E402
from art.estimators.classification.scikitlearn import (  # noqa: E402
    ScikitlearnGradientBoostingClassifier, ScikitlearnRandomForestClassifier)
from art.metrics import RobustnessVerificationTreeModelsCliqueMethod  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def data(classes, seed):
    x, y = make_classification(n_samples=3000, n_features=8, n_informative=6, n_redundant=1,
                               n_classes=classes, n_clusters_per_class=1, flip_y=0.02, random_state=seed)
    x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
    # float32 values, as the ONNX model takes them (scikit-learn's trees compare in float32).
    x = x.astype(np.float32).astype(np.float64)
    return x[:2000], y[:2000], x[2000:], y[2000:]


class Counting:
    """Counts the rows ART asks the model about."""

    def __init__(self, classifier):
        self.classifier, self.rows = classifier, 0
        original = classifier.predict

        def predict(x, *a, **k):
            self.rows += len(x)
            return original(x, *a, **k)

        classifier.predict = predict


def art_side(model, wrapper, x, y, eps, max_iter, max_eval):
    clf = wrapper(model, clip_values=(0.0, 1.0))
    correct = clf.predict(x).argmax(1) == y
    xc, yc = x[correct], y[correct]
    counter = Counting(clf)
    t0 = time.perf_counter()
    hsj = HopSkipJump(clf, norm=np.inf, max_iter=max_iter, max_eval=max_eval, init_eval=100, init_size=100,
                      verbose=False)
    adversarial = hsj.generate(xc)
    t_hsj = time.perf_counter() - t0
    queries = counter.rows
    flipped = clf.predict(adversarial).argmax(1) != yc
    within = np.abs(adversarial - xc).max(axis=1) <= eps * (1 + 1e-9)
    success = float(np.mean(flipped & within))
    t0 = time.perf_counter()
    verifier = RobustnessVerificationTreeModelsCliqueMethod(clf, verbose=False)
    verified = 0
    for i in range(len(x)):
        if not correct[i]:
            continue
        _, error = verifier.verify(x[i:i + 1], np.eye(len(np.unique(y)))[y[i:i + 1]], eps_init=eps, norm=np.inf,
                                   nb_search_steps=1, max_clique=2, max_level=2)
        verified += int(error == 0.0)
    t_verify = time.perf_counter() - t0
    return {
        "correct": int(correct.sum()), "hsj_success_rate": success, "hsj_queries_per_row": queries / max(1, len(xc)),
        "verified_robust_accuracy": verified / len(x), "seconds_hsj": t_hsj, "seconds_verify": t_verify,
        "seconds": t_hsj + t_verify,
    }


def mltrail_side(model, x, y, eps, max_iter, max_eval, work):
    onnx_path = work / "model.onnx"
    onnx_model = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}},
                         target_opset={"": 17, "ai.onnx.ml": 3})
    onnx_path.write_bytes(onnx_model.SerializeToString())
    rows = work / "rows.csv"
    with rows.open("w") as f:
        f.write(",".join([f"f{j}" for j in range(x.shape[1])] + ["label"]) + "\n")
        for xi, yi in zip(x, y):
            f.write(",".join(repr(float(v)) for v in xi) + f",{int(yi)}\n")
    binary = ROOT / "target" / "release" / "examples" / "robustness_speed"
    out = subprocess.run([str(binary), str(onnx_path), str(rows), str(eps), str(max_iter), str(max_eval)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--epsilon", type=float, default=0.05)
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--max-eval", type=int, default=1000)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mltrail-explain", "--example", "robustness_speed"],
                   cwd=ROOT, check=True)
    print(f"# {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{args.rows} test rows, eps {args.epsilon} (L-inf on [0,1] features), HopSkipJump max_iter "
          f"{args.max_iter}, max_eval {args.max_eval}")
    models = [
        ("gradient boosting, binary", GradientBoostingClassifier(n_estimators=50, max_depth=3, init="zero",
                                                                random_state=0), 2, ScikitlearnGradientBoostingClassifier),
        ("random forest, 3 classes", RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0), 3,
         ScikitlearnRandomForestClassifier),
    ]
    results = []
    for name, model, classes, wrapper in models:
        xtr, ytr, xte, yte = data(classes, seed=classes)
        model.fit(xtr, ytr)
        x, y = xte[:args.rows], yte[:args.rows]
        theirs = art_side(model, wrapper, x, y, args.epsilon, args.max_iter, args.max_eval)
        with tempfile.TemporaryDirectory() as tmp:
            ours = mltrail_side(model, x, y, args.epsilon, args.max_iter, args.max_eval, Path(tmp))
        report = ours["default"]["report"]
        shallow = ours["art_depth"]["report"]
        attacks = {a["attack"]: a for a in report["attacks"]}
        results.append({"model": name, "art": theirs, "mltrail": ours})
        print(f"\n## {name}: {theirs['correct']} of {len(x)} rows correctly classified "
              f"(mltrail: {report['clean_accuracy'] * len(x):.0f})")
        print(f"{'':44} {'ART':>10} {'mltrail':>10}")
        print(f"{'HopSkipJump success within eps':44} {theirs['hsj_success_rate']:>10.3f} "
              f"{attacks['hop_skip_jump']['success_rate']:>10.3f}")
        print(f"{'HopSkipJump queries per row':44} {theirs['hsj_queries_per_row']:>10.0f} "
              f"{attacks['hop_skip_jump']['mean_queries']:>10.0f}")
        print(f"{'tree-threshold attack success within eps':44} {'-':>10} "
              f"{attacks['tree_thresholds']['success_rate']:>10.3f}")
        print(f"{'robust accuracy, upper bound (best attack)':44} {'-':>10} {report['robust_accuracy']:>10.3f}")
        print(f"{'verified robust accuracy (clique, 2 levels)':44} {theirs['verified_robust_accuracy']:>10.3f} "
              f"{shallow['verified_robust_accuracy']:>10.3f}")
        print(f"{'verified robust accuracy (mltrail default)':44} {'-':>10} {report['verified_robust_accuracy']:>10.3f}")
        print(f"{'seconds (ART: HSJ + verify; mltrail: all)':44} {theirs['seconds']:>10.2f} "
              f"{ours['default']['seconds']:>10.2f}   ratio {theirs['seconds'] / ours['default']['seconds']:.1f}x")
    out = ROOT / "bench" / "results" / "robustness.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
