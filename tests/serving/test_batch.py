"""Batch recommendations on Dask: a 2-worker LocalCluster on 127.0.0.1 scores a few
thousand synthetic users exactly as the single-process Recommender does, whatever the
input kind, and a worker killed mid-run loses and duplicates no user."""
from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from npcf.data.readers import read_ratings  # noqa: E402
from npcf.errors import NpcfError  # noqa: E402
from npcf.serving import batch  # noqa: E402
from npcf.serving.runtime import Recommender  # noqa: E402
from npcf.utils.sparse import entry_rows  # noqa: E402

from helpers import CountingBar  # noqa: E402

K = 5
N_USERS = 3000


def _write_model(tmp, n_users, seed=1):
    """A one-epoch model on synthetic users and their ratings as a MovieLens csv with
    unknown movies added: users 1..50 also rated movie 9001, user ``n_users + 1`` only
    movie 9002."""
    from npcf import AutoEncoder
    from npcf.data.synthetic import generate
    from npcf.serving.export import export
    r, _ = generate(n_users=n_users, n_items=300, mean_ratings=20, seed=seed)
    model = AutoEncoder(layers=(32,), n_epochs=1, batch_size=128, seed=0)
    model.fit(r.matrix, scale=(0.5, 5.0), items=r.items)
    path = export(model, tmp / "model.onnx", sparse_input=True, top_k=10)
    m = r.matrix
    frame = pd.DataFrame({"userId": r.users.ids[entry_rows(m)], "movieId": r.items.ids[m.indices],
                          "rating": m.data})
    extra = pd.DataFrame({"userId": np.r_[np.arange(1, 51), n_users + 1],
                          "movieId": np.r_[np.full(50, 9001), 9002], "rating": 4.0})
    frame = pd.concat([frame, extra]).sort_values(["userId", "movieId"], kind="stable")
    frame["timestamp"] = 978300760
    csv = tmp / "ratings.csv"
    frame.to_csv(csv, index=False)
    return path, csv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    model, csv = _write_model(tmp, N_USERS)
    return tmp, model, csv


@pytest.fixture(scope="module")
def expected(data):
    """{user: (ids, scores)} from the single-process Recommender, one user at a time."""
    _, model, csv = data
    rec = Recommender.load(model)
    r = read_ratings(csv)
    known = set(rec.items.ids.tolist())
    out = {}
    for u, row in zip(r.users.ids, r.matrix):
        pairs = [(m, float(v)) for m, v in zip(r.items.ids[row.indices], row.data) if m in known]
        out[int(u)] = rec.recommend(pairs, k=K)
    return out


@pytest.fixture(scope="module")
def client():
    with batch.dask_client(workers=2) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def _read(out) -> pd.DataFrame:
    return pd.read_parquet(out).sort_values(["userId", "rank"], kind="stable")


