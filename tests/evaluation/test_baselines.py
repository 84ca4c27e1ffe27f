"""Baselines: EASE against a direct dense solve, biases, popularity, global mean."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.evaluation import baselines
from npcf.evaluation.protocol import evaluate
from npcf.nn.bias import UserItemBias
from npcf.utils.sparse import entry_rows

from helpers import random_ratings


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
    assert model.lam == want
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
    assert model.reg == min((0.1, 5.0, 100.0), key=err)


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
