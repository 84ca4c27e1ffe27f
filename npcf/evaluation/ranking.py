"""The one top-k routine, and the ``recommend`` contract every npcf model shares.

:func:`rank` turns scores into ranked lists: it masks what must not be recommended
(the user's own items, excluded items, items outside a candidate set), applies the
popularity penalty and keeps the k best. The estimator, both paths of the ONNX
:class:`~npcf.serving.runtime.Recommender`, evaluation, the trainer's validation and
the baselines all rank through it, so a ranking never depends on which path made it.

:class:`Recommends` is the mixin behind every model's implicit-style
``recommend(user_items, k=10, filter_seen=True, filter_items=None, items=None)``.

Imports numpy and scipy only (the ONNX runtime uses it).
"""
from __future__ import annotations

from collections.abc import ItemsView, KeysView, ValuesView
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from npcf.errors import NpcfError, ParamError, flag, non_negative, positive_int, repeated_pairs, shown
from npcf.utils.sparse import FLOAT32_MAX, beyond_float32, duplicate_entries, entry_rows, rated
from npcf.utils.topk import largest_mask

#: id returned where a user has fewer allowed items than ``k`` (score ``-inf``)
PAD = -1


class Recommendations(NamedTuple):
    """``ids`` (raw movie ids, or column indices without a vocabulary) and their
    ``scores`` float32, best first: shape (k',) for one user, (B, k') for a batch, with
    k' = min(k, the movies ``items``/``filter_items`` leave). A user with fewer unseen
    movies than that ends in id ``-1`` (``""`` for string ids) with score ``-inf``."""

    ids: np.ndarray
    scores: np.ndarray


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (B, k) of the k highest scores per row, best first (ties: lower index;
    NaN ranks last, like ``-inf``)."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    # argpartition alone would pick arbitrary items among those tied with the k-th
    part = np.nonzero(largest_mask(scores, k))[1].reshape(scores.shape[0], k)
    order = np.lexsort((part, -np.take_along_axis(scores, part, 1)), axis=1)
    return np.take_along_axis(part, order, 1)


#: the largest popularity penalty: beyond it ``penalty * log(1 + count)`` can overflow
#: float32 (log(1 + 2**63) ~ 44) and every counted movie would rank as -inf
MAX_PENALTY = 1e30


def check_penalty(value, name: str = "popularity_penalty") -> float:
    """``value`` as a float if it is a finite number in [0, :data:`MAX_PENALTY`];
    :class:`~npcf.errors.ParamError` naming ``name`` otherwise."""
    v = non_negative(value, name)
    if v > MAX_PENALTY:
        raise ParamError(name, f"must be at most {MAX_PENALTY:g} (a larger penalty overflows "
                               f"float32 scores), got {value!r}")
    return v


def penalty_vector(penalty: float, item_counts) -> np.ndarray:
    """``penalty * log(1 + count)`` per item as float32 (the ONNX graph stores the same)."""
    counts = np.asarray(item_counts, np.float64)
    return (float(penalty) * np.log1p(counts)).astype(np.float32)


