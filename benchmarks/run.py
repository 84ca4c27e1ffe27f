"""One harness for every benchmark; writes ``benchmarks/RESULTS.md`` and
``benchmarks/results.json``.

    python benchmarks/run.py [--quick] [--threads N]
                             [--only train|epoch|infer|data|quality|serve|int8|compat|batch]
                             [--no-readme]

``--quick`` (a few minutes): training speed on movies-small plus 5 timed batches at
full scale, inference at 9,066 movies, the data read on 1M rows, quality with 3
epochs per model (5 s of model selection per data set), serving with 3 s per client
count and a 10 s soak. The full run measures
everything the issue tables ask for. Every comparison runs both sides in one run
(interleaved or in the same process) and reports medians; see each module for how
many runs.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402


def _threads(args) -> str:
    return str(args.threads) if args.threads else ",".join(
        str(t) for t in sorted({1, min(2, os.cpu_count() or 1)}))


def _thread_count(text: str) -> int:
    """``--threads``: as ``NPCF_NUM_THREADS`` takes it."""
    from npcf.utils.parallel import parse_threads
    try:
        return parse_threads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


#: the torch original's runs per scale and thread count: (batch size, under npcf's allocator
#: setting)
TORCH_RUNS = ((256, False), (256, True), (64, False))
KEPT = ", allocator as npcf"


def bench_train(args) -> None:
    """npcf and the torch original interleaved: for each repeat, for each scale and
    thread count, npcf then torch (batch 256, the same under npcf's allocator setting, then
    batch 64); medians over the repeats."""
    import statistics

    import torch_original
    import train_speed
    repeats = 1 if args.quick else 2
    layers = "1000,500,100"
    have_torch = torch_original.available()
    runs: dict = {}
    for rep in range(repeats):
        for scale in ("small", "full"):
            for threads in (int(t) for t in _threads(args).split(",")):
                full = scale == "full"
                r = train_speed.run(scale, threads, 256, (5 if args.quick else 40) if full else 0,
                                    layers)
                runs.setdefault(("npcf", scale, threads, 256), []).append(r)
                print(f"[{rep + 1}/{repeats}] npcf {scale} {threads} thr: "
                      f"{r['sec_per_epoch']:.1f} s/epoch (floor {r['floor_sec']:.1f})", flush=True)
                for bs, keep in (TORCH_RUNS if have_torch else ()):
                    t = torch_original.run(scale, threads, bs, (3 if args.quick else 10)
                                           if full else 0, layers, keep_freed_memory=keep)
                    runs.setdefault(("torch", scale, threads, bs, keep), []).append(t)
                    print(f"[{rep + 1}/{repeats}] torch original {scale} {threads} thr batch "
                          f"{bs}{KEPT if keep else ''}: {t['sec_per_epoch']:.1f} s/epoch",
                          flush=True)

    def median_row(rs):
        row = dict(rs[0])
        for key in ("sec_per_epoch", "floor_sec", "gemm_gflops", "spmm_gflops", "copy_gbs"):
            if key in row:
                row[key] = statistics.median(r[key] for r in rs)
        row["runs_sec_per_epoch"] = [r["sec_per_epoch"] for r in rs]
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        if "floor_sec" in row:
            row["floor_ratio"] = row["sec_per_epoch"] / row["floor_sec"]
            row["ratings_per_sec"] = row["nnz"] / row["sec_per_epoch"]
        return row

    rows = [median_row(v) for k, v in runs.items() if k[0] == "npcf"]
    torch_rows = [median_row(v) for k, v in runs.items() if k[0] == "torch"] if have_torch \
        else [{"skipped": "torch not installed (pip install torch==2.13.0)"}]
    orig = {(t["scale"], t["threads"], t.get("keep_freed_memory", False)): t["sec_per_epoch"]
            for t in torch_rows if "skipped" not in t and t["batch_size"] == 256}

    def speedup(r, keep):
        key = (r["scale"], r["threads"], keep)
        return f"{orig[key] / r['sec_per_epoch']:.1f}x" if key in orig else "n/a"

    table = [(f"npcf {r['scale']}", r["threads"], r["batch_size"],
              f"{r['sec_per_epoch']:,.1f}" + ("" if r["full_epoch"] else " *"),
              f"{r['ratings_per_sec'] / 1e3:,.0f}k", f"{r['floor_sec']:,.1f}",
              f"{r['floor_ratio']:.2f}x", f"{r['peak_rss_mb']:,.0f} MB", speedup(r, False),
              speedup(r, True))
             for r in rows]
    for t in torch_rows:
        if "skipped" in t:
            table.append(("torch original design", "", "", "skipped", t["skipped"], "", "", "",
                          "", ""))
            continue
        table.append((f"torch original {t['scale']}"
                      + (KEPT if t.get("keep_freed_memory") else ""), t["threads"],
                      t["batch_size"],
                      f"{t['sec_per_epoch']:,.1f}" + ("" if t["full_epoch"] else " *"),
                      "", "", "", f"{t['peak_rss_mb']:,.0f} MB", "", ""))
    body = "\n".join([
        report.md_table(("run", "threads", "batch", "s/epoch", "ratings/s", "floor s",
                         "vs floor", "peak RSS", "speed-up vs original (batch 256)",
                         "same, original under npcf's allocator setting"), table,
                        "lrrrrrrrrr"),
        "",
        "Layers 1000-500-100, tied, Adam (lazy), masking noise, residual over biases. "
        f"Each row is the median of {repeats} run(s), npcf and torch interleaved (npcf, torch "
        "b256, torch b256 under npcf's allocator setting, torch b64 for each scale and thread "
        "count, then again); each run is a fresh process. "
        "`small` = movies-small (671 x 9,066, real), one full epoch; `full` = synthetic "
        "270,896 x 45,115 with 26.0M ratings (`benchmarks/synth.py`), * = extrapolated from "
        "the median time of the timed batches x batches per epoch.",
        "Floor = 10·nnz·h1 sparse flops at the measured sparse×dense rate (float32, the "
        "faster of CSR and CSC order) + 12·users·Σh_j·h_j+1 "
        "dense flops at the measured GEMM rate + lazy-Adam bytes (7 × 4 B × touched rows × h1 "
        "per batch) at the measured copy bandwidth, all measured in the same process.",
        "Rates: " + "; ".join(f"{r['scale']}/{r['threads']} thr: GEMM {r['gemm_gflops']:.0f} "
                              f"GFLOP/s, sparse×dense {r['spmm_gflops']:.1f} GFLOP/s, copy "
                              f"{r['copy_gbs']:.1f} GB/s" for r in rows),
        "torch original = the original design re-implemented in `benchmarks/torch_original.py` "
        "(every batch densified to n_items columns, dense output, masked MSE, tied, dense "
        "Adam), same sizes and threads; the issue's reference for it is ≈1,950 s/epoch at "
        "1 thread, batch 256" + "".join(
            f" (npcf full at 1 thread is {1950 / r['sec_per_epoch']:.1f}x faster than that "
            "reference)" for r in rows if r["scale"] == "full" and r["threads"] == 1) + ".",
        report.measured_line(report.now()),
        "Threads: npcf's children run with OPENBLAS_NUM_THREADS = NPCF_NUM_THREADS = the "
        "thread count and OPENBLAS_THREAD_TIMEOUT=4 (what `cli.py train --threads` sets up); "
        "torch with torch.set_num_threads.",
        "Allocator: npcf's children run under the setting `cli.py train` makes "
        "(`npcf.utils.memory.keep_freed_memory`: glibc keeps freed blocks under 512 MiB "
        "instead of returning them to the OS and faulting them in again every step); the "
        f"rows marked \"{KEPT.strip(', ')}\" run the original design under it too, and the "
        "last column compares with those, so that it measures the design alone.",
    ])
    report.update_section("train", body)
    report.update_json("train", {"npcf": rows, "torch_original": torch_rows})


def bench_epoch(args) -> None:
    """Whole full-scale epochs end to end, not extrapolated: for each thread count, npcf's
    training loop (``Trainer.run``) then the torch original at batch 256 as it runs, one
    run each (~1 hour in all, nearly all of it the original's)."""
    import torch_original
    import train_speed
    if args.quick:
        print("whole epochs: skipped under --quick (about an hour)", flush=True)
        return
    layers, out = "1000,500,100", {"npcf": [], "torch_original": []}
    have_torch = torch_original.available()
    for threads in (int(t) for t in _threads(args).split(",")):
        r = train_speed.run("full", threads, 256, 0, layers)
        out["npcf"].append(r)
        print(f"npcf full epoch {threads} thr: {r['sec_per_epoch']:.1f} s "
              f"(floor {r['floor_sec']:.1f})", flush=True)
        if have_torch:
            t = torch_original.run("full", threads, 256, 0, layers)
            out["torch_original"].append(t)
            print(f"torch original full epoch {threads} thr: {t['sec_per_epoch']:.1f} s",
                  flush=True)
    out["measured"] = report.now()
    report.update_section("epoch", epoch_report(out))
    report.update_json("epoch", out)


def epoch_report(out: dict) -> str:
    """RESULTS.md's whole-epoch section from :func:`bench_epoch`'s results."""
    orig = {t["threads"]: t for t in out.get("torch_original", [])}
    table = []
    for r in out["npcf"]:
        t = orig.get(r["threads"])
        table.append((r["threads"], f"{r['sec_per_epoch']:,.1f}", f"{r['floor_sec']:,.1f}",
                      f"{r['sec_per_epoch'] / r['floor_sec']:.2f}x",
                      f"{r['peak_rss_mb']:,.0f} MB",
                      f"{t['sec_per_epoch']:,.1f}" if t else "skipped (no torch)",
                      f"{t['peak_rss_mb']:,.0f} MB" if t else "",
                      f"{t['sec_per_epoch'] / r['sec_per_epoch']:.1f}x" if t else ""))
    steps = out["npcf"][0]["batches_per_epoch"]
    return "\n".join([
        report.md_table(("threads", "npcf s/epoch", "floor s", "vs floor", "npcf peak RSS",
                         "original s/epoch, as it runs", "original peak RSS", "speed-up"),
                        table, "rrrrrrrr"),
        "",
        "One whole epoch of the full-scale set (synthetic 270,896 x 45,115, 26.0M ratings, "
        "1000-500-100 tied, Adam, batch 256), timed end to end, per thread count: npcf's own "
        f"training loop (`Trainer.run`: the shuffle, all {steps:,} steps and the epoch's "
        "bookkeeping, under the allocator setting `cli.py train` makes; the floor as in the "
        "table above, at kernel rates measured in the same process afterwards), then the "
        "original design as it runs (`benchmarks/torch_original.py`: glibc's default "
        "allocator, the wall time of all its steps after one untimed warm-up step), each a "
        "fresh process, one run each. Like for like (the original under npcf's allocator "
        "setting too) is the last column of the table above, from timed batches.",
        report.measured_line(out["measured"], "python benchmarks/run.py --only epoch"),
    ])


def bench_infer(args) -> None:
    import infer_speed
    rows = infer_speed.main(["--items", "9066" if args.quick else "9066,45115",
                             "--threads", _threads(args), "--reps", "10" if args.quick else "50"])
    table = []
    for r in rows:
        if "skipped" in r:
            table.append((r.get("items", ""), r.get("threads", ""), r["variant"], r["precision"],
                          "skipped", r["skipped"], "", "", ""))
            continue
        table.append((f"{r['items']:,}", r["threads"], r["variant"], r["precision"],
                      f"{r['batch1_ms']:.2f}", f"{r['floor_batch1_ms']:.2f}",
                      f"{r['batch256_users_per_s']:,.0f}",
                      f"{r['floor_batch256_users_per_s']:,.0f}",
                      f"{r.get('file_mb', 0):.1f}" if r.get("file_mb") else ""))
    body = "\n".join([
        report.md_table(("movies", "threads", "engine", "precision", "batch-1 ms (top-10)",
                         "floor ms", "batch-256 users/s", "floor users/s", "file MB"),
                        table, "rrllrrrrr"),
        "",
        "Layers 1000-500-100, tied, residual, top-10 with seen items masked, random weights; "
        "batch 1 = one user with 100 ratings, batch 256 = 256 such users. Per movies x threads, "
        "one process builds every engine and then times them interleaved (5 rounds; in each, "
        "every engine in turn gets 0.2 s for the previous one's pool threads to stop spinning, "
        "one untimed call and a block of timed calls), medians of "
        + ", ".join(sorted({f"{r['reps_batch1']} (batch 1) / {r['reps_batch256']} (batch 256)"
                            for r in rows if "reps_batch1" in r})) + " timed calls. "
        "Floors: batch 1 = weight bytes ÷ measured read bandwidth; batch 256 = flops ÷ "
        "measured GEMM rate.",
    ])
    report.update_section("infer", body)
    report.update_json("infer", rows)
    bench_fp16(args)


def bench_fp16(args) -> None:
    """Whether a float16-weight variant is worth offering (issue: only if not slower)."""
    import fp16_check
    r = fp16_check.main(["--items", "9066" if args.quick else "45115",
                         "--reps", "10" if args.quick else "30"])
    ratio = r["fp16"]["batch1_ms"] / r["fp32"]["batch1_ms"]
    report.update_section("fp16", "\n".join([
        report.md_table(("weights", "file MB", "batch-1 ms (top-10)", "batch-256 users/s"),
                        [(k, f"{r[k]['file_mb']:.1f}", f"{r[k]['batch1_ms']:.2f}",
                          f"{r[k]['batch256_users_per_s']:,.0f}") for k in ("fp32", "fp16")],
                        "lrrr"), "",
        "`--precision fp16`: float16 weights read through a Cast node (sparse input, default "
        f"threads), interleaved with fp32 in one process; batch-1 time ratio fp16/fp32 "
        f"{ratio:.2f} (earlier runs on this machine: 0.98-1.23, i.e. within its noise); max "
        f"score change {r['max_abs_score_change']:.1e}. It halves the file, not the time.",
    ]))
    report.update_json("fp16", r)


def bench_data(args) -> None:
    import data_read
    argv = ["--rows", "1000000", "--repeats", "1"] if args.quick else []
    data_read.main(argv)


def bench_quality(args) -> None:
    import quality
    res = quality.main(["--quick"] if args.quick else [])
    report.update_section("quality", quality.full_markdown(res))
    report.update_json("quality", res)


def bench_serve(args) -> None:
    """`npcf serve` under load beside in-process recommend (serve_load.py writes its section)."""
    import serve_load
    argv = ["--threads", str(args.threads or min(2, os.cpu_count() or 1))]
    serve_load.main(argv + (["--items", "9066,45115", "--seconds", "3", "--soak", "10"]
                            if args.quick else []))


def bench_int8(args) -> None:
    """int8 schemes on movies-small and the speed of the chosen one (its own section)."""
    import int8_check
    int8_check.main(["--threads", str(args.threads or 1), "--write"]
                    + (["--reps", "10", "--speed_items", "9066"] if args.quick else []))


def bench_compat(args) -> None:
    """Every export variant on the setup.cfg floors of onnxruntime/onnx (a venv)."""
    import compat
    compat.main(["--write"])


def bench_batch(args) -> None:
    """Batch recommendations on Dask at 1 and 2 workers (batch_speed.py writes its section)."""
    import batch_speed
    batch_speed.main(["--write"] + (["--rows", "1000000", "--users", "4096",
                                     "--partition_users", "512"] if args.quick else []))


README = HERE.parent / "README.md"


def readme_summary() -> str:
    """The README's benchmark section: the headline rows of results.json."""
    import json
    res = json.loads(report.RESULTS_JSON.read_text())
    out = []
    tr = res.get("train", {})
    if isinstance(tr, dict) and tr.get("npcf"):
        torch_full = {(t["threads"], bool(t.get("keep_freed_memory"))): t["sec_per_epoch"]
                      for t in tr.get("torch_original", [])
                      if t.get("scale") == "full" and t.get("batch_size") == 256}

        def against(r, keep):
            sec = torch_full.get((r["threads"], keep))
            return ("n/a", "n/a") if sec is None else \
                (f"{sec:,.0f}", f"{sec / r['sec_per_epoch']:.1f}x")

        rows = [(r["threads"], f"{r['sec_per_epoch']:,.0f}", f"{r['floor_sec']:,.0f}",
                 *against(r, False), *against(r, True), f"{r['peak_rss_mb']:,.0f} MB")
                for r in tr["npcf"] if r["scale"] == "full"]
        both = "; the original design as it runs (first speed-up), and under the " \
            "allocator setting `cli.py train` makes for npcf (second, like for like: the " \
            "original gains from it too)" if torch_full else " (the original design: not run)"
        out += ["Training, The Movies Dataset scale (270,896 users x 45,115 movies, 26.0M "
                "ratings, synthetic pattern), layers 1000-500-100, tied, batch 256" + both + ":",
                "",
                report.md_table(("threads", "npcf s/epoch", "floor s", "original s/epoch",
                                 "speed-up", "original, same allocator, s/epoch", "speed-up",
                                 "npcf peak RSS"), rows, "rrrrrrrr"), ""]
    ep = res.get("epoch", {})
    if isinstance(ep, dict) and ep.get("npcf"):
        orig = {t["threads"]: t["sec_per_epoch"] for t in ep.get("torch_original", [])}

        def whole(r):
            sec, n = r["sec_per_epoch"], r["threads"]
            text = (f"{n} thread{'s' if n > 1 else ''}: npcf {sec:,.0f} s "
                    f"({sec / r['floor_sec']:.2f}x the floor)")
            if n in orig:
                text += f", the original as it runs {orig[n]:,.0f} s ({orig[n] / sec:.1f}x)"
            return text

        out += ["Whole epochs at that scale, end to end (not extrapolated; one run each): "
                + "; ".join(whole(r) for r in ep["npcf"]) + ".", ""]
    inf = [r for r in res.get("infer", []) if "batch1_ms" in r]
    if inf:
        big = max(r["items"] for r in inf)
        rows = [(r["threads"], r["variant"], r["precision"], f"{r['batch1_ms']:.2f}",
                 f"{r['batch256_users_per_s']:,.0f}") for r in inf if r["items"] == big]
        out += [f"Inference at {big:,} movies (top-10, seen items masked):", "",
                report.md_table(("threads", "engine", "precision", "batch-1 ms",
                                 "batch-256 users/s"), rows, "rllrr"), ""]
    data = res.get("data")
    if data and "ratio" in data:
        out += [f"Reading the 26M-row ratings.csv into CSR + id maps: {data['ratio']:.2f}x a bare "
                f"`pandas.read_csv` ({data['npcf']['median']:.1f} s vs "
                f"{data['pandas']['median']:.1f} s), peak RSS "
                f"{data['npcf']['peak_rss_max'] / 1e9:.2f} GB.", ""]
    q = res.get("quality")
    if q:
        import quality
        out += [quality.markdown(q["rating"], q["topn"], q.get("variants")), ""]
    if q and q.get("datasets"):
        import crossdata
        out += ["Across data sets (`python benchmarks/run.py --only quality`, one run, test "
                "RMSE; the default `train` with its model selection vs the same command "
                "`--tune off`, the classic baselines, a torch I-AutoRec re-implemented by "
                "the issue's rule in `benchmarks/iautorec_torch.py`, IGMC re-implemented in "
                "NumPy from its paper's recipe in `benchmarks/igmc.py`, and the best "
                "published figures; full table with MAE and seconds in "
                "`benchmarks/RESULTS.md`):", "", crossdata.readme_table(q["datasets"]), ""]
    out.append("Machine, versions and every table: `benchmarks/RESULTS.md` "
               "(regenerate with `python benchmarks/run.py`).")
    return "\n".join(out)


def update_readme() -> None:
    import re
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = README.read_text()
    if start not in text or end not in text:
        return
    block = f"{start}\n{readme_summary()}\n{end}"
    README.write_text(re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text,
                             count=1, flags=re.DOTALL))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=_thread_count, default=None,
                    help="one thread count instead of 1 and 2")
    ap.add_argument("--only", choices=["train", "epoch", "infer", "data", "quality", "serve",
                                       "int8", "compat", "batch"],
                    action="append")
    ap.add_argument("--no-readme", action="store_true",
                    help="leave README.md's benchmark section as it is")
    args = ap.parse_args(argv)
    parts = args.only or ["train", "epoch", "infer", "data", "quality", "serve", "int8",
                          "compat", "batch"]
    m, v = report.machine(), report.versions()
    report.update_section("machine", "\n".join([
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}",
        "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
        f"- run: `python benchmarks/run.py{' --quick' if args.quick else ''}"
        f"{f' --threads {args.threads}' if args.threads else ''}` on {report.now()}"
        + (f" (parts: {', '.join(parts)}; the other sections are from earlier runs, "
           "possibly on another host of this type: their own text names when)"
           if args.only else ""),
    ]))
    report.update_json("machine", {"machine": m, "versions": v, "quick": args.quick})
    for part in parts:
        print(f"== {part}", flush=True)
        {"train": bench_train, "epoch": bench_epoch, "infer": bench_infer, "data": bench_data,
         "quality": bench_quality, "serve": bench_serve, "int8": bench_int8,
         "compat": bench_compat, "batch": bench_batch}[part](args)
    if not args.no_readme:
        update_readme()
    print(f"wrote {report.RESULTS_MD}, {report.RESULTS_JSON}"
          + ("" if args.no_readme else " and the README's benchmark section"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
