"""The :class:`Ratings` container and :func:`build_ratings` (raw triples -> CSR + id maps)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from npcf.data.vocab import Vocabulary
from npcf.errors import shown
from npcf.utils.sparse import FLOAT32_MAX

#: why a rating of 0 is refused wherever ratings are read: in a rating vector (the
#: network's input, a dense query, the ONNX graph's masks) 0 is the empty entry
ZERO_RATING = ("npcf reads a rating of 0 as 'not rated'; shift the ratings (e.g. add 1 and "
               "declare the scale) or drop those rows")


def rating_problem(rating: np.ndarray, scale=None) -> str | None:
    """The first problem of the rating values ``rating`` (1-D float64) as one line, or
    None: not finite, beyond float32, outside ``scale`` (min, max), or 0. Three
    reductions when all is well (min and max propagate NaN and see +-inf)."""
    if not rating.size:
        return None
    lo, hi = rating.min(), rating.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"rating {shown(rating[~np.isfinite(rating)][0])} is not a finite number"
    if max(-lo, hi) > FLOAT32_MAX:
        return (f"rating {shown(rating[np.abs(rating) > FLOAT32_MAX][0])} is beyond the float32 "
                "range (|r| <= 3.4e38)")
    if scale is not None and not scale[0] <= lo <= hi <= scale[1]:
        bad = rating[(rating < scale[0]) | (rating > scale[1])][0]
        return (f"rating {shown(bad)} outside the scale {scale[0]:g}-{scale[1]:g} "
                "(another scale: --scale MIN,MAX; scale=(MIN, MAX) in the library)")
    zeros = int(np.count_nonzero(rating == 0))
    return f"{zeros} rating{'s' if zeros > 1 else ''} of 0: {ZERO_RATING}" if zeros else None


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
        lo, hi = int(values.min()), int(values.max())
        base = 0 if lo >= 0 else lo          # non-negative ids index the table directly
        span = hi - base + 1
        if span <= max(1 << 20, values.size):
            # Ids in a compact range (MovieLens movieIds): a lookup table is several
            # times faster than factorize's hash + sort, with the same result.
            index = values if base == 0 else values.astype(np.int64) - base
            present = np.flatnonzero(np.bincount(index, minlength=span))
            code_type = np.int32 if present.size < 2**31 else np.int64
            lookup = np.empty(span, dtype=code_type)
            lookup[present] = np.arange(present.size, dtype=code_type)
            return lookup[index], (present + base).astype(values.dtype)
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def build_ratings(users, items, ratings, timestamps=None, *, scale=None,
                  source: str = "") -> Ratings:
    """Build :class:`Ratings` from parallel 1-D arrays of raw ids and ratings.

    Duplicate (user, item) pairs keep the rating with the latest timestamp; with
    equal timestamps, or without timestamps, the one later in the input wins. The
    number of dropped duplicates is recorded in ``duplicates_resolved``.
    """
    i_codes, i_ids = _codes(items)
    n_items = len(i_ids)
    ratings = np.asarray(ratings)
    users = np.asarray(users)
    fast = _sorted_users_indptr(users, i_codes)
    if fast is not None:
        # Sorted by user, then strictly by item (MovieLens files): no key, no sort.
        indptr, u_ids = fast
        return _make(indptr, i_codes, ratings, timestamps, u_ids, i_ids, 0, scale, source)
    u_codes, u_ids = _codes(users)
    n_users = len(u_ids)
    key = u_codes.astype(np.int64) * n_items + i_codes
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
    duplicates = users.size - key.size
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u_codes, minlength=n_users), out=indptr[1:])
    return _make(indptr, i_codes, ratings, timestamps, u_ids, i_ids, duplicates, scale, source)


def _sorted_users_indptr(users: np.ndarray, i_codes: np.ndarray):
    """``(indptr, user ids)`` when ``users`` is sorted and each user's items strictly
    increase (so there is nothing to sort and no duplicate); else None."""
    if users.dtype.kind not in "iu" or users.size < 2:
        return None
    if not np.all(users[1:] >= users[:-1]):
        return None
    new_user = users[1:] != users[:-1]
    ok = i_codes[1:] > i_codes[:-1]
    ok |= new_user
    if not ok.all():
        return None
    starts = np.flatnonzero(new_user) + 1
    indptr = np.concatenate([[0], starts, [users.size]]).astype(np.int64)
    return indptr, users[indptr[:-1]]


def _make(indptr, i_codes, ratings, timestamps, u_ids, i_ids, duplicates, scale, source):
    n_users, n_items = len(u_ids), len(i_ids)
    idx_dtype = np.int32 if max(n_items, i_codes.size) < 2**31 else np.int64
    matrix = sp.csr_matrix(
        (ratings.astype(np.float32, copy=False), i_codes.astype(idx_dtype, copy=False),
         indptr.astype(idx_dtype, copy=False)), shape=(n_users, n_items))
    matrix.has_sorted_indices = True
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    return Ratings(matrix, Vocabulary(u_ids), Vocabulary(i_ids), ts, int(duplicates),
                   None if scale is None else (float(scale[0]), float(scale[1])), source)
