"""Baselines: EASE against a direct dense solve, biases, popularity, global mean; the
estimator's contract on each (raw ids, item counts, hyperparameters, input checks)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf import Vocabulary
from npcf.errors import NpcfError, ParamError
from npcf.evaluation import baselines
from npcf.evaluation.protocol import evaluate
from npcf.nn.bias import UserItemBias
from npcf.utils.sparse import entry_rows

from helpers import random_ratings, tiny_ratings


def ease_direct(X, lam):
    """Steck 2019 written out: B = I - P diagMat(1 / diag P), P = (X^T X + lam I)^-1."""
    Xb = (X.toarray() != 0).astype(np.float64)
    P = np.linalg.inv(Xb.T @ Xb + lam * np.eye(Xb.shape[1]))
    return np.eye(Xb.shape[1]) - P @ np.diag(1 / np.diag(P))


@pytest.mark.parametrize("shape", [(40, 25), (20, 60)])       # more users / more items
@pytest.mark.parametrize("method", ["primal", "dual", "auto"])
def test_ease_matches_direct_solve(shape, method):
    X = random_ratings(*shape)
    lam = 7.0
    B = ease_direct(X, lam)
    assert np.allclose(np.diag(B), 0)
    model = baselines.EASE(lam=lam, method=method).fit(X)
    Xin = random_ratings(5, shape[1], seed=1)                        # fold-in rows
    want = (Xin.toarray() != 0) @ B
    np.testing.assert_allclose(model.predict(Xin), want, atol=1e-5)
    np.testing.assert_allclose(model.predict(X), (X.toarray() != 0) @ B, atol=1e-5)
    if model.B is not None:
        np.testing.assert_allclose(model.B, B, atol=1e-5)
    assert model.params()["method"] == ("dual" if method == "dual" or
                                        (method == "auto" and shape[0] < shape[1]) else "primal")


def test_ease_binarises_and_ignores_rating_values():
    X = random_ratings(30, 20)
    Y = X.copy()
    Y.data[:] = 1
    a = baselines.EASE(lam=3.0).fit(X)
    b = baselines.EASE(lam=3.0).fit(Y)
    np.testing.assert_allclose(a.predict(X), b.predict(Y), atol=1e-6)


def test_ease_picks_lambda_on_validation():
    X = random_ratings(60, 30, density=0.3)
    val = random_ratings(60, 30, density=0.05, seed=5)
    val = val - val.multiply(X != 0)                           # disjoint from training
    val.eliminate_zeros()
    model = baselines.EASE(lambdas=(0.5, 5.0, 50.0), threshold=None).fit(X, val, X)
    scores = model.params()["validation_ndcg"]
    assert set(scores) == {"0.5", "5.0", "50.0"}
    want = max((v, float(k)) for k, v in scores.items())[1]
    assert model.lam_ == want and model.lam is None          # the setting stays as given
    ref = evaluate(baselines.EASE(lam=want).fit(X).predict, X, val, ks=(100,))["ndcg@100"]
    assert scores[str(want)] == pytest.approx(ref)


def test_biases_reuse_bias_baseline_and_clip():
    X = random_ratings(50, 30)
    model = baselines.Biases(reg=4.0, scale=(0.5, 5.0)).fit(X)
    ref = UserItemBias(4.0, 4.0).fit(X)
    want = np.clip(ref.offset(ref.row_bias(X)), 0.5, 5.0)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-6)
    assert model.rating and model.predict(X).dtype == np.float32


def test_biases_choose_reg_by_validation_rmse():
    X = random_ratings(80, 40, density=0.3)
    val = random_ratings(80, 40, density=0.05, seed=3)
    model = baselines.Biases(regs=(0.1, 5.0, 100.0)).fit(X, val, X)
    rows = entry_rows(val)

    def err(reg):
        b = UserItemBias(reg, reg).fit(X)
        p = np.clip(b.predict(X, rows, val.indices), X.data.min(), X.data.max())
        return np.sqrt(np.mean((p - val.data) ** 2))
    assert model.reg_ == min((0.1, 5.0, 100.0), key=err) and model.reg is None


def test_popularity_and_global_mean():
    X = random_ratings(50, 20)
    pop = baselines.Popularity().fit(X)
    counts = np.bincount(X.indices, minlength=20)
    out = pop.predict(X[:3])
    assert out.shape == (3, 20) and np.array_equal(out[0], counts) and not pop.rating
    gm = baselines.GlobalMean().fit(X)
    assert np.allclose(gm.predict(X[:4]), X.data.mean()) and gm.predict(X[:4]).shape == (4, 20)


def test_popularity_ranks_most_rated_first():
    X = random_ratings(100, 15, density=0.3)
    test = random_ratings(100, 15, density=0.1, seed=9)
    r = evaluate(baselines.Popularity().fit(X).predict, sp.csr_matrix((100, 15)), test,
                 ks=(3,), examples=1)
    counts = np.bincount(X.indices, minlength=15)
    assert r["examples"][0]["items"] == np.argsort(-counts, kind="stable")[:3].tolist()
    assert r["personalization@3"] == pytest.approx(0.0)       # the same list for everyone


@pytest.mark.parametrize("name", ["global_mean", "biases", "popularity", "ease"])
def test_every_baseline_is_a_score_fn(name):
    X = random_ratings(40, 25, density=0.3)
    test = random_ratings(40, 25, density=0.05, seed=4)
    test = test - test.multiply(X != 0)
    test.eliminate_zeros()
    (model,) = baselines.make([name], scale=(0.5, 5.0))
    model.fit(X)
    r = evaluate(model.predict, X, test, ks=(5,), rating=model.rating, threshold=4.0)
    assert (r["rmse"] is not None) == model.rating
    assert 0 <= r["recall@5"] <= 1


# ------------------------------------------------- the estimator's contract, on each baseline
ALL = {"global_mean": baselines.GlobalMean, "biases": baselines.Biases,
       "popularity": baselines.Popularity, "ease": lambda **kw: baselines.EASE(lam=5.0, **kw)}


@pytest.mark.parametrize("name", ALL)
def test_items_vocabulary_gives_raw_ids_and_item_counts(name):
    X = random_ratings(40, 12, density=0.3)
    raw = np.arange(12) * 10 + 7
    model = ALL[name]().fit(X, items=Vocabulary(raw))
    assert model.items == Vocabulary(raw)
    assert model.item_counts.dtype == np.int64
    np.testing.assert_array_equal(model.item_counts, np.bincount(X.indices, minlength=12))
    ids, _ = model.recommend(X[:3], k=4, filter_items=raw[:2])
    cols = model.recommend(X[:3], k=6).ids
    assert set(ids.ravel()) <= set(raw[2:])
    with pytest.raises(NpcfError, match="unknown movie"):
        model.recommend(X[:3], k=4, filter_items=[3])          # a column index, not an id
    ids = ALL[name]().fit(X).recommend(X[:3], k=6).ids          # no vocabulary
    np.testing.assert_array_equal(cols, raw[ids])
    with pytest.raises(NpcfError, match="items: 11 ids for 12 columns"):
        ALL[name]().fit(X, items=Vocabulary(raw[:11]))


def test_popularity_penalty_ranks_by_score_minus_log_count():
    """With every score equal (the global mean), the penalty puts the least rated first;
    a movie without a training rating is never recommended."""
    X = random_ratings(60, 10, density=0.3).tolil()
    X[:, 9] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    counts = np.bincount(X.indices, minlength=10)
    model = baselines.GlobalMean(popularity_penalty=0.5).fit(X)
    ids, scores = model.recommend(sp.csr_matrix((1, 10)), k=10)
    assert ids[0].tolist() == np.argsort(counts[:9], kind="stable").tolist()    # 9 left out
    assert np.allclose(scores, X.data.mean())
    ids0 = baselines.GlobalMean().fit(X).recommend(sp.csr_matrix((1, 10)), k=3).ids
    assert ids0[0].tolist() == [0, 1, 2]                      # no penalty: ties by column


@pytest.mark.parametrize("name", ALL)
def test_get_params_set_params_repr_and_clone(name):
    clone = pytest.importorskip("sklearn.base").clone
    model = ALL[name](popularity_penalty=0.25)
    p = model.get_params()
    assert p["popularity_penalty"] == 0.25 and type(model)(**p).get_params() == p
    assert repr(model).endswith("popularity_penalty=0.25)")
    c = clone(model)
    assert c is not model and c.get_params() == p
    assert model.set_params(popularity_penalty=0.0) is model and model.popularity_penalty == 0.0
    with pytest.raises(ValueError, match=f"invalid parameter 'lr' for {type(model).__name__}"):
        model.set_params(lr=0.1)


def test_repr_names_what_differs_from_the_defaults():
    assert repr(baselines.EASE()) == "EASE()"
    assert repr(baselines.EASE(lam=10.0, method="dual")) == "EASE(lam=10.0, method='dual')"
    assert repr(baselines.Biases(regs=list(baselines.BIAS_REGS))) == "Biases()"
    assert repr(baselines.EASE(lambdas=np.array([1.0, 2.0]))) == \
        "EASE(lambdas=array([1., 2.]))"


@pytest.mark.parametrize("make, name", [
    (lambda: baselines.Biases(reg=-1.0), "reg"),
    (lambda: baselines.Biases(reg=float("nan")), "reg"),
    (lambda: baselines.Biases(reg="5"), "reg"),
    (lambda: baselines.Biases(regs=(1.0, -3.0)), "regs"),
    (lambda: baselines.Biases(regs=()), "regs"),
    (lambda: baselines.Biases(regs=5.0), "regs"),
    (lambda: baselines.EASE(lam=-1.0), "lam"),
    (lambda: baselines.EASE(lam=0.0), "lam"),               # singular without the ridge
    (lambda: baselines.EASE(lam=float("inf")), "lam"),
    (lambda: baselines.EASE(lambdas=[50.0, float("nan")]), "lambdas"),
    (lambda: baselines.EASE(method="lu"), "method"),
    (lambda: baselines.EASE(select_k=0), "select_k"),
    (lambda: baselines.Popularity(popularity_penalty=-0.5), "popularity_penalty"),
    (lambda: baselines.EASE(popularity_penalty=1e308), "popularity_penalty"),
    (lambda: baselines.Biases(scale="ab"), "scale"),
    (lambda: baselines.Biases(scale=(5, 1)), "scale"),
    (lambda: baselines.Biases(scale=(1, float("inf"))), "scale"),
    (lambda: baselines.EASE(threshold="x"), "threshold"),
    (lambda: baselines.EASE(threshold=float("nan")), "threshold"),
    (lambda: baselines.GlobalMean(popularity_penalty=True), "popularity_penalty"),
])
def test_bad_hyperparameters_are_refused_at_construction(make, name):
    with pytest.raises(ParamError, match=f"^{name}: must be") as err:
        make()
    assert err.value.param == name and "\n" not in str(err.value)


def test_fit_keeps_the_hyperparameters_as_given():
    """What a fit chose lives in ``reg_``/``scale_``/``lam_``: a clone or a refit on other
    data chooses again (a rating scale of 1-10 is not clipped to the first fit's 1-5)."""
    X = random_ratings(60, 30, density=0.3)
    val = random_ratings(60, 30, density=0.05, seed=5)
    biases = baselines.Biases(regs=(0.1, 100.0))
    biases.fit(X, val, X)
    assert (biases.reg, biases.scale) == (None, None) and biases.reg_ in (0.1, 100.0)
    assert repr(biases) == "Biases(regs=(0.1, 100.0))"
    wide = X.copy()
    wide.data *= 2.0                                      # ratings up to 10
    assert biases.fit(wide).predict(wide).max() > X.data.max()
    assert biases.scale_ == (float(wide.data.min()), float(wide.data.max()))
    ease = baselines.EASE(lambdas=(0.5, 50.0), threshold=None)
    ease.fit(X, val, X)
    assert ease.lam is None and ease.lam_ in (0.5, 50.0)
    ease.fit(X)
    assert ease.lam_ == 500.0 and ease.scores_on_validation == {}


def test_set_params_checks_and_keeps_nothing_on_error():
    model = baselines.EASE(lam=5.0)
    with pytest.raises(ParamError, match="lambdas"):
        model.set_params(lam=7.0, lambdas=(1.0, -1.0))
    assert model.lam == 5.0 and model.lambdas == baselines.EASE_LAMBDAS
    model.lam = -2.0                                           # behind set_params' back
    with pytest.raises(ParamError, match="lam"):
        model.fit(random_ratings(10, 5))


@pytest.mark.parametrize("name", ALL)
def test_predict_before_fit_and_with_wrong_columns(name):
    X = random_ratings(30, 12, density=0.3)
    with pytest.raises(NpcfError, match="not fitted"):
        ALL[name]().predict(X)
    model = ALL[name]().fit(X)
    with pytest.raises(NpcfError, match=r"input has shape \(30, 13\); the model expects "
                                        r"\(n_users, 12\)"):
        model.predict(sp.csr_matrix((30, 13)))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad, match", [
    (np.ones(5), "expected a 2-D"),
    ([[1.0, 2.0]], "expected a 2-D"),
    (sp.csr_matrix((4, 6)), r"training matrix \(4, 6\) holds no ratings"),
    (sp.csr_matrix((0, 0)), "holds no ratings"),
])
def test_fit_refuses_non_2d_or_empty_input(name, bad, match):
    with pytest.raises(NpcfError, match=match):
        ALL[name]().fit(bad)


