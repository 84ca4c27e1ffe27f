"""Cross-fitting: the search's best configurations refitted on K folds of every labelled
rating, then stacked on their out-of-fold predictions.

The search (:mod:`npcf.autoencoder.selection`) judges configurations on one validation
carve (10% of the training ratings); on small data that carve is a noisy judge, and the
chosen model never trains on it. :func:`crossfit` instead cuts the training and
validation ratings together into ``folds`` random folds and fits each configuration
``folds`` times, each time on all folds but one and early-stopped on the one left out.
The models' predictions of their left-out folds (out-of-fold predictions, one for every
labelled rating) are an honest figure for each configuration and the data the blend
weights are fitted on (:func:`npcf.autoencoder.blend.fit_stack`); the final predictor
averages a configuration's fold models, so every rating has trained all but one of them.
Fold fits run in the search's worker processes.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from npcf.autoencoder import blend, selection
from npcf.errors import NpcfError
from npcf.utils import parallel
from npcf.utils.progress import open_progress

#: folds of the labelled ratings (each configuration is fitted this many times)
FOLDS = 5
#: fewer labelled ratings than this per fold: no cross-fitting (too few to stop early on)
MIN_PER_FOLD = 20


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold (int64 in [0, folds)) of each of ``n`` ratings: a seeded random permutation
    cut into ``folds`` near-equal parts."""
    if not 2 <= folds <= n:
        raise NpcfError(f"cross-fitting needs 2 <= folds <= ratings, got {folds} folds "
                        f"of {n} ratings")
    out = np.empty(n, np.int64)
    out[np.random.default_rng([seed, 2718]).permutation(n)] = np.arange(n) % folds
    return out


def fold_parts(A: sp.coo_matrix, fold: np.ndarray, k: int) -> tuple:
    """``(train, held)``: CSR matrices of ``A``'s ratings outside and inside fold ``k``."""
    parts = []
    for keep in (fold != k, fold == k):
        parts.append(sp.csr_matrix((A.data[keep], (A.row[keep], A.col[keep])), shape=A.shape))
    return tuple(parts)


def _fit_fold(kw: dict, k: int, data: tuple | None = None):
    """``(model, out-of-fold predictions float64, seconds)`` of configuration ``kw`` on
    fold ``k``; ``data`` ``(cls, A coo, fold, fit_kw)`` (default: the worker's inherited
    copy)."""
    cls, A, fold, fit_kw = data if data is not None else selection.shared_data()
    t0 = time.perf_counter()
    train, held = fold_parts(A, fold, k)
    model = cls(**kw).fit(train, held, **fit_kw)
    at = fold == k
    pred = model.predict_at(train, A.row[at], A.col[at]).astype(np.float64)
    return model, pred, time.perf_counter() - t0


def crossfit(cls, configs: list[dict], A, folds: int = FOLDS, seed: int = 0,
             fit_kw: dict | None = None, workers: int | None = None, progress=None):
    """Fit every configuration (estimator keywords) on ``folds`` folds of sparse ``A``
    (all labelled ratings, users x items).

    Returns ``(models, P, fold)``: ``models[c][k]`` the fitted model of configuration
    ``c`` without fold ``k``; ``P`` float64 (nnz, C) the out-of-fold predictions, rows in
    ``A.tocoo()``'s order; ``fold`` int64 (nnz,) each rating's fold. ``workers``: fold
    fits at once in forked processes (default :func:`npcf.utils.parallel.threads`);
    the result does not depend on it.
    """
    A = sp.csr_matrix(A).tocoo()
    fold = fold_of(A.nnz, int(folds), seed)
    data = (cls, A, fold, dict(fit_kw or {}))
    jobs = [(c, k) for c in range(len(configs)) for k in range(int(folds))]
    models = [[None] * int(folds) for _ in configs]
    P = np.zeros((A.nnz, len(configs)), np.float64)
    workers = selection.usable_workers(parallel.threads() if workers is None else workers,
                                       len(jobs))
    with open_progress(progress, len(jobs), "cross-fitting") as bar, \
            selection.trial_pool(workers, data) as pool:
        futures = [pool.submit(_fit_fold, configs[c], k) for c, k in jobs] if pool else None
        for j, (c, k) in enumerate(jobs):
            model, pred, _ = selection.trial_result(futures[j]) if futures else \
                _fit_fold(configs[c], k, data)
            models[c][k] = model
            P[fold == k, c] = pred
            bar.update(1)
    return models, P, fold


def _configs(chosen, pool: list, base, size: int) -> list[dict]:
    """Estimator keywords of the chosen model, the pool's next best models of its
    orientation, and one of the other orientation (the pool's best, else the base's
    defaults there): ``size`` in all, distinct, each trained for ``base``'s epochs."""
    other = next((m for _, _, m in pool if m.item_based != chosen.item_based), None)
    if other is None:
        other = type(base)(**dict(base.get_params(), item_based=not chosen.item_based))
    same = [m for _, _, m in pool if m is not chosen and m.item_based == chosen.item_based]
    out = []
    for m in [chosen, *same][:max(1, size - 1)] + [other]:
        kw = dict(m.get_params(), n_epochs=base.n_epochs, ensemble=1)
        if kw not in out:
            out.append(kw)
    return out


