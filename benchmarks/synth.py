"""Scalable synthetic rating patterns for speed benchmarks (no dense affinity matrix).

``movies_full()`` has The Movies Dataset's full size: 270,896 users x 45,115 movies,
~26.0M ratings, log-normal user activity (min 20) and Zipf-like movie popularity,
half-star ratings. Only the sparsity pattern matters for speed; ratings are random.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.utils.sparse import unique

FULL = dict(n_users=270_896, n_items=45_115, nnz=26_024_289)


def pattern(n_users: int, n_items: int, nnz: int, seed: int = 0,
            zipf: float = 1.0) -> sp.csr_matrix:
    """CSR float32 (n_users, n_items) with about ``nnz`` ratings (within 1%)."""
    rng = np.random.default_rng(seed)
    act = rng.lognormal(0.0, 1.1, n_users)
    act = np.maximum(20, act / act.sum() * nnz).astype(np.int64)
    act = np.minimum(act, n_items // 2)
    pop = 1.0 / np.arange(1, n_items + 1) ** zipf
    pop /= pop.sum()
    perm = rng.permutation(n_items)                    # popular ids spread over the range
    cdf = np.cumsum(pop)
    scale = 1.0
    for _ in range(3):                                 # later passes correct for duplicates
        want = np.minimum(np.round(act * scale).astype(np.int64), n_items // 2)
        users = np.repeat(np.arange(n_users, dtype=np.int64), want)
        items = perm[np.minimum(np.searchsorted(cdf, rng.random(users.size)), n_items - 1)]
        keys = unique(users * n_items + items)
        scale *= nnz / keys.size
    rows, cols = keys // n_items, keys % n_items
    data = (rng.integers(1, 11, keys.size) / 2).astype(np.float32)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_users))]
    return sp.csr_matrix((data, cols.astype(np.int32), indptr), shape=(n_users, n_items))


def movies_full(seed: int = 0) -> sp.csr_matrix:
    return pattern(**FULL, seed=seed)
