"""Evaluation metrics: rating prediction, top-N ranking and beyond-accuracy.

Rating prediction: :func:`rmse`, :func:`mae` on 1-D arrays of predictions and
true ratings.

Top-N ranking (binary relevance). The functions taking ``scores`` expect dense
``scores`` (B, n) in which the items that must not be recommended (the user's
input) are already ``-inf``, and a CSR ``heldout`` (B, n) whose *stored entries*
are the relevant items (make it with :func:`relevant`). Per-row values are NaN
for rows without relevant items; average with ``np.nanmean``.

* ``precision@K`` = hits in the top K / K
* ``recall@K``    = hits / min(K, |relevant|)  (Liang et al. 2018, so 1.0 is reachable)
* ``ndcg@K``      = DCG@K / ideal DCG@K, gains 1/log2(rank + 1)
* ``map@K``       = sum over hit ranks i <= K of precision@i, / min(K, |relevant|)
* ``hit_rate@K``  = 1 if at least one relevant item is in the top K

Relevance: for explicit ratings an item is relevant when its held-out rating is
>= a threshold, by default 4/5 of the scale's maximum (4 stars of 5 on MovieLens, 80 on
a 1-100 scale; :func:`default_threshold`); with a single rating value (implicit data)
every held-out item is relevant (threshold None).

Beyond accuracy, from the per-item counts ``c_i`` of how often item i appears in
the users' top-K lists (:func:`exposure`): catalog :func:`coverage` (share of items
recommended at least once), the :func:`gini` index of ``c`` over the whole catalog
(0: every item equally often, -> 1: one item everywhere), the mean
:func:`popularity_percentile` of recommended items (by training rating counts, 0 =
least, 100 = most popular) and :func:`personalization` = 1 - mean pairwise overlap
of two users' lists = 1 - sum_i c_i (c_i - 1) / (U (U - 1) K), exact without a U x U
matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.evaluation.ranking import top_k
from npcf.utils.sparse import dense_mask, entry_rows

#: Default relevance threshold as a share of the rating scale's maximum (4 of 5 stars).
RELEVANT_SHARE = 0.8

RANKING = ("precision", "recall", "ndcg", "map", "hit_rate")
BEYOND = ("coverage", "gini", "popularity", "personalization")


# ------------------------------------------------------------------ rating prediction
def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error of two 1-D arrays."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error of two 1-D arrays."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


# --------------------------------------------------------------------------- relevance
def default_threshold(scale=None, implicit: bool = False) -> float | None:
    """Relevance threshold: :data:`RELEVANT_SHARE` of the scale's maximum (4.0 on 1-5
    and 0.5-5, 80 on 1-100), None when every held-out item is relevant.

    ``scale``: (min, max) of the ratings (the declared scale, else the observed range:
    :meth:`npcf.data.Dataset.rating_range`); None or a single value (implicit data) gives
    None. A scale reaching below 0 (e.g. -2..2, -5..-1) takes the same share of its span
    from the minimum (1.2, -1.8). ``implicit``: the data is implicit whatever its values.
    """
    if implicit or scale is None:
        return None
    lo, hi = float(scale[0]), float(scale[1])
    if not hi > lo:
        return None
    return RELEVANT_SHARE * hi if lo >= 0 else lo + RELEVANT_SHARE * (hi - lo)


def resolve_threshold(threshold: float | None, scale=None, implicit: bool = False):
    """The relevance threshold for a request: None -> :func:`default_threshold`; a value
    <= 0, or on a scale reaching below 0 at or below its minimum, -> None (every held-out
    item relevant); else ``threshold`` (negative ones too, on a scale such as -2..2)."""
    if threshold is None:
        return default_threshold(scale, implicit)
    floor = 0.0 if scale is None else min(0.0, float(scale[0]))
    return None if threshold <= floor else float(threshold)


def relevant(heldout: sp.spmatrix, threshold: float | None = None) -> sp.csr_matrix:
    """CSR of the relevant held-out entries (value 1): all, or those >= ``threshold``."""
    m = sp.csr_matrix(heldout)
    keep = np.ones(m.nnz, bool) if threshold is None else m.data >= threshold
    rows = entry_rows(m)[keep]
    indptr = np.zeros(m.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=indptr[1:])
    out = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), m.indices[keep], indptr),
                        shape=m.shape)
    return out


# ----------------------------------------------------------------------------- ranking
def hits_at(top: np.ndarray, heldout: sp.spmatrix) -> np.ndarray:
    """Boolean (B, k): is ``top[b, j]`` a stored entry of row b of ``heldout``?"""
    rel = sp.csr_matrix(heldout)
    return np.take_along_axis(dense_mask(rel), top, 1)


def _hits(scores, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    return hits_at(top_k(scores, k), heldout)


def ranking_from_hits(hits: np.ndarray, n_rel: np.ndarray, k: int | None = None) -> dict:
    """Per-row ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate`` at K.

    ``hits``: boolean (B, >= K) of the ranked lists, best first; ``n_rel``: number of
    relevant items per row; ``k``: cut-off (default ``hits.shape[1]``; the lists are
    cut to it). Rows with ``n_rel == 0`` get NaN.
    """
    k = hits.shape[1] if k is None else int(k)
    h = np.asarray(hits[:, :k], np.float64)
    kk = h.shape[1]            # < k only when the catalog is smaller than k
    n_rel = np.asarray(n_rel, np.int64)
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    n_hits = h.sum(axis=1)
    denom = np.minimum(kk, n_rel)
    prec_at_i = np.cumsum(h, axis=1) / np.arange(1, kk + 1) if kk else h
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "precision": n_hits / max(kk, 1),
            "recall": n_hits / denom,
            "ndcg": (h @ disc) / ideal[denom],
            "map": (prec_at_i * h).sum(axis=1) / denom,
            "hit_rate": (n_hits > 0).astype(np.float64),
        }
    none = n_rel <= 0
    for v in out.values():
        v[none] = np.nan
    return out


def _per_row(scores: np.ndarray, heldout: sp.csr_matrix, k: int, metric: str) -> np.ndarray:
    n_rel = np.diff(sp.csr_matrix(heldout).indptr)
    return ranking_from_hits(_hits(scores, heldout, k), n_rel, k)[metric]


def ndcg_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """NDCG@k per row (binary relevance); NaN for rows without held-out items."""
    return _per_row(scores, heldout, k, "ndcg")


def recall_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@k per row normalised by min(k, |held-out|) (Liang et al. 2018)."""
    return _per_row(scores, heldout, k, "recall")


