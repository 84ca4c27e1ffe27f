"""Build the inference graph of a trained model with ``onnx.helper``, node by node.

Opset 17 (IR version 8 from :data:`OPSET_TO_IR`); setup.cfg's floors (onnx >= 1.14,
onnxruntime >= 1.15) export and run every variant (``benchmarks/compat.py``).
Inputs (chosen at export):

- dense:  ``ratings`` float32 [batch, n_items]; 0 = unrated (the original's).
- sparse: ``item_idx`` int64 [batch, max_len] and ``item_rating`` float32
  [batch, max_len]: a user's history, padded with rating 0 (the padding index
  may be any valid index, e.g. 0). The first layer is ``Gather`` of ``W0`` rows
  and a rating-weighted ``ReduceSum``: its cost follows the history length.
- raw ids (``raw_ids``, int64 movie ids only): ``movie_id`` int64 [batch, max_len]
  and ``rating`` float32 [batch, max_len], padded with rating 0 (any id). An
  ``ai.onnx.ml`` ``LabelEncoder`` maps ids to columns (default -1); an unknown id
  is treated as padding and counted in ``n_unknown`` int64 [batch] (padding slots
  are not counted); then the sparse path. Always with top-k, whose columns a
  second ``LabelEncoder`` maps back to ``top_movie_ids`` int64 [batch, K]: a client
  needs nothing but the ``.onnx`` file. ``scores`` and ``top_items`` stay (columns in
  the ``item_ids`` metadata order) for the runtime and the parity check.

A user-based stack (``AutoEncoder.tune``'s cross-fitted blend of a user-based winner)
exports as one graph: each member's block (a network as above, or item neighbours: the
user's bias from their ratings, then ``MatMul`` of the residuals and of the rated mask
with the dense similarities, items x items, stored as their non-zeros (float16 where that
holds them exactly, as fitted) and made dense when onnxruntime loads the model), each
clipped to the rating scale and
weighed by ``(c0 + c1 log(1 + n_item)) + log(1 + n_rated) (c2 + c3 log(1 + n_item))``
(the training ratings' item counts; where the stack chose it, ``+ c4 log(1 + m)``, ``m``
the neighbours' mean similarity mass, their ``MatMul`` of the mask); the sparse
signatures scatter the history into a dense row for the neighbours, whose cost follows
n_items squared, not the history.
fp32 and fp16 only; ``stack`` metadata counts the members (``architecture`` describes
the first network).

Outputs: ``scores`` float32 [batch, n_items] (predicted ratings, clipped to the
rating scale, or logits for the multinomial loss); for a clipped model also
``rank_scores`` (the same before the clip: what ranking orders by, since
predictions past the top of the scale would all tie there); with ``top_k``:
``top_items`` int64 [batch, K] (column indices; map with the ``item_ids`` metadata)
and ``top_scores`` float32 (the ``scores`` of those items), ranked by ``rank_scores``
(else ``scores``) minus ``popularity_penalty * log(1 + n_ratings of the item)`` after masking the
input's rated items and the items no training rating touched (``untrained_items``
metadata). Ties go to the lower index (ONNX ``TopK``). A user with fewer such
items than K gets ``top_scores`` -inf (and ``top_movie_ids`` -1) in the slots past
them (``top_items`` there are masked columns).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper

from npcf._version import __version__
from npcf.errors import NpcfError, ParamError, flag, os_message, positive_int
from npcf.evaluation.ranking import check_penalty, penalty_vector, untrained_columns
from npcf.nn.bias_priors import PriorBias
from npcf.nn.neighbours import GRAPH_BYTES, ItemNeighbours, graph_holds
from npcf.serving.quantize import quantize_int8
from npcf.serving.runtime import Recommender, sidecar_path
from npcf.utils.files import staged_files
from npcf.utils.sparse import rated

#: weights per stack member when they also follow the neighbours' similarity mass
#: (``npcf.autoencoder.blend.MASS_FEATURES``; serving imports nothing from the trainer)
MASS_FEATURES = 5

OPSET = 17
#: ONNX opset -> the IR version it was released with (as sklearn-onnx and
#: onnxmltools pin it); a newer IR than a user's onnxruntime knows is refused.
#: From 16 on: the sparse top-k's ``ScatterElements`` needs its ``reduction`` attribute.
OPSET_TO_IR = {16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
#: ONNX opset -> the ``ai.onnx.ml`` opset released with it (``onnx.helper.VERSION_TABLE``);
#: every one has ``LabelEncoder``-2's ``keys_int64s``/``values_int64s``/``default_int64``.
OPSET_TO_ML = {16: 3, 17: 3, 18: 3, 19: 3, 20: 4, 21: 5}
ML_DOMAIN = "ai.onnx.ml"
MAX_INLINE_IDS = 200_000
PRECISIONS = ("fp32", "fp16", "int8")
#: largest relative |ONNX - NumPy| score difference :func:`check_parity` accepts, per precision
PARITY_TOLERANCE = {"fp32": 1e-5, "fp16": 1e-3, "int8": 0.05}
_ACT = {"relu": "Relu", "selu": "Selu", "elu": "Elu", "sigmoid": "Sigmoid", "tanh": "Tanh",
        "identity": "Identity"}


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], {}, 0

    def init(self, name: str, value) -> str:
        arr = np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(arr, name)
        return name

    def op(self, op_type: str, inputs, n_out: int = 1, name: str | None = None, **attrs):
        self._n += 1
        base = name or f"{op_type.lower()}_{self._n}"
        outs = [base] if n_out == 1 else [f"{base}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"n{self._n}_{op_type}",
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def act(self, name: str, x: str, out: str | None = None) -> str:
        if name == "identity" and out is None:
            return x
        return self.op(_ACT[name], [x], name=out)


def item_ids(model) -> np.ndarray:
    """The model's movie ids by column: its id map's, or the column indices of a model
    fitted without one."""
    return model.items.ids if model.items is not None else np.arange(model.network.n_inputs)


def raw_item_ids(model) -> np.ndarray:
    """The model's movie ids as int64 (n_items,) for a raw-id graph, or NpcfError."""
    ids = None if model.items is None else np.asarray(model.items.ids)
    if ids is None:
        raise NpcfError("--raw_ids: the model records no movie ids (trained without a vocabulary)")
    if ids.dtype.kind not in "iu":
        raise NpcfError(f"--raw_ids: needs integer movie ids; this model's are {ids.dtype.kind!r}-typed "
                        "strings (export without --raw_ids and map top_items with the item_ids metadata)")
    return ids.astype(np.int64)