def _check_equal(frame: pd.DataFrame, expected: dict) -> None:
    assert list(frame.columns) == list(batch.OUT_COLUMNS)
    counts = frame.groupby("userId").size()
    assert set(counts.index) == set(expected) and (counts == K).all()     # each user once
    ids = frame["movieId"].to_numpy().reshape(-1, K)
    scores = frame["score"].to_numpy().reshape(-1, K)
    users = frame["userId"].to_numpy()[::K]
    assert (frame["rank"].to_numpy().reshape(-1, K) == np.arange(1, K + 1)).all()
    want_ids = np.stack([expected[int(u)].ids for u in users])
    want_scores = np.stack([expected[int(u)].scores for u in users])
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_score_partition_is_plain_pandas_and_matches_recommend(data):
    _, model, csv = data
    frame = pd.read_csv(csv).drop(columns="timestamp")
    frame = frame[frame["userId"] <= 60]
    dup = frame.iloc[[0]].assign(rating=0.5)                 # a later duplicate wins
    shuffled = pd.concat([frame.sample(frac=1.0, random_state=0), dup])
    counts = {}
    out = batch.score_partition(shuffled, model, K, counts=counts)
    assert counts == {"users": 60, "rows": 60 * K, "unknown_ratings": 50,
                      "users_without_known_movies": 0}
    rec = Recommender.load(model)
    first = frame.iloc[0]
    for u, got in out.groupby("userId"):
        mine = frame[(frame["userId"] == u) & (frame["movieId"] < 9000)]
        pairs = {int(m): float(v) for m, v in zip(mine["movieId"], mine["rating"])}
        if u == first["userId"]:
            pairs[int(first["movieId"])] = 0.5
        ids, scores = rec.recommend(pairs, k=K)
        np.testing.assert_array_equal(got["movieId"].to_numpy(), ids)
        np.testing.assert_allclose(got["score"].to_numpy(), scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(NpcfError, match="lacks the columns rating"):
        batch.score_partition(frame.drop(columns="rating"), model, K)
    with pytest.raises(NpcfError, match="1 rating of 0: npcf reads a rating of 0"):
        batch.score_partition(frame.assign(rating=np.r_[0.0, frame["rating"].to_numpy()[1:]]),
                              model, K)
    # ids as doubles (a Spark or Parquet column that once held nulls): the same result
    doubles = frame.astype({"userId": "float64", "movieId": "float64"})
    pd.testing.assert_frame_equal(batch.score_partition(doubles, model, K),
                                  batch.score_partition(frame, model, K))
    with pytest.raises(NpcfError, match="movieId holds numbers that are not whole ids"):
        batch.score_partition(doubles.assign(movieId=doubles["movieId"] + 0.5), model, K)


def test_every_user_once_and_equal_to_single_process(data, expected, client, tmp_path):
    _, model, csv = data
    out = tmp_path / "recs"
    s = batch.recommend_all(client, model, csv, out, k=K, partition_users=400)
    assert s["partitions"] == 8 and s["users"] == N_USERS + 1 and s["rows"] == (N_USERS + 1) * K
    assert s["unknown_ratings"] == 51 and s["users_without_known_movies"] == 1
    assert len(s["peak_rss_mb"]) >= 1
    names = sorted(os.listdir(out))
    assert names == [batch.MARKER] + [batch.part_name(i) for i in range(8)]
    _check_equal(_read(out), expected)
    assert client.run_on_scheduler(_rescheduled) == 0           # no worker was lost
    again = batch.recommend_all(client, model, csv, out, k=K, partition_users=1000)
    assert again["partitions"] == 4 and len(os.listdir(out)) == 5      # replaced as a whole


def test_parquet_and_prepared_inputs(data, expected, client, tmp_path):
    from npcf.data.dataset import save_prepared
    from npcf.data.source import load_dataset
    _, model, csv = data
    pq = tmp_path / "ratings.parquet"
    pd.read_csv(csv).rename(columns={"userId": "user_id", "movieId": "item_id"}).to_parquet(pq)
    batch.recommend_all(client, model, pq, tmp_path / "a", k=K, partition_users=700)
    _check_equal(_read(tmp_path / "a"), expected)
    ds = load_dataset(csv, split="user", test_size=0.1, seed=0)
    prepared = save_prepared(ds, tmp_path / "prepared")
    s = batch.recommend_all(client, model, prepared, tmp_path / "b", k=K, partition_users=1000)
    got = _read(tmp_path / "b")
    assert s["users"] == got["userId"].nunique() == len(ds.users)
    rec = Recommender.load(model)
    for u in ds.users.ids[::97]:
        row = ds.user_row(u)
        pairs = [(m, float(v)) for m, v in zip(ds.items.ids[row.indices], row.data) if m < 9000]
        ids, _ = rec.recommend(pairs, k=K)
        np.testing.assert_array_equal(got[got["userId"] == u]["movieId"].to_numpy(), ids)


def test_output_directory_and_bad_input(data, client, tmp_path):
    _, model, csv = data
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NpcfError, match="not a batch recommendation output"):
        batch.recommend_all(client, model, csv, foreign, k=K)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(NpcfError, match="no such model file"):
        batch.recommend_all(client, tmp_path / "none.onnx", csv, tmp_path / "x", k=K)
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,2,abc,3\n")
    with pytest.raises(NpcfError, match="bad.csv:2"):
        batch.recommend_all(client, model, bad, tmp_path / "x", k=K)
    zeros = tmp_path / "zeros.parquet"
    pd.DataFrame({"userId": [1, 1], "movieId": [2, 3], "rating": [4.0, 0.0]}).to_parquet(zeros)
    with pytest.raises(NpcfError, match="zeros.parquet: 1 rating of 0"):
        batch.recommend_all(client, model, zeros, tmp_path / "x", k=K)
    assert not (tmp_path / "x").exists()


def _rescheduled(dask_scheduler=None) -> int:
    """Partitions the scheduler took back from a worker that was processing them."""
    return len({t[0] for t in dask_scheduler.transition_log if str(t[0]).startswith("npcf-batch-")
                and t[1] == "processing" and t[2] == "released"})


class _KillOnFirstPartition(CountingBar):
    """A progress factory whose first ``update`` SIGKILLs one worker process."""

    def __init__(self, client):
        super().__init__()
        self.client, self.killed = client, None

    def __call__(self, total, label, info=None):
        return self

    def update(self, n=1):
        super().update(n)
        if self.killed is None:
            pids = self.client.run(os.getpid)
            self.killed = sorted(pids.values())[0]
            os.kill(self.killed, signal.SIGKILL)


