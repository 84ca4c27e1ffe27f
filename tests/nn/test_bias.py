"""Tests for npcf.nn.bias: the regularised bias model against a direct dense ridge
solve and known closed-form cases; the fold-in row bias formula."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn import bias
from npcf.nn.bias import REG_GRID, UserItemBias, cross_validated_regs
from npcf.utils.folds import fold_of

from helpers import tiny_ratings


def ridge_solve(m: sp.csr_matrix, reg_row: float, reg_col: float):
    """Minimise sum (r - mu - b_u - b_i)^2 + reg_row |b_u|^2 + reg_col |b_i|^2 directly."""
    coo = m.tocoo()
    n_u, n_i = m.shape
    mu = coo.data.astype(np.float64).mean()
    A = np.zeros((coo.nnz, n_u + n_i))
    A[np.arange(coo.nnz), coo.row] = 1
    A[np.arange(coo.nnz), n_u + coo.col] = 1
    reg = np.r_[np.full(n_u, reg_row), np.full(n_i, reg_col)]
    b = np.linalg.solve(A.T @ A + np.diag(reg), A.T @ (coo.data - mu))
    return mu, b[:n_u], b[n_u:]


@pytest.mark.parametrize("reg_row,reg_col", [(5.0, 5.0), (1.0, 10.0), (0.5, 0.0)])
def test_matches_dense_ridge_solution(reg_row, reg_col):
    m = tiny_ratings(12, 9, 0.45)
    mu, b_u, b_i = ridge_solve(m, reg_row, reg_col)
    base = UserItemBias(reg_row, reg_col, n_iter=2000).fit(m)
    assert base.mu == pytest.approx(mu, rel=1e-12)
    assert base.col_bias.dtype == np.float32 and base.col_bias.shape == (m.shape[1],)
    np.testing.assert_allclose(base.col_bias, b_i, atol=2e-5)
    # the row bias of a training row, folded in from its own ratings, is the ridge b_u
    np.testing.assert_allclose(base.row_bias(m), b_u, atol=2e-5)


def test_default_iterations_are_close_to_the_optimum():
    m = tiny_ratings(40, 30, 0.3, seed=4)
    _, _, b_i = ridge_solve(m, 5.0, 5.0)
    base = UserItemBias().fit(m)
    assert np.abs(base.col_bias - b_i).max() < 0.02


def test_complete_matrix_without_regularisation_is_two_way_anova():
    r = np.array([[4.0, 2.0, 3.0],
                  [5.0, 3.0, 1.0],
                  [3.0, 1.0, 5.0],
                  [4.0, 2.0, 3.0]], np.float32)
    base = UserItemBias(0.0, 0.0, n_iter=3).fit(sp.csr_matrix(r))
    mu = r.mean()
    assert base.mu == pytest.approx(mu)
    np.testing.assert_allclose(base.col_bias, r.mean(0) - mu, atol=1e-6)
    np.testing.assert_allclose(base.row_bias(sp.csr_matrix(r)), r.mean(1) - mu, atol=1e-6)


def test_single_item_known_case():
    # one item rated 4 and 2 by two users, reg 1: mu = 3, and by symmetry b_i = 0,
    # b_u = +-1 / (1 + 1)
    m = sp.csr_matrix(np.array([[4.0], [2.0]], np.float32))
    base = UserItemBias(1.0, 1.0, n_iter=50).fit(m)
    assert base.mu == 3.0
    np.testing.assert_allclose(base.col_bias, [0.0], atol=1e-7)
    np.testing.assert_allclose(base.row_bias(m), [0.5, -0.5], atol=1e-7)


def test_fold_in_row_bias_formula():
    m = tiny_ratings(12, 9, 0.45, seed=1)
    base = UserItemBias(reg_row=3.0, reg_col=2.0).fit(m)
    # a new user (not in training) with three ratings, and an empty row
    x = sp.csr_matrix((np.array([5.0, 1.0, 4.0], np.float32), np.array([0, 4, 7]),
                       np.array([0, 3, 3])), shape=(2, m.shape[1]))
    want = sum(r - base.mu - base.col_bias[i] for r, i in ((5, 0), (1, 4), (4, 7))) / (3.0 + 3)
    got = base.row_bias(x)
    assert got.dtype == np.float32 and got.shape == (2,)
    assert got[0] == pytest.approx(want, rel=1e-6)
    assert got[1] == 0.0
    # a stronger reg_row shrinks it toward 0
    base.reg_row = 30.0
    assert abs(base.row_bias(x)[0]) < abs(got[0])


def test_offsets_residual_and_predict_agree():
    m = tiny_ratings(12, 9, 0.45, seed=2)
    before = m.data.copy()
    base = UserItemBias().fit(m)
    b = base.row_bias(m)
    dense = base.offset(b)
    assert dense.shape == m.shape and dense.dtype == np.float32
    np.testing.assert_allclose(dense, base.mu + b[:, None] + base.col_bias[None, :], rtol=1e-6)
    coo = m.tocoo()
    at = base.offset_at(b, coo.row, coo.col)
    np.testing.assert_allclose(at, dense[coo.row, coo.col], rtol=1e-6)
    res = base.residual(m, b)
    np.testing.assert_array_equal(res.indices, m.indices)
    np.testing.assert_allclose(res.data, m.data - at, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(base.predict(m, coo.row, coo.col), at, rtol=1e-6)
    # residual does not modify its input
    np.testing.assert_array_equal(m.data, before)


def test_biases_capture_structure():
    # item 0 is loved, item 1 hated by everybody: the column biases must say so
    rng = np.random.default_rng(0)
    r = np.clip(np.round(rng.normal(3, 0.5, (30, 5))), 1, 5)
    r[:, 0], r[:, 1] = 5, 1
    base = UserItemBias().fit(sp.csr_matrix(r))
    assert base.col_bias[0] > 1 and base.col_bias[1] < -1


def _biased(n_rows: int, n_cols: int, density: float, row_sd: float, col_sd: float,
            seed: int = 0) -> sp.csr_matrix:
    """Ratings mu + row bias + column bias + noise at a random ``density`` of cells."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < density
    r = (3 + rng.normal(0, row_sd, (n_rows, 1)) + rng.normal(0, col_sd, (1, n_cols))
         + rng.normal(0, 0.5, (n_rows, n_cols)))
    return sp.csr_matrix(np.where(mask, r, 0.0))


