"""The one ``recommend`` contract, run on every model: the estimator (user-based,
multinomial, item-based, ensemble), each baseline, and the ONNX ``Recommender`` in
every precision and input signature, with and without the in-graph top-k.

``recommend(user_items, k=10, filter_seen=True, filter_items=None, items=None)`` ->
``(ids, scores)``, 1-D for one user and 2-D for a batch, raw movie ids where the model
knows them. On a checkerboard (users and movies in two groups; a user rates their own
group's movies) the right answer is known, as in implicit's tests: a personalised
model recommends each user the unseen movies of their group.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from npcf import AutoEncoder, Vocabulary
from npcf.errors import NpcfError
from npcf.evaluation import baselines
from npcf.evaluation.ranking import PAD
from npcf.serving.export import export
from npcf.serving.runtime import Recommender

from helpers import checkerboard

EXPLICIT = checkerboard()                  # own group rated 5, the other group 1
IMPLICIT = checkerboard(out_group=0)       # own group only
N_USERS, N_ITEMS = EXPLICIT.shape
RAW = (np.arange(N_ITEMS) + 100) * 10      # raw movie ids of the estimator's models
AE = dict(layers=(16,), n_epochs=40, batch_size=8, lr=0.01, patience=0)


class Case:
    """A fitted model, the matrix it was fitted on, its id map and what it promises."""

    def __init__(self, model, X, raw=None, personalised=True, folds_in=True):
        self.model, self.X, self.raw, self.name = model, X, raw, ""
        self.personalised, self.folds_in = personalised, folds_in

    def col(self, ids):
        """Column indices of returned ids (PAD stays -1)."""
        ids = np.asarray(ids)
        if self.raw is None:
            return ids
        return np.where(ids == PAD, -1, np.searchsorted(self.raw, ids))

    def ids(self, cols):
        cols = np.asarray(cols)
        return cols if self.raw is None else self.raw[cols]


def _estimator(X, **kw):
    return AutoEncoder(**dict(AE, **kw)).fit(X, items=Vocabulary(RAW))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    user_based = _estimator(EXPLICIT)
    out = {
        "autoencoder": Case(user_based, EXPLICIT, RAW),
        "autoencoder-multinomial": Case(_estimator(IMPLICIT, loss="multinomial"), IMPLICIT, RAW),
        "autoencoder-item-based": Case(_estimator(EXPLICIT, item_based=True), EXPLICIT, RAW,
                                       folds_in=False),
        "autoencoder-ensemble": Case(_estimator(EXPLICIT, ensemble=2), EXPLICIT, RAW),
        "global_mean": Case(baselines.GlobalMean().fit(EXPLICIT), EXPLICIT, personalised=False),
        "biases": Case(baselines.Biases().fit(EXPLICIT), EXPLICIT, personalised=False),
        "popularity": Case(baselines.Popularity().fit(IMPLICIT), IMPLICIT, personalised=False),
        "ease": Case(baselines.EASE(lam=10.0).fit(IMPLICIT), IMPLICIT),
    }
    for sparse in (False, True):
        for precision in ("fp32", "fp16", "int8"):
            for top_k in (10, 0):
                name = f"onnx-{'sparse' if sparse else 'dense'}-{precision}-top{top_k}"
                path = export(user_based, tmp / f"{name}.onnx", sparse_input=sparse,
                              top_k=top_k or None, precision=precision)
                out[name] = Case(Recommender.load(path), EXPLICIT, RAW)
    return out


NAMES = (["autoencoder", "autoencoder-multinomial", "autoencoder-item-based",
          "autoencoder-ensemble", "global_mean", "biases", "popularity", "ease"]
         + [f"onnx-{s}-{p}-top{k}" for s in ("dense", "sparse") for p in ("fp32", "fp16", "int8")
            for k in (10, 0)])


@pytest.fixture(params=NAMES)
def case(request, cases):
    cases[request.param].name = request.param
    return cases[request.param]


def test_batch_results_are_2d_ranked_and_never_seen(case):
    ids, scores = case.model.recommend(case.X, k=5)
    assert ids.shape == scores.shape == (N_USERS, 5)
    assert scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 1e-6)           # best first
    seen = case.X.toarray() > 0
    cols = case.col(ids)
    assert cols.min() >= 0
    assert not np.take_along_axis(seen, cols, 1).any()
    if case.raw is not None:
        assert set(ids.ravel()) <= set(RAW)                    # raw ids out


def test_the_checkerboard_answer(case):
    """The unseen movies of the user's own group come first."""
    if not case.personalised:
        pytest.skip("not a personalised model")
    ids, _ = case.model.recommend(case.X, k=3)
    group = np.arange(N_USERS) % 2
    assert (case.col(ids) % 2 == group[:, None]).all()


