"""Run AutoEncoder configs on the movies-small validation split and log them.

Usage:
    python benchmarks/tuning/run.py NAME '{"weight_decay": 1e-2}' [NAME2 '{...}' ...]

Each (name, JSON overrides of npcf.autoencoder.estimator.DEFAULTS) pair is fitted exactly as
``cli.py train`` does (with_validation(load_dataset(..., seed=0), seed=0)) and one
JSON line is appended to benchmarks/tuning/results.jsonl: name, overrides, best
val RMSE, best epoch, epochs run, total seconds, mean seconds/epoch, full val curve.
Only the validation split is ever scored; the test split is never touched.
Configs run sequentially in this one process (the data are loaded once).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import npcf
from npcf.data import load_dataset
from npcf.data.dataset import with_validation

DATA = "/work/shared/datasets/movies-small/ratings.csv"
LOG = Path(__file__).with_name("results.jsonl")


def load():
    ds = with_validation(load_dataset(DATA, seed=0), seed=0)
    return ds


def run_one(ds, name: str, cfg: dict) -> dict:
    s = ds.split
    cfg = dict(cfg)
    if "layers" in cfg:
        cfg["layers"] = tuple(cfg["layers"])
    t0 = time.perf_counter()
    m = npcf.AutoEncoder(**cfg).fit(s.train, s.validation, s.validation_input, scale=ds.scale)
    secs = time.perf_counter() - t0
    curve = [r["val_rmse"] for r in m.history]
    i = int(np.nanargmin(curve)) if curve else -1
    rec = {"name": name, "cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
           "best_val_rmse": round(float(curve[i]), 5) if curve else None,
           "best_epoch": i + 1, "epochs_run": len(curve), "seconds": round(secs, 1),
           "sec_per_epoch": round(float(np.mean([r["seconds"] for r in m.history])), 2),
           "curve": [round(float(c), 4) for c in curve],
           "train_loss": [round(float(r["train_loss"]), 4) for r in m.history]}
    with LOG.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{name:32s} {rec['best_val_rmse']:.4f} ep {rec['best_epoch']:>2}/{rec['epochs_run']:<2} "
          f"{secs:6.1f}s ({rec['sec_per_epoch']}s/ep)  {json.dumps(rec['cfg'])}", flush=True)
    return rec


def main(argv):
    if len(argv) % 2:
        raise SystemExit(__doc__)
    ds = load()
    for name, js in zip(argv[::2], argv[1::2]):
        try:
            run_one(ds, name, json.loads(js))
        except Exception as err:  # noqa: BLE001 - log and keep going
            with LOG.open("a") as f:
                f.write(json.dumps({"name": name, "cfg": json.loads(js), "error": repr(err)}) + "\n")
            print(f"{name:32s} ERROR {err!r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