def test_cross_validated_regs_follow_where_the_biases_are():
    # strong row biases, none by column: weak ridge on rows, the strongest on columns
    m = _biased(60, 80, 0.3, row_sd=1.0, col_sd=0.0)
    reg_row, reg_col = cross_validated_regs(m)
    assert reg_row <= 2 and reg_col == REG_GRID[-1]
    # the transpose asks for the same the other way round
    assert cross_validated_regs(sp.csr_matrix(m.T)) == (reg_col, reg_row)


def test_cross_validated_regs_match_a_direct_held_out_search():
    m = _biased(20, 15, 0.4, row_sd=0.8, col_sd=0.3, seed=3)
    grid = (0.5, 5.0, 50.0)
    got = cross_validated_regs(m, grid=grid, folds=4, seed=7)
    coo = m.tocoo()
    fold = fold_of(coo.nnz, 4, seed=7)
    errors = {}
    for reg_row in grid:
        for reg_col in grid:
            err = 0.0
            for k in range(4):
                train = sp.csr_matrix((coo.data[fold != k], (coo.row[fold != k],
                                                             coo.col[fold != k])), shape=m.shape)
                mu, _, b_col = ridge_solve(train, reg_row, reg_col)   # the exact optimum
                tc = train.tocoo()                                    # row bias as at prediction
                b_row = np.bincount(tc.row, tc.data - mu - b_col[tc.col], m.shape[0]) / (
                    reg_row + np.bincount(tc.row, minlength=m.shape[0]))
                at = fold == k
                pred = mu + b_row[coo.row[at]] + b_col[coo.col[at]]
                err += np.sum((pred - coo.data[at]) ** 2)
            errors[(reg_row, reg_col)] = err
    assert got == min(errors, key=errors.get)


def test_cross_validated_regs_need_ratings_and_are_seeded():
    assert cross_validated_regs(sp.csr_matrix((4, 4))) is None
    nine = sp.csr_matrix(np.eye(9) + 1)[:, :1]                 # 9 ratings < 2 x 5 folds
    assert nine.nnz == 9 and cross_validated_regs(nine) is None
    assert cross_validated_regs(sp.csr_matrix(np.ones((2, 5)))) is not None
    m = _biased(30, 30, 0.2, row_sd=0.5, col_sd=0.5, seed=1)
    assert cross_validated_regs(m, seed=4) == cross_validated_regs(m, seed=4)


def test_cross_validated_regs_sample_large_data(monkeypatch):
    m = _biased(60, 80, 0.3, row_sd=1.0, col_sd=0.0)
    monkeypatch.setattr(bias, "REG_MAX_RATINGS", m.nnz // 2)
    seen = []
    fit = UserItemBias.fit
    monkeypatch.setattr(UserItemBias, "fit", lambda self, x: seen.append(x.nnz) or fit(self, x))
    reg_row, reg_col = cross_validated_regs(m)
    assert max(seen) <= m.nnz // 2 and reg_row <= 2 and reg_col >= 25   # the same answer
