"""Seeded train/test(/validation) splits of a CSR rating matrix.

Every split keeps the full (n_users, n_items) shape and the id maps, so indices
mean the same thing in every part. Kinds:

``random``    per-rating holdout: ``test_size`` of all ratings, uniformly (RMSE).
``user``      per-user holdout: each user with >= 2 ratings holds out
              ``round(test_size * n_u)`` of them (at least 1, at most n_u - 1).
``temporal``  as ``user``, but each user's *latest* ratings are held out
              (ties broken at random).
``users``     held-out users ("strong generalization", Liang et al. 2018):
              ``test_size`` of the users with >= 2 ratings leave training; each keeps
              ``1 - holdout`` of their ratings as fold-in input and ``holdout`` as target.

``validation_size`` carves a validation part from the training part the same way.
At test time the model's input is everything known that is not a target:
``test_input = train + validation`` (or the fold-in part for ``users``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from npcf.data.ratings import Ratings
from npcf.errors import DataError, NpcfError
from npcf.utils.sparse import entry_rows, select

KINDS = ("random", "user", "temporal", "users")


@dataclass
class Split:
    """Parts of a split, all CSR float32 with the same shape (n_users, n_items).

    ``train``: what the model fits on. ``test``: held-out targets. ``test_input``:
    what the model sees when predicting ``test``. ``validation`` and
    ``validation_input`` likewise (None without a validation part).
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    test_input: sp.csr_matrix
    validation: sp.csr_matrix | None = None
    validation_input: sp.csr_matrix | None = None
    params: dict = field(default_factory=dict)

    def parts(self) -> dict:
        """Non-empty parts by name."""
        names = ("train", "test", "test_input", "validation", "validation_input")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def _per_user_holdout(m: sp.csr_matrix, fraction: float, rng, order_key=None) -> np.ndarray:
    """Boolean mask over entries: the held-out ones, ``round(fraction * n_u)`` per user.

    ``order_key`` (per entry, larger = held out first) selects which; random if None.
    """
    counts = np.diff(m.indptr)
    n_out = np.clip(np.round(fraction * counts), 1, np.maximum(counts - 1, 0))
    n_out[counts < 2] = 0
    rows = entry_rows(m)
    tiebreak = rng.random(m.nnz)
    key = tiebreak if order_key is None else order_key
    order = np.lexsort((tiebreak, -key if order_key is not None else key, rows))
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1].astype(np.int64), counts)
    return rank < n_out[rows]


def _split_once(m, kind, size, rng, timestamps, holdout):
    """(kept, held-out target, held-out input) masks/parts for one cut of ``m``."""
    if kind == "random":
        n_test = int(round(size * m.nnz))
        test = np.zeros(m.nnz, dtype=bool)
        test[rng.permutation(m.nnz)[:n_test]] = True
        return select(m, ~test), select(m, test), None
    if kind in ("user", "temporal"):
        test = _per_user_holdout(m, size, rng, timestamps if kind == "temporal" else None)
        return select(m, ~test), select(m, test), None
    if kind == "users":
        counts = np.diff(m.indptr)
        eligible = np.flatnonzero(counts >= 2)
        chosen = rng.permutation(eligible)[:int(round(size * eligible.size))]
        is_test_user = np.zeros(m.shape[0], dtype=bool)
        is_test_user[chosen] = True
        in_test_rows = is_test_user[entry_rows(m)]
        heldout_users = select(m, in_test_rows)
        target = _per_user_holdout(heldout_users, holdout, rng)
        return select(m, ~in_test_rows), select(heldout_users, target), \
            select(heldout_users, ~target)
    raise NpcfError(f"unknown split {kind!r}; choose one of {', '.join(KINDS)}")


def split_ratings(ratings: Ratings | sp.csr_matrix, kind: str = "random",
                  test_size: float = 0.1, seed: int = 0, validation_size: float = 0.0,
                  holdout: float = 0.2) -> Split:
    """Split a rating matrix (or :class:`Ratings`) as documented in this module.

    ``test_size``/``validation_size``: fraction of ratings (``random``), of each
    user's ratings (``user``, ``temporal``) or of users (``users``). ``holdout``:
    fraction of a held-out user's ratings that are targets (``users`` only).
    """
    if not 0 < test_size < 1:
        raise NpcfError(f"test_size must be in (0, 1), got {test_size}")
    if not 0 <= validation_size < 1:
        raise NpcfError(f"validation_size must be in [0, 1), got {validation_size}")
    m = ratings.matrix if isinstance(ratings, Ratings) else sp.csr_matrix(ratings)
    ts = ratings.timestamps if isinstance(ratings, Ratings) else None
    if kind == "temporal" and ts is None:
        raise DataError("the temporal split needs timestamps; this data has none",
                        getattr(ratings, "source", None))
    rng = np.random.default_rng(seed)
    ts_sel = None
    if ts is not None:
        ts_sel = sp.csr_matrix((ts.astype(np.float64), m.indices, m.indptr), shape=m.shape)
    rest, test, test_in = _split_once(m, kind, test_size, rng, ts, holdout)
    val = val_in = None
    if validation_size > 0:
        rest_ts = None
        if ts_sel is not None:
            rest_ts = _align(ts_sel, rest)
        # validation_size is a fraction of the whole; rescale to the remaining part.
        frac = validation_size / (1 - test_size) if kind in ("random", "users") else validation_size
        train, val, val_in = _split_once(rest, kind, min(frac, 0.95), rng, rest_ts, holdout)
        if val_in is None:
            val_in = train
    else:
        train = rest
    if test_in is None:
        test_in = rest      # train + validation
    params = {"kind": kind, "test_size": test_size, "seed": seed,
              "validation_size": validation_size}
    if kind == "users":
        params["holdout"] = holdout
    return Split(train, test, test_in, val, val_in, params)


def _align(values: sp.csr_matrix, part: sp.csr_matrix) -> np.ndarray:
    """Values of ``values`` at the stored entries of ``part`` (same shape, subset pattern)."""
    if not part.nnz:
        return np.zeros(0)
    return np.asarray(values[entry_rows(part), part.indices]).ravel()


def describe(params: dict) -> str:
    """One line describing the protocol of a split with these ``params``."""
    kind = params.get("kind", "random")
    size = params.get("test_size")
    pct = f"{size:.0%} " if isinstance(size, (int, float)) else ""
    if kind == "users":
        h = float(params.get("holdout", 0.2))
        return (f"held-out users ({pct.strip() or 'some'}): fold in {1 - h:.0%} of their "
                f"ratings, predict {h:.0%}")
    if kind in ("user", "temporal"):
        which = "latest" if kind == "temporal" else "random"
        return f"per-user holdout ({pct}of each user's ratings, {which}): top-N"
    if kind == "given":
        return "given train/test files"
    return f"random rating holdout ({pct}of ratings): rating prediction and top-N"
