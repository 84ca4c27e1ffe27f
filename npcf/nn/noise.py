"""Input corruption for denoising autoencoders. Noise touches only the input
(the target stays the clean ratings) and only the observed entries (a sparse
input stays sparse).

``masking``         each observed rating is removed with probability ``level``
                    (still reconstructed in the loss);
``gaussian``        additive: ``x + level * N(0, 1)`` on observed entries;
``multiplicative``  the original project's: ``x * N(1, level^2)``;
``none``            no corruption (the original's ``--basic``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.utils.sparse import select

KINDS = ("masking", "gaussian", "multiplicative", "none")


def corrupt(x: sp.csr_matrix, kind: str, level: float, rng) -> sp.csr_matrix:
    """A corrupted copy of CSR ``x`` (B, n), or ``x`` itself when ``kind`` is ``"none"`` or
    ``level <= 0``; ``x`` is never modified."""
    if kind == "none" or level <= 0:
        return x
    if kind == "masking":
        return select(x, rng.random(x.nnz) >= level)
    noise = rng.standard_normal(x.nnz).astype(x.dtype)
    if kind == "gaussian":
        data = x.data + np.asarray(level, x.dtype) * noise
    elif kind == "multiplicative":
        data = x.data * (1 + np.asarray(level, x.dtype) * noise)
    else:
        raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(KINDS)}")
    return sp.csr_matrix((data, x.indices, x.indptr), shape=x.shape)
