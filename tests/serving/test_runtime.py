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