def affordable(configs: list[dict], trials: list[dict], folds: int, seconds: float | None,
               workers: int) -> list[dict]:
    """The longest prefix of ``configs`` whose fold fits should end within ``seconds``
    (None: all): each fit is expected to take as long as the configuration's slowest
    trial in the search (``trials``, as :func:`~npcf.autoencoder.selection.select`
    returns them; a configuration it never trained: the slowest so far), ``workers`` at
    a time. May be empty."""
    if seconds is None:
        return list(configs)
    keys = [k for k in selection.SPACE if any(k in t for t in trials)]
    slowest: dict = {}
    for t in trials:
        key = tuple(repr(t.get(k)) for k in keys)
        slowest[key] = max(slowest.get(key, 0.0), float(t.get("seconds") or 0.0))
    out, total, worst = [], 0.0, 0.0
    for cfg in configs:
        key = tuple(repr(selection.plain({k: cfg.get(k)})[k]) for k in keys)
        worst = max(worst, slowest.get(key, worst))
        total += folds * slowest.get(key, worst) / max(1, workers)
        if total > seconds:
            break
        out.append(cfg)
    return out


def stacked(chosen, pool: list, base, X, validation, *, folds: int = FOLDS, size: int = 6,
            fit_kw: dict | None = None, progress=None, trials: list | None = None,
            seconds: float | None = None):
    """The search's result cross-fitted and stacked: configurations from :func:`_configs`
    fitted on ``folds`` folds of ``X + validation`` (:func:`crossfit`); those the greedy
    blend weighs kept; their out-of-fold predictions combined by the better, in
    cross-validation over the folds, of constant greedy weights and a stack whose weights
    follow the pair's rating counts (:func:`npcf.autoencoder.blend.fit_stack`). Returns a
    new estimator (fold 0 of the first kept configuration, the other fold models its
    blend members; ``info`` from ``chosen`` plus ``crossfit``, ``blend`` and the
    cross-validated ``validation`` figures). ``seconds``: what the fold fits may take,
    judged from the search's ``trials`` (:func:`affordable`); None (no configuration
    affordable) when the chosen one's folds alone would not fit, or when there are fewer
    than :data:`MIN_PER_FOLD` labelled ratings per fold.
    """
    A = (sp.csr_matrix(X) + sp.csr_matrix(validation)).tocsr()
    A.eliminate_zeros()
    if A.nnz < MIN_PER_FOLD * folds:
        return None
    workers = selection.usable_workers(parallel.threads(), folds)
    configs = affordable(_configs(chosen, pool, base, size), trials or [], folds, seconds,
                         workers)
    if not configs:
        return None
    models, P, fold = crossfit(type(chosen), configs, A, folds, chosen.seed, fit_kw,
                               progress=progress)
    coo = A.tocoo()
    y = coo.data.astype(np.float64)
    scale = chosen.scale
    w = blend.greedy_weights(P, y)
    keep = np.flatnonzero(w > 0)
    Pk = P[:, keep]
    shares = folds / (folds - 1)             # a fold model saw (folds-1)/folds of the counts
    counts = np.zeros((A.nnz, 2))
    for k in range(folds):
        train = fold != k
        rows, cols = coo.row[~train], coo.col[~train]
        counts[~train, 0] = np.bincount(coo.row[train], minlength=A.shape[0])[rows] * shares
        counts[~train, 1] = np.bincount(coo.col[train], minlength=A.shape[1])[cols] * shares
    G = blend.support_basis(counts[:, 0], counts[:, 1])
    coef, lam, stack_cv = blend.fit_stack(Pk, G, y, fold, scale=scale)
    greedy_cv = blend.greedy_cv(Pk, y, fold, scale=scale)
    if greedy_cv <= stack_cv:                # constant weights: as good, and simpler
        coef = np.zeros((keep.size + 1, G.shape[1]))
        coef[:-1, 0] = blend.greedy_weights(Pk, y)
        kind, cv = "greedy", greedy_cv
    else:
        kind, cv = "support", stack_cv
    fitted = [m for c in keep for m in models[c]]
    per_model = np.repeat(coef[:-1], folds, axis=0) / folds
    out = fitted[0]
    out.blend_members, out.blend_weights, out.blend_offset = fitted[1:], per_model, coef[-1]
    pred = np.clip(blend.stack_apply(Pk, G, coef), *scale)
    single = [float(np.sqrt(np.mean((np.clip(P[:, c], *scale) - y) ** 2)))
              for c in range(P.shape[1])]
    out.info = dict(chosen.info, validation={
        "val_rmse": cv, "val_mae": float(np.mean(np.abs(pred - y))), "ratings": int(A.nnz),
        "out_of_fold": True})
    out.info["blend"] = {
        "kind": kind, "folds": int(folds), "candidates": len(configs),
        "configurations": [int(c) for c in keep], "lambda": lam if kind == "support" else None,
        "out_of_fold_rmse": [round(s, 6) for s in single], "cv_rmse": round(cv, 6),
        "cv_rmse_greedy": round(greedy_cv, 6), "cv_rmse_support": round(stack_cv, 6),
        "used": True, "weights": [round(float(v), 4) for v in (G @ coef[:-1].T).mean(0)],
        "members": [selection.plain({k: configs[c][k] for k in selection.SPACE if k in configs[c]})
                    for c in keep]}
    return out
