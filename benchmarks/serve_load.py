"""`npcf serve` under load, beside the same model's in-process ``Recommender.recommend``.

    python benchmarks/serve_load.py [--items 9066,45115] [--clients 1,8,64] [--seconds 10]
                                    [--soak 60] [--threads 2] [--dense] [--no-results]

For each catalogue size: a random-weight model (layers 1000-500-100, tied, residual,
top-10 in the graph; `infer_speed._model`) exported to ONNX (sparse input unless
``--dense``); users with 100 ratings each (`infer_speed._users`). In this process:
batch-1 ``Recommender.recommend(pairs, k=10)`` latency (median) and calls/s over a
bounded loop, measured before and after the HTTP runs (the better of the two
reported). Then ``python cli.py serve`` as a subprocess on 127.0.0.1 and, for each C,
C concurrent clients (async httpx, one connection each) posting /recommend
back to back for ``--seconds`` (at most ``MAX_REQUESTS`` requests): requests/s, p50/p99
latency, errors (non-200 or transport errors), server RSS before and after. With
``--soak`` S: one S-second run at the largest C on the largest catalogue for RSS growth.
Everything is local; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: requests one C-client run may send at most (the time bound usually ends it first)
MAX_REQUESTS = 200_000
#: seconds of the in-process batch-1 loop, and its call bound
INPROC_SECONDS, INPROC_CALLS = 4.0, 2000
#: in-process batch sizes timed beside batch 1 (``recommend`` on a CSR of that many users)
BATCHES = (8, 64)
#: users whose 100 ratings the clients cycle through
POOL = 256
LAYERS = (1000, 500, 100)
#: the targets of issue 13 at the largest catalogue
P99_FACTOR, P99_SLACK_MS, RSS_GROWTH = 3.0, 5.0, 0.05


def _rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (psutil, else /proc)."""
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(n_items: int, folder: Path, sparse: bool):
    """Export the benchmark model; returns (path, request bodies, rating pairs)."""
    import infer_speed

    from npcf.serving.export import export
    model = infer_speed._model(n_items, LAYERS)
    path = export(model, folder / f"model_{n_items}.onnx", sparse_input=sparse, top_k=10)
    users = infer_speed._users(POOL, n_items, seed=2)
    ids = model.items.ids
    pairs = [list(zip(ids[users[i].indices].tolist(), users[i].data.tolist())) for i in range(POOL)]
    bodies = [json.dumps({"ratings": [[m, r] for m, r in p], "k": 10}).encode() for p in pairs]
    return path, bodies, pairs


def in_process(rec, pairs) -> dict:
    """Batch-1 ``recommend`` latency (median, ms) and calls/s over a bounded loop."""
    import numpy as np
    for p in pairs[:5]:
        rec.recommend(p, k=10)
    t, start = [], time.perf_counter()
    while len(t) < INPROC_CALLS and time.perf_counter() - start < INPROC_SECONDS:
        t0 = time.perf_counter()
        rec.recommend(pairs[len(t) % len(pairs)], k=10)
        t.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    out = {"batch1_ms": 1e3 * float(np.median(t)), "calls_per_s": len(t) / wall, "calls": len(t)}
    for b in BATCHES:                      # what batching can gain on this machine now
        X = _rows(rec, pairs[:b])
        rec.recommend(X, k=10)
        t, start = [], time.perf_counter()
        while len(t) < INPROC_CALLS and time.perf_counter() - start < INPROC_SECONDS / 2:
            t0 = time.perf_counter()
            rec.recommend(X, k=10)
            t.append(time.perf_counter() - t0)
        out[f"batch{b}_ms"] = 1e3 * float(np.median(t))
    return out


def _rows(rec, pairs):
    """CSR float32 (len(pairs), n_items) of users' (movie id, rating) pairs."""
    import numpy as np
    import scipy.sparse as sp
    cols = [rec.items.index([m for m, _ in p]) for p in pairs]
    indptr = np.r_[0, np.cumsum([c.size for c in cols])]
    data = np.concatenate([np.asarray([r for _, r in p], np.float32) for p in pairs])
    X = sp.csr_matrix((data, np.concatenate(cols), indptr), shape=(len(pairs), rec.n_items))
    X.sort_indices()
    return X


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (what ``wrk`` does): the
    request bytes are built once per body, the response is read by its Content-Length.
    Costs the client a fraction of httpx's CPU per request, which matters when the load
    generator shares the server's cores."""

    def __init__(self, url: str):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc):
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    def request(self, path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of one request (``raw``: from :meth:`request`)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                      if k.strip().lower() == "content-length")
        return status, await self.reader.readexactly(length)


