"""Estimate the gain of ideas that would need library changes, without changing it:
seed ensembles (average of K models' predictions) and a user+item blend, scored on
the validation split only (predict_at on the validation pairs; test never touched).

Usage: python benchmarks/tuning/ensemble.py 'USER_JSON' 'ITEM_JSON' [K]
Appends one JSON line per result to ensemble.jsonl and prints a summary.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

import npcf
from run import load

OUT = Path(__file__).with_name("ensemble.jsonl")


def main(ucfg, icfg, k):
    ds = load()
    s = ds.split
    v = s.validation.tocoo()
    rows, cols, t = v.row, v.col, v.data.astype(np.float64)

    def rmse(p):
        return float(np.sqrt(np.mean((np.clip(p, *ds.scale) - t) ** 2)))

    preds = {}
    for kind, cfg in (("user", ucfg), ("item", icfg)):
        preds[kind] = []
        for seed in range(k):
            t0 = time.perf_counter()
            c = dict(cfg, seed=seed)
            if "layers" in c:
                c["layers"] = tuple(c["layers"])
            m = npcf.AutoEncoder(**c).fit(s.train, s.validation, s.validation_input, scale=ds.scale)
            # item-based models predict from the training matrix (validation_input == train here)
            x = s.train if c.get("item_based") else s.validation_input
            p = m.predict_at(x, rows, cols).astype(np.float64)
            preds[kind].append(p)
            print(f"{kind} seed {seed}: {rmse(p):.4f} (best epoch {m.info['best_epoch']}, "
                  f"{time.perf_counter() - t0:.1f}s)", flush=True)
    res = {}
    for kind in ("user", "item"):
        single = [rmse(p) for p in preds[kind]]
        res[f"{kind}_single_mean"] = float(np.mean(single))
        for j in range(2, k + 1):
            res[f"{kind}_ens{j}"] = rmse(np.mean(preds[kind][:j], axis=0))
    res["blend_user0_item0"] = rmse(0.5 * preds["user"][0] + 0.5 * preds["item"][0])
    res[f"blend_user_ens{k}_item_ens{k}"] = rmse(0.5 * np.mean(preds["user"], axis=0)
                                                 + 0.5 * np.mean(preds["item"], axis=0))
    for kk, vv in res.items():
        print(f"{kk:32s} {vv:.4f}")
    with OUT.open("a") as f:
        f.write(json.dumps({"user": ucfg, "item": icfg, "k": k,
                            **{kk: round(vv, 5) for kk, vv in res.items()}}) + "\n")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
