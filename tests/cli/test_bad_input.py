"""Bad input against every command: each case exits non-zero with one line naming the
file or option, never a traceback, and leaves every file the user had unchanged (the
working directory is hashed before and after).

Every case of issue 12's report is one of them; the option walk feeds every numeric or
choice option of every command its nonsense values.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import math
import os
import shutil
import signal
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from npcf.cli import main

N_USERS, N_MOVIES = 60, 80


def run(args, catch=True):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch)


def lines(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.strip()]


def snapshot(root: Path) -> dict:
    """{relative path: sha256} of every file under ``root`` (and every directory)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def write_ratings(path: Path, n_users=N_USERS, n_movies=N_MOVIES, seed=0) -> None:
    rng = np.random.default_rng(seed)
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(1, n_users + 1):
        for m in rng.choice(np.arange(1, n_movies + 1), size=min(12, n_movies), replace=False):
            rows.append(f"{u},{m},{rng.integers(1, 11) / 2:g},{1000 + u}")
    path.write_text("\n".join(rows) + "\n")


def write_movies(path: Path, n_movies=N_MOVIES) -> None:
    path.write_text("movieId,title,genres\n" +
                    "".join(f"{m},Movie {m} (2000),Drama\n" for m in range(1, n_movies + 1)))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """ratings.csv + movies.csv, a prepared directory ``prep/`` and a trained and
    exported run directory ``run/``, plus a few hostile files."""
    root = tmp_path_factory.mktemp("bad_input_base")
    write_ratings(root / "ratings.csv")
    write_movies(root / "movies.csv")
    old = os.getcwd()
    os.chdir(root)
    try:
        for args in (["prepare", "--data", "ratings.csv", "--out", "prep", "-q"],
                     ["train", "--data", "ratings.csv", "--out", "run", "--tune", "off",
                      "--n_epochs", 2, "--layers", 8, "-q"],
                     ["eval", "--generate", "--model", "run/model.npz", "-q"]):
            result = run(args, catch=False)
            assert result.exit_code == 0, result.output
    finally:
        os.chdir(old)
    (root / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (root / "empty.csv").write_text("")
    (root / "header_only.csv").write_text("userId,movieId,rating,timestamp\n")
    (root / "one_rating.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,10\n")
    (root / "bad_line.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,10\n1,2,x,11\n")
    body = (root / "ratings.csv").read_bytes()
    (root / "truncated.csv.gz").write_bytes(gzip.compress(body)[:300])
    (root / "garbage.onnx").write_bytes(b"not a model at all")
    good = "movieId,title,genres\n" + "".join(f"{m},Film {m},Drama\n" for m in range(1, 400))
    (root / "bad_titles.csv").write_bytes(good.encode() + b"400,Caf\xe9,Drama\n")
    return root


@pytest.fixture
def work(base, tmp_path, monkeypatch):
    """A fresh copy of ``base`` as the working directory."""
    dest = tmp_path / "w"
    shutil.copytree(base, dest, symlinks=True)
    monkeypatch.chdir(dest)
    return dest


def assert_refused(result, root: Path, before: dict, code: int, *needles: str) -> None:
    out = lines(result)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    assert len(out) == 1 and out[0].startswith("Error: "), result.output
    assert "unexpected" not in out[0], out[0]          # a known failure, not a bug
    for needle in needles:
        assert needle in out[0], out[0]
    assert snapshot(root) == before, "a failing command changed the user's files"


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])


TRAIN = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 1, "--layers", 8,
         "-q", "--out", "new"]

