"""npcf.evaluation.ranking.rank, the one top-k routine, against a plain sort."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from npcf.errors import NpcfError
from npcf.evaluation.ranking import PAD, penalty_vector, rank


def reference(scores, k, seen=None, exclude=(), candidates=None, penalty=0.0, counts=None):
    """Each row sorted by (-ranking value, column) over the allowed columns."""
    n = scores.shape[1]
    allowed = set(range(n)) if candidates is None else set(candidates)
    allowed -= set(exclude)
    width = min(k, len(allowed))
    values = scores.astype(np.float64 if scores.dtype == np.float64 else np.float32)
    if penalty:
        values = values - penalty_vector(penalty, counts).astype(values.dtype)
    ids = np.full((scores.shape[0], width), PAD)
    out = np.full((scores.shape[0], width), -np.inf, np.float32)
    for r in range(scores.shape[0]):
        rated = set() if seen is None else set(seen[r].indices.tolist())
        ok = [c for c in sorted(allowed) if c not in rated and np.isfinite(values[r, c])]
        ok.sort(key=lambda c: (-values[r, c], c))
        for j, c in enumerate(ok[:width]):
            ids[r, j], out[r, j] = c, scores[r, c]
    return ids, out


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), b=st.integers(1, 5), k=st.integers(1, 15),
       penalty=st.sampled_from([0.0, 0.3]))
def test_rank_matches_a_plain_sort(data, n, b, k, penalty):
    # few distinct values: many ties, which must go to the lower column
    values = data.draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.nan, -np.inf]),
                                min_size=n * b, max_size=n * b))
    scores = np.asarray(values, np.float32).reshape(b, n)
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=n * b, max_size=n * b)))
    seen = sp.csr_matrix(mask.reshape(b, n).astype(np.float32))
    exclude = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
    candidates = data.draw(st.one_of(st.none(), st.lists(st.integers(0, n - 1), min_size=1,
                                                         max_size=n)))
    counts = np.arange(n) * 3
    got = rank(scores, k, seen=seen, exclude=exclude, candidates=candidates, penalty=penalty,
               item_counts=counts)
    want = reference(scores, k, seen, exclude, candidates, penalty, counts)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_penalty_reorders_and_scores_stay_unpenalised():
    scores = np.array([[1.0, 0.9, 0.8]], np.float32)
    counts = np.array([1000, 10, 0])
    idx, top = rank(scores, 3, penalty=0.05, item_counts=counts)
    assert idx.tolist() == [[2, 1, 0]]
    np.testing.assert_array_equal(top, scores[:, ::-1])
    with pytest.raises(NpcfError, match="rating counts"):
        rank(scores, 2, penalty=0.1)


def test_shapes_and_errors():
    idx, top = rank(np.zeros((0, 4), np.float32), 3)
    assert idx.shape == top.shape == (0, 3)
    with pytest.raises(ValueError, match="2-D"):
        rank(np.zeros(4), 2)
    with pytest.raises(NpcfError, match="out of range"):
        rank(np.zeros((1, 4)), 2, exclude=[4])
    assert rank(np.ones((2, 4)), 9, candidates=[1, 3])[0].tolist() == [[1, 3], [1, 3]]
