"""The ONNX exporter: parity with the NumPy forward, top-k, metadata, IR version, int8."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.sparse as sp

from npcf import AutoEncoder
from npcf.errors import NpcfError, ParamError
from npcf.serving.export import OPSET, OPSET_TO_IR, build_graph, export
from npcf.serving.runtime import Recommender

from helpers import N_ITEMS, fitted_model, random_ratings, user_stack, without_rank_scores

ACTS = ["relu", "selu", "elu", "sigmoid", "tanh", "identity"]


def feeds(x: sp.csr_matrix, sparse_input: bool, pad_index: int = 0):
    if not sparse_input:
        return {"ratings": x.toarray()}
    width = max(1, int(np.diff(x.indptr).max()))
    idx = np.full((x.shape[0], width), pad_index, np.int64)
    val = np.zeros((x.shape[0], width), np.float32)
    for r in range(x.shape[0]):
        a, b = x.indptr[r], x.indptr[r + 1]
        idx[r, :b - a], val[r, :b - a] = x.indices[a:b], x.data[a:b]
    return {"item_idx": idx, "item_rating": val}


def run(path, x, sparse_input, outputs=None):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds(x, sparse_input))


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(b))))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("activation", ACTS)
def test_parity_every_activation_both_signatures(tmp_path, tied, activation):
    model = fitted_model(tied=tied, activation=activation)
    for sparse_input in (False, True):
        path = export(model, tmp_path / f"m{sparse_input}.onnx", sparse_input=sparse_input)
        for batch in (1, 257):
            x = random_ratings(batch, N_ITEMS, 0.1, batch)
            x = x[np.flatnonzero(np.diff(x.indptr))] if batch == 1 else x
            if x.shape[0] == 0:
                x = random_ratings(1, N_ITEMS, 0.5, 7)
            (got,) = run(path, x, sparse_input, ["scores"])
            assert got.shape == (x.shape[0], N_ITEMS) and got.dtype == np.float32
            assert rel_err(got, model.predict(x)) <= 1e-5


@pytest.mark.parametrize("loss,residual,out_act", [("mse", False, "sigmoid"),
                                                   ("multinomial", False, "identity")])
def test_parity_other_losses_and_no_residual(tmp_path, loss, residual, out_act):
    model = fitted_model(loss=loss, residual=residual, output_activation=out_act)
    x = random_ratings(33, N_ITEMS, 0.15, 3)
    for sparse_input in (False, True):
        path = export(model, tmp_path / "m.onnx", sparse_input=sparse_input)
        (got,) = run(path, x, sparse_input, ["scores"])
        assert rel_err(got, model.predict(x)) <= 1e-5


@pytest.mark.parametrize("residual", [True, False])
def test_parity_for_ratings_in_a_tiny_unit(tmp_path, residual):
    """Ratings of 0.00005-0.0005: the graph scales into and out of the network's unit."""
    from npcf import Vocabulary
    X = random_ratings(40, N_ITEMS, 0.2, 5) * 1e-4
    model = AutoEncoder(layers=(16,), residual=residual, n_epochs=2, batch_size=8)
    model.fit(X, scale=(5e-5, 5e-4), items=Vocabulary(np.arange(1000, 1000 + N_ITEMS)))
    assert model.unit == pytest.approx(1e-4)
    x = random_ratings(33, N_ITEMS, 0.15, 3) * 1e-4
    want = model.predict(x)
    assert want.max() <= 5e-4 and np.median(want) > 1e-4       # ratings, not units
    for sparse_input in (False, True):
        path = export(model, tmp_path / "m.onnx", sparse_input=sparse_input)
        (got,) = run(path, x, sparse_input, ["scores"])
        assert rel_err(got, want) <= 1e-5


def test_empty_rows_and_padding_index_do_not_matter(tmp_path):
    model = fitted_model()
    x = random_ratings(5, N_ITEMS, 0.2, 4)
    x = sp.vstack([x, sp.csr_matrix((1, N_ITEMS), dtype=np.float32)]).tocsr()
    path = export(model, tmp_path / "s.onnx", sparse_input=True)
    (a,) = run(path, x, True, ["scores"])
    (b,) = run(path, x, True, ["scores"]) if False else (None,)
    sess = ort.InferenceSession(str(path))
    (c,) = sess.run(["scores"], feeds(x, True, pad_index=N_ITEMS - 1))
    assert rel_err(a, model.predict(x)) <= 1e-5
    np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
    assert b is None


