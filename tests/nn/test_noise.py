"""Tests for npcf.nn.noise: corruption touches only observed entries, never the input,
has the documented statistics, and never reaches the training target."""
from __future__ import annotations

import numpy as np
import pytest

from npcf.nn.noise import KINDS, corrupt

from helpers import random_ratings


def snapshot(m):
    return m.data.copy(), m.indices.copy(), m.indptr.copy()


def assert_unchanged(m, snap):
    for a, b in zip((m.data, m.indices, m.indptr), snap):
        np.testing.assert_array_equal(a, b)


def pattern(m):
    m = m.tocoo()
    return set(zip(m.row.tolist(), m.col.tolist()))


@pytest.mark.parametrize("kind", KINDS)
def test_only_observed_entries_and_input_untouched(kind):
    x = random_ratings(100, 120)
    snap = snapshot(x)
    out = corrupt(x, kind, 0.3, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert pattern(out) <= pattern(x)                  # never creates entries
    assert_unchanged(x, snap)
    if kind in ("gaussian", "multiplicative"):
        assert pattern(out) == pattern(x)              # additive kinds keep the pattern
        assert not np.array_equal(out.data, x.data)
    if kind == "none":
        np.testing.assert_array_equal(out.toarray(), x.toarray())
    if kind != "none":      # "none" may return the input itself (no copy needed)
        # writing into the corrupted copy must not reach the input
        out.data[:] = -7
        out.sort_indices()
        assert_unchanged(x, snap)


def test_masking_rate_and_kept_values():
    x = random_ratings(400, 500, 0.25)
    for level in (0.1, 0.5, 0.8):
        out = corrupt(x, "masking", level, np.random.default_rng(2))
        kept = out.nnz / x.nnz
        sd = np.sqrt(level * (1 - level) / x.nnz)
        assert abs(kept - (1 - level)) < 5 * sd, (level, kept)
        # kept entries keep their exact values
        np.testing.assert_array_equal(np.asarray(x[out.nonzero()]).ravel(), out.data)


def test_masking_is_uniform_over_entries():
    x = random_ratings(400, 500, 0.25)
    out = corrupt(x, "masking", 0.5, np.random.default_rng(3))
    per_row_x = np.diff(x.indptr)
    per_row_out = np.diff(out.indptr)
    # each row loses about half (no row systematically kept or dropped)
    frac = per_row_out.sum() / per_row_x.sum()
    assert abs(frac - 0.5) < 0.01
    first_half = per_row_out[:200].sum() / per_row_x[:200].sum()
    assert abs(first_half - 0.5) < 0.02


def test_gaussian_statistics():
    x = random_ratings(400, 500, 0.25)
    level = 0.3
    out = corrupt(x, "gaussian", level, np.random.default_rng(4))
    d = (out.data - x.data).astype(np.float64)
    assert abs(d.mean()) < 5 * level / np.sqrt(d.size)
    assert abs(d.std() - level) < 0.02 * level


def test_multiplicative_statistics():
    x = random_ratings(400, 500, 0.25)
    level = 0.2
    out = corrupt(x, "multiplicative", level, np.random.default_rng(5))
    r = out.data.astype(np.float64) / x.data - 1
    assert abs(r.mean()) < 5 * level / np.sqrt(r.size)
    assert abs(r.std() - level) < 0.02 * level


@pytest.mark.parametrize("kind", ("masking", "gaussian", "multiplicative"))
def test_seeded_and_level_zero_is_identity(kind):
    x = random_ratings(50, 60)
    a = corrupt(x, kind, 0.4, np.random.default_rng(7))
    b = corrupt(x, kind, 0.4, np.random.default_rng(7))
    c = corrupt(x, kind, 0.4, np.random.default_rng(8))
    assert (a != b).nnz == 0 and (a != c).nnz > 0
    z = corrupt(x, kind, 0.0, np.random.default_rng(7))
    np.testing.assert_array_equal(z.toarray(), x.toarray())


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown noise 'salt'"):
        corrupt(random_ratings(5, 5, 0.5), "salt", 0.2, np.random.default_rng(0))


@pytest.mark.parametrize("kind", ("masking", "gaussian"))
def test_training_target_is_the_clean_ratings(kind, monkeypatch):
    """Inside the trainer: the network input is corrupted, the target it is scored on
    is the clean batch (all observed entries, original values)."""
    from npcf import AutoEncoder
    from npcf.nn.network import Network

    x = random_ratings(40, 30, 0.3)
    seen = []
    orig = Network.loss_and_grads

    def spy(self, inp, target, *a, **k):
        seen.append((inp.copy(), target.copy()))
        return orig(self, inp, target, *a, **k)
    monkeypatch.setattr(Network, "loss_and_grads", spy)
    model = AutoEncoder(layers=(4,), n_epochs=1, batch_size=40, residual=False, noise=kind,
                        noise_level=0.5, seed=0)
    model.fit(x)
    assert len(seen) == 1
    inp, target = seen[0]
    active = np.flatnonzero(np.diff(x.indptr) > 0)
    clean = x[np.random.default_rng([0, 0]).permutation(active)]   # epoch 0's shuffle
    np.testing.assert_array_equal(target.toarray(), clean.toarray())
    assert pattern(inp) <= pattern(target)
    assert not np.array_equal(inp.toarray(), target.toarray())
