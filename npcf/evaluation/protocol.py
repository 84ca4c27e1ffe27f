"""Scoring a fitted model on a split.

:func:`evaluate` is the one streaming evaluation used by ``eval --evaluate`` and
``eval --baselines``: any ``score_fn(csr_rows) -> dense (B, n_items)`` (an ONNX
:class:`~npcf.serving.runtime.Recommender`'s ``scores``, :meth:`AutoEncoder.predict`, a
baseline's ``predict``) is fed the users' inputs batch by batch; RMSE/MAE,
ranking and beyond-accuracy metrics (see :mod:`npcf.evaluation.metrics`) are accumulated
without ever holding more than one batch of scores.

:func:`rating_metrics` (RMSE/MAE from ``predict_at``, only the held-out pairs computed)
and :func:`ranking_metrics` (recall and NDCG through :func:`evaluate`) are the summaries
``train`` writes to ``metrics.json`` and an ensemble uses for its validation figures.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.evaluation import metrics
from npcf.evaluation.ranking import clip_finite, rank
from npcf.utils.progress import open_progress
from npcf.utils.sparse import entry_rows

DEFAULT_KS = (10, 20, 100)


def rating_metrics(model, inputs: sp.csr_matrix, target: sp.csr_matrix) -> dict:
    """RMSE and MAE of ``model`` on the stored entries of ``target`` given ``inputs``."""
    target = sp.csr_matrix(target)
    rows = entry_rows(target)
    pred = model.predict_at(inputs, rows, target.indices)
    return {"rmse": metrics.rmse(pred, target.data), "mae": metrics.mae(pred, target.data),
            "n_ratings": int(target.nnz),
            "n_users": int(np.count_nonzero(np.diff(target.indptr)))}


def ranking_metrics(model, inputs: sp.csr_matrix, target: sp.csr_matrix, ks=(20, 100),
                    batch_size: int = 512) -> dict:
    """Recall@k and NDCG@k (every held-out item relevant, input items excluded): the
    ``train`` summary of a multinomial model, via :func:`evaluate`."""
    res = evaluate(model.predict, inputs, target, ks=ks, threshold=None, batch_size=batch_size,
                   examples=0)
    out = {f"{m}@{k}": res[f"{m}@{k}"] for k in ks for m in ("recall", "ndcg")}
    out.update(n_users=res["n_users"], n_ratings=res["n_ratings"])
    return out


def metric_keys(ks, rating: bool = True) -> list[str]:
    """The metric keys of :func:`evaluate`'s result, in display order."""
    keys = ["rmse", "mae"] if rating else []
    return keys + [f"{m}@{k}" for m in metrics.RANKING + metrics.BEYOND for k in ks]


