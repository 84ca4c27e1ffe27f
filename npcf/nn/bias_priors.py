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
``b_u = (sum_j (r_uj - mu - b_j) + reg_row q_u) / (reg_row + n_u)``, the fixed point of
these closed-form updates; a user's bias is computed from their ratings at call time
(fold-in), as the plain model's is, so ``a`` is kept beside the item biases. On the
validation carves of flixster, yahoo_music and movies-small this baseline under the item
neighbours lowered the stacked figure (``benchmarks/NOTES.md``, 2026-12-06).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from npcf.nn.bias import UserItemBias
from npcf.utils.sparse import entry_rows

#: pseudo-count shrinking an item's mean rater bias ``a_j`` toward zero
RATER_SHRINKAGE = 5.0
#: about this many sweeps of the updates at most in :meth:`PriorBias.fit` (whole GMRES
#: cycles of :data:`RESTART`; a solve that has not converged by then keeps its last
#: iterate, the closest it came) ...
N_ITER = 1000
#: ... GMRES restarting after this many ...
RESTART = 50
#: ... until the fixed point's residual is this share of the first sweep's size
TOL = 1e-10


class PriorBias(UserItemBias):
    """``mu`` (float), ``col_bias`` and ``rater_bias`` (``a - abar``) float32 (n_cols,);
    ``reg_row`` / ``reg_col`` > 0 weigh the priors as the plain model's ridge weighs zero."""

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
        no item prior, only the user's). The biases are the fixed point of the
        alternating updates (:func:`_sweep`, affine in the biases), found by GMRES on
        ``x - sweep(x) = 0``: tens of sweeps where the updates alone need hundreds
        (movies-small: 37 against ~800)."""
        m = sp.csr_matrix(m, dtype=np.float64)
        n_rows, n_cols = m.shape
        self.mu = float(m.data.mean()) if m.nnz else 0.0
        S = sp.csr_matrix((n_cols, n_cols)) if similarity is None \
            else sp.csr_matrix(similarity, dtype=np.float64)
        parts = (_counts(m, S, self.mu, self.damping), (self.reg_row, self.reg_col),
                 self.rater_shrinkage)
        start = _sweep(np.zeros(n_cols + n_rows), *parts)
        x = start
        if m.nnz:
            A = sla.LinearOperator((x.size, x.size), dtype=np.float64,
                                   matvec=lambda v: v - (_sweep(v, *parts) - start))
            x, _ = sla.gmres(A, start, x0=start, rtol=TOL, atol=0.0, restart=RESTART,
                             maxiter=max(1, self.n_iter // RESTART))
        b_col, b_row = x[:n_cols], x[n_cols:]
        self.col_bias = b_col.astype(np.float32)
        self.rater_bias = _raters(m, b_row, self.rater_shrinkage).astype(np.float32)
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


def _raters(m: sp.csr_matrix, b_row: np.ndarray, shrinkage: float) -> np.ndarray:
    """float64 (n_cols,): ``a_j - abar`` of the module docstring for row biases ``b_row``."""
    rows, cols = entry_rows(m), m.indices
    a = np.bincount(cols, b_row[rows], m.shape[1]) / (shrinkage + np.bincount(
        cols, minlength=m.shape[1]))
    return a - a[cols].mean() if m.nnz else a


def _counts(m: sp.csr_matrix, S: sp.csr_matrix, mu: float, damping: float) -> tuple:
    """What every :func:`_sweep` of one fit reads: ``(m, S, rows, residuals r - mu,
    n_row, n_col, similarity mass + damping)``, computed once."""
    rows, cols = entry_rows(m), m.indices
    return (m, S, rows, m.data - mu, np.diff(m.indptr), np.bincount(cols, minlength=m.shape[1]),
            np.asarray(S.sum(axis=1)).ravel() + damping)


def _sweep(x: np.ndarray, counts: tuple, regs: tuple, shrinkage: float) -> np.ndarray:
    """One round of the alternating updates from ``x = (b_col, b_row)`` float64: the
    priors from ``x``, then every column's bias, then every row's (``counts`` from
    :func:`_counts`). Affine in ``x``."""
    m, S, rows, res, n_row, n_col, mass = counts
    n_rows, n_cols = m.shape
    cols = m.indices
    reg_row, reg_col = regs
    b_col, b_row = x[:n_cols], x[n_cols:]
    item_prior = np.divide(S @ b_col, mass, out=np.zeros(n_cols), where=mass > 0)
    user_prior = _mean_over_rated(_raters(m, b_row, shrinkage), rows, cols, n_row)
    b_col = (np.bincount(cols, res - b_row[rows], n_cols) + reg_col * item_prior) \
        / (reg_col + n_col)
    b_row = (np.bincount(rows, res - b_col[cols], n_rows) + reg_row * user_prior) \
        / (reg_row + n_row)
    return np.concatenate([b_col, b_row])


def _mean_over_rated(values: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     n_row: np.ndarray) -> np.ndarray:
    """float64 (n_rows,): each row's mean of ``values[col]`` over its stored entries
    (``rows``/``cols`` per entry, ``n_row`` entries per row); 0 for an empty row."""
    total = np.bincount(rows, values[cols], n_row.size)
    return total / np.maximum(n_row, 1)
