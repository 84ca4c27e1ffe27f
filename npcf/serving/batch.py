"""Recommendations for every user, one user partition per task, on Dask distributed.

:func:`score_partition` is the unit of work: plain pandas in (long ``userId, movieId,
rating``; every rating of each user it holds), pandas out (``userId, rank, movieId,
score``), so Spark's ``mapInPandas`` or Ray's ``map_batches`` can call it as Dask does.
Each process keeps one loaded :class:`~npcf.serving.runtime.Recommender` per model file
(:func:`recommender`), so a worker opens the ONNX session once.

:func:`recommend_all` drives a Dask client: the client reads the ratings once with
npcf's readers and writes them, sorted by user, to a Parquet file inside the output's
staging directory, one row group per partition of ``partition_users`` users; each task
reads only its row group (the task payload is a few paths and numbers), scores it and
writes ``part-NNNNN.parquet`` atomically, returning counts. A partition retried after
an error or a lost worker overwrites its own file, so every user appears exactly once.
The output directory is swapped in whole when every partition is done (:data:`MARKER`
lists the parts). Model, ratings and output must be on storage every worker can see.

Needs the ``distributed`` extra (dask, distributed, pyarrow), imported lazily.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from npcf.data.dataset import is_prepared, load_prepared
from npcf.data.ratings import Ratings, build_ratings, rating_problem
from npcf.data.readers import check_columns, rating_columns, read_ratings
from npcf.errors import DataError, NpcfError, ParamError, one_line, positive_int, warned_elsewhere
from npcf.evaluation.ranking import outside_scale
from npcf.rundir import check_export_fresh, check_target
from npcf.serving.runtime import Recommender
from npcf.utils.files import atomic_path, staged_dir, write_json
from npcf.utils.progress import open_progress
from npcf.utils.signals import DeferredSignals
from npcf.utils.sparse import entry_rows

IN_COLUMNS = ("userId", "movieId", "rating")
OUT_COLUMNS = ("userId", "rank", "movieId", "score")
#: users per partition: a task holds this many users' ratings and top-k lists
PARTITION_USERS = 4096
#: the file that shows npcf wrote a batch output directory (parts, counts, options)
MARKER = "_npcf_batch.json"
PART_GLOB = "part-*.parquet"
#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10.0
EXTRA = "pip install 'npcf[distributed]'"


def need(module: str):
    """Import ``module`` of the ``distributed`` extra, or NpcfError naming the extra."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NpcfError(f"batch recommendations need {module.split('.')[0]}: {EXTRA}") from None


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


# ------------------------------------------------------------------ partition function
_CACHE: dict = {}


def recommender(model_path, threads: int = 1, batch_size: int = 256) -> Recommender:
    """The process's :class:`Recommender` of ``model_path`` (loaded on first use, again
    only when the file's size or mtime changes; one model kept per process)."""
    path = Path(model_path).resolve()
    try:
        st = path.stat()
    except OSError:
        raise NpcfError(f"{model_path}: no such model file") from None
    key = (str(path), st.st_mtime_ns, st.st_size, threads, batch_size)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = Recommender.load(path, threads=threads, batch_size=batch_size)
    return _CACHE[key]


def id_column(values: pd.Series, name: str) -> np.ndarray:
    """The ids of a column as int64 or str: whole numbers stored as floats (Spark doubles,
    a Parquet column with nulls once) become int64; DataError for other floats."""
    a = values.to_numpy()
    if a.dtype.kind != "f":
        return a
    if not np.isfinite(a).all() or (a != np.round(a)).any():
        raise DataError(f"{name} holds numbers that are not whole ids (e.g. "
                        f"{a[~np.isfinite(a) | (a != np.round(a))][0]!r})")
    return a.astype(np.int64)


