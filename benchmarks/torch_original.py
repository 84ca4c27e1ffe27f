"""The original project's design, re-implemented with PyTorch for a side-by-side
speed comparison (optional: needs ``pip install torch==2.13.0``).

Every batch is densified to n_items columns, the full output is computed, and the
masked MSE ignores the unrated entries; tied weights, Adam (dense), the same layer
sizes and thread counts as npcf's benchmark.

    python benchmarks/torch_original.py [--scale small,full] [--threads 1,2]
                                        [--batch_size 256,64] [--batches 10]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(args) -> dict:
    import numpy as np
    import torch
    sys.path.insert(0, str(HERE))
    from train_speed import load
    if args.keep_freed_memory:          # the allocator setting cli.py train makes for npcf
        from npcf.utils.memory import keep_freed_memory
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    X = load(args.scale)
    layers = [X.shape[1]] + [int(v) for v in args.layers.split(",")]
    W = [torch.nn.Parameter(torch.empty(layers[k], layers[k + 1])) for k in range(len(layers) - 1)]
    for w in W:
        torch.nn.init.xavier_uniform_(w)
    b = [torch.nn.Parameter(torch.zeros(d)) for d in layers[1:]]
    c = [torch.nn.Parameter(torch.zeros(d)) for d in layers[:-1]]
    opt = torch.optim.Adam(W + b + c, lr=1e-3)

    def step(rows):
        x = torch.from_numpy(X[rows].toarray())
        mask = x != 0
        keep = (torch.rand_like(x) >= 0.2) & mask
        a = x * keep
        for k in range(len(W)):
            a = torch.selu(a @ W[k] + b[k])
        for k in range(len(W) - 1, -1, -1):
            a = a @ W[k].T + c[k]
            if k:
                a = torch.selu(a)
        loss = ((a - x) ** 2 * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    active = np.flatnonzero(np.diff(X.indptr))
    order = np.random.default_rng(0).permutation(active)
    n_batches = -(-order.size // args.batch_size)
    todo = n_batches if args.batches <= 0 else min(args.batches, n_batches)
    step(order[:args.batch_size])                        # warm-up, not timed
    times = []
    t_epoch = time.perf_counter()
    for i in range(todo):
        t0 = time.perf_counter()
        step(order[i * args.batch_size:(i + 1) * args.batch_size])
        times.append(time.perf_counter() - t0)
    t_epoch = time.perf_counter() - t_epoch
    full = todo == n_batches           # a whole epoch: its wall time, end to end
    sec = t_epoch if full else float(np.median(times) * n_batches)
    return {"scale": args.scale, "threads": args.threads, "batch_size": args.batch_size,
            "sec_per_epoch": sec, "batches_timed": len(times), "batches_per_epoch": n_batches,
            "full_epoch": full, "torch": torch.__version__,
            "keep_freed_memory": bool(args.keep_freed_memory),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def available() -> bool:
    """Whether torch can be imported (the comparison is optional)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def run(scale, threads, batch_size, batches, layers, keep_freed_memory=False) -> dict:
    """``keep_freed_memory``: under the allocator setting ``cli.py train`` makes for npcf
    (:func:`npcf.utils.memory.keep_freed_memory`; the original design gains from it too)."""
    from report import run_child
    return run_child(__file__, ["--scale", scale, "--threads", threads, "--batch_size",
                                batch_size, "--batches", batches, "--layers", layers]
                     + (["--keep_freed_memory"] if keep_freed_memory else []), threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scale", default="small,full")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch_size", default="256,64")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--layers", default="1000,500,100")
    ap.add_argument("--keep_freed_memory", action="store_true",
                    help="run under the allocator setting cli.py train makes for npcf")
    args = ap.parse_args(argv)
    if args.child:
        args.threads, args.batch_size = int(args.threads), int(args.batch_size)
        print(json.dumps(child(args)))
        return None
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: torch is not installed (pip install torch==2.13.0)")
        return [{"skipped": "torch not installed (pip install torch==2.13.0)"}]
    rows = []
    for scale in args.scale.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            for bs in (int(v) for v in args.batch_size.split(",")):
                r = run(scale, threads, bs, 0 if scale == "small" else args.batches, args.layers,
                        args.keep_freed_memory)
                rows.append(r)
                print(f"torch original {scale:5s} threads {threads} batch {bs}: "
                      f"{r['sec_per_epoch']:8.1f} s/epoch, peak RSS {r['peak_rss_mb']:.0f} MB",
                      flush=True)
    return rows


if __name__ == "__main__":
    main()
