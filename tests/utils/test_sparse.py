"""npcf.utils.sparse: the CSR helpers against loops, the sort-based sets against numpy."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from npcf.utils.sparse import (
    binarize,
    dense_mask,
    entry_rows,
    l2_normalize_rows,
    merge_parts,
    positions_in,
    select,
    stable_order,
    union,
    unique,
    unique_inverse,
)

from helpers import random_ratings


def test_entry_rows_select_binarize_mask():
    m = sp.csr_matrix(random_ratings(9, 7, 0.4, seed=3).toarray() * (np.arange(9) != 4)[:, None])
    rows = entry_rows(m)
    assert rows.dtype == np.int64
    assert rows.tolist() == [r for r in range(9) for _ in range(m.indptr[r + 1] - m.indptr[r])]
    keep = m.data > 2
    s = select(m, keep)
    np.testing.assert_array_equal(s.toarray(), np.where(m.toarray() > 2, m.toarray(), 0))
    b = binarize(m, np.float64)
    assert b.dtype == np.float64 and (b.toarray() == (m.toarray() > 0)).all()
    np.testing.assert_array_equal(dense_mask(m), m.toarray() > 0)
    n = l2_normalize_rows(m)
    norms = np.sqrt((n.toarray() ** 2).sum(axis=1))
    np.testing.assert_allclose(norms[np.diff(m.indptr) > 0], 1, rtol=1e-6)
    assert norms[4] == 0 and n.dtype == m.dtype


@settings(max_examples=50, deadline=None)
@given(a=st.lists(st.integers(-5, 30), max_size=40), b=st.lists(st.integers(-5, 30), max_size=20))
def test_sets_agree_with_numpy(a, b):
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    np.testing.assert_array_equal(unique(a), np.unique(a))
    u, inv, order = unique_inverse(a, return_order=True)
    np.testing.assert_array_equal(u, np.unique(a))
    np.testing.assert_array_equal(u[inv], a)
    np.testing.assert_array_equal(a[order], np.sort(a, kind="stable"))
    np.testing.assert_array_equal(union(a, b), np.union1d(a, b))


@pytest.mark.parametrize("values", [[], [0], [3, 1, 3, 0, 1, 3], list(range(50, 0, -1)) * 3,
                                    [7, -1, 7, 2], [0, 10**6, 5], [2**40, 3, 2**40]])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_stable_order_is_numpys_stable_argsort(values, dtype):
    a = np.asarray(values)
    if a.size and (a.min() < np.iinfo(dtype).min or a.max() > np.iinfo(dtype).max):
        return
    a = a.astype(dtype)
    got = stable_order(a)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(a, kind="stable"))


def test_stable_order_of_a_batch_of_item_ids_is_counted(monkeypatch):
    from npcf.utils import sparse as mod
    calls = []
    real = mod.csr_tocsc
    monkeypatch.setattr(mod, "csr_tocsc", lambda *a: calls.append(1) or real(*a))
    a = np.random.default_rng(0).integers(0, 45000, 20000)
    np.testing.assert_array_equal(stable_order(a), np.argsort(a, kind="stable"))
    assert calls == [1]


def test_merge_parts_keeps_negative_ratings_and_the_first_value():
    a = sp.csr_matrix(np.array([[-3.0, 0, 2], [0, 0, 0]], np.float32))
    b = sp.csr_matrix(np.array([[9.0, -1, 0], [0, 0, -2]], np.float32))
    m = merge_parts([a, None, b, b])
    assert m.dtype == np.float32 and m.nnz == 4 and m.has_sorted_indices
    np.testing.assert_array_equal(m.toarray(), [[-3, -1, 2], [0, 0, -2]])
    np.testing.assert_array_equal(merge_parts([a, a]).toarray(), a.toarray())


@given(st.integers(0, 2 ** 31 - 1))
@settings(max_examples=25, deadline=None)
def test_merge_parts_equals_a_dense_first_wins_loop(seed):
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(3):
        d = rng.choice([0.0, -2.0, -0.5, 1.0, 4.5], size=(6, 7)).astype(np.float32)
        d[rng.random(d.shape) < 0.5] = 0
        parts.append(sp.csr_matrix(d))
    want = np.zeros((6, 7), np.float32)
    for d in (p.toarray() for p in parts):
        want = np.where(want == 0, d, want)
    np.testing.assert_array_equal(merge_parts(parts).toarray(), want)


def test_positions_in_finds_each_value_or_minus_one():
    u = np.array([2, 5, 9])
    np.testing.assert_array_equal(positions_in(u, np.array([9, 2, 3, 5, 5, 0]), 10),
                                  [2, 0, -1, 1, 1, -1])
    assert positions_in(u, np.array([], np.int32), 10).size == 0
    assert (positions_in(np.array([], np.int64), np.array([1, 4]), 5) == -1).all()


def test_positions_in_a_wide_axis_searches_instead(monkeypatch):
    u = np.array([3, 70000, 900000])
    got = positions_in(u, np.array([900000, 4, 3, 70000]), 10**6)
    np.testing.assert_array_equal(got, [2, -1, 0, 1])
    assert (positions_in(np.array([], np.int64), np.array([5]), 10**6) == -1).all()