@pytest.mark.parametrize("name", ["biases", "ease"])          # the others ignore the input
def test_predict_reads_a_stored_zero_as_not_rated(name):
    X = random_ratings(30, 12, density=0.3)
    model = ALL[name]().fit(X)
    row = X[0].toarray()[0]
    empty = int(np.flatnonzero(row == 0)[0])
    stored = X[0].tolil()
    stored[0, empty] = 1.0
    stored = sp.csr_matrix(stored)
    stored.data[stored.indices == empty] = 0                    # a stored 0, kept in data
    assert stored.nnz == X[0].nnz + 1
    np.testing.assert_array_equal(model.predict(stored), model.predict(X[0]))


def test_check_is_fitted_knows_every_model():
    """scikit-learn's check_is_fitted raised NotFittedError on fitted models (no trailing
    underscore attributes): every model says whether it is fitted."""
    validation = pytest.importorskip("sklearn.utils.validation")
    from sklearn.exceptions import NotFittedError

    from npcf import AutoEncoder
    from npcf.evaluation.baselines import EASE, Biases, GlobalMean, Popularity
    X = tiny_ratings()
    for model in (AutoEncoder(layers=(4,), n_epochs=1), GlobalMean(), Biases(), Popularity(),
                  EASE()):
        with pytest.raises(NotFittedError):
            validation.check_is_fitted(model)
        validation.check_is_fitted(model.fit(X))


