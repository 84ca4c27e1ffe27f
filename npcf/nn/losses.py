"""Losses on the network output and their gradients.

``masked_mse`` sees only observed entries (a vector over the pattern Omega);
``multinomial`` needs the full logits of each row (Mult-DAE, Liang et al. 2018).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.utils.sparse import entry_rows

LOSSES = ("mse", "multinomial")


def masked_mse(y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over observed entries.

    ``y``, ``t``: 1-D float arrays of predictions and targets at the |Omega|
    observed (user, item) pairs. Returns ``(loss, dloss/dy)``.
    """
    n = max(1, y.size)
    diff = y - t
    return float(np.dot(diff, diff) / n), (2.0 / n) * diff


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a dense (B, n) array."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def multinomial(logits: np.ndarray, target: sp.csr_matrix) -> tuple[float, np.ndarray]:
    """Multinomial negative log-likelihood, averaged over the B rows.

    ``logits``: dense (B, n); ``target``: CSR (B, n) non-negative weights (1 per
    interaction). ``L = -1/B sum_u sum_i t_ui log softmax(z_u)_i``.
    Returns ``(loss, dL/dlogits)`` (dense (B, n)).
    """
    b = max(1, logits.shape[0])
    logp = log_softmax(logits)
    rows = entry_rows(target)
    loss = -float(np.dot(target.data, logp[rows, target.indices])) / b
    grad = np.exp(logp) * np.asarray(target.sum(axis=1), dtype=logits.dtype)
    grad[rows, target.indices] -= target.data.astype(logits.dtype)
    grad /= b
    return loss, grad