def check_exportable(model, *, top_k=None, popularity_penalty=None, raw_ids: bool = False,
                     opset: int = OPSET) -> int:
    """The graph's top-k, int: ``min(top_k, n_items)``, 0 for ``top_k`` None (scores
    only). Raises before any work: NpcfError unless ``model`` is a fitted, user-based
    AutoEncoder (one network, or a stack :func:`_check_stack` accepts);
    :class:`~npcf.errors.ParamError` for ``top_k`` not a whole number >= 1 (bools
    refused), ``popularity_penalty`` not a finite number >= 0 (None: the model's own), an
    ``opset`` not in :data:`OPSET_TO_IR`, or ``raw_ids`` without a top-k or with a model
    lacking int64 movie ids (:func:`raw_item_ids`)."""
    net = _fitted_network(model)
    if model.item_based:
        raise NpcfError("item-based models score items from all users' ratings and cannot "
                        "fold in a single user; export a user-based model (train --user_based)")
    if getattr(model, "blend_weights", None) is not None:
        _check_stack(model)
    if isinstance(opset, bool) or opset not in OPSET_TO_IR:
        raise ParamError("opset", f"{opset!r} not supported; choose one of {sorted(OPSET_TO_IR)}")
    if popularity_penalty is not None:
        check_penalty(popularity_penalty)
    k = 0 if top_k is None else min(positive_int(top_k, "top_k"), net.n_inputs)
    if raw_ids:
        if not k:
            raise ParamError("raw_ids", "the graph returns the top movie ids; needs top_k >= 1 (--top_k)")
        raw_item_ids(model)
    return k


def _check_stack(model) -> None:
    """NpcfError unless ``model``'s blend is a user-based stack the graph can hold: every
    member a user-based masked-MSE network or item neighbours, on the model's rating
    scale and items, weights that follow the counts of the rows and of the training
    ratings (``item_counts``) and, where they follow the similarity mass, a neighbour
    member to take it from, and neighbour matrices within
    :data:`~npcf.nn.neighbours.GRAPH_BYTES`."""
    members = getattr(model, "blend_members", None) or []
    nets = [model, *[m for m in members if not _is_neighbours(m)]]
    if any(m.item_based or m.loss != "mse" for m in nets):
        raise NpcfError("a blend that holds item-based networks scores items from all users' "
                        "ratings and cannot fold in a single user; train one to export with "
                        "--user_based")
    n = model.network.n_inputs
    if model.scale is None or getattr(model, "item_counts", None) is None \
            or any(m.scale != model.scale for m in members) \
            or any(m.network.n_inputs != n for m in nets):
        raise NpcfError("a blend's members must share its rating scale and items, and the "
                        "model must record its items' rating counts")
    if model.support_weights()[0].shape[1] == MASS_FEATURES and len(nets) == len(members) + 1:
        raise NpcfError("the blend's weights follow the neighbours' similarity mass, but "
                        "no member is item neighbours")
    if not graph_holds(n, len(members) + 1 - len(nets)):
        size = 4 * n * n * (len(members) + 1 - len(nets))
        raise NpcfError(f"this stack's item neighbours would make the graph build "
                        f"{size / 2**30:.1f} GiB of {n:,} x {n:,} matrices (at most "
                        f"{GRAPH_BYTES / 2**30:.1f}); train one to export with "
                        "--user_based (never blended)")

def _fitted_network(model):
    """``model.network``, or NpcfError when ``model`` is no fitted AutoEncoder."""
    if not hasattr(model, "network") or not hasattr(model, "item_based"):
        raise NpcfError(f"only an npcf AutoEncoder exports to ONNX, not {type(model).__name__}")
    if model.network is None:
        raise NpcfError("the model is not fitted; fit it (or load a checkpoint) before "
                        "exporting")
    return model.network


