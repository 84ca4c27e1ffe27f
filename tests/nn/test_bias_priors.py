"""Biases shrunk toward priors from who rated what: the fit against the formula's loops
run to their fixed point, and what the priors do."""
import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn import bias_priors
from npcf.nn.bias import UserItemBias
from npcf.nn.bias_priors import PriorBias
from npcf.nn.neighbours import similarities

from helpers import tiny_ratings


def _reference(m: sp.csr_matrix, S: np.ndarray, regs, shrink: float, damping: float,
               n_iter: int):
    """(mu, b_col, a) by the module docstring's updates, written as loops over a dense
    matrix (0: not rated)."""
    D = m.toarray().astype(np.float64)
    n_u, n_i = D.shape
    rated = D != 0
    mu = D[rated].mean()
    b_u, b_i, p, a = np.zeros(n_u), np.zeros(n_i), np.zeros(n_i), np.zeros(n_i)
    for _ in range(n_iter):
        for i in range(n_i):
            who = rated[:, i]
            b_i[i] = (np.sum(D[who, i] - mu - b_u[who]) + regs[1] * p[i]) / (regs[1] + who.sum())
        for u in range(n_u):
            what = rated[u]
            q = a[what].mean() if what.any() else 0.0
            b_u[u] = (np.sum(D[u, what] - mu - b_i[what]) + regs[0] * q) / (regs[0] + what.sum())
        p = np.array([S[i] @ b_i / (damping + S[i].sum()) for i in range(n_i)])
        a = np.array([b_u[rated[:, j]].sum() / (shrink + rated[:, j].sum())
                      for j in range(n_i)])
        a -= np.sum(a * rated.sum(0)) / rated.sum()       # centred over every rating
    return mu, b_i, a, b_u


@pytest.mark.parametrize("damping", [0.0, 1.0])
def test_fit_and_fold_in_match_the_formula(damping):
    m = tiny_ratings(25, 10, density=0.4, seed=5)
    S = similarities(m, 4)
    model = PriorBias(2.0, 3.0, rater_shrinkage=4.0, damping=damping).fit(m, S)
    mu, b_i, a, b_u = _reference(m, S.toarray(), (2.0, 3.0), 4.0, damping, 400)
    assert model.col_bias.dtype == np.float32 and model.rater_bias.dtype == np.float32
    assert model.mu == pytest.approx(mu)
    np.testing.assert_allclose(model.col_bias, b_i, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.rater_bias, a, rtol=1e-5, atol=1e-6)
    # a row's bias at call time: its ratings against the final item biases and priors
    D = m.toarray().astype(np.float64)
    want = [(np.sum(D[u, D[u] != 0] - mu - b_i[D[u] != 0]) + 2.0 * a[D[u] != 0].mean())
            / (2.0 + np.sum(D[u] != 0)) for u in range(m.shape[0])]
    np.testing.assert_allclose(model.row_bias(m), want, rtol=1e-5, atol=1e-6)


def test_the_fit_is_the_fixed_point_where_the_updates_alone_are_slow():
    # denser data: the alternating updates need hundreds of rounds here, GMRES tens
    m = tiny_ratings(120, 40, density=0.6, seed=2)
    S = similarities(m, 10)
    model = PriorBias(2.0, 5.0).fit(m, S)
    x = np.r_[model.col_bias, np.zeros(m.shape[0])].astype(np.float64)
    x[40:] = PriorBias.row_bias(model, m)         # the rows' biases at the fixed point
    parts = (bias_priors._counts(sp.csr_matrix(m, dtype=np.float64),
                                 sp.csr_matrix(S, dtype=np.float64), model.mu, 1.0),
             (2.0, 5.0), bias_priors.RATER_SHRINKAGE)
    np.testing.assert_allclose(bias_priors._sweep(x, *parts), x, atol=2e-6)
    few = PriorBias(2.0, 5.0, n_iter=1).fit(m, S)   # one restart cycle, still close
    np.testing.assert_allclose(few.col_bias, model.col_bias, atol=1e-3)


def test_a_rarely_rated_item_leans_toward_its_neighbours_and_an_empty_row_gets_none():
    rng = np.random.default_rng(0)
    D = np.zeros((60, 4), np.float32)
    D[:, :2] = rng.choice([4.5, 5.0], size=(60, 2))    # two well-liked items everyone rated
    D[:30, 2] = rng.choice([1.0, 1.5], size=30)        # a disliked item half of them rated
    D[30, 3] = 3.0                                     # one rating, by a rater of items 0-1 only
    m = sp.csr_matrix(D)
    S = similarities(m)
    plain = UserItemBias(2.0, 5.0).fit(m)
    prior = PriorBias(2.0, 5.0).fit(m, S)
    assert prior.col_bias[3] > plain.col_bias[3]       # pulled toward items 0 and 1
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    assert prior.row_bias(empty)[0] == 0.0
    no_items = PriorBias(2.0, 5.0).fit(m)              # no similarities: a user prior only
    assert np.all(np.isfinite(no_items.col_bias)) and no_items.rater_bias.shape == (4,)


def test_bad_settings_are_refused():
    for bad in (dict(rater_shrinkage=0.0), dict(damping=-1.0), dict(reg_row=0.0),
                dict(rater_shrinkage=float("nan"))):
        with pytest.raises(ValueError, match="rater_shrinkage and the ridge"):
            PriorBias(**bad)
