"""Seeded random folds of a sparse matrix's ratings (cross-validation, cross-fitting)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold (int64 in [0, folds)) of each of ``n`` ratings: a seeded random permutation
    cut into ``folds`` near-equal parts. ValueError unless 2 <= folds <= n."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds: need 2 <= folds <= ratings, got {folds} folds of {n} "
                         "ratings")
    out = np.empty(n, np.int64)
    out[np.random.default_rng([seed, 2718]).permutation(n)] = np.arange(n) % folds
    return out


def fold_parts(A: sp.coo_matrix, fold: np.ndarray, k: int) -> tuple:
    """``(train, held)``: CSR matrices of ``A``'s ratings outside and inside fold ``k``."""
    parts = []
    for keep in (fold != k, fold == k):
        parts.append(sp.csr_matrix((A.data[keep], (A.row[keep], A.col[keep])), shape=A.shape))
    return tuple(parts)
