"""The user+item bias model ``r_ui ~ mu + b_row + b_col`` (inside the autoencoder, and a baseline).

Used two ways: as the "user+item biases" baseline, and inside the autoencoder,
which learns the residual ``r - mu - b_row - b_col``. The column biases are
learned from training data; a row's bias is computed in closed form from that
row's visible ratings at call time (``sum(r - mu - b_col) / (reg_row + n)``), so
a user never seen in training gets one from their ratings alone (fold-in).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.utils.folds import fold_of, fold_parts
from npcf.utils.sparse import entry_rows

#: ridge strengths (pseudo-counts) :func:`cross_validated_regs` tries on each side
REG_GRID = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
#: folds of :func:`cross_validated_regs`; it scores folds until this many ratings were held out
REG_FOLDS = 5
REG_HELD_OUT = 100_000
#: more ratings than this: :func:`cross_validated_regs` works on a random sample of them
REG_MAX_RATINGS = 1_000_000


class UserItemBias:
    """``mu`` (float), ``col_bias`` (n_cols,) float32; ``reg_row``/``reg_col`` >= 0."""

    def __init__(self, reg_row: float = 5.0, reg_col: float = 5.0, n_iter: int = 10):
        self.reg_row, self.reg_col, self.n_iter = reg_row, reg_col, n_iter
        self.mu = 0.0
        self.col_bias: np.ndarray | None = None

    def fit(self, m: sp.csr_matrix) -> "UserItemBias":
        """Alternating closed-form ridge updates on CSR ``m`` (rows x cols)."""
        m = sp.csr_matrix(m, dtype=np.float64)
        rows, cols, r = entry_rows(m), m.indices, m.data
        self.mu = float(r.mean()) if r.size else 0.0
        n_row = np.bincount(rows, minlength=m.shape[0])
        n_col = np.bincount(cols, minlength=m.shape[1])
        b_row, b_col = np.zeros(m.shape[0]), np.zeros(m.shape[1])
        for _ in range(self.n_iter):
            b_col = np.bincount(cols, r - self.mu - b_row[rows], m.shape[1]) / (self.reg_col + n_col)
            b_row = np.bincount(rows, r - self.mu - b_col[cols], m.shape[0]) / (self.reg_row + n_row)
        self.col_bias = b_col.astype(np.float32)
        return self

    def row_bias(self, x: sp.csr_matrix) -> np.ndarray:
        """Closed-form bias (B,) float32 of each row of CSR ``x`` from its stored ratings."""
        x = sp.csr_matrix(x)
        res = x.data.astype(np.float64) - self.mu - self.col_bias[x.indices]
        n = np.diff(x.indptr)
        return (np.bincount(entry_rows(x), res, x.shape[0]) / (self.reg_row + n)).astype(np.float32)

    def offset_at(self, b_row: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``mu + b_row[rows] + b_col[cols]`` (1-D float32)."""
        return (np.float32(self.mu) + b_row[rows] + self.col_bias[cols]).astype(np.float32)

    def offset(self, b_row: np.ndarray) -> np.ndarray:
        """Dense ``mu + b_row[:, None] + b_col[None, :]`` (B, n_cols) float32."""
        return np.float32(self.mu) + b_row[:, None] + self.col_bias[None, :]

    def residual(self, x: sp.csr_matrix, b_row: np.ndarray) -> sp.csr_matrix:
        """CSR ``x`` with ``mu + b_row + b_col`` subtracted from its stored entries."""
        x = sp.csr_matrix(x)
        data = x.data - self.offset_at(b_row, entry_rows(x), x.indices)
        return sp.csr_matrix((data.astype(x.dtype), x.indices, x.indptr), shape=x.shape)

    def predict(self, x: sp.csr_matrix, rows, cols) -> np.ndarray:
        """Baseline predictions at pairs, row biases from the rows of ``x``."""
        x = sp.csr_matrix(x)
        return self.offset_at(self.row_bias(x), np.asarray(rows), np.asarray(cols))


def cross_validated_regs(m: sp.csr_matrix, grid=REG_GRID, folds: int = REG_FOLDS,
                         seed: int = 0) -> tuple[float, float] | None:
    """``(reg_row, reg_col)`` from ``grid`` x ``grid`` whose :class:`UserItemBias` has the
    lowest RMSE on held-out ratings of CSR ``m`` (rows x cols): a seeded random cut into
    ``folds`` folds (:func:`npcf.utils.folds.fold_of`), each fold's biases fitted on the
    others and its row biases computed from the others as at prediction time; folds are
    scored in turn until :data:`REG_HELD_OUT` ratings were held out (all of them on small
    data), ties to the earlier pair. On more than :data:`REG_MAX_RATINGS` ratings, a
    seeded random sample of that many (a ridge strength is a pseudo-count, noise variance
    over prior variance, which a sample estimates without bias): ~5 s at most on this
    machine. None when ``m`` has fewer than ``2 * folds`` ratings."""
    coo = sp.csr_matrix(m, dtype=np.float64).tocoo()
    if coo.nnz < 2 * folds:
        return None
    if coo.nnz > REG_MAX_RATINGS:
        pick = np.sort(np.random.default_rng([seed, 1618]).choice(coo.nnz, REG_MAX_RATINGS,
                                                                   replace=False))
        coo = sp.coo_matrix((coo.data[pick], (coo.row[pick], coo.col[pick])), shape=coo.shape)
    fold = fold_of(coo.nnz, folds, seed)
    errors = np.zeros((len(grid), len(grid)))
    held_out = 0
    for k in range(folds):
        train, _ = fold_parts(coo, fold, k)
        held = fold == k
        for a, reg_row in enumerate(grid):
            for b, reg_col in enumerate(grid):
                bias = UserItemBias(reg_row, reg_col).fit(train)
                pred = bias.offset_at(bias.row_bias(train), coo.row[held], coo.col[held])
                errors[a, b] += np.sum((pred - coo.data[held]) ** 2)
        held_out += int(held.sum())
        if held_out >= REG_HELD_OUT:
            break
    a, b = np.unravel_index(int(np.argmin(errors)), errors.shape)
    return float(grid[a]), float(grid[b])
