"""Tests for npcf.data.readers: every format, format detection, movies files, the real
MovieLens-small file, and bad input (DataError naming FILE:LINE)."""
from __future__ import annotations

import csv
import math
import re
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npcf.data.readers import detect_format, read_movies, read_ratings, resolve_format
from npcf.errors import DataError
from npcf.utils.sparse import entry_rows

from helpers import as_dict, ts_dict

ML_HEADER = "userId,movieId,rating,timestamp\n"


def write(folder: Path, name: str, content) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def check_csr(r):
    m = r.matrix
    assert m.format == "csr" and m.dtype == np.float32
    assert m.has_sorted_indices
    for u in range(m.shape[0]):
        cols = m.indices[m.indptr[u]:m.indptr[u + 1]]
        assert np.all(np.diff(cols) > 0)
    if r.timestamps is not None:
        assert r.timestamps.dtype == np.int64 and r.timestamps.shape == m.data.shape


# ----------------------------------------------------------------- well-formed files

def test_movielens_csv(tmp_path):
    p = write(tmp_path, "ratings.csv", ML_HEADER +
              "3,20,4.5,1000\n1,10,0.5,1001\n1,30,5.0,1002\n3,10,2,999\n")
    assert detect_format(p).name == "movielens-csv"
    r = read_ratings(p)
    check_csr(r)
    assert r.shape == (2, 3)
    assert r.users.ids.tolist() == [1, 3] and r.items.ids.tolist() == [10, 20, 30]
    assert r.users.ids.dtype == np.int64 and r.items.ids.dtype == np.int64
    assert as_dict(r) == {(3, 20): 4.5, (1, 10): 0.5, (1, 30): 5.0, (3, 10): 2.0}
    assert ts_dict(r) == {(3, 20): 1000, (1, 10): 1001, (1, 30): 1002, (3, 10): 999}
    assert r.scale == (0.5, 5.0) and r.duplicates_resolved == 0
    assert r.source == str(p)
    # the Vocabulary maps raw ids to rows/columns
    u, i = r.users.index([3])[0], r.items.index([20])[0]
    assert r.matrix[u, i] == pytest.approx(4.5)


def test_movielens_csv_crlf_and_blank_lines(tmp_path):
    p = write(tmp_path, "ratings.csv", (ML_HEADER + "1,10,4.0,5\n\n2,10,3.5,6\n\n")
              .replace("\n", "\r\n"))
    assert as_dict(read_ratings(p)) == {(1, 10): 4.0, (2, 10): 3.5}


def test_movielens_dat(tmp_path):
    p = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                       "2::1193::1::978298413\n")
    fmt = detect_format(p)
    assert fmt.name == "movielens-dat" and fmt.scale == (1.0, 5.0)
    r = read_ratings(p)
    check_csr(r)
    assert as_dict(r) == {(1, 1193): 5.0, (1, 661): 3.0, (2, 1193): 1.0}
    assert ts_dict(r)[(2, 1193)] == 978298413
    assert r.scale == (1.0, 5.0)
    # explicit format gives the same result
    assert as_dict(read_ratings(p, format="movielens-dat")) == as_dict(r)


def test_ml100k_u_data(tmp_path):
    p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                  "22\t377\t1\t878887116\n196\t302\t5\t881250950\n")
    fmt = detect_format(p)
    assert fmt.name == "ml-100k" and not fmt.header and fmt.sep == "\t"
    r = read_ratings(p)
    check_csr(r)
    assert r.users.ids.tolist() == [22, 186, 196] and r.items.ids.tolist() == [242, 302, 377]
    assert as_dict(r) == {(196, 242): 3.0, (186, 302): 3.0, (22, 377): 1.0, (196, 302): 5.0}
    assert ts_dict(r)[(196, 302)] == 881250950
    assert r.scale == (1.0, 5.0)


def test_ml100k_three_columns_has_no_timestamps(tmp_path):
    p = write(tmp_path, "u.data", "1\t10\t4\n2\t10\t3\n")
    r = read_ratings(p)
    assert r.timestamps is None
    assert as_dict(r) == {(1, 10): 4.0, (2, 10): 3.0}


def test_delimited_auto_detects_named_columns(tmp_path):
    p = write(tmp_path, "scores.txt", "user;item;score;time\nalice;m1;4.5;100\n"
                                      "bob;m2;3;200\ncarol;m1;1.5;150\n")
    fmt = detect_format(p)
    assert fmt.name == "delimited" and fmt.sep == ";" and fmt.header
    assert fmt.columns == ("user", "item", "score", "time")
    assert fmt.scale is None
    r = read_ratings(p)
    check_csr(r)
    assert r.users.ids.dtype.kind == "U" and r.items.ids.dtype.kind == "U"
    assert r.users.ids.tolist() == ["alice", "bob", "carol"]
    assert r.items.ids.tolist() == ["m1", "m2"]
    assert as_dict(r) == {("alice", "m1"): 4.5, ("bob", "m2"): 3.0, ("carol", "m1"): 1.5}
    assert ts_dict(r)[("carol", "m1")] == 150
    assert r.users.index(["bob"]).tolist() == [1]