def _raw_id_input(g: "_Graph", ids: np.ndarray) -> tuple[str, str]:
    """Nodes from ``movie_id``/``rating`` to the sparse path's (``item_idx``,
    ``item_rating``) and the ``n_unknown`` output (ratings whose id is not a column)."""
    col = g.op("LabelEncoder", ["movie_id"], name="item_col", domain=ML_DOMAIN,
               keys_int64s=ids.tolist(), values_int64s=list(range(len(ids))), default_int64=-1)
    zero_i = g.init("zero_i", np.array(0, np.int64))
    known = g.op("GreaterOrEqual", [col, zero_i], name="known_id")
    rated = g.op("Not", [g.op("Equal", ["rating", g.init("zero", np.array(0, np.float32))])])
    unknown = g.op("And", [g.op("Not", [known]), rated], name="unknown_rated")
    g.op("ReduceSum", [g.op("Cast", [unknown], to=TensorProto.INT64),
                       g.init("axis1", np.array([1], np.int64))], keepdims=0, name="n_unknown")
    idx = g.op("Where", [known, col, zero_i], name="item_idx")
    vals = g.op("Where", [known, "rating", "zero"], name="item_rating")
    return idx, vals


class _Rows:
    """The input rows as the graph holds them: ``vals`` (ratings, float32 [batch, n_items]
    dense or [batch, max_len] sparse), ``idx`` (sparse: int64 columns of ``vals``; dense:
    None), ``cols`` (dense: each row's rated columns first, int64 [batch, longest]),
    ``mask`` (1.0 where rated, shaped as ``vals``), ``count`` (ratings per row, float32
    [batch, 1]) and ``n`` (the catalogue's size)."""

    def __init__(self, vals, idx, cols, mask, count, n):
        self.vals, self.idx, self.cols, self.mask, self.count, self.n = \
            vals, idx, cols, mask, count, n
        self.dense: tuple | None = None       # sparse: (ratings, mask) scattered, once


def _row_bias(g: _Graph, pre: str, base, vals: str, mask: str, count: str, idx=None,
              prior=None) -> tuple[str, str, str, str]:
    """Nodes ``(residuals, row bias, mu, col_bias)`` of bias model ``base`` for the input
    rows: ``r - mu - b_col`` at the rated entries (``idx``: the sparse signature's
    columns, whose biases are gathered), the row's bias ``(sum + reg_row * prior) /
    (n_rated + reg_row)`` (``prior``: a [batch, 1] node, or none) as the bias models'
    ``row_bias`` folds a user in, and ``mu`` and the items' biases."""
    col_bias = g.init(pre + "col_bias", base.col_bias.astype(np.float32))
    mu = g.init(pre + "mu", np.array(base.mu, np.float32))
    cb = col_bias if idx is None else g.op("Gather", [col_bias, idx], axis=0,
                                           name=pre + "col_bias_of_input")
    res = g.op("Mul", [g.op("Sub", [g.op("Sub", [vals, mu]), cb]), mask])
    total = g.op("ReduceSum", [res, g.init("axis1", np.array([1], np.int64))], keepdims=1)
    reg = g.init(pre + "reg_row", np.array(base.reg_row, np.float32))
    if prior is not None:
        total = g.op("Add", [total, g.op("Mul", [reg, prior])])
    b_row = g.op("Div", [total, g.op("Add", [count, reg])], name=pre + "row_bias")
    return res, b_row, mu, col_bias


def _network_scores(g: _Graph, model, pre: str, rows: _Rows) -> str:
    """Node: ``model``'s own network's scores float32 [batch, n_items] in rating units,
    before any clip (``AutoEncoder._predict_one(clip=False)``); its initializers and
    named nodes prefixed with ``pre``."""
    net, p, base = model.network, model.network.params, model.baseline
    axis1 = g.init("axis1", np.array([1], np.int64))
    sparse_input = rows.idx is not None
    vals, mask, count, idx = rows.vals, rows.mask, rows.count, rows.idx
    b_row = None
    unit = model.unit if model.loss == "mse" else 1.0
    if unit != 1.0:                       # the network works on ratings / unit
        vals = g.op("Mul", [vals, g.init(pre + "per_unit", np.array(1 / unit, np.float32))],
                    name=pre + "ratings_in_units")
    if model.loss == "multinomial":
        # binarise and L2-normalise: x = mask / sqrt(n_rated)
        safe = g.op("Max", [count, g.init("one", np.array(1, np.float32))])
        x = g.op("Div", [mask, g.op("Sqrt", [safe])], name=pre + "x_in")
    elif base is not None:
        res, b_row, mu, col_bias = _row_bias(g, pre, base, vals, mask, count, idx)
        x = g.op("Mul", [g.op("Sub", [res, b_row]), mask], name=pre + "x_in")
    else:
        x = vals
    W0 = g.init(pre + "W0", p["W0"])
    axis2 = g.init("axis2", np.array([2], np.int64))
    if sparse_input:
        first = g.op("Gather", [W0, idx], axis=0, name=pre + "W0_rows")       # [B, L, h1]
        weighted = g.op("Mul", [first, g.op("Unsqueeze", [x, axis2])])
    else:
        vals_c = g.op("GatherElements", [x, rows.cols], axis=1, name=pre + "rated_values")
        first = g.op("Gather", [W0, rows.cols], axis=0, name=pre + "W0_rows")  # [B, L, h1]
        weighted = g.op("Mul", [first, g.op("Unsqueeze", [vals_c, axis2])])
    z = g.op("Add", [g.op("ReduceSum", [weighted, axis1], keepdims=0),
                     g.init(pre + "b0", p["b0"])], name=pre + "enc0_pre")
    a = g.act(net.activation, z, pre + "enc0")
    L = len(net.layers)
    for k in range(1, L):
        z = g.op("Gemm", [a, g.init(f"{pre}W{k}", p[f"W{k}"]), g.init(f"{pre}b{k}", p[f"b{k}"])])
        a = g.act(net.activation, z, f"{pre}enc{k}")
    for k in range(L - 1, -1, -1):
        w = f"W{k}" if net.tied else f"V{k}"
        z = g.op("Gemm", [a, g.init(pre + w, p[w]), g.init(f"{pre}c{k}", p[f"c{k}"])], transB=1,
                 name=f"{pre}dec{k}_pre")
        a = g.act(net.activation if k else net.output_activation, z,
                  f"{pre}dec{k}" if k else None)
    y = a
    if b_row is not None:
        offset = g.op("Add", [g.op("Add", [mu, b_row]), col_bias])
        y = g.op("Add", [y, offset])
    if unit != 1.0:
        y = g.op("Mul", [y, g.init(pre + "unit", np.array(unit, np.float32))],
                 name=pre + "ratings_out")
    return y


