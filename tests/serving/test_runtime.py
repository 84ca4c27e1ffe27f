"""The framework-free runtime: import isolation, fold-in, recommendations, errors."""
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.errors import CheckpointError, NpcfError
from npcf.serving.export import export
from npcf.serving.runtime import Recommender, read_titles

from helpers import N_ITEMS, fitted_model, random_ratings


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    model = fitted_model()
    path = export(model, d / "model.onnx", top_k=10)
    sparse = export(model, d / "sparse.onnx", top_k=10, sparse_input=True)
    movies = d / "movies.csv"
    movies.write_text("movieId,title,genres\n" + "".join(
        f'{1000 + i},"Film {i}, The ({1990 + i % 20})",Drama\n' for i in range(N_ITEMS)))
    return model, path, sparse, movies


def test_runtime_imports_only_numpy_scipy_onnxruntime():
    code = ("import sys, npcf.serving.runtime; bad = [m for m in ('pandas', 'click', 'onnx', 'torch') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fold_in_unseen_user_matches_numpy(exported):
    model, path, sparse, movies = exported
    history = [(1003, 5.0), (1010, 1.0), (1042, 4.5)]
    for p in (path, sparse):
        rec = Recommender.load(p, movies=movies)
        x = sp.csr_matrix((np.array([5.0, 1.0, 4.5], np.float32), ([0, 0, 0], [3, 10, 42])),
                          shape=(1, N_ITEMS))
        np.testing.assert_allclose(rec.scores(history), model.predict(x)[0], rtol=1e-5, atol=1e-5)
        ids, scores = rec.recommend(history, k=5)
        titles = rec.titles_of(ids)
        assert ids.shape == (5,) and not set(ids) & {1003, 1010, 1042}
        assert titles[0].startswith("Film ") and len(titles) == 5
        assert np.all(np.diff(scores) <= 1e-6)
        inc, _ = rec.recommend(history, k=N_ITEMS, filter_seen=False)
        assert {1003, 1010, 1042} <= set(inc.tolist())


def test_batched_recommend_and_exclusions(exported):
    model, path, _, _ = exported
    rec = Recommender.load(path)
    x = random_ratings(12, N_ITEMS, 0.2, 11)
    ids, scores = rec.recommend(x, k=4)
    assert ids.shape == (12, 4) and scores.shape == (12, 4) and rec.titles is None
    assert rec.titles_of(ids) == [[""] * 4] * 12
    first = ids[0, 0]
    ids2, _ = rec.recommend(x, k=4, filter_items=[first])
    assert first not in ids2[0]
    dense = x.toarray()
    cols = np.searchsorted(rec.item_ids, ids)
    assert not np.take_along_axis(dense, cols, 1).any()


def test_errors_are_clear(exported, tmp_path):
    model, path, _, _ = exported
    rec = Recommender.load(path)
    with pytest.raises(NpcfError, match="columns; the model expects"):
        rec.scores(sp.csr_matrix((2, N_ITEMS + 1), dtype=np.float32))
    with pytest.raises(NpcfError, match="unknown movie id"):
        rec.recommend([(999999, 4.0)])
    with pytest.raises(NpcfError, match="unknown movie id.*: 5"):
        rec.recommend([(1001, 4.0)], filter_items=[5])
    with pytest.raises(CheckpointError, match="no such model file"):
        Recommender.load(tmp_path / "missing.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot load ONNX model"):
        Recommender.load(bad)


def test_read_titles_formats(tmp_path):
    (tmp_path / "movies.dat").write_bytes("1::Am\xe9lie (2001)::Comedy\n".encode("latin-1"))
    (tmp_path / "u.item").write_bytes(("1|Toy Story (1995)|01-Jan-1995||http://x|" +
                                       "|".join("0" * 19) + "\n").encode("latin-1"))
    assert read_titles(tmp_path / "movies.dat") == {1: "Am\xe9lie (2001)"}
    assert read_titles(tmp_path / "u.item") == {1: "Toy Story (1995)"}


def test_a_raw_id_model_loads_and_recommends_like_the_others(exported, tmp_path):
    model, path, _, movies = exported
    raw = export(model, tmp_path / "raw.onnx", top_k=10, raw_ids=True)
    rec, dense = Recommender.load(raw, movies=movies, batch_size=5), Recommender.load(path)
    assert rec.signature == "raw_ids" and rec.graph_top_k == 10
    x = random_ratings(13, N_ITEMS, 0.2, 21)                 # ragged, over 3 session runs
    np.testing.assert_allclose(rec.scores(x), model.predict(x), rtol=1e-5, atol=1e-5)
    for kw in ({}, {"filter_items": [1000, 1001]}, {"k": 12}):   # graph path, NumPy paths
        got, want = rec.recommend(x, **{"k": 4, **kw}), dense.recommend(x, **{"k": 4, **kw})
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
    history = [(1003, 5.0), (1010, 1.0), (1042, 4.5)]
    ids, _ = rec.recommend(history, k=5)
    assert ids.shape == (5,) and not set(ids.tolist()) & {1003, 1010, 1042}
    assert rec.titles_of(ids)[0].startswith("Film ")
    # the graph's own id output agrees with the runtime's column -> id map
    out = rec.session.run(["top_items", "top_movie_ids"], rec._feeds(x))
    np.testing.assert_array_equal(rec.item_ids[out[0]], out[1])
    with pytest.raises(NpcfError, match="unknown movie id"):
        rec.recommend([(999999, 4.0)])


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_one_long_history_does_not_inflate_the_batch(exported, monkeypatch, which):
    """Rows go to the session in runs of similar length, padded entries bounded; the
    results are those of the unsplit batch, in row order."""
    import npcf.serving.runtime as runtime
    model, path, sparse, _ = exported
    rec = Recommender.load(path if which == "dense" else sparse)
    x = random_ratings(40, N_ITEMS, 0.05, 21).tolil()
    x[7, :] = np.linspace(0.5, 5, N_ITEMS)                 # one user rated everything
    x = sp.csr_matrix(x, dtype=np.float32)
    want_scores, want = rec.scores(x), rec.recommend(x, k=6)
    monkeypatch.setattr(runtime, "PADDED_ENTRIES", 3 * N_ITEMS)
    widths, run = [], rec.session.run

    def spy(outputs, feeds):
        arr = next(iter(feeds.values()))
        widths.append(arr.shape[0] * int((arr != 0).sum(axis=1).max()) if which == "dense"
                      else arr.size)
        return run(outputs, feeds)
    monkeypatch.setattr(rec.session, "run", spy, raising=False)
    np.testing.assert_allclose(rec.scores(x), want_scores, rtol=1e-5, atol=1e-6)  # GEMM blocking
    got = rec.recommend(x, k=6)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert len(widths) > 2 and max(widths) <= 3 * N_ITEMS


def test_untrained_items_are_never_recommended(tmp_path):
    """A movie no training rating touched (in the vocabulary only through a test file)
    scores from untrained weights: the estimator, the graph's top-k and the runtime's
    NumPy path all leave it out, unless the caller names it in ``items``."""
    from npcf.autoencoder import AutoEncoder

    from helpers import tiny_ratings
    X = tiny_ratings(60, 25, seed=3).tolil()
    untrained = [4, 17]
    X[:, untrained] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    model = AutoEncoder(layers=(8,), n_epochs=2, batch_size=16, seed=0)
    model.fit(X, scale=(0.5, 5.0))
    np.testing.assert_array_equal(model.untrained_items(), untrained)
    user = sp.csr_matrix(X[:1])
    everything = X.shape[1] - user.nnz - len(untrained)
    ids, scores = model.recommend(user, k=X.shape[1])
    assert not set(ids[0][np.isfinite(scores[0])].tolist()) & set(untrained)
    assert np.isfinite(scores[0]).sum() == everything
    named, _ = model.recommend(user, k=3, items=untrained)
    assert set(named[0][:2].tolist()) == set(untrained)
    for sparse_input in (False, True):
        path = export(model, tmp_path / f"m{sparse_input}.onnx", top_k=X.shape[1],
                      sparse_input=sparse_input)
        rec = Recommender.load(path)
        np.testing.assert_array_equal(rec.untrained_items(), untrained)
        graph_ids, graph_scores = rec.recommend(user, k=X.shape[1])        # in-graph top-k
        numpy_ids, _ = rec.recommend(user, k=X.shape[1], filter_items=[0])  # NumPy path
        for got in (graph_ids[0], numpy_ids[0]):
            assert not set(got[got >= 0].tolist()) & set(untrained)
        assert (graph_ids[0] >= 0).sum() == everything
        assert np.isneginf(graph_scores[0][everything:]).all()


def test_an_item_based_checkpoint_is_not_sent_to_an_export_that_would_fail(tmp_path):
    from npcf.autoencoder import AutoEncoder
    X = random_ratings(30, 20, 0.3, 2)
    AutoEncoder(layers=(4,), n_epochs=1, item_based=True).fit(X).save(tmp_path / "item")
    AutoEncoder(layers=(4,), n_epochs=1).fit(X).save(tmp_path / "user")
    with pytest.raises(CheckpointError, match="item-based checkpoint, which cannot be exported"):
        Recommender.load(tmp_path / "item" / "model.npz")
    with pytest.raises(CheckpointError, match="export it first"):
        Recommender.load(tmp_path / "user" / "model.npz")


def test_an_export_older_than_the_untrained_record_ranks_alike_on_both_paths(tmp_path):
    """Exports made before ``untrained_items`` existed rank every movie in the graph; the
    NumPy path then leaves none out either."""
    import onnx
    model = fitted_model()
    model.item_counts = model.item_counts.copy()
    model.item_counts[[3, 7]] = 0
    path = export(model, tmp_path / "m.onnx", top_k=N_ITEMS, popularity_penalty=0.2)
    old = onnx.load(str(path))
    keep = [p for p in old.metadata_props if p.key != "untrained_items"]
    del old.metadata_props[:]
    old.metadata_props.extend(keep)
    old.graph.initializer.remove(next(i for i in old.graph.initializer if i.name == "untrained"))
    hidden = next(n for n in old.graph.node if n.output[0] == "hidden")
    for n in old.graph.node:                      # the old mask: rated items only
        n.input[:] = [hidden.input[0] if i == "hidden" else i for i in n.input]
    old.graph.node.remove(hidden)
    onnx.save(old, str(tmp_path / "old.onnx"))
    rec = Recommender.load(tmp_path / "old.onnx")
    assert rec.untrained_items().size == 0
    x = random_ratings(3, N_ITEMS, 0.1, 4)
    graph, _ = rec.recommend(x, k=8)
    numpy_path, _ = rec.recommend(x, k=8, filter_items=[int(rec.item_ids[-1])])
    for g, n in zip(graph, numpy_path):
        assert [i for i in g if i != rec.item_ids[-1]][:6] == [i for i in n][:6]


@pytest.mark.parametrize("top", [6, N_ITEMS])
@pytest.mark.parametrize("sparse_input", [False, True])
def test_recommend_equals_the_estimators_for_every_k_around_the_exported_top_k(
        tmp_path, sparse_input, top):
    """The in-graph top-k serves k up to the exported one, the NumPy path anything else:
    ids, scores and width (min(k, the movies allowed)) are the AutoEncoder's either way,
    untrained movies (never ranked by the graph) included, also when the graph's top-k
    is the whole catalogue (the CLI's default for a small one)."""
    model = fitted_model()
    model.item_counts = model.item_counts.copy()
    model.item_counts[[3, 7]] = 0                      # two untrained movies
    rec = Recommender.load(export(model, tmp_path / "m.onnx", top_k=top,
                                  sparse_input=sparse_input))
    x = random_ratings(7, N_ITEMS, 0.2, 8).tolil()
    x[0, :] = 4.0                                       # a user who rated all but three
    x[0, [0, 1, 2]] = 0
    x = sp.csr_matrix(x, dtype=np.float32)
    x.eliminate_zeros()
    requests = [{}, {"filter_seen": False}, {"filter_items": [1000, 1005]},
                {"items": [1000, 1003, 1010, 1020, 1030, 1040, 1050, 1059]}]
    for k in sorted({top - 2, top, top + 3, N_ITEMS - 3, N_ITEMS - 2, N_ITEMS, 10 * N_ITEMS}):
        for kw in requests:
            got, want = rec.recommend(x, k=k, **kw), model.recommend(x, k=k, **kw)
            assert got.ids.shape == want.ids.shape, (k, kw)
            np.testing.assert_array_equal(got.ids, want.ids, err_msg=f"k={k} {kw}")
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)
            one = rec.recommend([(1000 + j, 3.5) for j in (4, 9, 11)], k=k, **kw)
            ref = model.recommend([(1000 + j, 3.5) for j in (4, 9, 11)], k=k, **kw)
            np.testing.assert_array_equal(one.ids, ref.ids)