def test_delimited_explicit_columns(tmp_path):
    # column names no heuristic knows: auto-detect must fail, columns= must work
    p = write(tmp_path, "scores.txt", "who;what;grade;moment\nalice;m1;4.5;100\n"
                                      "bob;m2;3;200\n")
    with pytest.raises(DataError, match=r"missing user, item, rating column") as info:
        read_ratings(p)
    assert info.value.line == 1
    r = read_ratings(p, columns=("who", "what", "grade", "moment"))
    assert as_dict(r) == {("alice", "m1"): 4.5, ("bob", "m2"): 3.0}
    # a headerless file under another --sep: one field, not a "header" lacking columns
    plain = write(tmp_path, "plain.csv", "1,54,4,1\n2,54,3,1\n")
    with pytest.raises(DataError, match=r"plain.csv:1: the first line '1,54,4,1' has 1 field "
                                        r"at --sep ';': wrong delimiter\?"):
        read_ratings(plain, sep=";")
    pairs = write(tmp_path, "pairs.csv", "a;b\n1;2\n")
    with pytest.raises(DataError, match=r"has 2 fields .*needs user, item and rating columns"):
        read_ratings(pairs)
    assert ts_dict(r) == {("alice", "m1"): 100, ("bob", "m2"): 200}
    # three columns: no timestamps; explicit format and separator
    r3 = read_ratings(p, format="delimited", sep=";", columns=("who", "what", "grade"))
    assert r3.timestamps is None
    assert as_dict(r3) == as_dict(r)


def test_delimited_column_order_and_extra_columns(tmp_path):
    p = write(tmp_path, "r.csv", "comment,score,item_id,user_id\nhi,4,7,1\nyo,2,8,1\n")
    r = read_ratings(p)
    assert as_dict(r) == {(1, 7): 4.0, (1, 8): 2.0}
    assert r.timestamps is None


def test_delimited_numeric_string_ids_become_integers(tmp_path):
    p = write(tmp_path, "r.txt", "user|item|rating\n42|7|3\n 5|07|1\n")
    r = read_ratings(p)
    assert r.users.ids.dtype == np.int64 and r.users.ids.tolist() == [5, 42]
    assert r.items.ids.tolist() == ["07", "7"]   # "07" is not plain: the items stay text
    assert r.duplicates_resolved == 0
    assert r.users.index(["42"]).tolist() == [1]   # typed ids are coerced


def test_delimited_string_ids_that_look_like_missing_values(tmp_path):
    # "NA", "null", "nan" are ids here, not missing values
    p = write(tmp_path, "r.txt", "user;item;score\nNA;null;4\nnan;m;2\nb;null;3\n")
    r = read_ratings(p)
    assert as_dict(r) == {("NA", "null"): 4.0, ("nan", "m"): 2.0, ("b", "null"): 3.0}


def test_ids_that_differ_only_by_spaces_stay_apart(tmp_path):
    """Dropping surrounding spaces must never merge two ids (and their ratings)."""
    p = write(tmp_path, "r.csv", 'user,item,score\n"a",x,5\n" a",x,1\n"a",y,4\n" a",y,2\n')
    r = read_ratings(p)
    assert as_dict(r) == {("a", "x"): 5.0, (" a", "x"): 1.0, ("a", "y"): 4.0, (" a", "y"): 2.0}
    assert r.duplicates_resolved == 0
    p = write(tmp_path, "s.csv", "user,item,score\n a,x,5\nb , y,1\n")   # no clash: stripped
    assert as_dict(read_ratings(p)) == {("a", "x"): 5.0, ("b", "y"): 1.0}
    p = write(tmp_path, "t.csv", "user,item,score\n1,5,4\n2, 5,3\n2,7,1\n")  # integer ids: one
    r = read_ratings(p)
    assert r.items.ids.dtype == np.int64 and as_dict(r) == {(1, 5): 4.0, (2, 5): 3.0, (2, 7): 1.0}
    p = write(tmp_path, "u.csv", "user,item,score\n1,12,4\n1,1\u0662,3\n")   # '1٢' is not 12
    assert as_dict(read_ratings(p)) == {(1, "12"): 4.0, (1, "1\u0662"): 3.0}


def test_delimited_quoted_id_with_separator(tmp_path):
    p = write(tmp_path, "r.csv", 'user,item,score\n"Doe, Jane",m1,4\nbob,m1,2\n')
    assert as_dict(read_ratings(p)) == {("Doe, Jane", "m1"): 4.0, ("bob", "m1"): 2.0}


def test_headerless_comma_file_is_generic_delimited(tmp_path):
    p = write(tmp_path, "r.csv", "1,10,4,100\n2,10,9,200\n")
    fmt = detect_format(p)
    assert fmt.name == "delimited" and not fmt.header and fmt.scale is None
    # generic files have no default scale: 9 is allowed ...
    assert as_dict(read_ratings(p)) == {(1, 10): 4.0, (2, 10): 9.0}
    # ... unless a scale is given
    with pytest.raises(DataError, match="outside the scale 1-5") as info:
        read_ratings(p, scale=(1, 5))
    assert info.value.line == 2
    assert "scale=(MIN, MAX) in the library" in str(info.value)   # not only the CLI's flag


