"""Tests for npcf.data.vocab.Vocabulary: raw ids <-> indices 0..n-1."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcf.data.vocab import Vocabulary


def test_int_ids():
    v = Vocabulary([30, 10, 20])
    assert len(v) == 3
    assert v.ids.dtype == np.int64
    assert v.index([10, 30, 20]).tolist() == [1, 0, 2]
    assert v.index(20).tolist() == [2]
    assert v.index(["30", "10"]).tolist() == [0, 1]        # typed ids are coerced
    assert v.index([str(2**70), "x"], missing="ignore").tolist() == [-1, -1]   # not an int64
    assert v.index(np.array([10], dtype=np.int32)).dtype == np.int64
    # only plain ASCII integers are integer ids: no digit separators, no superscripts
    assert v.index([" 30 ", "+10", "1_0", "\u00b2", "3\u0660"], missing="ignore").tolist() == \
        [0, 1, -1, -1, -1]
    assert v.ids[v.index([20, 10])].tolist() == [20, 10]


def test_str_ids():
    v = Vocabulary(np.array(["b", "a", "ccc"], dtype=object))
    assert v.ids.dtype.kind == "U"
    assert v.index(["a", "ccc", "b"]).tolist() == [1, 2, 0]
    assert v.ids.tolist() == ["b", "a", "ccc"]


def test_missing_ids():
    v = Vocabulary([1, 2, 3])
    with pytest.raises(KeyError, match="unknown ids: 7"):
        v.index([1, 7])
    assert v.index([1, 7, 3], missing="ignore").tolist() == [0, -1, 2]
    assert v.index(["x"], missing="ignore").tolist() == [-1]   # not an int: no match
    s = Vocabulary(["a", "b"])
    with pytest.raises(KeyError, match="unknown ids: z"):
        s.index(["z"])
    assert s.index([1], missing="ignore").tolist() == [-1]


def test_whole_float_ids_name_integer_ids():
    """10.0 (a number from JSON, say) is id 10; 10.5, NaN and inf name no id."""
    v = Vocabulary([10, 20, 30])
    assert v.index([20.0, 10.0]).tolist() == [1, 0]
    assert v.index(np.array([30.0, 10.5, np.nan, np.inf]), missing="ignore").tolist() == \
        [2, -1, -1, -1]
    with pytest.raises(KeyError, match="unknown ids: 10.5"):
        v.index([10.5])
    big = Vocabulary([2 ** 60, 5])         # float(2**60 + 1) == 2**60: inexact, names none
    assert big.index([float(2 ** 60 + 1)], missing="ignore").tolist() == [-1]
    assert big.index([5.0]).tolist() == [1]


@pytest.mark.parametrize("ids, match", [
    ([1, 2, 1], "unique"),
    (["a", "a"], "unique"),
    ([[1, 2], [3, 4]], "1-D"),
    ([1.5, 2.5], "integers or strings"),
])
def test_invalid(ids, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary(ids)


def test_equality_and_frame():
    assert Vocabulary([1, 2]) == Vocabulary(np.array([1, 2], dtype=np.int32))
    assert Vocabulary([1, 2]) != Vocabulary([2, 1])
    assert Vocabulary([1, 2]) != Vocabulary(["1", "2"])    # id kinds differ
    assert Vocabulary([1, 2]) != [1, 2]
    assert "2 ids" in repr(Vocabulary([1, 2]))


int_ids = st.lists(st.integers(-2**63, 2**63 - 1), unique=True, max_size=50)
# numpy str arrays drop trailing NULs, so ids with "\x00" are not representable
str_ids = st.lists(st.text(st.characters(blacklist_characters="\x00"), max_size=8),
                   unique=True, max_size=50)


@settings(max_examples=60, deadline=None)
@given(ids=int_ids, data=st.data())
def test_int_round_trip(ids, data):
    v = Vocabulary(np.array(ids, dtype=np.int64))
    assert len(v) == len(ids)
    assert v.index(ids).tolist() == list(range(len(ids)))
    if ids:
        picks = data.draw(st.lists(st.sampled_from(ids), max_size=20))
        idx = v.index(np.array(picks, dtype=np.int64))
        assert v.ids[idx].tolist() == picks
        assert v.index([str(p) for p in picks]).tolist() == idx.tolist()
        outside = data.draw(st.integers(-2**63, 2**63 - 1).filter(lambda x: x not in set(ids)))
        assert v.index([outside], missing="ignore").tolist() == [-1]
        with pytest.raises(KeyError):
            v.index([outside])
    assert Vocabulary(v.ids.copy()) == v


@settings(max_examples=60, deadline=None)
@given(ids=str_ids, data=st.data())
def test_str_round_trip(ids, data):
    v = Vocabulary(np.array(ids, dtype=object))
    assert len(v) == len(ids)
    assert v.ids.tolist() == ids
    assert v.index(ids).tolist() == list(range(len(ids)))
    if ids:
        picks = data.draw(st.lists(st.sampled_from(ids), max_size=20))
        assert v.ids[v.index(picks)].tolist() == picks
        outside = data.draw(st.text(max_size=9).filter(lambda s: s not in set(ids)
                                                       and "\x00" not in s))
        assert v.index([outside], missing="ignore").tolist() == [-1]


def test_a_vocabulary_reads_as_the_sequence_of_its_ids():
    v = Vocabulary(np.array([30, 10, 20]))
    assert list(v) == [30, 10, 20] and all(type(i) is int for i in v)
    assert v[0] == 30 and type(v[0]) is int and v[-1] == 20
    assert v[1:].tolist() == [10, 20] and v[np.array([2, 0])].tolist() == [20, 30]
    assert 10 in v and "10" in v and 10.0 in v and 11 not in v and "x" not in v
    assert [1, 2] not in v
    np.testing.assert_array_equal(np.asarray(v), [30, 10, 20])
    s = Vocabulary(["b", "a"])
    assert list(s) == ["b", "a"] and s[1] == "a" and type(s[1]) is str
    assert "a" in s and "c" not in s
    with pytest.raises(IndexError):
        v[3]


def test_a_models_id_maps_are_sequences(tmp_path):
    from npcf import AutoEncoder

    from helpers import tiny_ratings
    X = tiny_ratings()
    items = Vocabulary(np.arange(X.shape[1]) * 10 + 5)
    AutoEncoder(layers=(4,), n_epochs=1).fit(X, items=items).save(tmp_path / "m")
    m = AutoEncoder.load(tmp_path / "m" / "model.npz")
    assert list(m.items) == [i * 10 + 5 for i in range(X.shape[1])]
    assert 15 in m.items and m.items[1] == 15
