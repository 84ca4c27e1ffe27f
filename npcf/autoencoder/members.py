"""Blend members that are not autoencoders: :class:`NeighbourMember`, the item-item
neighbour model (:mod:`npcf.nn.neighbours`) as a cross-fitted stack candidate.

A member answers what :class:`~npcf.AutoEncoder`'s blend asks of each of its members:
``_predict_one(X, batch_size, clip)`` (dense, users x items) and ``_predict_one_at(X,
rows, cols, batch_size, clip)``, both from the users' ratings ``X`` at call time and
clipped to the rating scale; and it saves as arrays plus JSON (no pickle).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from npcf.errors import CheckpointError
from npcf.nn.bias import UserItemBias
from npcf.nn.bias_priors import PriorBias
from npcf.nn.neighbours import ItemNeighbours

#: ``kind`` of a neighbour member in ``model.json``'s blend members: over the plain bias
#: model (saved before the bias priors) ...
NEIGHBOURS_KIND = "item_neighbours"
#: ... and over :class:`~npcf.nn.bias_priors.PriorBias` (a kind of its own, so that an
#: npcf from before the priors refuses the member instead of predicting without them)
PRIOR_NEIGHBOURS_KIND = "item_neighbours_priors"
NEIGHBOUR_KINDS = (NEIGHBOURS_KIND, PRIOR_NEIGHBOURS_KIND)
#: entries of a dense batch (users x items) predicted at a time
DENSE_BATCH = 2_000_000


def _in_row_batches(dense, X: sp.csr_matrix, batch_size: int) -> np.ndarray:
    """float32 (n_rows, n_items): ``dense(rows of X)`` (a dense array per batch of rows)
    for batches of at most ``batch_size`` rows and :data:`DENSE_BATCH` entries."""
    out = np.empty(X.shape, np.float32)
    rows = max(1, min(batch_size, DENSE_BATCH // max(1, X.shape[1])))
    for s in range(0, X.shape[0], rows):
        out[s:s + rows] = dense(X[s:s + rows])
    return out


class NeighbourMember:
    """``model`` (fitted :class:`ItemNeighbours`) predicting on rating ``scale``
    ``(low, high)``."""

    def __init__(self, model: ItemNeighbours, scale):
        self.model, self.scale = model, (float(scale[0]), float(scale[1]))

    def _clip(self, y: np.ndarray, clip: bool) -> np.ndarray:
        return np.clip(y, *self.scale, out=y) if clip else y

    def _predict_one(self, X: sp.csr_matrix, batch_size: int = 1024,
                     clip: bool = True) -> np.ndarray:
        """Dense float32 (n_rows, n_items) predictions for the rows of CSR ``X``."""
        return self._clip(_in_row_batches(self.model.predict, X, batch_size), clip)

    def _predict_one_at(self, X: sp.csr_matrix, rows, cols, batch_size: int = 1024,
                        clip: bool = True) -> np.ndarray:
        """Predictions float32 (n,) at the pairs ``(rows[k], cols[k])`` from CSR ``X``
        (checked by the estimator; ``batch_size`` unused: pairs are batched by the
        entries they gather)."""
        return self._clip(self.model.predict_at(X, rows, cols), clip)

    def similarity_mass(self, X: sp.csr_matrix, batch_size: int = 1024) -> np.ndarray:
        """Dense float32 (n_rows, n_items): each pair's similarity mass over the items its
        row of CSR ``X`` rated (:meth:`~npcf.nn.neighbours.ItemNeighbours.mass`), a
        feature the stack's weights may follow."""
        return _in_row_batches(self.model.mass, X, batch_size)

    def similarity_mass_at(self, X: sp.csr_matrix, rows, cols) -> np.ndarray:
        """:meth:`similarity_mass` float64 (n,) at the pairs ``(rows[k], cols[k])``."""
        return self.model.mass_at(X, rows, cols)

    def describe(self) -> dict:
        """How ``info["blend"]["members"]`` lists it (JSON values)."""
        m = self.model
        priors = isinstance(m.baseline, PriorBias)
        out = {"kind": PRIOR_NEIGHBOURS_KIND if priors else NEIGHBOURS_KIND,
               "neighbours": int(m.neighbours),
               "damping": float(m.damping), "bias_reg": [m.reg_row, m.reg_col]}
        if priors:
            out["rater_shrinkage"] = float(m.baseline.rater_shrinkage)
        return out

    # -------------------------------------------------------------- persistence
    def parts(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: the similarity matrix (CSR arrays) and the bias model (with
        priors: its raters' mean biases too, ``baseline/rater_bias``). The
        similarities are stored as float16 where that holds them exactly (as fitted, see
        :func:`npcf.nn.neighbours.half_precision`), the column indices as uint16 up to
        65,536 items: about half the bytes of float32 and int32."""
        m, S = self.model, self.model.similarity
        data = S.data.astype(np.float16)
        if not np.array_equal(data.astype(np.float32), S.data):   # not held by float16
            data = S.data
        indices = S.indices.astype(np.uint16) if S.shape[1] <= 1 << 16 else S.indices
        arrays = {"similarity/data": data, "similarity/indices": indices,
                  "similarity/indptr": S.indptr, "baseline/col_bias": m.baseline.col_bias}
        if isinstance(m.baseline, PriorBias):
            arrays["baseline/rater_bias"] = m.baseline.rater_bias
        meta = dict(self.describe(), scale=list(self.scale), mu=float(m.baseline.mu))
        return arrays, meta

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict, n_items: int, scale, where: str
                   ) -> "NeighbourMember":
        """The member :meth:`parts` described, for ``n_items`` items on the blend's rating
        ``scale``. ValueError (KeyError for a missing entry) where ``meta`` does not
        describe one; CheckpointError naming ``where`` (the file and the member's array
        prefix) where an array does not fit it. A ``shrinkage`` entry (written when the
        similarities were shrunk residual correlations) is not needed to predict: the
        saved similarities are used as they are. A member of :data:`NEIGHBOURS_KIND`
        (saved before the bias priors) predicts over the plain bias model it was fitted
        with; one of :data:`PRIOR_NEIGHBOURS_KIND` needs ``rater_shrinkage`` and
        ``baseline/rater_bias``."""
        _check_meta(meta, scale)
        priors = meta.get("kind") == PRIOR_NEIGHBOURS_KIND
        model = ItemNeighbours(*meta["bias_reg"], meta["neighbours"], meta["damping"],
                               priors=priors)
        model.baseline = PriorBias(*meta["bias_reg"], meta["rater_shrinkage"],
                                   meta["damping"]) if priors \
            else UserItemBias(*meta["bias_reg"])
        model.baseline.mu = float(meta["mu"])
        biases = ("baseline/col_bias", "baseline/rater_bias")[:2 if priors else 1]
        for name in (*biases, "similarity/data", "similarity/indices", "similarity/indptr"):
            if name not in arrays:
                raise CheckpointError(f"{where}{name}: missing")
        col_bias, *rater_bias = (_biases(arrays[name], n_items, scale, where + name)
                                 for name in biases)
        data = arrays["similarity/data"]
        indices, indptr = arrays["similarity/indices"], arrays["similarity/indptr"]
        if indptr.shape != (n_items + 1,) or data.ndim != 1 or data.shape != indices.shape \
                or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" \
                or data.dtype.kind != "f":
            raise CheckpointError(f"{where}similarity: not a CSR matrix of {n_items} items")
        with np.errstate(over="ignore", invalid="ignore"):
            data = data.astype(np.float32)
        if not np.all((data > 0) & (data <= 1)):                # cosines
            raise CheckpointError(f"{where}similarity/data: a similarity outside (0, 1]")
        if indptr[0] != 0 or indptr.max() > data.size \
                or np.any(np.diff(indptr.astype(np.int64)) < 0) or indptr[-1] != data.size:
            raise CheckpointError(f"{where}similarity/indptr: not row offsets from 0 "
                                  f"rising to the {data.size} similarities")
        if indices.size and (indices.min() < 0 or indices.max() >= n_items):
            raise CheckpointError(f"{where}similarity: indices out of range")
        S = sp.csr_matrix((data, indices.astype(np.int32), indptr.astype(np.int32)),
                          shape=(n_items, n_items))
        if not S.has_canonical_format:
            raise CheckpointError(f"{where}similarity: unsorted or repeated indices")
        if np.diff(indptr).max(initial=0) > meta["neighbours"] \
                or np.any(indices == np.repeat(np.arange(n_items), np.diff(indptr))):
            raise CheckpointError(f"{where}similarity: more than {meta['neighbours']} "
                                  f"neighbours in a row, or an item its own neighbour")
        model.baseline.col_bias, model.similarity = col_bias, S
        if priors:
            model.baseline.rater_bias = rater_bias[0]
        return cls(model, scale)


def _biases(values: np.ndarray, n_items: int, scale, where: str) -> np.ndarray:
    """float32 (n_items,) ``values``, a saved array of per-item biases; CheckpointError
    naming ``where`` unless it holds ``n_items`` numbers within twice the scale's span."""
    if values.shape != (n_items,) or values.dtype.kind != "f":
        raise CheckpointError(f"{where}: not {n_items} item biases")
    with np.errstate(over="ignore", invalid="ignore"):   # checked right after
        values = values.astype(np.float32)
    if not np.all(np.abs(values) <= 2 * (scale[1] - scale[0])):     # NaN fails too
        raise CheckpointError(f"{where}: a bias beyond twice the rating scale's span (or "
                              f"not a number)")
    return values


def _check_meta(meta, scale) -> None:
    """ValueError naming the field where a neighbour member's JSON is not what
    :meth:`NeighbourMember.parts` writes for a blend on rating ``scale``."""
    def number(v) -> bool:
        try:
            return type(v) in (int, float) and math.isfinite(v)
        except OverflowError:             # an integer too large for a float
            return False

    if scale is None:
        raise ValueError("a neighbour member needs the model's rating scale")
    reg = meta["bias_reg"]
    if not isinstance(reg, list) or len(reg) != 2 or not all(number(v) and v > 0
                                                             for v in reg):
        raise ValueError("a neighbour member's bias_reg must be two numbers > 0")
    if type(meta["neighbours"]) is not int or meta["neighbours"] < 0:
        raise ValueError("a neighbour member's neighbours must be a whole number >= 0")
    if not number(meta["damping"]) or meta["damping"] < 0:
        raise ValueError("a neighbour member's damping must be a number >= 0")
    if meta["scale"] != list(scale):
        raise ValueError(f"a neighbour member's scale {meta['scale']!r} is not the "
                         f"model's {list(scale)!r}")
    if not number(meta["mu"]) or not scale[0] <= meta["mu"] <= scale[1]:
        raise ValueError("a neighbour member's mu must be a number on the rating scale")
    if meta.get("kind") == PRIOR_NEIGHBOURS_KIND and not (
            number(meta["rater_shrinkage"]) and meta["rater_shrinkage"] > 0):
        raise ValueError("a neighbour member's rater_shrinkage must be a number > 0")