@pytest.mark.parametrize("sparse_input", [False, True])
def test_top_k_matches_numpy_ranking_and_masks_seen(tmp_path, sparse_input):
    model = fitted_model()
    x = random_ratings(64, N_ITEMS, 0.2, 5)
    path = export(model, tmp_path / "t.onnx", sparse_input=sparse_input, top_k=7)
    scores, top, top_scores, raw = run(path, x, sparse_input,
                                       ["scores", "top_items", "top_scores", "rank_scores"])
    assert top.dtype == np.int64 and top.shape == (64, 7)
    np.testing.assert_array_equal(scores, np.clip(raw, *model.scale))  # scores: clipped
    masked = raw.astype(np.float64).copy()          # ranked before the clip
    masked[x.toarray() != 0] = -np.inf
    # NumPy ranking: descending score, ties to the lower index (ONNX TopK's rule)
    expect = np.array([np.lexsort((np.arange(N_ITEMS), -row))[:7] for row in masked])
    np.testing.assert_array_equal(top, expect)
    np.testing.assert_array_equal(top_scores, np.take_along_axis(scores, top, 1))
    seen = x.toarray() != 0
    assert not np.take_along_axis(seen, top, 1).any()


def test_popularity_penalty_changes_ranking_as_specified(tmp_path):
    model = fitted_model()
    counts = np.arange(N_ITEMS)[::-1] * 10           # item 0 most popular, the last untrained
    x = random_ratings(20, N_ITEMS, 0.1, 6)
    beta = 0.5
    path = export(model, tmp_path / "p.onnx", top_k=5, popularity_penalty=beta,
                  item_counts=counts)
    raw, top = run(path, x, False, ["rank_scores", "top_items"])
    rank = raw.astype(np.float64) - np.float32(beta) * np.log1p(counts).astype(np.float32)
    rank[x.toarray() != 0] = -np.inf
    rank[:, counts == 0] = -np.inf
    expect = np.array([np.lexsort((np.arange(N_ITEMS), -row))[:5] for row in rank])
    np.testing.assert_array_equal(top, expect)
    plain = export(model, tmp_path / "q.onnx", top_k=5)
    (top0,) = run(plain, x, False, ["top_items"])
    assert not np.array_equal(top0, top)
    with pytest.raises(NpcfError):
        build_graph(model, top_k=5, popularity_penalty=1.0)


def test_checker_ir_version_metadata_and_tied_size(tmp_path):
    tied = fitted_model(tied=True, layers=(32,))
    untied = fitted_model(tied=False, layers=(32,))
    p1, p2 = export(tied, tmp_path / "t.onnx"), export(untied, tmp_path / "u.onnx")
    m = onnx.load(p1)
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version == OPSET_TO_IR[OPSET] == 8
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert sum(1 for t in m.graph.initializer if t.name == "W0") == 1
    assert not any(t.name.startswith("V") for t in m.graph.initializer)
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["item_ids"]) == list(range(1000, 1000 + N_ITEMS))
    assert json.loads(meta["architecture"])["tied"] is True
    assert meta["input_signature"] == "dense" and json.loads(meta["rating_scale"]) == [0.5, 5.0]
    assert p1.stat().st_size < 0.6 * p2.stat().st_size
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in m.graph.input}
    assert inputs == {"ratings": ["batch", N_ITEMS]}


def test_int8_variant_reloads_and_stays_close(tmp_path):
    model = fitted_model(layers=(64,))
    x = random_ratings(50, N_ITEMS, 0.2, 8)
    for sparse_input in (False, True):
        q = export(model, tmp_path / f"q{sparse_input}.onnx", precision="int8",
                   sparse_input=sparse_input, top_k=5)
        m = onnx.load(q)
        assert m.ir_version == 8
        (got,) = run(q, x, sparse_input, ["scores"])
        ref = model.predict(x)
        # Documented tolerance: RMS score change <= 3% of the rating range on an
        # untrained model (on movies-small the test RMSE changes by < 0.005).
        assert np.sqrt(np.mean((got - ref) ** 2)) < 0.03 * 4.5
    with pytest.raises(NpcfError):
        export(model, tmp_path / "x.onnx", precision="fp8")


