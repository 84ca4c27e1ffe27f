"""Tests for npcf.data.source: load_dataset and given splits (--train/--test)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.data.source import given_split, load_dataset, load_ratings
from npcf.errors import DataError

BASE = "1\t10\t4\t100\n1\t20\t3\t101\n2\t10\t5\t102\n3\t30\t1\t103\n2\t30\t2\t104\n"
TEST = "1\t30\t5\t200\n2\t20\t4\t201\n9\t10\t3\t202\n9\t500\t2\t203\n"   # user 9, item 500: new


def entries_raw(m, users, items) -> dict:
    coo = sp.csr_matrix(m).tocoo()
    return {(users.ids[r].item(), items.ids[c].item()): float(v)
            for r, c, v in zip(coo.row, coo.col, coo.data)}


@pytest.fixture
def u1(tmp_path):
    (tmp_path / "u1.base").write_text(BASE)
    (tmp_path / "u1.test").write_text(TEST)
    return tmp_path / "u1.base", tmp_path / "u1.test"


def test_given_split_shares_one_id_map(u1):
    base, test = u1
    ds = load_dataset(train_file=base, test_file=test)
    assert ds.users.ids.tolist() == [1, 2, 3, 9]
    assert ds.items.ids.tolist() == [10, 20, 30, 500]
    s = ds.split
    for p in s.parts().values():
        assert p.shape == (4, 4) and p.dtype == np.float32
    assert entries_raw(s.train, ds.users, ds.items) == {
        (1, 10): 4, (1, 20): 3, (2, 10): 5, (3, 30): 1, (2, 30): 2}
    assert entries_raw(s.test, ds.users, ds.items) == {
        (1, 30): 5, (2, 20): 4, (9, 10): 3, (9, 500): 2}
    assert entries_raw(s.test_input, ds.users, ds.items) == entries_raw(s.train, ds.users,
                                                                        ds.items)
    # ids only in the test file are mapped too, with an empty training row / column
    u9, i500 = ds.users.index([9])[0], ds.items.index([500])[0]
    assert s.train[u9].nnz == 0 and s.train[:, i500].nnz == 0
    assert s.test[u9, i500] == 2
    assert ds.stats["n_ratings"] == 9 and ds.stats["n_users"] == 4
    assert ds.stats["parts"] == {"train": 5, "test": 4, "test_input": 5}
    assert ds.stats["split"]["kind"] == "given"
    assert ds.scale == (1.0, 5.0)


def test_given_split_validation(u1):
    base, test = u1
    ds = given_split(base, test, validation_size=0.4, seed=1)
    s = ds.split
    train, val = s.train.todok(), s.validation.todok()
    assert val.nnz == 2 and train.nnz == 3
    assert not set(train.keys()) & set(val.keys())
    whole_train = dict((s.train + s.validation).todok().items())
    assert whole_train == dict(s.test_input.todok().items())
    assert (s.validation_input != s.train).nnz == 0


def test_given_split_string_and_int_ids(tmp_path):
    (tmp_path / "a.txt").write_text("user;item;score\nann;x;3\nbob;y;4\n")
    (tmp_path / "b.txt").write_text("user;item;score\n7;x;1\n")
    ds = given_split(tmp_path / "a.txt", tmp_path / "b.txt")
    assert ds.users.ids.tolist() == ["7", "ann", "bob"]
    assert entries_raw(ds.split.test, ds.users, ds.items) == {("7", "x"): 1.0}


def test_given_split_errors(u1, tmp_path):
    base, _ = u1
    with pytest.raises(DataError, match="--train and --test must be given together"):
        load_dataset(train_file=base)
    (tmp_path / "overlap.test").write_text("1\t10\t2\t300\n9\t10\t3\t301\n")
    with pytest.raises(DataError, match="1 \\(user, movie\\) pairs are in both files") as info:
        given_split(base, tmp_path / "overlap.test")
    assert info.value.path == str(tmp_path / "overlap.test")
    (tmp_path / "bad.test").write_text("1\t30\t5\t200\n2\t20\tx\t201\n")
    with pytest.raises(DataError) as info:
        given_split(base, tmp_path / "bad.test")
    assert info.value.line == 2 and info.value.path == str(tmp_path / "bad.test")


def test_load_dataset_from_file_with_movies(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{(u + i) % 9 / 2 + 0.5},{u * 100 + i}\n" for u in range(1, 21)
        for i in range(1, 16) if (u * i) % 3))
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f'{i},"Film, {i} (2000)",Drama\n' for i in range(1, 16)))
    ds = load_dataset(tmp_path / "ratings.csv", split="user", test_size=0.2, seed=2)
    assert ds.movies is not None and ds.movies.loc[3, "title"] == "Film, 3 (2000)"
    st = ds.stats
    assert st["n_ratings"] == ds.split.train.nnz + ds.split.test.nnz
    assert st["split"] == {"kind": "user", "test_size": 0.2, "seed": 2, "validation_size": 0.0}
    assert st["scale"] == [0.5, 5.0] and st["source"] == str(tmp_path / "ratings.csv")


def test_load_ratings_errors(tmp_path):
    with pytest.raises(DataError, match="not a prepared data set"):
        load_ratings(tmp_path)
    with pytest.raises(DataError, match="no such file, directory or dataset name"):
        load_ratings(tmp_path / "missing.csv")
    import os
    os.mkfifo(tmp_path / "pipe")             # `--data <(zcat ratings.csv.gz)` is a pipe
    with pytest.raises(DataError, match="pipe: not a regular file.*write it to a file"):
        load_ratings(tmp_path / "pipe")


def test_named_dataset_from_the_cache_offline(tmp_path, monkeypatch):
    """`--data ml-100k` resolves through the download cache; a zip put there by hand
    (verified by its SHA-256) works with no network."""
    import hashlib
    import zipfile

    from npcf.data import download, load_dataset

    cache = tmp_path / "cache"
    cache.mkdir()
    archive = cache / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{874965758 + u}\n"
                                             for u in range(1, 8) for i in range(1, 6)))
        z.writestr("ml-100k/u.item", "".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|"
                                             + "|".join("0" * 19) + "\n" for i in range(1, 6)))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    info = download.DATASETS["ml-100k"]
    monkeypatch.setitem(download.DATASETS, "ml-100k",
                        download.DatasetInfo(info.name, "http://127.0.0.1:9/closed.zip", digest,
                                             archive.stat().st_size, info.ratings, info.movies,
                                             info.description))
    monkeypatch.setenv("NPCF_DATA", str(cache))
    ds = load_dataset("ml-100k", seed=0)
    assert ds.stats["n_users"] == 7 and ds.stats["n_items"] == 5 and ds.stats["n_ratings"] == 35
    assert ds.movies.loc[3, "title"] == "Film 3 (1995)"
