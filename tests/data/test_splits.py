"""Tests for npcf.data.splits: every kind is a disjoint, complete, seeded partition that
keeps the per-user guarantees the module documents."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.data.ratings import build_ratings
from npcf.data.splits import KINDS, Split, split_ratings
from npcf.errors import NpcfError
from npcf.utils.sparse import entry_rows


def make_ratings(seed=0, n_users=80, n_items=60):
    """Users with 1, 2, 3, ... 40 ratings; timestamps with ties; ids not 0-based."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([1, 1, 2, 2, 3, 4, 7, 12, 25, 40], n_users)
    users, items, vals, ts = [], [], [], []
    for u, c in enumerate(counts):
        cols = rng.choice(n_items, c, replace=False)
        users += [1000 + u] * c
        items += (cols * 3 + 7).tolist()
        vals += (rng.integers(1, 11, c) / 2).tolist()
        ts += rng.integers(0, 30, c).tolist()            # many ties
    order = rng.permutation(len(users))
    return build_ratings(np.array(users)[order], np.array(items)[order],
                         np.array(vals)[order], np.array(ts)[order], scale=(0.5, 5))


@pytest.fixture(scope="module")
def ratings():
    return make_ratings()


def entries(m) -> dict:
    m = sp.csr_matrix(m)
    coo = m.tocoo()
    return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data)}


def ts_of(ratings) -> dict:
    m = ratings.matrix
    rows = entry_rows(m)
    return {(int(r), int(c)): int(t) for r, c, t in zip(rows, m.indices, ratings.timestamps)}


def row_counts(m) -> np.ndarray:
    return np.diff(sp.csr_matrix(m).indptr)


def pieces(s: Split, kind: str) -> list:
    """The parts that partition the whole (inputs that duplicate other parts excluded)."""
    out = [s.train, s.test]
    if s.validation is not None:
        out.append(s.validation)
    if kind == "users":
        out.append(s.test_input)
        if s.validation is not None:
            out.append(s.validation_input)
    return out


def same(a, b) -> bool:
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


def merge(*ms) -> dict:
    out = {}
    for m in ms:
        out.update(entries(m))
    return out


KIND_VAL = [(k, v) for k in KINDS for v in (0.0, 0.2)]


@pytest.mark.parametrize("kind, val", KIND_VAL)
def test_disjoint_and_complete(ratings, kind, val):
    s = split_ratings(ratings, kind, test_size=0.25, seed=3, validation_size=val)
    whole = entries(ratings.matrix)
    parts = pieces(s, kind)
    for p in s.parts().values():
        assert p.shape == ratings.shape and p.dtype == np.float32 and p.format == "csr"
        assert p.has_sorted_indices
    keys = [set(entries(p)) for p in parts]
    assert sum(len(k) for k in keys) == len(whole)                 # disjoint ...
    assert set().union(*keys) == set(whole)                        # ... and complete
    assert merge(*parts) == whole                                  # with the right values
    assert s.test.nnz > 0
    assert (s.validation is not None) == (val > 0)
    if val > 0:
        assert s.validation.nnz > 0
    assert s.params["kind"] == kind and s.params["seed"] == 3


@pytest.mark.parametrize("kind, val", KIND_VAL)
def test_inputs(ratings, kind, val):
    s = split_ratings(ratings, kind, test_size=0.25, seed=1, validation_size=val)
    if kind == "users":
        test_users = np.flatnonzero(row_counts(s.test))
        assert np.array_equal(np.flatnonzero(row_counts(s.test_input)), test_users)
        if val:
            val_users = np.flatnonzero(row_counts(s.validation))
            assert np.array_equal(np.flatnonzero(row_counts(s.validation_input)), val_users)
    else:
        # the model sees everything known that is not a target
        expected = merge(s.train, s.validation) if val else entries(s.train)
        assert entries(s.test_input) == expected
        if val:
            assert entries(s.validation_input) == entries(s.train)
    assert set(s.parts()) == ({"train", "test", "test_input"} |
                              ({"validation", "validation_input"} if val else set()))


@pytest.mark.parametrize("kind, val", KIND_VAL)
def test_seeded(ratings, kind, val):
    a = split_ratings(ratings, kind, 0.25, seed=7, validation_size=val)
    b = split_ratings(ratings, kind, 0.25, seed=7, validation_size=val)
    c = split_ratings(ratings, kind, 0.25, seed=8, validation_size=val)
    for name in a.parts():
        assert same(getattr(a, name), getattr(b, name)), name
    assert not same(a.test, c.test)


def test_random_sizes(ratings):
    n = ratings.matrix.nnz
    s = split_ratings(ratings, "random", 0.2, seed=0)
    assert s.test.nnz == round(0.2 * n)
    v = split_ratings(ratings, "random", 0.2, seed=0, validation_size=0.1)
    assert v.test.nnz == round(0.2 * n)
    assert v.validation.nnz == round(0.1 / 0.8 * (n - round(0.2 * n)))