def user_matrix(frame: pd.DataFrame, items) -> tuple[np.ndarray, sp.csr_matrix, int]:
    """``(user ids sorted, CSR float32 (users, len(items)), ratings of unknown movies)``
    from a long ``userId, movieId, rating`` frame; ``items``: the model's Vocabulary.

    Duplicate (user, movie) pairs keep the later row (as the readers do); movies the
    model does not know are dropped (their users stay, with what is left)."""
    missing = [c for c in IN_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"partition lacks the columns {', '.join(missing)} (has "
                        f"{', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        return np.zeros(0, np.int64), sp.csr_matrix((0, len(items)), dtype=np.float32), 0
    rating = frame["rating"].to_numpy(dtype=np.float64)
    problem = rating_problem(rating)
    if problem:
        raise DataError(problem)
    r = build_ratings(id_column(frame["userId"], "userId"),
                      id_column(frame["movieId"], "movieId"), rating)
    m = r.matrix
    cols = items.index(r.items.ids, missing="ignore")[m.indices]
    known = cols >= 0
    X = sp.csr_matrix((m.data[known], (entry_rows(m)[known], cols[known])),
                      shape=(m.shape[0], len(items)), dtype=np.float32)
    return r.users.ids, X, int((~known).sum())


def recommend_sorted(rec: Recommender, X: sp.csr_matrix, k: int):
    """``rec.recommend(X, k)`` (ids, scores (B, k')) with the users sorted by history length
    first, so each session run holds users of similar length (the runtime bounds the
    padded entries per run, :data:`npcf.serving.runtime.PADDED_ENTRIES`)."""
    order = np.argsort(np.diff(X.indptr), kind="stable")
    got_ids, got_scores = rec.recommend(X[order], k=k)
    ids, scores = np.empty_like(got_ids), np.empty_like(got_scores)
    ids[order], scores[order] = got_ids, got_scores
    return ids, scores


def top_k_frame(rec: Recommender, users: np.ndarray, X: sp.csr_matrix, k: int) -> pd.DataFrame:
    """:func:`recommend_sorted` as a long frame ``userId, rank (1..k, int32), movieId,
    score (float32)``, best first per user; padding (fewer unseen movies than k) left out."""
    ids, scores = recommend_sorted(rec, X, k)
    width = ids.shape[1]
    keep = np.isfinite(scores).ravel()
    return pd.DataFrame({
        "userId": np.repeat(users, width)[keep],
        "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), len(users))[keep],
        "movieId": ids.ravel()[keep],
        "score": scores.ravel()[keep].astype(np.float32),
    })


def score_partition(frame: pd.DataFrame, model_path, k: int = 10, *, threads: int = 1,
                    batch_size: int = 256, counts: dict | None = None) -> pd.DataFrame:
    """Top-``k`` unseen movies for every user in ``frame`` (long ``userId, movieId,
    rating``, holding *all* of each of its users' ratings), as ``userId, rank, movieId,
    score`` sorted by user then rank; equal to ``Recommender.load(model_path).recommend``
    on the same users. ``counts`` (optional dict) receives ``users``, ``rows``,
    ``unknown_ratings`` and ``users_without_known_movies``."""
    rec = recommender(model_path, threads, batch_size)
    users, X, unknown = user_matrix(frame, rec.items)
    out = top_k_frame(rec, users, X, k)
    if counts is not None:
        counts.update(users=len(users), rows=len(out), unknown_ratings=unknown,
                      users_without_known_movies=int((np.diff(X.indptr) == 0).sum()))
    return out


# ------------------------------------------------------------------------------- input
def read_users(data, *, format: str = "auto", sep=None, columns=None, scale=None) -> Ratings:
    """Everything known of each user in ``data``: a ratings file any npcf reader reads
    (MovieLens csv/dat, u.data, delimited; ``format``, ``sep``, ``columns`` and ``scale`` as
    in :func:`~npcf.data.read_ratings`), a prepared directory (every rating of it, the
    held-out test part included; its format is fixed, so none of those may be given) or Parquet (a file or a
    directory of them) with user, movie and rating columns (found by name, or named by
    ``columns``; ratings checked against ``scale``). DataError (one line, naming the path)
    when it cannot be read."""
    path = Path(data)
    given = [k for k, v in (("format", format != "auto"), ("sep", sep is not None),
                            ("columns", columns is not None), ("scale", scale is not None)) if v]
    if is_prepared(path):
        if given:
            raise ParamError(given[0], f"{path} is a prepared directory (its format is fixed)")
        ds = load_prepared(path)
        return Ratings(ds.known_ratings(), ds.users, ds.items, source=str(path))
    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        if set(given) & {"format", "sep"}:
            raise ParamError(next(g for g in given if g in ("format", "sep")),
                             f"{path} is Parquet (only columns and scale apply to it)")
        return _read_parquet(path, check_columns(columns), scale)
    if path.is_dir():
        raise DataError("a directory that is neither a prepared data set (no stats.json) nor "
                        "holds Parquet files", path)
    return read_ratings(path, format, sep=sep, columns=columns, scale=scale)


def _read_parquet(path: Path, columns=None, scale=None) -> Ratings:
    pq = need("pyarrow.parquet")
    try:
        names = pq.read_schema(path).names if path.is_file() else \
            pq.ParquetDataset(path).schema.names
    except (OSError, ValueError) as err:     # pyarrow's errors derive from these
        raise DataError(f"cannot read Parquet: {one_line(err)[:200]}", path) from None
    cols = list(columns[:3]) if columns else list(rating_columns(names))
    absent = [c for c in cols if c is not None and c not in names]
    if absent:
        raise DataError(f"Parquet has no column {absent[0]!r} (has {', '.join(names)})", path)
    if None in cols:
        raise DataError(f"Parquet lacks a user, movie or rating column (has {', '.join(names)});"
                        " name them with --columns", path)
    try:
        frame = pd.read_parquet(path, columns=cols)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read Parquet: {one_line(err)[:200]}", path) from None
    if frame[cols[:2]].isna().any().any():
        raise DataError("Parquet holds missing ids", path)
    if frame[cols[2]].isna().any():
        raise DataError("Parquet holds missing ratings (null or NaN)", path)
    numeric = pd.to_numeric(frame[cols[2]], errors="coerce")
    if numeric.isna().any():                       # (nulls were refused above)
        raise DataError(f"rating {frame[cols[2]][numeric.isna()].iloc[0]!r} is not a number",
                        path)
    rating = numeric.to_numpy(np.float64)
    problem = rating_problem(rating, scale)
    if problem:
        raise DataError(problem, path)
    if len(frame) == 0:
        raise DataError("no ratings in the Parquet input", path)
    try:
        users, items = (id_column(frame[c], c) for c in cols[:2])
    except DataError as err:
        raise DataError(err.problem, path) from None
    return build_ratings(users, items, rating, scale=scale, source=str(path))


def stage_input(ratings: Ratings, path, partition_users: int = PARTITION_USERS) -> list[dict]:
    """Write ``ratings`` (users with at least one rating) to Parquet ``path``, one row group
    per partition of ``partition_users`` users. Partitions hold users of similar history
    length (users ordered by rating count, then row), each sorted by user inside: a
    sparse-input session run pads every user to its longest history, so this is the
    padding a single process sorting all users would have. Returns one dict per
    partition: ``row_group``, ``users``, ``ratings``, ``longest`` (history length)."""
    pa, pq = need("pyarrow"), need("pyarrow.parquet")
    m = ratings.matrix
    lengths = np.diff(m.indptr)
    rows = np.flatnonzero(lengths > 0)
    rows = rows[np.argsort(lengths[rows], kind="stable")]
    parts, path = [], Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for g, lo in enumerate(range(0, rows.size, max(1, int(partition_users)))):
            sel = np.sort(rows[lo:lo + partition_users])
            sub = m[sel]
            table = pa.table({"userId": ratings.users.ids[sel[entry_rows(sub)]],
                              "movieId": ratings.items.ids[sub.indices],
                              "rating": sub.data.astype(np.float32)})
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=len(table))
            parts.append({"row_group": g, "users": int(sel.size), "ratings": int(sub.nnz),
                          "longest": int(lengths[sel].max())})
    finally:
        if writer is not None:
            writer.close()
    return parts


