"""Element-wise activations and their derivatives.

Each entry of :data:`ACTIVATIONS` is ``(f, df)``: ``a = f(z)`` and
``df(z, a) = f'(z)`` (given both the pre-activation and the output, so each
derivative uses whichever is cheaper). Arrays keep their dtype.
"""
from __future__ import annotations

import numpy as np

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _relu(z):
    return np.maximum(z, 0)


def _d_relu(z, a):
    return (z > 0).astype(z.dtype)


def _elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def _d_elu(z, a):
    return np.where(z > 0, 1, a + 1).astype(z.dtype)


def _selu(z):
    return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def _d_selu(z, a):
    return np.where(z > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA).astype(z.dtype)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def _d_sigmoid(z, a):
    return a * (1 - a)


def _d_tanh(z, a):
    return 1 - a * a


def _identity(z):
    return z


def _d_identity(z, a):
    return np.ones_like(z)


ACTIVATIONS = {
    "relu": (_relu, _d_relu),
    "selu": (_selu, _d_selu),
    "elu": (_elu, _d_elu),
    "sigmoid": (_sigmoid, _d_sigmoid),
    "tanh": (np.tanh, _d_tanh),
    "identity": (_identity, _d_identity),
}


def get(name: str):
    """``(f, df)`` for an activation name; ValueError for an unknown one."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}") from None