def test_explicit_format_overrides_detection(tmp_path):
    # a tab file named like a csv: auto-detect sees ml-100k
    p = write(tmp_path, "ratings.csv", "1\t10\t4\t100\n2\t10\t3\t200\n")
    assert detect_format(p).name == "ml-100k"
    assert resolve_format(p, "ml-100k").name == "ml-100k"
    assert as_dict(read_ratings(p, format="ml-100k")) == {(1, 10): 4.0, (2, 10): 3.0}
    # forcing MovieLens CSV on it fails at the header line, as a DataError
    with pytest.raises(DataError, match="missing column 'userId'") as info:
        read_ratings(p, format="movielens-csv")
    assert info.value.line == 1
    # a comma file forced to ml-100k: wrong delimiter
    q = write(tmp_path, "u.data", "1,10,4,100\n")
    assert read_ratings(q).shape == (1, 1)
    with pytest.raises(DataError, match="wrong delimiter") as info:
        read_ratings(q, format="ml-100k")
    assert info.value.line == 1
    # the scale follows the forced format: 0.5 is fine for movielens-csv, not for ml-100k
    c = write(tmp_path, "half.csv", ML_HEADER + "1,10,0.5,1\n")
    assert as_dict(read_ratings(c)) == {(1, 10): 0.5}
    d = write(tmp_path, "half.dat", "1::10::0.5::1\n")
    with pytest.raises(DataError, match="outside the scale 1-5"):
        read_ratings(d)
    assert as_dict(read_ratings(d, scale=(0.5, 5))) == {(1, 10): 0.5}


def test_unknown_format_and_missing_file(tmp_path):
    p = write(tmp_path, "ratings.csv", ML_HEADER + "1,1,1,1\n")
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_ratings(p, format="xml")
    with pytest.raises(DataError, match="no such file"):
        read_ratings(tmp_path / "nope.csv")


# ----------------------------------------------------------------------- movies

def test_movies_csv_quoted_titles(tmp_path):
    p = write(tmp_path, "movies.csv",
              "movieId,title,genres\n"
              '11,"American President, The (1995)",Comedy|Drama|Romance\n'
              '1,Toy Story (1995),Adventure|Animation\n'
              '7,"Say ""Hello"", World (2001)",(no genres listed)\n')
    m = read_movies(p)
    assert m.index.name == "movieId" and m.index.dtype == np.int64
    assert list(m.columns) == ["title", "genres"]
    assert m.loc[11, "title"] == "American President, The (1995)"
    assert m.loc[11, "genres"] == "Comedy|Drama|Romance"
    assert m.loc[7, "title"] == 'Say "Hello", World (2001)'
    assert m.loc[1, "genres"] == "Adventure|Animation"
    assert len(m) == 3


def test_movies_dat_latin1(tmp_path):
    text = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n"
    p = write(tmp_path, "movies.dat", text.encode("latin-1"))
    m = read_movies(p)
    assert m.loc[2, "title"] == "Amélie (2001)"
    assert m.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert m.index.tolist() == [1, 2]


def test_u_item_genre_flags(tmp_path):
    flags1 = [0, 0, 0, 1, 1, 1] + [0] * 13          # Animation, Children's, Comedy
    flags2 = [0, 1] + [0] * 14 + [1, 0, 0]           # Action, Thriller
    line1 = "1|Toy Story (1995)|01-Jan-1995||http://x/Toy|" + "|".join(map(str, flags1))
    line2 = "2|GoldenEye (1995)|01-Jan-1995||http://x/Gold|" + "|".join(map(str, flags2))
    line3 = "3|Café (1996)|01-Jan-1996||http://x/C|" + "|".join(["0"] * 19)
    p = write(tmp_path, "u.item", (line1 + "\n" + line2 + "\n" + line3 + "\n").encode("latin-1"))
    m = read_movies(p)
    assert m.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert m.loc[2, "genres"] == "Action|Thriller"
    assert m.loc[3, "genres"] == "" and m.loc[3, "title"] == "Café (1996)"
    assert m.loc[2, "title"] == "GoldenEye (1995)"


def test_u_item_wrong_field_count(tmp_path):
    p = write(tmp_path, "u.item", "1|Toy Story (1995)|01-Jan-1995||http://x|0|1|0\n")
    with pytest.raises(DataError, match="u.item needs 24 fields, found 8"):
        read_movies(p)


def test_movies_missing_title_column(tmp_path):
    p = write(tmp_path, "movies.csv", "movieId,name\n1,x\n")
    with pytest.raises(DataError, match="missing column 'title'"):
        read_movies(p)


# -------------------------------------------------------------------- real data

