"""Which int8 scheme? Four ways to store an npcf graph in int8, side by side on a model
trained on movies-small (user-based, the estimator's defaults, seed 0), against its fp32
export, both input signatures, top-10 in the graph:

- ``dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (per-channel int8 weights,
  activations quantized with one scale per *batch*: the exporter before issue 13);
- ``static``: ``quantize_static``, QDQ, activation scales calibrated (MinMax) on all
  training rows (batches of 256); per-tensor weights (with ``per_channel=True``
  the quantized graph fails at run time: the Gather of W0 rows gets a per-axis
  QuantizeLinear whose scale has n_items entries, onnxruntime 1.32);
- ``weight-only``: int8 weights + per-channel scales, ``DequantizeLinear`` to float32,
  float32 compute;
- ``per-row``: :func:`npcf.serving.quantize.quantize_int8` (int8 weights, activations
  quantized one scale per user row).

Per scheme: file size, max |score - fp32| on the test users, their mean top-10 overlap
with fp32, test RMSE change, batch dependence (max |a user's scores alone - the same user
in a batch of 256|), dense vs sparse (share of users with equal top-10, max score
difference), and batch-1 ms / batch-256 users/s at ``--threads`` (default 1; medians of
interleaved rounds, every engine timed in the same process). Prints JSON lines.

    python benchmarks/int8_check.py [--data ../shared/datasets/movies-small/ratings.csv]
                                    [--threads 1] [--reps 40] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from npcf.serving.export import export
from npcf.serving.quantize import _axis, _uses, symmetric_int8
from npcf.serving.runtime import Recommender

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "datasets" / "movies-small" / "ratings.csv"
SCHEMES = ("fp32", "dynamic", "static", "weight-only", "per-row")


def weight_only(m: onnx.ModelProto) -> onnx.ModelProto:
    """Every Gather/Gemm weight as int8 + per-channel scale, DequantizeLinear to float."""
    g = m.graph
    uses, inits, head = _uses(g), [], []
    for name, (w, kinds) in uses.items():
        axis = _axis(kinds)
        axis = 0 if axis is None else axis           # any axis: the weight is dequantized
        q, s = symmetric_int8(w, axis)
        inits += [numpy_helper.from_array(q, name + "_int8"),
                  numpy_helper.from_array(s, name + "_scale")]
        head.append(helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale"],
                                     [name], name=f"{name}_dequantize", axis=axis))
    keep = [t for t in g.initializer if t.name not in uses]
    del g.initializer[:]
    g.initializer.extend(keep + inits)
    nodes = head + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return m


class _Rows:
    """onnxruntime.quantization CalibrationDataReader over feeds of 256-row batches."""

    def __init__(self, feeds):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def _write(model, scheme, sparse, path: Path, fp32_path: Path, calib):
    import onnxruntime.quantization as q
    if scheme == "fp32":
        return export(model, path, sparse_input=sparse, top_k=10)
    if scheme == "per-row":
        return export(model, path, sparse_input=sparse, top_k=10, precision="int8")
    if scheme == "weight-only":
        m = weight_only(onnx.load(fp32_path))
        onnx.save(m, path)
        return path
    logging.getLogger().setLevel(logging.ERROR)
    if scheme == "dynamic":
        q.quantize_dynamic(fp32_path, path, weight_type=q.QuantType.QInt8, per_channel=True,
                           op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    else:
        rec = Recommender.load(fp32_path)
        feeds = [rec._feeds(calib[s:s + 256]) for s in range(0, calib.shape[0], 256)]
        q.quantize_static(fp32_path, path, _Rows(feeds), quant_format=q.QuantFormat.QDQ,
                          per_channel=False, weight_type=q.QuantType.QInt8,
                          activation_type=q.QuantType.QUInt8,
                          op_types_to_quantize=["Gemm", "Gather"],
                          calibrate_method=q.CalibrationMethod.MinMax)
    return path


def _session(path, threads: int):
    """A session without onnxruntime's memory arena: ten sessions each keeping the arena
    of a 256-user batch of long histories took > 16 GB (OOM-killed)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _top(rec, x):
    return rec.recommend(x, k=10)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--speed_items", type=int, default=45115,
                    help="also time fp32 vs per-row int8 here with benchmarks/infer_speed.py "
                         "(random weights, 1000-500-100); 0: skip")
    ap.add_argument("--write", action="store_true",
                    help="write the tables into benchmarks/RESULTS.md and results.json")
    args = ap.parse_args(argv)
    import npcf
    from npcf.data import load_dataset
    ds = load_dataset(args.data, split="random", test_size=0.1, validation_size=0.1, seed=0)
    s = ds.split
    t0 = time.perf_counter()
    model = npcf.AutoEncoder(seed=0).fit(s.train, s.validation, s.validation_input,
                                         scale=ds.scale, items=ds.items)
    fit_s = time.perf_counter() - t0
    users = np.flatnonzero(np.diff(s.test_input.indptr))
    x, test = s.test_input[users], s.test[users]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        recs = {}
        for sparse in (False, True):
            fp32_path = Path(tmp) / f"fp32_{sparse}.onnx"
            for scheme in SCHEMES:
                path = Path(tmp) / f"{scheme}_{sparse}.onnx"
                _write(model, scheme, sparse, path, fp32_path, s.train)
                rec = Recommender.load(path, threads=args.threads)
                rec.session = _session(path, args.threads)
                recs[scheme, sparse] = rec
        ref = {sp_: recs["fp32", sp_].scores(x) for sp_ in (False, True)}
        ref_top = _top(recs["fp32", False], x)
        coo = test.tocoo()
        for scheme in SCHEMES:
            r = {"scheme": scheme, "threads": args.threads, "n_users": int(x.shape[0]),
                 "n_items": int(x.shape[1]), "layers": list(model.network.layers),
                 "fit_s": fit_s}
            sc, tops = {}, {}
            for sparse in (False, True):
                rec, sig = recs[scheme, sparse], "sparse" if sparse else "dense"
                sc[sparse] = rec.scores(x, batch_size=256)
                tops[sparse] = _top(rec, x)
                alone = np.stack([rec.scores(x[u:u + 1], batch_size=1)[0] for u in range(8)])
                r[f"{sig}_file_mb"] = rec.path.stat().st_size / 1e6
                r[f"{sig}_max_abs_vs_fp32"] = float(np.max(np.abs(sc[sparse] - ref[sparse])))
                r[f"{sig}_top10_overlap_vs_fp32"] = float(np.mean(
                    [len(set(a) & set(b)) / 10 for a, b in zip(tops[sparse], ref_top)]))
                pred = sc[sparse][coo.row, coo.col]
                r[f"{sig}_test_rmse"] = float(np.sqrt(np.mean((pred - coo.data) ** 2)))
                r[f"{sig}_batch_dependence"] = float(np.max(np.abs(alone - sc[sparse][:8])))
            r["dense_vs_sparse_top10_equal"] = float(np.mean(np.all(tops[False] == tops[True], 1)))
            r["dense_vs_sparse_max_abs"] = float(np.max(np.abs(sc[False] - sc[True])))
            rows.append(r)
        _time(recs, x, rows, args.reps)
    for r in rows:
        print(json.dumps(r))
    speed = []
    if args.speed_items:
        import infer_speed
        speed = infer_speed.run(args.speed_items, args.threads, args.reps, "1000,500,100")
        for r in speed:
            print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps({"schemes": rows, "speed": speed}, indent=2))
    if args.write:
        import report
        report.publish("int8", markdown(rows, speed), {"schemes": rows, "speed": speed})
    return rows