def test_one_user_gives_1d_results_equal_to_the_batch_row(case):
    full = case.model.recommend(case.X, k=4)
    if not case.folds_in:
        with pytest.raises(NpcfError, match="item-based|full matrix"):
            case.model.recommend(case.X[3].toarray()[0], k=4)
        return
    for u in (0, 3):
        row = case.X[u]
        dense = case.model.recommend(row.toarray()[0], k=4)
        pairs = case.model.recommend([(m, r) for m, r in zip(case.ids(row.indices), row.data)],
                                     k=4)
        as_dict = case.model.recommend(dict(zip(case.ids(row.indices).tolist(),
                                                row.data.tolist())), k=4)
        generated = case.model.recommend(((m, r) for m, r in zip(case.ids(row.indices),
                                                                 row.data)), k=4)
        as_set = case.model.recommend(set(zip(case.ids(row.indices).tolist(),
                                              row.data.tolist())), k=4)
        items_view = case.model.recommend(dict(zip(case.ids(row.indices).tolist(),
                                                   row.data.tolist())).items(), k=4)
        import pandas as pd
        as_series = case.model.recommend(pd.Series(row.toarray()[0]), k=4)   # array-like:
        as_view = case.model.recommend(memoryview(row.toarray()[0]), k=4)    # dense vectors
        singles = [dense, pairs, as_dict, generated, as_set, items_view, as_series, as_view]
        if hasattr(sp, "coo_array"):
            try:
                one_d = sp.coo_array(row.toarray()[0])       # SciPy >= 1.13: 1-D arrays
            except (ValueError, TypeError):
                one_d = None
            if one_d is not None and one_d.ndim == 1:
                singles.append(case.model.recommend(one_d, k=4))
        for single in singles:
            assert single.ids.shape == single.scores.shape == (4,)
            np.testing.assert_array_equal(single.ids, full.ids[u])
            # every model, int8 included (one activation scale per user row), is
            # batch-independent
            np.testing.assert_allclose(single.scores, full.scores[u], rtol=1e-5)


def test_filter_seen_false_ranks_every_movie_once(case):
    ids, scores = case.model.recommend(case.X, k=N_ITEMS + 5, filter_seen=False)
    assert ids.shape == (N_USERS, N_ITEMS)                    # k capped at the catalogue
    for row in case.col(ids):
        assert sorted(row.tolist()) == list(range(N_ITEMS))


def test_filter_items_are_never_recommended(case):
    banned = case.ids([0, 1, 2, 5])
    ids, _ = case.model.recommend(case.X, k=8, filter_items=banned)
    assert not set(ids.ravel().tolist()) & set(np.asarray(banned).tolist())
    assert ids.shape == (N_USERS, 8)


def test_items_restricts_the_candidates(case):
    allowed = case.ids(np.arange(0, N_ITEMS, 3))              # 10 candidates
    ids, scores = case.model.recommend(case.X, k=20, items=allowed, filter_seen=False)
    assert ids.shape == (N_USERS, 10)
    assert set(ids.ravel().tolist()) <= set(np.asarray(allowed).tolist())
    ids2, _ = case.model.recommend(case.X, k=3, items=allowed, filter_items=allowed[:2])
    assert not set(ids2.ravel().tolist()) & set(np.asarray(allowed[:2]).tolist())


