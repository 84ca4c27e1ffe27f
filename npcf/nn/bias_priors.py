"""User and item biases shrunk toward priors from who rated what, not toward zero.

:class:`~npcf.nn.bias.UserItemBias` shrinks an item rated by few users toward the global
mean, and so a user who rated few items. :class:`PriorBias` shrinks them toward what the
rest of the data says about them instead:

- an item's prior is the mean bias of its most similar items,
  ``p_i = sum_j s_ij b_j / (damping + sum_j s_ij)``, with ``s`` the item similarities of
  :func:`npcf.nn.neighbours.similarities` (items rated by the same users);
- a user's prior is how much more generous than the average rater the raters of what
  they rated are: ``q_u`` is the mean, over the items ``u`` rated, of ``a_j - abar``, with
  ``a_j = sum_{v rated j} b_v / (rater_shrinkage + n_j)`` and ``abar`` the mean of ``a``
  over every rating. (Uncentred, both priors would follow a shift of every item bias
  against every user bias, which then only the pseudo-counts hold: on movies-small the
  fit drifted and the neighbours over it lost 0.01 RMSE.)

``b_j = (sum_u (r_uj - mu - b_u) + reg_col p_j) / (reg_col + n_j)`` and
``b_u = (sum_j (r_uj - mu - b_j) + reg_row q_u) / (reg_row + n_u)``, fitted by alternating
the closed-form updates until they settle; a user's bias is computed from their ratings at call time
(fold-in), as the plain model's is, so ``a`` is kept beside the item biases. On the
validation carves of flixster, yahoo_music and movies-small this baseline under the item
neighbours lowered the stacked figure (``benchmarks/NOTES.md``, 2026-12-06).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.nn.bias import UserItemBias
from npcf.utils.sparse import entry_rows

#: pseudo-count shrinking an item's mean rater bias ``a_j`` toward zero
RATER_SHRINKAGE = 5.0
#: at most this many alternating updates in :meth:`PriorBias.fit` ...
N_ITER = 1000
#: ... stopping once no bias moved by more than this share of the ratings' spread
TOL = 1e-6


class PriorBias(UserItemBias):
    """``mu`` (float), ``col_bias`` and ``rater_bias`` (``a - abar``) float32 (n_cols,);
    ``reg_row`` /
    ``reg_col`` > 0 weigh the priors as the plain model's ridge weighs zero."""

    def __init__(self, reg_row: float = 5.0, reg_col: float = 5.0,
                 rater_shrinkage: float = RATER_SHRINKAGE, damping: float = 1.0,
                 n_iter: int = N_ITER):
        if not (rater_shrinkage > 0 and damping >= 0 and reg_row > 0 and reg_col > 0):
            raise ValueError(f"rater_shrinkage and the ridge strengths must be numbers > 0, "
                             f"damping a number >= 0, got {rater_shrinkage!r}, {damping!r}, "
                             f"{(reg_row, reg_col)!r}")
        super().__init__(reg_row, reg_col, n_iter)
        self.rater_shrinkage, self.damping = rater_shrinkage, damping
        self.rater_bias: np.ndarray | None = None

    def fit(self, m: sp.csr_matrix, similarity: sp.csr_matrix | None = None) -> "PriorBias":
        """Fit on CSR ``m`` (rows x cols) with ``similarity`` CSR (n_cols, n_cols) (None:
        no item prior, only the user's)."""
        m = sp.csr_matrix(m, dtype=np.float64)
        rows, cols, r = entry_rows(m), m.indices, m.data
        n_rows, n_cols = m.shape
        self.mu = float(r.mean()) if r.size else 0.0
        n_row = np.bincount(rows, minlength=n_rows)
        n_col = np.bincount(cols, minlength=n_cols)
        S = sp.csr_matrix((n_cols, n_cols)) if similarity is None \
            else sp.csr_matrix(similarity, dtype=np.float64)
        mass = np.asarray(S.sum(axis=1)).ravel() + self.damping
        b_row, b_col = np.zeros(n_rows), np.zeros(n_cols)
        item_prior, rater = np.zeros(n_cols), np.zeros(n_cols)
        tol = TOL * (float(r.max() - r.min()) if r.size else 0.0)
        for _ in range(self.n_iter):
            last_col, last_row = b_col, b_row
            b_col = (np.bincount(cols, r - self.mu - b_row[rows], n_cols)
                     + self.reg_col * item_prior) / (self.reg_col + n_col)
            user_prior = _mean_over_rated(rater, rows, cols, n_row)
            b_row = (np.bincount(rows, r - self.mu - b_col[cols], n_rows)
                     + self.reg_row * user_prior) / (self.reg_row + n_row)
            item_prior = np.divide(S @ b_col, mass, out=np.zeros(n_cols), where=mass > 0)
            rater = np.bincount(cols, b_row[rows], n_cols) / (self.rater_shrinkage + n_col)
            if r.size:                       # centred: see the module docstring
                rater -= rater[cols].mean()
            if max(np.abs(b_col - last_col).max(initial=0.0),
                   np.abs(b_row - last_row).max(initial=0.0)) <= tol:
                break
        self.col_bias = b_col.astype(np.float32)
        self.rater_bias = rater.astype(np.float32)
        return self

    def row_bias(self, x: sp.csr_matrix) -> np.ndarray:
        """Closed-form bias (B,) float32 of each row of CSR ``x`` from its stored ratings,
        shrunk toward the row's prior."""
        x = sp.csr_matrix(x)
        rows, n = entry_rows(x), np.diff(x.indptr)
        res = x.data.astype(np.float64) - self.mu - self.col_bias[x.indices]
        prior = _mean_over_rated(self.rater_bias.astype(np.float64), rows, x.indices, n)
        return ((np.bincount(rows, res, x.shape[0]) + self.reg_row * prior)
                / (self.reg_row + n)).astype(np.float32)


def _mean_over_rated(values: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     n_row: np.ndarray) -> np.ndarray:
    """float64 (n_rows,): each row's mean of ``values[col]`` over its stored entries
    (``rows``/``cols`` per entry, ``n_row`` entries per row); 0 for an empty row."""
    total = np.bincount(rows, values[cols], n_row.size)
    return total / np.maximum(n_row, 1)