def _dense_rows(g: _Graph, rows: _Rows) -> tuple[str, str]:
    """``(ratings, mask)`` float32 [batch, n_items] of the input rows (the sparse
    signature's scattered into zeros: padding adds 0 where it points)."""
    if rows.idx is None:
        return rows.vals, rows.mask
    if rows.dense is not None:              # scattered once for every member
        return rows.dense
    shape = g.op("Concat", [g.op("Slice", [g.op("Shape", [rows.vals]),
                                           g.init("zero_1", np.array([0], np.int64)),
                                           g.init("one_i", np.array([1], np.int64))]),
                            g.init("n_items", np.array([rows.n], np.int64))], axis=0)
    zeros = g.op("ConstantOfShape", [shape], value=numpy_helper.from_array(
        np.zeros(1, np.float32)), name="dense_zeros")
    dense = g.op("ScatterElements", [zeros, rows.idx, rows.vals], axis=1, reduction="add",
                 name="dense_ratings")
    mask = g.op("ScatterElements", [zeros, rows.idx, rows.mask], axis=1, reduction="add",
                name="dense_rated")
    rows.dense = dense, mask
    return rows.dense


def _is_neighbours(member) -> bool:
    """Whether a blend member is item neighbours (``NeighbourMember``), not a network."""
    return isinstance(getattr(member, "model", None), ItemNeighbours)


def _dense_from_sparse(g: _Graph, name: str, m) -> str:
    """Node: CSR ``m`` (n x n) as a dense float32 matrix, stored as its non-zeros (flat int32
    positions, values as float16 where that holds them exactly, as the similarities are
    fitted) and scattered into zeros by the graph, which onnxruntime folds into a constant
    when it loads the model: the file holds ``n x 200`` entries per member, not ``n^2``."""
    n = m.shape[0]
    coo = m.tocoo()
    flat = coo.row.astype(np.int64) * n + coo.col
    index = flat.astype(np.int32) if n * n < 2 ** 31 else flat
    values = coo.data.astype(np.float32)
    half = values.astype(np.float16)
    exact = np.array_equal(half.astype(np.float32), values)
    vals = g.init(name + "_values", half if exact else values)
    if exact:
        vals = g.op("Cast", [vals], to=TensorProto.FLOAT)
    zeros = g.init(name + "_zeros_shape", np.array([n * n], np.int64))
    dense = g.op("ScatterElements", [g.op("ConstantOfShape", [zeros], value=numpy_helper.from_array(
        np.zeros(1, np.float32))), g.init(name + "_index", index), vals], axis=0)
    return g.op("Reshape", [dense, g.init(name + "_shape", np.array([n, n], np.int64))],
                name=name)


def _neighbour_scores(g: _Graph, member, pre: str, rows: _Rows) -> tuple[str, str]:
    """Nodes: an item-neighbour member's predictions float32 [batch, n_items]
    (:meth:`npcf.nn.neighbours.ItemNeighbours.predict`, unclipped) and its similarity
    mass [batch, n_items] (:meth:`~npcf.nn.neighbours.ItemNeighbours.mass`): the user's
    bias from their ratings (shrunk toward their raters' prior with the bias priors),
    then the similarity-weighted residuals of the rated items, ``S`` dense (n_items x
    n_items)."""
    nb = member.model
    base = nb.baseline
    x, mask = _dense_rows(g, rows)
    prior = None
    if isinstance(base, PriorBias):           # the mean rater bias of the rated items
        rater = g.init(pre + "rater_bias", base.rater_bias.astype(np.float32)[:, None])
        prior = g.op("Div", [g.op("MatMul", [mask, rater]), g.op(
            "Max", [rows.count, g.init("one", np.array(1, np.float32))])])
    res, b_row, mu, col_bias = _row_bias(g, pre, base, x, mask, rows.count, prior=prior)
    resid = g.op("Mul", [g.op("Sub", [res, b_row]), mask], name=pre + "residual")
    St = _dense_from_sparse(g, pre + "similarity_T", nb.similarity.T.tocsr())
    # one product of [residuals; mask] (2, batch, n_items): the similarities are read
    # once for both, which is what a small batch's time goes to
    axis0 = g.init("axis0", np.array([0], np.int64))
    both = g.op("MatMul", [g.op("Concat", [g.op("Unsqueeze", [resid, axis0]),
                                           g.op("Unsqueeze", [mask, axis0])], axis=0), St])
    num = g.op("Gather", [both, g.init("index0", np.array(0, np.int64))], axis=0)
    den = g.op("Gather", [both, g.init("index1", np.array(1, np.int64))], axis=0,
               name=pre + "similarity_mass")
    zero = g.init("zero", np.array(0, np.float32))
    step = g.op("Where", [g.op("Greater", [den, zero]), g.op("Div", [num, g.op(
        "Add", [den, g.init(pre + "damping", np.array(nb.damping, np.float32))])]), zero])
    return g.op("Add", [g.op("Add", [g.op("Add", [mu, b_row]), col_bias]), step],
                name=pre + "scores"), den