def test_fewer_movies_than_k_pads_the_list(case):
    """A user who has seen all but two movies gets two, then padding."""
    if not case.folds_in:
        pytest.skip("item-based models score the fitted matrix only")
    heavy = np.full(N_ITEMS, 3.0, np.float32)
    heavy[[4, 7]] = 0
    ids, scores = case.model.recommend(sp.csr_matrix(heavy), k=5)
    assert ids.shape == (1, 5)
    assert sorted(case.col(ids[0, :2]).tolist()) == [4, 7]
    pad = PAD if case.raw is None or RAW.dtype.kind in "iu" else ""
    assert (ids[0, 2:] == pad).all() and np.isneginf(scores[0, 2:]).all()


def test_bad_requests_are_one_clear_error(case):
    for k in (0, -2, 2.7, 5.0, "5", True, None):       # a whole number, as the server wants
        with pytest.raises(NpcfError, match="positive whole number"):
            case.model.recommend(case.X, k=k)
    assert case.model.recommend(case.X, k=np.int64(3)).ids.shape[1] == 3
    with pytest.raises(NpcfError, match="unknown movie"):
        case.model.recommend(case.X, k=3, filter_items=[10**9])
    with pytest.raises(NpcfError, match="columns"):
        case.model.recommend(sp.csr_matrix((2, N_ITEMS + 1), dtype=np.float32), k=3)
    for bad in ("1:5", 3.5, object(), ["4"] * N_ITEMS, [True] * N_ITEMS, [[4.0], [3.0, 2.0]]):
        with pytest.raises(NpcfError, match="user_items must be|1-D|pairs"):
            case.model.recommend(bad, k=3)
    huge = np.zeros(N_ITEMS)
    huge[0] = 1e300                             # no overflow warning on the way to float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NpcfError, match="float32's range"):
            case.model.recommend(huge, k=3)
    with pytest.raises(NpcfError, match=r"2 columns.*pass a list of tuples"):
        case.model.recommend(np.array([[case.ids([0])[0], 4.0]]), k=3)
    if case.folds_in:
        first = case.ids([0])[0]
        with pytest.raises(NpcfError, match="more than once"):
            case.model.recommend([(first, 4.0), (first, 3.0)], k=3)
        for rating in (float("nan"), 1e300):
            with pytest.raises(NpcfError, match="finite"):
                case.model.recommend([(first, rating)], k=3)
        for rating in ("4", True, [4.0]):
            with pytest.raises(NpcfError, match="numeric ratings"):
                case.model.recommend([(first, rating)], k=3)


def test_a_stored_zero_is_not_a_rating(case):
    """0 means "not rated" everywhere (the ONNX graph cannot tell a stored 0 apart)."""
    if not case.folds_in:
        pytest.skip("item-based models score the fitted matrix only")
    row = case.X[2].toarray()[0]
    empty = int(np.flatnonzero(row == 0)[0])
    stored = sp.csr_matrix((np.r_[row[row != 0], 0.0].astype(np.float32),
                            np.r_[np.flatnonzero(row), empty], [0, int((row != 0).sum()) + 1]),
                           shape=(1, N_ITEMS))
    assert stored.nnz == (row != 0).sum() + 1
    a, b = case.model.recommend(stored, k=N_ITEMS), case.model.recommend(sp.csr_matrix(row),
                                                                        k=N_ITEMS)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_one_id_may_be_given_bare(case):
    first = case.ids([0])[0]
    ids, _ = case.model.recommend(case.X, k=3, filter_items=first)
    assert first not in ids


@pytest.mark.parametrize("make", [baselines.GlobalMean, baselines.Biases, baselines.Popularity,
                                  baselines.EASE, AutoEncoder])
def test_an_unfitted_model_says_so(make):
    with pytest.raises(NpcfError, match="not fitted"):
        make().recommend(EXPLICIT, k=3)