def evaluate(score_fn, test_input: sp.spmatrix, test: sp.spmatrix, *, ks=DEFAULT_KS,
             item_counts=None, rating: bool = False, threshold: float | None = None,
             batch_size: int = 256, progress=None, examples: int = 3, n_example_items: int = 10,
             label: str = "evaluating", popularity_penalty: float = 0.0,
             penalty_counts=None, exclude=None, clip=None) -> dict:
    """Evaluate ``score_fn`` on the users with held-out ratings in ``test``.

    ``score_fn(csr_rows) -> (B, n_items)`` scores for CSR input rows (``test_input``
    rows of a batch of users). If ``score_fn.by_row_index`` is true it is called
    with the users' row indices instead (models that cannot fold in one row).
    ``rating``: the scores are predicted ratings, so RMSE/MAE on ``test``'s entries
    are reported (else ``rmse``/``mae`` are None). ``clip``: ``(min, max)`` the
    predicted ratings are clipped to (for RMSE/MAE and the examples' scores) when
    ``score_fn`` gives them unclipped to rank by (:meth:`npcf.AutoEncoder.rank_scores`).
    ``threshold``: held-out ratings >= it are relevant for the ranking metrics (None: all held-out items; see
    :func:`npcf.evaluation.metrics.default_threshold`). The user's input items are excluded
    from the ranking (:func:`npcf.evaluation.ranking.rank`). ``item_counts``: training
    rating count per item, for the popularity percentile (None: not reported) and the
    ``popularity_penalty`` of the ranking (``penalty_counts``, when given, for the
    penalty instead: a served model's own counts). ``exclude``: column indices never
    ranked (a served model's untrained items). ``progress``: a progress factory
    (:mod:`npcf.utils.progress`; None: silent). ``examples``: how many users (spread evenly over
    the evaluated ones) to return with their top ``n_example_items``.

    Returns a dict: ``rmse``, ``mae``, ``<metric>@K`` for the ranking metrics
    (``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate``: means over users with
    at least one relevant item) and beyond-accuracy ones (``coverage``, ``gini``,
    ``popularity``, ``personalization``: over all evaluated users' lists), ``n_users``
    (users with held-out ratings), ``n_ranked_users``, ``n_ratings``, ``n_relevant``,
    ``threshold``, ``ks`` and ``examples`` (dicts with ``user`` row index, ``items``
    column indices best first, ``scores``, ``hits``, ``n_input``, ``n_heldout``,
    ``relevant``).
    """
    test_input = sp.csr_matrix(test_input)
    test = sp.csr_matrix(test)
    if test_input.shape != test.shape:
        raise ValueError(f"test_input {test_input.shape} and test {test.shape} differ in shape")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError("cut-offs k must be positive integers")
    n_items = test.shape[1]
    kmax = min(ks[-1], n_items)
    rel = metrics.relevant(test, threshold)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    by_index = bool(getattr(score_fn, "by_row_index", False))
    pick = np.unique(np.linspace(0, users.size - 1, min(examples, users.size)).round()
                     .astype(np.int64)) if users.size and examples > 0 else np.zeros(0, np.int64)
    example_users = set(users[pick].tolist())

    sums = {f"{m}@{k}": 0.0 for k in ks for m in metrics.RANKING}
    exposure = {k: np.zeros(n_items, np.int64) for k in ks}
    n_ranked = 0
    sq = ab = 0.0
    n_err = 0
    shown = []
    with open_progress(progress, users.size, label) as bar:
        for s in range(0, users.size, batch_size):
            u = users[s:s + batch_size]
            x = test_input[u]
            sc = np.asarray(score_fn(u) if by_index else score_fn(x))
            if sc.shape != (u.size, n_items):
                raise ValueError(f"score_fn returned shape {sc.shape}, "
                                 f"expected {(u.size, n_items)}")
            t = test[u]
            if rating:
                d = clip_finite(sc[entry_rows(t), t.indices], clip).astype(np.float64) - t.data
                sq += float(np.dot(d, d))
                ab += float(np.abs(d).sum())
                n_err += d.size
            top, top_scores = rank(sc, kmax, seen=x, exclude=exclude, penalty=popularity_penalty,
                                   item_counts=item_counts if penalty_counts is None
                                   else penalty_counts)
            top_scores = clip_finite(top_scores, clip)
            valid = top >= 0
            r = rel[u]
            n_rel = np.diff(r.indptr)
            hits = metrics.hits_at(np.where(valid, top, 0), r) & valid
            ranked = n_rel > 0
            n_ranked += int(ranked.sum())
            for k in ks:
                per = metrics.ranking_from_hits(hits, n_rel, k)
                for m in metrics.RANKING:
                    sums[f"{m}@{k}"] += float(per[m][ranked].sum())
                exposure[k] += metrics.exposure(top[:, :k], n_items, valid[:, :k])
            for j in np.flatnonzero(np.isin(u, list(example_users))):
                keep = valid[j, :n_example_items]
                shown.append({
                    "user": int(u[j]),
                    "items": top[j, :n_example_items][keep].tolist(),
                    "scores": [float(v) for v in top_scores[j, :n_example_items][keep]],
                    "hits": hits[j, :n_example_items][keep].tolist(),
                    "n_input": int(x.indptr[j + 1] - x.indptr[j]),
                    "n_heldout": int(t.indptr[j + 1] - t.indptr[j]),
                    "relevant": r.indices[r.indptr[j]:r.indptr[j + 1]].tolist(),
                })
            bar.update(u.size)

    nan = float("nan")
    result: dict = {
        "rmse": (float(np.sqrt(sq / n_err)) if n_err else nan) if rating else None,
        "mae": (ab / n_err if n_err else nan) if rating else None,
    }
    for m in metrics.RANKING:
        for k in ks:
            result[f"{m}@{k}"] = sums[f"{m}@{k}"] / n_ranked if n_ranked else nan
    pct = None if item_counts is None else np.asarray(item_counts)
    for k in ks:
        c = exposure[k]
        result[f"coverage@{k}"] = metrics.coverage(c)
        result[f"gini@{k}"] = metrics.gini(c)
        result[f"popularity@{k}"] = nan if pct is None else metrics.mean_popularity(c, pct)
        result[f"personalization@{k}"] = metrics.personalization(c, int(users.size),
                                                                 min(k, n_items))
    result.update(n_users=int(users.size), n_ranked_users=n_ranked, n_ratings=int(test.nnz),
                  n_relevant=int(rel.nnz), threshold=threshold, ks=list(ks), examples=shown)
    return result
