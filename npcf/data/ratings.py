"""The :class:`Ratings` container and :func:`build_ratings` (raw triples -> CSR + id maps)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..vocab import Vocabulary


@dataclass
class Ratings:
    """A users x items rating matrix with its id maps.

    ``matrix``: CSR float32 (n_users, n_items), sorted indices, no explicit zeros
    unless a rating of 0 was given. ``timestamps``: int64 array aligned with
    ``matrix.data`` (or None). ``scale``: declared (min, max) rating or None.
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    timestamps: np.ndarray | None = None
    duplicates_resolved: int = 0
    scale: tuple[float, float] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def stats(self) -> dict:
        """Summary used by ``prepare``'s ``stats.json`` and table."""
        m = self.matrix
        n_users, n_items = m.shape
        data = m.data
        return {
            "n_users": int(n_users),
            "n_items": int(n_items),
            "n_ratings": int(m.nnz),
            "density": float(m.nnz / max(1, n_users * n_items)),
            "rating_min": float(data.min()) if data.size else None,
            "rating_max": float(data.max()) if data.size else None,
            "rating_mean": float(data.mean(dtype=np.float64)) if data.size else None,
            "duplicates_resolved": int(self.duplicates_resolved),
        }


def _codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Compact codes (int64) and sorted unique ids of a 1-D array of raw ids."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and values.size and np.all(values[1:] >= values[:-1]):
        # Sorted input (MovieLens files are sorted by user): a linear pass suffices.
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        codes = np.repeat(np.arange(starts.size, dtype=np.int64),
                          np.diff(np.r_[starts, values.size]))
        return codes, values[starts]
    if values.dtype.kind in "iu" and values.size:
        lo, hi = values.min(), values.max()
        span = int(hi) - int(lo) + 1
        if span <= max(1 << 20, values.size):
            # Ids in a compact range (MovieLens movieIds): a lookup table is several
            # times faster than factorize's hash + sort, with the same result.
            wide = values.astype(np.int64, copy=False) if values.dtype.kind == "i" else values
            offset = wide - wide.dtype.type(lo)   # exact: 0 <= offset < span
            seen = np.zeros(span, dtype=bool)
            seen[offset] = True
            present = np.flatnonzero(seen)
            lookup = np.empty(span, dtype=np.int64)
            lookup[present] = np.arange(present.size, dtype=np.int64)
            return lookup[offset], present.astype(values.dtype) + lo
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def build_ratings(users, items, ratings, timestamps=None, *, scale=None,
                  source: str = "") -> Ratings:
    """Build :class:`Ratings` from parallel 1-D arrays of raw ids and ratings.

    Duplicate (user, item) pairs keep the rating with the latest timestamp; with
    equal timestamps, or without timestamps, the one later in the input wins. The
    number of dropped duplicates is recorded in ``duplicates_resolved``.
    """
    u_codes, u_ids = _codes(users)
    i_codes, i_ids = _codes(items)
    n_users, n_items = len(u_ids), len(i_ids)
    ratings = np.asarray(ratings)
    key = u_codes * n_items + i_codes
    diffs = np.diff(key)
    if diffs.size and (diffs <= 0).any():
        # Unsorted or duplicated: order by key, then by timestamp, then by position.
        order = (np.lexsort((timestamps, key)) if timestamps is not None
                 else np.argsort(key, kind="stable"))
        key = key[order]
        last = np.r_[key[1:] != key[:-1], True]   # keep the last row of each run
        order = order[last]
        key = key[last]
        u_codes, i_codes = u_codes[order], i_codes[order]
        ratings = ratings[order]
        if timestamps is not None:
            timestamps = np.asarray(timestamps)[order]
    duplicates = len(np.asarray(users)) - key.size
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u_codes, minlength=n_users), out=indptr[1:])
    idx_dtype = np.int32 if max(n_items, key.size) < 2**31 else np.int64
    matrix = sp.csr_matrix(
        (ratings.astype(np.float32, copy=False), i_codes.astype(idx_dtype),
         indptr.astype(idx_dtype)), shape=(n_users, n_items))
    matrix.has_sorted_indices = True
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    return Ratings(matrix, Vocabulary(u_ids), Vocabulary(i_ids), ts, int(duplicates),
                   None if scale is None else (float(scale[0]), float(scale[1])), source)