# (id, setup or None, args, exit code, substrings of the message)
CASES = [
    # ---- train: option values (exit 2)
    *[(f"train {opt} {val}", None, TRAIN + [opt, val], 2, [opt]) for opt, val in [
        ("--batch_size", -5), ("--batch_size", 0), ("--n_epochs", 0), ("--n_epochs", -1),
        ("--lr", 0), ("--lr", -1), ("--lr", "nan"), ("--lr", "inf"), ("--weight_decay", -1),
        ("--clip_norm", -1), ("--clip_norm", 0), ("--noise_level", -0.1),
        ("--noise_level", 1.5), ("--patience", -1), ("--verbose_epochs", -1),
        ("--step_size", 0), ("--gamma", -1), ("--gamma", "nan"), ("--dropout", 1),
        ("--dropout", -0.5), ("--seed", -1), ("--seed", "x"), ("--tune_budget", -1),
        ("--tune_budget", 0), ("--tune_budget", "nan"), ("--layers", "0"),
        ("--layers", "a,b"), ("--layers", "10,,5"), ("--layers", "10,"), ("--ensemble", 0),
        ("--threads", 0), ("--activation", "nope"),
        ("--loss", "nope"), ("--tune", "maybe"), ("--test_size", 2), ("--holdout", 2),
        ("--scale", "5,1"), ("--sep", ""), ("--columns", "a,b")]],
    ("train multinomial item-based", None, TRAIN + ["--loss", "multinomial", "--item_based"],
     2, ["--item_based"]),
    *[(f"train {a} {b}", None, TRAIN + [a, b], 2, [a, b, "contradict"]) for a, b in [
        ("--item_based", "--user_based"), ("--basic", "--denoiser"),
        ("--tied_weights", "--not_tied")]],
    *[(f"train prepared {opt}", None, ["train", "--data", "prep", opt, val, "--out", "new"], 2,
       [opt, "prepared directory"]) for opt, val in [("--columns", "u,i,r"), ("--sep", ";"),
                                                     ("--split", "user"), ("--scale", "1,5")]],
    ("train --basic --noise", None, TRAIN + ["--basic", "--noise", "gaussian"], 2,
     ["--noise", "--basic"]),
    ("train --basic --noise_level", None, TRAIN + ["--basic", "--noise_level", 0.3], 2,
     ["--noise_level"]),
    ("train --step_size without step", None, TRAIN + ["--step_size", 3], 2,
     ["--step_size", "--schedule step"]),
    ("train --gamma with cosine", None, TRAIN + ["--schedule", "cosine", "--gamma", 0.3], 2,
     ["--gamma"]),
    *[(f"eval {mode} {opt}", None, ["eval", mode, opt, val], 2, [opt, "does nothing"])
      for mode, opt, val in [("--evaluate", "--top_k", 5), ("--generate", "-k", 5),
                             ("--generate", "--threshold", 3), ("--baselines", "--precision",
                                                                "int8"),
                             ("--evaluate", "--out", "x.onnx")]],
    ("prepare movielens-csv --sep", None, ["prepare", "--data", "ratings.csv", "--format",
                                           "movielens-csv", "--sep", ";", "--out", "new"], 2,
     ["--sep", "--format delimited"]),
    ("train resume with tune", None, ["train", "--resume", "--out", "run"], 2, ["--resume"]),
    ("train --train without --test", None,
     ["train", "--train", "ratings.csv", "--out", "new"], 2, ["--train"]),
    ("train --data with --train", None, ["train", "--data", "ratings.csv", "--train",
                                         "ratings.csv", "--test", "ratings.csv"], 2, ["--data"]),
    # ---- train: run directories and data (exit 1)
    ("train resume nothing", None, ["train", "--resume", "--tune", "off", "--out", "run"], 1,
     ["no interrupted run"]),
    ("train into a file", None, TRAIN[:-1] + ["run/model.npz"], 2, ["--out"]),
    ("train into cwd", None, TRAIN[:-1] + ["."], 1, ["working directory"]),
    ("train into foreign dir", lambda r: (r / "mine").mkdir() or (r / "mine/x.txt").write_text("x"),
     TRAIN[:-1] + ["mine"], 1, ["x.txt"]),
    ("train into prepared dir", None, TRAIN[:-1] + ["prep"], 1, ["stats.json"]),
    ("train over own input", None, ["train", "--data", "run/data", "--tune", "off", "--out",
                                    "run"], 1, ["own input"]),
    ("train missing data", None, ["train", "--data", "nope.csv", "--out", "new"], 1,
     ["nope.csv"]),
    ("train binary data", None, ["train", "--data", "binary.bin", "--out", "new"], 1,
     ["not a text file"]),
    ("train empty file", None, ["train", "--data", "empty.csv", "--out", "new"], 1, ["empty"]),
    ("train one rating", None, ["train", "--data", "one_rating.csv", "--out", "new"], 1,
     ["empty"]),
    ("train diverges", None, ["train", "--data", "ratings.csv", "--tune", "off", "--out", "run",
                              "--lr", "1e30", "--layers", 8, "-q", "--optimizer", "sgd"], 1, []),
    # ---- prepare
    *[(f"prepare {opt} {val}", None,
       ["prepare", "--data", "ratings.csv", "--out", "new", opt, val], 2, [opt])
      for opt, val in [("--holdout", 2), ("--holdout", 0), ("--test_size", 0),
                       ("--test_size", 1), ("--test_size", "nan"), ("--test_size", -0.1),
                       ("--validation_size", 1), ("--scale", "1"), ("--scale", "a,b"),
                       ("--scale", "nan,5"), ("--split", "bogus"), ("--format", "bogus"),
                       ("--seed", -1)]],
    ("prepare --data with --train/--test", None,
     ["prepare", "--data", "ratings.csv", "--train", "ratings.csv", "--test", "ratings.csv",
      "--out", "new"], 2, ["--data"]),
    ("prepare --train with --split", None,
     ["prepare", "--train", "ratings.csv", "--test", "ratings.csv", "--split", "user",
      "--out", "new"], 2, ["--split"]),
    ("prepare --train with --test_size", None,
     ["prepare", "--train", "ratings.csv", "--test", "ratings.csv", "--test_size", "0.3",
      "--out", "new"], 2, ["--test_size"]),
    ("prepare --out below a file", lambda r: (r / "afile").write_text("mine"),
     ["prepare", "--data", "ratings.csv", "--out", "afile/sub"], 1,
     ["afile", "is a file, not a directory"]),
    ("train --out below a file", lambda r: (r / "afile").write_text("mine"),
     TRAIN[:-1] + ["afile/sub/run"], 1, ["afile/sub", "afile is a file, not a directory"]),
    ("prepare --test alone", None, ["prepare", "--test", "ratings.csv", "--out", "new"], 2,
     ["--train"]),
    ("prepare own input", None, ["prepare", "--data", "prep", "--out", "prep"], 1,
     ["own input"]),
    ("eval -k beyond the catalogue", None,
     ["eval", "--evaluate", "--model", "run/model.onnx", "-k", "10,100000"], 2,
     ["'-k'", "100000", "beyond the"]),
    ("eval --baselines -k beyond the catalogue", None,
     ["eval", "--baselines", "--data", "prep", "-k", "100000"], 2, ["'-k'", "beyond the"]),
    ("eval --data that does not exist", None,
     ["eval", "--evaluate", "--model", "run/model.onnx", "--data", "nope"], 1,
     ["nope: no such directory"]),
    ("recommend --data that does not exist", None,
     ["recommend", "--model", "run/model.onnx", "--user", "1", "--data", "nope"], 1,
     ["nope: no such directory"]),
    ("eval --data a file", None,
     ["eval", "--evaluate", "--model", "run/model.onnx", "--data", "ratings.csv"], 1,
     ["ratings.csv: is a file, not a prepared data directory"]),
    ("eval --threshold above every rating", None,
     ["eval", "--evaluate", "--model", "run/model.onnx", "--threshold", "6"], 2,
     ["'--threshold'", "above every held-out rating"]),
    ("prepare a prepared directory with --seed", None,
     ["prepare", "--data", "prep", "--out", "new", "--seed", "5"], 2,
     ["--seed", "prepared directory"]),
    *[(f"eval {a} {b}", None, ["eval", a, b, "--model", "run/model.npz"], 2,
       ["contradict each other", "--generate, --evaluate, --baselines"])
      for a, b in [("--evaluate", "--generate"), ("--generate", "--baselines"),
                   ("--baselines", "--evaluate")]],
    *[(f"{cmd} --holdout without --split users", None,
       [cmd, "--data", "ratings.csv", "--out", "new", "--holdout", "0.3", *extra], 2,
       ["--holdout", "--split users", "ignored"])
      for cmd, extra in [("prepare", []), ("train", ["--split", "user"])]],
    ("train --tune_budget with --tune off", None,
     ["train", "--data", "ratings.csv", "--out", "new", "--tune", "off", "--tune_budget", "5"],
     2, ["--tune_budget", "--tune off"]),
    ("train --resume --overwrite", None,
     ["train", "--data", "ratings.csv", "--out", "run", "--tune", "off", "--resume",
      "--overwrite"], 2, ["--overwrite", "--resume"]),
    ("prepare --out a file", lambda r: (r / "afile").write_text("mine"),
     ["prepare", "--data", "ratings.csv", "--out", "afile"], 2,
     ["--out", "afile", "is a file, not a directory"]),
    ("prepare into run dir", None, ["prepare", "--data", "ratings.csv", "--out", "run"], 1,
     ["history.csv"]),
    ("prepare header only", None, ["prepare", "--data", "header_only.csv", "--out", "new"], 1,
     ["header_only.csv"]),
    ("prepare bad line", None, ["prepare", "--data", "bad_line.csv", "--out", "new"], 1,
     ["bad_line.csv:3"]),
    ("prepare truncated gz", None, ["prepare", "--data", "truncated.csv.gz", "--out", "new"], 1,
     ["truncated.csv.gz"]),
    *[(f"prepare truncated {kind} half", lambda r, c=compress, n=name: (r / n).write_bytes(
        c((r / "ratings.csv").read_bytes())[:1500]),
       ["prepare", "--data", name, "--out", "new"], 1, [name, "truncated or corrupt"])
      for kind, compress, name in [("gz", gzip.compress, "half.csv.gz"),
                                   ("xz", lzma.compress, "half.csv.xz")]],
    ("prepare rating beyond float32", lambda r: (r / "big.csv").write_text(
        "user,item,rating\n1,1,3\n1,2,1e39\n2,1,4\n"),
     ["prepare", "--data", "big.csv", "--out", "new"], 1, ["big.csv:3", "float32"]),
    ("prepare --columns on a headerless file", lambda r: (r / "nohead.csv").write_text(
        "1,10,4\n2,10,3\n1,11,5\n"),
     ["prepare", "--data", "nohead.csv", "--columns", "movie,user,rating", "--out", "new"], 1,
     ["nohead.csv:1", "no header"]),
    ("prepare random bytes", lambda r: (r / "noise.csv").write_bytes(
        bytes(np.random.default_rng(0).integers(1, 256, 3000, dtype=np.uint8)).replace(
            b";", b",").replace(b"\t", b",")),
     ["prepare", "--data", "noise.csv", "--out", "new"], 1, ["noise.csv:1", "not UTF-8"]),
    ("prepare --scale -inf,5", None, ["prepare", "--data", "ratings.csv", "--out", "new",
                                      "--scale=-inf,5"], 2, ["--scale", "finite"]),
    ("prepare binary", None, ["prepare", "--data", "binary.bin", "--out", "new"], 1,
     ["not a text file"]),
    ("prepare missing", None, ["prepare", "--data", "nope.csv", "--out", "new"], 1,
     ["nope.csv"]),
    ("prepare no --out", None, ["prepare", "--data", "ratings.csv"], 2, ["--out"]),
    ("prepare a column named twice", None, ["prepare", "--data", "ratings.csv", "--columns",
                                            "userId,userId,rating", "--out", "new"], 2,
     ["--columns"]),
    ("prepare a header with a column twice",
     lambda r: (r / "dup.csv").write_text("userId,movieId,rating,rating\n1,1,4,5\n2,2,3,1\n"),
     ["prepare", "--data", "dup.csv", "--out", "new"], 1, ["dup.csv:1", "rating"]),
    ("prepare into a dir of the user's titles",
     lambda r: (r / "mine").mkdir() or shutil.copy(r / "movies.csv", r / "mine" / "movies.csv"),
     ["prepare", "--data", "ratings.csv", "--out", "mine"], 1, ["not a prepared"]),
    ("train into a dir of exports only",
     lambda r: (r / "ex").mkdir() or shutil.copy(r / "run/model.onnx", r / "ex/model.onnx"),
     TRAIN[:-1] + ["ex"], 1, ["not a run directory"]),
    ("train resume a missing dir", None, ["train", "--resume", "--tune", "off", "--out",
                                          "nowhere"], 1, ["does not exist"]),
    # ---- eval --generate
    ("generate over checkpoint", None, ["eval", "--generate", "--model", "run/model.npz",
                                        "--out", "run/model.npz"], 2, ["--out", ".onnx"]),
    ("generate over default checkpoint", lambda r: shutil.copytree(r / "run", r / "models"),
     ["eval", "--generate", "--out", "models/model.npz"], 2, ["--out", ".onnx"]),
    ("generate over model.json", None, ["eval", "--generate", "--model", "run/model.npz",
                                        "--out", "run/model.json"], 2, [".onnx"]),
    ("generate to txt", None, ["eval", "--generate", "--model", "run/model.npz", "--out",
                               "x.txt"], 2, ["--out", ".onnx"]),
    ("generate onto a dir", None, ["eval", "--generate", "--model", "run/model.npz", "--out",
                                   "run"], 2, ["--out"]),
    ("generate from onnx", None, ["eval", "--generate", "--model", "run/model.onnx"], 1,
     ["checkpoint"]),
    ("generate missing model", None, ["eval", "--generate", "--model", "nope/model.npz"], 1,
     ["nope"]),
    ("generate a checkpoint file that is not there", None,
     ["eval", "--generate", "--model", "run/other.npz"], 1, ["run/other.npz", "no such"]),
    ("generate top_k too big", None, ["eval", "--generate", "--model", "run/model.npz",
                                      "--top_k", 100000], 2, ["--top_k", "only 80 movies"]),
    *[(f"eval {opt} {val}", None, ["eval", mode, "--model", "run/model.npz", opt, val], 2, [opt])
      for mode, opt, val in [("--generate", "--top_k", -1), ("--generate", "--batch_size", 0),
                             ("--evaluate", "--batch_size", -1),
                             ("--generate", "--popularity_penalty", "nan"),
                             ("--generate", "--popularity_penalty", -1),
                             ("--generate", "--precision", "fp8"),
                             ("--evaluate", "--threshold", "nan"), ("--evaluate", "-k", -1),
                             ("--evaluate", "-k", 0), ("--evaluate", "-k", "ten")]],
    ("eval no mode", None, ["eval"], 2, ["--generate"]),
    *[(f"evaluate --json {target}", None, ["eval", "--evaluate", "--model", "run/model.npz",
                                           "--json", target], 2, ["--json"])
      for target in ("run/model.npz", "run/model.json", "run/metrics.json", "run/history.csv",
                     "run/data/train.npz", "prep/stats.json", "ratings.csv", "run/model.onnx")],
    ("evaluate --json onto a copied checkpoint's metadata",
     lambda r: shutil.copy(r / "run/model.json", r / "best.json"),
     ["eval", "--evaluate", "--model", "run/model.npz", "--json", "best.json"], 2,
     ["--json", "best.json", "not a metrics file"]),
    ("evaluate --json onto a user's JSON", lambda r: (r / "notes.json").write_text('{"a": 1}'),
     ["eval", "--evaluate", "--model", "run/model.npz", "--json", "notes.json"], 2,
     ["--json", "notes.json"]),
    ("baselines --json onto a checkpoint", None, ["eval", "--baselines", "--data", "prep",
                                                  "--json", "run/model.npz"], 2, ["--json"]),
    # ---- eval --evaluate
    ("evaluate missing model", None, ["eval", "--evaluate", "--model", "nope.onnx"], 1,
     ["nope.onnx"]),
    ("evaluate garbage onnx", None, ["eval", "--evaluate", "--model", "garbage.onnx"], 1,
     ["garbage.onnx"]),
    ("evaluate unprepared data", None, ["eval", "--evaluate", "--model", "run/model.onnx",
                                        "--data", "ratings.csv"], 1, ["ratings.csv"]),
    ("evaluate truncated onnx", lambda r: truncate(r / "run/model.onnx"),
     ["eval", "--evaluate", "--model", "run/model.onnx"], 1, ["model.onnx"]),
    ("evaluate flipped onnx", lambda r: flip_byte(r / "run/model.onnx", 0.3),
     ["eval", "--evaluate", "--model", "run/model.onnx"], 1, ["model.onnx"]),
    ("evaluate zero-byte onnx", lambda r: (r / "run/model.onnx").write_bytes(b""),
     ["eval", "--evaluate", "--model", "run/model.onnx"], 1, ["model.onnx"]),
    # ---- a corrupt run directory
    ("truncated checkpoint", lambda r: truncate(r / "run/model.npz"),
     ["eval", "--generate", "--model", "run/model.npz"], 1, ["model.npz"]),
    ("flipped checkpoint", lambda r: flip_byte(r / "run/model.npz"),
     ["eval", "--generate", "--model", "run/model.npz"], 1, ["model.npz"]),
    ("zero-byte checkpoint", lambda r: (r / "run/model.npz").write_bytes(b""),
     ["eval", "--evaluate", "--model", "run/model.npz"], 1, ["model.npz"]),
    ("model.json not json", lambda r: (r / "run/model.json").write_text("{oops"),
     ["eval", "--evaluate", "--model", "run/model.npz"], 1, ["model.json"]),
    ("model.json a list", lambda r: (r / "run/model.json").write_text("[]"),
     ["eval", "--evaluate", "--model", "run/model.npz"], 1, ["model.json"]),
    # ---- a corrupt prepared directory
    *[(f"prepared {name}", setup, ["train", "--data", "prep", "--tune", "off", "--out", "new",
                                   "-q"], 1, [needle]) for name, setup, needle in [
        ("truncated train.npz", lambda r: truncate(r / "prep/train.npz"), "train.npz"),
        ("flipped train.npz", lambda r: flip_byte(r / "prep/train.npz"), "train.npz"),
        ("zero-byte train.npz", lambda r: (r / "prep/train.npz").write_bytes(b""), "train.npz"),
        ("missing test.npz", lambda r: (r / "prep/test.npz").unlink(), "test.npz"),
        ("stats.json []", lambda r: (r / "prep/stats.json").write_text("[]"), "stats.json"),
        ("stats.json broken", lambda r: (r / "prep/stats.json").write_text("{"), "stats.json"),
        ("users.csv garbage", lambda r: (r / "prep/users.csv").write_bytes(b"\x00\x01"),
         "users.csv"),
        ("items.csv wrong index", lambda r: (r / "prep/items.csv").write_text("index,id\n5,1\n"),
         "items.csv")]],
    # ---- recommend
    *[(f"recommend --ratings {val}", None, ["recommend", "--model", "run/model.onnx",
                                            "--ratings", val], code, needles)
      for val, code, needles in [("1:5,1:3", 2, ["--ratings", "more than once"]),
                                 ("1:99", 2, ["--ratings", "rating 99 ", "scale"]),
                                 ("1:-3", 2, ["--ratings", "scale"]),
                                 ("1:0.25", 2, ["--ratings", "scale"]),
                                 ("1:5.0000001", 2, ["rating 5.0000001 ", "scale"]),
                                 ("1:0.4999999", 2, ["rating 0.4999999 ", "scale"]),
                                 ("1:0", 2, ["--ratings", "non-zero"]),
                                 ("1:nan", 2, ["finite"]), ("1:abc", 2, ["--ratings"]),
                                 (":5", 2, ["empty movie id"]), ("1:inf", 2, ["finite"]),
                                 ("", 2, ["--ratings"]), ("1", 2, ["--ratings"]),
                                 ("[[1, 5, 3]]", 2, ["--ratings", "JSON"]),
                                 ("{bad json", 2, ["--ratings", "JSON"]),
                                 ("999999:4", 2, ["--ratings", "999999"])]],
    ("recommend -k 0", None, ["recommend", "--ratings", "1:5", "-k", 0], 2, ["-k"]),
    ("recommend -k -1", None, ["recommend", "--ratings", "1:5", "-k", -1], 2, ["-k"]),
    ("recommend user and ratings", None, ["recommend", "--user", 1, "--ratings", "1:5"], 2,
     ["--user"]),
    ("recommend nothing", None, ["recommend", "--model", "run/model.onnx"], 2, ["--user"]),
    ("recommend unknown user", None, ["recommend", "--model", "run/model.onnx", "--user",
                                      "424242"], 1, ["424242"]),
    ("recommend bad titles", None, ["recommend", "--model", "run/model.onnx", "--ratings",
                                    "1:5", "--movies", "bad_titles.csv"], 1, ["bad_titles.csv:401"]),
    ("recommend binary titles", None, ["recommend", "--model", "run/model.onnx", "--ratings",
                                       "1:5", "--movies", "binary.bin"], 1, ["not a text file"]),
    ("recommend missing model", None, ["recommend", "--model", "nope.onnx", "--ratings", "1:5"],
     1, ["nope.onnx"]),
    # ---- plot
    ("plot binary", None, ["plot", "binary.bin"], 1, ["binary.bin"]),
    ("plot missing", None, ["plot", "nope.csv"], 1, ["nope.csv"]),
    ("plot not a history", None, ["plot", "ratings.csv"], 1, ["ratings.csv"]),
    ("unknown command", None, ["fly"], 2, ["fly"]),
]


