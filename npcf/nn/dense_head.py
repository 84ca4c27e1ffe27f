"""Hybrid sparse products: a batch's dense columns by GEMM, the long tail sparse.

Item popularity is Zipf-like, so in a batch of ``B`` users a few columns are rated by
a sizeable share of the users (in a 256-user batch of the synthetic full-scale pattern,
``benchmarks/synth.py``, the ~190 columns that at least 1/16 of the users rated hold a
third of its ratings). For such a column a dense GEMM over all ``B`` rows costs about
what SciPy's sparse x dense product over its stored entries costs, the GEMM running
~15x faster per flop; for the tail the sparse product costs less. Every sparse product
of a training step (first layer, output at the observed entries, ``da``, both halves of
``dW0``) is split the same way: the head columns as a dense (B, |H|) block times the
head's rows of the weight, the rest as before.
The split changes the order of float additions only, not the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from npcf.utils.sparse import entry_rows, select

#: a column is in the head when at least this share of the batch's rows hold it (1/16,
#: 1/6 and no head measured within noise of each other at 1 thread, 1/6 the fastest:
#: ``benchmarks/NOTES.md``, "Training speed at full scale")
HEAD_DENSITY = 1 / 6


def hot(local: np.ndarray, n_cols: int, n_rows: int, density: float | None = None) -> np.ndarray:
    """Boolean (n_cols,): which of the batch's columns go to the dense head.

    ``local``: (nnz,) int64 column of every stored entry in ``range(n_cols)``;
    ``n_rows``: rows of the batch. A column is hot when it holds at least
    ``max(2, density * n_rows)`` entries (``density``: default :data:`HEAD_DENSITY`)."""
    density = HEAD_DENSITY if density is None else density
    counts = np.bincount(local, minlength=n_cols)
    return counts >= max(2.0, density * n_rows)


@dataclass
class Split:
    """CSR ``m`` (B, n) cut at the head columns ``cols`` (sorted int64, global ids):
    ``dense`` (B, |cols|) holds ``m[:, cols]``, ``tail`` (B, n) CSR the other entries;
    ``held`` (|cols|,) bool: the column has a stored entry (an explicit zero counts)."""

    cols: np.ndarray
    dense: np.ndarray
    tail: sp.csr_matrix
    held: np.ndarray


def split(m: sp.csr_matrix, cols: np.ndarray) -> Split:
    """Cut CSR ``m`` (sorted indices) at the sorted column ids ``cols``."""
    pos = np.searchsorted(cols, m.indices)
    np.minimum(pos, max(cols.size - 1, 0), out=pos)
    hit = cols[pos] == m.indices if cols.size else np.zeros(m.nnz, bool)
    dense = np.zeros((m.shape[0], cols.size), dtype=m.dtype)
    dense[entry_rows(m)[hit], pos[hit]] = m.data[hit]
    held = np.bincount(pos[hit], minlength=cols.size) > 0
    return Split(cols, dense, select(m, ~hit), held)
