"""Each row's k largest entries, ties toward the lowest column."""
import numpy as np

from npcf.utils.topk import largest_mask


def test_largest_entries_and_ties_to_the_lowest_column():
    s = np.array([[3.0, 1.0, 3.0, 2.0, 3.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [5.0, 4.0, 3.0, 2.0, 1.0]])
    got = largest_mask(s, 2)
    assert got.tolist() == [[True, False, True, False, False],
                            [True, True, False, False, False],
                            [True, True, False, False, False]]
    assert largest_mask(s, 5).all() and largest_mask(s, 1).sum(axis=1).tolist() == [1, 1, 1]
    rng = np.random.default_rng(0)
    r = rng.integers(0, 4, (50, 30)).astype(float)        # many ties
    for k in (1, 7, 30):
        m = largest_mask(r, k)
        assert np.all(m.sum(axis=1) == k)
        for row, keep in zip(r, m):                        # the stable descending order
            assert np.array_equal(np.flatnonzero(keep),
                                  np.sort(np.argsort(-row, kind="stable")[:k]))