def test_real_movielens_small(movies_small, movies_small_ratings):
    r = movies_small_ratings
    assert r.shape == (671, 9066)
    assert r.matrix.nnz == 100_004
    assert r.duplicates_resolved == 0
    assert r.scale == (0.5, 5.0)
    check_csr(r)
    # independent reference: the csv module
    with open(movies_small / "ratings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 100_004
    first = rows[0]
    assert (first["userId"], first["movieId"], first["rating"]) == ("1", "31", "2.5")
    u, i = r.users.index([1])[0], r.items.index([31])[0]
    assert r.matrix[u, i] == pytest.approx(2.5)
    last = rows[-1]
    u, i = r.users.index([int(last["userId"])])[0], r.items.index([int(last["movieId"])])[0]
    assert r.matrix[u, i] == pytest.approx(float(last["rating"]))
    # every entry and every timestamp (no duplicates in this file: one row, one entry)
    users = np.array([int(x["userId"]) for x in rows])
    items = np.array([int(x["movieId"]) for x in rows])
    uidx, iidx = r.users.index(users), r.items.index(items)
    got = np.asarray(r.matrix[uidx, iidx]).ravel()
    assert np.array_equal(got, np.array([float(x["rating"]) for x in rows], dtype=np.float32))
    pos = np.full(r.shape, -1, dtype=np.int64)          # position in matrix.data
    m = r.matrix
    pos[entry_rows(m), m.indices] = np.arange(m.nnz)
    assert np.array_equal(r.timestamps[pos[uidx, iidx]],
                          np.array([int(x["timestamp"]) for x in rows]))
    assert len(np.unique(users)) == 671 and len(np.unique(items)) == 9066


def test_real_movies_csv(movies_small):
    m = read_movies(movies_small / "movies.csv")
    with open(movies_small / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(m) == len(rows)
    assert m.loc[11, "title"] == "American President, The (1995)"
    assert m.loc[1, "title"] == "Toy Story (1995)"
    assert all(m.loc[int(x["movieId"]), "title"] == x["title"] for x in rows[::97])


# -------------------------------------------------------------------- bad input

BAD = [
    # (id, file name, content, read kwargs, line, problem regex)
    ("non-numeric rating", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,abc,2\n", {}, 3,
     r"rating 'abc' is not a number"),
    ("full-width digit rating", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,\uff14,2\n", {}, 3,
     r"rating '\uff14' is not a number"),
    ("Arabic-Indic digit id", "ratings.csv", ML_HEADER + "1,10,4.0,1\n\u0663,10,3,2\n", {}, 3,
     r"user id '\u0663' is not an integer"),
    ("NaN rating", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,NaN,2\n", {}, 3,
     r"rating 'NaN' is not finite"),
    ("inf rating", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,3,2\n3,10,inf,3\n", {}, 4,
     r"rating 'inf' is not finite"),
    ("NaN rating in delimited file", "r.txt", "user;item;score\na;b;3\nc;d;nan\n", {}, 3,
     r"rating 'nan' is not finite"),
    ("empty rating in delimited file", "r.txt", "user;item;score\na;b;3\nc;d;\n", {}, 3,
     r"rating '' is not a number"),
    ("missing column", "ratings.csv", "userId,movieId,timestamp\n1,10,100\n", {}, 1,
     r"missing rating column"),
    ("wrong delimiter in data", "ratings.csv", ML_HEADER + "1;10;4.0;1\n", {}, 2,
     r"too few fields: expected 4 fields, found 1; wrong delimiter\? \(expected ','\)"),
    ("no delimiter at all", "ratings.txt", "hello world\n1 2 3\n", {}, 1,
     r"cannot detect the delimiter"),
    ("wrong delimiter for ml-100k", "u.data", "1,10,4,100\n", {"format": "ml-100k"}, 1,
     r"wrong delimiter\? \(expected '\\t'\)"),
    ("rating above the scale", "ratings.csv", ML_HEADER + "1,10,4.0,1\n1,11,5.5,2\n", {}, 3,
     r"rating 5.5 outside the scale 0.5-5"),
    ("rating below the scale", "u.data", "1\t10\t4\t1\n1\t11\t3\t1\n2\t11\t0\t1\n", {}, 3,
     r"rating 0 outside the scale 1-5"),
    ("a rating of 0 (read as 'not rated')", "ratings.csv", ML_HEADER + "1,10,4.0,1\n1,11,0,2\n",
     {"scale": (0, 5)}, 3, r"rating 0: npcf reads a rating of 0 as 'not rated'"),
    ("a rating of 0, no scale", "r.txt", "user;item;score\na;b;3\nc;d;0.0\n", {}, 3,
     r"rating 0: .*shift the ratings"),
    ("negative rating, declared scale", "r.txt", "user;item;score\na;b;-1\n",
     {"scale": (0, 10)}, 2, r"rating -1 outside the scale 0-10"),
    ("truncated last line", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,3", {}, 3,
     r"truncated line: expected 4 fields, found 3"),
    ("truncated last line u.data", "u.data", "1\t10\t4\t1\n2\t1", {}, 2,
     r"truncated line: expected 4 fields, found 2"),
    ("too few fields mid-file", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,3\n3,1,1,1\n", {},
     3, r"too few fields: expected 4 fields, found 3"),
    ("too many fields", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,3,2,9\n3,1,1,1\n", {}, 3,
     r"too many fields: expected 4, found 5"),
    ("too many fields on first line", "ratings.csv", ML_HEADER + "1,10,4.0,1,9\n2,10,3,2\n",
     {}, 2, r"too many fields: expected 4, found 5"),
    ("too many fields u.data", "u.data", "1\t10\t4\t1\n2\t10\t3\t2\t7\n", {}, 2,
     r"too many fields: expected 4, found 5"),
    ("too many fields ratings.dat", "ratings.dat", "1::10::4::1\n2::10::3::2::7\n", {}, 2,
     r"too many fields: expected 4, found 5"),
    ("too many fields delimited", "r.txt", "user;item;score\na;b;3\nc;d;3;4\n", {}, 3,
     r"too many fields: expected 3, found 4"),
    ("non-integer user id", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2.5,10,3,2\n", {}, 3,
     r"user id '2.5' is not an integer"),
    ("non-integer item id in .dat", "ratings.dat", "1::10::4::1\n2::abc::3::2\n", {}, 2,
     r"item id 'abc' is not an integer"),
    ("non-integer item id in u.data", "u.data", "1\t10\t4\t1\n2\tx7\t3\t2\n", {}, 2,
     r"item id 'x7' is not an integer"),
    ("empty user id", "ratings.csv", ML_HEADER + "1,10,4.0,1\n,10,3,2\n", {}, 3,
     r"empty user id"),
    ("empty item id in delimited file", "r.txt", "user;item;score\na;;3\n", {}, 2,
     r"empty item id"),
    ("id out of range", "ratings.csv", ML_HEADER + "99999999999999999999,10,3,2\n", {}, 2,
     r"user id '99999999999999999999' is out of range"),
    ("non-integer timestamp", "ratings.csv", ML_HEADER + "1,10,4.0,1.5\n", {}, 2,
     r"timestamp '1.5' is not an integer"),
    ("date timestamp in delimited file", "r.txt",
     "user;item;score;time\na;b;3;100\na;c;3;2020-01-01\n", {}, 3,
     r"timestamp '2020-01-01' is not an integer"),
    ("missing timestamp in delimited file", "r.txt", "user;item;score;time\na;b;3;NA\n", {}, 2,
     r"timestamp 'NA' is not an integer"),
    ("blank lines still counted", "ratings.csv", ML_HEADER + "1,10,4.0,1\n\n\n2,10,x,2\n", {}, 5,
     r"rating 'x' is not a number"),
    ("underscore in rating", "ratings.csv", ML_HEADER + "1,10,4.0,1\n2,10,1_0,2\n", {}, 3,
     r"rating '1_0' is not a number"),
]


@pytest.mark.parametrize("name, content, kwargs, line, problem",
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_file_and_line(tmp_path, name, content, kwargs, line, problem):
    p = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_ratings(p, **kwargs)
    err = info.value
    assert err.path == str(p)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{p}:{line}: "), str(err)
    assert re.search(problem, err.problem), err.problem


def test_bad_line_far_beyond_the_first_thousand(tmp_path):
    good = "".join(f"{u}::{u % 50 + 1}::3::{u}\n" for u in range(1, 3000))
    p = write(tmp_path, "ratings.dat", good + "5000::1::4::1::extra\n" + "5001::1::4::1\n")
    with pytest.raises(DataError, match="too many fields") as info:
        read_ratings(p)
    assert info.value.line == 3000
    q = write(tmp_path, "ratings.csv", ML_HEADER + good.replace("::", ",") + "7,7,7,7\n")
    with pytest.raises(DataError, match="rating 7 outside the scale") as info:
        read_ratings(q)
    assert info.value.line == 3001


@pytest.mark.parametrize("content, problem", [
    ("", "file is empty"),
    ("\n\n  \n", "file is empty"),
    (ML_HEADER, r"no ratings in file \(header only\)"),
    ("user;item;score\n\n", r"no ratings in file \(header only\)"),
], ids=["empty", "blank lines only", "header only", "header and blank line"])
def test_empty_and_header_only(tmp_path, content, problem):
    p = write(tmp_path, "ratings.csv", content)
    with pytest.raises(DataError, match=problem) as info:
        read_ratings(p)
    assert info.value.path == str(p)
    assert str(info.value).startswith(f"{p}: ")


def test_not_utf8(tmp_path):
    p = write(tmp_path, "r.txt", b"user;item;score\n" + "José;m;4\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_ratings(p)


# ------------------------------------------------------------------- duplicates

def test_duplicates_latest_timestamp_wins(tmp_path):
    p = write(tmp_path, "ratings.csv", ML_HEADER +
              "1,10,4.0,300\n"      # latest for (1, 10), but first in the file
              "1,10,2.0,100\n"
              "2,10,1.0,50\n"
              "1,10,3.0,200\n"
              "2,10,5.0,60\n"       # latest for (2, 10), last in the file
              "1,20,2.5,10\n")
    r = read_ratings(p)
    assert as_dict(r) == {(1, 10): 4.0, (2, 10): 5.0, (1, 20): 2.5}
    assert ts_dict(r) == {(1, 10): 300, (2, 10): 60, (1, 20): 10}
    assert r.duplicates_resolved == 3
    assert r.matrix.nnz + r.duplicates_resolved == 6


def test_duplicates_timestamps_compared_as_numbers(tmp_path):
    # string ids: timestamps of different lengths must not compare as text ("99" > "100")
    p = write(tmp_path, "r.txt", "user;item;score;time\na;m;2;100\na;m;1;99\nb;m;3;9\nb;m;4;10\n")
    r = read_ratings(p)
    assert as_dict(r) == {("a", "m"): 2.0, ("b", "m"): 4.0}
    assert r.duplicates_resolved == 2


def test_duplicates_equal_timestamps_later_row_wins(tmp_path):
    p = write(tmp_path, "ratings.csv", ML_HEADER + "1,10,4.0,100\n1,10,2.0,100\n1,10,3.0,100\n")
    r = read_ratings(p)
    assert as_dict(r) == {(1, 10): 3.0}
    assert r.duplicates_resolved == 2


def test_duplicates_without_timestamps_later_row_wins(tmp_path):
    p = write(tmp_path, "u.data", "1\t10\t4\n2\t10\t1\n1\t10\t2\n1\t11\t5\n1\t10\t3\n2\t10\t5\n")
    r = read_ratings(p)
    assert r.timestamps is None
    assert as_dict(r) == {(1, 10): 3.0, (2, 10): 5.0, (1, 11): 5.0}
    assert r.duplicates_resolved == 3
    assert r.matrix.nnz + r.duplicates_resolved == 6


# ------------------------------------------------------------------- properties

def reference(rows, with_ts=True):
    """Last-wins dict: latest timestamp, ties (or no timestamps) -> later row."""
    best = {}
    for pos, (u, i, v, t) in enumerate(rows):
        key = (u, i)
        rank = (t if with_ts else 0, pos)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, v, t)
    return {k: v for k, (_, v, _) in best.items()}, {k: t for k, (_, _, t) in best.items()}


ids_int = st.integers(min_value=0, max_value=2**40)
half_stars = st.sampled_from([x / 2 for x in range(1, 11)])
timestamps = st.integers(min_value=0, max_value=2**40)
row = st.tuples(st.integers(1, 30), st.integers(1, 30), half_stars, st.integers(0, 50))
row_wide = st.tuples(ids_int, ids_int, half_stars, timestamps)
str_id = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1,
                 max_size=6).filter(lambda s: not re.fullmatch(r"[+-]?\d+", s))
row_str = st.tuples(str_id, str_id, half_stars, st.integers(0, 50))

FORMAT_WRITERS = {
    "ratings.csv": (ML_HEADER, ",", False),
    "ratings.dat": ("", "::", True),
    "u.data": ("", "\t", True),
    "r.txt": ("user;item;rating;timestamp\n", ";", False),
}
# explicit options, for files whose first line is damaged on purpose
EXPLICIT = {
    "ratings.csv": {"format": "movielens-csv"},
    "ratings.dat": {"format": "movielens-dat"},
    "u.data": {"format": "ml-100k"},
    "r.txt": {"format": "delimited", "sep": ";"},
}


def _fmt_rating(v):
    return str(int(v)) if v == int(v) else str(v)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(FORMAT_WRITERS)),
       rows=st.lists(st.one_of(row, row_wide), min_size=1, max_size=40),
       crlf=st.booleans(), final_newline=st.booleans())