def markdown(rows, speed) -> str:
    import report
    m, r0 = report.machine(), rows[0]
    table = []
    for r in rows:
        for sig in ("dense", "sparse"):
            table.append((r["scheme"], sig, f"{r[f'{sig}_file_mb']:.2f}",
                          f"{r[f'{sig}_max_abs_vs_fp32']:.1e}",
                          f"{r[f'{sig}_top10_overlap_vs_fp32']:.4f}",
                          f"{r[f'{sig}_test_rmse'] - r0[f'{sig}_test_rmse']:+.5f}",
                          f"{r[f'{sig}_batch_dependence']:.1e}",
                          f"{r['dense_vs_sparse_top10_equal']:.3f}" if sig == "sparse" else "",
                          f"{r['dense_vs_sparse_max_abs']:.1e}" if sig == "sparse" else "",
                          f"{r[f'{sig}_batch1_ms']:.2f}", f"{r[f'{sig}_batch256_users_per_s']:,.0f}"))
    out = [report.md_table(
        ("scheme", "input", "file MB", "max abs score change vs fp32", "top-10 overlap vs fp32",
         "test RMSE change", "batch dependence (max abs)", "dense = sparse top-10 (share of users)",
         "dense vs sparse max abs", "batch-1 ms", "batch-256 users/s"), table, "llrrrrrrrrr"), "",
        f"`python benchmarks/int8_check.py --threads {r0['threads']} --write`, {report.now()}; "
        f"{m['cpu']}, {m['cores']} cores, {r0['threads']} thread(s), one process, engines timed "
        f"interleaved. Model: movies-small user-based, estimator defaults (layers "
        f"{'-'.join(map(str, r0['layers']))}, tied), {r0['n_users']} test users x "
        f"{r0['n_items']:,} movies, top-10 in the graph. `static` calibrates on all "
        "training rows with per-tensor weights (see the module docstring). "
        "Batch dependence = max |a user's scores alone - the same user in a batch of 256| "
        "(8 users); fp32 itself shows one float32 ulp. Sessions run without onnxruntime's "
        "memory arena (ten arenas sized for 256 long-history users exceed this machine's "
        "24 GB), which slows every batch-256 figure of this table alike."]
    if speed:
        rows_s = [(f"{r['items']:,}", r["variant"], r["precision"], f"{r['file_mb']:.1f}",
                   f"{r['batch1_ms']:.2f}", f"{r['batch256_users_per_s']:,.0f}")
                  for r in speed if "batch1_ms" in r and r["variant"].startswith("onnxruntime")]
        out += ["", report.md_table(("movies", "engine", "precision", "file MB", "batch-1 ms",
                                     "batch-256 users/s"), rows_s, "rllrrr"), "",
                "Same run, `benchmarks/infer_speed.py` at this scale (random weights, "
                "1000-500-100, tied, top-10; batch 1 = one user with 100 ratings, batch 256 = "
                "256 such users; int8 = this scheme)."]
    return "\n".join(out)


