"""The micro-batcher: batched ranking equals one-user calls; the asyncio queue batches,
bounds and hands errors back; the app's error paths, in-process."""
import asyncio

import numpy as np
import pytest

pytest.importorskip("starlette")

from npcf.serving.batcher import Busy, MicroBatcher, Query, rank_queries  # noqa: E402
from npcf.serving.export import export  # noqa: E402
from npcf.serving.runtime import Recommender  # noqa: E402

from helpers import N_ITEMS, fitted_model  # noqa: E402


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    path = export(fitted_model(), tmp_path_factory.mktemp("batcher") / "model.onnx", top_k=10)
    return Recommender.load(path)


def test_rank_queries_equal_one_user_calls(rec):
    rng = np.random.default_rng(3)
    queries = []
    for i in range(12):
        n = 55 if i == 0 else int(rng.integers(0, 12))       # user 0: fewer unseen than k
        cols = np.sort(rng.choice(N_ITEMS, n, replace=False))
        exclude = np.unique(rng.choice(N_ITEMS, int(rng.integers(0, 4)), replace=False))
        k = [1, 3, 10, 25][i % 4]                             # 25 > the graph's top-10
        queries.append(Query(cols.astype(np.int64), (rng.integers(1, 11, n) / 2).astype(np.float32),
                             k, exclude.astype(np.int64)))
    for group in (queries, queries[1:4], [q for q in queries if q.k <= 3]):
        got = rank_queries(rec, group)
        assert len(got) == len(group)
        for q, (ids, scores) in zip(group, got):
            pairs = [(rec.item_ids[c].item(), float(v)) for c, v in zip(q.cols, q.values)]
            want_ids, want_scores = rec.recommend(pairs, k=q.k, filter_items=rec.item_ids[q.exclude])
            keep = np.isfinite(want_scores)
            np.testing.assert_array_equal(ids, want_ids[keep])
            np.testing.assert_allclose(scores, want_scores[keep], rtol=1e-5, atol=1e-6)
            allowed = set(range(N_ITEMS)) - set(q.cols.tolist()) - set(q.exclude.tolist())
            assert len(ids) == min(q.k, len(allowed))          # user 0: only 5 unseen movies
            assert set(np.searchsorted(rec.item_ids, ids).tolist()) <= allowed


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_batches_concurrent_items_up_to_max_batch():
    sizes = []

    def fn(items):
        sizes.append(len(items))
        return [x * 2 for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=4, max_wait_ms=50)
        await b.start()
        try:
            out = await asyncio.gather(*(b.submit(i) for i in range(10)))
            lone = await b.submit(21)                # a lone item is not held past max_wait
        finally:
            await b.close()
        return out, lone, b

    out, lone, b = _run(main())
    assert out == [2 * i for i in range(10)] and lone == 42
    assert max(sizes) <= 4 and sum(sizes) == 11 and len(sizes) < 11
    assert (b.batches, b.items) == (len(sizes), 11)


def test_a_lone_client_never_waits_and_a_closed_loop_is_one_batch():
    sizes = []

    def fn(items):
        sizes.append(len(items))
        return list(items)

    async def main():
        loop = asyncio.get_running_loop()
        b = MicroBatcher(fn, max_batch=16, max_wait_ms=2000)     # a wait the test would see
        await b.start()
        try:
            t0 = loop.time()
            await b.submit(0)                                   # expected: 1 item, no wait
            lone = loop.time() - t0
            await asyncio.gather(*(b.submit(i) for i in range(3)))   # the clients seen at once
            sizes.clear()

            async def late(i, delay):                           # a closed loop of 3 clients,
                await asyncio.sleep(delay)                      # answered at different times
                return await b.submit(i)
            t0 = loop.time()
            got = await asyncio.gather(late(0, 0), late(1, 0.05), late(2, 0.1))
            merged = loop.time() - t0
        finally:
            await b.close()
        return lone, got, merged

    lone, got, merged = _run(main())
    assert lone < 1.0                        # not held for max_wait (2 s)
    assert got == [0, 1, 2] and sizes == [3]  # the late two joined the first one's batch
    assert merged < 1.5                      # it left once all three came, not at the deadline


def test_pipelines_run_batches_at_once():
    import threading
    started = threading.Barrier(2, timeout=5)

    def fn(items):
        started.wait()                       # both batches must be running together
        return list(items)

    async def main():
        b = MicroBatcher(fn, max_batch=1, max_wait_ms=0, pipelines=2)
        await b.start()
        try:
            return await asyncio.gather(b.submit("a"), b.submit("b"))
        finally:
            await b.close()

    assert _run(main()) == ["a", "b"]
    with pytest.raises(ValueError, match="pipelines"):
        MicroBatcher(list, pipelines=0)


def test_errors_reach_their_callers_and_the_queue_is_bounded():
    calls = []

    def fn(items):
        calls.append(list(items))
        if "all" in items:
            raise RuntimeError("boom")
        return [ValueError(f"bad {x}") if x == "one" else x for x in items]

    async def main():
        b = MicroBatcher(fn, max_batch=8, max_wait_ms=1, max_queue=2)
        await b.start()
        try:
            res = await asyncio.gather(b.submit("ok"), b.submit("one"), return_exceptions=True)
            # a batch whose call raises is retried item by item: only "all" fails
            whole = await asyncio.gather(b.submit("x"), b.submit("all"), return_exceptions=True)
            # fill the queue without yielding to the consumer: the third is refused
            tasks = [asyncio.ensure_future(b.submit(i)) for i in range(3)]
            done = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await b.close()
        return res, whole, done

    res, whole, done = _run(main())
    assert res[0] == "ok" and isinstance(res[1], ValueError) and "bad one" in str(res[1])
    assert whole[0] == "x" and isinstance(whole[1], RuntimeError)
    assert ["x", "all"] in calls and ["x"] in calls and ["all"] in calls    # retried alone
    assert sum(isinstance(d, Busy) for d in done) == 1 and [d for d in done if not
                                                         isinstance(d, Busy)] == [0, 1]


def test_app_error_paths_in_process(rec):
    import httpx

    from npcf.serving.server import create_app

    class Broken:                                      # ranking fails: a 500, one line
        def __getattr__(self, name):
            return getattr(rec, name)

        def recommend(self, *a, **kw):
            raise RuntimeError("exploded\nsecond line")

    async def call(app, method, url, **kw):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app):          # starts the batcher
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, url, **kw)

    r = _run(call(create_app(rec), "GET", "/users/1/recommendations"))
    assert r.status_code == 404 and "--data" in r.json()["error"]
    r = _run(call(create_app(rec), "POST", "/recommend", json={"ratings": [[1001, 4]], "k": 2}))
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = _run(call(create_app(Broken()), "POST", "/recommend", json={"ratings": [[1001, 4]]}))
    assert r.status_code == 500 and r.json() == {
        "error": "internal error (RuntimeError: exploded second line)"}
