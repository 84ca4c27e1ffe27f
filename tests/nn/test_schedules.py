"""Tests for npcf.nn.schedules: none/step/cosine against hand values."""
from __future__ import annotations

import math

import pytest

from npcf.nn.schedules import learning_rate


def test_none_is_constant():
    assert [learning_rate(0.01, e) for e in (0, 1, 50)] == [0.01, 0.01, 0.01]
    assert learning_rate(0.01, 7, "none", n_epochs=10, step_size=2, gamma=0.1) == 0.01


def test_step_decays_every_step_size_epochs():
    got = [learning_rate(1.0, e, "step", step_size=3, gamma=0.5) for e in range(8)]
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert learning_rate(0.1, 10, "step", step_size=10, gamma=0.1) == pytest.approx(0.01)
    assert learning_rate(0.1, 9, "step", step_size=10, gamma=0.1) == 0.1
    # step_size 0 is treated as 1 rather than dividing by zero
    assert learning_rate(1.0, 2, "step", step_size=0, gamma=0.5) == 0.25


def test_cosine_from_base_to_min_over_n_epochs():
    base, lo, n = 0.1, 0.001, 5
    got = [learning_rate(base, e, "cosine", n_epochs=n, min_lr=lo) for e in range(n)]
    want = [lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * e / (n - 1))) for e in range(n)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(base) and got[-1] == pytest.approx(lo)
    assert got[2] == pytest.approx((base + lo) / 2)
    assert all(a > b for a, b in zip(got, got[1:]))
    # past the end it stays at min_lr; one epoch is just the base rate
    assert learning_rate(base, 9, "cosine", n_epochs=n, min_lr=lo) == pytest.approx(lo)
    assert learning_rate(base, 0, "cosine", n_epochs=1) == base


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate(0.1, 0, "linear")