def test_reader_matches_reference(scratch, name, rows, crlf, final_newline):
    header, sep, whole_stars = FORMAT_WRITERS[name]
    if whole_stars:        # ratings.dat / u.data are 1-5
        rows = [(u, i, float(max(1, math.ceil(v))), t) for u, i, v, t in rows]
    body = "\n".join(sep.join((str(u), str(i), _fmt_rating(v), str(t))) for u, i, v, t in rows)
    text = header + body + ("\n" if final_newline else "")
    if crlf:
        text = text.replace("\n", "\r\n")
    p = write(scratch, name, text)
    r = read_ratings(p)
    ref, ref_ts = reference(rows)
    assert as_dict(r) == ref
    assert ts_dict(r) == ref_ts
    assert r.matrix.nnz + r.duplicates_resolved == len(rows)
    assert r.users.ids.tolist() == sorted({u for u, *_ in rows})
    assert r.items.ids.tolist() == sorted({i for _, i, *_ in rows})


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(row_str, min_size=1, max_size=30), with_ts=st.booleans())
def test_reader_string_ids_match_reference(scratch, rows, with_ts):
    if with_ts:
        text = "user,item,rating,time\n" + "".join(f"{u},{i},{v},{t}\n" for u, i, v, t in rows)
    else:
        text = "item|user|score\n" + "".join(f"{i}|{u}|{v}\n" for u, i, v, t in rows)
    p = write(scratch, "r.txt", text)
    r = read_ratings(p)
    ref, ref_ts = reference(rows, with_ts)
    assert as_dict(r) == ref
    if with_ts:
        assert ts_dict(r) == ref_ts
    else:
        assert r.timestamps is None
    assert r.matrix.nnz + r.duplicates_resolved == len(rows)


