"""Item-item neighbours over the bias residual, a stack member.

``r_ui ~ b_ui + sum_j s_ij e_uj / (damping + sum_j s_ij)`` over the items ``j`` user ``u``
rated,
where ``b`` is :class:`~npcf.nn.bias_priors.PriorBias` (user and item biases shrunk toward
priors read from the same similarities and from who rated what), ``e = r - b`` the residual and
``s_ij = n_ij / sqrt(n_i n_j)`` the cosine of two items' sets of raters (``n_ij`` users
rated both, ``n_i`` rated ``i``): who rated what, not how, so two items a few users rated
together are neighbours even when too few rated both to correlate their residuals
(Sarwar et al. 2001; Deshpande and Karypis 2004). Only each item's :data:`NEIGHBOURS`
most similar items are kept (a sparse items x items matrix), so predictions are two
sparse products and the model stays ``n_items x NEIGHBOURS`` in size. :data:`DAMPING`
pulls a pair whose rated neighbours are few and weakly similar toward ``b_ui``. A user's
ratings are read at call time, as the bias model's row bias is. Pairs with no rated
neighbour get ``b_ui``. (Shrunk Pearson correlations of the residuals, KNNBaseline's
measure, did worse on all nine validation carves of flixster, yahoo_music and
movies-small through the library: ``benchmarks/NOTES.md``.)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.nn.bias import UserItemBias
from npcf.nn.bias_priors import PriorBias
from npcf.utils.sparse import binarize, column_counts
from npcf.utils.topk import largest_mask

#: most similar items kept per item
NEIGHBOURS = 200
#: similarity mass added to a prediction's denominator (chosen on validation carves)
DAMPING = 1.0
#: entries of the dense (block x items) similarity slab computed at a time (a few
#: temporaries of this size: ~40 MB at the peak)
SLAB = 1_000_000
#: largest size (bytes) of the dense float32 items x items similarity matrices, one per
#: neighbour member, that an exported ONNX graph builds when it is loaded (its file holds
#: their non-zeros)
GRAPH_BYTES = 1_500_000_000
#: entries :meth:`ItemNeighbours.predict_at` gathers at a time (a pair gathers its user's
#: row of ratings and its item's row of similarities)
PAIR_BATCH = 4_000_000


def graph_holds(n_items: int, members: int = 1) -> bool:
    """Whether an exported graph can hold ``members`` neighbour members' dense similarity
    matrices over ``n_items`` items (:data:`GRAPH_BYTES`)."""
    return 4 * int(n_items) ** 2 * int(members) <= GRAPH_BYTES


def residuals(baseline: UserItemBias, x: sp.csr_matrix) -> tuple:
    """``(R, b_row)``: CSR float64 ``x - mu - b_row - b_col`` at ``x``'s stored entries
    (same pattern) and the rows' biases float32 (n_rows,) from their own ratings."""
    x = sp.csr_matrix(x, dtype=np.float64)
    b_row = baseline.row_bias(x)
    return baseline.residual(x, b_row), b_row


def half_precision(v: np.ndarray) -> np.ndarray:
    """float32 copy of non-negative float32 ``v`` rounded to float16 where float16 holds
    it at full precision (not below its smallest normal), so that a saved model can store
    the values in half the bytes, exactly."""
    out = v.copy()
    normal = v >= np.finfo(np.float16).tiny
    out[normal] = v[normal].astype(np.float16)
    return out


