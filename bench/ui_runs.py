"""The web UI's runs table at scale: how long one page of an experiment's runs takes to answer.

Starts `mltrail server` (auth off, SQLite store, under bench/.work/), creates one experiment and
--runs runs (default 100,000) through the MLflow REST API with plain `requests` (8 threads, one
Session each; per run `runs/create`, then `runs/log-batch` with 10 metrics m0..m9, 5 params p0..p4
and 2 tags; p0 takes one of 10 values, so `params.p0 = 'a'` matches ~10% of runs), then times,
sequentially on loopback, 20 requests of each shape after 2 warm-up ones:

  * the UI's runs table, `GET /ui/experiments/{id}` (50 runs a page): the default order (newest
    first), `order_by=metrics.`m3` DESC`, `filter=metrics.m1 > 0.5`, `filter=params.p0 = 'a'`, and a
    deep page (the 20th, reached by following the pages' `rel="next"` links);
  * for comparison, the call the MLflow UI makes to draw its runs table, `POST
    /api/2.0/mlflow/runs/search` with max_results 100 and `attributes.start_time DESC` (and the same
    metric order and filters, and its 20th page by `next_page_token`), on the same server.

Times are wall time in the client around the whole request (the body read included): server time
plus loopback plus `requests`' own overhead (a fraction of a millisecond). The bar checked is
≤ 200 ms server time per page of a 100,000-run experiment; each UI page is marked against it.

With --peer (on by default; --no-peer to skip), the real MLflow tracking server (`mlflow server
--workers 1`, SQLite) and a fresh mltrail server each get --peer-runs runs (default 10,000; MLflow
loads slowly, and its load stops at --peer-load-timeout, the mltrail side then getting as many),
and the MLflow UI's call (`POST /ajax-api/2.0/mlflow/runs/search`, max_results 100) on MLflow is
timed against mltrail's UI page and its `runs/search`, as ratios (MLflow time / mltrail time).

With --diagnose, the main server also answers more shapes (filters matching 1% to 99% of runs,
other orders, runs/search at page sizes 1 to 1000), the planner's statistics and each main
shape's query plan are printed (the SQL copied from crates/mltrail-store/src/search.rs, run in
Python's SQLite), and the main shapes are timed again after restarting the server on the same
database (a start refreshes the planner's statistics).

Before each load and each timing phase the script waits (up to 10 minutes) until no `cargo` or
`rustc` runs on the machine, so that a build does not disturb the numbers. Every server it starts
is stopped, also on error, and its work folder is removed at the end.

    .venv/bin/python bench/ui_runs.py --binary /tmp/mltrail-ui-bench
    .venv/bin/python bench/ui_runs.py --runs 100000 --no-peer --diagnose
    .venv/bin/python bench/ui_runs.py --runs 2000 --peer-runs 500        # a quick check of the script
"""
import argparse
import datetime
import html
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import requests

import serving

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BAR_MS = 200.0
P0_VALUES = "abcdefghij"  # p0 = 'a' matches ~10% of runs
NEXT = re.compile(r'<a\s+href="([^"]*)"\s+rel="next"')
ROWS = re.compile(r"(\d+) runs on this page")


def wait_quiet(what, limit=600):
    """Wait until no cargo or rustc runs (another engineer compiles on this machine at times)."""
    start = time.time()
    said = False
    while time.time() - start < limit:
        busy = [name for name, flag in (("cargo", "-x"), ("rustc", None))
                if subprocess.run(["pgrep", *([flag] if flag else []), name], capture_output=True).returncode == 0]
        if not busy:
            if said:
                print(f"  ... quiet after {time.time() - start:.0f} s", flush=True)
            return
        if not said:
            print(f"  waiting for {'/'.join(busy)} to finish before {what} ...", flush=True)
            said = True
        time.sleep(5)
    print(f"  WARNING: cargo/rustc still running after {limit} s; measuring {what} anyway", flush=True)


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {model}"


# ------------------------------------------------------------------------------------------------
# Loading