def rank(scores: np.ndarray, k: int, *, seen: sp.spmatrix | None = None, exclude=None,
         candidates=None, penalty: float = 0.0, item_counts=None):
    """Top-``k`` columns of each row of ``scores`` and their scores.

    ``scores``: (B, n) float. ``seen``: sparse (B, n) whose stored entries are never
    recommended (the users' own items; None: none). ``exclude``: column indices never
    recommended. ``candidates``: the only column indices that may be recommended
    (None: all). ``penalty``, ``item_counts`` (n,): rank by ``scores - penalty * log(1 +
    count)`` (:func:`penalty_vector`), computed in the scores' float type.

    Returns ``(idx, top_scores)``: int64 and float32 (B, k') with k' = min(k, number of
    allowed columns), best first, ties to the lower column; ``top_scores`` are the
    input scores (without the penalty). A row with fewer allowed columns, or whose
    remaining scores are NaN or ``-inf``, is padded with :data:`PAD` and ``-inf``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (users, items), got shape {scores.shape}")
    n = scores.shape[1]
    dtype = np.float32 if scores.dtype == np.float32 else np.float64
    values = np.array(scores, dtype=dtype)                   # a copy: masked below
    if penalty:
        if item_counts is None:
            raise NpcfError("a popularity penalty needs the items' training rating counts")
        values -= penalty_vector(penalty, item_counts).astype(dtype)
    if seen is not None:
        seen = sp.csr_matrix(seen)
        if seen.shape != scores.shape:
            raise ValueError(f"seen has shape {seen.shape}, scores {scores.shape}")
        values[entry_rows(seen), seen.indices] = -np.inf
    allowed = _allowed(n, exclude, candidates)
    cols = None if allowed.all() else np.flatnonzero(allowed)
    if cols is not None:
        values = values[:, cols]
    top = top_k(values, min(int(k), values.shape[1]))
    ranked = np.take_along_axis(values, top, 1)
    idx = top if cols is None else cols[top]
    out = np.take_along_axis(scores, idx, 1).astype(np.float32)
    empty = ~np.isfinite(ranked)
    idx[empty] = PAD
    out[empty] = -np.inf
    return idx.astype(np.int64, copy=False), out


def _allowed(n: int, exclude=None, candidates=None) -> np.ndarray:
    """Boolean (n,): the columns in ``candidates`` (all if None) minus ``exclude``."""
    allowed = np.ones(n, bool) if candidates is None else np.zeros(n, bool)
    for cols, value in ((candidates, True), (exclude, False)):
        if cols is not None:
            cols = np.asarray(cols, np.int64).ravel()
            if cols.size and (cols.min() < 0 or cols.max() >= n):
                raise NpcfError(f"column index out of range 0..{n - 1}")
            allowed[cols] = value
    return allowed


def _is_pairs(obj) -> bool:
    """Whether ``obj`` holds one user's ``(movie_id, rating)`` pairs: a dict, list, tuple,
    set, dict view or iterator. Anything array-like (NumPy, pandas, a buffer) is a
    dense rating vector or matrix instead."""
    if isinstance(obj, (dict, list, tuple, set, frozenset, KeysView, ItemsView, ValuesView)):
        return True
    array_like = hasattr(obj, "__array__") or hasattr(obj, "__array_interface__") \
        or isinstance(obj, (memoryview, bytes, bytearray, str)) or sp.issparse(obj)
    return not array_like and hasattr(obj, "__next__")


def outside_scale(values: np.ndarray, scale) -> str | None:
    """``"ratings LO..HI are outside the model's scale A-B"`` when some of ``values`` lie
    outside ``scale`` (``(min, max)``; None: no scale), else None."""
    if scale is None or not values.size:
        return None
    lo, hi = values.min(), values.max()
    if lo >= scale[0] and hi <= scale[1]:
        return None
    return (f"ratings {shown(lo)}..{shown(hi)} are outside the model's scale "
            f"{scale[0]:g}-{scale[1]:g}")


def check_ratings(values: np.ndarray, scale, name: str = "") -> None:
    """NpcfError (prefixed ``name: `` when given) unless every rating of ``values`` is
    finite and inside ``scale`` (``(min, max)``; None: no scale)."""
    where = f"{name}: " if name else ""
    if values.size and not np.isfinite(values).all():
        raise NpcfError(f"{where}ratings must be finite numbers")
    if problem := outside_scale(values, scale):
        raise NpcfError(where + problem)


def rating_rows(m, name: str = "X") -> sp.csr_matrix:
    """Users' ratings ``m`` (any sparse format or array) as CSR float32 without stored
    zeros (0 means "not rated"); NpcfError naming ``name`` if a (row, column) pair is
    stored twice or a rating is not a finite float32 number. ``m`` itself is never
    modified."""
    if sp.issparse(m) and m.ndim == 1:          # a 1-D sparse array: one user's row
        m = m.reshape(1, -1)
    if n := duplicate_entries(m):
        raise repeated_pairs(name, n)
    if n := beyond_float32(m):
        raise NpcfError(f"{name}: {n} ratings are not finite numbers within float32's range "
                        f"(|rating| <= {FLOAT32_MAX:.3g})")
    return rated(m)


def clip_finite(scores: np.ndarray, scale) -> np.ndarray:
    """``scores`` with the finite ones clipped to ``scale`` (``(min, max)``; None: as
    they are); ``-inf`` (padding) stays."""
    if scale is None:
        return scores
    return np.where(np.isfinite(scores), np.clip(scores, *scale), scores).astype(
        scores.dtype, copy=False)


def untrained_columns(item_counts) -> np.ndarray:
    """Columns (int64) whose training count is 0; none when the counts are unknown."""
    if item_counts is None:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.asarray(item_counts) == 0)


def with_untrained(exclude, untrained: np.ndarray):
    """``exclude`` (column indices or None) plus the ``untrained`` columns."""
    if not len(untrained):
        return exclude
    return untrained if exclude is None else np.union1d(np.asarray(exclude, np.int64),
                                                        untrained)


class Recommends:
    """Mixin: implicit-style :meth:`recommend` for a model that scores user rows.

    A model provides ``predict(X)`` (or overrides ``_score_rows(X)``: CSR float32
    (B, n_items) -> (B, n_items) scores), ``item_counts`` once fitted (int64 training
    ratings per item; ``n_items`` is their number) or its own ``n_items``, and
    optionally ``items`` (a
    :class:`~npcf.data.vocab.Vocabulary` of raw movie ids), ``item_counts`` and
    ``popularity_penalty`` (ranking by ``score - beta * log(1 + count)``),
    ``rating_scale`` (``(min, max)``, to check ratings given as pairs) and
    ``recommend_batch`` (users scored at once, default 256), and ``rank_scores(X)``
    when its predictions are clipped to the scale (ranked by before the clip). Items with a training count
    of 0 (:meth:`untrained_items`: their scores come from untrained weights) are never
    recommended unless named in ``items``.
    """

    items = None
    item_counts = None
    popularity_penalty = 0.0
    rating_scale = None
    recommend_batch = 256

    @property
    def n_items(self) -> int:
        """Number of items (columns) the model scores; NpcfError before it is fitted."""
        if self.item_counts is None:
            raise NpcfError("the model is not fitted")
        return int(self.item_counts.size)

    def recommend(self, user_items, k: int = 10, filter_seen: bool = True, filter_items=None,
                  items=None) -> Recommendations:
        """Top-``k`` movies per user, best first.

        ``user_items``: the users' ratings as a sparse (B, n_items) matrix (returns 2-D
        results), or one user's as a dense 1-D vector of length n_items, a list of
        ``(movie_id, rating)`` pairs or a ``{movie_id: rating}`` dict (returns 1-D).
        ``filter_seen``: never recommend a movie in the input. ``filter_items``: movie
        ids never to recommend. ``items``: the only movie ids that may be recommended
        (without it, movies no training rating touched are left out).
        Movie ids are raw ids where the model knows them (``items`` vocabulary), else
        column indices. Returns :class:`Recommendations` ``(ids, scores)``.
        """
        k, filter_seen = positive_int(k, "k"), flag(filter_seen, "filter_seen")
        self._n_items_checked()
        X, single = self._user_rows(user_items)
        exclude = None if filter_items is None else self._item_columns(filter_items)
        candidates = None if items is None else self._item_columns(items)
        idx, scores = self._rank_rows(X, k, filter_seen, exclude, candidates)
        ids = self._item_ids(idx)
        if single:
            return Recommendations(ids[0], scores[0])
        return Recommendations(ids, scores)

    def __sklearn_is_fitted__(self) -> bool:
        """Whether the model is fitted (scikit-learn's ``check_is_fitted`` asks this)."""
        try:
            return self._n_items_checked() > 0
        except NpcfError:
            return False

    def untrained_items(self) -> np.ndarray:
        """Column indices (int64) of the items without a training rating (none when the
        counts are unknown)."""
        return untrained_columns(self.item_counts)

    # --------------------------------------------------------------- overridable
    def _rank_rows(self, X: sp.csr_matrix, k: int, filter_seen: bool, exclude, candidates):
        """``rank`` over :meth:`_score_batches`, batch by batch (bounded memory)."""
        if candidates is None:
            exclude = with_untrained(exclude, self.untrained_items())
        parts = []
        for lo, scores in self._score_batches(X):
            rows = X[lo:lo + scores.shape[0]]
            parts.append(rank(scores, k, seen=rows if filter_seen else None, exclude=exclude,
                              candidates=candidates, penalty=self.popularity_penalty,
                              item_counts=self.item_counts))
        if not parts:
            width = min(k, int(_allowed(self.n_items, exclude, candidates).sum()))
            return np.zeros((0, width), np.int64), np.zeros((0, width), np.float32)
        return (np.concatenate([p[0] for p in parts]),
                self._shown_scores(np.concatenate([p[1] for p in parts])))

    def _shown_scores(self, scores: np.ndarray) -> np.ndarray:
        """The scores a recommendation shows for the ranked ones: clipped to the rating
        scale (a model ranks by its predictions before the clip)."""
        return clip_finite(scores, self.rating_scale)

    def _score_batches(self, X: sp.csr_matrix):
        """Yield ``(first row, scores)`` for consecutive batches of ``X``'s rows."""
        step = max(1, int(self.recommend_batch))
        for lo in range(0, X.shape[0], step):
            yield lo, self._score_rows(X[lo:lo + step])

    def _score_rows(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores (B, n_items) of CSR rows ``X`` to rank by: the model's ``rank_scores``
        (its predictions before the clip to the rating scale) where it has them, else
        its ``predict``."""
        return getattr(self, "rank_scores", self.predict)(X)

    # -------------------------------------------------------------------- inputs
    def _n_items_checked(self) -> int:
        """``n_items``, or NpcfError when the model is not fitted."""
        try:
            n = int(self.n_items)
        except (AttributeError, TypeError):
            n = 0
        if n < 1:
            raise NpcfError("the model is not fitted")
        return n

    def _user_rows(self, user_items) -> tuple[sp.csr_matrix, bool]:
        """CSR float32 (B, n_items) and whether one user was given."""
        single_pairs = _is_pairs(user_items)
        if sp.issparse(user_items):
            single = user_items.ndim == 1                    # a 1-D sparse array: one user
            X = rating_rows(user_items.reshape(1, -1) if single else user_items, "user_items")
        elif isinstance(user_items, dict):
            X, single = self._pairs_row(list(user_items.items())), True
        elif single_pairs:
            X, single = self._pairs_row(list(user_items)), True     # (a generator too)
        else:
            try:
                arr = np.asarray(user_items)
            except (TypeError, ValueError):
                arr = np.empty(0, object)
            if arr.dtype.kind not in "iuf":     # strings, booleans, ragged lists: refused
                raise NpcfError(f"user_items must be a sparse matrix, an array of ratings or "
                                f"(movie_id, rating) pairs, got {type(user_items).__name__}"
                                + (f" of {arr.dtype}" if arr.dtype != object else ""))
            if arr.ndim not in (1, 2):
                raise NpcfError(f"user_items must be 1-D (one user) or 2-D, got shape {arr.shape}")
            single = arr.ndim == 1
            X = rating_rows(np.atleast_2d(arr), "user_items")
        if X.shape[1] != self.n_items:
            hint = " (for (movie_id, rating) pairs pass a list of tuples or a dict)" \
                if X.shape[1] == 2 and not sp.issparse(user_items) else ""
            raise NpcfError(f"input has {X.shape[1]} columns; the model expects "
                            f"{self.n_items} items{hint}")
        check_ratings(X.data, None if single_pairs else self.rating_scale)  # (pairs: per movie)
        return (X if X.has_sorted_indices else X.sorted_indices()), single

    def _pairs_row(self, pairs) -> sp.csr_matrix:
        """CSR (1, n_items) from ``[(movie_id, rating), ...]``."""
        try:
            ids, values = zip(*pairs) if pairs else ((), ())
            values = np.asarray(values) if values else np.zeros(0)
        except (TypeError, ValueError):
            values = np.empty(0, object)
        if values.dtype.kind not in "iuf" or values.ndim != 1:   # "5", True, [5]: refused
            raise NpcfError("ratings must be (movie_id, rating) pairs with numeric ratings")
        values = values.astype(np.float64)
        cols = self._item_columns(ids)
        if cols.size != np.unique(cols).size:
            dup = [ids[i] for i in range(len(ids)) if np.count_nonzero(cols == cols[i]) > 1]
            raise NpcfError(f"movie {dup[0]} is rated more than once")
        bad = ~(np.abs(values) <= FLOAT32_MAX) | (values == 0)
        if bad.any():
            raise NpcfError(f"rating {shown(values[bad][0])} for movie "
                            f"{ids[int(np.flatnonzero(bad)[0])]} "
                            "is not a finite, non-zero number within float32's range")
        lo_hi = self.rating_scale
        if lo_hi is not None:
            out = (values < lo_hi[0]) | (values > lo_hi[1])
            if out.any():
                j = int(np.flatnonzero(out)[0])
                raise NpcfError(f"rating {shown(values[j])} for movie {ids[j]} is outside the "
                                f"model's scale {lo_hi[0]:g}-{lo_hi[1]:g}")
        return sp.csr_matrix((values.astype(np.float32), (np.zeros(cols.size, np.int64), cols)),
                             shape=(1, self.n_items))

    def _item_columns(self, ids) -> np.ndarray:
        """Column indices (int64) of movie ids (raw ids with a vocabulary, else indices)."""
        if isinstance(ids, (str, bytes)) or np.ndim(ids) == 0:
            ids = [ids]                      # one id
        ids = list(ids) if not isinstance(ids, np.ndarray) else ids
        if self.items is not None:
            idx = self.items.index(ids, missing="ignore")
            if (idx < 0).any():
                unknown = np.asarray(ids, dtype=object)[idx < 0][:5]
                raise NpcfError(f"unknown movie id(s) not in the model: "
                                f"{', '.join(map(str, unknown))}")
            return idx
        try:
            idx = np.asarray(ids, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise NpcfError("movie ids must be column indices (this model has no id map)") \
                from None
        if idx.size and (np.any(idx != np.floor(idx)) or idx.min() < 0
                         or idx.max() >= self.n_items):
            bad = idx[(idx != np.floor(idx)) | (idx < 0) | (idx >= self.n_items)][0]
            raise NpcfError(f"unknown movie index {bad:g} (the model has {self.n_items} items)")
        return idx.astype(np.int64)

    def _item_ids(self, idx: np.ndarray) -> np.ndarray:
        """Raw movie ids of column indices; :data:`PAD` stays a pad (-1 or "")."""
        if self.items is None:
            return idx
        raw = self.items.ids
        out = raw[np.where(idx < 0, 0, idx)] if raw.size else np.zeros(idx.shape, raw.dtype)
        if (idx < 0).any():
            out = out.copy()
            out[idx < 0] = PAD if raw.dtype.kind in "iu" else ""
        return out
