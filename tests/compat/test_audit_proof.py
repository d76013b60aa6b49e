"""An independent verifier of mltrail's audit proofs, written from docs/audit.md alone: the
event's chain hash from its JSON (RFC 8785 form, BLAKE3), the signed checkpoint's Ed25519
signature (C2SP signed note), the leaf (SHA-256(0x00 || chain hash)), and its RFC 9162 inclusion
path up to the checkpoint's root."""
import base64
import hashlib
import json
import os
import subprocess

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from test_serving import credit_model  # noqa: F401  (a fixture: the mlflow client logs the model)


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2."""
    assert index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def open_note(note, verifier_key):
    """The checkpoint's lines once its signature by `verifier_key` checks."""
    name, key_hash, key = verifier_key.split("+", 2)
    key = base64.b64decode(key, validate=True)
    assert key[0] == 1  # Ed25519
    assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == key_hash
    body, signatures = note.split("\n\n", 1)
    body += "\n"
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        signer, sig = line[2:].split(" ", 1)
        sig = base64.b64decode(sig, validate=True)
        if signer == name and sig[:4].hex() == key_hash:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], body.encode())
            return body.splitlines()
    raise AssertionError("no signature by that key")


def chain_hash(previous, event):
    """hash_n = BLAKE3(hash_{n-1} || JCS(event_n)); for these events Python's sorted, compact,
    non-ASCII-preserving JSON is JCS."""
    fields = {k: event[k] for k in ("seq", "time", "actor", "action", "entity_type", "entity_id", "state_digest")}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return blake3.blake3(previous + canonical.encode()).digest()