def similarities(m: sp.spmatrix, neighbours: int = NEIGHBOURS) -> sp.csr_matrix:
    """CSR float32 (n_items, n_items): each item's ``neighbours`` largest cosines
    ``n_ij / sqrt(n_i n_j)`` of the sets of users who rated them (zero diagonal) in ``m``
    (users x items; which entries are stored, not their values), chosen on their float32
    values and then held at float16 precision (:func:`half_precision`)."""
    B = binarize(m, np.float64)           # CSR: each slab's product is CSR x CSR, with no
    n_items = B.shape[1]                  # conversion of B per slab
    raters = column_counts(B).astype(np.float64)
    block = max(1, SLAB // max(1, n_items))
    Bt = B.T.tocsr()
    keep = max(0, min(int(neighbours), n_items - 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n_items, block):
        hi = min(n_items, lo + block)
        both = (Bt[lo:hi] @ B).toarray()              # users who rated both
        # sqrt of the exact integer product: n_ij <= sqrt(n_i n_j), so s <= 1; the top
        # items are chosen on the float32 values stored (ties: the lowest index)
        den = np.sqrt(np.outer(raters[lo:hi], raters))
        s = np.divide(both, den, out=np.zeros_like(both), where=den > 0).astype(np.float32)
        s[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        if 0 < keep < n_items - 1:         # n_items - 1 keeps every item but itself
            s *= largest_mask(s, keep)
        elif keep == 0:
            s[:] = 0.0
        r, c = np.nonzero(s)
        rows.append(r + lo)
        cols.append(c)
        vals.append(half_precision(s[r, c]))
    if not vals:                            # no items
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    S = sp.csr_matrix((np.concatenate(vals),
                       (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))
    S.sort_indices()
    return S


class ItemNeighbours:
    """``baseline`` (:class:`~npcf.nn.bias_priors.PriorBias`, or with ``priors=False`` the
    plain :class:`UserItemBias`), ``similarity`` CSR float32 (n_items, n_items)."""

    def __init__(self, reg_row: float = 5.0, reg_col: float = 5.0,
                 neighbours: int = NEIGHBOURS, damping: float = DAMPING, priors: bool = True):
        if int(neighbours) != neighbours or neighbours < 0 or not damping >= 0 \
                or not (reg_row > 0 and reg_col > 0):
            raise ValueError(f"neighbours must be a whole number >= 0, damping a number "
                             f">= 0, the ridge strengths numbers > 0, got {neighbours!r}, "
                             f"{damping!r}, {(reg_row, reg_col)!r}")
        self.reg_row, self.reg_col = reg_row, reg_col
        self.neighbours, self.damping, self.priors = neighbours, damping, bool(priors)
        self.baseline: UserItemBias | None = None
        self.similarity: sp.csr_matrix | None = None
        self._transposed: tuple | None = None         # (similarity it was made of, its .T)

    def fit(self, m: sp.csr_matrix) -> "ItemNeighbours":
        """The item similarities of CSR ``m`` (users x items), then the bias model (its
        item priors from those similarities)."""
        self.similarity = similarities(m, self.neighbours)
        if self.priors:
            self.baseline = PriorBias(self.reg_row, self.reg_col, damping=self.damping).fit(
                m, self.similarity)
        else:
            self.baseline = UserItemBias(self.reg_row, self.reg_col).fit(m)
        return self

    def _similarity_t(self) -> sp.csr_matrix:
        if self._transposed is None or self._transposed[0] is not self.similarity:
            self._transposed = (self.similarity, self.similarity.T.tocsr())
        return self._transposed[1]

    def mass(self, x: sp.csr_matrix) -> np.ndarray:
        """Dense float64 (n_rows, n_items): each pair's similarity mass ``sum_j s_ij`` over
        the items ``j`` its row of CSR ``x`` rated (the denominator of :meth:`predict`
        before the damping; 0 where no rated item is a neighbour)."""
        return (binarize(sp.csr_matrix(x), np.float64) @ self._similarity_t()).toarray()

    def mass_at(self, x: sp.csr_matrix, rows, cols) -> np.ndarray:
        """:meth:`mass` float64 (n,) at the pairs ``(rows[k], cols[k])`` only."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        B = binarize(sp.csr_matrix(x), np.float64)
        out = np.zeros(rows.size)
        gathered = np.diff(B.indptr)[rows] + np.diff(self.similarity.indptr)[cols] + 1
        for at in _batches(gathered, PAIR_BATCH):
            out[at] = np.asarray(B[rows[at]].multiply(self.similarity[cols[at]])
                                 .sum(axis=1)).ravel()
        return out

    def predict(self, x: sp.csr_matrix) -> np.ndarray:
        """Dense float32 (n_rows, n_items) predictions for the rows of CSR ``x``, all at
        once (a few float64 arrays of that shape: batch the rows for many items)."""
        R, b_row = residuals(self.baseline, x)
        St = self._similarity_t()
        num = (R @ St).toarray()
        den = (binarize(R, np.float64) @ St).toarray()
        out = self.baseline.offset(b_row).astype(np.float64)
        out += np.divide(num, den + self.damping, out=np.zeros_like(num), where=den > 0)
        return out.astype(np.float32)

    def predict_at(self, x: sp.csr_matrix, rows, cols) -> np.ndarray:
        """Predictions float32 (n,) at the pairs ``(rows[k], cols[k])`` from CSR ``x``
        (indices the caller has checked)."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        R, b_row = residuals(self.baseline, x)
        out = self.baseline.offset_at(b_row, rows, cols).astype(np.float64)
        gathered = np.diff(R.indptr)[rows] + np.diff(self.similarity.indptr)[cols] + 1
        for at in _batches(gathered, PAIR_BATCH):
            S, Ru = self.similarity[cols[at]], R[rows[at]]
            num = np.asarray(Ru.multiply(S).sum(axis=1)).ravel()
            den = np.asarray(binarize(Ru, np.float64).multiply(S).sum(axis=1)).ravel()
            out[at] += np.divide(num, den + self.damping, out=np.zeros_like(num),
                                 where=den > 0)
        return out.astype(np.float32)


def _batches(sizes: np.ndarray, cap: int):
    """Slices of consecutive entries of ``sizes`` (1-D ints) summing to at most ``cap``
    each (one entry alone may exceed it)."""
    total = np.cumsum(sizes)
    lo = 0
    while lo < sizes.size:
        start = total[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(total, start + cap, side="right")))
        yield slice(lo, hi)
        lo = hi