def load_runs(base, api, experiment_id, n, threads, deadline=None, label="", seed=0):
    """Creates n runs in experiment_id, each with 10 metrics, 5 params and 2 tags. Returns the
    count created and the seconds it took. Stops early (returning fewer) at `deadline`."""
    local = threading.local()
    lock = threading.Lock()
    done = [0]
    errors = []
    stop = threading.Event()
    t0_ms = int(time.time() * 1000) - n  # start times distinct and increasing with the run's index
    step = max(1, n // 10)
    t0 = time.perf_counter()

    def post(path, body):
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        for attempt in range(3):
            try:
                r = s.post(f"{base}{api}/{path}", json=body, timeout=120)
                if r.status_code == 200:
                    return r.json()
                err = f"{path}: HTTP {r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                err = f"{path}: {e!r}"
            with lock:
                errors.append(err)
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(err)

    def one(i):
        rnd = random.Random(seed * 1_000_003 + i)
        ts = t0_ms + i
        run = post("runs/create", {"experiment_id": experiment_id, "run_name": f"run-{i}", "start_time": ts})
        run_id = run["run"]["info"]["run_id"]
        post("runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": f"m{k}", "value": rnd.random(), "timestamp": ts, "step": 0} for k in range(10)],
            "params": [{"key": "p0", "value": rnd.choice(P0_VALUES)}]
                      + [{"key": f"p{k}", "value": f"v{rnd.randrange(1000)}"} for k in range(1, 5)],
            "tags": [{"key": "team", "value": rnd.choice(["red", "green", "blue"])},
                     {"key": "note", "value": f"bench run {i}"}],
        })

    def worker(t):
        try:
            for i in range(t, n, threads):
                if stop.is_set() or (deadline and time.time() > deadline):
                    return
                one(i)
                with lock:
                    done[0] += 1
                    d = done[0]
                if d % step == 0:
                    el = time.perf_counter() - t0
                    print(f"  {label}{d:>7}/{n} runs ({100 * d // n:3d}%) {el:7.1f} s, {d / el:7.1f} runs/s"
                          f", {len(errors)} retried requests", flush=True)
        except Exception as e:  # one request failed three times: stop all threads
            with lock:
                errors.append(f"worker {t} stopped: {e}")
            stop.set()

    ts_ = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in ts_:
        t.start()
    for t in ts_:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        print(f"  {label}{len(errors)} failed requests (retried), first: {errors[0]}", flush=True)
    if stop.is_set():
        raise RuntimeError(f"{label}loading stopped: {errors[-1]}")
    return done[0], seconds


def create_experiment(base, api, name):
    r = requests.post(f"{base}{api}/experiments/create", json={"name": name}, timeout=60)
    r.raise_for_status()
    return r.json()["experiment_id"]


# ------------------------------------------------------------------------------------------------
# Timing

def timed(session, method, url, body=None, n=20, warmup=2, check=None):
    """Median and p95 wall ms of n sequential requests after `warmup` ones; size of the answer in KB."""
    times = []
    size = 0
    for k in range(warmup + n):
        t = time.perf_counter()
        r = session.request(method, url, json=body, timeout=300)
        content = r.content
        ms = (time.perf_counter() - t) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"{method} {url}: HTTP {r.status_code} {r.text[:300]}")
        if k == 0 and check:
            check(r)
        if k >= warmup:
            times.append(ms)
        size = len(content)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return {"median": statistics.median(times), "p95": p95, "kb": size / 1024, "min": times[0]}


def ui_rows(r):
    m = ROWS.search(r.text)
    return int(m.group(1)) if m else "?"


def ui_next(session, url):
    r = session.get(url, timeout=300)
    r.raise_for_status()
    m = NEXT.search(r.text)
    return urllib.parse.urljoin(url, html.unescape(m.group(1))) if m else None


def deep_ui_url(session, first_url, page):
    url = first_url
    for _ in range(page - 1):
        url = ui_next(session, url)
        if url is None:
            return None
    return url


def deep_search_token(session, url, body, page):
    token = None
    for _ in range(page - 1):
        r = session.post(url, json=dict(body, **({"page_token": token} if token else {})), timeout=300)
        r.raise_for_status()
        token = r.json().get("next_page_token")
        if not token:
            return None
    return token


def q(s):
    return urllib.parse.quote(s, safe="")


SHAPES = [  # (name, UI query string, runs/search filter, runs/search order_by)
    ("default order", "", "", ["attributes.start_time DESC"]),
    ("order m3 DESC", "?order_by=" + q("metrics.`m3` DESC"), "", ["metrics.`m3` DESC"]),
    ("filter m1 > 0.5", "?filter=" + q("metrics.m1 > 0.5"), "metrics.m1 > 0.5", ["attributes.start_time DESC"]),
    ("filter p0 = 'a'", "?filter=" + q("params.p0 = 'a'"), "params.p0 = 'a'", ["attributes.start_time DESC"]),
]