# ------------------------------------------------------------------------------ tasks
def _peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM) in MB, where /proc tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def warm(model_path, threads: int = 1, batch_size: int = 256) -> int:
    """Load ``model_path`` into this process's cache (:func:`recommender`); the pid. Run on
    every worker while the client stages the input, so no task waits for the session.
    Warnings about the model were shown by the client, which loaded it first."""
    with warned_elsewhere():
        recommender(model_path, threads, batch_size)
    return os.getpid()


def run_partition(spec: dict) -> dict:
    """One task: read row group ``spec['row_group']`` of ``spec['input']``, score it, write
    ``spec['out']`` atomically; counts (and this worker's pid and peak RSS) back. A bad
    input comes back as ``{'error': ...}`` (not retried); other errors raise (retried)."""
    pq = need("pyarrow.parquet")
    t0, cpu0 = time.perf_counter(), time.process_time()
    counts = {}
    try:
        frame = pq.ParquetFile(spec["input"]).read_row_group(spec["row_group"]).to_pandas()
        out = score_partition(frame, spec["model"], spec["k"], threads=spec["threads"],
                              batch_size=spec["batch_size"], counts=counts)
    except NpcfError as err:
        return {"error": one_line(err), "part": spec["part"]}
    # never re-create the stage: an interrupted run removed it while this task ran
    with atomic_path(spec["out"], suffix=".parquet", make_parent=False) as tmp:
        out.to_parquet(tmp, index=False)
    return dict(counts, part=spec["part"], pid=os.getpid(), peak_rss_mb=_peak_rss_mb(),
                seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - cpu0)


