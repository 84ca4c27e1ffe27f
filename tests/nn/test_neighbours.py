"""Item neighbours over the bias residual: the similarities and predictions against a
brute-force reference written from the formula."""
import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn import neighbours
from npcf.nn.bias import UserItemBias
from npcf.nn.bias_priors import PriorBias
from npcf.nn.neighbours import ItemNeighbours, similarities

from helpers import tiny_ratings


def _reference(m: sp.csr_matrix, regs, keep: int, damping: float = neighbours.DAMPING,
               priors: bool = False):
    """Dense (n_items, n_items) similarities and a predict(x, u, i) function, by loops
    (with ``priors``, over :class:`PriorBias` fitted with those similarities, which
    ``tests/nn/test_bias_priors.py`` checks against its own formula)."""
    D = m.toarray().astype(np.float64)
    rated = D != 0
    n = D.shape[1]
    S = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            both = np.sum(rated[:, i] & rated[:, j])
            if i != j and both:
                S[i, j] = both / np.sqrt(rated[:, i].sum() * rated[:, j].sum())
    for i in range(n):                       # the keep largest, ties: lowest item first
        order = np.argsort(-S[i], kind="stable")
        S[i, order[keep:]] = 0
    S = S.astype(np.float32).astype(np.float16).astype(np.float64)   # held at half precision
    bias = PriorBias(*regs, damping=damping).fit(m, sp.csr_matrix(S)) if priors \
        else UserItemBias(*regs).fit(m)

    def predict(x: sp.csr_matrix, u: int, i: int) -> float:
        row = x[u].toarray().ravel().astype(np.float64)
        on = row != 0
        b = bias.row_bias(x[u])[0] if priors else \
            (np.sum(row[on] - bias.mu - bias.col_bias[on]) / (bias.reg_row + on.sum()))
        pred = bias.mu + b + bias.col_bias[i]
        r = np.where(on, row - bias.mu - b - bias.col_bias, 0.0)
        den = np.sum(S[i] * on)
        return pred + (np.sum(S[i] * r) / (den + damping) if den > 0 else 0.0)
    return S, predict