def test_a_loaded_recommender_pickles_as_its_path(tmp_path, monkeypatch):
    """Pickling (to send it to worker processes) raised a raw TypeError from onnxruntime."""
    import pickle

    from npcf.serving.export import export
    from npcf.serving.runtime import Recommender

    from helpers import fitted_model
    model = fitted_model()
    path = export(model, tmp_path / "m.onnx", top_k=5)
    monkeypatch.chdir(path.parent)
    rec = Recommender.load(path.name, batch_size=7)    # a relative path
    blob = pickle.dumps(rec)
    monkeypatch.chdir(tmp_path.parent)                 # another working directory
    again = pickle.loads(blob)
    assert again.recommend_batch == 7 and again.path == path
    x = model.training[:4]
    np.testing.assert_array_equal(again.recommend(x, k=5).ids, rec.recommend(x, k=5).ids)


def test_an_unreadable_export_is_named_as_unreadable(tmp_path, monkeypatch):
    """onnxruntime said 'system error number 13'."""
    from npcf.serving import runtime
    from npcf.serving.export import export

    from helpers import fitted_model
    path = export(fitted_model(), tmp_path / "m.onnx", top_k=3)

    def denied(f, *a, **k):
        raise PermissionError(13, "Permission denied", str(f))
    monkeypatch.setattr(runtime, "open", denied, raising=False)
    with pytest.raises(PermissionError) as err:
        runtime.Recommender.load(path)
    assert err.value.filename == str(path)
