"""Blends of the configurations a search found: greedy ensemble selection on validation.

The search (:mod:`npcf.autoencoder.selection`) trains many configurations and keeps one;
with ~100 trials on one validation carve the winner is partly noise, and the runners-up
make different errors. :func:`greedy_weights` is ensemble selection with replacement
(Caruana et al. 2004): start from nothing, add the candidate whose inclusion lowers the
validation RMSE of the running mean most, ``steps`` times; a candidate's weight is the
share of steps that picked it (non-negative, summing to 1, so a blend of clipped
predictions stays in the rating scale). :func:`holdout_gain` decides whether blending
pays on *this* data: weights fitted on one random half of the validation ratings are
scored on the other half against the single best model, over several halvings; the
search blends only when the mean gain is positive (on a small validation part the
weights over-fit and it does not).
"""
from __future__ import annotations

import numpy as np

#: greedy steps (the finest weight is 1 / STEPS)
STEPS = 20
#: random halvings of the validation ratings in :func:`holdout_gain`
REPEATS = 5


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def greedy_weights(P: np.ndarray, y: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Weights float64 (K,) of candidates ``P`` (n_ratings, K) predicting ``y`` (n,):
    greedy forward selection with replacement, ``steps`` picks, ties to the lower index."""
    P, y = np.asarray(P, np.float64), np.asarray(y, np.float64)
    if P.ndim != 2 or P.shape[0] != y.size or P.shape[1] < 1:
        raise ValueError(f"P must be (n_ratings, K>=1) matching y, got {P.shape} and {y.shape}")
    counts = np.zeros(P.shape[1], np.int64)
    total = np.zeros(P.shape[0], np.float64)
    for step in range(1, int(steps) + 1):
        trial = (total[:, None] + P) / step                  # the mean with each candidate
        errors = np.mean((trial - y[:, None]) ** 2, axis=0)
        k = int(np.argmin(errors))
        counts[k] += 1
        total += P[:, k]
    return counts / counts.sum()


def holdout_gain(P: np.ndarray, y: np.ndarray, repeats: int = REPEATS, seed: int = 0,
                 steps: int = STEPS) -> float:
    """Mean RMSE gain (positive: the blend is better) on held-out halves: for each of
    ``repeats`` seeded random halvings of the ratings, weights fitted on one half are
    scored on the other (both ways) against candidate 0 (the search's choice)."""
    P, y = np.asarray(P, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng([seed, 77])
    gains = []
    for _ in range(int(repeats)):
        half = rng.permutation(y.size) < y.size // 2
        for fit, score in ((half, ~half), (~half, half)):
            if not fit.any() or not score.any():
                continue
            w = greedy_weights(P[fit], y[fit], steps)
            gains.append(_rmse(P[score, 0], y[score]) - _rmse(P[score] @ w, y[score]))
    return float(np.mean(gains)) if gains else 0.0