@pytest.mark.parametrize("setup, args, code, needles",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(work, setup, args, code, needles):
    if setup is not None:
        setup(work)
    before = snapshot(work)
    result = run(args)
    if "plot" in args[:1] and "No module named" in result.output:
        pytest.skip("matplotlib not installed")
    assert_refused(result, work, before, code, *needles)


def test_the_suite_has_at_least_a_hundred_cases():
    assert len(CASES) >= 100


# ---------------------------------------------------------------- the option walk
def nonsense(param: click.Option) -> list[str]:
    """Values outside ``param``'s type: below/above its range, NaN, inf, words."""
    t = param.type
    if isinstance(t, click.Choice):
        return ["no-such-choice"]
    if isinstance(t, (click.IntRange, click.FloatRange)):
        out = ["not-a-number"]
        is_int = isinstance(t, click.IntRange)
        if t.min is not None:
            below = t.min if t.min_open else (t.min - 1 if is_int else t.min - 0.5)
            out.append(str(below))
        if t.max is not None:
            above = t.max if t.max_open else (t.max + 1 if is_int else
                                              max(t.max + 0.5, math.nextafter(t.max, math.inf)))
            out.append(str(above))
        if not is_int:
            out += ["nan", "inf"]
        return out
    return []


WALK = [(name, p.opts[0], value) for name, cmd in sorted(main.commands.items())
        for p in cmd.params if isinstance(p, click.Option) for value in nonsense(p)]


def test_the_walk_covers_every_command():
    assert {name for name, _, _ in WALK} >= {"train", "prepare", "eval", "recommend"}
    assert len(WALK) >= 60


@pytest.mark.parametrize("command, opt, value", WALK, ids=[f"{c} {o} {v}" for c, o, v in WALK])
def test_every_option_refuses_its_nonsense_values(work, command, opt, value):
    before = snapshot(work)
    result = run([command, opt, value])
    assert_refused(result, work, before, 2, opt)


def test_a_flag_name_given_as_an_option_value_is_not_a_flag(work):
    result = run(["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 1,
                  "--layers", 8, "-q", "--out", "--basic", "--denoiser"])
    assert result.exit_code == 0, result.output        # the run directory is named --basic
    assert (work / "--basic" / "model.npz").is_file()


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_shows_no_empty_ranges_or_defaults(command):
    result = run([command, "--help"])
    assert result.exit_code == 0, result.output
    assert "None]" not in result.output and "None\n" not in result.output


# --------------------------------------------------------- semantics of the run dir
def signal_after(monkeypatch, signum, steps) -> None:
    """Deliver a real ``signum`` right after each optimizer step numbered in ``steps``
    (counted from 1 across every training this test starts; a step listed twice gets two
    signals in a row)."""
    from npcf.autoencoder.trainer import Trainer
    orig, count = Trainer.step, {"n": 0}

    def step(self, rows, b):
        out = orig(self, rows, b)
        count["n"] += 1
        for _ in range(list(steps).count(count["n"])):
            signal.raise_signal(signum)
        return out
    monkeypatch.setattr(Trainer, "step", step)


def test_a_plain_train_over_an_interrupted_run_is_refused_and_resume_checks_first(
        work, monkeypatch):
    args = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 3, "--layers", 8,
            "-q", "--out", "run", "--batch_size", 8]
    with monkeypatch.context() as m:
        signal_after(m, signal.SIGINT, (10,))        # a real Ctrl-C in epoch 2: epoch 1 saved
        result = run(args)
    assert result.exit_code == 130 and "--resume" in result.output, result.output
    assert (work / "run" / "resume.json").is_file()
    assert not (work / "run" / "model.onnx").exists()      # the old run's export went with it
    before = snapshot(work)
    assert_refused(run(args), work, before, 1, "interrupted run")
    assert_refused(run(args + ["--resume", "--lr", "0.5"]), work, before, 2, "--resume",
                   "--lr 0.5, started with --lr")
    assert_refused(run(args + ["--resume", "--test_size", 0.3]), work, before, 1, "data")
    for out in ("run/model.onnx", "run/mine.onnx", "run/mine.onnx"):   # again: replaced
        gen = run(["eval", "--generate", "--model", "run/model.npz", "--out", out, "-q"])
        assert gen.exit_code == 0, gen.output
    no_data = [a for a in args if a != "ratings.csv" and a != "--data"]
    result = run(no_data + ["--resume"])             # the run's own data/ by default
    assert result.exit_code == 0, result.output
    assert not (work / "run" / "resume.json").exists()
    # trained in place: the exports of the interrupted checkpoint are gone, not stale
    assert not list((work / "run").glob("*.onnx*")), sorted((work / "run").iterdir())
    assert run(args + ["--n_epochs", 1]).exit_code == 0    # a finished run is replaced