@pytest.mark.parametrize("priors", [False, True])
@pytest.mark.parametrize("keep,damping", [(3, 0.1), (200, 0.0), (200, 1.0)])
def test_similarities_and_predictions_match_the_formula(keep, damping, priors):
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    model = ItemNeighbours(2.0, 5.0, neighbours=keep, damping=damping, priors=priors).fit(m)
    assert isinstance(model.baseline, PriorBias) == priors
    S, predict = _reference(m, (2.0, 5.0), keep, damping, priors)
    got = model.similarity.toarray()
    assert got.dtype == np.float32 and np.all(np.diag(got) == 0) and np.all(got >= 0)
    assert np.all((got > 0).sum(1) <= keep) and np.all(got <= 1)
    np.testing.assert_array_equal(got, S)
    if keep < 12:
        assert np.any(np.abs(got - got.T) > 1e-3)  # pruned: S is not symmetric
    rows, cols = np.nonzero(np.ones(m.shape, bool))
    want = np.array([predict(m, u, i) for u, i in zip(rows, cols)])
    np.testing.assert_allclose(model.predict_at(m, rows, cols), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict(m)[rows, cols], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keep", [3, 200])
def test_the_similarity_mass_is_the_sum_over_the_rated_items(keep, monkeypatch):
    m = tiny_ratings(30, 12, density=0.4, seed=5)
    model = ItemNeighbours(2.0, 5.0, neighbours=keep).fit(m)
    S, _ = _reference(m, (2.0, 5.0), keep)
    x = tiny_ratings(9, 12, density=0.3, seed=6)          # rows it was not fitted on
    x = sp.vstack([x, sp.csr_matrix((1, 12))], format="csr")   # and an empty one
    want = (x.toarray() != 0).astype(np.float64) @ S.T       # sum_j rated_uj s_ij
    got = model.mass(x)
    assert got.shape == x.shape and np.all(got[-1] == 0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    rows, cols = np.nonzero(np.ones(x.shape, bool))
    monkeypatch.setattr(neighbours, "PAIR_BATCH", 7)          # many small gathers
    np.testing.assert_allclose(model.mass_at(x, rows, cols), want[rows, cols], rtol=1e-12,
                               atol=1e-12)
    # no pairs: nothing gathered
    assert model.mass_at(x, np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_similarities_are_held_at_half_precision_above_its_smallest_normal():
    tiny = float(np.finfo(np.float16).tiny)
    v = np.array([1.0, 1 / 3, 0.7008766, tiny, tiny / 3, 0.0], np.float32)
    got = neighbours.half_precision(v)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:4], v[:4].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got[4:], v[4:])     # below float16's normals: as given
    assert got[2] != v[2]


def test_slabs_of_any_size_give_the_same_similarities(monkeypatch):
    m = tiny_ratings(40, 25, density=0.4, seed=1)
    whole = similarities(m, 5).toarray()
    monkeypatch.setattr(neighbours, "SLAB", 30)           # one item per slab
    np.testing.assert_array_equal(similarities(m, 5).toarray(), whole)


def test_similarities_read_who_rated_what_not_the_values():
    m = tiny_ratings(40, 25, density=0.4, seed=1)
    other = m.copy()
    other.data = np.random.default_rng(0).uniform(0.5, 5.0, m.nnz).astype(np.float32)
    np.testing.assert_array_equal(similarities(other).toarray(), similarities(m).toarray())


@pytest.mark.parametrize("slab", [None, 7])
def test_ties_go_to_the_lowest_item_at_any_slab_size(monkeypatch, slab):
    if slab:
        monkeypatch.setattr(neighbours, "SLAB", slab)      # one item per slab
    tied = sp.csr_matrix(np.ones((3, 6), np.float32))     # every pair has cosine 1
    got = similarities(tied, 2).toarray()
    assert np.array_equal(got > 0, [[0, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0]]
                          + [[1, 1, 0, 0, 0, 0]] * 4)
    # equal cosines from different counts: item 0 has 3 raters, all among item 1's 9
    # (3 / sqrt(27)) and one of them item 2's only one (1 / sqrt(3))
    m = np.zeros((9, 3), np.float32)
    m[:3, 0], m[:, 1], m[0, 2] = 4.0, 3.0, 5.0
    got = similarities(sp.csr_matrix(m), 1).toarray()
    assert got[0, 1] > 0 and got[0, 2] == 0 and got[0, 1] == np.float16(1 / np.sqrt(3))


def test_a_new_user_folds_in_and_an_empty_row_gets_the_biases(monkeypatch):
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    model = ItemNeighbours(2.0, 5.0).fit(m)
    new = sp.csr_matrix(np.r_[[np.where(np.arange(12) < 4, 4.5, 0.0)], np.zeros((1, 12))]
                        .astype(np.float32))
    _, predict = _reference(m, (2.0, 5.0), 200, priors=True)
    got = model.predict(new)
    np.testing.assert_allclose(got[0], [predict(new, 0, i) for i in range(12)], rtol=1e-5)
    b = model.baseline
    np.testing.assert_allclose(got[1], b.mu + b.col_bias, rtol=1e-6)
    monkeypatch.setattr(neighbours, "PAIR_BATCH", 5)      # pairs in several batches
    rows, cols = np.repeat([0, 1], 12), np.tile(np.arange(12), 2)
    np.testing.assert_allclose(model.predict_at(new, rows, cols), got[rows, cols], rtol=1e-6)


@pytest.mark.parametrize("priors", [False, True])
def test_no_neighbours_is_the_bias_model(priors):
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    model = ItemNeighbours(2.0, 5.0, neighbours=0, priors=priors).fit(m)
    b = PriorBias(2.0, 5.0).fit(m) if priors else UserItemBias(2.0, 5.0).fit(m)
    assert model.similarity.nnz == 0
    np.testing.assert_allclose(model.predict(m), b.offset(b.row_bias(m)), rtol=1e-6)


def test_sparse_data_keeps_every_prediction_finite_and_bad_settings_are_refused():
    m = tiny_ratings(30, 12, density=0.3, seed=2)
    model = ItemNeighbours(2.0, 5.0, damping=0.0).fit(m)
    assert np.all(np.isfinite(model.similarity.data))
    assert np.all(np.isfinite(model.predict(m)))
    for bad in (dict(neighbours=-1), dict(neighbours=2.5), dict(damping=float("nan")),
                dict(damping=-0.1), dict(reg_row=0.0)):
        with pytest.raises(ValueError, match="neighbours must be"):
            ItemNeighbours(**bad)


def test_no_items_and_keeping_every_item_work():
    empty = sp.csr_matrix((4, 0), dtype=np.float32)
    assert similarities(empty).shape == (0, 0)
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    S, _ = _reference(m, (2.0, 5.0), 11)                  # every other item
    np.testing.assert_allclose(similarities(m, 50).toarray(), S, rtol=1e-6)
    assert np.all((similarities(m, 50).toarray() > 0) == (S > 0))


def test_pair_batches_cap_the_gathered_ratings():
    sizes = np.array([3, 1, 4, 1, 5, 9, 2])
    got = list(neighbours._batches(sizes, 5))
    assert [(b.start, b.stop) for b in got] == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7)]
    assert list(neighbours._batches(np.zeros(0, int), 5)) == []
