"""`predictions export --since/--until` on a 10M-row prediction archive: the build before (A), which
downloads every archived file and filters afterwards, against the build after (B), which lists only
the day folders that can hold the range and downloads a file's footer and the row groups whose
`time_ms` statistics overlap it. Both talk to the same `mltrail server` (B) over loopback; the
outputs must hold the same records. `monitor check --since/--until` reads the archive through
the same code (`predictions::collect`).

    .venv/bin/python bench/archive_filter.py --a /tmp/mltrail-A --b target/release/mltrail

The archive (10 days x 5 files x 200,000 records, row groups of 16,384 as the archiver writes them,
~1.5 GB) is generated once into bench/.work/archive and reused.
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DAY_MS = 86_400_000
START_MS = 1_780_272_000_000  # 2026-06-01T00:00:00Z
ROWS_PER_GROUP = 16_384

TEXT, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
# crates/mltrail-serving/src/record.rs COLUMNS, in order.
SCHEMA = pa.schema([
    ("type", TEXT), ("id", TEXT), ("deployment", TEXT), ("model", TEXT), ("version", TEXT),
    ("digest", TEXT), ("arm", TEXT), ("policy", TEXT), ("time_ms", INT), ("latency_us", INT),
    ("inputs", TEXT), ("outputs", TEXT), ("label", TEXT), ("ranking", TEXT), ("reward", FLOAT),
    ("propensity", FLOAT), ("subject", TEXT), ("sealed", TEXT), ("sealed_inputs", TEXT),
    ("explanation", TEXT), ("experiment", TEXT), ("policy_version", TEXT), ("returned", BOOL),
    ("request_key", TEXT), ("shadow_of", TEXT), ("trace_id", TEXT), ("clicked", TEXT),
])


def uuid7(ms, rng):
    rand = rng.integers(0, 2**62, size=len(ms), dtype=np.int64)
    out = []
    for t, r in zip(ms.tolist(), rand.tolist()):
        value = (t << 80) | (0x7 << 76) | ((r >> 50) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
        out.append(str(uuid.UUID(int=value)))
    return out


def generate(root, days, files_per_day, rows_per_file):
    marker = root / "spec.json"
    spec = {"days": days, "files_per_day": files_per_day, "rows_per_file": rows_per_file}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(7)
    span = DAY_MS // files_per_day
    for d in range(days):
        day = time.strftime("%Y-%m-%d", time.gmtime((START_MS + d * DAY_MS) / 1000))
        folder = root / "artifacts" / "predictions" / "bench" / day
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_day):
            first = START_MS + d * DAY_MS + f * span
            ms = np.sort(first + rng.integers(0, span, size=rows_per_file))
            x = rng.normal(size=(rows_per_file, 4)).round(6)
            inputs = [f'{{"f0":{a},"f1":{b},"f2":{c},"f3":{e}}}' for a, b, c, e in x.tolist()]
            outputs = [f'{{"label":{int(a > 0)},"probability":{abs(a) / 4}}}' for a in x[:, 0].tolist()]
            n = rows_per_file
            table = pa.table({
                "type": ["prediction"] * n, "id": uuid7(ms, rng), "deployment": ["bench"] * n,
                "model": ["credit"] * n, "version": ["3"] * n, "digest": ["d" * 64] * n,
                "arm": pa.nulls(n, TEXT), "policy": pa.nulls(n, TEXT), "time_ms": ms,
                "latency_us": rng.integers(50, 500, size=n), "inputs": inputs, "outputs": outputs,
                "label": pa.nulls(n, TEXT), "ranking": pa.nulls(n, TEXT), "reward": pa.nulls(n, FLOAT),
                "propensity": pa.nulls(n, FLOAT), "subject": pa.nulls(n, TEXT), "sealed": pa.nulls(n, TEXT),
                "sealed_inputs": pa.nulls(n, TEXT), "explanation": pa.nulls(n, TEXT),
                "experiment": pa.nulls(n, TEXT), "policy_version": pa.nulls(n, TEXT),
                "returned": [True] * n, "request_key": pa.nulls(n, TEXT), "shadow_of": pa.nulls(n, TEXT),
                "trace_id": pa.nulls(n, TEXT), "clicked": pa.nulls(n, TEXT),
            }, schema=SCHEMA)
            pq.write_table(table, folder / f"r-{f:012}.parquet", row_group_size=ROWS_PER_GROUP,
                           compression="snappy")
        print(f"  generated {day}", flush=True)
    marker.write_text(json.dumps(spec))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_page_cache():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError:
        pass


def export(binary, url, args, out, until=None):
    """One export; `until` (ms) is counted from the output for a build without --until."""
    drop_page_cache()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([binary, "predictions", "export", "--deployment", "bench", "--tracking-uri", url,
                           "--format", "parquet", "--output", str(out), "--log-dir", str(out.parent / "none"),
                           *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{binary} failed: {done.stderr}")
    if until is None:
        rows = pq.ParquetFile(out).metadata.num_rows
    else:
        times = pq.read_table(out, columns=["time_ms"]).column("time_ms").to_numpy()
        rows = int((times <= until).sum())
    notes = [line for line in done.stderr.splitlines() if line.startswith("read ")]
    return {
        "seconds": seconds,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "rows": rows,
        "note": notes[-1] if notes else "",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the build before (reads whole files)")
    ap.add_argument("--b", required=True, help="the build after (and the server both talk to)")
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--files-per-day", type=int, default=5)
    ap.add_argument("--rows-per-file", type=int, default=200_000)
    ap.add_argument("--skip-a-whole", action="store_true", help="leave out A on the whole archive (minutes)")
    args = ap.parse_args()
    root = HERE / ".work" / "archive"
    generate(root, args.days, args.files_per_day, args.rows_per_file)
    total = args.days * args.files_per_day * args.rows_per_file
    size = sum(p.stat().st_size for p in (root / "artifacts").rglob("*.parquet"))
    print(f"archive: {total:,} records in {args.days * args.files_per_day} files, {size / 2**20:.0f} MiB")
    last_day = START_MS + (args.days - 1) * DAY_MS
    hour = last_day - 3 * DAY_MS + 10 * 3_600_000
    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    queries = [
        ("last day (--since)", ["--since", iso(last_day)]),
        ("one hour (--since --until)", ["--since", iso(hour), "--until", iso(hour + 3_600_000 - 1)]),
    ]
    ends = {"one hour (--since --until)": hour + 3_600_000 - 1000}
    if not args.skip_a_whole:
        queries.append(("whole archive", []))
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    port = free_port()
    server = subprocess.Popen(
        [args.b, "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
         f"sqlite:///{work}/m.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MLTRAIL_LOG": "warn"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        print(f"{'query':<28} {'A s':>8} {'B s':>8} {'A/B':>7} {'A cpu':>7} {'B cpu':>7} {'rows':>10}  B read")
        for name, flags in queries:
            if "--until" in flags:
                # The build before has no --until: it exports from --since on, and only the records
                # up to the end are counted (it downloads the whole archive either way).
                at = flags.index("--until")
                a = export(args.a, url, flags[:at] + flags[at + 2:], work / "a.parquet", until=ends[name])
            else:
                a = export(args.a, url, flags, work / "a.parquet")
            b = export(args.b, url, flags, work / "b.parquet")
            if a["rows"] != b["rows"]:
                raise SystemExit(f"{name}: A exported {a['rows']} records, B {b['rows']}")
            print(f"{name:<28} {a['seconds']:8.2f} {b['seconds']:8.2f} {a['seconds'] / b['seconds']:7.1f} "
                  f"{a['cpu']:7.1f} {b['cpu']:7.1f} {b['rows']:10,}  {b['note']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
