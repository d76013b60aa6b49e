"""A small MLflow history as a team would have one (experiments, runs with params, metric
histories, tags, datasets, logged models, registered models with versions, stages, aliases and
tags, deleted things), written through the real mlflow client, and a snapshot of everything the
client can read back, so the same history can be compared as served by MLflow and by mltrail."""
import math

EXPERIMENTS = ["churn", "fraud"]


def populate(tracking_uri):
    """Logs the history into the MLflow tracking server or store at `tracking_uri`; returns the
    ids it made (experiment ids, run ids, model names)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    made = {"experiments": [], "runs": [], "models": []}
    frame = pd.DataFrame({"income": [1.0, 2.5, 3.25, 0.5, 4.0, 1.5], "age": [30.0, 41.0, 52.0, 23.0, 60.0, 35.0]})
    label = np.array([0, 1, 1, 0, 1, 0])
    for e, name in enumerate(EXPERIMENTS):
        experiment_id = client.create_experiment(name, tags={"team": "core-ml", "purpose": f"{name} model"})
        made["experiments"].append(experiment_id)
        for r in range(3):
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{r}") as run:
                mlflow.log_params({"C": str(0.1 * (r + 1)), "solver": "lbfgs", "long": "x" * 600})
                mlflow.set_tags({"stage": "dev", "note": "ünïcödé ✓"})
                for step in range(25):
                    mlflow.log_metric("loss", 1.0 / (step + 1) + r * 1e-17, step=step, timestamp=1_700_000_000_000 + step)
                    mlflow.log_metric("auc", 0.5 + step / 100.0, step=step)
                mlflow.log_metric("odd", math.nan, step=0)
                mlflow.log_metric("odd", math.inf, step=1)
                mlflow.log_metric("odd", -math.inf, step=2)
                mlflow.log_metric("tiny", 5e-324)
                dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.parquet", name=f"{name}-train")
                mlflow.log_input(dataset, context="training")
                mlflow.log_text(f"notes of run {r}\n", "notes/readme.txt")
                if r == 0:
                    model = LogisticRegression().fit(frame, label)
                    info = mlflow.sklearn.log_model(model, name="model", input_example=frame.head(2))
                    mlflow.log_metric("val_auc", 0.75 + e / 10, step=0, model_id=info.model_id)
                    logged = info.model_uri
                made["runs"].append(run.info.run_id)
        model_name = f"{name}-classifier"
        client.create_registered_model(model_name, tags={"owner": "core-ml"}, description=f"the {name} model")
        # Registered from the logged model (MLflow 3's `models:/m-…` source), and from a run path.
        version = mlflow.register_model(logged, model_name, tags={"validated": "yes"})
        client.update_model_version(model_name, version.version, description="first version")
        client.create_model_version(model_name, f"runs:/{made['runs'][-2]}/notes", made["runs"][-2])
        client.transition_model_version_stage(model_name, version.version, "Staging")
        client.set_registered_model_alias(model_name, "champion", version.version)
        client.set_registered_model_alias(model_name, "challenger", "2")
        made["models"].append(model_name)
    # Deleted things are brought over as deleted.
    client.delete_run(made["runs"][1])
    gone = client.create_experiment("abandoned")
    with mlflow.start_run(experiment_id=gone):
        mlflow.log_param("p", "1")
    client.delete_experiment(gone)
    made["experiments"].append(gone)
    return made


def snapshot(client, made):
    """Everything the mlflow client reads back about the history `made`, in a form two servers
    can be compared on (values as their exact float bits)."""
    from mlflow.entities import ViewType

    def bits(v):
        return v.hex() if isinstance(v, float) else v

    out = {"experiments": {}, "runs": {}, "models": {}, "logged_models": {}}
    for experiment_id in made["experiments"] + ["0"]:
        e = client.get_experiment(experiment_id)
        out["experiments"][experiment_id] = {
            "name": e.name,
            "stage": e.lifecycle_stage,
            "tags": dict(e.tags),
            "created": e.creation_time,
        }
    runs = client.search_runs(made["experiments"], run_view_type=ViewType.ALL, max_results=1000)
    out["search_count"] = len(runs)
    for run_id in made["runs"]:
        run = client.get_run(run_id)
        # A history's order is not part of MLflow's API (a file store answers in the order lines
        # were appended, a database by its index).
        histories = {
            key: sorted((m.step, m.timestamp, bits(m.value)) for m in client.get_metric_history(run_id, key))
            for key in sorted(run.data.metrics)
        }
        out["runs"][run_id] = {
            "experiment_id": run.info.experiment_id,
            "name": run.info.run_name,
            "status": run.info.status,
            "start": run.info.start_time,
            "end": run.info.end_time,
            "user": run.info.user_id,
            "stage": run.info.lifecycle_stage,
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "latest": {k: bits(v) for k, v in run.data.metrics.items()},
            "histories": histories,
            "inputs": sorted(
                (d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source, d.dataset.schema,
                 d.dataset.profile, sorted((t.key, t.value) for t in d.tags))
                for d in run.inputs.dataset_inputs
            ),
            "artifacts": sorted(f.path for f in client.list_artifacts(run_id)),
            "notes": open(client.download_artifacts(run_id, "notes/readme.txt", dst_path=None)).read(),
        }
        outputs = run.outputs.model_outputs if run.outputs else []
        for o in outputs:
            m = client.get_logged_model(o.model_id)
            out["logged_models"][o.model_id] = {
                "name": m.name,
                "experiment_id": m.experiment_id,
                "source_run": m.source_run_id,
                "status": str(m.status),
                "params": dict(m.params),
                "tags": {k: v for k, v in m.tags.items()},
                "metrics": sorted((x.key, bits(x.value), x.step, x.run_id) for x in (m.metrics or [])),
                "model_type": m.model_type,
                "created": m.creation_timestamp,
            }
    for name in made["models"]:
        rm = client.get_registered_model(name)
        versions = {}
        for found in client.search_model_versions(f"name='{name}'"):
            # Searches answer without aliases; a version read by itself has them.
            v = client.get_model_version(name, found.version)
            versions[v.version] = {
                "stage": v.current_stage,
                "run_id": v.run_id,
                # MLflow answers None over a file store and "" over a database for no description.
                "description": v.description or "",
                "tags": dict(v.tags),
                "status": v.status,
                "created": v.creation_timestamp,
                "aliases": sorted(v.aliases),
                "model_id": getattr(v, "model_id", None),
            }
        out["models"][name] = {
            "description": rm.description,
            "tags": dict(rm.tags),
            "aliases": dict(sorted(rm.aliases.items())),
            "versions": versions,
            "created": rm.creation_timestamp,
        }
    return out
