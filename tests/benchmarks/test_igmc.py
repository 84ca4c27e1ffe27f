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


def test_subgraph_is_the_enclosing_one_hop_subgraph_without_the_target_rating():
    R = _ratings()
    g = igmc.Subgraphs(R)
    dense = R.toarray()
    u, i = map(int, np.argwhere(dense > 0)[3])
    nu, ni, lu, li, rel = g.extract(u, i)
    users = [u] + [v for v in np.flatnonzero(dense[:, i]) if v != u]
    items = [i] + [j for j in np.flatnonzero(dense[u]) if j != i]
    assert (nu, ni) == (len(users), len(items))
    got = {(users[a], items[b], g.values[r]) for a, b, r in zip(lu, li, rel)}
    want = {(v, j, dense[v, j]) for v in users for j in items if dense[v, j] and (v, j) != (u, i)}
    assert got == want


def test_batch_labels_and_both_directions():
    g = igmc.Subgraphs(_ratings())
    subs = g.extract_all([0, 3], [1, 4])
    b = igmc.Batch(subs)
    labels = b.x.argmax(1)
    assert (labels[b.tu] == 0).all() and (labels[b.ti] == 1).all()
    assert b.src.size == 2 * sum(s[2].size for s in subs)
    pairs = set(zip(b.src.tolist(), b.dst.tolist()))
    assert all((d, s) in pairs for s, d in pairs)
    # each node averages its incoming messages: over all of them, or per relation
    for norm in ("node", "relation"):
        n = igmc.Batch(subs, norm=norm)
        key = n.dst * 10 + (n.rel if norm == "relation" else 0)
        assert np.allclose(np.bincount(key, weights=n.norm), np.bincount(key) > 0)
    # a pair whose nodes have no rating edge still gets a prediction from its labels
    assert np.isfinite(igmc.predict(igmc.init_params(g.n_relations), subs)).all()


@pytest.mark.parametrize("dropout, norm", [(0.0, "node"), (0.3, "node"), (0.3, "relation")])
def test_gradient_matches_finite_differences(dropout, norm):
    rng = np.random.default_rng(2)
    R = _ratings()
    g = igmc.Subgraphs(R)
    u, i = R.nonzero()
    b = igmc.Batch(g.extract_all(u[:6], i[:6]), dropout, rng, norm)
    p = igmc.init_params(g.n_relations, dims=(3, 4), n_bases=2, hidden=5, dtype=np.float64)
    target = rng.normal(size=6)

    def f():
        return igmc.loss_and_grad(p, b, target, arr=0.1, rng=np.random.default_rng(7))
    _, grad = f()
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
