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

from npcf.nn.bias import UserItemBias
from npcf.nn.neighbours import ItemNeighbours

#: ``kind`` of a neighbour member in ``model.json``'s blend members
NEIGHBOURS_KIND = "item_neighbours"


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
        out = np.empty(X.shape, np.float32)
        for s in range(0, X.shape[0], batch_size):
            out[s:s + batch_size] = self.model.predict(X[s:s + batch_size])
        return self._clip(out, clip)

    def _predict_one_at(self, X: sp.csr_matrix, rows, cols, batch_size: int = 1024,
                        clip: bool = True) -> np.ndarray:
        """Predictions float32 (n,) at the pairs ``(rows[k], cols[k])`` from CSR ``X``."""
        return self._clip(self.model.predict_at(X, rows, cols), clip)

    def describe(self) -> dict:
        """How ``info["blend"]["members"]`` lists it (JSON values)."""
        m = self.model
        return {"kind": NEIGHBOURS_KIND, "neighbours": int(m.neighbours),
                "shrinkage": float(m.shrinkage), "bias_reg": [m.reg_row, m.reg_col]}

    # -------------------------------------------------------------- persistence
    def parts(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: the similarity matrix (CSR arrays) and the bias model."""
        m, S = self.model, self.model.similarity
        arrays = {"similarity/data": S.data, "similarity/indices": S.indices,
                  "similarity/indptr": S.indptr, "baseline/col_bias": m.baseline.col_bias}
        meta = dict(self.describe(), scale=list(self.scale), mu=float(m.baseline.mu))
        return arrays, meta

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict, n_items: int) -> "NeighbourMember":
        """The member :meth:`parts` described, for ``n_items`` items; ValueError (or
        KeyError for a missing entry) where the pair does not describe one."""
        numbers = [meta["mu"], *meta["bias_reg"], meta["shrinkage"], *meta["scale"]]
        if len(meta["bias_reg"]) != 2 or len(meta["scale"]) != 2 or not all(
                type(v) in (int, float) and math.isfinite(v) for v in numbers):
            raise ValueError("a neighbour member's mu, bias_reg, shrinkage and scale must "
                             "be finite numbers")
        if meta["scale"][0] > meta["scale"][1] or min(meta["bias_reg"]) < 0:
            raise ValueError("a neighbour member's scale or bias_reg is out of order")
        model = ItemNeighbours(*meta["bias_reg"], int(meta["neighbours"]),
                               float(meta["shrinkage"]))
        model.baseline = UserItemBias(*meta["bias_reg"])
        model.baseline.mu = float(meta["mu"])
        col_bias = np.asarray(arrays["baseline/col_bias"])
        data, indices = arrays["similarity/data"], arrays["similarity/indices"]
        indptr = arrays["similarity/indptr"]
        if col_bias.shape != (n_items,) or indptr.shape != (n_items + 1,) \
                or data.ndim != 1 or data.shape != indices.shape \
                or indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" \
                or col_bias.dtype.kind != "f" or data.dtype.kind != "f":
            raise ValueError(f"a neighbour member's arrays do not fit {n_items} items")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != data.size \
                or (indices.size and (indices.min() < 0 or indices.max() >= n_items)) \
                or not np.all(np.isfinite(data)) or np.any(data < 0) \
                or not np.all(np.isfinite(col_bias)):
            raise ValueError("a neighbour member's similarity matrix is malformed")
        model.baseline.col_bias = col_bias.astype(np.float32)
        model.similarity = sp.csr_matrix((data.astype(np.float32), indices, indptr),
                                         shape=(n_items, n_items))
        return cls(model, meta["scale"])
