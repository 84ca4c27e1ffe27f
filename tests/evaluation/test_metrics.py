"""Metrics against hand-computed cases and independent slow reference implementations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.evaluation import metrics
from npcf.evaluation.ranking import top_k


# ------------------------------------------------------------------ slow references
def ref_ranking(scores_row, relevant_set, k):
    """Per-user reference: rank by score desc, ties to the lower index, -inf never shown."""
    order = sorted((i for i in range(len(scores_row)) if scores_row[i] != -math.inf),
                   key=lambda i: (-scores_row[i], i))[:k]
    # the fast path ranks -inf items last rather than dropping them; with few enough
    # exclusions they never reach the top k, which the tests ensure
    hits = [1 if i in relevant_set else 0 for i in order]
    n_rel = len(relevant_set)
    if n_rel == 0:
        return None
    denom = min(k, n_rel)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(denom))
    ap, seen = 0.0, 0
    for r, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (r + 1)
    return {"precision": sum(hits) / k, "recall": sum(hits) / denom, "ndcg": dcg / idcg,
            "map": ap / denom, "hit_rate": float(sum(hits) > 0)}


def ref_gini(counts):
    """Gini as the relative mean absolute difference (no sorting formula)."""
    c = np.asarray(counts, float)
    n = c.size
    return np.abs(c[:, None] - c[None, :]).sum() / (2 * n * n * c.mean())


def ref_personalization(lists):
    """1 - mean over pairs of |L_u & L_v| / K, pair by pair."""
    k = len(lists[0])
    ov = [len(set(a) & set(b)) / k for i, a in enumerate(lists) for b in lists[i + 1:]]
    return 1 - float(np.mean(ov))


# ------------------------------------------------------------------------ rating
def test_rmse_mae_hand():
    assert metrics.rmse([3, 4, 5], [3, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert metrics.mae([3, 4, 5], [3, 2, 4]) == pytest.approx(1.0)
    assert math.isnan(metrics.rmse([], []))
    assert math.isnan(metrics.mae([], []))


# --------------------------------------------------------------------- relevance
def test_default_threshold():
    assert metrics.default_threshold((0.5, 5.0)) == 4.0
    assert metrics.default_threshold((1, 5)) == 4.0
    assert metrics.default_threshold((1, 100)) == 80.0        # relative to the scale
    assert metrics.default_threshold((1, 10)) == 8.0
    assert metrics.default_threshold((1, 1)) is None          # one value: implicit
    assert metrics.default_threshold((-10, -1)) == pytest.approx(-2.8)   # 80% up the span
    assert metrics.default_threshold((-2, 2)) == pytest.approx(1.2)
    assert metrics.default_threshold((-5, 0.01)) == pytest.approx(-0.992)   # no jump at 0
    assert metrics.default_threshold(None) is None            # unknown
    assert metrics.default_threshold((0.5, 5.0), implicit=True) is None


def test_an_explicit_threshold_is_used_as_given_above_the_scales_minimum():
    """On -2..2 a threshold of -1 means ratings >= -1 (it used to mean 'every item')."""
    assert metrics.resolve_threshold(-1.0, (-2.0, 2.0)) == -1.0
    assert metrics.resolve_threshold(-2.0, (-2.0, 2.0)) is None        # every rating is >= -2
    assert metrics.resolve_threshold(0.0, (1.0, 5.0)) is None
    assert metrics.resolve_threshold(3.0, (1.0, 5.0)) == 3.0
    assert metrics.resolve_threshold(0.0, None) is None
    assert metrics.resolve_threshold(3.0, (3.0, 5.0)) == 3.0   # an observed minimum: as given
    assert metrics.resolve_threshold(0.5, (0.5, 5.0)) == 0.5
    assert metrics.resolve_threshold(None, (-5.0, -1.0)) == pytest.approx(-1.8)


def test_relevant_threshold():
    m = sp.csr_matrix(np.array([[5, 0, 3.5, 4], [0, 2, 0, 0]], np.float32))
    r = metrics.relevant(m, 4.0)
    assert r.toarray().tolist() == [[1, 0, 0, 1], [0, 0, 0, 0]]
    assert metrics.relevant(m).toarray().tolist() == [[1, 0, 1, 1], [0, 1, 0, 0]]


# ----------------------------------------------------------------------- ranking
def test_ranking_hand_case():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    held = sp.csr_matrix(np.array([[0, 1, 0, 1, 0]], np.float32))
    k = 3                    # top 0,1,2 -> hits [0, 1, 0]; 2 relevant
    assert metrics.precision_at_k(scores, held, k)[0] == pytest.approx(1 / 3)
    assert metrics.recall_at_k(scores, held, k)[0] == pytest.approx(1 / 2)
    ideal = 1 + 1 / math.log2(3)
    assert metrics.ndcg_at_k(scores, held, k)[0] == pytest.approx((1 / math.log2(3)) / ideal)
    assert metrics.map_at_k(scores, held, k)[0] == pytest.approx((1 / 2) / 2)
    assert metrics.hit_rate_at_k(scores, held, k)[0] == 1.0
    # k = 1: the top item is not relevant
    assert metrics.hit_rate_at_k(scores, held, 1)[0] == 0.0
    assert metrics.recall_at_k(scores, held, 1)[0] == 0.0


def test_recall_normalised_by_min_k_relevant():
    # 5 relevant items, k = 2, both top items relevant: recall 1 (Liang et al.), not 2/5
    scores = np.array([[5.0, 4, 3, 2, 1, 0]])
    held = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0]], np.float32))
    assert metrics.recall_at_k(scores, held, 2)[0] == 1.0
    assert metrics.ndcg_at_k(scores, held, 2)[0] == pytest.approx(1.0)
    assert metrics.map_at_k(scores, held, 2)[0] == pytest.approx(1.0)


def test_input_items_excluded_by_minus_inf():
    scores = np.array([[-np.inf, 0.8, 0.7, 0.1]])       # item 0 was in the input
    held = sp.csr_matrix(np.array([[0, 0, 1, 0]], np.float32))
    assert top_k(scores, 2).tolist() == [[1, 2]]
    assert metrics.precision_at_k(scores, held, 2)[0] == 0.5


def test_ties_go_to_lower_index():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 3]]
    assert top_k(scores, 10).shape == (1, 5)        # k capped at the catalog


def test_rows_without_relevant_items_are_nan():
    scores = np.array([[1.0, 2.0], [2.0, 1.0]])
    held = sp.csr_matrix(np.array([[1, 0], [0, 0]], np.float32))
    for fn in (metrics.precision_at_k, metrics.recall_at_k, metrics.ndcg_at_k,
               metrics.map_at_k, metrics.hit_rate_at_k):
        out = fn(scores, held, 1)
        assert out[0] == 0.0 and math.isnan(out[1])


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_ranking_against_reference(k):
    rng = np.random.default_rng(k)
    n_users, n_items = 40, 30
    scores = rng.normal(size=(n_users, n_items)).round(1)    # rounding creates ties
    excluded = rng.random((n_users, n_items)) < 0.1
    held = (rng.random((n_users, n_items)) < 0.2) & ~excluded
    held[::7] = False                                       # some users with none
    scores[excluded] = -np.inf
    k_eff = min(k, n_items)
    for u in range(n_users):                                # keep -inf out of the top k
        if np.isfinite(scores[u]).sum() < k_eff:
            scores[u, ~np.isfinite(scores[u])] = -50.0
    H = sp.csr_matrix(held.astype(np.float32))
    got = {"precision": metrics.precision_at_k(scores, H, k),
           "recall": metrics.recall_at_k(scores, H, k),
           "ndcg": metrics.ndcg_at_k(scores, H, k),
           "map": metrics.map_at_k(scores, H, k),
           "hit_rate": metrics.hit_rate_at_k(scores, H, k)}
    for u in range(n_users):
        ref = ref_ranking(list(scores[u]), set(np.flatnonzero(held[u])), k_eff)
        for name, arr in got.items():
            if ref is None:
                assert math.isnan(arr[u])
            else:
                assert arr[u] == pytest.approx(ref[name], abs=1e-12), (name, u)


def test_ranking_from_hits_prefix_consistency():
    rng = np.random.default_rng(3)
    hits = rng.random((20, 50)) < 0.2
    n_rel = rng.integers(0, 15, 20)
    for k in (5, 20, 50):
        a = metrics.ranking_from_hits(hits, n_rel, k)
        b = metrics.ranking_from_hits(hits[:, :k], n_rel)
        for m in metrics.RANKING:
            np.testing.assert_array_equal(a[m], b[m])


# --------------------------------------------------------------- beyond accuracy
def test_exposure_hand_case():
    lists = np.array([[0, 1], [0, 2], [0, 1]])
    c = metrics.exposure(lists, 4)
    assert c.tolist() == [3, 2, 1, 0]
    assert metrics.coverage(c) == 0.75
    # sorted [0, 1, 2, 3], n = 4, total 6: (-3*0 - 1*1 + 1*2 + 3*3) / 24
    assert metrics.gini(c) == pytest.approx(10 / 24)
    # sum c(c-1) = 6 + 2 = 8 over U(U-1)K = 3*2*2
    assert metrics.personalization(c, 3, 2) == pytest.approx(1 - 8 / 12)
    assert metrics.personalization(c, 3, 2) == pytest.approx(ref_personalization(lists.tolist()))
    valid = np.array([[True, True], [True, False], [True, True]])
    assert metrics.exposure(lists, 4, valid).tolist() == [3, 2, 0, 0]


def test_gini_extremes():
    assert metrics.gini(np.full(10, 7)) == pytest.approx(0.0)
    one = np.zeros(10)
    one[3] = 50
    assert metrics.gini(one) == pytest.approx(9 / 10)
    assert math.isnan(metrics.gini(np.zeros(5)))


def test_personalization_extremes():
    same = np.array([[0, 1, 2]] * 5)
    assert metrics.personalization(metrics.exposure(same, 10), 5, 3) == pytest.approx(0.0)
    disjoint = np.arange(15).reshape(5, 3)
    assert metrics.personalization(metrics.exposure(disjoint, 15), 5, 3) == pytest.approx(1.0)
    assert math.isnan(metrics.personalization(np.ones(3), 1, 3))


def test_beyond_accuracy_against_reference():
    rng = np.random.default_rng(11)
    n_items, k = 25, 5
    lists = np.array([rng.choice(n_items, k, replace=False, p=None) for _ in range(30)])
    c = metrics.exposure(lists, n_items)
    assert metrics.gini(c) == pytest.approx(ref_gini(c))
    assert metrics.personalization(c, len(lists), k) == pytest.approx(
        ref_personalization(lists.tolist()))
    assert metrics.coverage(c) == pytest.approx(len(set(lists.ravel())) / n_items)


def test_popularity_percentile():
    counts = np.array([5, 1, 3, 3])
    # sorted [1, 3, 3, 5]: most popular 100, least 0, the tied pair shares the middle
    assert metrics.popularity_percentile(counts).tolist() == [100.0, 0.0, 50.0, 50.0]
    # lists recommending item 0 twice and item 1 once
    exp = np.array([2, 1, 0, 0])
    assert metrics.mean_popularity(exp, counts) == pytest.approx((2 * 100 + 0) / 3)
    assert math.isnan(metrics.mean_popularity(np.zeros(4), counts))


def test_popularity_percentile_reference():
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 8, 50)
    got = metrics.popularity_percentile(counts)
    n = counts.size
    for i, c in enumerate(counts):
        below = int((counts < c).sum())
        same = int((counts == c).sum())
        assert got[i] == pytest.approx(100 * (below + (same - 1) / 2) / (n - 1))
