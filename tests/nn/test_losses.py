"""Tests for npcf.nn.losses: values against hand computations, gradients against central
finite differences, numerical stability of the multinomial NLL."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn.losses import log_softmax, masked_mse, multinomial


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def test_masked_mse_hand_values():
    y = np.array([1.0, 2.0, 4.0])
    t = np.array([1.5, 2.0, 3.0])
    loss, grad = masked_mse(y, t)
    assert loss == pytest.approx((0.25 + 0 + 1) / 3)
    np.testing.assert_allclose(grad, [2 / 3 * -0.5, 0.0, 2 / 3 * 1.0])


def test_masked_mse_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    y, t = rng.normal(size=11), rng.normal(size=11)
    _, grad = masked_mse(y, t)
    eps, num = 1e-6, np.zeros_like(y)
    for i in range(y.size):
        e = np.zeros_like(y)
        e[i] = eps
        num[i] = (masked_mse(y + e, t)[0] - masked_mse(y - e, t)[0]) / (2 * eps)
    assert rel_err(grad, num) < 1e-7


def test_masked_mse_empty_and_dtype():
    loss, grad = masked_mse(np.zeros(0), np.zeros(0))
    assert loss == 0.0 and grad.shape == (0,)
    y32 = np.array([1.0, 3.0], np.float32)
    loss, grad = masked_mse(y32, np.array([0.0, 1.0], np.float32))
    assert isinstance(loss, float) and loss == pytest.approx(2.5)
    assert grad.dtype == np.float32


def test_log_softmax_matches_definition_and_is_stable():
    z = np.array([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0]])
    expected = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(log_softmax(z), expected, rtol=1e-12)
    big = np.array([[1e4, 1e4 - 1, -1e4], [-5e3, -5e3, -5e3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow is fine
            out = log_softmax(big)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, :2], [-np.log1p(np.exp(-1)), -1 - np.log1p(np.exp(-1))])
    np.testing.assert_allclose(out[1], np.log(1 / 3) * np.ones(3))


def _mult_reference(z, T):
    lp = z - z.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    return -(T * lp).sum() / z.shape[0]


def test_multinomial_value_and_gradient():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 6))
    T = np.zeros((4, 6))
    T[0, [1, 3]] = 1
    T[1, 0] = 2          # a weight, not just 0/1
    T[3, [0, 2, 5]] = 1  # row 2 has no interactions at all
    t = sp.csr_matrix(T)
    loss, grad = multinomial(z, t)
    assert loss == pytest.approx(_mult_reference(z, T), rel=1e-12)
    eps, num = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = eps
        num[idx] = (multinomial(z + e, t)[0] - multinomial(z - e, t)[0]) / (2 * eps)
    assert rel_err(grad, num) < 1e-7
    # each row's gradient sums to 0 (softmax * n_u - t), and an empty row's is exactly 0
    np.testing.assert_allclose(grad.sum(1), 0, atol=1e-12)
    np.testing.assert_array_equal(grad[2], 0)


def test_multinomial_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [50.0, 50.0, 50.0]], np.float32)
    t = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0]], np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = multinomial(z, t)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx((1e4 + np.log(3)) / 2, rel=1e-5)
    assert grad.dtype == np.float32
