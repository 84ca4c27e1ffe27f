"""Multinomial (Mult-DAE) settings on the strong-generalization validation users of
movies-small (the protocol of benchmarks/quality.py; the test users are never scored).
Prints one JSON line per config: best validation NDCG@100 and its epoch."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import npcf  # noqa: E402
from quality import strong_generalization_split  # noqa: E402

s = strong_generalization_split()
BASE = dict(loss="multinomial", n_epochs=100, patience=10, batch_size=128)
GRID = [
    dict(layers=(600, 200), activation="tanh", noise_level=0.5),
    dict(layers=(600,), activation="tanh", noise_level=0.5),
    dict(layers=(256,), activation="tanh", noise_level=0.5),
    dict(layers=(600,), activation="tanh", noise_level=0.5, weight_decay=1e-4),
    dict(layers=(600,), activation="tanh", noise_level=0.5, weight_decay=1e-3),
    dict(layers=(600,), activation="tanh", noise_level=0.3),
    dict(layers=(600,), activation="tanh", noise_level=0.7),
    dict(layers=(600,), activation="selu", noise_level=0.5),
    dict(layers=(600,), activation="tanh", noise_level=0.5, tied=False),
    dict(layers=(1000,), activation="tanh", noise_level=0.5),
    dict(layers=(600,), activation="tanh", noise_level=0.5, batch_size=32),
    dict(layers=(600,), activation="tanh", noise_level=0.5, lr=3e-3),
]
for cfg in GRID:
    t0 = time.perf_counter()
    model = npcf.AutoEncoder(**dict(BASE, **cfg)).fit(s.train, s.validation, s.validation_input)
    best = max(h["val_ndcg"] for h in model.history)
    print(json.dumps({"cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                      "best_val_ndcg@100": round(best, 4), "best_epoch": model.info["best_epoch"],
                      "epochs": len(model.history),
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)