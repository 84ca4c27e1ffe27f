"""Is a float16-weight variant worth offering? Weights stored as float16 with a Cast
to float32 in the graph (the only way onnxruntime's CPU provider runs them), timed
against the fp32 graph at 45,115 movies, batch 1 and batch 256, same process,
interleaved. Prints one JSON line.

    python benchmarks/fp16_check.py [--items 45115] [--reps 30]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from infer_speed import _model, _users

from npcf.serving.export import build_graph, fp16_weights


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=45115)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    model = _model(args.items, (1000, 500, 100))
    one, many = _users(1, args.items), _users(256, args.items, seed=1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for label in ("fp32", "fp16"):
            m = build_graph(model, sparse_input=True, top_k=10)
            if label == "fp16":
                m = fp16_weights(m)
            paths[label] = Path(tmp) / f"{label}.onnx"
            onnx.save(m, paths[label])
        sess = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for k, p in paths.items()}

        def feeds(x):
            idx = x.indices.reshape(x.shape[0], -1).astype(np.int64)
            return {"item_idx": idx, "item_rating": x.data.reshape(x.shape[0], -1)}
        f1, fb = feeds(one), feeds(many)
        times = {k: {"b1": [], "b256": []} for k in sess}
        for _ in range(args.reps):
            for k, s in sess.items():
                t0 = time.perf_counter()
                s.run(["top_items"], f1)
                times[k]["b1"].append(time.perf_counter() - t0)
        for _ in range(max(3, args.reps // 10)):
            for k, s in sess.items():
                t0 = time.perf_counter()
                s.run(["top_items"], fb)
                times[k]["b256"].append(time.perf_counter() - t0)
        ref = sess["fp32"].run(["scores"], fb)[0]
        half = sess["fp16"].run(["scores"], fb)[0]
        for k in sess:
            out[k] = {"file_mb": paths[k].stat().st_size / 1e6,
                      "batch1_ms": 1e3 * float(np.median(times[k]["b1"])),
                      "batch256_users_per_s": 256 / float(np.median(times[k]["b256"]))}
        out["max_abs_score_change"] = float(np.max(np.abs(half - ref)))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