def test_an_outsider_checks_an_events_proof(server, client, unique, tmp_path):
    client.create_experiment(unique("proved"))
    env = dict(os.environ, MLTRAIL_AUDIT_SIGNING_KEY=str(tmp_path / "audit-key"))

    def mltrail(*args):
        out = subprocess.run([server["binary"], *args, "--backend-store-uri", server["backend"]],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    # The auditor's copy of the verifier key comes from its own call, not from the proofs.
    verifier_key = mltrail("audit", "verifier-key").strip()
    previous = bytes(32)
    size = None
    seq = 0
    while seq < min(24, size or 1):
        seq += 1
        proof = json.loads(mltrail("audit", "prove", str(seq)))
        event = proof["event"]
        assert event["seq"] == seq and proof["leaf_index"] == seq - 1
        # The chain link from the event's fields and the link before it.
        link = chain_hash(previous, event)
        assert link.hex() == event["hash"]
        previous = link
        origin, tree_size, root = open_note(proof["checkpoint"], verifier_key)[:3]
        assert origin == "mltrail-audit" and int(tree_size) == proof["tree_size"]
        size = size or proof["tree_size"]
        assert proof["tree_size"] >= size  # the log only grows
        root = base64.b64decode(root, validate=True)
        leaf = hashlib.sha256(b"\x00" + link).digest()
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        assert root_from_path(leaf, proof["leaf_index"], proof["tree_size"], path) == root
        # A changed link no longer reaches the signed root.
        bent = hashlib.sha256(b"\x00" + bytes(32)).digest()
        assert root_from_path(bent, proof["leaf_index"], proof["tree_size"], path) != root


def jcs(value):
    """RFC 8785 bytes, every number taken as the double it denotes (as JCS does)."""
    import rfc8785

    return rfc8785.dumps(json.loads(json.dumps(value), parse_int=float))


def test_an_outsider_checks_a_prediction_trace(server, credit_model, tmp_path, unique):
    """A prediction logged through the real mlflow client's model, served, archived and traced:
    every proof in `GET /api/v1/predictions/{id}/record` checked from docs/audit.md alone."""
    import requests
    from test_serving import archived_record, start_serve

    name, frame = credit_model
    deployment = unique("traced")
    proc, url = start_serve(server, f"{name}@production", tmp_path, "--deployment", deployment,
                            "--segment-seconds", "1", "--archive-interval-ms", "200")
    try:
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.head(3).values.tolist()}}
        answer = requests.post(f"{url}/api/v1/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["predictions"][2]["prediction_id"]
        trace = archived_record(server["url"], pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert trace["format"] == "mltrail.trace/1" and trace["prediction_id"] == pid
    audit = trace["audit"]
    size, root = audit["tree_size"], bytes.fromhex(audit["root"])

    # The root is signed (a file store keeps its key beside the database; PostgreSQL names none).
    if server["backend"].startswith("sqlite"):
        out = subprocess.run([server["binary"], "audit", "verifier-key", "--backend-store-uri", server["backend"]],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        origin, signed_size, signed_root = open_note(audit["checkpoint"], out.stdout.strip())[:3]
        assert int(signed_size) == size and base64.b64decode(signed_root) == root

    # Each event: its hash from its content and the hash before it; its leaf in the tree.
    events = {}
    for event in audit["events"]:
        link = chain_hash(bytes.fromhex(event["previous_hash"]), event)
        assert link.hex() == event["hash"]
        leaf = hashlib.sha256(b"\x00" + link).digest()
        path = [bytes.fromhex(p) for p in event["audit_path"]]
        assert root_from_path(leaf, event["leaf_index"], size, path) == root
        events[event["seq"]] = event

    # Entities whose state lives in the database: the state digests to its latest event's digest.
    kinds = {e["about"]: e for e in trace["entities"]}
    assert {"model_version", "logged model", "run", "run params", "run metrics"} <= {
        e["about"] for e in trace["entities"] if "state" in e}
    params = {p["key"]: p["value"] for p in trace["run"]["data"]["params"]}
    assert params["n_estimators"] == "50"
    for entity in trace["entities"]:
        if "state" in entity:
            latest = events[max(entity["events"])]
            # The digest covers the bytes of `state_json`, which must say what `state` says.
            assert json.loads(entity["state_json"]) == entity["state"], entity["about"]
            assert blake3.blake3(entity["state_json"].encode()).hexdigest() == latest["state_digest"], entity["about"]
    # The run mlflow logged the model in (MLflow 3 registers the logged model; its source run).
    run_id = trace["logged_model"]["info"]["source_run_id"]
    assert trace["run"]["info"]["run_id"] == run_id == kinds["run"]["entity_id"]
    assert trace["model_version"]["model_id"] == trace["logged_model"]["info"]["model_id"]

    # The record: its leaf from its RFC 8785 form, its path to the segment's root, the segment's
    # summary digest in an event of the trail.
    segment = trace["segment"]
    summary = segment["segment"]
    leaf = hashlib.sha256(b"\x00" + jcs(trace["prediction"])).digest()
    assert leaf.hex() == segment["leaf_hash"]
    path = [bytes.fromhex(p) for p in segment["audit_path"]]
    assert root_from_path(leaf, segment["leaf_index"], summary["records"], path) == bytes.fromhex(summary["root"])
    digest = blake3.blake3(jcs(summary)).hexdigest()
    recorded = [e for e in events.values()
                if e["entity_type"] == "prediction_segment" and e["entity_id"] == summary["artifact"]]
    assert recorded and recorded[0]["state_digest"] == digest and recorded[0]["action"] == "predictions.archive"
    assert summary["first_id"] <= pid <= summary["last_id"]
    # The model file that answered is the one the deployment's events name.
    deployed = {e["state_digest"] for e in events.values() if e["entity_type"] == "deployment"}
    assert trace["prediction"]["digest"] in deployed
    # A record changed by one bit of one number no longer reaches the root.
    bent = dict(trace["prediction"], latency_us=trace["prediction"]["latency_us"] + 1)
    bent_leaf = hashlib.sha256(b"\x00" + jcs(bent)).digest()
    assert root_from_path(bent_leaf, segment["leaf_index"], summary["records"], path) != bytes.fromhex(summary["root"])