def search_body(experiment_id, flt, order):
    body = {"experiment_ids": [experiment_id], "max_results": 100, "order_by": order}
    if flt:
        body["filter"] = flt
    return body


def print_row(label, r, bar=False, extra=""):
    mark = ""
    if bar:
        mark = "  meets <=200 ms" if r["p95"] <= BAR_MS else ("  MEDIAN ONLY <=200 ms" if r["median"] <= BAR_MS else "  MISSES 200 ms")
    print(f"  {label:<44} median {r['median']:8.1f} ms  p95 {r['p95']:8.1f} ms  {r['kb']:8.1f} KB{extra}{mark}", flush=True)


def measure_ui(base, experiment_id, n, warmup, deep_page, results, prefix="mltrail UI "):
    s = requests.Session()
    first = f"{base}/ui/experiments/{experiment_id}"
    for name, qs, _, _ in SHAPES:
        rows = []
        r = timed(s, "GET", first + qs, n=n, warmup=warmup, check=lambda resp: rows.append(ui_rows(resp)))
        results[prefix + name] = r
        print_row(prefix + name, r, bar=True, extra=f"  ({rows[0]} rows)")
    url = deep_ui_url(s, first, deep_page)
    if url is None:
        print(f"  {prefix}: fewer than {deep_page} pages; no deep page", flush=True)
        return
    rows = []
    r = timed(s, "GET", url, n=n, warmup=warmup, check=lambda resp: rows.append(ui_rows(resp)))
    results[prefix + f"page {deep_page} (rel=next)"] = r
    print_row(prefix + f"page {deep_page} (rel=next)", r, bar=True, extra=f"  ({rows[0]} rows)")


def measure_search(base, api, experiment_id, n, warmup, deep_page, results, prefix):
    s = requests.Session()
    url = f"{base}{api}/runs/search"
    for name, _, flt, order in SHAPES:
        got = []
        body = search_body(experiment_id, flt, order)
        r = timed(s, "POST", url, body, n=n, warmup=warmup, check=lambda resp: got.append(len(resp.json().get("runs", []))))
        results[prefix + name] = r
        print_row(prefix + name, r, extra=f"  ({got[0]} runs)")
    if deep_page:
        body = search_body(experiment_id, "", ["attributes.start_time DESC"])
        token = deep_search_token(s, url, body, deep_page)
        if token:
            got = []
            r = timed(s, "POST", url, dict(body, page_token=token), n=n, warmup=warmup,
                      check=lambda resp: got.append(len(resp.json().get("runs", []))))
            results[prefix + f"page {deep_page} (page_token)"] = r
            print_row(prefix + f"page {deep_page} (page_token)", r, extra=f"  ({got[0]} runs)")


# ------------------------------------------------------------------------------------------------
# --diagnose: where a slow page's time goes

# The SQL crates/mltrail-store/src/search.rs builds for the shapes above (a copy, for EXPLAIN and
# for timing the query alone in Python's own SQLite, which is not the server's build).
SQL_HEAD = "SELECT r.* FROM runs r {join} WHERE r.experiment_id IN (?) AND r.lifecycle_stage IN ('active') ORDER BY {order} LIMIT ? OFFSET 0"
SQL_SHAPES = [
    ("default order", "", "r.start_time DESC, r.run_uuid ASC", []),
    ("order m3 DESC", "LEFT JOIN latest_metrics o0 ON o0.run_uuid = r.run_uuid AND o0.key = ?",
     "CASE WHEN o0.value IS NULL THEN 1 ELSE 0 END, o0.value DESC, r.start_time DESC, r.run_uuid ASC", ["m3"]),
    ("filter m1 > 0.5", "JOIN latest_metrics f0 ON f0.run_uuid = r.run_uuid AND f0.key = ? AND f0.value > ?",
     "r.start_time DESC, r.run_uuid ASC", ["m1", 0.5]),
    ("filter p0 = 'a'", "JOIN params f0 ON f0.run_uuid = r.run_uuid AND f0.key = ? AND f0.value = ?",
     "r.start_time DESC, r.run_uuid ASC", ["p0", "a"]),
]