def test_biases_refuse_ratings_outside_their_scale_as_the_autoencoder_does():
    import scipy.sparse as sp

    from npcf.errors import NpcfError
    from npcf.evaluation.baselines import Biases
    X = tiny_ratings()
    b = Biases(scale=(0.5, 5.0)).fit(X)
    row = sp.csr_matrix(([7.0], ([0], [0])), shape=(1, X.shape[1]))
    with pytest.raises(NpcfError, match="outside the model's scale"):
        b.recommend(row)
    with pytest.raises(NpcfError, match="outside the model's scale"):
        b.recommend([(0, 7.0)])


def test_ease_threshold_above_every_rating_is_refused():
    """It scored NaN for every lambda and fell back to 500 without a word."""
    from npcf.errors import ParamError
    from npcf.evaluation.baselines import EASE
    X = tiny_ratings()
    with pytest.raises(ParamError, match="above every validation rating") as err:
        EASE(threshold=10.0).fit(X, X)
    assert err.value.param == "threshold"


def test_biases_rank_before_the_clip_and_show_clipped_scores():
    """Biases past the top of the scale tied there and fell back to column order."""
    from npcf.evaluation.baselines import Biases
    X = tiny_ratings()
    b = Biases(reg=0.0, scale=(0.5, 5.0)).fit(X)
    b.model.col_bias[::2] += 4.0                      # half the movies: many past the top
    raw = b.rank_scores(X)
    assert (raw > 5).mean() > 0.2
    np.testing.assert_array_equal(b.predict(X), np.clip(raw, 0.5, 5.0))
    ids, scores = b.recommend(X[:5], k=4)
    masked = np.where(X[:5].toarray() != 0, -np.inf, raw[:5])
    cols = np.argsort(-masked, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ids, cols)
    assert scores.max() <= 5.0
