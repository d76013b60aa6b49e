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