async def _load(url: str, bodies, clients: int, seconds: float, kind: str = "raw") -> dict:
    """C workers, each with its own keep-alive connection, posting back to back until
    ``seconds`` pass or :data:`MAX_REQUESTS` were sent; ``kind``: ``raw``
    (:class:`RawClient`) or ``httpx`` (one AsyncClient each: one shared pool of C
    connections costs the client several ms of CPU per request at C=64)."""
    import httpx
    import numpy as np
    lat, errors, sent = [], [0], [0]
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    def client():
        if kind == "raw":
            return RawClient(url)
        # plain http: verify=False skips loading a CA bundle per client (tens of ms each)
        return httpx.AsyncClient(base_url=url, limits=limits, timeout=30, verify=False)

    async def post(c, i: int) -> bool:
        if kind == "raw":
            status, body = await asyncio.wait_for(c.send(raws[i % len(raws)]), 30)
        else:
            r = await c.post("/recommend", content=bodies[i % len(bodies)], headers=headers)
            status, body = r.status_code, r.content
        return status == 200 and len(json.loads(body)["items"]) == 10

    raws = [RawClient(url).request("/recommend", b) for b in bodies]

    async def worker(w: int):
        i = w
        async with client() as c:
            while time.perf_counter() < end and sent[0] < MAX_REQUESTS:
                sent[0] += 1
                t0 = time.perf_counter()
                try:
                    ok = await post(c, i)
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError,
                        asyncio.TimeoutError, ValueError, KeyError, StopIteration):
                    ok = False
                i += clients
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors[0] += 1

    start = time.perf_counter()
    end = start + seconds
    await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(clients))), seconds + 60)
    wall = time.perf_counter() - start
    lat = np.asarray(lat) * 1e3
    return {"clients": clients, "seconds": wall, "requests": int(lat.size), "errors": errors[0],
            "req_per_s": lat.size / wall,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan")}


class Server:
    """``python cli.py serve`` on a free 127.0.0.1 port, stopped on exit."""

    def __init__(self, model: Path, threads: int, extra=()):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, str(ROOT / "cli.py"), "serve", "--model", str(model),
                    "--port", str(self.port), "--threads", str(threads), *extra]

    def __enter__(self):
        import httpx
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("server did not answer /health within 120 s")

    def rss(self) -> int:
        return _rss(self.proc.pid)

    def batching(self) -> dict:
        import httpx
        return httpx.get(self.url + "/model", timeout=10).json()["batching"]

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def run_model(n_items: int, clients, seconds: float, soak: float, threads: int, sparse: bool,
              tmp: Path, server_args=(), echo=print, client: str = "raw") -> dict:
    from npcf.serving.runtime import Recommender
    path, bodies, pairs = build(n_items, tmp, sparse)
    rec = Recommender.load(path, threads=threads)
    before = in_process(rec, pairs)
    echo(f"{n_items:,} movies in-process batch-1: {before['batch1_ms']:.2f} ms, "
         f"{before['calls_per_s']:.1f} calls/s; " + ", ".join(
             f"batch {b}: {before[f'batch{b}_ms']:.1f} ms" for b in BATCHES))
    runs, soak_row = [], None
    with Server(path, threads, server_args) as srv:
        asyncio.run(_load(srv.url, bodies, 8, 1.0, client))                  # warm-up
        for c in clients:
            rss0, b0 = srv.rss(), srv.batching()
            r = asyncio.run(_load(srv.url, bodies, c, seconds, client))
            b1 = srv.batching()
            r.update(rss_before_mb=rss0 / 1e6, rss_after_mb=srv.rss() / 1e6,
                     mean_batch=(b1["queries"] - b0["queries"]) / max(1, b1["batches"] - b0["batches"]))
            runs.append(r)
            echo(f"  C={c}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 "
                 f"{r['p99_ms']:.1f} ms, {r['errors']} errors, mean batch {r['mean_batch']:.1f}, "
                 f"RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB")
        if soak:
            c = max(clients)
            rss0 = srv.rss()
            r = asyncio.run(_load(srv.url, bodies, c, soak, client))
            r.update(rss_before_mb=rss0 / 1e6, rss_after_mb=srv.rss() / 1e6)
            r["rss_growth"] = r["rss_after_mb"] / r["rss_before_mb"] - 1
            soak_row = r
            echo(f"  soak C={c} {soak:.0f} s: {r['req_per_s']:.1f} req/s, {r['errors']} errors, "
                 f"RSS {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB "
                 f"({100 * r['rss_growth']:+.1f}%)")
    after = in_process(rec, pairs)
    best = min((before, after), key=lambda d: d["batch1_ms"])
    echo(f"  in-process again: {after['batch1_ms']:.2f} ms, {after['calls_per_s']:.1f} calls/s")
    return {"items": n_items, "threads": threads, "signature": "sparse" if sparse else "dense",
            "in_process": best, "in_process_runs": [before, after], "http": runs, "soak": soak_row}


