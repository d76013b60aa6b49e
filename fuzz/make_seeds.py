"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/ (committed; the
corpora cargo fuzz grows from them live in fuzz/corpus/, minimized before they are committed).
Run from the repository root with the project's venv: .venv/bin/python fuzz/make_seeds.py
"""
import io
import json
import pathlib
import struct
import uuid
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# filter: MLflow's search grammar.
for i, text in enumerate([
    "metrics.acc > 0.9",
    "params.lr = '0.1' AND tags.`mlflow.user` LIKE 'a%'",
    "attributes.status IN ('RUNNING', 'FINISHED')",
    "tags.x IS NULL",
    "tags.x IS NOT NULL and metrics.`loss val` <= -1e-3",
    "name ILIKE '%churn%'",
    "datasets.name = 'train' AND datasets.digest != 'x'",
    "attributes.run_name NOT IN (\"a\", \"b\")",
    "metrics.acc DESC",
    "attribute.start_time ASC",
]):
    write("filter", f"seed{i}", text)

# table_ingest: first byte 0 = CSV, 1 = Parquet.
csv_text = (ROOT / "tests/golden/data/reference.csv").read_text().splitlines()[:40]
write("table_ingest", "reference_head.csv", b"\x00" + "\n".join(csv_text).encode() + b"\n")
write("table_ingest", "quoted.csv", b"\x00a,b,c\n\"x,1\",,3\n\"y\"\"z\",2.5,\n")
table = pa.table({
    "income": pa.array([1.5, None, 3.25], pa.float64()),
    "age": pa.array([20, 31, None], pa.int64()),
    "region": pa.array(["north", None, "south"]),
    "flag": pa.array([True, False, None]),
    "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
})
buf = io.BytesIO()
pq.write_table(table, buf)
write("table_ingest", "small.parquet", b"\x01" + buf.getvalue())

# onnx_model: the committed fixture models.
for onnx in sorted((ROOT / "tests/fixtures/onnx").glob("*.onnx")):
    write("onnx_model", onnx.stem, onnx.read_bytes())

# scoring: [model pick, format, body...]; picks follow MODELS in scoring.rs (two per model).
rows6 = [[0.1, -0.2, 0.3, 1.5, 2.0, -1.0], [1, 2, 3, 4, 5, 6]]
bodies = {
    0: [
        (0, {"dataframe_split": {"columns": [f"f{i}" for i in range(6)], "data": rows6}}),
        (0, {"instances": rows6}),
        (0, {"inputs": rows6}),
        (0, {"dataframe_records": [{f"f{i}": v for i, v in enumerate(rows6[0])}]}),
        (1, "f0,f1,f2,f3,f4,f5\n0.1,0.2,,4,5,6\n"),
    ],
    2: [
        (0, {"dataframe_split": {"columns": ["region", "income", "age"], "data": [["north", 1000.5, 33], ["west", None, 40]]}}),
        (1, "region,income,age\nsouth,12.5,20\n"),
    ],
    4: [(0, {"instances": [[None, 1, "nan", 2, 3, 4]]}), (0, {"inputs": {"input": rows6}})],
}
n = 0
for pick, items in bodies.items():
    for fmt, body in items:
        data = body if isinstance(body, str) else json.dumps(body)
        write("scoring", f"seed{n}", bytes([pick, fmt]) + data.encode())
        write("scoring", f"seed{n}_named", bytes([pick + 1, fmt]) + data.encode())
        n += 1


# predlog_segments: framed (mode 1) and raw (mode 0) segments.
def record(kind, rid, extra):
    r = {"type": kind, "id": str(rid), "time_ms": 1, "latency_us": 5, "inputs": {"a": 1}, "outputs": {"p": 0.5}}
    r.update(extra)
    return json.dumps(r).encode()


ids = [uuid.UUID(int=(i + 1) * 0x0123456789ABCDEF) for i in range(4)]
payloads = [record("prediction", ids[0], {"deployment": "d", "model": "m", "version": "1"}),
            record("prediction", ids[1], {}),
            json.dumps({"type": "feedback", "prediction_id": str(ids[0]), "time_ms": 2, "label": 1}).encode()]
write("predlog_segments", "framed_one", b"\x01" + b"\x00".join(payloads))
write("predlog_segments", "framed_two_torn", b"\x07" + b"\x00".join(payloads[:2]) + b"SEG|" + payloads[2])


def frame(p):
    return struct.pack("<II", len(p), zlib.crc32(p)) + p


write("predlog_segments", "raw", b"\x00" + b"".join(frame(p) for p in payloads) + b"SEG|" + frame(payloads[0])[:-4])

# tracking_api: [route, method, suffix \n body]; route indexes follow ROUTES in tracking_api.rs.
ROUTES = ["experiments/create", "experiments/get", "experiments/get-by-name", "experiments/search",
          "experiments/update", "experiments/delete", "experiments/restore", "experiments/set-experiment-tag",
          "experiments/delete-experiment-tag", "runs/create", "runs/get", "runs/update", "runs/delete",
          "runs/restore", "runs/search", "runs/log-metric", "runs/log-parameter", "runs/set-tag",
          "runs/delete-tag", "runs/log-batch", "runs/log-inputs", "runs/outputs", "metrics/get-history",
          "registered-models/create", "registered-models/get", "registered-models/rename",
          "registered-models/update", "registered-models/delete", "registered-models/search",
          "registered-models/get-latest-versions", "registered-models/set-tag", "registered-models/delete-tag",
          "registered-models/alias", "model-versions/create", "model-versions/get", "model-versions/update",
          "model-versions/delete", "model-versions/search", "model-versions/set-tag", "model-versions/delete-tag",
          "model-versions/transition-stage", "model-versions/get-download-uri", "logged-models",
          "logged-models/search", "logged-models/", "artifacts", "datasets", "datasets/", "monitors",
          "monitors/", "alerts", "deployments", "deployments/events"]
POST, GET, PATCH, DELETE = 0, 1, 2, 3
requests = [
    ("experiments/create", POST, "", {"name": "fuzz", "tags": [{"key": "a", "value": "b"}]}),
    ("experiments/get", GET, "?experiment_id=0", None),
    ("experiments/search", POST, "", {"filter": "name LIKE 'f%'", "max_results": 10, "order_by": ["name DESC"]}),
    ("runs/create", POST, "", {"experiment_id": "0", "run_name": "r", "start_time": 1, "tags": []}),
    ("runs/search", POST, "", {"experiment_ids": ["0"], "filter": "metrics.acc > 0.5 AND params.lr = '0.1'",
                               "order_by": ["metrics.acc DESC"], "max_results": 5}),
    ("runs/log-metric", POST, "", {"run_id": "0" * 32, "key": "m", "value": 0.9333333333333333, "timestamp": 1, "step": 2}),
    ("runs/log-batch", POST, "", {"run_id": "0" * 32, "metrics": [{"key": "m", "value": 1e-300, "timestamp": 1, "step": 0}],
                                 "params": [{"key": "p", "value": "é" * 10}], "tags": [{"key": "t", "value": "v"}]}),
    ("metrics/get-history", GET, "?run_id=00000000000000000000000000000000&metric_key=m&max_results=10", None),
    ("registered-models/create", POST, "", {"name": "churn", "tags": [{"key": "k", "value": "v"}]}),
    ("registered-models/alias", POST, "", {"name": "churn", "alias": "prod", "version": "1"}),
    ("model-versions/create", POST, "", {"name": "churn", "source": "models:/m-1", "run_id": ""}),
    ("model-versions/search", GET, "?filter=name%3D%27churn%27&max_results=3", None),
    ("logged-models", POST, "", {"experiment_id": "0", "name": "m", "params": [{"key": "a", "value": "1"}]}),
    ("logged-models/", GET, "m-0123/tags/x", None),
    ("artifacts", GET, "/0/abc/../x.txt", None),
    ("datasets", GET, "", None),
    ("monitors", POST, "", {"name": "m", "deployment": "d", "reference": "ds@1", "window": "1h"}),
    ("deployments/events", POST, "", {"deployment": "d", "action": "swap", "version": "1"}),
]
for i, (route, method, suffix, body) in enumerate(requests):
    data = bytes([ROUTES.index(route), method]) + suffix.encode() + b"\n" + (json.dumps(body).encode() if body else b"")
    write("tracking_api", f"seed{i}", data)

# audit_verify: [mode, table, column, row, kind, value...].
for i, data in enumerate([bytes([0, 13, 3, 2, 2]) + b"changed", bytes([1, 11, 0, 0, 0]), bytes([1, 5, 0, 1, 0]),
                          bytes([0, 5, 2, 0, 1]) + struct.pack("<d", 0.25), bytes([2, 0, 0x10, 0, 0xff, 0, 0x20, 5, 0])]):
    write("audit_verify", f"seed{i}", data)

# model_files: [reader, file...]; readers follow READERS in model_files.rs (0 XGBoost UBJSON,
# 1 XGBoost JSON, 2 LightGBM text, 3 LightGBM skops). Small models of each kind, missing values
# in training so trees route them.
def model_file_seeds():
    import tempfile

    import lightgbm as lgb
    import mlflow.lightgbm
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 3))
    x[rng.random(120) < 0.1, 1] = np.nan
    binary = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(int)
    three = np.digitize(np.nan_to_num(x[:, 0]), [-0.5, 0.5])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for label, objective, y in [("binary", "binary:logistic", binary), ("multi", "multi:softprob", three),
                                    ("regression", "reg:squarederror", x[:, 2])]:
            model = xgb.train({"objective": objective, "max_depth": 2,
                               **({"num_class": 3} if label == "multi" else {})}, xgb.DMatrix(x, y), 3)
            for selector, suffix in [(0, "ubj"), (1, "json")]:
                model.save_model(tmp / f"m.{suffix}")
                write("model_files", f"xgboost-{label}.{suffix}", bytes([selector]) + (tmp / f"m.{suffix}").read_bytes())
        for label, params, y in [("binary", {"objective": "binary"}, binary),
                                 ("multi", {"objective": "multiclass", "num_class": 3}, three),
                                 ("regression", {"objective": "regression"}, x[:, 2])]:
            booster = lgb.train({**params, "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5}, lgb.Dataset(x, y), 3)
            write("model_files", f"lightgbm-{label}.lgb", b"\x02" + booster.model_to_string().encode())
        wrapper = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1).fit(x, np.array([2, 4, 6])[three])
        mlflow.lightgbm.save_model(wrapper, tmp / "skops")
        write("model_files", "lightgbm-classifier.skops", b"\x03" + (tmp / "skops" / "model.skops").read_bytes())


model_file_seeds()
