"""The int8 graph: batch independence, dense = sparse, tied weight stored once, closeness
to fp32, every opset the exporter offers."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.sparse as sp
from onnx import TensorProto, numpy_helper

from npcf.serving.export import export
from npcf.serving.quantize import WEIGHT_QMAX, symmetric_int8
from npcf.serving.runtime import Recommender

from helpers import N_ITEMS, fitted_model, random_ratings


def users(n=40, seed=3):
    """Rows of 0..~25 ratings, one of them empty (padding and empty rows matter)."""
    x = random_ratings(n, N_ITEMS, 0.2, seed).tolil()
    x[5, :] = 0
    x[7, 3:] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    return x


def scores_alone_and_batched(path, x):
    rec = Recommender.load(path)
    batched = rec.scores(x, batch_size=x.shape[0])
    alone = np.stack([rec.scores(x[u:u + 1], batch_size=1)[0] for u in range(x.shape[0])])
    return alone, batched


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("sparse_input", [False, True])
def test_a_users_scores_do_not_depend_on_the_batch(tmp_path, sparse_input, tied):
    model = fitted_model(tied=tied)
    x = users()
    path = export(model, tmp_path / "q.onnx", sparse_input=sparse_input, precision="int8",
                  top_k=5)
    alone, batched = scores_alone_and_batched(path, x)
    np.testing.assert_allclose(alone, batched, rtol=0, atol=1e-6)
    # and in another company: the same users reversed, with a long-history stranger
    stranger = sp.csr_matrix(np.full((1, N_ITEMS), 5.0, np.float32))
    other = Recommender.load(path).scores(sp.vstack([stranger, x[::-1]], format="csr"))
    np.testing.assert_allclose(other[1:][::-1], batched, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_dense_and_sparse_int8_agree(tmp_path, tied):
    model = fitted_model(tied=tied, layers=(32,))
    x = users(60, seed=11)
    dense = Recommender.load(export(model, tmp_path / "d.onnx", precision="int8", top_k=10))
    sparse = Recommender.load(export(model, tmp_path / "s.onnx", precision="int8", top_k=10,
                                     sparse_input=True))
    np.testing.assert_allclose(dense.scores(x), sparse.scores(x), rtol=0, atol=1e-5)
    d_ids, d_sc = dense.recommend(x, k=10)
    s_ids, s_sc = sparse.recommend(x, k=10)
    np.testing.assert_array_equal(d_ids, s_ids)
    np.testing.assert_allclose(d_sc, s_sc, rtol=0, atol=1e-5)


def weights(m: onnx.ModelProto) -> dict:
    return {t.name: t for t in m.graph.initializer if len(t.dims) == 2}


@pytest.mark.parametrize("sparse_input", [False, True])
def test_tied_int8_stores_each_weight_once(tmp_path, sparse_input):
    tied = fitted_model(tied=True, layers=(64, 16))
    untied = fitted_model(tied=False, layers=(64, 16))
    kw = dict(sparse_input=sparse_input, top_k=5)
    pt, pu = (export(m, tmp_path / f"{n}.onnx", precision="int8", **kw)
              for n, m in (("t", tied), ("u", untied)))
    full = export(tied, tmp_path / "f.onnx", **kw)
    mt, mu, mf = onnx.load(pt), onnx.load(pu), onnx.load(full)
    wt, wu = weights(mt), weights(mu)
    # one int8 matrix per network weight: W0, W1 (tied); W0, W1, V0, V1 (untied)
    assert sorted(wt) == ["W0_int8", "W1_int8"]
    assert sorted(wu) == ["V0_int8", "V1_int8", "W0_int8", "W1_int8"]
    assert all(t.data_type == TensorProto.INT8 for t in [*wt.values(), *wu.values()])
    assert list(wt["W0_int8"].dims) == [N_ITEMS, 64]
    # the encoder's Gather and the decoder's MatMulInteger read the same initializer
    readers = [n.op_type for n in mt.graph.node for i in n.input if i == "W0_int8"]
    assert sorted(readers) == ["Gather", "Transpose"]
    fp32 = sum(len(t.raw_data) for t in weights(mf).values())
    int8 = sum(len(t.raw_data) for t in mt.graph.initializer)     # everything, scales too
    assert int8 < 0.3 * fp32 + 4 * (N_ITEMS * 3 + 256)             # ~1/4 + biases and scales
    assert pt.stat().st_size < 0.75 * pu.stat().st_size


@pytest.mark.parametrize("sparse_input", [False, True])
def test_int8_scores_stay_close_to_fp32(tmp_path, sparse_input):
    model = fitted_model(layers=(64,))
    x = users(50, seed=8)
    kw = dict(sparse_input=sparse_input, top_k=10)
    q = Recommender.load(export(model, tmp_path / "q.onnx", precision="int8", **kw))
    f = Recommender.load(export(model, tmp_path / "f.onnx", **kw))
    got, ref = q.scores(x), f.scores(x)
    # Stated tolerance: every score within 1% of the rating range (4.5) of fp32; measured
    # here ~0.03 (7-bit weights). On movies-small it is below 0.02 (benchmarks/RESULTS.md).
    assert np.max(np.abs(got - ref)) < 0.01 * 4.5
    assert not np.array_equal(got, ref)            # it is a different graph
    ids, _ = q.recommend(x, k=10)                  # movie ids 1000.. (helpers)
    cols = ids - 1000
    assert (cols >= 0).all()
    assert not np.take_along_axis(x.toarray() != 0, cols, 1).any()


@pytest.mark.parametrize("opset", [16, 17, 18, 21])   # sparse top-k needs 16 (ScatterElements)
def test_int8_runs_at_every_offered_opset(tmp_path, opset):
    model = fitted_model(tied=True, layers=(16, 8))
    x = users(12, seed=5)
    for sparse_input in (False, True):
        q = export(model, tmp_path / f"q{opset}{sparse_input}.onnx", precision="int8",
                   sparse_input=sparse_input, top_k=5, opset=opset)
        m = onnx.load(q)
        onnx.checker.check_model(m, full_check=True)
        assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {opset}
        f = export(model, tmp_path / f"f{opset}{sparse_input}.onnx", sparse_input=sparse_input,
                   top_k=5, opset=opset)
        got = Recommender.load(q).scores(x)
        ref = Recommender.load(f).scores(x)
        assert np.max(np.abs(got - ref)) < 0.01 * 4.5


def test_symmetric_int8_round_trip_per_channel():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(7, 5)).astype(np.float32) * np.arange(1, 8, dtype=np.float32)[:, None]
    w[3] = 0                                             # an all-zero channel
    for axis in (0, 1, None):
        for qmax in (WEIGHT_QMAX, 127):
            q, s = symmetric_int8(w, axis, qmax)
            assert q.dtype == np.int8 and s.dtype == np.float32
            assert s.shape == (() if axis is None else (w.shape[axis],))
            b = s if axis is None else np.expand_dims(s, 1 - axis)
            assert np.all(np.abs(q * b - w) <= b / 2 + 1e-7)
            assert np.abs(q).max() == qmax                   # the range is used, not exceeded
    q, s = symmetric_int8(w, 0)
    assert s[3] == 1 and not q[3].any()
    with pytest.raises(ValueError, match="qmax"):
        symmetric_int8(w, 0, 128)


@pytest.mark.parametrize("sparse_input", [False, True])
def test_no_uint8_x_int8_pair_sum_can_saturate_int16(tmp_path, sparse_input):
    # AVX2 CPUs without VNNI sum pairs of uint8 x int8 products in int16 with saturation:
    # 2 * 255 * |w| must stay <= 32767 for every weight a MatMulInteger reads
    model = fitted_model(tied=False, layers=(16, 8))
    m = onnx.load(export(model, tmp_path / "q.onnx", precision="int8", sparse_input=sparse_input))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    int8 = {k: v for k, v in inits.items() if v.dtype == np.int8}
    assert int8 and all(2 * 255 * int(np.abs(v).max()) <= 32767 for v in int8.values())
    assert WEIGHT_QMAX == 63


def test_the_graph_has_no_float_weight_matrix_left(tmp_path):
    model = fitted_model(tied=False, layers=(16, 8))
    m = onnx.load(export(model, tmp_path / "q.onnx", precision="int8", sparse_input=True))
    assert not [t.name for t in m.graph.initializer
                if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT]
    ops = {n.op_type for n in m.graph.node}
    assert "MatMulInteger" in ops and "Gemm" not in ops
    assert not ops & {"DynamicQuantizeLinear", "QuantizeLinear"}     # nothing per batch
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert {o.name for o in sess.get_outputs()} >= {"scores"}
