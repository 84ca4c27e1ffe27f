"""Inference speed: onnxruntime running npcf's graph (dense/sparse input, fp32/int8)
beside the NumPy forward, and the floor (weight bytes / measured read bandwidth for
batch 1; flops / measured GEMM rate for batch 256).

    python benchmarks/infer_speed.py [--items 9066,45115] [--threads 1,2] [--reps 50]

Weights are random (speed does not depend on them); layers 1000-500-100, tied,
residual over biases, top-10 with the input's items masked. Each configuration runs
in a subprocess with the thread count set for BLAS and onnxruntime; inside it every
engine is built first and then timed interleaved: ``ROUNDS`` rounds, each giving every
engine in turn 0.2 s for the previous engine's spinning pool threads to go idle, one
untimed call and a block of timed calls (``--reps`` in all for batch 1, a fifth of
that for batch 256); medians reported. Batch 1 is one
user with 100 ratings; batch 256 are users with 100 ratings each.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

#: timing rounds: each round times every engine in turn (a block of calls each)
ROUNDS = 5


def _model(n_items: int, layers):
    import numpy as np

    import npcf
    from npcf.data.vocab import Vocabulary
    from npcf.nn.bias import UserItemBias
    m = npcf.AutoEncoder(layers=layers, tied=True)
    m._build(1, n_items)
    m.scale = (0.5, 5.0)
    m.items = Vocabulary(np.arange(1, n_items + 1))
    m.baseline = UserItemBias()
    m.baseline.mu = 3.5
    m.baseline.col_bias = np.random.default_rng(0).normal(0, 0.3, n_items).astype(np.float32)
    m.item_counts = np.arange(n_items)[::-1].copy()
    return m


def _users(n_users: int, n_items: int, per_user: int = 100, seed: int = 0):
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    cols = np.sort(cols.reshape(n_users, per_user), axis=1).ravel()
    data = (rng.integers(1, 11, cols.size) / 2).astype(np.float32)
    indptr = np.arange(0, cols.size + 1, per_user)
    return sp.csr_matrix((data, cols, indptr), shape=(n_users, n_items))


def _median_time(fn, reps: int) -> float:
    import numpy as np
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def child(args) -> list[dict]:
    import numpy as np
    import onnxruntime as ort

    from npcf.evaluation.ranking import rank
    from npcf.serving.export import export
    from npcf.serving.runtime import Recommender
    layers = tuple(int(v) for v in args.layers.split(","))
    n = args.items
    model = _model(n, layers)
    one, many = _users(1, n), _users(256, n, seed=1)
    rows = []
    h1 = layers[0]
    weight_bytes = 4 * (n * h1 + sum(a * b for a, b in zip(layers[:-1], layers[1:])))
    big = np.ones(100_000_000, np.float32)
    read_gbs = big.nbytes / _median_time(lambda: big.sum(), 3) / 1e9
    a = np.random.default_rng(0).standard_normal((256, h1)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((h1, n)).astype(np.float32)
    gemm_gflops = 2 * 256 * h1 * n / _median_time(lambda: a @ w, 3) / 1e9
    middle = sum(x * y for x, y in zip(layers[:-1], layers[1:]))

    def flops(batch):
        # the work that is necessary: the first layer follows the 100 ratings a user has
        return 2.0 * batch * (100 * h1 + 2 * middle + h1 * n)

    def numpy_path(x):
        return rank(model.predict(x), 10, seen=x)

    # Build every engine first, then time them interleaved (A B C ... A B C ...), so a
    # drift of the shared machine hits all engines alike.
    engines = [dict(variant="numpy forward", precision="fp32", one=lambda: numpy_path(one),
                    many=lambda: numpy_path(many))]
    with tempfile.TemporaryDirectory() as tmp:
        for sparse in (False, True):
            for prec in ("fp32", "int8"):
                path = export(model, Path(tmp) / f"m_{sparse}_{prec}.onnx", sparse_input=sparse,
                              top_k=10, precision=prec)
                rec = Recommender.load(path, threads=args.threads)
                f1, fb = rec._feeds(one), rec._feeds(many)
                outs = ["top_items", "top_scores"]
                engines.append(dict(
                    variant=f"onnxruntime {'sparse' if sparse else 'dense'}", precision=prec,
                    file_mb=path.stat().st_size / 1e6,
                    one=lambda s=rec.session, f=f1: s.run(outs, f),
                    many=lambda s=rec.session, f=fb: s.run(outs, f)))
        torch_row = _torch_row(model, args, tmp)
        if torch_row and "skipped" not in torch_row:
            engines.append(torch_row)
        for key, per_round in (("one", max(1, args.reps // ROUNDS)),
                               ("many", max(1, args.reps // (5 * ROUNDS)))):
            for e in engines:
                e[f"{key}_t"] = []
            for _ in range(ROUNDS):
                for e in engines:
                    # let the previous engine's pool threads (BLAS, onnxruntime) stop
                    # spinning, then one untimed call, then the timed ones
                    time.sleep(0.2)
                    e[key]()
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        e[key]()
                        e[f"{key}_t"].append(time.perf_counter() - t0)
    for e in engines:
        rows.append({k: v for k, v in e.items() if k not in ("one", "many", "one_t", "many_t")}
                    | {"batch1_ms": 1e3 * float(np.median(e["one_t"])),
                       "batch256_users_per_s": 256 / float(np.median(e["many_t"])),
                       "reps_batch1": len(e["one_t"]), "reps_batch256": len(e["many_t"])})
    if torch_row and "skipped" in torch_row:
        rows.append(torch_row)
    floor1 = 1e3 * weight_bytes / (read_gbs * 1e9)
    for r in rows:
        r.update(items=n, threads=args.threads, floor_batch1_ms=floor1,
                 floor_batch256_users_per_s=256 / (flops(256) / (gemm_gflops * 1e9)),
                 read_gbs=read_gbs, gemm_gflops=gemm_gflops, weight_mb=weight_bytes / 1e6)
        if "batch1_ms" in r:
            r["batch1_vs_floor"] = r["batch1_ms"] / floor1
    del ort
    return rows


def _torch_row(model, args, tmp):
    """The same weights exported by ``torch.onnx.export`` (when torch is installed): an
    engine dict with ``one``/``many`` callables, or a ``skipped`` row."""
    try:
        import torch
    except ImportError:
        return {"variant": "torch.onnx.export", "precision": "fp32", "skipped":
                "torch not installed (pip install torch==2.13.0)"}
    import onnxruntime as ort
    net = model.network
    p = {k: torch.from_numpy(v) for k, v in net.params.items()}
    L = len(net.layers)
    act = {"selu": torch.nn.functional.selu, "relu": torch.relu, "elu": torch.nn.functional.elu,
           "sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda z: z}[net.activation]
    mu = float(model.baseline.mu)
    cb = torch.from_numpy(model.baseline.col_bias)
    reg = float(model.baseline.reg_row)

    class Original(torch.nn.Module):
        def forward(self, x):
            mask = (x != 0).float()
            res = (x - mu - cb) * mask
            bu = res.sum(1, keepdim=True) / (mask.sum(1, keepdim=True) + reg)
            a = (res - bu) * mask
            for k in range(L):
                a = act(a @ p[f"W{k}"] + p[f"b{k}"])
            for k in range(L - 1, -1, -1):
                z = a @ p[f"W{k}"].T + p[f"c{k}"]
                a = act(z) if k else z
            s = torch.clamp(a + mu + bu + cb, 0.5, 5.0)
            masked = torch.where(mask > 0, torch.full_like(s, -float("inf")), s)
            v, i = torch.topk(masked, 10, dim=1)
            return i, v

    path = Path(tmp) / "torch.onnx"
    dummy = torch.zeros(1, net.n_inputs)
    torch.onnx.export(Original(), (dummy,), str(path), input_names=["ratings"],
                      output_names=["top_items", "top_scores"], opset_version=17,
                      dynamic_axes={"ratings": {0: "batch"}}, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    one = {"ratings": _users(1, net.n_inputs).toarray()}
    many = {"ratings": _users(256, net.n_inputs, seed=1).toarray()}
    return dict(variant="torch.onnx.export", precision="fp32", file_mb=path.stat().st_size / 1e6,
                one=lambda: sess.run(None, one), many=lambda: sess.run(None, many))


def run(items: int, threads: int, reps: int, layers: str) -> list[dict]:
    from report import run_child
    return run_child(__file__, ["--items", items, "--threads", threads, "--reps", reps,
                                "--layers", layers], threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--items", default="9066,45115")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--layers", default="1000,500,100")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.child:
        args.items, args.threads = int(args.items), int(args.threads)
        print(json.dumps(child(args)))
        return
    rows = []
    for items in (int(v) for v in args.items.split(",")):
        for threads in (int(v) for v in args.threads.split(",")):
            for r in run(items, threads, args.reps, args.layers):
                rows.append(r)
                if "skipped" in r:
                    print(f"{items:6d} items, {threads} thr  {r['variant']:22s} skipped: {r['skipped']}")
                    continue
                print(f"{items:6d} items, {threads} thr  {r['variant']:22s} {r['precision']}: "
                      f"batch-1 {r['batch1_ms']:7.2f} ms (floor {r['floor_batch1_ms']:.2f}), "
                      f"batch-256 {r['batch256_users_per_s']:8.0f} users/s "
                      f"(floor {r['floor_batch256_users_per_s']:.0f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
