"""The training-time order of the network's input axis: most-rated first.

Item popularity is Zipf-like, so in every mini-batch the most-rated items are touched
and the rest rarely are. Renumbering the input axis by training popularity (most rated
first, ties by id) makes the item rows a batch touches start with long contiguous runs:
the optimizer updates a run in place on slices of ``W0``/``c0`` and their moments
(:mod:`npcf.nn.optim`) instead of gathering and scattering each row, and the
first-layer products read neighbouring rows.

The order is a training detail: :class:`HotOrder` puts the network, the optimizer
state and the baseline's column biases in it for the batches of an epoch and puts them
back before anything outside the batch loop (validation, callbacks, checkpoints,
Ctrl-C state, the fitted model) sees them. It is a function of the training matrix, so
a resumed run uses the same one.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import scipy.sparse as sp

#: parameters indexed by the input axis along their first dimension
ITEM_PARAMS = ("W0", "V0", "c0")


class HotOrder:
    """Popularity order of the columns of CSR ``train`` (B, n).

    ``order`` (n,) int64: the original column at each new position; ``rank`` its
    inverse; ``train``: ``train`` with renumbered, sorted columns (a copy).
    """

    def __init__(self, train: sp.csr_matrix):
        counts = np.bincount(train.indices, minlength=train.shape[1])
        self.order = np.argsort(-counts, kind="stable").astype(np.int64)
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(self.order.size)
        self.train = self.columns(train)

    def columns(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """CSR ``m`` with its columns renumbered into this order (indices sorted)."""
        out = sp.csr_matrix((m.data.copy(), self.rank[m.indices].astype(m.indices.dtype),
                             m.indptr.copy()), shape=m.shape)
        out.has_sorted_indices = False
        out.sort_indices()
        return out

    def _permute(self, net, opt, index: np.ndarray) -> None:
        for name in ITEM_PARAMS:
            if name not in net.params:
                continue
            arrays = [net.params[name]] + list(opt.state.get(name, {}).values())
            for arr in arrays:
                arr[...] = arr[index]       # in place: callers hold references

    @contextlib.contextmanager
    def applied(self, model, net, opt):
        """``with order.applied(model, net, opt):`` the network's item-indexed
        parameters, their optimizer state and ``model.baseline``'s column biases are in
        this order; on exit (also on error) they are back in the original one."""
        baseline = model.baseline
        self._permute(net, opt, self.order)
        if baseline is not None:
            hot = copy.copy(baseline)
            hot.col_bias = baseline.col_bias[self.order]
            model.baseline = hot
        try:
            yield self.train
        finally:
            model.baseline = baseline
            self._permute(net, opt, self.rank)