def explain(db, experiment_id, n=5):
    """Planner statistics, each shape's query plan, and the query alone timed in Python's SQLite."""
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        try:
            stats = con.execute("SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl IN "
                                "('runs', 'latest_metrics', 'params') ORDER BY tbl, idx").fetchall()
        except sqlite3.OperationalError:
            stats = []
        print("  sqlite_stat1 (planner statistics the server's ANALYZE left): "
              + ("; ".join(f"{i or t}={st}" for t, i, st in stats) or "none"), flush=True)
        for name, join, order, binds in SQL_SHAPES:
            sql = SQL_HEAD.format(join=join, order=order)
            args = [*binds, int(experiment_id), 51]
            plan = " | ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql, args))
            times = []
            for _ in range(n):
                t = time.perf_counter()
                con.execute(sql, args).fetchall()
                times.append((time.perf_counter() - t) * 1000)
            print(f"    {name:<18} SQL alone (sqlite {sqlite3.sqlite_version}) median {statistics.median(times):7.1f} ms;"
                  f" plan: {plan}", flush=True)
    finally:
        con.close()


DIAG_UI = [  # how a page's time grows with what the filter matches and what it orders by
    ("filter m1 > 0.99 (1%)", "?filter=" + q("metrics.m1 > 0.99")),
    ("filter m1 > 0.9 (10%)", "?filter=" + q("metrics.m1 > 0.9")),
    ("filter m1 > 0.5 (50%)", "?filter=" + q("metrics.m1 > 0.5")),
    ("filter m1 > 0.01 (99%)", "?filter=" + q("metrics.m1 > 0.01")),
    ("filter m1 < 0.1 (10%)", "?filter=" + q("metrics.m1 < 0.1")),
    ("filter p0 != 'a' (90%)", "?filter=" + q("params.p0 != 'a'")),
    ("filter tags.team = 'red' (33%)", "?filter=" + q("tags.team = 'red'")),
    ("filter start_time > 0 (100%)", "?filter=" + q("attributes.start_time > 0")),
    ("order m3 ASC", "?order_by=" + q("metrics.`m3` ASC")),
    ("order p1 DESC", "?order_by=" + q("params.`p1` DESC")),
    ("order run_name ASC", "?order_by=" + q("attributes.run_name ASC")),
    ("order start_time ASC", "?order_by=" + q("attributes.start_time ASC")),
    ("filter m1 > 0.5 + order m1 DESC", "?filter=" + q("metrics.m1 > 0.5") + "&order_by=" + q("metrics.`m1` DESC")),
    ("filter m1 > 0.9 + order m3 DESC", "?filter=" + q("metrics.m1 > 0.9") + "&order_by=" + q("metrics.`m3` DESC")),
]


def diagnose(base, api, experiment_id, db, n, results):
    s = requests.Session()
    first = f"{base}/ui/experiments/{experiment_id}"
    print(f"\n--diagnose: other shapes of the UI page ({n} requests each after 1 warm-up):", flush=True)
    for name, qs in DIAG_UI:
        r = timed(s, "GET", first + qs, n=n, warmup=1)
        results["diag UI " + name] = r
        print_row("UI " + name, r)
    print("  runs/search order m3 DESC by page size (the sort's cost against what it returns):", flush=True)
    for size in (1, 10, 50, 100, 1000):
        body = {"experiment_ids": [experiment_id], "max_results": size, "order_by": ["metrics.`m3` DESC"]}
        r = timed(s, "POST", f"{base}{api}/runs/search", body, n=n, warmup=1)
        results[f"diag runs/search order m3 max_results {size}"] = r
        print_row(f"runs/search order m3, max_results {size}", r)
    for size in (1, 100, 1000):
        body = {"experiment_ids": [experiment_id], "max_results": size, "filter": "metrics.m1 > 0.5"}
        r = timed(s, "POST", f"{base}{api}/runs/search", body, n=n, warmup=1)
        results[f"diag runs/search filter m1 max_results {size}"] = r
        print_row(f"runs/search filter m1 > 0.5, max_results {size}", r)
    explain(db, experiment_id)


# ------------------------------------------------------------------------------------------------

def start_mltrail(binary, work, name, env):
    port = serving.free_port()
    url = f"http://127.0.0.1:{port}"
    d = work / name
    d.mkdir(exist_ok=True)  # exists when --diagnose restarts a server on its database
    proc = serving.start([binary, "server", "--port", str(port), "--backend-store-uri", f"sqlite:///{d}/m.db",
                          "--artifacts-destination", str(d / "art")], url, env, "/health", work)
    return proc, url, d


