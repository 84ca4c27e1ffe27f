"""benchmarks/igmc.py: the NumPy IGMC the quality table measures beside npcf."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "igmc.py"
_spec = importlib.util.spec_from_file_location("bench_igmc", _path)
igmc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(igmc)


def _ratings(seed=1, shape=(12, 15), density=0.35):
    rng = np.random.default_rng(seed)
    dense = (rng.random(shape) < density) * rng.integers(1, 6, shape).astype(float)
    return sp.csr_matrix(dense)


def _lonely(seed=1):
    """Ratings with an empty user (row 0), an empty item (column 0) and a user with one
    rating (row 1, at column 2)."""
    R = _ratings(seed).tolil()
    R[0, :] = 0
    R[:, 0] = 0
    R[1, :] = 0
    R[1, 2] = 4
    return sp.csr_matrix(R)


def test_every_subgraph_is_the_enclosing_one_hop_subgraph_without_the_target_rating():
    R = _lonely()
    g = igmc.Subgraphs(R)
    dense = R.toarray()
    for u in range(R.shape[0]):          # training pairs and pairs the matrix lacks
        for i in range(R.shape[1]):
            nu, ni, lu, li, rel = g.extract(u, i)
            users = [u] + [v for v in np.flatnonzero(dense[:, i]) if v != u]
            items = [i] + [j for j in np.flatnonzero(dense[u]) if j != i]
            assert (nu, ni) == (len(users), len(items))
            got = {(users[a], items[b], g.values[r]) for a, b, r in zip(lu, li, rel)}
            want = {(v, j, dense[v, j]) for v in users for j in items
                    if dense[v, j] and (v, j) != (u, i)}
            assert got == want
    assert g.extract(0, 0)[:2] == (1, 1) and g.extract(0, 0)[2].size == 0    # alone: 2 nodes


def test_too_many_distinct_ratings_are_refused():
    R = sp.csr_matrix((np.arange(1.0, 40_001.0), (np.zeros(40_000, int), np.arange(40_000))))
    with pytest.raises(ValueError, match="distinct ratings"):
        igmc.Subgraphs(R)


def test_an_empty_batch_is_refused_by_name():
    with pytest.raises(ValueError, match="at least one subgraph"):
        igmc.Batch([])


def test_batch_labels_both_directions_and_averages():
    g = igmc.Subgraphs(_lonely())
    subs = g.extract_all([0, 3, 0], [1, 4, 0])
    b = igmc.Batch(subs)
    labels = b.x.argmax(1)
    assert (labels[b.tu] == 0).all() and (labels[b.ti] == 1).all()
    assert b.src.size == 2 * sum(s[2].size for s in subs)
    pairs = set(zip(b.src.tolist(), b.dst.tolist()))
    assert all((d, s) in pairs for s, d in pairs)
    # each node averages its incoming messages: over all of them, or per relation
    for average in ("node", "relation"):
        n = igmc.Batch(subs, average=average)
        key = n.dst * 10 + (n.rel if average == "relation" else 0)
        assert np.allclose(np.bincount(key, weights=n.weight), np.bincount(key) > 0)
    # a pair with no rating edge at all (user 0 and item 0 are empty) still gets a
    # prediction, from its labels alone
    assert subs[2][2].size == 0
    assert np.isfinite(igmc.predict(igmc.init_params(g.n_relations), subs)).all()


@pytest.mark.parametrize("dims, n_bases, pairs, dropout, average", [
    ((3, 4), 2, 6, 0.0, "node"),
    ((3, 4), 2, 6, 0.3, "node"),
    ((3, 4), 2, 6, 0.3, "relation"),
    ((3,), 1, 2, 0.0, "node"),             # one layer, one basis, two pairs
    ((2, 3, 2), 3, 5, 0.8, "relation"),    # nodes left without incoming edges
])
def test_gradient_matches_finite_differences(dims, n_bases, pairs, dropout, average):
    rng = np.random.default_rng(2)
    R = _lonely()
    g = igmc.Subgraphs(R)
    u, i = R.nonzero()
    chosen = [(0, 0)] + list(zip(u[:pairs - 1], i[:pairs - 1]))   # an edgeless pair first
    b = igmc.Batch(g.extract_all(*zip(*chosen)), dropout, rng, average)
    p = igmc.init_params(g.n_relations, dims=dims, n_bases=n_bases, hidden=5,
                         dtype=np.float64)
    target = rng.normal(size=len(chosen))

    def f():
        return igmc.loss_and_grad(p, b, target, arr=0.1, rng=np.random.default_rng(7))
    _, grad = f()
    assert set(grad) == set(p) and all(grad[k].dtype == p[k].dtype for k in p)
    for name, v in p.items():
        num = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            old = v[idx]
            v[idx] = old + 1e-6
            hi = f()[0]
            v[idx] = old - 1e-6
            lo = f()[0]
            v[idx] = old
            num[idx] = (hi - lo) / 2e-6
        np.testing.assert_allclose(grad[name], num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_training_fits_and_run_scores_held_out_pairs():
    R = _ratings(seed=3, shape=(30, 40), density=0.3)
    coo = R.tocoo()
    keep = np.arange(coo.nnz) % 10 != 0
    train = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=R.shape)
    test = sp.csr_matrix((coo.data[~keep], (coo.row[~keep], coo.col[~keep])), shape=R.shape)
    losses = []
    igmc.fit(train, epochs=6, on_epoch=lambda e, loss, pred, s: losses.append(loss))
    assert losses[-1] < losses[0]
    res = igmc.run(train, test, (1.0, 5.0), quick=True)
    assert res["epochs"] == 1 and res["relations"] == 5
    assert 0 < res["rmse"] < 4 and res["mae"] <= res["rmse"]
