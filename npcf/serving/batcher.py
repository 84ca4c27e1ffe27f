"""Micro-batching for a server: concurrent one-user queries ranked in ONE model call.

:class:`MicroBatcher` is the asyncio side (as Triton's dynamic batching): submitted items
wait in a bounded queue; a single consumer takes what is queued, waits at most
``max_wait_ms`` for more (up to ``max_batch``), runs the batch function in a worker
thread (the event loop stays free) and hands each caller its own result. Up to
``pipelines`` batches run at once (Triton's "instance count"): queries that arrive while
one batch is ranked start the next at once instead of waiting for it to finish.

:func:`rank_queries` is the batch function for recommendations: the users' rows are
stacked into one CSR and ranked by one ``Recommender.recommend`` call; each query then
gets exactly what a single ``recommend(row, k=k, filter_items=exclude)`` returns for it.
Imports numpy, scipy and the standard library only.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


class Busy(Exception):
    """The queue is full: the server has more waiting work than it accepts."""


@dataclass
class Query:
    """One user's request: ``cols`` int64 (n,) the column indices of the movies rated
    (unique), ``values`` float32 (n,) their non-zero ratings, ``k`` >= 1, and
    ``exclude`` int64 column indices never to recommend."""

    cols: np.ndarray
    values: np.ndarray
    k: int = 10
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def rank_queries(recommender, queries: list[Query]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(ids, scores), ...]`` per query (``recommender``: a
    :class:`~npcf.serving.runtime.Recommender`): raw movie ids and float32 scores, best first,
    at most ``k`` of them, padding (fewer unseen movies than ``k``) dropped.

    One ``recommender.recommend`` call ranks the stacked rows (the user's own movies
    masked) to ``K = max(k + len(exclude))``; each query then drops its excluded movies
    and keeps its first ``k``. That equals ranking it alone with its exclusions: the
    top ``k + e`` of a list minus ``e`` of its members hold the top ``k`` of the rest, in
    the same order (one total order: score, then column)."""
    if not queries:
        return []
    n = recommender.n_items
    indptr = np.zeros(len(queries) + 1, np.int64)
    np.cumsum([q.cols.size for q in queries], out=indptr[1:])
    X = sp.csr_matrix((np.concatenate([q.values for q in queries]).astype(np.float32, copy=False),
                       np.concatenate([q.cols for q in queries]).astype(np.int64, copy=False),
                       indptr), shape=(len(queries), n))
    K = min(n, max(q.k + q.exclude.size for q in queries))
    ids, scores = recommender.recommend(X, k=K, filter_seen=True)
    raw = recommender.items.ids
    out = []
    for i, q in enumerate(queries):
        keep = np.isfinite(scores[i])
        if q.exclude.size:
            keep &= ~np.isin(ids[i], raw[q.exclude])
        out.append((ids[i][keep][:q.k], scores[i][keep][:q.k]))
    return out


class MicroBatcher:
    """Batches items submitted from the event loop for ``fn(items) -> results`` (a list of
    the same length; an item's result may be an exception, raised to its caller; a batch
    whose call raises is retried item by item).

    ``max_batch``: items per call; ``max_wait_ms``: how long a batch stays open for the
    items it expects once its first item is taken (see :meth:`_collect`); ``max_queue``:
    waiting items beyond which :meth:`submit` raises :class:`Busy`; ``pipelines``: batches
    in flight at once, each on its own worker thread (``fn`` must then be safe to call
    from several threads, as an onnxruntime session's ``run`` is). Use :meth:`start` and
    :meth:`close` inside the running loop.
    """

    def __init__(self, fn, max_batch: int = 64, max_wait_ms: float = 5.0, max_queue: int = 4096,
                 pipelines: int = 1):
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1 or pipelines < 1:
            raise ValueError("max_batch, max_queue and pipelines must be >= 1, max_wait_ms >= 0")
        self.fn, self.max_batch, self.max_wait = fn, int(max_batch), float(max_wait_ms) / 1e3
        self.max_queue, self.pipelines = int(max_queue), int(pipelines)
        self.batches = self.items = 0            # counters, for /model and the benchmarks
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self._expect = 1                         # items the next batch waits for

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._slots = asyncio.Semaphore(self.pipelines)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.pipelines,
                                                           thread_name_prefix="npcf-batch")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for task in [self._task, *self._running]:
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._task = None
        self._running.clear()
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(Busy("the server is shutting down"))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def submit(self, item):
        """The result of ``item`` once its batch ran (raises what ``fn`` gave for it)."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.submit before start()")
        fut = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut))
        except asyncio.QueueFull:
            raise Busy(f"more than {self.max_queue} queries waiting") from None
        return await fut

    def _call(self, items: list) -> list:
        """``fn(items)``; when the batch fails, each item alone, so one bad item fails only
        its own caller (the result is then its exception)."""
        try:
            results = self.fn(items)
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for "
                                   f"{len(items)} items")
            return results
        except Exception as err:             # noqa: BLE001 - handed to the callers
            if len(items) == 1:
                return [err]
        out = []
        for item in items:
            try:
                out.extend(self.fn([item])[:1])
            except Exception as err:         # noqa: BLE001
                out.append(err)
        return out

    async def _collect(self) -> list:
        """The next batch: the first waiting item, then whatever is queued, then up to
        ``max_wait`` more for the items the last batch suggests are coming (its size plus
        what queued behind it: the clients seen at once), at most ``max_batch``. A lone
        client never waits (one item expected); a closed loop of C clients is answered in
        one call of about C rather than in alternating halves."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        target = min(self.max_batch, max(1, self._expect))
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            while not self._queue.empty() and len(batch) < self.max_batch:
                batch.append(self._queue.get_nowait())
            left = deadline - loop.time()
            if len(batch) >= target or left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()           # a free pipeline, then its batch
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            live = [(item, fut) for item, fut in batch if not fut.done()]   # caller gone
            if not live:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._rank(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _rank(self, live: list) -> None:
        """Run one batch on a worker thread and hand out its results; frees its slot."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._call, [i for i, _ in live])
        except asyncio.CancelledError:
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(Busy("the server is shutting down"))
            raise
        finally:
            self._slots.release()
        self.batches += 1
        self.items += len(live)
        self._expect = len(live) + self._queue.qsize()
        for (_, fut), res in zip(live, results):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