def precision_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """Precision@k per row: relevant items in the top k / k."""
    return _per_row(scores, heldout, k, "precision")


def map_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """Average precision@k per row, normalised by min(k, |held-out|) (mean over rows: MAP@k)."""
    return _per_row(scores, heldout, k, "map")


def hit_rate_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """1.0 where at least one held-out item is in the top k, else 0.0 (NaN: none held out)."""
    return _per_row(scores, heldout, k, "hit_rate")


# --------------------------------------------------------------------- beyond accuracy
def exposure(top: np.ndarray, n_items: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-item count (int64, n_items) of appearances in the lists ``top`` (B, K).

    ``valid``: boolean (B, K) of the list entries to count (e.g. finite scores).
    """
    items = top if valid is None else top[valid]
    return np.bincount(np.asarray(items).ravel(), minlength=n_items).astype(np.int64)


def coverage(counts: np.ndarray) -> float:
    """Catalog coverage: share of the catalog's items recommended at least once."""
    counts = np.asarray(counts)
    return float(np.count_nonzero(counts) / counts.size) if counts.size else float("nan")


def gini(counts: np.ndarray) -> float:
    """Gini index of item exposure over the whole catalog (zeros included).

    ``sum_i (2 i - n - 1) c_(i) / (n sum c)`` with ``c`` sorted ascending, i = 1..n:
    0 when every item is recommended equally often, (n - 1) / n when only one is.
    """
    c = np.sort(np.asarray(counts, np.float64))
    n, total = c.size, c.sum()
    if n == 0 or total <= 0:
        return float("nan")
    return float(np.dot(2 * np.arange(1, n + 1) - n - 1, c) / (n * total))


def popularity_percentile(item_counts: np.ndarray) -> np.ndarray:
    """Each item's popularity percentile (0..100) among the catalog by rating count.

    Mid-rank: ``100 * (#items with fewer ratings + (#items with as many - 1) / 2) /
    (n - 1)``: 0 for the least, 100 for the most rated item, ties share a value.
    """
    c = np.asarray(item_counts)
    n = c.size
    if n <= 1:
        return np.full(n, 50.0)
    s = np.sort(c)
    below = np.searchsorted(s, c, side="left")
    same = np.searchsorted(s, c, side="right") - below
    return 100.0 * (below + (same - 1) / 2.0) / (n - 1)


def mean_popularity(counts: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean popularity percentile of all recommended list entries (weighted by ``counts``)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    return float(np.dot(counts, popularity_percentile(item_counts)) / total)


def personalization(counts: np.ndarray, n_lists: int, k: int) -> float:
    """1 - mean overlap |L_u & L_v| / K over pairs of users' top-K lists.

    Exact from the per-item counts: ``1 - sum_i c_i (c_i - 1) / (U (U - 1) K)``.
    """
    if n_lists < 2 or k <= 0:
        return float("nan")
    c = np.asarray(counts, np.float64)
    return float(1.0 - np.dot(c, c - 1) / (n_lists * (n_lists - 1.0) * k))