def test_fp16_weights_halve_the_file_and_stay_close(tmp_path):
    model = fitted_model(layers=(64,))
    x = random_ratings(40, N_ITEMS, 0.2, 12)
    for sparse_input in (False, True):
        full = export(model, tmp_path / f"f{sparse_input}.onnx", sparse_input=sparse_input)
        half = export(model, tmp_path / f"h{sparse_input}.onnx", precision="fp16",
                      sparse_input=sparse_input, top_k=5)
        m = onnx.load(half)
        onnx.checker.check_model(m, full_check=True)
        assert m.ir_version == 8
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
        assert half.stat().st_size < 0.75 * full.stat().st_size
        (got,) = run(half, x, sparse_input, ["scores"])
        assert rel_err(got, model.predict(x)) <= 1e-3


def test_item_based_and_unfitted_models_are_refused(tmp_path):
    with pytest.raises(NpcfError, match="item-based"):
        build_graph(fitted_model().__class__(item_based=True, n_epochs=1).fit(
            random_ratings(10, 12, 0.3, 1)))
    with pytest.raises(NpcfError, match="not fitted"):
        build_graph(AutoEncoder())


def test_recommender_uses_graph_top_k_and_numpy_path_identically(tmp_path):
    model = fitted_model()
    x = random_ratings(30, N_ITEMS, 0.2, 9)
    path = export(model, tmp_path / "r.onnx", top_k=10)
    rec = Recommender.load(path)
    g_ids, g_scores = rec.recommend(x, k=10)
    n_ids, n_scores = rec.recommend(x, k=10, filter_items=[])   # the NumPy path
    rec.graph_top_k = 0                                    # force the NumPy path
    p_ids, p_scores = rec.recommend(x, k=10)
    np.testing.assert_array_equal(g_ids, p_ids)
    np.testing.assert_allclose(g_scores, p_scores)
    np.testing.assert_array_equal(g_ids, n_ids)


@pytest.mark.parametrize("sparse_input", [False, True])
def test_both_recommender_paths_rank_alike_with_a_popularity_penalty(tmp_path, sparse_input):
    """The penalty used to apply on the in-graph path only: with k above the exported
    top-k, an exclusion or a forced NumPy path, the ranking changed."""
    model = fitted_model(loss="multinomial", residual=False)
    x = random_ratings(30, N_ITEMS, 0.2, 9)
    x = sp.vstack([x, sp.csr_matrix(np.r_[np.ones(N_ITEMS - 3), np.zeros(3)][None, :])],
                  format="csr")                          # a user with 3 unseen movies
    path = export(model, tmp_path / "p.onnx", top_k=10, popularity_penalty=0.7,
                  sparse_input=sparse_input)
    rec = Recommender.load(path)
    assert rec.popularity_penalty == pytest.approx(0.7)
    graph = rec.recommend(x, k=10)
    numpy_path = rec.recommend(x, k=10, filter_items=[])
    np.testing.assert_array_equal(graph.ids, numpy_path.ids)
    np.testing.assert_allclose(graph.scores, numpy_path.scores, rtol=1e-6)
    longer = rec.recommend(x, k=15)                     # above the exported k: NumPy path
    np.testing.assert_array_equal(longer.ids[:, :10], graph.ids)
    # the penalty really moves the ranking, and the last user is padded after 3 movies
    plain = Recommender.load(export(model, tmp_path / "q.onnx", top_k=10,
                                    popularity_penalty=0.0, sparse_input=sparse_input))
    assert (plain.recommend(x, k=10).ids != graph.ids).any()
    assert (graph.ids[-1, 3:] == -1).all() and np.isneginf(graph.scores[-1, 3:]).all()
    assert set(graph.ids[-1, :3]) == set(rec.items.ids[-3:])
    # ... and equals the estimator's own recommend with the same penalty
    model.popularity_penalty = 0.7
    mine = model.recommend(x, k=10)
    np.testing.assert_array_equal(mine.ids, graph.ids)