def test_sigterm_during_training_saves_the_resume_state_and_exits_143(work, monkeypatch):
    """SIGTERM (kill, systemd, Kubernetes) stops training as Ctrl-C does: the resume state
    is saved beside the checkpoint of the same moment, and --resume finishes the run."""
    args = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 4, "--layers", 8,
            "-q", "--out", "run", "--batch_size", 8]
    with monkeypatch.context() as m:
        signal_after(m, signal.SIGTERM, (10, 25))   # once in the run, once in its resume
        first = run(args)
        assert first.exit_code == 143 and "--resume" in first.output, first.output
        first_state = json.loads((work / "run" / "resume.json").read_text())
        second = run(args + ["--resume"])
        assert second.exit_code == 143, second.output
    state = json.loads((work / "run" / "resume.json").read_text())   # the later moment's
    assert (state["epoch"], state["batch"]) > (first_state["epoch"], first_state["batch"])
    result = run(args + ["--resume"])
    assert result.exit_code == 0, result.output
    assert not (work / "run" / "resume.json").exists()
    assert json.loads((work / "run" / "model.json").read_text())["info"]["epochs_run"] == 4


def test_a_second_sigterm_during_resume_leaves_the_interrupted_run_as_it_was(work, monkeypatch):
    """The resumed run continues in a copy: stopped at once (a second SIGTERM, or a
    SIGKILL), it leaves the directory exactly as the first interruption saved it, and says
    so; --resume then finishes the run."""
    args = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 4, "--layers", 8,
            "-q", "--out", "run", "--batch_size", 8]
    with monkeypatch.context() as m:
        signal_after(m, signal.SIGTERM, (10, 25, 25))   # once in the run, twice in its resume
        assert run(args).exit_code == 143
        before = snapshot(work)
        second = run(args + ["--resume"])
    assert second.exit_code == 143, second.output
    assert "terminated (SIGTERM)" in second.output and "--resume" not in second.output
    assert snapshot(work) == before
    assert not [p for p in os.listdir(work) if p.startswith(".")]
    result = run(args + ["--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((work / "run" / "model.json").read_text())["info"]["epochs_run"] == 4


def test_an_interrupted_ensemble_is_a_run_to_resume_or_overwrite(work, monkeypatch):
    """Ctrl-C in the first member, before any model is saved, leaves only
    members/0/resume.*: still an interrupted run, not a foreign directory."""
    args = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 2, "--layers", 8,
            "-q", "--out", "run", "--batch_size", 8, "--ensemble", 2]
    with monkeypatch.context() as m:
        signal_after(m, signal.SIGINT, (3,))
        assert run(args).exit_code == 130
    assert (work / "run" / "members" / "0" / "resume.json").is_file()
    assert not (work / "run" / "model.json").exists()
    before = snapshot(work)
    assert_refused(run(args), work, before, 1, "interrupted run", "--overwrite")
    result = run(args + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert not list((work / "run").rglob("resume.json"))


def test_a_file_of_one_rating_value_is_implicit_data_for_the_multinomial_loss(work):
    """Every rating the same: the MSE model would predict that value everywhere (and
    recommend in id order), so it is refused naming --loss, not a --scale the user never
    gave; the multinomial loss trains on it."""
    lines = (work / "ratings.csv").read_text().splitlines()[1:]
    (work / "same.csv").write_text("".join(",".join(line.split(",")[:2] + ["3"]) + "\n"
                                           for line in lines))
    before = snapshot(work)
    result = run(["train", "--data", "same.csv", "--tune", "off", "--n_epochs", 2, "-q",
                  "--layers", 8, "--out", "same"])
    assert_refused(result, work, before, 2, "--loss", "all equal 3", "multinomial")
    assert "--scale" not in result.output
    result = run(["train", "--data", "same.csv", "--tune", "off", "--n_epochs", 2, "-q",
                  "--layers", 8, "--out", "same", "--loss", "multinomial"])
    assert result.exit_code == 0, result.output


def test_item_based_with_held_out_users_is_a_usage_error_naming_the_options(work):
    before = snapshot(work)
    result = run(["train", "--data", "ratings.csv", "--item_based", "--split", "users",
                  "--tune", "off", "--out", "run2", "-q"])
    assert_refused(result, work, before, 2, "--item_based", "--split users", "--user_based")


def test_ctrl_c_during_a_search_exits_130_and_leaves_the_run_whole(work, monkeypatch):
    before = snapshot(work)
    signal_after(monkeypatch, signal.SIGINT, (5,))
    result = run(["train", "--data", "ratings.csv", "--out", "run", "-q", "--tune_budget", 30])
    assert_refused(result, work, before, 130, "hyperparameter search", "does not resume")


def test_sigterm_ends_a_search_cleanly_with_143(work):
    import subprocess
    import sys
    import time
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    before = snapshot(work)
    proc = subprocess.Popen([sys.executable, str(cli), "train", "--data", "ratings.csv",
                             "--out", "run", "-q", "--threads", "2", "--n_epochs", "3000",
                             "--patience", "0"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(4)                                    # imports done, the search under way
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert b"terminated (SIGTERM)" in out or b"interrupted" in out, out
    lines = out.decode().splitlines()                 # one line: no blank one before it
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert snapshot(work) == before                   # no staged directory, no lock left
    assert not [p for p in os.listdir(work) if p.startswith(".")]


def test_a_failed_retrain_leaves_the_old_run_whole(work):
    before = snapshot(work)
    result = run(["train", "--data", "ratings.csv", "--tune", "off", "--out", "run",
                  "--layers", 8, "--lr", "1e30", "--optimizer", "sgd", "-q"])
    assert result.exit_code == 1
    assert snapshot(work) == before


def test_a_retrain_replaces_the_whole_run_and_a_stale_export_is_refused(work):
    elsewhere = work / "exports" / "kept.onnx"
    assert run(["eval", "--generate", "--model", "run/model.npz", "--out", elsewhere,
                "-q"]).exit_code == 0
    result = run(["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 1,
                  "--layers", 8, "--out", "run", "-q", "--seed", 1])
    assert result.exit_code == 0, result.output
    assert not (work / "run" / "model.onnx").exists()      # exported from the replaced model
    shutil.copy(elsewhere, work / "run" / "model.onnx")     # an old export put back by hand
    before = snapshot(work)
    for args in (["eval", "--evaluate", "-q"], ["recommend", "--ratings", "1:5"]):
        assert_refused(run(args + ["--model", "run/model.onnx"]), work, before, 1,
                       "re-export")
    assert run(["eval", "--generate", "--model", "run/model.npz", "-q"]).exit_code == 0
    assert run(["eval", "--evaluate", "--model", "run/model.onnx", "-q"]).exit_code == 0


def test_a_retrain_replaces_an_export_under_another_name_but_not_a_foreign_onnx(work):
    assert run(["eval", "--generate", "--model", "run/model.npz", "--raw_ids", "--out",
                "run/raw.onnx", "-q"]).exit_code == 0
    retrain = ["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 1,
               "--layers", 8, "--out", "run", "-q", "--seed", 2]
    result = run(retrain)
    assert result.exit_code == 0, result.output
    assert not list((work / "run").glob("raw.onnx*"))        # stale: replaced with the run
    (work / "run" / "mine.onnx").write_bytes(b"not npcf's")
    before = snapshot(work)
    assert_refused(run(retrain), work, before, 1, "mine.onnx")


def test_prepare_into_a_used_directory_keeps_nothing_of_the_old_data(work):
    assert (work / "prep" / "movies.csv").is_file()
    (work / "other").mkdir()
    write_ratings(work / "other" / "r.csv", n_users=30, n_movies=50, seed=3)   # no titles
    result = run(["prepare", "--data", "other/r.csv", "--out", "prep", "--validation_size", 0])
    assert result.exit_code == 0, result.output
    assert not (work / "prep" / "movies.csv").exists()
    assert not (work / "prep" / "validation.npz").exists()


def test_recommend_caps_k_at_the_unseen_movies(work):
    result = run(["recommend", "--model", "run/model.onnx", "--ratings", "1:5,2:4", "-k",
                  100000, "--json"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.output)
    ids = [r["movie_id"] for r in recs]
    assert len(ids) == len(set(ids)) == N_MOVIES - 2 and 1 not in ids and 2 not in ids


def test_files_are_created_with_the_umask(work):
    old = os.umask(0o022)
    try:
        assert run(["train", "--data", "ratings.csv", "--tune", "off", "--n_epochs", 1,
                    "--layers", 8, "--out", "fresh", "-q"]).exit_code == 0
        assert run(["eval", "--generate", "--model", "fresh/model.npz", "-q"]).exit_code == 0
    finally:
        os.umask(old)
    for name in ("model.npz", "model.json", "metrics.json", "model.onnx", "data/train.npz"):
        assert (work / "fresh" / name).stat().st_mode & 0o777 == 0o644, name
    assert (work / "fresh").stat().st_mode & 0o777 == 0o755


def test_input_users_have_is_read(work):
    body = (work / "ratings.csv").read_bytes()
    variants = {"bom.csv": b"\xef\xbb\xbf" + body, "crlf.csv": body.replace(b"\n", b"\r\n"),
                "ratings.csv.gz": gzip.compress(body),
                "quoted.csv": b"\n".join(b",".join(b'"%s"' % f for f in ln.split(b","))
                                         for ln in body.splitlines()) + b"\n"}
    for name, data in variants.items():
        (work / name).write_bytes(data)
        result = run(["prepare", "--data", name, "--out", f"p_{name}", "-q"])
        assert result.exit_code == 0, (name, result.output)
    counts = {json.loads((work / f"p_{n}" / "stats.json").read_text())["n_ratings"]
              for n in variants}
    assert counts == {N_USERS * 12}


def test_a_small_catalogue_exports_with_the_default_top_k(work):
    (work / "small").mkdir()
    write_ratings(work / "small" / "r.csv", n_users=40, n_movies=6, seed=2)
    body = (work / "small" / "r.csv").read_text().splitlines()
    (work / "small" / "r.csv").write_text("\n".join(body[:1] + body[1::3]) + "\n")
    assert run(["train", "--data", "small/r.csv", "--tune", "off", "--n_epochs", 1, "--layers", 4,
                "--out", "srun", "-q"]).exit_code == 0
    result = run(["eval", "--generate", "--model", "srun/model.npz", "-q"])
    assert result.exit_code == 0 and "top-6" in result.output, result.output


def run_with_closed_stdout(args, timeout: float = 60) -> tuple[int, str]:
    """``cli.py ARGS`` with its standard output a pipe nobody reads: (exit code, stderr)."""
    import subprocess
    import sys
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    p = subprocess.Popen([sys.executable, str(cli), *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    try:
        err = p.stderr.read().decode()
        return p.wait(timeout=timeout), err
    finally:
        p.kill()


@pytest.mark.parametrize("args", [["datasets"], ["--version"], ["--help"], ["train", "--help"]])
def test_a_closed_output_pipe_ends_quietly(args):
    """`npcf ... | head` closing early: no "Broken pipe" message, exit 141 (128 + SIGPIPE)
    as Unix tools end; `--version` and `--help` too (click would exit 1)."""
    assert run_with_closed_stdout(args) == (141, "")


def test_an_error_on_a_closed_output_pipe_keeps_its_exit_code(tmp_path):
    """Exit 141 is for the closed pipe itself: a command that fails for its own reason
    while nobody reads its output still exits 1."""
    code, err = run_with_closed_stdout(["recommend", "--model", tmp_path / "nothing",
                                        "--user", 1])
    assert code == 1 and err.startswith("Error:") and len(err.strip().splitlines()) == 1, err


def test_a_closed_output_pipe_stops_a_training_run_with_one_line(tmp_path):
    """A command that writes files says why it stopped (its run is not swapped in)."""
    write_ratings(tmp_path / "r.csv")
    code, err = run_with_closed_stdout(
        ["train", "--data", tmp_path / "r.csv", "--tune", "off", "--n_epochs", 200,
         "--layers", 8, "--verbose_epochs", 1, "--out", tmp_path / "run"], timeout=120)
    assert code == 141, err
    assert err.strip().splitlines() == [
        "Error: train: standard output was closed (broken pipe); stopped"], err
    assert not (tmp_path / "run").exists()


def run_with_full_stdout(args, timeout: float = 60) -> tuple[int, str]:
    """``cli.py ARGS`` with its standard output ``/dev/full`` (every write fails with
    ENOSPC, as on a full disk): (exit code, stderr)."""
    import subprocess
    import sys
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, str(cli), *map(str, args)], stdout=full,
                           stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stderr.decode()


NO_SPACE = "Error: standard output: No space left on device; the output is incomplete"


HAVE_DEV_FULL = os.access("/dev/full", os.W_OK)


@pytest.mark.skipif(not HAVE_DEV_FULL, reason="needs a writable /dev/full")
@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
@pytest.mark.parametrize("args", [["datasets"], ["--version"], ["--help"], ["train", "--help"]])
def test_a_full_standard_output_is_named_in_one_line(args, encoding, monkeypatch):
    """`npcf ... > file` on a full disk: one line naming standard output, exit 1 (was a
    traceback for `--help` and `--version`, and an errno without the stream's name);
    also where click wraps the stream (an ASCII locale)."""
    monkeypatch.setenv("PYTHONIOENCODING", encoding)
    assert run_with_full_stdout(args) == (1, NO_SPACE + "\n")


def test_a_disk_error_elsewhere_is_not_blamed_on_standard_output():
    """An OS error naming no file that did not come from writing standard output keeps
    its own message (standard output here is a real pipe, as in a shell)."""
    import subprocess
    import sys
    code = ("import errno, sys; import npcf.cli.datasets as d\n"
            "def full(): raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "d.list_datasets = full\n"
            "from npcf.cli.main import main\n"
            "main(['datasets'])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (1, "Error: [Errno 28] No space left on device\n")


@pytest.mark.skipif(not HAVE_DEV_FULL, reason="needs a writable /dev/full")
def test_a_full_standard_output_stops_a_training_run_with_one_line(tmp_path):
    """The first epoch line that cannot be written stops the run: its output directory
    is not swapped in."""
    write_ratings(tmp_path / "r.csv")
    code, err = run_with_full_stdout(
        ["train", "--data", tmp_path / "r.csv", "--tune", "off", "--n_epochs", 3,
         "--layers", 8, "--verbose_epochs", 1, "--out", tmp_path / "run"], timeout=120)
    assert (code, err.strip().splitlines()) == (1, [NO_SPACE]), err
    assert not (tmp_path / "run").exists()
