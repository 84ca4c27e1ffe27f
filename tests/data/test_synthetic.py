"""Tests for npcf.data.synthetic.generate: seeded, MovieLens-like, half-star ratings."""
from __future__ import annotations

import numpy as np
import pytest

from npcf.data.synthetic import generate


@pytest.fixture(scope="module")
def default():
    return generate()


def top_share(r, fraction=0.1) -> float:
    counts = np.sort(np.bincount(r.matrix.indices, minlength=r.shape[1]))[::-1]
    k = max(1, int(len(counts) * fraction))
    return counts[:k].sum() / counts.sum()


def test_deterministic_per_seed():
    a, ma = generate(n_users=150, n_items=120, mean_ratings=20, seed=3)
    b, mb = generate(n_users=150, n_items=120, mean_ratings=20, seed=3)
    c, mc = generate(n_users=150, n_items=120, mean_ratings=20, seed=4)
    for x, y in ((a.matrix.indptr, b.matrix.indptr), (a.matrix.indices, b.matrix.indices),
                 (a.matrix.data, b.matrix.data), (a.timestamps, b.timestamps),
                 (a.users.ids, b.users.ids), (a.items.ids, b.items.ids)):
        assert np.array_equal(x, y)
    assert ma.equals(mb)
    assert a.source == "synthetic(seed=3)"
    assert (a.matrix.nnz != c.matrix.nnz or not np.array_equal(a.matrix.indices, c.matrix.indices)
            or not np.array_equal(a.matrix.data, c.matrix.data))
    assert not ma["title"].equals(mc["title"])


def test_default_seed_is_zero(default):
    r, _ = default
    again, _ = generate(seed=0)
    assert np.array_equal(r.matrix.data, again.matrix.data)
    assert r.source == "synthetic(seed=0)"


def test_half_star_scale(default):
    r, _ = default
    data = r.matrix.data
    assert r.scale == (0.5, 5.0)
    assert data.min() >= 0.5 and data.max() <= 5.0
    assert np.array_equal(data * 2, np.round(data * 2))
    # a spread of ratings, not a constant: every half star is used
    assert set(np.unique(data).tolist()) == {k / 2 for k in range(1, 11)}
    assert 3.0 < data.mean() < 4.2


def test_shape_ids_and_timestamps(default):
    r, movies = default
    assert r.shape[0] == 2000 and r.shape[1] <= 1500
    assert r.users.ids.tolist() == list(range(1, 2001))
    assert set(r.items.ids.tolist()) <= set(range(1, 1501))
    assert r.duplicates_resolved == 0
    assert r.timestamps.shape == r.matrix.data.shape
    assert r.timestamps.min() >= 946_684_800
    assert r.timestamps.max() < 946_684_800 + 15 * 365 * 86400
    assert movies.index.name == "movieId" and len(movies) == 1500
    assert set(r.items.ids.tolist()) <= set(movies.index.tolist())
    assert movies["title"].str.match(r".+ \(\d{4}\)$").all()
    assert movies["genres"].str.len().gt(0).all()


def test_ratings_per_user(default):
    r, _ = default
    per_user = np.diff(r.matrix.indptr)
    assert per_user.min() >= 10 and per_user.max() <= 1500 // 3
    assert 40 <= per_user.mean() <= 90                    # mean_ratings=60 by default
    assert np.median(per_user) < per_user.mean()          # long tail of heavy users
    small, _ = generate(n_users=300, n_items=400, mean_ratings=15, seed=1)
    big, _ = generate(n_users=300, n_items=400, mean_ratings=80, seed=1)
    assert np.diff(small.matrix.indptr).mean() < np.diff(big.matrix.indptr).mean()


def test_popularity_is_skewed(default):
    r, _ = default
    # uniform sampling would give the top 10% of items ~10% of the ratings
    assert top_share(r) > 0.3
    counts = np.bincount(r.matrix.indices, minlength=r.shape[1])
    assert counts.max() > 10 * np.median(counts)


def test_top_decile_holds_over_40_percent(default):
    r, _ = default
    assert top_share(r) > 0.4


def test_learned_models_beat_popularity_on_the_default_data():
    """The synthetic taste structure is learnable: an autoencoder (multinomial loss,
    a few epochs) and EASE both rank held-out favourites above the popularity ranking."""
    import npcf
    from npcf.data import load_dataset
    from npcf.evaluation.baselines import EASE, Popularity
    from npcf.evaluation.protocol import evaluate

    s = load_dataset(None, seed=0).split
    ndcg = {}
    ae = npcf.AutoEncoder(loss="multinomial", layers=(256,), n_epochs=15, batch_size=128,
                          noise_level=0.5, seed=0).fit(s.train)
    for name, model in (("popularity", Popularity().fit(s.train)),
                        ("ease", EASE(lam=200.0).fit(s.train)), ("autoencoder", ae)):
        ndcg[name] = evaluate(model.predict, s.test_input, s.test, ks=(10,), threshold=4.0)["ndcg@10"]
    assert ndcg["autoencoder"] > 1.3 * ndcg["popularity"], ndcg
    assert ndcg["ease"] > 1.3 * ndcg["popularity"], ndcg