# ---------------------------------------------------------------------- raw ids
def raw_feeds(x: sp.csr_matrix, ids: np.ndarray, extra=None, pad_id: int = 0):
    """``movie_id``/``rating`` rows of ``x`` (columns as ``ids``), padded with ``pad_id``
    and rating 0; ``extra``: {row: [(id, rating), ...]} appended (e.g. unknown ids)."""
    extra = extra or {}
    rows = [[(int(ids[c]), float(v)) for c, v in zip(x.indices[x.indptr[r]:x.indptr[r + 1]],
                                                     x.data[x.indptr[r]:x.indptr[r + 1]])]
            + list(extra.get(r, [])) for r in range(x.shape[0])]
    width = max(1, max(len(r) for r in rows))
    mid = np.full((len(rows), width), pad_id, np.int64)
    val = np.zeros((len(rows), width), np.float32)
    for r, pairs in enumerate(rows):
        for j, (i, v) in enumerate(pairs):
            mid[r, j], val[r, j] = i, v
    return {"movie_id": mid, "rating": val}


RAW_OUT = ["scores", "top_items", "top_scores", "top_movie_ids", "n_unknown"]


@pytest.mark.parametrize("penalty", [0.0, 0.4])
def test_raw_id_graph_returns_the_dense_models_recommendations_as_ids(tmp_path, penalty):
    model = fitted_model()
    counts = np.asarray(model.training.getnnz(axis=0))
    x = random_ratings(40, N_ITEMS, 0.15, 12)
    x = sp.vstack([x, sp.csr_matrix((1, N_ITEMS), dtype=np.float32)], format="csr")  # empty row
    ids = model.items.ids
    raw = export(model, tmp_path / "raw.onnx", raw_ids=True, top_k=6, popularity_penalty=penalty,
                 item_counts=counts)
    dense = export(model, tmp_path / "dense.onnx", top_k=6, popularity_penalty=penalty,
                   item_counts=counts)
    sess = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    scores, top, top_scores, top_ids, n_unknown = sess.run(RAW_OUT, raw_feeds(x, ids))
    d_scores, d_top, d_top_scores = run(dense, x, False, ["scores", "top_items", "top_scores"])
    np.testing.assert_allclose(scores, d_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(top, d_top)
    np.testing.assert_array_equal(top_ids, ids[d_top])
    np.testing.assert_allclose(top_scores, d_top_scores, rtol=1e-5, atol=1e-5)
    assert top_ids.dtype == np.int64 and n_unknown.dtype == np.int64
    assert n_unknown.tolist() == [0] * x.shape[0]           # pad id 0 is unknown: not counted
    model.popularity_penalty, model.item_counts = penalty, counts
    np.testing.assert_array_equal(top_ids, model.recommend(x, k=6).ids)   # the estimator's own
    meta = {p.key: p.value for p in onnx.load(raw).metadata_props}
    assert meta["input_signature"] == "raw_ids"


def same_as_clean(got, clean):
    """The same recommendations (scores to float32 rounding: the padded width changes
    the order of the first layer's sums)."""
    for i in (0, 2):
        np.testing.assert_allclose(got[i], clean[i], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1], clean[1])
    np.testing.assert_array_equal(got[3], clean[3])


def test_unknown_ids_are_counted_and_ignored_in_a_ragged_batch(tmp_path):
    model = fitted_model()
    ids = model.items.ids
    x = random_ratings(9, N_ITEMS, 0.12, 13)
    path = export(model, tmp_path / "raw.onnx", raw_ids=True, top_k=5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clean = sess.run(RAW_OUT, raw_feeds(x, ids))
    unknown = {0: [(7, 5.0), (999, 4.0)], 3: [(-5, 1.0)], 8: [(10 ** 12, 2.5), (2000, 3.0)]}
    noisy = sess.run(RAW_OUT, raw_feeds(x, ids, unknown, pad_id=int(ids[4])))
    assert noisy[4].tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 2]
    same_as_clean(noisy, clean)
    # an unknown id first, a known id of rating 0 (padding) elsewhere: same again
    f = raw_feeds(x, ids)
    f = {"movie_id": np.c_[np.full(9, 5, np.int64), f["movie_id"], np.full(9, ids[1])],
         "rating": np.c_[np.full(9, 4.0, np.float32), f["rating"], np.zeros(9, np.float32)]}
    again = sess.run(RAW_OUT, f)
    assert again[4].tolist() == [1] * 9
    same_as_clean(again, clean)
    seen = x.toarray() != 0
    assert not np.take_along_axis(seen, noisy[1], 1).any()