BAD_VALUES = {
    # (pandas' int parser accepts integral floats such as "2.0" or "1e3" in id and
    # timestamp columns of MovieLens files; they are not listed as bad here)
    0: ["", "x", "1.5", "nan", "--1", "1 2"],                 # user id
    1: ["", "abc", "2.5", "0x10", "NA"],                       # item id
    2: ["", "abc", "nan", "NaN", "inf", "-inf", "9", "0", "5.01", "1_0", "4..0", "NA"],
    3: ["", "1.5", "ts", "NA", "99999999999999999999"],        # timestamp
}


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=30), data=st.data())
def test_one_bad_field_is_reported_at_its_line(scratch, rows, data):
    line_index = data.draw(st.integers(0, len(rows) - 1), label="bad row")
    col = data.draw(st.integers(0, 3), label="column")
    value = data.draw(st.sampled_from(BAD_VALUES[col]), label="value")
    lines = [[str(u), str(i), _fmt_rating(v), str(t)] for u, i, v, t in rows]
    lines[line_index][col] = value
    p = write(scratch, "ratings.csv", ML_HEADER + "".join(",".join(x) + "\n" for x in lines))
    with pytest.raises(DataError) as info:
        read_ratings(p)
    assert info.value.line == line_index + 2, str(info.value)
    assert info.value.path == str(p)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=20), data=st.data())