def targets(row: dict) -> dict:
    """The issue's targets for one catalogue: met or not, with the figures."""
    b1 = row["in_process"]["batch1_ms"]
    by_c = {r["clients"]: r for r in row["http"]}
    out = {"errors": sum(r["errors"] for r in row["http"]) == 0}
    if 8 in by_c:
        out["p99_c8"] = by_c[8]["p99_ms"] <= P99_FACTOR * b1 + P99_SLACK_MS
    if 64 in by_c:
        out["rps_c64"] = by_c[64]["req_per_s"] >= row["in_process"]["calls_per_s"]
    if row["soak"]:
        out["rss_growth"] = row["soak"]["rss_growth"] < RSS_GROWTH
        out["errors"] = out["errors"] and row["soak"]["errors"] == 0
    return out


def markdown(res: dict) -> str:
    import report
    rows = []
    for m in res["models"]:
        ip = m["in_process"]
        rows.append((f"{m['items']:,}", "in-process `recommend` batch 1", "", "", "",
                     f"{ip['calls_per_s']:,.1f}", f"{ip['batch1_ms']:.1f}", "", "", ""))
        for b in BATCHES:
            rows.append((f"{m['items']:,}", f"in-process `recommend` batch {b}", "", "", "",
                         f"{b * 1e3 / ip[f'batch{b}_ms']:,.1f} users/s",
                         f"{ip[f'batch{b}_ms']:.1f}", "", f"{b}", ""))
        for r in m["http"] + ([m["soak"]] if m["soak"] else []):
            soak = r is m["soak"]
            side = "HTTP /recommend" + (f" ({r['seconds']:.0f} s soak)" if soak else "")
            rows.append((f"{m['items']:,}", side,
                         r["clients"], f"{r['requests']:,}", r["errors"], f"{r['req_per_s']:,.1f}",
                         f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                         f"{r.get('mean_batch', float('nan')):.1f}" if not soak else "",
                         f"{r['rss_before_mb']:,.0f} → {r['rss_after_mb']:,.0f}"))
    lines = [report.md_table(("movies", "side", "C", "requests", "errors", "req/s (calls/s)",
                              "p50 ms", "p99 ms", "mean batch", "server RSS MB"), rows,
                             "rlrrrrrrrr"), ""]
    for m in res["models"]:
        t = targets(m)
        by_c = {r["clients"]: r for r in m["http"]}
        b1 = m["in_process"]["batch1_ms"]
        parts = [f"0 errors: {'met' if t['errors'] else 'NOT met'}"]
        if "p99_c8" in t:
            parts.append(f"p99 at C=8 {by_c[8]['p99_ms']:.1f} ms <= 3 x {b1:.1f} + 5 = "
                         f"{P99_FACTOR * b1 + P99_SLACK_MS:.1f} ms: {'met' if t['p99_c8'] else 'NOT met'}")
        if "rps_c64" in t:
            parts.append(f"req/s at C=64 {by_c[64]['req_per_s']:,.1f} >= in-process "
                         f"{m['in_process']['calls_per_s']:,.1f} calls/s "
                         f"({by_c[64]['req_per_s'] / m['in_process']['calls_per_s']:.1f}x): "
                         f"{'met' if t['rps_c64'] else 'NOT met'}")
        if "rss_growth" in t:
            parts.append(f"RSS growth over {m['soak']['seconds']:.0f} s "
                         f"{100 * m['soak']['rss_growth']:+.1f}% < 5%: "
                         f"{'met' if t['rss_growth'] else 'NOT met'}")
        lines.append(f"- **{m['items']:,} movies** — " + "; ".join(parts))
    big = max(res["models"], key=lambda m: m["items"])
    ip, by_c = big["in_process"], {r["clients"]: r for r in big["http"]}
    if 8 in by_c and 64 in by_c:
        lines += ["", f"At {big['items']:,} movies in this run, ranking 8 users in one call took "
                  f"{ip['batch8_ms'] / ip['batch1_ms']:.1f}x the time of 1 and 64 users "
                  f"{ip['batch64_ms'] / ip['batch1_ms']:.1f}x: that is what micro-batching can "
                  f"gain here. The batcher waits (at most `--max_wait_ms`) only for the "
                  "queries the previous batch says are coming, so C=8 closed-loop clients are "
                  f"ranked in calls of {by_c[8]['mean_batch']:.1f} on average and a lone client "
                  "never waits; at C=64 a batch is full ("
                  f"{by_c[64]['mean_batch']:.1f}) and the HTTP side (JSON, checks and uvicorn "
                  "on one event loop, and the clients on the same cores) is what limits "
                  "requests/s."]
    a = res["args"]
    lines += ["", f"Server: `python cli.py serve --threads {a['threads']} --max_batch "
              f"{a['max_batch']} --max_wait_ms {a['max_wait_ms']:g} --pipelines "
              f"{a.get('pipelines', 1)}` (uvicorn {res['uvicorn']}, "
              f"starlette {res['starlette']}, one worker) as a "
              f"subprocess on 127.0.0.1; clients: C asyncio "
              + ("keep-alive HTTP/1.1 clients on raw streams (`RawClient`, what wrk does)"
                 if a.get("client", "httpx") == "raw" else f"httpx {res['httpx']} clients") +
              " (one connection each) in the benchmark process, posting /recommend back "
              f"to back for "
              f"{a['seconds']:g} s per C (bodies: 100 ratings, k=10); mean batch = queries per "
              f"onnxruntime call (the server's /model counters). Model: random weights, "
              f"layers 1000-500-100, tied, residual, top-10 in the graph, "
              f"{res['models'][0]['signature']} input, fp32. In-process: `Recommender.recommend("
              f"pairs, k=10)` in the benchmark process with {a['threads']} onnxruntime threads, "
              "median latency and calls/s over a bounded loop before and after the HTTP runs "
              "(the faster pass shown). Server and clients share the machine's "
              f"{res['machine']['cores']} cores ({res['machine']['cpu']}) with other jobs "
              f"(1-minute load average {res['loadavg_1min'][0]:.1f} at the start, "
              f"{res['loadavg_1min'][1]:.1f} at the end); run `{res['command']}` on "
              f"{res['date']}."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    import httpx
    import starlette
    import uvicorn

    import report
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", default="9066,45115")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--soak", type=float, default=60.0, help="0: no soak run")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--dense", action="store_true", help="export dense input instead of sparse")
    ap.add_argument("--max_batch", type=int, default=64)
    ap.add_argument("--max_wait_ms", type=float, default=5.0)
    ap.add_argument("--pipelines", type=int, default=1, help="serve --pipelines")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="load generator: a minimal asyncio HTTP/1.1 client, or httpx")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args(argv)
    items = [int(v) for v in args.items.split(",")]
    clients = [int(v) for v in args.clients.split(",")]
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    res = {"args": vars(args), "machine": report.machine(), "date": report.now(),
           "command": " ".join(["python benchmarks/serve_load.py",
                                *(sys.argv[1:] if argv is None else argv)]),
           "uvicorn": uvicorn.__version__, "starlette": starlette.__version__,
           "httpx": httpx.__version__, "models": [], "_load0": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for n in items:
            res["models"].append(run_model(n, clients, args.seconds,
                                           args.soak if n == max(items) else 0, args.threads,
                                           not args.dense, Path(tmp),
                                           server_args=("--max_batch", str(args.max_batch),
                                                        "--max_wait_ms", str(args.max_wait_ms),
                                                        "--pipelines", str(args.pipelines)),
                                           client=args.client))
    res["loadavg_1min"] = [res.pop("_load0"), os.getloadavg()[0]]
    res["targets"] = {m["items"]: targets(m) for m in res["models"]}
    print(json.dumps(res["targets"]))
    if not args.no_results:
        report.publish("serve", markdown(res), res)
    return res


if __name__ == "__main__":
    main()