def test_raw_ids_need_int_ids_and_a_top_k(tmp_path):
    from npcf import Vocabulary
    model = fitted_model()
    with pytest.raises(NpcfError, match=r"needs top_k >= 1 \(--top_k\)"):   # the library's name
        build_graph(model, raw_ids=True, top_k=None)
    model.items = Vocabulary(np.array([f"m{i}" for i in range(N_ITEMS)]))
    with pytest.raises(NpcfError, match="integer movie ids") as err:
        export(model, tmp_path / "s.onnx", raw_ids=True, top_k=5)
    assert "\n" not in str(err.value) and not (tmp_path / "s.onnx").exists()
    model.items = None
    with pytest.raises(NpcfError, match="no movie ids"):
        build_graph(model, raw_ids=True, top_k=5)


def test_ml_opset_table_and_every_opset_runs(tmp_path):
    from npcf.serving.export import OPSET_TO_ML
    released = {}
    for _, _, ai, ml, *_ in onnx.helper.VERSION_TABLE:
        released.setdefault(ai, ml)
    assert OPSET_TO_ML == {k: released[k] for k in OPSET_TO_IR}
    model = fitted_model()
    x = random_ratings(5, N_ITEMS, 0.2, 14)
    want = None
    for opset in sorted(OPSET_TO_IR):        # every opset offered (16 on: ScatterElements'
        for kw in (dict(sparse_input=True), dict()):              # reduction)
            onnx.checker.check_model(build_graph(model, top_k=4, opset=opset, **kw),
                                     full_check=True)
        m = build_graph(model, raw_ids=True, top_k=4, opset=opset)
        onnx.checker.check_model(m, full_check=True)
        assert {o.domain: o.version for o in m.opset_import} == {"": opset,
                                                                "ai.onnx.ml": OPSET_TO_ML[opset]}
        got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            ["top_movie_ids"], raw_feeds(x, model.items.ids))[0]
        want = got if want is None else want
        np.testing.assert_array_equal(got, want)


def test_slots_past_a_users_unseen_movies_are_padding_in_the_graph(tmp_path):
    model = fitted_model()
    ids = model.items.ids
    x = random_ratings(5, N_ITEMS, 0.1, 3).tolil()
    x[0, :] = 3.0                                   # user 0 rated every movie but two
    x[0, 4] = x[0, 9] = 0
    x = sp.csr_matrix(x)
    x.eliminate_zeros()
    k = 6
    raw = export(model, tmp_path / "raw.onnx", raw_ids=True, top_k=k)
    sess = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    scores, top, top_scores, top_ids, _ = sess.run(RAW_OUT, raw_feeds(x, ids))
    assert sorted(top_ids[0, :2].tolist()) == sorted(ids[[4, 9]].tolist())
    assert top_ids[0, 2:].tolist() == [-1] * (k - 2)
    assert np.isneginf(top_scores[0, 2:]).all() and np.isfinite(top_scores[0, :2]).all()
    assert np.isfinite(top_scores[1:]).all() and (top_ids[1:] >= 0).all()
    rec = Recommender.load(raw).recommend(x, k=k)       # the runtime agrees
    np.testing.assert_array_equal(rec.ids[0, 2:], -1)
    np.testing.assert_array_equal(rec.ids[1:], top_ids[1:])


def test_a_model_without_an_id_map_exports_column_indices_as_ids(tmp_path):
    model = AutoEncoder(layers=(8,), n_epochs=1, seed=0).fit(random_ratings(30, N_ITEMS, 0.2, 5))
    assert model.items is None
    x = random_ratings(4, N_ITEMS, 0.2, 6)
    rec = Recommender.load(export(model, tmp_path / "plain.onnx", top_k=5))
    np.testing.assert_array_equal(rec.items.ids, np.arange(N_ITEMS))
    np.testing.assert_array_equal(rec.recommend(x, k=5).ids, model.recommend(x, k=5).ids)