def db_mib(d, name):
    return sum(p.stat().st_size for p in d.glob(name + "*")) / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "mltrail"))
    ap.add_argument("--runs", type=int, default=100_000, help="runs in the main experiment")
    ap.add_argument("--threads", type=int, default=8, help="loading threads (one requests.Session each)")
    ap.add_argument("--requests", type=int, default=20, help="timed requests per shape")
    ap.add_argument("--warmup", type=int, default=2, help="untimed requests before them")
    ap.add_argument("--deep-page", type=int, default=20, help="which page the deep page is")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also compare with mlflow server")
    ap.add_argument("--peer-runs", type=int, default=10_000)
    ap.add_argument("--peer-load-timeout", type=int, default=1800, help="seconds; MLflow's load stops there")
    ap.add_argument("--diagnose", action="store_true",
                    help="after the main timing: more query shapes, the planner's statistics and plans, "
                         "and the main shapes again after a restart of the server on the same database")
    args = ap.parse_args()
    # A SIGTERM (or a hang-up) ends the run through the `finally` below: servers stopped, folder removed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit("stopped by signal"))
    binary = str(Path(args.binary).resolve())
    if not os.access(binary, os.X_OK):
        ap.error(f"no executable at {binary}")
    (HERE / ".work").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ui-runs-", dir=HERE / ".work"))
    env = dict(os.environ, MLTRAIL_LOG="warn")
    api = "/api/2.0/mlflow"
    procs = []
    results, peer = {}, {}
    load_info = {}
    started = datetime.datetime.now().astimezone()
    print(f"mltrail UI runs-table benchmark, {started:%Y-%m-%d %H:%M %Z}; {machine()}", flush=True)
    print(f"binary {binary}", flush=True)
    try:
        # ---- 1-4: one mltrail server with --runs runs
        proc, base, d = start_mltrail(binary, work, "main", env)
        procs.append(proc)
        eid = create_experiment(base, api, "ui-bench")
        wait_quiet("loading")
        print(f"loading {args.runs} runs into mltrail ({args.threads} threads) ...", flush=True)
        done, secs = load_runs(base, api, eid, args.runs, args.threads, label="mltrail ")
        load_info["main"] = (done, secs)
        print(f"loaded {done} runs in {secs:.1f} s: {done / secs:.1f} runs/s ({2 * done / secs:.0f} req/s); "
              f"database {db_mib(d, 'm.db'):.0f} MiB, server RSS {serving.rss_mib(proc.pid):.0f} MiB", flush=True)

        wait_quiet("timing the UI")
        print(f"\nmltrail UI, experiment of {done} runs ({args.requests} requests each after {args.warmup} warm-up):", flush=True)
        measure_ui(base, eid, args.requests, args.warmup, args.deep_page, results)
        wait_quiet("timing runs/search")
        print(f"\nmltrail {api}/runs/search, max_results 100 (the MLflow UI's call):", flush=True)
        measure_search(base, api, eid, args.requests, args.warmup, args.deep_page, results, "mltrail runs/search ")
        print(f"  server RSS after timing {serving.rss_mib(proc.pid):.0f} MiB", flush=True)
        if args.diagnose:
            wait_quiet("diagnosing")
            diagnose(base, api, eid, d / "m.db", max(5, args.requests // 2), results)
            # A server starting on a filled database runs `PRAGMA optimize` (a bounded ANALYZE)
            # first: the planner's statistics then describe 100k runs, not the empty database.
            serving.stop(procs.pop())
            proc, base, d = start_mltrail(binary, work, "main", env)
            procs.append(proc)
            wait_quiet("timing after a restart")
            print("\nthe same database after a restart of the server:", flush=True)
            after = {}
            measure_ui(base, eid, args.requests, args.warmup, args.deep_page, after, prefix="restarted UI ")
            results.update(after)
            explain(d / "m.db", eid)
        serving.stop(procs.pop())

        # ---- 5: mlflow server against a fresh mltrail server, --peer-runs runs each
        if args.peer:
            mlflow_url = None
            try:
                port = serving.free_port()
                mlflow_url = f"http://127.0.0.1:{port}"
                mlflow_bin = str(Path(serving.VENV_BIN) / "mlflow")
                procs.append(serving.start([mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
                                            "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                                            "--artifacts-destination", str(work / "mlart"), "--workers", "1"],
                                           mlflow_url, env, "/health", work))
            except Exception as e:
                log = work / f"{port}.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                print(f"\nmlflow server could not start ({e}); skipping the peer comparison. Its log ends:\n{tail}", flush=True)
                mlflow_url = None
            if mlflow_url:
                m_eid = create_experiment(mlflow_url, api, "ui-bench")
                wait_quiet("loading mlflow")
                print(f"\nloading {args.peer_runs} runs into mlflow server --workers 1 (timeout {args.peer_load_timeout} s) ...", flush=True)
                m_done, m_secs = load_runs(mlflow_url, api, m_eid, args.peer_runs, args.threads,
                                           deadline=time.time() + args.peer_load_timeout, label="mlflow ")
                load_info["mlflow"] = (m_done, m_secs)
                print(f"loaded {m_done} runs into mlflow in {m_secs:.1f} s: {m_done / m_secs:.1f} runs/s"
                      + ("" if m_done == args.peer_runs else f"  (STOPPED at the timeout; mltrail gets {m_done} too)"), flush=True)
                proc, base2, d2 = start_mltrail(binary, work, "peer", env)
                procs.append(proc)
                t_eid = create_experiment(base2, api, "ui-bench")
                wait_quiet("loading mltrail (peer)")
                t_done, t_secs = load_runs(base2, api, t_eid, m_done, args.threads, label="mltrail ")
                load_info["peer"] = (t_done, t_secs)
                print(f"loaded {t_done} runs into mltrail in {t_secs:.1f} s: {t_done / t_secs:.1f} runs/s", flush=True)

                wait_quiet("timing mlflow")
                print(f"\nmlflow /ajax-api/2.0/mlflow/runs/search, experiment of {m_done} runs (the MLflow UI's call):", flush=True)
                measure_search(mlflow_url, "/ajax-api/2.0/mlflow", m_eid, args.requests, args.warmup, 0, peer, "mlflow ajax runs/search ")
                wait_quiet("timing mltrail (peer)")
                print(f"mltrail, experiment of {t_done} runs:", flush=True)
                measure_ui(base2, t_eid, args.requests, args.warmup, args.deep_page, peer, prefix="mltrail UI ")
                measure_search(base2, api, t_eid, args.requests, args.warmup, 0, peer, "mltrail runs/search ")
                for p in procs:
                    serving.stop(p)
                procs.clear()

        # ---- 6: summary
        print("\n" + "=" * 100)
        print(f"SUMMARY  {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  {machine()}")
        print(f"binary {binary}")
        done, secs = load_info["main"]
        print(f"load: {done} runs (10 metrics, 5 params, 2 tags each) in {secs:.0f} s = {done / secs:.0f} runs/s, {args.threads} threads")
        print(f"\n{done} runs; wall ms on loopback, {args.requests} sequential requests after {args.warmup} warm-up; bar: <= {BAR_MS:.0f} ms")
        print(f"  {'page':<44} {'median':>8} {'p95':>8} {'KB':>8}  bar (p95)")
        for k, r in results.items():
            bar = ("yes" if r["p95"] <= BAR_MS else "NO") if k.startswith(("mltrail UI", "restarted UI")) else "-"
            print(f"  {k:<44} {r['median']:8.1f} {r['p95']:8.1f} {r['kb']:8.1f}  {bar}")
        if peer:
            m_done = load_info["mlflow"][0]
            print(f"\npeer, {m_done} runs each: MLflow UI's runs/search on mlflow vs mltrail (ratio = mlflow median / mltrail median)")
            print(f"  {'shape':<18} {'mlflow':>9} {'mltrail UI':>11} {'ratio':>7} {'mltrail search':>15} {'ratio':>7}")
            for name, *_ in SHAPES:
                m = peer.get("mlflow ajax runs/search " + name)
                u = peer.get("mltrail UI " + name)
                s = peer.get("mltrail runs/search " + name)
                if m and u and s:
                    print(f"  {name:<18} {m['median']:7.1f}ms {u['median']:9.1f}ms {m['median'] / u['median']:6.1f}x"
                          f" {s['median']:13.1f}ms {m['median'] / s['median']:6.1f}x")
            print(f"  mlflow load: {m_done} runs in {load_info['mlflow'][1]:.0f} s; mltrail: {load_info['peer'][1]:.0f} s")
    finally:
        for p in procs:
            serving.stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
