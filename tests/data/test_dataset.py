"""Tests for npcf.data.dataset: save_prepared/load_prepared round trip, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from npcf.data.dataset import Dataset, is_prepared, load_prepared, save_prepared
from npcf.data.ratings import build_ratings
from npcf.data.source import load_dataset
from npcf.data.splits import split_ratings
from npcf.errors import DataError


def assert_same_matrix(a, b):
    assert a.shape == b.shape and a.format == b.format == "csr"
    assert a.data.dtype == b.data.dtype == np.float32
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert a.data.tobytes() == b.data.tobytes()


def assert_same_dataset(a: Dataset, b: Dataset):
    assert set(a.split.parts()) == set(b.split.parts())
    for name, part in a.split.parts().items():
        assert_same_matrix(part, getattr(b.split, name))
    assert a.users == b.users and a.items == b.items
    assert a.users.ids.dtype == b.users.ids.dtype and a.items.ids.dtype == b.items.ids.dtype
    assert a.stats == b.stats
    assert a.split.params == b.split.params
    assert a.scale == b.scale
    if a.movies is None:
        assert b.movies is None
    else:
        pd.testing.assert_frame_equal(a.movies, b.movies)


@pytest.fixture
def ml_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, 41):
        for i in rng.choice(np.arange(1, 61), rng.integers(2, 15), replace=False):
            lines.append(f"{u * 7},{i},{rng.integers(1, 11) / 2},{rng.integers(10**9, 2 * 10**9)}")
    (src / "ratings.csv").write_text("\n".join(lines) + "\n")
    (src / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(
            f'{i},"Film {i}, The ({1950 + i})",{"Drama|Comedy" if i % 2 else ""}\n'
            for i in range(1, 61)) + '61,NA,(no genres listed)\n')
    return src


@pytest.mark.parametrize("kind, val", [("random", 0.0), ("user", 0.1), ("temporal", 0.1),
                                       ("users", 0.15)])
def test_round_trip(ml_dir, tmp_path, kind, val):
    ds = load_dataset(ml_dir / "ratings.csv", split=kind, test_size=0.2,
                      validation_size=val, seed=5)
    out = save_prepared(ds, tmp_path / "prep")
    assert ds.path == out and is_prepared(out)
    expected = {"train.npz", "test.npz", "test_input.npz", "users.csv", "items.csv",
                "movies.csv", "stats.json"}
    if val:
        expected |= {"validation.npz", "validation_input.npz"}
    assert {p.name for p in out.iterdir()} == expected          # no temporary files left
    back = load_prepared(out)
    assert back.path == out
    assert_same_dataset(ds, back)
    assert back.movies.loc[61, "title"] == "NA" and back.movies.loc[2, "genres"] == ""
    # load_dataset on a prepared directory returns it as saved, split options ignored
    again = load_dataset(out, split="random", test_size=0.5, seed=99)
    assert_same_dataset(ds, again)
    # saving the loaded copy gives identical files
    save_prepared(back, tmp_path / "prep2")
    for name in expected:
        assert (out / name).read_bytes() == (tmp_path / "prep2" / name).read_bytes(), name


@pytest.mark.parametrize("ids", [
    ["alice", "bob", "NA", "null", "1.50", "2.0", "007", " spaced ", "comma,id", 'quo"te', ""],
    [5, -3, 0, 2**62, 2**63 - 1, -2**63],
    ["9223372036854775808", "1"],
], ids=["strings", "int64 extremes", "int-like beyond int64"])
def test_round_trip_ids(tmp_path, ids):
    n = len(ids)
    r = build_ratings(np.array(ids * 2, dtype=object if isinstance(ids[0], str) else np.int64),
                      np.array([f"i{k}" for k in range(2 * n)]),
                      np.linspace(1, 5, 2 * n))
    s = split_ratings(r, "random", 0.5, seed=0)
    ds = Dataset(s, r.users, r.items, {"n_users": n, "note": "x", "split": s.params})
    back = load_prepared(save_prepared(ds, tmp_path / "p"))
    assert_same_dataset(ds, back)
    assert back.users.ids.tolist() == r.users.ids.tolist()


def test_stats_json_content(ml_dir, tmp_path):
    ds = load_dataset(ml_dir / "ratings.csv", split="random", test_size=0.25, seed=1)
    out = save_prepared(ds, tmp_path / "p")
    stats = json.loads((out / "stats.json").read_text())
    n = len((ml_dir / "ratings.csv").read_text().splitlines()) - 1
    assert stats["n_ratings"] == n
    assert stats["parts"]["train"] + stats["parts"]["test"] == n
    assert stats["parts"]["test_input"] == stats["parts"]["train"]
    assert stats["n_users"] == 40 and stats["scale"] == [0.5, 5.0]
    assert stats["split"] == {"kind": "random", "test_size": 0.25, "seed": 1,
                              "validation_size": 0.0}
    users = pd.read_csv(out / "users.csv")
    assert users["id"].tolist() == [7 * u for u in range(1, 41)]


def test_load_errors(ml_dir, tmp_path):
    with pytest.raises(DataError, match="not a prepared data directory"):
        load_prepared(tmp_path)
    ds = load_dataset(ml_dir / "ratings.csv", seed=0)
    out = save_prepared(ds, tmp_path / "p")
    (out / "test.npz").unlink()
    with pytest.raises(DataError, match="missing test.npz"):
        load_prepared(out)
    out = save_prepared(ds, tmp_path / "q")
    sp.save_npz(out / "train.npz", sp.csr_matrix((3, 3), dtype=np.float32))
    with pytest.raises(DataError, match="does not match the id maps") as info:
        load_prepared(out)
    assert info.value.path == str(out / "train.npz")
    out = save_prepared(ds, tmp_path / "r")
    (out / "users.csv").write_text("index,id\n0,1\n5,2\n")
    with pytest.raises(DataError, match="index column is not 0..n-1"):
        load_prepared(out)
    (out / "users.csv").write_text("nothing\n1\n")
    with pytest.raises(DataError, match="cannot read id map"):
        load_prepared(out)
    out = save_prepared(ds, tmp_path / "s")
    (out / "stats.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        load_prepared(out)
    out = save_prepared(ds, tmp_path / "t")
    (out / "test.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt or not a sparse matrix"):
        load_prepared(out)


def test_user_row_keeps_negative_ratings(tmp_path):
    from npcf.data import load_dataset
    rng = np.random.default_rng(0)
    scale = [r for r in range(-10, 11) if r]              # 0 is 'not rated', never a rating
    lines = ["userId,movieId,rating"] + [f"{u},{m},{rng.choice(scale)}" for u in range(1, 41)
                                         for m in rng.choice(60, 20, replace=False) + 1]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(tmp_path / "r.csv"), scale=(-10, 10))
    for user in (1, 7, 40):
        want = {int(line.split(",")[1]): float(line.split(",")[2]) for line in lines[1:]
                if int(line.split(",")[0]) == user}
        row, held = ds.user_row(user), ds.split.test[ds.users.index([user])[0]]
        got = dict(zip(ds.items.ids[row.indices].tolist(), row.data.tolist()))
        assert held.nnz and got == want          # the held-out test ratings are known too
        assert min(got.values()) < 0
    known = ds.known_ratings()
    assert known.nnz == len(lines) - 1 and known[ds.users.index([7])[0]].nnz == 20


def test_rating_range_is_the_scale_else_the_observed_range_of_the_whole_file(tmp_path):
    """Relevance thresholds are relative to it: a delimited file (no declared scale) is
    judged like the same ratings in MovieLens format, and a 1-100 set by >= 80, not 4;
    a maximum that only the test part holds is in it (the file's range, not the part's)."""
    from npcf.evaluation.metrics import default_threshold
    body = "".join(f"{u},{i},{(u * 7 + i * 3) % 99 + 1}\n" for u in range(30) for i in range(20))
    (tmp_path / "r.csv").write_text("user,item,score\n" + body + "0,19,100\n")
    ds = load_dataset(tmp_path / "r.csv", test_size=0.2, seed=0)
    assert ds.scale is None
    assert ds.rating_range() == (1.0, 100.0)
    assert default_threshold(ds.rating_range()) == pytest.approx(80.0)
    save_prepared(ds, tmp_path / "prep")
    assert load_prepared(tmp_path / "prep").rating_range() == (1.0, 100.0)
    no_stats = Dataset(ds.split, ds.users, ds.items, {})      # stats lacking the range
    train = ds.split.train.data
    assert no_stats.rating_range() == (float(train.min()), float(train.max()))
    declared = load_dataset(tmp_path / "r.csv", test_size=0.2, seed=0, scale=(1, 100))
    assert declared.rating_range() == (1.0, 100.0)
    assert default_threshold(declared.rating_range()) == 80.0
    body = "".join(f"{u},{i},4\n" for u in range(30) for i in range(20))
    (tmp_path / "c.csv").write_text("user,item,score\n" + body)     # one value: no range
    assert load_dataset(tmp_path / "c.csv", test_size=0.2, seed=0).rating_range() is None


def test_a_held_out_validation_users_fold_in_ratings_are_known(ml_dir):
    """--split users: a validation user's fold-in ratings live only in validation_input;
    recommend --user, serve and batch-recommend started from the held-out 20% alone and
    recommended movies the user had rated."""
    ds = load_dataset(str(ml_dir / "ratings.csv"), split="users", test_size=0.2,
                      validation_size=0.2, seed=0)
    s = ds.split
    assert s.validation_input is not None and s.validation_input.nnz
    everything = sum(p for p in (s.train, s.validation, s.validation_input, s.test_input,
                                 s.test))
    assert_same_matrix(ds.known_ratings(), sp.csr_matrix(everything))
    user = int(np.flatnonzero(np.diff(s.validation_input.indptr))[0])
    row = ds.user_row(ds.users.ids[user])
    assert row.nnz == s.validation_input[user].nnz + s.validation[user].nnz


def test_an_unreadable_part_is_named_as_unreadable_not_corrupt(ml_dir, tmp_path, monkeypatch):
    """'corrupt ...; prepare the data again' invited deleting good files."""
    out = save_prepared(load_dataset(ml_dir / "ratings.csv", test_size=0.2, seed=5),
                        tmp_path / "prep")

    import npcf.data.dataset as dataset

    def denied(f, *a, **k):
        raise PermissionError(13, "Permission denied", str(f))
    real_open = open                # (root reads any file: the denial is simulated)
    monkeypatch.setattr(dataset, "open", lambda f, *a, **k: denied(f)
                        if str(f).endswith(".npz") else real_open(f, *a, **k), raising=False)
    with pytest.raises(PermissionError) as err:
        load_prepared(out)
    assert err.value.filename.endswith(".npz")