# ------------------------------------------------------- the library call's own checks
@pytest.mark.parametrize("kw,name", [
    *[({"top_k": v}, "top_k") for v in (0, -3, 2.5, True, "5", np.float32(4))],
    *[({"popularity_penalty": v}, "popularity_penalty")
      for v in (-0.1, float("nan"), float("inf"), "0.5", True, 1e308)],
    ({"opset": 12}, "opset"), ({"precision": "fp8"}, "precision"), ({"check": "yes"}, "check"),
    ({"check": None}, "check"),
])
def test_bad_options_are_refused_in_one_line_before_anything_is_written(tmp_path, kw, name):
    from npcf.errors import ParamError
    with pytest.raises(ParamError) as err:
        export(fitted_model(), tmp_path / "sub" / "m.onnx", top_k=kw.pop("top_k", 5), **kw)
    assert err.value.param == name and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{name}: ")
    assert not (tmp_path / "sub").exists()


def test_unfitted_models_and_other_objects_are_refused_clearly(tmp_path):
    with pytest.raises(NpcfError, match="^the model is not fitted; fit it"):
        export(AutoEncoder(), tmp_path / "m.onnx", top_k=5)
    with pytest.raises(NpcfError, match="only an npcf AutoEncoder exports to ONNX, not dict"):
        export({}, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_or_a_blocked_parent_is_a_clean_error_and_a_missing_one_is_made(tmp_path):
    model = fitted_model()
    with pytest.raises(NpcfError, match="is a directory"):
        export(model, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NpcfError, match="cannot create its directory") as err:
        export(model, tmp_path / "file" / "m.onnx")
    assert "\n" not in str(err.value)
    made = export(model, tmp_path / "new" / "deeper" / "m.onnx", top_k=3)
    assert Recommender.load(made).graph_top_k == 3
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deeper", "file", "m.onnx", "new"]


def test_a_top_k_above_the_catalogue_is_clamped_and_recorded_as_served(tmp_path):
    rec = Recommender.load(export(fitted_model(), tmp_path / "m.onnx", top_k=10 * N_ITEMS))
    assert rec.graph_top_k == N_ITEMS and rec.meta["top_k"] == str(N_ITEMS)


@pytest.mark.parametrize("inline", [True, False])
def test_check_compares_with_the_numpy_forward_before_the_file_is_in_place(
        tmp_path, monkeypatch, inline):
    """``check=True`` (random users) or a ratings matrix: the file is written only when
    its scores match ``model.predict``; a mismatch leaves the old file and no strays."""
    import npcf.serving.export as export_mod
    from npcf.serving.export import check_parity
    if not inline:                                     # ids in a sidecar, renamed first
        monkeypatch.setattr(export_mod, "MAX_INLINE_IDS", 5)
    model = fitted_model()
    path = export(model, tmp_path / "m.onnx", top_k=5, check=True)
    x = random_ratings(9, N_ITEMS, 0.2, 3)
    assert export(model, path, check=x, precision="fp16") == path
    report = check_parity(model, path, x, batch_size=4)
    assert report["n_users"] == 9 and report["relative"] <= report["tolerance"] == 1e-3
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ("m.onnx.items.json" in before) != inline
    monkeypatch.setattr(model, "predict", lambda rows: AutoEncoder.predict(model, rows) + 0.5)
    for check in (True, x):
        with pytest.raises(NpcfError, match="differs from the NumPy forward.*m.onnx was not "
                                            "written"):
            export(model, path, top_k=7, check=check)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(NpcfError, match="differs from the NumPy forward"):
        check_parity(model, path)


@pytest.mark.parametrize("key", ["item_ids", "top_k", "rating_scale", "npcf_version"])
def test_extra_metadata_cannot_replace_npcfs_own(tmp_path, key):
    """extra_metadata={"item_ids": ...} made the Recommender return wrong movie ids."""
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match=f"'{key}': npcf's own metadata") as err:
        export(fitted_model(), tmp_path / "m.onnx", top_k=5, extra_metadata={key: "x"})
    assert err.value.param == "extra_metadata" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("counts", [np.ones(3), -np.ones(N_ITEMS), np.full(N_ITEMS, 0.5),
                                    np.full(N_ITEMS, np.nan), np.array(["a"] * N_ITEMS)])
def test_item_counts_must_be_one_count_per_item(tmp_path, counts):
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match="non-negative whole numbers") as err:
        export(fitted_model(), tmp_path / "m.onnx", top_k=5, popularity_penalty=0.1,
               item_counts=counts)
    assert err.value.param == "item_counts"