def test_worker_killed_mid_run_loses_and_duplicates_no_user(data, expected, client, tmp_path):
    _, model, csv = data
    kill = _KillOnFirstPartition(client)
    out = tmp_path / "recs"
    s = batch.recommend_all(client, model, csv, out, k=K, partition_users=100, progress=kill)
    assert kill.killed is not None and kill.done == s["partitions"] == 31
    client.wait_for_workers(2, timeout=60)
    assert kill.killed not in client.run(os.getpid).values()       # the nanny started a new one
    assert client.run_on_scheduler(_rescheduled) >= 1               # it died holding a partition
    names = sorted(os.listdir(out))
    assert names == [batch.MARKER] + [batch.part_name(i) for i in range(31)]   # no temp files
    _check_equal(_read(out), expected)
    assert s["users"] == N_USERS + 1


def test_read_users_takes_the_reader_options(tmp_path):
    """--format/--sep/--columns/--scale reach the reader: a tab file with its own column
    names on a 1-100 scale is read; options that cannot apply are refused by name."""
    from npcf.data.dataset import save_prepared
    from npcf.data.source import load_dataset
    from npcf.errors import DataError, ParamError
    rows = [(u, 100 + i, (u * 13 + i) % 100 + 1) for u in range(1, 21) for i in range(6)]
    tsv = tmp_path / "r.tsv"
    tsv.write_text("who\twhat\thow\n" + "".join(f"{u}\t{i}\t{r}\n" for u, i, r in rows))
    got = batch.read_users(tsv, sep="\t",
                           columns=("who", "what", "how"), scale=(1, 100))
    assert got.matrix.shape == (20, 6) and got.matrix.nnz == len(rows)
    assert got.matrix.data.max() <= 100 and got.scale == (1, 100)
    with pytest.raises(DataError, match="outside the scale 1-50"):
        batch.read_users(tsv, columns=("who", "what", "how"), scale=(1, 50))
    pq = tmp_path / "r.parquet"
    pd.DataFrame(rows, columns=["who", "what", "how"]).to_parquet(pq)
    assert batch.read_users(pq, columns="who,what,how").matrix.nnz == len(rows)
    with pytest.raises(DataError, match="no column 'nobody'"):
        batch.read_users(pq, columns="nobody,what,how")
    with pytest.raises(DataError, match="outside the scale"):
        batch.read_users(pq, columns="who,what,how", scale=(1, 50))
    with pytest.raises(ParamError, match="sep"):
        batch.read_users(pq, sep=";")
    prepared = save_prepared(load_dataset(tsv, columns=("who", "what", "how"), test_size=0.2),
                             tmp_path / "prep")
    with pytest.raises(ParamError, match="prepared directory"):
        batch.read_users(prepared, scale=(1, 100))


def test_parquet_ratings_beyond_float32_are_refused_by_name(tmp_path):
    from npcf.errors import DataError
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"userId": [1, 1, 2], "movieId": [1, 2, 1], "rating": [4.0, 1e39, 3.0]}) \
        .to_parquet(pq)
    with pytest.raises(DataError, match="r.parquet: rating 1e\\+39 is beyond the float32"):
        batch.read_users(pq)


@pytest.mark.parametrize("userId,rating,problem", [
    ([1, 1, 2], ["4", "good", "3"], "rating 'good' is not a number"),
    ([1, 1, 2], [4.0, float("nan"), 3.0], "Parquet holds missing ratings"),
    ([1, 1, 2], [4.0, None, 3.0], "Parquet holds missing ratings"),
    ([1, 1, 2], [4.0, float("inf"), 3.0], "rating inf is not a finite number"),
    ([1, None, 2], [4.0, 2.0, 3.0], "Parquet holds missing ids"),
])
def test_parquet_bad_values_are_named(tmp_path, userId, rating, problem):
    from npcf.errors import DataError
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"userId": userId, "movieId": [1, 2, 1], "rating": rating}).to_parquet(pq)
    with pytest.raises(DataError, match=f"r.parquet: {problem}"):
        batch.read_users(pq)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_mid_run_is_one_line_and_leaves_nothing(data, tmp_path, sig):
    """A Ctrl-C at the terminal reaches the whole process group: the workers printed their
    tracebacks, and tasks still running re-created the removed stage. Now one line, exit
    130/143, no output and no hidden directory left."""
    import subprocess
    import sys
    import time

    from conftest import REPO
    _, model, csv = data
    frame = pd.read_csv(csv)                  # 4x the users: scoring lasts seconds
    frame = pd.concat([frame.assign(userId=frame.userId + i * 10**6) for i in range(4)])
    big = tmp_path.parent / f"{tmp_path.name}-ratings.csv"
    frame.to_csv(big, index=False)
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "batch-recommend", "--model",
                             str(model), "--data", str(big), "--out", "recs", "-k", "5",
                             "--workers", "2", "--partition_users", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while not any(p.name.startswith(".recs.") and any(p.glob("part-*.parquet"))
                      for p in tmp_path.iterdir()):          # scoring under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, sig)                             # as a terminal sends Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err
    assert len(err.strip().splitlines()) == 1, err
    time.sleep(1)                                            # no late writer re-creates it
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())