def recommend_all(client, model, ratings, out, *, k: int = 10,
                  partition_users: int = PARTITION_USERS, threads: int = 1,
                  batch_size: int = 256, retries: int = 3, progress=None) -> dict:
    """Top-``k`` unseen movies for every user of ``ratings`` (a path :func:`read_users`
    reads, or :class:`Ratings`), computed on Dask ``client``'s workers, written to
    directory ``out`` as ``part-NNNNN.parquet`` (``userId, rank, movieId, score``) plus
    :data:`MARKER`. ``threads``: onnxruntime threads per task; ``retries``: attempts
    after a task error (a lost worker's partition is rescheduled by Dask either way).
    Returns counts only: ``users``, ``rows``, ``partitions``, ``unknown_ratings``,
    ``users_without_known_movies``, ``duplicates_resolved`` (repeated (user, movie) rows
    of the input, the latest kept), ``seconds`` (all of it), ``scoring_seconds`` (first
    task submitted to last result), ``peak_rss_mb`` per worker pid."""
    distributed = need("distributed")
    t0 = time.perf_counter()
    model = Path(model).resolve()
    rec = recommender(model, threads, batch_size)         # fails here, not on every worker
    k = positive_int(k, "k")
    partition_users = positive_int(partition_users, "partition_users")
    inputs = (model, None if isinstance(ratings, Ratings) else ratings)
    out = check_target(out, (PART_GLOB, MARKER), "batch recommendation output",
                       markers=(MARKER,), inputs=inputs)
    users = ratings if isinstance(ratings, Ratings) else read_users(ratings)
    run = uuid.uuid4().hex[:12]
    with contextlib.suppress(Exception):     # an optimisation only: tasks load it anyway
        for w in client.scheduler_info()["workers"]:
            distributed.fire_and_forget(client.submit(
                warm, str(model), int(threads), int(batch_size), workers=[w],
                allow_other_workers=False, pure=False, key=f"npcf-warm-{run}-{w}"))
    # Ctrl-C and SIGTERM are acted on between results (raised where they land, one could
    # hit a Dask garbage-collector callback, whose exceptions Python ignores: lost)
    with staged_dir(out) as stage, DeferredSignals() as signals:
        staged = stage / ".input.tmp" / "ratings.parquet"
        parts = stage_input(users, staged, partition_users)
        specs = [dict(input=str(staged.resolve()), row_group=p["row_group"], part=i,
                      out=str((stage / part_name(i)).resolve()), model=str(model), k=int(k),
                      threads=int(threads), batch_size=int(batch_size))
                 for i, p in enumerate(parts)]
        t_submit = time.perf_counter()
        # the costliest partitions (users x longest history) first: no long one is left
        # to run alone at the end while the other workers idle
        cost = [p["users"] * p["longest"] for p in parts]
        futures = [client.submit(run_partition, specs[i], key=f"npcf-batch-{run}-{i:05d}",
                                 retries=retries, pure=False, priority=len(specs) - rank)
                   for rank, i in enumerate(np.argsort(cost, kind="stable")[::-1])]
        results = []
        try:
            with open_progress(progress, len(futures), "scoring partitions") as bar:
                done = distributed.as_completed(futures)
                while not done.is_empty():
                    signals.check()
                    ready = done.next_batch(block=False)
                    if not ready:
                        time.sleep(0.02)
                    for fut in ready:
                        try:
                            res = fut.result()
                        except distributed.KilledWorker as err:
                            raise NpcfError(f"a partition lost its worker too often (out of "
                                            f"memory? try a smaller --partition_users): "
                                            f"{one_line(err)[:160]}") from None
                        if "error" in res:
                            raise NpcfError(res["error"])
                        results.append(res)
                        bar.update(1)
        finally:
            client.cancel(futures)
        scoring = time.perf_counter() - t_submit
        shutil.rmtree(staged.parent, ignore_errors=True)
        for p in stage.iterdir():              # temp files of attempts cut short by a lost worker
            if p.name.startswith("."):
                with contextlib.suppress(OSError):
                    p.unlink()
        summary = _summary(results, parts, rec, users, time.perf_counter() - t0, scoring)
        write_json(stage / MARKER, dict(summary, model=str(model), k=int(k),
                                        input=getattr(users, "source", ""),
                                        parts=[part_name(i) for i in range(len(parts))]))
        signals.check()                       # one noted since: the output is not kept
    return dict(summary, out=str(out))


