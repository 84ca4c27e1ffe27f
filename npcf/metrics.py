"""Evaluation metrics: rating prediction (RMSE, MAE) and top-N ranking.

Ranking metrics take dense ``scores`` (B, n) where items that must not be
recommended (the user's input) are already set to ``-inf``, and a CSR
``heldout`` (B, n) whose stored entries are the relevant items.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error of two 1-D arrays."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error of two 1-D arrays."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (B, k) of the k highest scores per row, best first (ties: lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


def _hits(scores, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    top = top_k(scores, k)
    rel = heldout.astype(bool).tocsr()
    return np.asarray(rel[np.arange(top.shape[0])[:, None], top].todense(), dtype=bool)


def ndcg_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """NDCG@k per row (binary relevance); NaN for rows without held-out items."""
    hits = _hits(scores, heldout, k)
    disc = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = hits @ disc
    n_rel = np.diff(heldout.indptr)
    idcg = np.array([disc[:min(n, hits.shape[1])].sum() for n in n_rel])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, dcg / idcg, np.nan)


def recall_at_k(scores: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@k per row normalised by min(k, |held-out|) (Liang et al. 2018)."""
    hits = _hits(scores, heldout, k).sum(axis=1)
    n_rel = np.diff(heldout.indptr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, hits / np.minimum(k, n_rel), np.nan)
