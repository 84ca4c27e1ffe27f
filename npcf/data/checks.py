"""The checks every model's ``fit`` runs on its training inputs (the estimator's and
the baselines')."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.data.ratings import ZERO_RATING
from npcf.data.vocab import Vocabulary
from npcf.errors import NpcfError, repeated_pairs
from npcf.utils.sparse import FLOAT32_MAX, beyond_float32, duplicate_entries, stored_values


def check_inputs(X, validation=None, validation_input=None, users=None,
                 items=None) -> sp.csr_matrix:
    """``X`` as CSR after checking the training inputs agree: ``validation`` has ``X``'s
    shape (or, beside a ``validation_input`` of the same shape, its columns), and
    ``users``/``items`` are :class:`Vocabulary` maps of ``X``'s rows/columns.
    :class:`NpcfError` naming the argument and the shapes otherwise."""
    def shape_of(name, m):
        if not (sp.issparse(m) or isinstance(m, np.ndarray)) or m.ndim != 2:
            raise NpcfError(f"{name}: expected a 2-D SciPy sparse matrix, got "
                            f"{type(m).__name__}")
        return m.shape
    shape_of("X", X)
    for name, m in (("X", X), ("validation", validation), ("validation_input", validation_input)):
        if n := duplicate_entries(m):
            raise repeated_pairs(name, n)
    X = sp.csr_matrix(X)
    if X.nnz == 0:
        raise NpcfError(f"X: the training matrix {X.shape} holds no ratings")
    for name, m in (("X", X), ("validation", validation), ("validation_input", validation_input)):
        values = None if m is None else stored_values(m) if sp.issparse(m) else np.asarray(m)
        if values is not None and (n := beyond_float32(values)):
            raise NpcfError(f"{name}: holds {n} values that are not finite numbers within "
                            f"float32's range (NaN, infinite or |rating| > {FLOAT32_MAX:.3g})")
        if values is not None and sp.issparse(m) and (values == 0).any():
            raise NpcfError(f"{name}: {int((values == 0).sum())} stored zeros: {ZERO_RATING} "
                            "(eliminate_zeros() drops them)")
    if validation is not None:
        v = shape_of("validation", validation)
        if validation_input is None and v != X.shape:
            raise NpcfError(f"validation: shape {v} differs from the training matrix's "
                            f"{X.shape}")
        if validation_input is not None:
            vi = shape_of("validation_input", validation_input)
            if vi != v or v[1] != X.shape[1]:
                raise NpcfError(f"validation_input {vi} and validation {v} need one shape "
                                f"with the training matrix's {X.shape[1]} columns")
    for name, vocab, n in (("users", users, X.shape[0]), ("items", items, X.shape[1])):
        if vocab is None:
            continue
        if not isinstance(vocab, Vocabulary):
            raise NpcfError(f"{name}: expected an npcf.Vocabulary of ids, got "
                            f"{type(vocab).__name__} (wrap the ids: Vocabulary(ids))")
        if len(vocab) != n:
            raise NpcfError(f"{name}: {len(vocab)} ids for {n} "
                            f"{'rows' if name == 'users' else 'columns'} of the training matrix")
    return X