def _summary(results, parts, rec, users: Ratings, seconds, scoring) -> dict:
    rss: dict = {}
    for r in results:
        if r.get("peak_rss_mb") is not None:
            rss[r["pid"]] = max(rss.get(r["pid"], 0.0), r["peak_rss_mb"])
    n_users = sum(r["users"] for r in results)
    return {"users": n_users, "rows": sum(r["rows"] for r in results),
            "partitions": len(parts), "movies": rec.n_items,
            "ratings": sum(p["ratings"] for p in parts),
            "users_without_ratings": int(users.matrix.shape[0] - n_users),
            "duplicates_resolved": int(users.duplicates_resolved),
            "unknown_ratings": sum(r["unknown_ratings"] for r in results),
            "users_without_known_movies": sum(r["users_without_known_movies"] for r in results),
            "seconds": seconds, "scoring_seconds": scoring,
            "task_seconds": sum(r["seconds"] for r in results),
            "task_cpu_seconds": sum(r.get("cpu_seconds", 0.0) for r in results),
            "peak_rss_mb": {str(pid): mb for pid, mb in sorted(rss.items())}}


# --------------------------------------------------------------------------- clusters
@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2,
                timeout: float = CONNECT_TIMEOUT):
    """A Dask ``Client``: connected to ``scheduler`` (an address such as
    ``tcp://host:8786``; NpcfError if nothing answers within ``timeout`` s), or to a new
    ``LocalCluster`` of ``workers`` processes on 127.0.0.1 with one thread each (worker
    profiling off)."""
    distributed = need("distributed")
    if scheduler:
        from distributed.comm import parse_address
        from distributed.comm.registry import backends
        scheme, _ = parse_address(scheduler)
        if scheme not in backends:
            raise ParamError("scheduler", f"{scheduler!r}: unknown address scheme {scheme!r}; "
                             f"use one of {', '.join(s + '://' for s in sorted(backends))}")
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (ValueError, TypeError) as err:           # "tcp://": no host or port
            raise ParamError("scheduler", f"{scheduler!r} is not a scheduler address "
                             f"({one_line(err)[:160]}); e.g. tcp://host:8786") from None
        except (OSError, TimeoutError) as err:
            raise NpcfError(f"--scheduler {scheduler}: cannot connect within {timeout:g} s "
                            f"({one_line(err)[:160]})") from None
        with client:
            yield client
        return
    if workers < 1:
        raise NpcfError(f"--workers must be at least 1, got {workers}")
    dask = need("dask")
    # the workers' statistical profiler samples every thread's stack every 10 ms: a
    # diagnostic this batch job does not use, and ~5-10% of a scoring worker's time here
    # the workers ignore SIGINT (npcf.serving.dask_worker): this process stops them
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.worker.preload": ["npcf.serving.dask_worker"]}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                     silence_logs=logging.CRITICAL + 10) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def batch_recommend(model, data, out, *, k: int = 10, scheduler: str | None = None,
                    workers: int = 2, partition_users: int = PARTITION_USERS,
                    timeout: float = CONNECT_TIMEOUT, progress=None,
                    reader_options: dict | None = None) -> dict:
    """`batch-recommend`: check the model and read ``data`` on this machine first (bad
    input fails before a cluster starts), then :func:`recommend_all` on :func:`dask_client`.
    ``reader_options``: :func:`read_users` keywords (format, sep, columns, scale)."""
    need("distributed")
    need("pyarrow")
    check_export_fresh(recommender(model).meta, model)
    check_target(out, (PART_GLOB, MARKER), "batch recommendation output", markers=(MARKER,),
                 inputs=(model, data))
    rec = recommender(model)
    if positive_int(k, "k") > rec.n_items:
        raise ParamError("k", f"{k}: the model has only {rec.n_items:,} movies")
    source = Path(data)
    if any((d / MARKER).is_file() for d in (source, source.parent)):
        raise NpcfError(f"{data}: is batch-recommend's output (recommended movies and their "
                        "scores), not ratings; pass the users' ratings")
    users = read_users(data, **(reader_options or {}))
    problem = outside_scale(users.matrix.data, rec.rating_scale)
    if problem:                                   # before a cluster starts
        raise NpcfError(f"{data}: {problem} ({model})")
    rated = users.items.ids[np.unique(users.matrix.indices)]
    if rated.size and rec.items is not None and \
            not (rec.items.index(rated, missing="ignore") >= 0).any():
        raise NpcfError(f"{data}: none of the {rated.size:,} movies it rates is one {model} "
                        "knows; every user would get the same cold-start list (ratings of "
                        "another catalogue?)")
    with dask_client(scheduler, workers, timeout) as client:
        return recommend_all(client, model, users, out, k=k, partition_users=partition_users,
                             progress=progress)
