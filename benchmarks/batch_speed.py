"""Batch recommendations on Dask: users/s at 1 and 2 workers (fp32 and int8) beside the
single-process ``Recommender`` on the same cores, peak RSS per worker, and the README's
``batch-recommend`` command over the whole synthetic set.

    python benchmarks/batch_speed.py [--rows 26024289] [--users 16384] [--workers 1,2]
                                     [--precisions fp32,int8] [--no-full]

Data: ``_gen_ratings.py``'s The-Movies-Dataset-sized ``ratings.csv`` (270,896 users,
45,115 movies, 26.0M ratings). Model: random weights, layers 1000-500-100, tied,
residual (``infer_speed._model``) over the file's 45,115 movie ids, exported with sparse
input and the in-graph top-10. Side by side in one process, per precision: the
single-process ``Recommender.recommend`` (onnxruntime intra-op threads 1, then 2; called
in the same length-bucketed batches the workers use: a sparse-input batch is padded to
its longest history, and this file's heaviest user has 18,276 ratings) and
``recommend_all`` on a fresh ``LocalCluster`` of 1, then 2 workers (1 thread each), all
on the same first ``--users`` users (a fixed slice, so a config takes about a minute on
2 cores); users/s = users / the scoring phase (``scoring_seconds``: first task
submitted to last result, which includes each worker's model load and the Parquet
reads and writes). Then (unless ``--no-full``) the CLI command scores all users end to
end with 2 workers (fp32): wall time and peak RSS per worker at full scale.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import _gen_ratings  # noqa: E402
import infer_speed  # noqa: E402


def _export(ratings, workdir: Path, precision: str) -> Path:
    from npcf.serving.export import export
    path = workdir / f"batch-model-{len(ratings.items)}.{precision}.onnx"
    if not path.is_file():
        model = infer_speed._model(len(ratings.items), (1000, 500, 100))
        model.items = ratings.items
        export(model, path, sparse_input=True, top_k=10, precision=precision)
    return path


def _subset(ratings, n_users: int):
    from npcf.data.ratings import Ratings
    from npcf.data.vocab import Vocabulary
    n = min(n_users, ratings.matrix.shape[0])
    return Ratings(ratings.matrix[:n], Vocabulary(ratings.users.ids[:n]), ratings.items,
                   source=f"first {n} users of {ratings.source}")


def _single(model: Path, sub, threads: int) -> dict:
    """``Recommender.recommend`` in this process, in the length-bucketed calls a worker
    makes (:func:`npcf.serving.batch.recommend_sorted`): the same work without Dask."""
    from npcf.serving.batch import recommend_sorted
    from npcf.serving.runtime import Recommender
    rec = Recommender.load(model, threads=threads)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    ids, _ = recommend_sorted(rec, sub.matrix, 10)
    sec, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert ids.shape == (sub.matrix.shape[0], 10)
    return {"engine": "single process", "threads": threads, "seconds": sec, "cpu_seconds": cpu,
            "users_per_s": sub.matrix.shape[0] / sec, "users_per_cpu_s": sub.matrix.shape[0] / cpu}


def _dask(model: Path, sub, workers: int, workdir: Path, partition_users: int) -> dict:
    from npcf.serving import batch
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, \
            batch.dask_client(workers=workers) as client:
        client.wait_for_workers(workers, timeout=120)
        s = batch.recommend_all(client, model, sub, Path(tmp) / "recs", k=10,
                                partition_users=partition_users)
    return {"engine": "dask", "workers": workers, "seconds": s["scoring_seconds"],
            "total_seconds": s["seconds"], "users_per_s": s["users"] / s["scoring_seconds"],
            "partitions": s["partitions"], "cpu_seconds": s["task_cpu_seconds"],
            "users_per_cpu_s": s["users"] / max(s["task_cpu_seconds"], 1e-9),
            "peak_rss_mb_per_worker": max(s["peak_rss_mb"].values(), default=None)}


def _full_run(model: Path, csv: Path, workdir: Path) -> dict:
    """The README command over the whole file (a subprocess, 2 workers)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "recs"
        cmd = [sys.executable, str(ROOT / "cli.py"), "batch-recommend", "--model", str(model),
               "--data", str(csv), "--out", str(out), "--workers", "2", "-q"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(res.stdout + res.stderr[-2000:])
        marker = json.loads((out / "_npcf_batch.json").read_text())
        n_files = len(list(out.glob("part-*.parquet")))
    return {"command": "python cli.py batch-recommend --model MODEL --data RATINGS --out recs "
                       "--workers 2", "wall_seconds": wall, "users": marker["users"],
            "rows": marker["rows"], "partitions": marker["partitions"], "files": n_files,
            "scoring_seconds": marker["scoring_seconds"], "run_seconds": marker["seconds"],
            "users_per_s_scoring": marker["users"] / marker["scoring_seconds"],
            "peak_rss_mb_per_worker": max(marker["peak_rss_mb"].values()),
            "output": res.stdout.strip().splitlines()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=_gen_ratings.FULL_ROWS)
    ap.add_argument("--users", type=int, default=16_384, help="users in each timed config")
    ap.add_argument("--rounds", type=int, default=1,
                    help="times every config runs, interleaved (medians reported)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--partition_users", type=int, default=2048,
                    help="users per task in the timed configs (the full run: the CLI default)")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--workdir", default="/tmp/npcf-bench")
    ap.add_argument("--no-full", action="store_true",
                    help="skip the full-set CLI run (keep the one results.json holds)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", action="store_true",
                    help="write the Batch recommendations section of RESULTS.md and results.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from npcf.serving import batch

    import report
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    csv = _gen_ratings.ensure_ratings(workdir, args.rows)
    t0 = time.perf_counter()
    ratings = batch.read_users(csv)
    read_s = time.perf_counter() - t0
    print(f"read {csv.name}: {ratings.matrix.shape[0]:,} users x {len(ratings.items):,} movies, "
          f"{ratings.matrix.nnz:,} ratings in {read_s:.1f} s", flush=True)
    sub = _subset(ratings, args.users)
    models = {p: _export(ratings, workdir, p) for p in args.precisions.split(",")}
    configs = [("single", 1)] + [("dask", int(w)) for w in args.workers.split(",")] + \
        [("single", 2)]
    rows = []
    load_before = os.getloadavg()
    for rnd in range(args.rounds):
        for precision, model in models.items():
            for kind, n in configs:
                r = _single(model, sub, n) if kind == "single" else \
                    _dask(model, sub, n, workdir, args.partition_users)
                r.update(precision=precision, round=rnd, users=sub.matrix.shape[0],
                         ratings=int(sub.matrix.nnz), file_mb=model.stat().st_size / 1e6)
                rows.append(r)
                print(f"[{rnd + 1}/{args.rounds}] {precision} {kind} {n}: "
                      f"{r['users_per_s']:,.0f} users/s ({r['seconds']:.1f} s, "
                      f"{r['users_per_cpu_s']:,.0f} users/CPU-s)" +
                      (f", peak RSS/worker {r['peak_rss_mb_per_worker']:,.0f} MB"
                       if kind == "dask" else ""), flush=True)
    result = {"rows": rows, "n_users_total": int(ratings.matrix.shape[0]),
              "n_items": len(ratings.items), "n_ratings_total": int(ratings.matrix.nnz),
              "read_seconds": read_s, "rounds": args.rounds, "measured": report.now(),
              "argv": list(sys.argv[1:] if argv is None else argv), "load_avg_before": load_before,
              "load_avg_after_timed": os.getloadavg()}
    del ratings, sub
    if not args.no_full:
        before = os.getloadavg()
        full = _full_run(_export_path(workdir, result["n_items"]), csv, workdir)
        full.update(measured=report.now(), load_avg_before=before, load_avg_after=os.getloadavg())
        result["full"] = full
        print("full run:", full["output"], f"wall {full['wall_seconds']:.0f} s", flush=True)
    elif report.RESULTS_JSON.exists():
        old = json.loads(report.RESULTS_JSON.read_text()).get("batch", {})
        if isinstance(old, dict) and old.get("full"):
            result["full"] = old["full"]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.write:
        report.publish("batch", markdown(result), result)
    return result


def _export_path(workdir: Path, n_items: int) -> Path:
    return workdir / f"batch-model-{n_items}.fp32.onnx"


def _median(values):
    import statistics
    return statistics.median(values)


def markdown(res: dict) -> str:
    """The RESULTS.md section: one row per config (medians over the rounds), ratios
    against the same precision's 1-thread single process and 1 worker, then the full run."""
    import report
    groups: dict = {}
    for r in res["rows"]:
        n = r["workers"] if r["engine"] == "dask" else r["threads"]
        groups.setdefault((r["precision"], r["engine"], n), []).append(r)
    med = {key: {f: _median([r[f] for r in rs]) for f in ("users_per_s", "users_per_cpu_s",
                                                          "seconds")}
           | {"rss": max((r.get("peak_rss_mb_per_worker") or 0) for r in rs), "runs": rs}
           for key, rs in groups.items()}
    table = []
    for (prec, engine, n), m in med.items():
        base = med[(prec, "single process", 1)]["users_per_s"]
        one = med.get((prec, "dask", 1), {}).get("users_per_s")
        dask = engine == "dask"
        table.append((prec, f"dask, {n} worker{'s' if n > 1 else ''}" if dask else
                      f"single process, {n} thread{'s' if n > 1 else ''}",
                      f"{m['seconds']:.1f}", f"{m['users_per_s']:,.0f}",
                      " / ".join(f"{r['users_per_s']:,.0f}" for r in m["runs"]),
                      f"{m['users_per_s'] / base:.2f}x",
                      f"{m['users_per_s'] / one:.2f}x" if dask and one else "",
                      f"{m['users_per_cpu_s']:,.0f}", f"{m['rss']:,.0f} MB" if dask else ""))
    first = res["rows"][0]
    mach = report.machine()
    la = res["load_avg_before"], res["load_avg_after_timed"]
    out = [report.md_table(("precision", "engine", "s", "users/s", "each round", "vs single 1 thr",
                            "vs 1 worker", "users/CPU-s", "peak RSS per worker"),
                           table, "llrrrrrrr"), "",
           f"`python benchmarks/batch_speed.py {' '.join(res['argv'])}`".replace(" `", "`") +
           f" on {res['measured']}; {mach['cpu']}, {mach['cores']} cores. Data: `_gen_ratings.py`'s "
           f"synthetic ratings.csv, {res['n_users_total']:,} users x {res['n_items']:,} movies, "
           f"{res['n_ratings_total']:,} ratings (read in {res['read_seconds']:.0f} s). Model: "
           "random weights, 1000-500-100 tied, residual, sparse input, in-graph top-10. Timed: "
           f"the first {first['users']:,} users ({first['ratings']:,} ratings), every config "
           f"in turn, {res['rounds']} round(s), medians; dask = a fresh LocalCluster per "
           "config, users/s over the scoring phase (first task submitted to last result: each "
           "worker's model load, Parquet reads and writes included; cluster start-up "
           "excluded); single process = `Recommender.recommend` called in the same "
           "length-sorted batches (`batch.recommend_sorted`). users/CPU-s = users / CPU "
           "time of the scoring processes (tasks' or this process's), which other jobs on the "
           "machine inflate less than wall time. Peak RSS per worker = the largest VmHWM of a "
           "worker process.",
           "", f"Load average (1/5/15 min) {', '.join(f'{v:.1f}' for v in la[0])} before and "
           f"{', '.join(f'{v:.1f}' for v in la[1])} after the timed configs: on 2 cores, "
           "anything above ~2 means other jobs were running, and then a second worker finds "
           "no free core (the 2-worker ratio measures the share of the machine a second "
           "process gets, not scaling)."]
    targets = []
    for prec in sorted({key[0] for key in med}):
        one, two = med.get((prec, "dask", 1)), med.get((prec, "dask", 2))
        single = med[(prec, "single process", 1)]
        if one and two:
            targets.append(f"{prec}: 2 workers / 1 worker {two['users_per_s'] / one['users_per_s']:.2f}x "
                           f"(target >= 1.7x), 1 worker / single process "
                           f"{one['users_per_s'] / single['users_per_s']:.0%} (target >= 90%)")
    full = res.get("full")
    if full:
        targets.append(f"peak RSS per worker over all {full['users']:,} users "
                       f"{full['peak_rss_mb_per_worker']:,.0f} MB (target <= 1.5 GB)")
    if targets:
        out += ["", "Targets: " + "; ".join(targets) + "."]
    if full:
        out += ["", f"Full set end to end ({full.get('measured', 'an earlier run')}): "
                f"`{full['command']}` (fp32) scored {full['users']:,} users into "
                f"{full['files']} Parquet files ({full['rows']:,} rows) in "
                f"{full['wall_seconds']:.0f} s wall (process start to exit: CSV read, local "
                f"cluster start, staging, scoring {full['scoring_seconds']:.0f} s = "
                f"{full['users_per_s_scoring']:,.0f} users/s); peak RSS per worker "
                f"{full['peak_rss_mb_per_worker']:,.0f} MB"
                + (f"; load average {', '.join(f'{v:.1f}' for v in full['load_avg_before'])} "
                   "before it" if full.get("load_avg_before") else "")
                + (f", {', '.join(f'{v:.1f}' for v in full['load_avg_after'])} after"
                   if full.get("load_avg_after") else "") + "."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
