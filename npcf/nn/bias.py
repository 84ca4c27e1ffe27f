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

from npcf.utils.sparse import entry_rows


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