def _stack_scores(g: _Graph, model, rows: _Rows) -> str:
    """Node: a user-based stack's scores float32 [batch, n_items] before the final clip
    (``AutoEncoder._predict(clip=False)``): each member's clipped predictions weighed by
    ``surface(coef_k)``, plus ``surface(offset)``, where a pair's surface is linear in
    ``(1, c, r, r c)``, ``r = log(1 + n_rated)`` of the row and ``c = log(1 +
    item_counts)`` (``AutoEncoder.support_weights``), and with five coefficients also in
    ``log(1 + m)``, ``m`` the neighbour members' mean similarity mass at the pair."""
    W, b = model.support_weights()
    c = np.log1p(np.asarray(model.item_counts, np.float64))
    one = g.init("one", np.array(1, np.float32))
    r = g.op("Log", [g.op("Add", [rows.count, one])], name="log_n_rated")
    lo = g.init("scale_min", np.array(model.scale[0], np.float32))
    hi = g.init("scale_max", np.array(model.scale[1], np.float32))
    scores, masses = [], []
    for k, m in enumerate([model, *model.blend_members]):
        pre = f"m{k}_"
        if _is_neighbours(m):
            y, mass = _neighbour_scores(g, m, pre, rows)
            masses.append(mass)
        else:
            y = _network_scores(g, m, pre, rows)
        scores.append(g.op("Clip", [y, lo, hi], name=pre + "clipped"))
    log_mass = None
    if W.shape[1] == MASS_FEATURES:   # (1, c, r, r c) and log(1 + mass); _check_stack:
        # a neighbour member is there
        mean = masses[0] if len(masses) == 1 else g.op("Div", [g.op("Sum", masses), g.init(
            "neighbour_members", np.array(len(masses), np.float32))])
        log_mass = g.op("Log", [g.op("Add", [mean, one])], name="log_similarity_mass")

    def surface(coef, name: str) -> str:     # (coef0 + coef1 c) + r (coef2 + coef3 c)
        left = g.init(name + "_const", (coef[0] + coef[1] * c).astype(np.float32))
        right = g.init(name + "_by_log_n", (coef[2] + coef[3] * c).astype(np.float32))
        out = g.op("Add", [left, g.op("Mul", [r, right])])
        if log_mass is not None:             # + coef4 log(1 + mass)
            out = g.op("Add", [out, g.op("Mul", [log_mass, g.init(
                name + "_by_log_mass", np.array(coef[4], np.float32))])])
        return g.op("Identity", [out], name=name)

    out = surface(b, "stack_offset")
    for k, y in enumerate(scores):
        out = g.op("Add", [out, g.op("Mul", [surface(W[k], f"m{k}_weight"), y])],
                   name=f"stack_{k}")
    return out


