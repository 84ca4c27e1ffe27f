"""Item-item neighbours over the bias residual (KNNBaseline-style), a stack member.

``r_ui ~ b_ui + sum_j s_ij e_uj / (damping + sum_j s_ij)`` over the items ``j`` user ``u``
rated,
where ``b`` is :class:`~npcf.nn.bias.UserItemBias`, ``e = r - b`` the residual and
``s_ij`` the shrunk Pearson correlation of two items' residuals over their common
users (Koren 2010, "Factor in the neighbors"; Surprise's ``pearson_baseline``):
``sum_u e_ui e_uj / sqrt(sum_u e_ui^2 sum_u e_uj^2) * (n_ij - 1) / (n_ij - 1 +
shrinkage)``. Only each item's :data:`NEIGHBOURS` most similar items with a positive
correlation are kept (a sparse items x items matrix), so predictions are two sparse
products and the model stays ``n_items x NEIGHBOURS`` in size. :data:`DAMPING` pulls a
pair whose rated neighbours are few and weakly similar toward ``b_ui`` (without it, one
neighbour of similarity 0.01 would carry its residual in full). A user's ratings are read
at call time, as the bias model's row bias is. Pairs with no rated neighbour get ``b_ui``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.nn.bias import UserItemBias
from npcf.utils.sparse import binarize

#: most similar items kept per item
NEIGHBOURS = 200
#: a correlation over n common users is weighed (n - 1) / (n - 1 + SHRINKAGE): halved at
#: SHRINKAGE + 1 common users (Surprise's default)
SHRINKAGE = 100.0
#: similarity mass added to a prediction's denominator (chosen on validation carves)
DAMPING = 0.1
#: entries of the dense (block x items) similarity slab computed at a time (a dozen
#: float64 temporaries of this size: ~100 MB at the peak)
SLAB = 1_000_000
#: entries :meth:`ItemNeighbours.predict_at` gathers at a time (a pair gathers its user's
#: row of ratings and its item's row of similarities)
PAIR_BATCH = 4_000_000


def residuals(baseline: UserItemBias, x: sp.csr_matrix) -> tuple:
    """``(R, b_row)``: CSR float64 ``x - mu - b_row - b_col`` at ``x``'s stored entries
    (same pattern) and the rows' biases float32 (n_rows,) from their own ratings."""
    x = sp.csr_matrix(x, dtype=np.float64)
    b_row = baseline.row_bias(x)
    return baseline.residual(x, b_row), b_row


def similarities(R: sp.csr_matrix, neighbours: int = NEIGHBOURS,
                 shrinkage: float = SHRINKAGE) -> sp.csr_matrix:
    """CSR float32 (n_items, n_items): each item's ``neighbours`` largest positive shrunk
    residual correlations (zero diagonal) from residuals ``R`` (users x items CSR)."""
    R = sp.csc_matrix(R, dtype=np.float64)
    B = binarize(R, np.float64).tocsc()
    R2 = R.multiply(R).tocsc()
    n_items = R.shape[1]
    block = max(1, SLAB // max(1, n_items))
    Rt, Bt, R2t = R.T.tocsr(), B.T.tocsr(), R2.T.tocsr()
    keep = max(0, min(int(neighbours), n_items - 1))
    rows, cols, vals = [], [], []
    for lo in range(0, n_items, block):
        hi = min(n_items, lo + block)
        num = (Rt[lo:hi] @ R).toarray()
        left = (R2t[lo:hi] @ B).toarray()           # sum over common users of r_ui^2
        right = (Bt[lo:hi] @ R2).toarray()          # ... of r_uj^2
        common = (Bt[lo:hi] @ B).toarray()
        den = np.sqrt(left * right)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        support = np.maximum(common - 1, 0)
        s *= np.divide(support, support + shrinkage, out=np.zeros_like(support),
                       where=support > 0)
        s[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        s[s <= 0] = 0.0
        if 0 < keep < n_items - 1:         # n_items - 1 keeps every item but itself
            drop = np.argpartition(-s, keep - 1, axis=1)[:, keep:]
            np.put_along_axis(s, drop, 0.0, axis=1)
        elif keep == 0:
            s[:] = 0.0
        r, c = np.nonzero(s)
        rows.append(r + lo)
        cols.append(c)
        vals.append(s[r, c])
    if not vals:                            # no items
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    S = sp.csr_matrix((np.concatenate(vals).astype(np.float32),
                       (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items))
    S.sort_indices()
    return S


class ItemNeighbours:
    """``baseline`` (:class:`UserItemBias`), ``similarity`` CSR float32 (n_items, n_items)."""

    def __init__(self, reg_row: float = 5.0, reg_col: float = 5.0,
                 neighbours: int = NEIGHBOURS, shrinkage: float = SHRINKAGE,
                 damping: float = DAMPING):
        if int(neighbours) != neighbours or neighbours < 0 or not shrinkage >= 0 \
                or not damping >= 0 or not (reg_row > 0 and reg_col > 0):
            raise ValueError(f"neighbours must be a whole number >= 0, shrinkage and damping "
                             f"numbers >= 0, the ridge strengths numbers > 0, got "
                             f"{neighbours!r}, {shrinkage!r}, {damping!r}, "
                             f"{(reg_row, reg_col)!r}")
        self.reg_row, self.reg_col = reg_row, reg_col
        self.neighbours, self.shrinkage, self.damping = neighbours, shrinkage, damping
        self.baseline: UserItemBias | None = None
        self.similarity: sp.csr_matrix | None = None
        self._transposed: tuple | None = None         # (similarity it was made of, its .T)

    def fit(self, m: sp.csr_matrix) -> "ItemNeighbours":
        """The bias model and the item similarities of CSR ``m`` (users x items)."""
        self.baseline = UserItemBias(self.reg_row, self.reg_col).fit(m)
        R, _ = residuals(self.baseline, m)
        self.similarity = similarities(R, self.neighbours, self.shrinkage)
        return self

    def predict(self, x: sp.csr_matrix) -> np.ndarray:
        """Dense float32 (n_rows, n_items) predictions for the rows of CSR ``x``, all at
        once (a few float64 arrays of that shape: batch the rows for many items)."""
        R, b_row = residuals(self.baseline, x)
        if self._transposed is None or self._transposed[0] is not self.similarity:
            self._transposed = (self.similarity, self.similarity.T.tocsr())
        St = self._transposed[1]
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
        B = binarize(R, np.float64)
        out = self.baseline.offset_at(b_row, rows, cols).astype(np.float64)
        gathered = np.diff(R.indptr)[rows] + np.diff(self.similarity.indptr)[cols] + 1
        for at in _batches(gathered, PAIR_BATCH):
            S = self.similarity[cols[at]]
            num = np.asarray(R[rows[at]].multiply(S).sum(axis=1)).ravel()
            den = np.asarray(B[rows[at]].multiply(S).sum(axis=1)).ravel()
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
