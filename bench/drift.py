"""`mltrail drift` against Evidently's DataDriftPreset on the same CSV pairs, in one run.

Wall time and peak resident memory of each whole process (reading the CSVs included) come from
GNU time. The verdicts (per column and for the dataset) are compared.

With `--baseline OTHER_BINARY` (an earlier build of mltrail), both builds run on the same files
in the same run, alternating, `--repeat` times each (median kept), and a before/after line is
printed: how a change on the drift path is checked for a regression.
"""
import statistics
import argparse
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "tests" / "golden"


def measured(cmd):
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", out.stderr)
    h, m, s = (float(wall.group(1) or 0), float(wall.group(2)), float(wall.group(3)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    return {"seconds": h * 3600 + m * 60 + s, "peak_rss_mib": rss / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mltrail", required=True)
    ap.add_argument("--evidently-python", required=True)
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--baseline", help="an earlier mltrail binary to measure beside --mltrail (before/after)")
    ap.add_argument("--repeat", type=int, help="runs of each mltrail build, median kept (default 1, or 5 with --baseline)")
    args = ap.parse_args()
    repeat = args.repeat or (5 if args.baseline else 1)
    work = HERE / ".work" / "drift"
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": []}
    for rows in [int(r) for r in args.rows.split(",")]:
        data = work / f"rows-{rows}"
        if not (data / "current.csv").exists():
            subprocess.run([args.evidently_python, str(GOLDEN / "gen_data.py"), "--rows", str(rows), "--out", str(data)], check=True)
        ref, cur = str(data / "reference.csv"), str(data / "current.csv")
        ev_out, mt_out = data / "evidently.json", data / "mltrail.json"
        ev = measured([args.evidently_python, str(HERE / "drift_evidently.py"), ref, cur, str(ev_out)])
        builds = {"mltrail": args.mltrail} | ({"baseline": args.baseline} if args.baseline else {})
        samples = {name: [] for name in builds}
        for i in range(repeat):
            # Turns alternate which build goes first, so neither always follows Evidently.
            order = list(builds.items()) if i % 2 == 0 else list(reversed(builds.items()))
            for name, binary in order:
                out = mt_out if name == "mltrail" else data / "baseline.json"
                samples[name].append(measured([binary, "drift", ref, cur, "--exclude", "label", "--json", str(out)]))

        def median(runs):
            return {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_rss_mib")}

        mt = median(samples["mltrail"])
        e, m = json.loads(ev_out.read_text()), json.loads(mt_out.read_text())
        ours = {c["column"]: c["drifted"] for c in m["columns"]}
        same = ours == e["drifted"] and m["dataset"]["drift"] == e["drift"] and m["dataset"]["drifted_columns"] == e["drifted_columns"]
        run = {"rows": rows, "evidently": ev, "mltrail": mt, "speedup": ev["seconds"] / mt["seconds"],
               "memory_ratio": mt["peak_rss_mib"] / ev["peak_rss_mib"], "same_verdicts": same,
               "drifted": sorted(c for c, d in ours.items() if d), "repeat": repeat}
        if args.baseline:
            base = median(samples["baseline"])
            theirs = json.loads((data / "baseline.json").read_text())
            run["baseline"] = base | {"same_output": theirs["columns"] == m["columns"]}
            print(f"{rows:>9,} rows, before/after (median of {repeat}): {base['seconds']:.2f} s -> {mt['seconds']:.2f} s, "
                  f"{base['peak_rss_mib']:.0f} -> {mt['peak_rss_mib']:.0f} MiB; same per-column output: {run['baseline']['same_output']}",
                  flush=True)
        results["runs"].append(run)
        print(f"{rows:>9,} rows x 13 columns: Evidently {ev['seconds']:.2f} s, {ev['peak_rss_mib']:.0f} MiB | "
              f"mltrail {mt['seconds']:.2f} s, {mt['peak_rss_mib']:.0f} MiB | {run['speedup']:.1f}x faster, "
              f"{1 / run['memory_ratio']:.1f}x less memory | same verdicts: {same} ({', '.join(run['drifted'])})", flush=True)
    out = HERE / "results" / "drift.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