def test_predictions_past_the_scale_are_ranked_not_tied(tmp_path):
    """Many predictions past the top of the scale clip to one value; ranked by the
    clipped scores they tied and fell back to column order (the same list for many
    users). Every path ranks by the scores before the clip and shows them clipped."""
    model = fitted_model()
    x = random_ratings(30, N_ITEMS, 0.15, 7)
    model.network.params["c0"] += 5.0 - float(np.quantile(model.rank_scores(x), 0.8))
    raw = model.rank_scores(x)                     # a fifth of all predictions past 5
    top = model.scale[1]
    assert (raw > top).mean() > 0.15
    np.testing.assert_array_equal(model.predict(x), np.clip(raw, *model.scale))
    ids, scores = model.recommend(x, k=8)
    masked = np.where(x.toarray() != 0, -np.inf, raw)
    cols = np.argsort(-masked, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(ids, model.items.ids[cols])
    np.testing.assert_array_equal(scores, np.minimum(np.take_along_axis(raw, cols, 1), top))
    assert (scores == np.float32(top)).all(axis=1).any()      # tied when shown, not ranked so
    path = export(model, tmp_path / "m.onnx", top_k=8, sparse_input=True, check=x)
    rec = Recommender.load(path)
    for kw in ({}, {"filter_items": [int(model.items.ids[-1])]}, {"k": 9}):   # graph, NumPy
        got_ids, got_scores = rec.recommend(x, **dict({"k": 8}, **kw))
        want_ids, want_scores = model.recommend(x, **dict({"k": 8}, **kw))
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)


def test_an_export_older_than_rank_scores_says_it_ranks_clipped_scores(tmp_path):
    import warnings

    from npcf.errors import NpcfWarning
    path = export(fitted_model(), tmp_path / "m.onnx", top_k=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # a current export: no warning
        assert not Recommender.load(path).ranks_after_clip
    old = without_rank_scores(path, tmp_path / "old.onnx")
    with pytest.warns(NpcfWarning, match=r"old\.onnx: exported before .* re-export it"):
        rec = Recommender.load(old)
    assert rec.ranks_after_clip
    x = random_ratings(4, N_ITEMS, 0.2, 3)
    np.testing.assert_array_equal(rec.rank_scores(x), rec.scores(x))   # what it ranks by


@pytest.mark.parametrize("kw", [{"sparse_input": "yes"}, {"raw_ids": 1}])
def test_switches_must_be_bools(tmp_path, kw):
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match="True or False"):
        export(fitted_model(), tmp_path / "m.onnx", top_k=5, **kw)


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"batch_size": 2.5}, {"threads": -1}])
def test_recommender_options_are_checked(tmp_path, kw):
    from npcf.errors import ParamError
    path = export(fitted_model(), tmp_path / "m.onnx", top_k=5)
    with pytest.raises(ParamError):
        Recommender.load(path, **kw)


def test_an_export_is_an_onnx_file(tmp_path):
    """export(m, "x.npz") wrote an ONNX file that Recommender.load then refused."""
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match=r"\.onnx file"):
        export(fitted_model(), tmp_path / "x.npz", top_k=5)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ user-based stacks
@pytest.mark.parametrize("priors,support,mass", [(True, True, False), (False, False, False),
                                                 (True, True, True)])
def test_a_user_based_stack_exports_as_one_graph_with_parity(tmp_path, priors, support, mass):
    model = user_stack(priors=priors, support=support, mass=mass)
    x = random_ratings(70, N_ITEMS, 0.15, 5)
    x = sp.vstack([x, sp.csr_matrix((1, N_ITEMS), dtype=np.float32)], format="csr")  # empty
    for sparse_input in (False, True):
        path = export(model, tmp_path / f"s{sparse_input}.onnx", sparse_input=sparse_input,
                      top_k=5)
        got, rank, top = run(path, x, sparse_input, ["scores", "rank_scores", "top_items"])
        assert rel_err(got, model.predict(x)) <= 1e-5
        assert rel_err(rank, model.rank_scores(x)) <= 1e-5
        np.testing.assert_array_equal(model.items.ids[top], model.recommend(x, k=5).ids)
    graph = onnx.load(path)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["stack"]) == {"network": 3, "item_neighbours": 2}
    # the similarities, held at float16 precision when fitted, are stored so (exactly),
    # as their non-zeros only (scattered into the dense matrix when the model loads)
    inits = {t.name: t for t in graph.graph.initializer}
    assert inits["m3_similarity_T_values"].data_type == onnx.TensorProto.FLOAT16
    assert list(inits["m3_similarity_T_values"].dims) == [model.blend_members[2].model
                                                          .similarity.nnz]