def _time(recs, x, rows, reps, rounds=5):
    """Batch-1 ms and batch-256 users/s per (scheme, signature), interleaved rounds."""
    one, many = x[np.argmax(np.diff(x.indptr) > 50)][:1], x[:256]
    outs = ["top_items", "top_scores"]
    eng = {k: (rec.session, rec._feeds(one), rec._feeds(many)) for k, rec in recs.items()}
    t = {k: ([], []) for k in eng}
    for _ in range(rounds):
        for k, (sess, f1, fb) in eng.items():
            time.sleep(0.1)
            sess.run(outs, f1)
            for _ in range(max(1, reps // rounds)):
                t0 = time.perf_counter()
                sess.run(outs, f1)
                t[k][0].append(time.perf_counter() - t0)
            for _ in range(max(1, reps // (10 * rounds))):
                t0 = time.perf_counter()
                sess.run(outs, fb)
                t[k][1].append(time.perf_counter() - t0)
    for r in rows:
        for sparse in (False, True):
            sig = "sparse" if sparse else "dense"
            b1, b256 = t[r["scheme"], sparse]
            r[f"{sig}_batch1_ms"] = 1e3 * float(np.median(b1))
            r[f"{sig}_batch256_users_per_s"] = many.shape[0] / float(np.median(b256))


if __name__ == "__main__":
    main()
