"""Benchmark ``npcf.data.read_ratings`` against a bare ``pandas.read_csv`` of the same file.

The file is a generated MovieLens-like ``ratings.csv`` the size of The Movies Dataset's
full one (26,024,289 rows, ~710 MB; see ``benchmarks/_gen_ratings.py``), cached in
``--workdir``. Each measurement runs in a fresh subprocess so that peak RSS
(``ru_maxrss`` read at the end of the child) belongs to one side only; the sides are
interleaved A B A B ... ``--repeats`` times and medians are reported. The file is
read once beforehand so both sides see a warm page cache.

Target: median time ratio npcf/pandas <= 1.5 and npcf peak RSS <= 3 GB.

    python benchmarks/data_read.py                 # full size, 3 repeats
    python benchmarks/data_read.py --rows 200000   # quick run

Prints a markdown table, writes ``benchmarks/results_data.json`` and regenerates the
section between ``<!-- data:start -->`` and ``<!-- data:end -->`` of
``benchmarks/RESULTS.md`` (other sections are left alone).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results_data.json"
START, END = "<!-- data:start -->", "<!-- data:end -->"
TARGET_RATIO = 1.5
TARGET_RSS = 3e9                # 3 GB (decimal; stricter than 3 GiB)

sys.path.insert(0, str(HERE))
import _gen_ratings  # noqa: E402  (after the sys.path insert)

# ------------------------------------------------------------------------------ child

CHILD = r"""
import json, resource, sys, time
side, path = sys.argv[1], sys.argv[2]
import numpy as np, pandas as pd
if side == "npcf":
    import npcf.data
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
t0, c0 = time.perf_counter(), cpu()
if side == "npcf":
    r = npcf.data.read_ratings(path)
    rows, extra = int(r.matrix.nnz), {"users": r.shape[0], "items": r.shape[1]}
else:
    df = pd.read_csv(path)
    rows, extra = len(df), {"dtypes": [str(t) for t in df.dtypes]}
seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
print(json.dumps(dict(side=side, seconds=seconds, cpu_seconds=cpu_seconds, peak_rss=rss, rows=rows, **extra)))
"""


def run_child(side: str, path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-c", CHILD, side, str(path)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} child failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ machine

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": usable, "mem_gib": mem, "os": platform.platform()}


def versions() -> dict:
    import numpy
    import pandas
    import scipy
    sys.path.insert(0, str(ROOT))
    import npcf
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "pandas": pandas.__version__, "scipy": scipy.__version__,
            "npcf": getattr(npcf, "__version__", "?")}


# ------------------------------------------------------------------------------ report

def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


def table(res: dict) -> str:
    p, n = res["pandas"], res["npcf"]
    ok_ratio = res["ratio"] <= TARGET_RATIO
    ok_rss = n["peak_rss_max"] <= TARGET_RSS

    def runs(side):
        return ", ".join(f"{x:.2f}" for x in side["runs"])

    lines = [
        "| side | median wall (s) | wall runs (s) | median CPU (s) | peak RSS (max of runs) |",
        "| --- | ---: | --- | ---: | ---: |",
        (f"| `pandas.read_csv(path)` | {p['median']:.2f} | {runs(p)} | {p['cpu_median']:.2f} | "
         f"{_gb(p['peak_rss_max'])} |"),
        (f"| `npcf.data.read_ratings(path)` | {n['median']:.2f} | {runs(n)} | "
         f"{n['cpu_median']:.2f} | {_gb(n['peak_rss_max'])} |"),
        "",
        (f"- **ratio npcf/pandas (median wall): {res['ratio']:.2f}** (target <= {TARGET_RATIO}: "
         f"{'met' if ok_ratio else 'NOT met'}); npcf peak RSS {_gb(n['peak_rss_max'])} "
         f"(target <= {_gb(TARGET_RSS)}: {'met' if ok_rss else 'NOT met'}); "
         f"CPU-time ratio {res['cpu_ratio']:.2f}"),
        (f"- file: {res['rows']:,} rows, {res['users']:,} users, {res['items']:,} items, "
         f"{res['file_bytes'] / 1e6:.0f} MB (generated by `benchmarks/_gen_ratings.py`, "
         f"seed {res['seed']})"),
        (f"- {res['repeats']} repeats, interleaved pandas/npcf, one fresh process per run, warm "
         "page cache; time is the call only (imports excluded), peak RSS is the child's "
         "`ru_maxrss` (includes the interpreter and imports)"),
        (f"- machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
         f"{res['machine']['mem_gib']} GiB (shared, noisy)"),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        f"- date: {res['date']}; command: `{res['command']}`",
    ]
    return "\n".join(lines)


def update_results_md(body: str) -> None:
    block = f"{START}\n{body}\n{END}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text,
                      count=1, flags=re.DOTALL)
    else:
        m = re.search(r"^## Data[ \t]*\n", text, flags=re.MULTILINE)
        if m:   # a Data section without markers: put the block right under its heading
            text = text[:m.end()] + "\n" + block + "\n" + text[m.end():]
        else:
            text = text.rstrip("\n") + "\n\n## Data\n\n" + block + "\n"
    RESULTS_MD.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=_gen_ratings.FULL_ROWS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/npcf-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true",
                    help="print the table only; leave RESULTS.md / results_data.json alone")
    args = ap.parse_args(argv)

    path = _gen_ratings.ensure_ratings(args.workdir, args.rows, args.seed)
    meta = json.loads(path.with_suffix(".json").read_text())
    with open(path, "rb") as f:                      # warm the page cache
        while f.read(1 << 24):
            pass

    runs = {"pandas": [], "npcf": []}
    for rep in range(args.repeats):
        for side in ("pandas", "npcf"):
            r = run_child(side, path)
            if r["rows"] != args.rows:
                raise SystemExit(f"{side} read {r['rows']} rows, expected {args.rows}")
            runs[side].append(r)
            print(f"  run {rep + 1}/{args.repeats} {side:6s} {r['seconds']:7.2f} s  "
                  f"(cpu {r['cpu_seconds']:6.2f} s)  peak RSS {_gb(r['peak_rss'])}", flush=True)

    def summary(rs):
        secs = [r["seconds"] for r in rs]
        return {"median": statistics.median(secs), "runs": secs,
                "cpu_median": statistics.median(r["cpu_seconds"] for r in rs),
                "cpu_runs": [r["cpu_seconds"] for r in rs],
                "peak_rss_max": max(r["peak_rss"] for r in rs),
                "peak_rss_runs": [r["peak_rss"] for r in rs]}

    res = {
        "benchmark": "npcf.data.read_ratings vs pandas.read_csv",
        "rows": args.rows, "users": meta["users"], "items": meta["items"],
        "file_bytes": path.stat().st_size, "file": str(path), "seed": args.seed,
        "repeats": args.repeats,
        "pandas": summary(runs["pandas"]), "npcf": summary(runs["npcf"]),
        "machine": machine(), "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/data_read.py" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
    }
    res["ratio"] = res["npcf"]["median"] / res["pandas"]["median"]
    res["cpu_ratio"] = res["npcf"]["cpu_median"] / res["pandas"]["cpu_median"]
    res["target"] = {"ratio_max": TARGET_RATIO, "npcf_peak_rss_max": TARGET_RSS,
                     "met": res["ratio"] <= TARGET_RATIO
                     and res["npcf"]["peak_rss_max"] <= TARGET_RSS}
    body = table(res)
    print()
    print(body)
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps(res, indent=2) + "\n")
        update_results_md(body)
        print(f"\nwrote {RESULTS_JSON.relative_to(ROOT)} and the Data section of "
              f"{RESULTS_MD.relative_to(ROOT)}")
    return 0 if res["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
