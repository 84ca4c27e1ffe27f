"""Tests for ``npcf prepare``: good data writes a prepared directory, bad data gives one
``Error: FILE:LINE: problem`` line and exit code 1, never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from npcf.cli import main
from npcf.data.dataset import load_prepared

HEADER = "userId,movieId,rating,timestamp\n"


def run(*args):
    return CliRunner().invoke(main, ["prepare", *map(str, args)])


BAD = [
    ("non-numeric rating", "ratings.csv", HEADER + "1,10,4,1\n2,10,abc,2\n", 3, "is not a number"),
    ("NaN rating", "ratings.csv", HEADER + "1,10,4,1\n2,10,NaN,2\n", 3, "not finite"),
    ("inf rating", "ratings.csv", HEADER + "1,10,4,1\n2,10,-inf,2\n", 3, "not finite"),
    ("outside the scale", "ratings.csv", HEADER + "1,10,4,1\n2,10,7,2\n", 3,
     "outside the scale 0.5-5"),
    ("just outside the scale", "ratings.csv", HEADER + "1,10,4,1\n2,10,5.0000001,2\n", 3,
     "rating 5.0000001 outside the scale 0.5-5"),
    ("missing column", "ratings.csv", "userId,movieId,time\n1,2,3\n", 1, "missing rating column"),
    ("wrong delimiter", "ratings.csv", HEADER + "1;10;4;1\n", 2, "wrong delimiter"),
    ("truncated last line", "ratings.csv", HEADER + "1,10,4,1\n2,10", 3, "truncated line"),
    ("too many fields", "u.data", "1\t10\t4\t1\n2\t10\t4\t1\t5\n", 2, "too many fields"),
    ("non-integer id", "ratings.dat", "1::10::4::1\n1::x::4::2\n", 2,
     "item id 'x' is not an integer"),
]


@pytest.mark.parametrize("name, content, line, problem", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_file_one_line_error(tmp_path, name, content, line, problem):
    bad = tmp_path / name
    bad.write_text(content)
    out = tmp_path / "out"
    result = run("--data", bad, "--out", out, "--quiet")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {bad}:{line}: "), lines[0]
    assert problem in lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""                      # the message goes to stderr
    assert not out.exists()


@pytest.mark.parametrize("content, problem", [("", "file is empty"),
                                              (HEADER, "header only")],
                         ids=["empty", "header only"])
def test_empty_files(tmp_path, content, problem):
    bad = tmp_path / "ratings.csv"
    bad.write_text(content)
    result = run("--data", bad, "--out", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {bad}: ") and problem in lines[0]


def test_bad_test_file_of_a_given_split(tmp_path):
    (tmp_path / "u1.base").write_text("1\t10\t4\t1\n2\t10\t3\t2\n")
    (tmp_path / "u1.test").write_text("1\t11\t4\t1\n2\t11\t3\n")
    result = run("--train", tmp_path / "u1.base", "--test", tmp_path / "u1.test",
                 "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'u1.test'}:2: too few fields: "
                                     "expected 4 fields, found 3")


def test_other_errors_are_one_line(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\n2\t10\t3\n")
    result = run("--data", tmp_path / "u.data", "--split", "temporal", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: {tmp_path / 'u.data'}: the temporal split needs "
                                     "timestamps; this data has none")
    result = run("--data", tmp_path / "nope.csv", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'nope.csv'}: no such file")
    assert len(result.output.strip().splitlines()) == 1
    result = run("--data", tmp_path / "u.data", "--test_size", "1.5", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--test_size" in result.output
    result = run("--data", tmp_path / "u.data")                  # --out missing: usage error
    assert result.exit_code == 2


def test_prepare_small_file(tmp_path):
    (tmp_path / "r.txt").write_text("user;item;score;time\n" + "".join(
        f"u{u};m{i};{(u * i) % 5 + 1};{u + i}\n" for u in range(12) for i in range(9)))
    out = tmp_path / "prep"
    result = run("--data", tmp_path / "r.txt", "--split", "users", "--test_size", "0.25",
                 "--validation_size", "0.25", "--seed", "3", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["n_users"], stats["n_items"], stats["n_ratings"]) == (12, 9, 108)
    assert stats["split"]["kind"] == "users" and stats["split"]["seed"] == 3
    assert stats["parts"]["test"] + stats["parts"]["test_input"] == 3 * 9
    ds = load_prepared(out)
    assert ds.users.ids.tolist() == sorted(f"u{u}" for u in range(12))
    total = sum(ds.split.parts()[p].nnz for p in ("train", "test", "test_input", "validation",
                                                  "validation_input"))
    assert total == 108
    assert f"wrote {out}/ (split: users, seed 3)" in result.output


def test_prepare_movies_small(movies_small, tmp_path):
    out = tmp_path / "ml"
    result = run("--data", movies_small / "ratings.csv", "--out", out, "--seed", "1",
                 "--validation_size", "0.1")
    assert result.exit_code == 0, result.output
    text = result.output
    for label, value in (("n_users", "671"), ("n_items", "9,066"), ("n_ratings", "100,004"),
                         ("duplicates_resolved", "0")):
        row = next(line for line in text.splitlines() if line.startswith(label))
        assert row.split()[-1] == value, row
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["n_users"], stats["n_items"], stats["n_ratings"]) == (671, 9066, 100_004)
    assert stats["rating_min"] == 0.5 and stats["rating_max"] == 5.0
    assert stats["parts"]["test"] == round(0.1 * 100_004)
    assert stats["parts"]["train"] + stats["parts"]["validation"] + stats["parts"]["test"] \
        == 100_004
    ds = load_prepared(out)
    assert ds.split.train.shape == (671, 9066)
    assert len(ds.movies) == 9125
    u, i = ds.users.index([1])[0], ds.items.index([31])[0]
    whole = ds.split.train + ds.split.validation + ds.split.test
    assert whole[u, i] == np.float32(2.5)


@pytest.mark.parametrize("sep", ["\\t", "tab", "\t"])
def test_sep_takes_a_tab_as_typed_in_a_shell(tmp_path, sep):
    """``--sep '\\t'`` (a backslash and a t, as a shell passes it) and ``--sep tab`` name a
    tab, like the character itself."""
    (tmp_path / "r.tsv").write_text("user\titem\tstars\n" + "".join(
        f"u{u}\tm,{i}\t{(u * i) % 5 + 1}\n" for u in range(10) for i in range(8)))
    result = run("--data", tmp_path / "r.tsv", "--sep", sep, "--out", tmp_path / "p", "-q")
    assert result.exit_code == 0, result.output
    ds = load_prepared(tmp_path / "p")
    assert (len(ds.users), len(ds.items)) == (10, 8) and "m,3" in ds.items.ids.tolist()


def test_sep_refuses_what_cannot_delimit(tmp_path):
    (tmp_path / "r.csv").write_text(HEADER + "1,10,4,1\n")
    for sep in ("\\n", '"'):
        result = run("--data", tmp_path / "r.csv", "--sep", sep, "--out", tmp_path / "p")
        assert result.exit_code == 2 and "--sep" in result.output, result.output


def test_repeated_ratings_are_said_and_how_one_was_kept(tmp_path):
    """prepare and train said nothing of repeated (user, movie) ratings (a bare count in
    the stats table); they now say how many and which one was kept."""
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{1 + (u + i) % 5},{u * 100 + i}" for u in range(1, 40)
              for i in range(1 + u % 7, 40, 3)]
    lines += ["1,2,1,10", "1,2,5,99999"]                 # user 1, movie 2: twice more
    f = tmp_path / "r.csv"
    f.write_text("\n".join(lines) + "\n")
    note = ("merged 2 repeated (user, movie) ratings: the latest timestamp kept (on a tie, or "
            "without timestamps, the later line)")
    r = run("--data", f, "--out", tmp_path / "p", "-q")
    assert r.exit_code == 0 and note in r.output, r.output
    ds = load_prepared(tmp_path / "p")
    row = ds.user_row(1)
    assert row[0, ds.items.index([2])[0]] == 5
    r = CliRunner().invoke(main, ["train", "--data", str(f), "--out", str(tmp_path / "t"), "-q",
                                  "--tune", "off", "--n_epochs", "1", "--layers", "4"])
    assert r.exit_code == 0 and note in r.output, r.output


def test_seed_without_data_is_not_taken_for_a_prepared_directory(tmp_path, monkeypatch):
    """prepare --seed with no --data inside a prepared directory was refused as
    '--data None is a prepared directory'."""
    (tmp_path / "stats.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    r = run("--seed", "3", "--out", tmp_path / "x")
    assert "--data None" not in r.output and "prepared directory" not in r.output, r.output
