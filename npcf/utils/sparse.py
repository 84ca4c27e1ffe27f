"""Helpers on CSR matrices and sort-based set operations on 1-D integer arrays.

NumPy 2.3+ routes ``np.unique`` through a hash table that is one to two orders of
magnitude slower than sorting for the int arrays npcf handles on hot paths
(20k column ids: 71 ms vs 0.7 ms on the benchmark machine), so npcf sorts.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


# ------------------------------------------------------------------------------ CSR
def entry_rows(m: sp.csr_matrix) -> np.ndarray:
    """Row index (int64) of every stored entry of CSR ``m``, aligned with ``m.data``."""
    counts = np.diff(m.indptr)
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)


def column_counts(m: sp.csr_matrix) -> np.ndarray:
    """Stored entries per column of CSR ``m`` (int64, ``(n_columns,)``): a rating matrix's
    training ratings per item."""
    return np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)


#: the largest magnitude a rating can have: npcf stores ratings as float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


def stored_values(m) -> np.ndarray:
    """The stored values of sparse ``m`` as one 1-D array, in any format (DOK and LIL
    keep no such array, DIA's holds padding)."""
    return m.data if m.format in ("csr", "csc", "coo") else m.tocoo().data


def beyond_float32(m) -> int:
    """How many stored values of ``m`` (sparse matrix or array) are NaN, infinite or
    beyond :data:`FLOAT32_MAX`: npcf computes in float32, where they would be NaN or
    infinite. Integers are always representable."""
    v = stored_values(m) if sp.issparse(m) else np.asarray(m)
    if v.dtype.kind not in "fc":
        return 0
    with np.errstate(invalid="ignore", over="ignore"):
        return int(np.count_nonzero(~(np.abs(v) <= FLOAT32_MAX)))


def duplicate_entries(m) -> int:
    """How many stored entries of sparse ``m`` repeat a (row, column) pair stored before
    them (SciPy would add their values up); 0 for a dense array. CSR/CSC: O(nnz) once
    the indices are sorted (SciPy caches that a matrix is canonical); other formats sort
    their pairs."""
    if not sp.issparse(m) or m.nnz < 2 or getattr(m, "has_canonical_format", False):
        return 0
    if m.format in ("csr", "csc"):
        s = m if m.has_sorted_indices else m.sorted_indices()
        n = int(s.indptr[-1])
        same = s.indices[1:n] == s.indices[:n - 1]
        ends = s.indptr[1:-1]                    # a row's first entry repeats no one
        same[ends[(ends > 0) & (ends < n)] - 1] = False
        return int(np.count_nonzero(same))
    c = m.tocoo()
    pairs = c.row.astype(np.int64) * m.shape[1] + c.col
    return int(pairs.size - unique(pairs).size)


def rated(m, dtype=np.float32) -> sp.csr_matrix:
    """``m`` (any sparse format or array) as CSR ``dtype`` without stored zeros (0 means
    "not rated" everywhere in npcf); ``m`` itself is never modified."""
    out = sp.csr_matrix(m, dtype=dtype)
    if out.nnz and not out.data.all():
        out = select(out, out.data != 0)
    return out


def select(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """CSR ``m`` restricted to the stored entries where boolean ``keep`` is True."""
    rows = entry_rows(m)[keep]
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=indptr[1:])
    out = sp.csr_matrix((m.data[keep], m.indices[keep], indptr.astype(m.indices.dtype)),
                        shape=m.shape)
    out.has_sorted_indices = m.has_sorted_indices
    return out


def binarize(m, dtype=np.float32) -> sp.csr_matrix:
    """CSR with the pattern of ``m`` (any sparse format) and every stored value 1."""
    m = sp.csr_matrix(m)
    return sp.csr_matrix((np.ones(m.nnz, dtype), m.indices, m.indptr), shape=m.shape)


def l2_normalize_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows of CSR ``m`` scaled to unit L2 norm (empty rows stay empty); dtype kept."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms).astype(m.dtype) @ m)


def same_matrix(a, b) -> bool:
    """Whether sparse ``a`` and ``b`` have one shape and the same values (stored zeros
    aside); two shapes are simply different matrices, not an error."""
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    return a.shape == b.shape and (a != b).nnz == 0


def merge_parts(parts) -> sp.csr_matrix:
    """One CSR float32 matrix holding every stored rating of ``parts`` (same shapes; None
    skipped); an entry stored in several parts keeps the first part's value. Ratings are
    non-zero (0 means unrated): unlike an element-wise maximum, negative ones survive.
    Sparse arithmetic only: memory a few times the parts' nnz."""
    kept = [sp.csr_matrix(p, dtype=np.float32) for p in parts if p is not None]
    out = kept[0]
    for p in kept[1:]:
        if p.nnz:
            # p's entries where out has none: p minus p on out's pattern (zeros dropped)
            new = p - p.multiply(out.astype(bool))
            out = out + new
    out = sp.csr_matrix(out, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def dense_mask(m: sp.csr_matrix) -> np.ndarray:
    """Boolean (B, n) array, True at the stored entries of CSR ``m``."""
    out = np.zeros(m.shape, bool)
    out[entry_rows(m), m.indices] = True
    return out


# ------------------------------------------------------------------ integer sets
def unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of ``a``."""
    s = np.sort(a, kind="stable")
    if s.size == 0:
        return s
    keep = np.empty(s.size, bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


try:     # SciPy's CSR -> CSC conversion: a stable counting sort of column indices
    from scipy.sparse._sparsetools import csr_tocsc
except ImportError:                                      # pragma: no cover - SciPy moved it
    csr_tocsc = None


def stable_order(a: np.ndarray) -> np.ndarray:
    """``np.argsort(a, kind="stable")`` for a 1-D integer array ``a``. Non-negative values
    below a few times ``a.size`` (a batch's item ids) are counted, not compared: one
    O(size + max) pass through SciPy's CSR -> CSC conversion, which keeps entries of one
    column in their order (a 23k-rating batch: 0.08 ms against NumPy's 0.63 ms)."""
    a = np.asarray(a)
    if csr_tocsc is None or a.ndim != 1 or a.dtype.kind not in "iu" or a.size == 0:
        return np.argsort(a, kind="stable")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= 4 * a.size + (1 << 16):
        return np.argsort(a, kind="stable")
    index = np.int32 if max(hi + 1, a.size) < 2**31 else np.int64
    n, k = hi + 1, a.size
    order = np.empty(k, np.int64)
    csr_tocsc(1, n, np.array([0, k], index), a.astype(index, copy=False),
              np.arange(k, dtype=np.int64), np.empty(n + 1, index), np.empty(k, index), order)
    return order


def unique_inverse(a: np.ndarray, return_order: bool = False):
    """``(u, inv)`` with ``u`` sorted unique values and ``u[inv] == a`` (inv int64);
    ``return_order``: also the stable sorting permutation of ``a``."""
    order = stable_order(a)
    s = a[order]
    flag = np.empty(s.size, bool)
    if s.size:
        flag[0] = True
        np.not_equal(s[1:], s[:-1], out=flag[1:])
    inv = np.empty(a.size, np.int64)
    inv[order] = np.cumsum(flag) - 1
    return (s[flag], inv, order) if return_order else (s[flag], inv)


def positions_in(u: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Index in ``u`` (unique ints in ``[0, size)``) of each of ``values`` (ints in ``[0,
    size)``), -1 where a value is not in ``u`` (int64): a table lookup, O(size + len),
    where ``np.searchsorted`` costs a binary search per value; a binary search where
    ``size`` is far larger than the arrays (the table would cost more)."""
    if size > 4 * (len(u) + len(values)) + (1 << 16):
        u = np.asarray(u)
        pos = np.minimum(np.searchsorted(u, values), max(len(u) - 1, 0))
        return np.where(u[pos] == values, pos, -1).astype(np.int64) if len(u) else \
            np.full(len(values), -1, np.int64)
    table = np.full(size, -1, np.int64)
    table[u] = np.arange(len(u))
    return table[values]


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted union of two arrays."""
    return unique(np.concatenate([a, b]))