def build_graph(model, *, sparse_input: bool = False, top_k: int | None = None,
                popularity_penalty: float = 0.0, item_counts=None, opset: int = OPSET,
                raw_ids: bool = False):
    """An ``onnx.ModelProto`` computing ``model``'s scores (see the module docstring).

    ``item_counts``: (n_items,) number of training ratings per item, needed for a
    non-zero ``popularity_penalty``; items with 0 are never in the top-k. ``raw_ids``:
    take and return movie ids (implies ``sparse_input``; needs ``top_k`` and int64 ids,
    see :func:`raw_item_ids`). Options are checked by :func:`check_exportable`.
    """
    top_k = check_exportable(model, top_k=top_k, popularity_penalty=popularity_penalty,
                             raw_ids=raw_ids, opset=opset)
    net = model.network
    if raw_ids:
        ids = raw_item_ids(model)
        sparse_input = True
    n, g = net.n_inputs, _Graph()
    B = "batch"
    axis1 = g.init("axis1", np.array([1], np.int64))
    if raw_ids:
        inputs = [helper.make_tensor_value_info("movie_id", TensorProto.INT64, [B, "max_len"]),
                  helper.make_tensor_value_info("rating", TensorProto.FLOAT, [B, "max_len"])]
        idx, vals = _raw_id_input(g, ids)
    elif sparse_input:
        inputs = [helper.make_tensor_value_info("item_idx", TensorProto.INT64, [B, "max_len"]),
                  helper.make_tensor_value_info("item_rating", TensorProto.FLOAT, [B, "max_len"])]
        idx, vals = "item_idx", "item_rating"
    else:
        inputs = [helper.make_tensor_value_info("ratings", TensorProto.FLOAT, [B, n])]
        vals = "ratings"
    zero = g.init("zero", np.array(0, np.float32))
    mask = g.op("Cast", [g.op("Not", [g.op("Equal", [vals, zero])])], to=TensorProto.FLOAT,
                name="rated")
    count = g.op("ReduceSum", [mask, axis1], keepdims=1, name="n_rated")
    cols = None
    if not sparse_input:
        # The dense row is mostly zeros. TopK on the rated-mask lists each row's rated
        # columns first (k = the batch's longest history), then each network's first
        # layer is the same Gather + weighted ReduceSum as the sparse signature: its
        # cost follows the ratings, not n_items.
        longest = g.op("Cast", [g.op("ReduceMax", [count], keepdims=0)], to=TensorProto.INT64)
        longest = g.op("Max", [g.op("Reshape", [longest, g.init("shape1", np.array([1], np.int64))]),
                               g.init("one_i", np.array([1], np.int64))], name="longest")
        _, cols = g.op("TopK", [mask, longest], n_out=2, axis=1, largest=1, sorted=1,
                       name="rated_cols")
    rows_in = _Rows(vals, idx if sparse_input else None, cols, mask, count, n)
    if getattr(model, "blend_weights", None) is None:
        y = _network_scores(g, model, "", rows_in)
    else:
        y = _stack_scores(g, model, rows_in)
    unclipped = y
    if model.loss == "mse" and model.scale is not None:
        lo = g.init("scale_min", np.array(model.scale[0], np.float32))
        hi = g.init("scale_max", np.array(model.scale[1], np.float32))
        # ranked before the clip: predictions past the top of the scale would tie there
        unclipped = g.op("Identity", [y], name="rank_scores")
        y = g.op("Clip", [y, lo, hi])
    scores = g.op("Identity", [y], name="scores")
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [B, n])]
    if top_k:
        k = top_k
        rank = unclipped
        if popularity_penalty:
            if item_counts is None:
                raise NpcfError("a popularity penalty needs the items' rating counts")
            pen = penalty_vector(popularity_penalty, item_counts)
            rank = g.op("Sub", [unclipped, g.init("popularity_penalty", pen)])
        if sparse_input:
            # padding slots carry mask 0, so "add" leaves their column unmarked: the same
            # result as "max" (opset 18), within ScatterElements-16's none/add/mul
            seen = g.op("ScatterElements", [g.op("Mul", [rank, zero]), idx, mask], axis=1,
                        reduction="add")
        else:
            seen = mask
        neg = g.init("neg_inf", np.array(-np.inf, np.float32))
        hidden = g.op("Greater", [seen, zero])
        untrained = untrained_columns(item_counts)
        if untrained.size:
            flags = np.zeros(n, bool)
            flags[untrained] = True
            hidden = g.op("Or", [hidden, g.init("untrained", flags)], name="hidden")
        masked = g.op("Where", [hidden, neg, rank], name="masked_scores")
        ranked, top = g.op("TopK", [masked, g.init("k", np.array([k], np.int64))], n_out=2,
                           axis=1, largest=1, sorted=1, name="topk")
        g.op("Identity", [top], name="top_items")
        # a slot past the user's unseen items holds a rated one: its score is -inf
        rated_slot = g.op("Equal", [ranked, neg], name="rated_slot")
        g.op("Where", [rated_slot, neg, g.op("GatherElements", [scores, "top_items"], axis=1)],
             name="top_scores")
        outputs += [helper.make_tensor_value_info("top_items", TensorProto.INT64, [B, k]),
                    helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, [B, k])]
    opsets = [helper.make_opsetid("", opset)]
    if raw_ids:
        movie_ids = g.op("LabelEncoder", ["top_items"], domain=ML_DOMAIN,
                         keys_int64s=list(range(n)), values_int64s=ids.tolist(),
                         default_int64=-1)
        g.op("Where", [rated_slot, g.init("no_movie", np.array(-1, np.int64)), movie_ids],
             name="top_movie_ids")
        outputs += [helper.make_tensor_value_info("top_movie_ids", TensorProto.INT64, [B, k]),
                    helper.make_tensor_value_info("n_unknown", TensorProto.INT64, [B])]
        opsets.append(helper.make_opsetid(ML_DOMAIN, OPSET_TO_ML[opset]))
    if unclipped != y:          # last: the outputs before it keep their places
        outputs.append(helper.make_tensor_value_info("rank_scores", TensorProto.FLOAT, [B, n]))
    graph = helper.make_graph(g.nodes, "npcf_autoencoder", inputs, outputs,
                              initializer=[t for t in g.inits.values()])
    onnx_model = helper.make_model(graph, opset_imports=opsets,
                                   producer_name="npcf", producer_version=__version__,
                                   ir_version=OPSET_TO_IR[opset])
    return onnx_model


