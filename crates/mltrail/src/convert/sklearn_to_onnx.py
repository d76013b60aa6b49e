"""Converts a model logged by mlflow.sklearn.log_model to ONNX and checks the conversion.

Run by `mltrail serve` and `mltrail models convert` (crates/mltrail/src/convert/mod.rs) in the
Python environment that has scikit-learn, skl2onnx, onnxruntime and mlflow:

    python sklearn_to_onnx.py MODEL_FOLDER OUT.onnx

MODEL_FOLDER is the logged model's folder (MLmodel, model.pkl, input_example.json). The model is
converted with skl2onnx, then run by onnxruntime on the logged input example and compared with
the model's own predict / predict_proba: labels must be equal and numbers within 1e-5. Prints one
JSON object: {"ok": true, ...what was checked} or {"ok": false, "reason": ...} (exit status 2).
"""
import json
import os
import sys

TOLERANCE = 1e-5


def answer(ok, **fields):
    print(json.dumps({"ok": ok, **fields}))
    sys.exit(0 if ok else 2)


def main():
    folder, out = sys.argv[1], sys.argv[2]
    try:
        import numpy as np
        import onnxruntime
        import skl2onnx
        import sklearn
        from mlflow.models import Model
        import mlflow.sklearn
    except ImportError as e:
        answer(False, reason=f"this Python ({sys.executable}) cannot convert: {e}; "
                             "`pip install scikit-learn skl2onnx onnxruntime mlflow` in it, or point MLTRAIL_PYTHON at one that has them")
    logged = Model.load(os.path.join(folder, "MLmodel"))
    if "sklearn" not in logged.flavors:
        answer(False, reason=f"not a scikit-learn model (its flavors: {', '.join(sorted(logged.flavors))})")
    model = mlflow.sklearn.load_model(folder)
    example = logged.load_input_example(folder)
    if example is None:
        answer(False, reason="the version has no input example to check the conversion on: "
                             "log it with mlflow.sklearn.log_model(..., input_example=X[:5])")
    frame = example.values if hasattr(example, "values") else np.asarray(example)
    try:
        x = np.asarray(frame, dtype=np.float32)
    except (TypeError, ValueError):
        answer(False, reason="the input example is not all numbers; only numeric inputs are converted "
                             "(encode text columns inside a Pipeline skl2onnx converts, or log ONNX with mlflow.onnx.log_model)")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    classifier = hasattr(model, "predict_proba")
    options = {id(final): {"zipmap": False}} if classifier else None
    try:
        converted = skl2onnx.to_onnx(model, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    except Exception as e:  # skl2onnx raises many kinds for what it cannot convert
        answer(False, reason=f"skl2onnx {skl2onnx.__version__} cannot convert {type(model).__name__}: {e}")
    session = onnxruntime.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    if classifier:
        want_labels = model.predict(x)
        want = np.asarray(model.predict_proba(x), dtype=np.float64)
        got_labels, got = outputs[0], np.asarray(outputs[1], dtype=np.float64)
        if [str(v) for v in np.ravel(got_labels)] != [str(v) for v in np.ravel(want_labels)]:
            answer(False, reason="the ONNX conversion predicts other labels than the model on the input example")
    else:
        want = np.asarray(model.predict(x), dtype=np.float64).ravel()
        got = np.asarray(outputs[0], dtype=np.float64).ravel()
    if got.shape != want.shape:
        answer(False, reason=f"the ONNX conversion answers shape {got.shape}, the model {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not diff <= TOLERANCE:
        answer(False, reason=f"the ONNX conversion answers differently on the input example: "
                             f"max |difference| {diff:.3g} > {TOLERANCE:g}")
    with open(out, "wb") as f:
        f.write(converted.SerializeToString())
    answer(True, estimator=type(model).__name__, rows_checked=int(x.shape[0]), max_abs_difference=diff,
           tolerance=TOLERANCE, sklearn=sklearn.__version__, skl2onnx=skl2onnx.__version__,
           onnxruntime=onnxruntime.__version__)


if __name__ == "__main__":
    main()