def test_wrong_field_count_is_reported_at_its_line(scratch, rows, data):
    name = data.draw(st.sampled_from(sorted(FORMAT_WRITERS)), label="format")
    header, sep, _ = FORMAT_WRITERS[name]
    rows = [(u, i, float(max(1, math.ceil(v))), t) for u, i, v, t in rows]
    lines = [[str(u), str(i), _fmt_rating(v), str(t)] for u, i, v, t in rows]
    k = data.draw(st.integers(0, len(rows) - 1), label="bad row")
    n = data.draw(st.sampled_from([1, 2, 3, 5, 6]), label="fields")
    lines[k] = (lines[k] + ["7", "8"])[:n]
    p = write(scratch, name, header + "".join(sep.join(x) + "\n" for x in lines))
    with pytest.raises(DataError, match="fields") as info:
        read_ratings(p, **EXPLICIT[name])
    assert info.value.line == k + 1 + (1 if header else 0), str(info.value)
    if k > 0:           # the first line intact: auto-detection finds the same line
        with pytest.raises(DataError, match="fields") as info:
            read_ratings(p)
        assert info.value.line == k + 1 + (1 if header else 0), str(info.value)


junk_text = st.text(alphabet=string.digits + ",;\t|:.-+ eEnaifNAxy_\"'\r\n\x00é", max_size=80)


@settings(max_examples=120, deadline=None)
@given(prefix=st.sampled_from(["", ML_HEADER, "user;item;score\n", "1::2::3::4\n", "1\t2\t3\n"]),
       body=junk_text, fmt=st.sampled_from(["auto", "auto", "movielens-csv", "movielens-dat",
                                            "ml-100k", "delimited"]))
def test_malformed_text_raises_only_data_error(scratch, prefix, body, fmt):
    p = write(scratch, "junk.txt", prefix + body)
    try:
        r = read_ratings(p, format=fmt)
    except DataError as err:
        assert str(err).startswith(str(p))
        return
    # accepted: then it must be a consistent rating matrix
    assert r.matrix.nnz >= 1
    assert np.isfinite(r.matrix.data).all()
    check_csr(r)


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=120))
def test_random_bytes_raise_only_data_error(scratch, content):
    p = write(scratch, "junk.bin", content)
    try:
        read_ratings(p)
    except DataError:
        pass


@pytest.mark.parametrize("columns", [("u", "i"), "u,i", ("u", "i", "r", "t", "x"),
                                     ("u", "u", "r"), ("u", "", "r"), 5, ("u", None, "r")])
def test_bad_columns_are_a_param_error_naming_them(tmp_path, columns):
    from npcf.data.readers import read_ratings
    from npcf.errors import ParamError
    f = tmp_path / "r.csv"
    f.write_text("u;i;r\n1;2;3\n")
    with pytest.raises(ParamError, match="columns"):
        read_ratings(f, sep=";", columns=columns)


def test_columns_as_a_comma_string(tmp_path):
    from npcf.data.readers import read_ratings
    f = tmp_path / "r.csv"
    f.write_text("u;i;r\n1;2;3\n2;2;4\n")
    assert read_ratings(f, sep=";", columns="u,i,r").matrix.nnz == 2


