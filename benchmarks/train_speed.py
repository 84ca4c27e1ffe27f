"""Training speed of npcf: seconds per epoch, ratings/s and peak RSS, beside the
flop/byte floor of ../shared/notes/sparse-autoencoder.md at kernel rates measured
in the same process.

    python benchmarks/train_speed.py [--scale small,full] [--threads 1,2]
                                     [--batch_size 256] [--batches N] [--json FILE]

Each (scale, threads) runs in a fresh subprocess with OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS set, so thread count and peak RSS are per measurement. ``small`` is
movies-small (real, 671 x 9,066) trained for a full epoch; ``full`` is a synthetic
pattern of The Movies Dataset's size (270,896 x 45,115, ~26.0M ratings) where
``--batches`` random batches are timed and the epoch time is extrapolated as
median seconds per batch x batches per epoch (say so in the table).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SMALL = HERE.parent.parent / "shared" / "datasets" / "movies-small" / "ratings.csv"
CACHE = Path(os.environ.get("NPCF_BENCH_DIR", "/tmp/npcf-bench"))


def thread_env(threads: int) -> dict:
    """npcf's own kernels on ``threads`` threads, and OpenBLAS's idle workers asleep
    at once instead of spinning ~0.1 s on the cores those threads need (what
    ``cli.py train --threads`` sets up)."""
    return {"NPCF_NUM_THREADS": str(threads), "OPENBLAS_THREAD_TIMEOUT": "4"}


def load(scale: str):
    import numpy as np
    import scipy.sparse as sp
    if scale == "small":
        from npcf.data import read_ratings
        return read_ratings(SMALL).matrix
    sys.path.insert(0, str(HERE))
    import synth
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / "movies_full_pattern.npz"
    if f.exists():
        return sp.load_npz(f).tocsr()
    m = synth.movies_full()
    sp.save_npz(f, m, compressed=False)
    del np
    return m


def kernel_rates(X, h1: int, batch: int, dense_sizes, reps: int = 5) -> dict:
    """GEMM GFLOP/s (middle-layer shapes), sparse x dense GFLOP/s and copy bandwidth GB/s,
    with npcf's own kernels on NPCF_NUM_THREADS threads."""
    import numpy as np
    rng = np.random.default_rng(0)
    f32 = np.float32
    out = {}
    h = [h1] + list(dense_sizes) if dense_sizes else [h1, h1]   # GEMM rate needs a shape
    a = [rng.standard_normal((batch, d)).astype(f32) for d in h]
    w = [rng.standard_normal((h[j], h[j + 1])).astype(f32) for j in range(len(h) - 1)]
    flops, t = 0.0, []
    for _ in range(reps):
        t0 = time.perf_counter()
        for j in range(len(w)):
            a[j] @ w[j]
        t.append(time.perf_counter() - t0)
    flops = sum(2 * batch * h[j] * h[j + 1] for j in range(len(w)))
    out["gemm_gflops"] = flops / np.median(t) / 1e9
    W0 = rng.standard_normal((X.shape[1], h1)).astype(f32)
    rows = rng.choice(X.shape[0], size=min(batch, X.shape[0]), replace=False)
    xb = X[rows].astype(f32)
    from npcf.utils import parallel
    best = np.inf
    for item_major in (False, True):    # user-major and item-major: the faster one counts
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            parallel.spmm(xb, W0, item_major=item_major)
            t.append(time.perf_counter() - t0)
        best = min(best, float(np.median(t)))
    out["spmm_gflops"] = 2 * xb.nnz * h1 / best / 1e9
    big = np.ones(50_000_000, f32)
    dst = np.empty_like(big)
    dst[:] = 0

    def copy(lo, hi):
        np.copyto(dst[lo:hi], big[lo:hi])

    t = []
    for _ in range(3):
        t0 = time.perf_counter()
        parallel.split(copy, big.size)
        t.append(time.perf_counter() - t0)
    out["copy_gbs"] = 2 * big.nbytes / np.median(t) / 1e9      # read + write
    return out


