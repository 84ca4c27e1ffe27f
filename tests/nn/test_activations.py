"""Tests for npcf.nn.activations: derivatives against finite differences, SELU/ELU
constants, dtype preservation, no overflow warnings on large inputs."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from npcf.nn import activations
from npcf.nn.activations import ACTIVATIONS, SELU_ALPHA, SELU_SCALE

NAMES = ("relu", "selu", "elu", "sigmoid", "tanh", "identity")


def test_every_documented_activation_is_registered():
    assert set(ACTIVATIONS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_differences(name):
    f, df = activations.get(name)
    rng = np.random.default_rng(0)
    z = rng.uniform(-4, 4, 200)
    z = z[np.abs(z) > 1e-3]               # away from the kink of relu/elu/selu at 0
    eps = 1e-6
    num = (f(z + eps) - f(z - eps)) / (2 * eps)
    d = df(z, f(z))
    assert d.shape == z.shape
    np.testing.assert_allclose(d, num, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_dtype_is_kept(name, dtype):
    f, df = activations.get(name)
    z = np.linspace(-3, 3, 7).astype(dtype)
    a = f(z)
    assert a.dtype == dtype and df(z, a).dtype == dtype


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_no_overflow_on_large_inputs(name, dtype):
    f, df = activations.get(name)
    z = np.array([-1e30, -1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4, 1e30]).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            a = f(z)
            d = df(z, a)
    assert np.isfinite(a).all() and np.isfinite(d).all()


def test_saturation_values():
    z = np.array([-1e4, 1e4])
    np.testing.assert_array_equal(activations.get("sigmoid")[0](z), [0.0, 1.0])
    np.testing.assert_allclose(activations.get("elu")[0](z), [-1.0, 1e4])
    np.testing.assert_allclose(activations.get("selu")[0](z),
                               [-SELU_SCALE * SELU_ALPHA, SELU_SCALE * 1e4])
    np.testing.assert_array_equal(activations.get("relu")[0](z), [0.0, 1e4])
    np.testing.assert_array_equal(activations.get("tanh")[0](z), [-1.0, 1.0])


def test_selu_constants():
    # Klambauer et al. (2017): alpha_01 and lambda_01 (closed forms of the fixed point)
    assert SELU_ALPHA == pytest.approx(1.6732632423543772848170429916717, abs=1e-15)
    assert SELU_SCALE == pytest.approx(1.0507009873554804934193349852946, abs=1e-15)
    # closed form of alpha: -sqrt(2/pi) / (erfc(1/sqrt 2) exp(1/2) - 1)
    alpha = -math.sqrt(2 / math.pi) / (math.erfc(1 / math.sqrt(2)) * math.exp(0.5) - 1)
    assert SELU_ALPHA == pytest.approx(alpha, rel=1e-12)
    # self-normalising: N(0, 1) in -> mean 0, variance 1 out
    z = np.random.default_rng(0).standard_normal(2_000_000)
    a = activations.get("selu")[0](z)
    assert abs(a.mean()) < 5e-3 and abs(a.var() - 1) < 5e-3


def test_selu_and_elu_hand_values():
    selu, elu = activations.get("selu")[0], activations.get("elu")[0]
    assert selu(np.array([2.0]))[0] == pytest.approx(2 * SELU_SCALE)
    assert selu(np.array([-1.0]))[0] == pytest.approx(SELU_SCALE * SELU_ALPHA * (math.exp(-1) - 1))
    assert elu(np.array([-2.0]))[0] == pytest.approx(math.exp(-2) - 1)
    assert elu(np.array([0.5]))[0] == 0.5
    d_selu = activations.get("selu")[1]
    z = np.array([-1.0, 1.0])
    np.testing.assert_allclose(d_selu(z, selu(z)),
                               [SELU_SCALE * SELU_ALPHA * math.exp(-1), SELU_SCALE])


def test_relu_derivative_at_zero_and_sigmoid_value():
    f, df = activations.get("relu")
    np.testing.assert_array_equal(df(np.array([-1.0, 0.0, 2.0]), f(np.array([-1.0, 0.0, 2.0]))),
                                  [0, 0, 1])
    assert activations.get("sigmoid")[0](np.array([0.0]))[0] == 0.5
    sig = activations.get("sigmoid")[0]
    assert sig(np.array([2.0]))[0] == pytest.approx(1 / (1 + math.exp(-2)))


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activations.get("swish")