def test_ids_with_leading_zeros_stay_distinct_text(tmp_path):
    """``"007"`` and ``"7"`` are two users of a delimited file, kept as written; plain
    integers alone still become int64 ids."""
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n007,0010,4\n7,0010,3\n7,10,5\n+7,10,2\n")
    r = read_ratings(path)
    assert r.duplicates_resolved == 0 and r.matrix.nnz == 4
    assert sorted(r.users.ids.tolist()) == ["+7", "007", "7"]
    assert sorted(r.items.ids.tolist()) == ["0010", "10"]
    path.write_text("user,item,rating\n7,10,4\n-3,0,3\n")
    assert read_ratings(path).users.ids.dtype.kind == "i"


def test_an_empty_zip_says_it_holds_no_file(tmp_path):
    import zipfile

    from npcf.errors import DataError
    zipfile.ZipFile(tmp_path / "r.zip", "w").close()
    with pytest.raises(DataError, match="must hold one file, this one holds 0"):
        read_ratings(tmp_path / "r.zip")


def test_a_headerless_delimited_file_keeps_padded_ids_apart(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("007,1,5\n7,1,3\n7,2,4\n")
    r = read_ratings(path)
    assert sorted(r.users.ids.tolist()) == ["007", "7"] and r.matrix.nnz == 3
    path.write_text("7,1,5\n8,1,3\n")
    assert read_ratings(path).users.ids.dtype.kind == "i"


def test_a_headerless_file_with_text_ids_is_read_in_full(tmp_path):
    # the first line is data (a number where the rating goes), not a header: nothing dropped
    p = write(tmp_path, "r.csv", "alice,m1,5\nbob,m1,3\nbob,m2,4\n")
    fmt = detect_format(p)
    assert fmt.name == "delimited" and not fmt.header
    assert as_dict(read_ratings(p)) == {("alice", "m1"): 5.0, ("bob", "m1"): 3.0,
                                        ("bob", "m2"): 4.0}
    p = write(tmp_path, "t.tsv", "u1\tm1\t4.5\t100\nu2\tm1\t2\t200\n")
    assert as_dict(read_ratings(p)) == {("u1", "m1"): 4.5, ("u2", "m1"): 2.0}
    # naming its first line's values as columns would drop that rating: refused
    with pytest.raises(DataError, match="no header") as info:
        read_ratings(p, columns="u1,m1,4.5")
    assert info.value.line == 1
    # a header is still a header
    p = write(tmp_path, "h.csv", "user,item,rating\nalice,m1,5\n")
    assert as_dict(read_ratings(p)) == {("alice", "m1"): 5.0}


@pytest.mark.parametrize("sep", ["\t", ";", "|", "::", ","])
def test_format_delimited_detects_its_delimiter(tmp_path, sep):
    """--format delimited without --sep finds the delimiter as auto does (it read every
    file as comma-separated, and blamed a --sep the user never gave)."""
    f = tmp_path / "r.txt"
    f.write_text(f"alice{sep}m1{sep}4\nbob{sep}m2{sep}3\nalice{sep}m2{sep}5\n")
    fmt = resolve_format(f, "delimited")
    assert fmt.name == "delimited" and fmt.sep == sep and fmt.scale is None
    r = read_ratings(f, "delimited")
    assert r.matrix.nnz == 3 and sorted(r.items.ids.tolist()) == ["m1", "m2"]


def test_format_delimited_assumes_no_movielens_scale(tmp_path):
    """A file that looks like MovieLens read with --format delimited is generic: no
    0.5-5 (or u.data's 1-5) scale is assumed."""
    f = tmp_path / "ratings.csv"
    f.write_text("userId,movieId,rating,timestamp\n1,10,7,0\n2,10,9,0\n")
    assert resolve_format(f, "delimited").scale is None
    assert read_ratings(f, "delimited").matrix.max() == 9
    u = tmp_path / "u.data"
    u.write_text("1\t10\t7\t0\n2\t10\t9\t0\n")
    assert resolve_format(u, "delimited").scale is None
    with pytest.raises(DataError):
        read_ratings(u)                      # auto: u.data's 1-5 scale refuses 7


def test_header_names_npcf_does_not_recognise_point_to_columns(tmp_path):
    """With --sep given and the header splitting into columns, the names are the problem,
    not the delimiter (the message asked for another --sep)."""
    f = tmp_path / "semi.csv"
    f.write_text("u;i;r\n1;2;3\n2;3;4\n")
    with pytest.raises(DataError, match=r"columns \(u, i, r\) name no user, item, rating "
                                        r"column npcf recognises; name them with --columns"):
        read_ratings(f, sep=";")
    with pytest.raises(DataError, match=r"no column 'nope' in the header \(its columns: u, i, "
                                        r"r\); name them with --columns"):
        read_ratings(f, sep=";", columns=("u", "i", "nope"))
    assert read_ratings(f, sep=";", columns=("u", "i", "r")).matrix.nnz == 2