def child(args) -> dict:
    import numpy as np

    import npcf
    from npcf.autoencoder.trainer import Trainer
    from npcf.utils.memory import keep_freed_memory
    keep_freed_memory()                 # as cli.py train does
    X = load(args.scale)
    layers = tuple(int(v) for v in args.layers.split(","))
    model = npcf.AutoEncoder(layers=layers, tied=True, optimizer="adam", lazy=not args.dense_adam,
                             batch_size=args.batch_size, n_epochs=1, seed=0,
                             output_mode=args.output_mode)
    model._build(*X.shape)
    trainer = Trainer(model, X)
    active = np.flatnonzero(np.diff(X.indptr))
    n_batches = -(-active.size // args.batch_size)
    todo = n_batches if args.batches <= 0 else min(args.batches, n_batches)
    full_epoch = todo == n_batches
    order = np.random.default_rng(0).permutation(active)
    if full_epoch:
        # a whole epoch end to end: npcf's own training loop (Trainer.run, what fit and
        # cli.py train run: shuffle, every step, the epoch's bookkeeping), one wall time
        t0 = time.perf_counter()
        trainer.run()
        sec_epoch = time.perf_counter() - t0
        batches = [order[s:s + args.batch_size] for s in range(0, order.size, args.batch_size)]
    else:
        batches, times = [], []
        for b in range(todo + 1):                                    # one warm-up first
            rows = order[b * args.batch_size:(b + 1) * args.batch_size]
            t0 = time.perf_counter()
            trainer.step(rows, b)
            if b:
                times.append(time.perf_counter() - t0)
                batches.append(rows)
        sec_epoch = float(np.median(times) * n_batches)
    # rows an epoch's batches touch (the floor's optimizer bytes), outside the timing: a
    # whole epoch's batches in another random order than run()'s, which is the same mean
    touched = [np.unique(X[rows].indices).size for rows in batches]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the floor: flops at measured kernel rates + optimizer bytes at measured bandwidth
    rates = kernel_rates(X, layers[0], args.batch_size, layers[1:])
    h1 = layers[0]
    sparse_flops = 10.0 * X.nnz * h1
    pairs = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    dense_flops = 12.0 * active.size * pairs
    mean_touched = float(np.mean(touched))
    opt_bytes = n_batches * mean_touched * h1 * 4 * 7 if not args.dense_adam else \
        n_batches * X.shape[1] * h1 * 4 * 7
    floor = (sparse_flops / (rates["spmm_gflops"] * 1e9) + dense_flops / (rates["gemm_gflops"] * 1e9)
             + opt_bytes / (rates["copy_gbs"] * 1e9))
    return {
        "scale": args.scale, "threads": int(args.threads), "batch_size": args.batch_size,
        "layers": args.layers, "n_users": X.shape[0], "n_items": X.shape[1], "nnz": int(X.nnz),
        "batches_timed": todo, "batches_per_epoch": n_batches,
        "full_epoch": full_epoch,
        "sec_per_epoch": sec_epoch, "ratings_per_sec": X.nnz / sec_epoch,
        "mean_items_touched_per_batch": mean_touched,
        "floor_sec": floor, "floor_ratio": sec_epoch / floor,
        "sparse_tflop": sparse_flops / 1e12, "dense_tflop": dense_flops / 1e12,
        "optimizer_gb": opt_bytes / 1e9, **rates, "lazy": not args.dense_adam,
        "peak_rss_mb": peak_rss_mb,
    }


def run(scale, threads, batch_size, batches, layers, dense_adam=False, output_mode="auto") -> dict:
    from report import run_child
    return run_child(__file__, ["--scale", scale, "--threads", threads, "--batch_size", batch_size,
                                "--batches", batches, "--layers", layers, "--output_mode",
                                output_mode] + (["--dense_adam"] if dense_adam else []), threads,
                     env=thread_env(threads))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scale", default="small,full")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=30,
                    help="batches timed at full scale (0 = a whole epoch)")
    ap.add_argument("--layers", default="1000,500,100")
    ap.add_argument("--output_mode", default="auto")
    ap.add_argument("--dense_adam", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    bad = [t for t in args.threads.split(",") if not t.strip().isdigit() or int(t) < 1]
    if bad:
        ap.error(f"--threads: {', '.join(bad)} is not a positive thread count")
    unknown = sorted(set(args.scale.split(",")) - {"small", "full"})
    if unknown:
        ap.error(f"--scale: unknown {', '.join(unknown)}; choose small, full")
    if args.batch_size < 1:
        ap.error(f"--batch_size: must be >= 1, got {args.batch_size}")
    if args.batches < 0:
        ap.error(f"--batches: must be >= 0 (0 = a whole epoch), got {args.batches}")
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    for scale in args.scale.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            r = run(scale, threads, args.batch_size, 0 if scale == "small" else args.batches,
                    args.layers, args.dense_adam, args.output_mode)
            rows.append(r)
            how = "full epoch" if r["full_epoch"] else \
                f"extrapolated from {r['batches_timed']} batches"
            print(f"{scale:5s} threads {threads}: {r['sec_per_epoch']:8.1f} s/epoch ({how}), "
                  f"{r['ratings_per_sec'] / 1e6:.2f}M ratings/s, floor {r['floor_sec']:.1f} s "
                  f"(x{r['floor_ratio']:.2f}), peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
