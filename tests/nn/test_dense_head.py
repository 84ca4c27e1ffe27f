"""Tests for npcf.nn.dense_head: the head/tail split of a batch's sparse products gives the
sampled path's loss, gradients and touched rows (float64, to round-off)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn import dense_head
from npcf.nn.network import Network, RowSparse
from npcf.utils.sparse import unique_inverse

B, N = 64, 150


def zipf_batch(seed: int, subset: bool, zero_in_head: bool):
    """CSR input ``x`` and target ``t`` (B, N) with Zipf-like column popularity: a few
    columns in many rows (the head), most in few (the tail). ``subset``: x's pattern is
    inside t's; else x also holds columns t lacks. ``zero_in_head``: x stores an explicit
    0.0 in the most popular column."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, N + 1)
    pop /= pop.sum()
    perm = rng.permutation(N)                       # popular columns spread over the range
    t = np.zeros((B, N))
    for u in range(B):
        items = perm[np.unique(rng.choice(N, 7, p=pop))]
        t[u, items] = rng.normal(0, 1, items.size)
    x = np.where(rng.random(t.shape) < 0.75, t, 0.0)
    if not subset:
        extra = rng.random(t.shape) < 0.02
        x = np.where(extra & (t == 0), rng.normal(0, 1, t.shape), x)
    xs, ts = sp.csr_matrix(x), sp.csr_matrix(t)
    if zero_in_head:                                # a masked target entry, stored as 0.0
        top = perm[0]
        u = int(np.flatnonzero((x[:, top] == 0) & (t[:, top] != 0))[0])
        xs = xs.tolil()
        xs[u, top] = 1.0
        xs = xs.tocsr()
        xs.data[xs.indptr[u] + np.flatnonzero(xs[u].indices == top)[0]] = 0.0
    xs.sort_indices()
    assert (xs.data == 0).sum() == int(zero_in_head)
    return xs, ts


def test_hot_counts_rows_per_column_against_the_density():
    local = np.array([0, 0, 0, 0, 1, 1, 2, 0])
    np.testing.assert_array_equal(dense_head.hot(local, 4, 32, density=1 / 8), [True, False,
                                                                                  False, False])
    # never a column held by a single row, however small the batch
    np.testing.assert_array_equal(dense_head.hot(local, 4, 2, density=1 / 8),
                                  [True, True, False, False])


def test_split_is_exact_and_keeps_explicit_zeros():
    x, _ = zipf_batch(0, subset=True, zero_in_head=True)
    cols = np.unique(x.indices)[::3].astype(np.int64)
    cut = dense_head.split(x, cols)
    rebuilt = cut.tail.toarray()
    rebuilt[:, cols] += cut.dense
    np.testing.assert_array_equal(rebuilt, x.toarray())
    assert cut.tail.nnz + np.count_nonzero(np.isin(x.indices, cols)) == x.nnz
    np.testing.assert_array_equal(cut.held, np.isin(cols, x.indices))
    assert not np.isin(cut.tail.indices, cols).any()


@pytest.mark.parametrize("zero_in_head", (False, True))
@pytest.mark.parametrize("subset", (True, False))
@pytest.mark.parametrize("tied", (True, False))
def test_head_split_matches_the_sampled_path(tied, subset, zero_in_head):
    x, t = zipf_batch(1, subset, zero_in_head)
    net = Network(N, (6, 3), tied=tied, activation="selu", seed=0, dtype=np.float64)
    net.params["c0"][...] = np.random.default_rng(2).normal(0, 0.3, N)
    groups = unique_inverse(t.indices.astype(np.int64), return_order=True)
    mode, hot = net.output_plan(B, groups)
    assert mode == "sampled" and hot is not None and 0 < hot.sum() < hot.size   # both parts
    loss_s, g_s = net.loss_and_grads(x, t, "mse", output_mode="sampled")
    loss_a, g_a = net.loss_and_grads(x, t, "mse", output_mode="auto")
    assert abs(loss_a - loss_s) < 1e-12
    assert g_a.keys() == g_s.keys()
    for name, gs in g_s.items():
        ga = g_a[name]
        if isinstance(gs, RowSparse):
            assert isinstance(ga, RowSparse), name
            np.testing.assert_array_equal(ga.rows, gs.rows, err_msg=name)   # same touched rows
            gs, ga = gs.values, ga.values
        np.testing.assert_allclose(ga, gs, rtol=1e-10, atol=1e-12, err_msg=name)
    a_head, _ = net.hidden(x, head=groups[0][hot])
    np.testing.assert_allclose(a_head, net.hidden(x)[0], rtol=1e-12, atol=1e-12)


def test_auto_output_at_uses_the_head_and_matches_the_dense_output():
    x, t = zipf_batch(3, True, False)
    net = Network(N, (5,), tied=False, seed=0, dtype=np.float64)
    a, _ = net.hidden(x)
    rows = np.repeat(np.arange(B), np.diff(t.indptr))
    cols = t.indices.astype(np.int64)
    full = net.output(a)[0][rows, cols]
    np.testing.assert_allclose(net.output_at(a, rows, cols, "auto"), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.output_at(a, rows, cols, "sampled"), full, rtol=1e-12,
                               atol=1e-12)