def metadata(model, *, sparse_input: bool, top_k, popularity_penalty: float,
             item_counts=None, raw_ids: bool = False) -> dict:
    """``metadata_props`` of an exported model (all values strings)."""
    net = model.network
    meta = {
        "npcf_version": __version__,
        "architecture": json.dumps({"n_items": net.n_inputs, "layers": list(net.layers),
                                    "tied": net.tied, "activation": net.activation,
                                    "output_activation": net.output_activation,
                                    "loss": model.loss,
                                    "residual": model.baseline is not None}),
        "rating_scale": json.dumps(None if model.scale is None else list(model.scale)),
        "input_signature": "raw_ids" if raw_ids else "sparse" if sparse_input else "dense",
        "top_k": str(int(top_k or 0)),
        "popularity_penalty": repr(float(popularity_penalty)),
    }
    members = getattr(model, "blend_members", None) or []
    if getattr(model, "blend_weights", None) is not None:   # what the stack's graph holds
        kinds = ["item_neighbours" if _is_neighbours(m) else "network"
                 for m in [model, *members]]
        meta["stack"] = json.dumps({k: kinds.count(k) for k in dict.fromkeys(kinds)})
    if popularity_penalty:      # the runtime's NumPy path ranks with the same penalty
        meta["item_counts"] = json.dumps(np.asarray(item_counts, np.int64).tolist())
    untrained = untrained_columns(item_counts)
    if untrained.size:          # ... and leaves out the same items
        meta["untrained_items"] = json.dumps(untrained.tolist())
    ids = item_ids(model)
    meta["item_ids_dtype"] = "int64" if ids.dtype.kind in "iu" else "str"
    text = json.dumps(ids.tolist())
    meta["item_ids_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    if len(ids) <= MAX_INLINE_IDS:
        meta["item_ids"] = text
    return meta


def fp16_weights(m: onnx.ModelProto) -> onnx.ModelProto:
    """Store every 2-D float initializer as float16, read through a ``Cast`` to float32
    (onnxruntime's CPU kernels compute in float32): half the file, same graph."""
    g = m.graph
    for init in list(g.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.ndim != 2:
            continue
        g.initializer.remove(init)
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16"))
        g.node.insert(0, helper.make_node("Cast", [init.name + "_fp16"], [init.name],
                                          name=f"{init.name}_to_fp32", to=TensorProto.FLOAT))
    return m


def export(model, path, *, sparse_input: bool = False, top_k: int | None = None,
           popularity_penalty: float | None = None, item_counts=None, precision: str = "fp32",
           opset: int = OPSET, extra_metadata: dict | None = None, raw_ids: bool = False,
           check=False, batch_size: int = 256) -> Path:
    """Export ``model`` to ``path``; checker and shape inference must pass. Returns ``path``.

    ``top_k``: add ``top_items``/``top_scores`` (a whole number >= 1, at most the
    catalogue; None: scores only). ``popularity_penalty``/``item_counts``: default to
    the model's own (``model.popularity_penalty``, ``model.item_counts``). Bad options and
    an unfitted model are refused before any work (:func:`check_exportable`).
    ``precision``: ``fp32``, ``fp16`` (weights stored as float16, see
    :func:`fp16_weights`) or ``int8`` (int8 weights, activations quantized one scale per
    user row: batch-independent, see :mod:`npcf.serving.quantize`). Item ids beyond
    :data:`MAX_INLINE_IDS` go to a sidecar ``<path>.items.json`` (hash in metadata).
    ``extra_metadata``: more ``metadata_props`` (strings), e.g. where the model came from.
    ``raw_ids``: the graph takes and returns movie ids (see the module docstring).
    ``check``: also run :func:`check_parity` (True: on ``batch_size`` random users; a
    sparse (users, n_items) ratings matrix: on those) before the file is in place.

    Atomic: the graph and its sidecar are written beside ``path`` and renamed onto it
    only when complete (and checked); on any error ``path`` is left as it was.
    ``path``'s directory is made if missing; NpcfError if ``path`` is a directory.
    """
    _check_rows_option(check)
    if Path(path).suffix != ".onnx" and not Path(path).is_dir():   # (a directory: named)
        raise ParamError("path", f"{path}: an exported model is an .onnx file (Recommender.load "
                         "tells it from a checkpoint by its name)")
    m, meta = graph_and_metadata(model, sparse_input=sparse_input, top_k=top_k,
                                 popularity_penalty=popularity_penalty, item_counts=item_counts,
                                 precision=precision, opset=opset, raw_ids=raw_ids,
                                 extra_metadata=extra_metadata)
    with staged_export(path) as staged:
        write_graph(model, m, meta, staged)
        if check is not False:
            check_parity(model, staged, None if check is True else check,
                         batch_size=batch_size, target=path)
    return Path(path)


def graph_and_metadata(model, *, sparse_input: bool = False, top_k: int | None = None,
                       popularity_penalty: float | None = None, item_counts=None,
                       precision: str = "fp32", opset: int = OPSET,
                       extra_metadata: dict | None = None, raw_ids: bool = False):
    """``(onnx.ModelProto, metadata dict)`` of :func:`export` (options as there), the
    checker and strict shape inference passed; nothing written."""
    if precision not in PRECISIONS:
        raise ParamError("precision", f"unknown precision {precision!r}; choose "
                                      f"{', '.join(PRECISIONS)}")
    if precision == "int8" and getattr(model, "blend_weights", None) is not None:
        raise ParamError("precision", "int8 quantizes one network's weights; this model is a "
                         "stack of several: export it as fp32 or fp16")
    sparse_input, raw_ids = flag(sparse_input, "sparse_input"), flag(raw_ids, "raw_ids")
    if popularity_penalty is None:
        popularity_penalty = getattr(model, "popularity_penalty", 0.0) or 0.0
    top_k = check_exportable(model, top_k=top_k, popularity_penalty=popularity_penalty,
                             raw_ids=raw_ids, opset=opset) or None
    if item_counts is None:
        item_counts = getattr(model, "item_counts", None)
    else:
        item_counts = _checked_counts(item_counts, model.network.n_inputs)
    m = build_graph(model, sparse_input=sparse_input, top_k=top_k, raw_ids=raw_ids,
                    popularity_penalty=popularity_penalty, item_counts=item_counts, opset=opset)
    if precision == "fp16":
        m = fp16_weights(m)
    elif precision == "int8":
        m = quantize_int8(m)
    meta = metadata(model, sparse_input=sparse_input, top_k=top_k, raw_ids=raw_ids,
                    popularity_penalty=popularity_penalty, item_counts=item_counts)
    meta["precision"] = precision
    own = sorted(set(map(str, extra_metadata or {})) & set(meta))
    if own:
        raise ParamError("extra_metadata", f"{', '.join(map(repr, own))}: npcf's own metadata "
                         "(the graph's contract); choose other keys")
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    return m, meta


def _checked_counts(counts, n_items: int) -> np.ndarray:
    """``counts`` as int64 training ratings per item; ParamError unless it is one
    non-negative whole number per item."""
    a = np.asarray(counts)
    if a.shape != (n_items,) or a.dtype.kind not in "iuf" or \
            (a.size and not (np.isfinite(a).all() and (a >= 0).all() and (a == np.round(a)).all())):
        raise ParamError("item_counts", f"expected {n_items} non-negative whole numbers (training "
                         f"ratings per item), got an array of shape {a.shape} and dtype {a.dtype}"
                         if a.shape != (n_items,) else "expected non-negative whole numbers "
                         "(training ratings per item)")
    return a.astype(np.int64)


def write_graph(model, m: onnx.ModelProto, meta: dict, path: Path) -> None:
    """Save graph ``m`` to ``path`` as it is (a staged path: :func:`staged_export`), with
    the id sidecar ``<path>.items.json`` when ``meta`` does not hold the ids inline."""
    if "item_ids" not in meta:
        sidecar_path(path).write_text(
            json.dumps(item_ids(model).tolist()), encoding="utf-8")
    onnx.save(m, path)


def _check_rows_option(check) -> None:
    """ParamError unless ``check`` is a bool or a sparse ratings matrix."""
    if not (isinstance(check, bool) or sp.issparse(check)):
        raise ParamError("check", "must be True, False or a sparse (users, n_items) ratings "
                                  f"matrix, got {type(check).__name__}")


def export_target(path) -> Path:
    """``path`` as a Path whose directory exists (made if missing); NpcfError when
    ``path`` is a directory or its directory cannot be made."""
    path = Path(path)
    if path.is_dir():
        raise NpcfError(f"{path}: is a directory; name the .onnx file to write in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NpcfError(f"{path}: cannot create its directory ({os_message(err)})") from None
    return path


@contextlib.contextmanager
def staged_export(path):
    """Yield where to write the graph (and its sidecar) named like ``path``, in a hidden
    directory beside it; on success they replace their namesakes beside ``path``
    (:func:`~npcf.utils.files.staged_files`), on an error nothing there changes. OS
    errors become one-line NpcfErrors naming ``path`` (see :func:`export_target`)."""
    path = export_target(path)
    try:
        with staged_files(path) as staged:
            yield staged
    except OSError as err:
        raise NpcfError(f"{path}: cannot write there ({os_message(err)})") from None


def sample_rows(model, n: int, seed: int = 0) -> sp.csr_matrix:
    """``n`` random users' ratings, CSR float32 (n, n_items): about 2% of the movies
    each, uniform over the model's rating scale (1..5 without one)."""
    rng = np.random.default_rng(seed)
    lo, hi = model.scale if getattr(model, "scale", None) is not None else (1.0, 5.0)
    x = sp.random(n, model.network.n_inputs, density=0.02, random_state=rng, format="csr",
                  dtype=np.float32)
    x.data = rng.uniform(lo, hi, x.nnz).astype(np.float32)
    x.eliminate_zeros()
    return x


def check_parity(model, path, rows=None, *, batch_size: int = 256, target=None) -> dict:
    """Compare the scores of the exported ``path`` (in onnxruntime) with
    ``model.predict`` (and the scores it ranks by with ``model.rank_scores``) on
    ``rows`` (sparse (users, n_items) ratings; None: :func:`sample_rows` of
    ``batch_size`` users), ``batch_size`` users per run.

    Returns ``{"n_users", "max_abs_diff", "relative", "tolerance"}``; NpcfError when
    the largest difference relative to the largest |score| exceeds the file's
    :data:`PARITY_TOLERANCE` (or is NaN), naming ``target`` as not written if given.
    """
    batch_size = positive_int(batch_size, "batch_size")
    rec = Recommender.load(path)
    if rows is None:
        x = sample_rows(model, batch_size)
    else:
        x = rated(rows)                 # 0 is "not rated", as in the graph
    # the clipped scores and the ones ranked by (the same for a model without a clip)
    got = np.concatenate([rec.scores(x, batch_size=batch_size),
                          rec.rank_scores(x, batch_size=batch_size)], axis=1)
    ref = np.concatenate([model.predict(x), model.rank_scores(x)], axis=1)
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    rel = err / max(1e-12, float(np.max(np.abs(ref)))) if ref.size else 0.0
    tol = PARITY_TOLERANCE[rec.meta.get("precision", "fp32")]
    if not rel <= tol:                                  # NaN: not a pass
        unwritten = f"; {target} was not written" if target is not None else ""
        raise NpcfError(f"ONNX output differs from the NumPy forward by {rel:.2e} "
                        f"(> {tol}, or not a number){unwritten}")
    return {"n_users": int(x.shape[0]), "max_abs_diff": err, "relative": rel,
            "tolerance": tol}