def test_a_mass_stack_with_one_neighbour_member_exports_with_parity(tmp_path):
    from npcf.autoencoder import blend
    from npcf.serving import export as exporter
    assert exporter.MASS_FEATURES == blend.MASS_FEATURES     # kept apart: serving imports
    model = user_stack(mass=True)                             # nothing from the trainer
    del model.blend_members[3]                                # one neighbour member left
    model.blend_weights = model.blend_weights[:4]
    x = random_ratings(25, N_ITEMS, 0.2, 8)
    (got,) = run(export(model, tmp_path / "s.onnx"), x, False, ["scores"])
    assert rel_err(got, model.predict(x)) <= 1e-5
    model.blend_offset = model.blend_offset[:4]               # misshapen: refused
    with pytest.raises(NpcfError, match="4 or 5 features and an offset of as many"):
        build_graph(model)


def test_a_stack_with_no_similar_items_exports(tmp_path):
    from npcf.autoencoder.members import NeighbourMember
    from npcf.nn.neighbours import ItemNeighbours
    model = user_stack()
    X = model.training
    model.blend_members[2] = NeighbourMember(ItemNeighbours(2.0, 1.0, neighbours=0).fit(X),
                                             (0.5, 5.0))
    x = random_ratings(10, N_ITEMS, 0.2, 4)
    (got,) = run(export(model, tmp_path / "s.onnx"), x, False, ["scores"])
    assert rel_err(got, model.predict(x)) <= 1e-5


def test_a_stacks_rows_do_not_depend_on_the_rows_beside_them(tmp_path):
    model = user_stack()
    x = random_ratings(30, N_ITEMS, 0.2, 9)
    whole = model.predict(x)
    for r in (0, 7, 29):
        np.testing.assert_allclose(model.predict(x[r]), whole[r:r + 1], rtol=1e-6, atol=1e-6)
    (one,) = run(export(model, tmp_path / "s.onnx"), x[7], False, ["scores"])
    np.testing.assert_allclose(one, whole[7:8], rtol=1e-5, atol=1e-5)


def test_a_stack_exports_with_raw_ids_and_fp16_but_not_int8(tmp_path):
    model = user_stack()
    x = random_ratings(20, N_ITEMS, 0.15, 3)
    raw = export(model, tmp_path / "raw.onnx", raw_ids=True, top_k=4)
    sess = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    (ids,) = sess.run(["top_movie_ids"], raw_feeds(x, model.items.ids))
    np.testing.assert_array_equal(ids, model.recommend(x, k=4).ids)
    half = export(model, tmp_path / "half.onnx", precision="fp16")
    (got,) = run(half, x, False, ["scores"])
    assert rel_err(got, model.predict(x)) <= 1e-3
    with pytest.raises(ParamError, match="int8.*stack"):
        export(model, tmp_path / "q.onnx", precision="int8")
    assert not (tmp_path / "q.onnx").exists()


def test_stacks_the_graph_cannot_hold_are_refused(tmp_path, monkeypatch):
    model = user_stack()
    model.blend_members[0].item_based = True          # an item-based network inside
    with pytest.raises(NpcfError, match="item-based networks"):
        build_graph(model)
    model = user_stack()
    model.blend_members[0].scale = (1.0, 5.0)
    with pytest.raises(NpcfError, match="share its rating scale"):
        build_graph(model)
    model = user_stack(mass=True)
    del model.blend_members[2:]                   # weights that follow absent neighbours
    model.blend_weights = model.blend_weights[:3]
    with pytest.raises(NpcfError, match="similarity mass, but no member is item neighbours"):
        build_graph(model)
    model = user_stack()
    import npcf.nn.neighbours as nb
    monkeypatch.setattr(nb, "GRAPH_BYTES", 2 * 4 * N_ITEMS * N_ITEMS - 1)   # two members
    with pytest.raises(NpcfError, match="build 0.0 GiB of 60 x 60 matrices"):
        export(model, tmp_path / "big.onnx")
    assert not (tmp_path / "big.onnx").exists()
