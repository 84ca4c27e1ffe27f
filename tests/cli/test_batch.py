"""`npcf batch-recommend`: end to end on a 1-worker local cluster, and bad input (missing
model, unreadable data, a scheduler nobody answers at, no Dask) as one line."""
from __future__ import annotations

import socket
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from npcf.cli import main

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from npcf import AutoEncoder
    from npcf.data.synthetic import generate
    from npcf.serving.export import export
    from npcf.utils.sparse import entry_rows
    tmp = tmp_path_factory.mktemp("batch_cli")
    r, _ = generate(n_users=400, n_items=120, mean_ratings=15, seed=2)
    model = AutoEncoder(layers=(16,), n_epochs=1, batch_size=64, seed=0)
    model.fit(r.matrix, scale=(0.5, 5.0), items=r.items)
    path = export(model, tmp / "model.onnx", top_k=10)
    m = r.matrix
    csv = tmp / "ratings.csv"
    pd.DataFrame({"userId": r.users.ids[entry_rows(m)], "movieId": r.items.ids[m.indices],
                  "rating": m.data, "timestamp": 1}).to_csv(csv, index=False)
    return tmp, path, csv


def run(*args):
    return CliRunner().invoke(main, ["batch-recommend", *map(str, args)])


def test_scores_every_user_on_a_local_cluster(files, tmp_path):
    _, model, csv = files
    lines = csv.read_text().splitlines()
    repeated = tmp_path / "ratings.csv"                    # two rows given twice
    repeated.write_text("\n".join(lines + lines[5:7]) + "\n")
    r = run("--model", model, "--data", repeated, "--out", tmp_path / "recs", "--workers", 1,
            "-k", 3, "--partition_users", 150)
    assert r.exit_code == 0, r.output
    assert "400 users, 1,200 recommendations in 3 partitions" in r.output
    assert "merged 2 repeated (user, movie) ratings" in r.output
    out = pd.read_parquet(tmp_path / "recs")
    assert list(out.columns) == ["userId", "rank", "movieId", "score"]
    assert len(out) == 1200 and (out.groupby("userId").size() == 3).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, message", [
    ("model", "no such model file"),
    ("checkpoint", "export it first: python cli.py eval --generate"),
    ("data", "no such file"),
    ("garbage", "garbage.csv:2: rating 'x' is not a number"),
    ("scheduler", "cannot connect within 1 s"),
    ("scale", "wide.csv: ratings 1..10 are outside the model's scale 0.5-5"),
    ("catalogue", "other.csv: none of the 2 movies it rates is one"),
    ("output", "is batch-recommend's output"),
    ("output part", "is batch-recommend's output"),
])
def test_bad_input_is_one_line(files, tmp_path, case, message):
    tmp, model, csv = files
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("userId,movieId,rating,timestamp\n1,2,x,3\n")
    (tmp_path / "model.npz").write_bytes(b"")
    wide = tmp_path / "wide.csv"                    # another unit: 1-10, declared as such
    wide.write_text("userId,movieId,rating\n1,1,10\n1,2,1\n")
    other = tmp_path / "other.csv"                  # movies of another catalogue only
    other.write_text("userId,movieId,rating\n1,900001,4\n2,900002,3\n")
    done = tmp_path / "done"                        # an earlier run's output (scores)
    done.mkdir()
    (done / "_npcf_batch.json").write_text("{}")
    if case == "output part":
        pd.DataFrame({"userId": [1], "rank": [1], "movieId": [1], "score": [4.5]}).to_parquet(
            done / "part-00000.parquet")
    args = {"model": ["--model", tmp_path / "none.onnx", "--data", csv],
            "data": ["--model", model, "--data", tmp_path / "none.csv"],
            "checkpoint": ["--model", tmp_path / "model.npz", "--data", csv],
            "garbage": ["--model", model, "--data", garbage],
            "catalogue": ["--model", model, "--data", other],
            "output": ["--model", model, "--data", done],
            "output part": ["--model", model, "--data", done / "part-00000.parquet"],
            "scale": ["--model", model, "--data", wide, "--format", "delimited",
                      "--scale", "1,10"],
            "scheduler": ["--model", model, "--data", csv, "--scheduler",
                          f"tcp://127.0.0.1:{_free_port()}", "--connect_timeout", 1]}[case]
    t0 = time.monotonic()
    r = run(*args, "--out", tmp_path / "recs")
    assert r.exit_code == 1 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert time.monotonic() - t0 < 20 and not (tmp_path / "recs").exists()


def test_without_the_extra_names_it(files, tmp_path, monkeypatch):
    _, model, csv = files
    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed fails
    r = run("--model", model, "--data", csv, "--out", tmp_path / "recs")
    assert r.exit_code == 1 and "pip install 'npcf[distributed]'" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


def test_usage_errors(files, tmp_path):
    _, model, csv = files
    base = ["--model", model, "--data", csv, "--out", tmp_path / "recs"]
    for extra in (["--scheduler", "tcp://127.0.0.1:1", "--workers", 2], ["-k", 0],
                  ["-k", 100000],
                  ["--workers", 0], ["--partition_users", 0],
                  ["--scheduler", "nosuch://127.0.0.1:1"], ["--scheduler", "http://x"],
                  ["--scheduler", "tcp://"]):
        r = run(*base, *extra)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        if 100000 in extra:                 # beyond the catalogue: refused, not padded
            assert "'-k': 100000: the model has only" in r.output
        if "nosuch://127.0.0.1:1" in extra or "http://x" in extra:
            assert "'--scheduler'" in r.output and "unknown address scheme" in r.output
        if "tcp://" in extra:               # no host or port: an option error, not "cannot connect"
            assert "is not a scheduler address" in r.output


def test_users_left_out_for_having_no_rating_are_said(files, tmp_path, monkeypatch):
    """Users of a prepared directory with no input rating (test-only users) get no rows;
    the console says how many instead of leaving it to _npcf_batch.json."""
    from npcf.serving import batch
    _, model, csv = files
    summary = {"users": 60, "rows": 600, "partitions": 1, "seconds": 1.0, "peak_rss_mb": {},
               "users_without_ratings": 2, "unknown_ratings": 0, "duplicates_resolved": 0,
               "users_without_known_movies": 0, "out": str(tmp_path / "recs")}
    monkeypatch.setattr(batch, "batch_recommend", lambda *a, **kw: summary)
    r = run("--model", model, "--data", csv, "--out", tmp_path / "recs")
    assert r.exit_code == 0, r.output
    assert "left out 2 users with no rating in --data" in r.output


def test_an_old_export_warns_once_not_once_per_worker(files, tmp_path):
    """The client prints the warning as one line; the workers, which load the same file,
    printed it again in Python's raw format."""
    import subprocess

    from conftest import REPO

    from helpers import without_rank_scores
    _, model, csv = files
    old = without_rank_scores(model, tmp_path / "old.onnx")
    r = subprocess.run([sys.executable, str(REPO / "cli.py"), "batch-recommend", "--model",
                        str(old), "--data", str(csv), "--out", str(tmp_path / "recs"),
                        "--workers", "1", "-k", "3", "--quiet"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "re-export" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: "), r.stderr
