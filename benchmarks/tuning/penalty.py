"""Popularity penalty for the multinomial model on the strong-generalization split:
validation-user NDCG@100 and coverage@10 for a grid of beta (ranking score = score -
beta * log(1 + training count), what ``eval --generate --popularity_penalty`` exports).
The test columns are printed for the record only; beta is chosen on validation.

    python benchmarks/tuning/penalty.py > benchmarks/tuning/penalty.log
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from quality import MULT, strong_generalization_split  # noqa: E402

from npcf import AutoEncoder  # noqa: E402
from npcf.evaluation.protocol import evaluate  # noqa: E402

s = strong_generalization_split()
counts = np.bincount(s.train.indices, minlength=s.train.shape[1])
log_pop = np.log1p(counts).astype(np.float32)
models = {"mult": AutoEncoder(**MULT).fit(s.train, s.validation, s.validation_input)}


def scores(model, beta):
    return lambda X: model.predict(X) - beta * log_pop


print("model beta | val ndcg@100 cov@10 | test ndcg@100 cov@10")
for name, model in models.items():
    for beta in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0):
        v = evaluate(scores(model, beta), s.validation_input, s.validation, ks=(10, 100),
                     item_counts=counts, threshold=None)
        t = evaluate(scores(model, beta), s.test_input, s.test, ks=(10, 100),
                     item_counts=counts, threshold=None)
        print(f"{name} {beta:4.1f} | {v['ndcg@100']:.4f} {v['coverage@10']:.4f} | "
              f"{t['ndcg@100']:.4f} {t['coverage@10']:.4f}", flush=True)
