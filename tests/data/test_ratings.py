"""Tests for npcf.data.ratings.build_ratings: CSR layout, id maps, duplicate resolution."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcf.data.ratings import build_ratings, rating_problem

from helpers import as_dict, ts_dict


def reference(users, items, ratings, timestamps=None):
    """Dict-based last-wins: latest timestamp; ties or no timestamps -> later row."""
    best = {}
    for pos in range(len(users)):
        key = (users[pos], items[pos])
        rank = (0 if timestamps is None else timestamps[pos], pos)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, ratings[pos], None if timestamps is None else timestamps[pos])
    return best


def test_sorted_input_fast_path():
    r = build_ratings(np.array([1, 1, 2, 5]), np.array([10, 30, 10, 20]),
                      np.array([1.0, 2.0, 3.0, 4.0]), np.array([7, 8, 9, 10]))
    assert r.shape == (3, 3)
    assert r.matrix.toarray().tolist() == [[1, 0, 2], [3, 0, 0], [0, 4, 0]]
    assert r.timestamps.tolist() == [7, 8, 9, 10]
    assert r.duplicates_resolved == 0


def test_unsorted_input_and_stats():
    r = build_ratings(np.array([5, 1, 2, 1]), np.array([20, 30, 10, 10]),
                      np.array([4.0, 2.0, 3.0, 1.0]), np.array([10, 8, 9, 7]),
                      scale=(1, 5), source="x")
    assert r.matrix.toarray().tolist() == [[1, 0, 2], [3, 0, 0], [0, 4, 0]]
    assert r.timestamps.tolist() == [7, 8, 9, 10]
    assert r.scale == (1.0, 5.0) and r.source == "x"
    s = r.stats()
    assert s["n_users"] == 3 and s["n_items"] == 3 and s["n_ratings"] == 4
    assert s["density"] == pytest.approx(4 / 9)
    assert (s["rating_min"], s["rating_max"]) == (1.0, 4.0)
    assert s["rating_mean"] == pytest.approx(2.5)
    assert s["duplicates_resolved"] == 0


def test_duplicates_with_timestamps():
    users = np.array([1, 1, 1, 2, 2])
    items = np.array([9, 9, 9, 9, 9])
    ratings = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    ts = np.array([30, 10, 20, 5, 5])
    r = build_ratings(users, items, ratings, ts)
    assert as_dict(r) == {(1, 9): 1.0, (2, 9): 5.0}
    assert ts_dict(r) == {(1, 9): 30, (2, 9): 5}
    assert r.duplicates_resolved == 3


def test_duplicates_without_timestamps():
    r = build_ratings(np.array(["b", "a", "b", "a"]), np.array(["x", "x", "x", "x"]),
                      np.array([1.0, 2.0, 3.0, 4.0]))
    assert as_dict(r) == {("a", "x"): 4.0, ("b", "x"): 3.0}
    assert r.duplicates_resolved == 2
    assert r.timestamps is None


triple = st.tuples(st.integers(-5, 12), st.integers(0, 12),
                   st.sampled_from([0.5 * k for k in range(1, 11)]), st.integers(0, 6))


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(triple, min_size=1, max_size=60), with_ts=st.booleans(),
       as_str=st.booleans())
def test_build_ratings_matches_dict_reference(rows, with_ts, as_str):
    users = [u for u, *_ in rows]
    items = [i for _, i, *_ in rows]
    if as_str:
        users = [f"u{u}" for u in users]
        items = [f"i{i:x}" for i in items]
    ratings = [v for *_, v, _ in rows]
    ts = [t for *_, t in rows] if with_ts else None
    r = build_ratings(np.array(users), np.array(items), np.array(ratings),
                      None if ts is None else np.array(ts))
    ref = reference(users, items, ratings, ts)
    assert as_dict(r) == {k: v for k, (_, v, _) in ref.items()}
    if with_ts:
        assert ts_dict(r) == {k: t for k, (_, _, t) in ref.items()}
    assert r.duplicates_resolved == len(rows) - len(ref)
    assert r.users.ids.tolist() == sorted(set(users))
    assert r.items.ids.tolist() == sorted(set(items))
    m = r.matrix
    assert m.dtype == np.float32 and m.shape == (len(set(users)), len(set(items)))
    for u in range(m.shape[0]):
        assert np.all(np.diff(m.indices[m.indptr[u]:m.indptr[u + 1]]) > 0)


@pytest.mark.parametrize("values,scale,problem", [
    ([1.0, 5.0], None, None),
    ([1.0, 5.0], (1, 5), None),
    ([], (1, 5), None),
    ([1.0, np.nan, 2.0], None, "rating nan is not a finite number"),
    ([1.0, -np.inf], (1, 5), "rating -inf is not a finite number"),
    ([1.0, 4e38], None, "rating 4e+38 is beyond the float32 range"),
    ([-4e38, 1.0], (-1e39, 1e39), "rating -4e+38 is beyond the float32 range"),
    ([1.0, 5.0000001, 3.0], (1, 5), "rating 5.0000001 outside the scale 1-5"),
    ([0.5, 3.0], (1, 5), "rating 0.5 outside the scale 1-5"),
    ([1.0, 0.0], None, "1 rating of 0: npcf reads a rating of 0 as 'not rated'"),
    ([0.0, 2.0, 0.0], (-1, 5), "2 ratings of 0"),
])
def test_rating_problem_names_the_first_bad_value(values, scale, problem):
    got = rating_problem(np.array(values, dtype=np.float64), scale)
    assert (got is None) if problem is None else got.startswith(problem)


def test_rating_problem_outside_the_scale_says_how_to_declare_another_one():
    got = rating_problem(np.array([7.0]), (1, 5))
    assert "--scale MIN,MAX" in got and "scale=(MIN, MAX) in the library" in got