def expected_holdout(counts, fraction):
    n = np.clip(np.round(fraction * counts), 1, np.maximum(counts - 1, 0))
    n[counts < 2] = 0
    return n


@pytest.mark.parametrize("kind", ["user", "temporal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_user_holdout(ratings, kind, seed):
    s = split_ratings(ratings, kind, 0.3, seed=seed)
    counts = row_counts(ratings.matrix)
    n_train, n_test = row_counts(s.train), row_counts(s.test)
    many = counts >= 2
    assert (n_train[many] >= 1).all() and (n_test[many] >= 1).all()
    assert (n_test[~many] == 0).all() and (n_train[~many] == counts[~many]).all()
    assert np.array_equal(n_test, expected_holdout(counts, 0.3))


@pytest.mark.parametrize("val", [0.0, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temporal_holds_out_the_latest(ratings, val, seed):
    s = split_ratings(ratings, "temporal", 0.3, seed=seed, validation_size=val)
    ts = ts_of(ratings)

    def by_user(m):
        return {u: [ts[k] for k in entries(m) if k[0] == u] for u in range(ratings.shape[0])}
    train, test = by_user(s.train), by_user(s.test)
    valid = by_user(s.validation) if val else {u: [] for u in train}
    checked = 0
    for u in train:
        if test[u]:
            assert min(test[u]) >= max(train[u] + valid[u]), u
            checked += 1
        if valid[u]:
            assert min(valid[u]) >= max(train[u]), u
    assert checked >= 40


def test_temporal_needs_timestamps(ratings):
    with pytest.raises(NpcfError, match="timestamps"):
        split_ratings(ratings.matrix, "temporal", 0.2)


@pytest.mark.parametrize("val", [0.0, 0.2])
@pytest.mark.parametrize("seed", [0, 5])
def test_held_out_users(ratings, val, seed):
    s = split_ratings(ratings, "users", 0.25, seed=seed, validation_size=val, holdout=0.3)
    counts = row_counts(ratings.matrix)
    eligible = np.flatnonzero(counts >= 2)
    n_tr, n_te, n_in = row_counts(s.train), row_counts(s.test), row_counts(s.test_input)
    test_users = np.flatnonzero(n_te)
    assert len(test_users) == round(0.25 * len(eligible))
    assert set(test_users) <= set(eligible)
    assert (n_tr[test_users] == 0).all()                   # no training rows
    assert (n_in[test_users] >= 1).all()                   # fold-in non-empty
    assert np.array_equal(n_te[test_users], expected_holdout(counts[test_users], 0.3))
    assert np.array_equal(n_in + n_te, np.where(n_te > 0, counts, 0))
    if val:
        n_va, n_vi = row_counts(s.validation), row_counts(s.validation_input)
        val_users = np.flatnonzero(n_va)
        assert len(val_users) > 0
        assert not set(val_users) & set(test_users)
        assert (n_tr[val_users] == 0).all() and (n_vi[val_users] >= 1).all()
        assert np.array_equal(n_va[val_users] + n_vi[val_users], counts[val_users])
    else:
        # every other user stays in training, whole
        others = np.setdiff1d(np.arange(len(counts)), test_users)
        assert np.array_equal(n_tr[others], counts[others])
    assert s.params["holdout"] == 0.3


@pytest.mark.parametrize("kind", ["user", "temporal"])
def test_validation_per_user(ratings, kind):
    s = split_ratings(ratings, kind, 0.2, seed=0, validation_size=0.25)
    rest = row_counts(s.test_input)                     # train + validation per user
    n_tr, n_va = row_counts(s.train), row_counts(s.validation)
    assert np.array_equal(n_va, expected_holdout(rest, 0.25))
    assert (n_tr[rest >= 2] >= 1).all()


def test_plain_matrix_and_bad_arguments(ratings):
    s = split_ratings(ratings.matrix, "random", 0.5, seed=0)
    assert s.test.nnz + s.train.nnz == ratings.matrix.nnz
    with pytest.raises(NpcfError, match="test_size"):
        split_ratings(ratings, "random", 0.0)
    with pytest.raises(NpcfError, match="test_size"):
        split_ratings(ratings, "random", 1.0)
    with pytest.raises(NpcfError, match="validation_size"):
        split_ratings(ratings, "random", 0.1, validation_size=1.0)
    with pytest.raises(NpcfError, match="unknown split 'nope'"):
        split_ratings(ratings, "nope", 0.1)


def test_synthetic_splits_scale():
    from npcf.data.synthetic import generate
    r, _ = generate(n_users=300, n_items=200, mean_ratings=20, seed=4)
    for kind in KINDS:
        s = split_ratings(r, kind, 0.2, seed=0, validation_size=0.1)
        assert sum(len(entries(p)) for p in pieces(s, kind)) == r.matrix.nnz
        assert merge(*pieces(s, kind)) == entries(r.matrix)
