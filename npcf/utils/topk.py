"""Each row's k largest entries, ties broken toward the lowest column (the choice does not
depend on the selection algorithm NumPy uses)."""
from __future__ import annotations

import numpy as np


def largest_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """bool mask, shape of 2-D ``scores`` (no NaN), of each row's ``k`` largest entries
    (1 <= k <= columns): all greater than the k-th largest value, then the lowest-column
    ones equal to it."""
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    greater = scores > kth
    equal = scores == kth
    room = k - greater.sum(axis=1, keepdims=True)
    return greater | (equal & (np.cumsum(equal, axis=1) <= room))
