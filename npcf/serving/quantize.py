"""The int8 graph: :func:`quantize_int8` rewrites an fp32 npcf graph (``ModelProto`` in,
``ModelProto`` out, standard ONNX operators only, the same opset).

- **Weights**: every weight matrix (a 2-D float32 initializer read only by ``Gather``
  rows or a ``Gemm`` B) becomes one int8 initializer ``<name>_int8`` with symmetric
  7-bit scales (``|q| <= 63``, :data:`WEIGHT_QMAX`; zero point 0) in float32
  ``<name>_scale``: one per output
  channel (a row of ``W0``/``V_k``: one per movie; a column of an encoder ``W_k``), or
  one for the whole matrix when its readers disagree (a tied middle ``W_k``, read as
  ``W_k`` by the encoder and as ``W_kᵀ`` by the decoder). A tied ``W0`` is stored once:
  the first layer's ``Gather`` (dense and sparse signatures alike) reads int8 rows and
  their per-movie scales, the decoder's ``MatMulInteger`` reads the same initializer
  through a ``Transpose`` that onnxruntime folds at load.
- **Activations**: the input ``a`` (float32 [batch, h]) of every matrix product is
  quantized with one scale per row, ``s = max|a_row| / 127``, as uint8 with zero point
  128; ``MatMulInteger`` is exact (int32), then ``* s * weight_scale + bias``. A row's
  result depends on that row alone: a user's scores do not depend on who shares the
  batch, and the dense and sparse signatures, which build the same first-layer sum,
  agree.

Why this scheme (``benchmarks/int8_check.py``, movies-small, ``benchmarks/NOTES.md``):
``quantize_dynamic`` scales activations per *batch* (a user's scores moved by 2.7e-3
with the batch; dense and sparse top-10 equal for 26% of users); ``quantize_static``
(QDQ, activation ranges calibrated on all training rows) is batch-independent but fixes
every range at export (max score change 0.024, top-10 overlap with fp32 0.938, dense =
sparse top-10 for 24% of users; 0.60 when calibrated on 128 rows), fails at run time
with per-channel weights on the ``Gather`` first layer and needs calibration rows at
export; int8 weights dequantized to float32 (``DequantizeLinear``) are as batch-
independent and close to fp32 as this scheme, but onnxruntime does not fold a
``DequantizeLinear`` of initializers by default, so every run dequantizes all weights
(batch-1 12-30x slower than fp32). This scheme: max score change 6.7e-3, top-10 overlap
0.999 and test RMSE +0.00001 vs fp32, batch dependence 4.8e-7 (one float32 ulp, as
fp32), dense = sparse for every user, 26% of the fp32 file; at 45,115 movies (1 thread)
batch-1 2.9x and batch-256 1.4x faster than fp32 (``benchmarks/RESULTS.md``, "int8
schemes").

Why 7-bit weights: onnxruntime's uint8 x int8 kernel on x86 CPUs with AVX2 but without
VNNI sums pairs of products in int16 with saturation (``vpmaddubsw``: 2 x 255 x 127 >
32,767). With 8-bit weights a random 1000-500-100 model's scores moved by up to 0.73 on
such a CPU (AMD EPYC, AVX2) and by 2e-3 on one with AVX-512 VNNI; with ``|q| <= 63`` (the
``reduce_range`` of onnxruntime's own quantizer) no pair can saturate, every CPU computes
the same integers, and the cost is one bit of weight precision (max score change 1.8e-3
at 45,115 movies on the AVX2 CPU). int8 activations (``MatMulInteger`` int8 x int8) avoid
it too but ran 12x slower than this at batch 1 on that CPU.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: rows whose largest |activation| is below this quantize as all-zero (no 0/0)
_TINY = np.float32(1e-30)
#: largest |int8 weight|: 7 bits, so uint8 x int8 pair sums fit int16 (module docstring)
WEIGHT_QMAX = 63


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _uses(graph) -> dict:
    """``{weight name: (array, ["gather"|"gemm"|"gemm_t", ...])}`` of every 2-D float32
    initializer that only Gather (axis 0, as data) and Gemm (as B) nodes read."""
    out = {}
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
            continue
        kinds = []
        for n in _consumers(graph, init.name):
            if n.op_type == "Gather" and list(n.input).index(init.name) == 0 \
                    and _attr(n, "axis", 0) == 0:
                kinds.append("gather")
            elif n.op_type == "Gemm" and list(n.input).index(init.name) == 1 \
                    and not _attr(n, "transA", 0) and _attr(n, "alpha", 1.0) == 1.0 \
                    and _attr(n, "beta", 1.0) == 1.0:
                kinds.append("gemm_t" if _attr(n, "transB", 0) else "gemm")
            else:
                kinds = []
                break
        if kinds:
            out[init.name] = (numpy_helper.to_array(init), kinds)
    return out


def _axis(kinds) -> int | None:
    """The per-channel axis every reader can factor out: rows for Gather and a
    transposed Gemm B (the output channels), columns for a plain Gemm B; None (one
    scale) when readers disagree."""
    axes = {0 if k in ("gather", "gemm_t") else 1 for k in kinds}
    return axes.pop() if len(axes) == 1 else None


def symmetric_int8(w: np.ndarray, axis: int | None, qmax: int = WEIGHT_QMAX):
    """``(q int8 like w, scale float32)``: ``w ~= q * scale``, ``|q| <= qmax`` (<= 127), one
    scale per index of ``axis`` (shape ``(w.shape[axis],)``) or one scalar when ``axis``
    is None."""
    w = np.asarray(w, np.float32)
    if axis is None:
        m = np.max(np.abs(w)) if w.size else np.float32(0)
    else:
        m = np.max(np.abs(w), axis=1 - axis) if w.size else np.zeros(w.shape[axis], np.float32)
    if not 1 <= qmax <= 127:
        raise ValueError(f"qmax must be in 1..127, got {qmax}")
    scale = np.where(m > 0, m / np.float32(qmax), np.float32(1)).astype(np.float32)
    b = scale if axis is None else np.expand_dims(scale, 1 - axis)
    q = np.clip(np.rint(w / b), -qmax, qmax).astype(np.int8)
    return q, scale


def quantize_int8(m: onnx.ModelProto) -> onnx.ModelProto:
    """``m`` (an fp32 npcf graph, modified in place and returned) with int8 weights and
    per-row activation scales, as the module docstring describes."""
    g = m.graph
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    uses = _uses(g)
    new_inits, head, scale_of = [], [], {}
    for name, (w, kinds) in uses.items():
        axis = _axis(kinds)
        q, s = symmetric_int8(w, axis)
        scale_of[name] = (axis, name + "_scale")
        new_inits += [numpy_helper.from_array(q, name + "_int8"),
                      numpy_helper.from_array(s, name + "_scale")]
        if "gemm_t" in kinds:
            head.append(helper.make_node("Transpose", [name + "_int8"], [name + "_int8_T"],
                                         name=f"{name}_int8_transpose", perm=[1, 0]))
    consts = {}

    def const(key, value):
        if key not in consts:
            consts[key] = numpy_helper.from_array(np.asarray(value), f"int8_{key}")
        return f"int8_{key}"

    body, count = [], [0]

    def op(t, ins, out=None, **kw):
        count[0] += 1
        out = out or f"int8_{t.lower()}_{count[0]}"
        body.append(helper.make_node(t, ins, [out], name=f"int8_n{count[0]}_{t}", **kw))
        return out

    # a Gather output read by one Mul: the row scales go on the Mul's other (smaller) input
    rescale = {}
    for node in g.node:
        w = next((i for i in node.input if i in uses), None)
        if w is None:
            if node.name in rescale:
                at, s = rescale.pop(node.name)
                ins = list(node.input)
                ins[1 - at] = op("Mul", [ins[1 - at], s])
                del node.input[:]
                node.input.extend(ins)
            body.append(node)
            continue
        axis, scale = scale_of[w]
        if node.op_type == "Gather":                       # int8 rows [..., h] -> float32
            q_rows = op("Gather", [w + "_int8", node.input[1]], axis=0)
            s = scale if axis is None else op("Unsqueeze", [
                op("Gather", [scale, node.input[1]], axis=0), const("axes_last", [-1])])
            readers = _consumers(g, node.output[0])
            if len(readers) == 1 and readers[0].op_type == "Mul" and readers[0].name \
                    and list(readers[0].input).count(node.output[0]) == 1:
                op("Cast", [q_rows], out=node.output[0], to=TensorProto.FLOAT)
                rescale[readers[0].name] = (list(readers[0].input).index(node.output[0]), s)
            else:
                op("Mul", [op("Cast", [q_rows], to=TensorProto.FLOAT), s], out=node.output[0])
            continue
        a = node.input[0]
        absa = op("Abs", [a])
        if opset >= 18:
            amax = op("ReduceMax", [absa, const("axes1", [1])], keepdims=1)
        else:
            amax = op("ReduceMax", [absa], axes=[1], keepdims=1)
        sa = op("Div", [op("Max", [amax, const("tiny", _TINY)]), const("q127", np.float32(127))])
        qa = op("Clip", [op("Round", [op("Div", [a, sa])]), const("qneg127", np.float32(-127)),
                         const("q127", np.float32(127))])
        qa = op("Cast", [op("Add", [qa, const("q128", np.float32(128))])], to=TensorProto.UINT8)
        b = w + ("_int8_T" if _attr(node, "transB", 0) else "_int8")
        acc = op("Cast", [op("MatMulInteger", [qa, b, const("zp128", np.uint8(128))])],
                 to=TensorProto.FLOAT)
        y = op("Mul", [op("Mul", [acc, sa]), scale])
        if len(node.input) > 2 and node.input[2]:
            op("Add", [y, node.input[2]], out=node.output[0])
        else:
            op("Identity", [y], out=node.output[0])
    keep = [t for t in g.initializer if t.name not in uses]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits + list(consts.values()))
    del g.node[:]
    g.node.extend(head + body)
    return m
