"""`npcf serve`: recommendations over HTTP (Starlette on uvicorn, the ``serve`` extra).

Routes (JSON in and out; raw movie ids)::

    POST /recommend             {"ratings": [[movieId, rating], ...], "k": 10, "exclude": [id, ...]}
                                ("ratings" may also be an object {"movieId": rating, ...})
                                -> {"items": [{"movie_id", "title", "score"}, ...], "unknown_ids": [...]}
    POST /recommend/batch       {"users": [<a /recommend body>, ...]} -> {"results": [...]}
    GET  /users/{id}/recommendations?k=10&exclude=1,2   (started with prepared --data;
                                exclude may repeat: exclude=1&exclude=2)
    GET  /health                {"status": "ok"}
    GET  /model                 the model's metadata and the server's settings

Concurrent queries are micro-batched (:mod:`npcf.serving.batcher`) into one
onnxruntime call on the one shared session. Bad requests get a 4xx and a one-line
``{"error": "..."}``: 422 malformed (bad JSON, wrong types, non-finite ratings, k out of
range), 413 a body over ``max_body`` bytes, 404 unknown user or route, 405 wrong method,
503 when the queue is full; anything unexpected is a 500 with one line, no traceback.
Unknown movie ids in a request are ignored and listed in ``unknown_ids``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import numpy as np

from npcf.data.vocab import EXACT_FLOAT_INT, int_text
from npcf.errors import NpcfError, one_line, shown, warned_elsewhere
from npcf.serving.batcher import Busy, MicroBatcher, Query, rank_queries
from npcf.utils.format import json_float

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as _err:            # the optional extra is not installed
    raise NpcfError(f"npcf serve needs {(_err.name or 'starlette').split('.')[0]}: "
                    "pip install 'npcf[serve]'") from None

#: defaults of :func:`create_app` / `npcf serve`
MAX_BATCH, MAX_WAIT_MS, MAX_BODY = 64, 5.0, 1 << 20
#: batches ranked at once (each on its own thread, one shared session)
PIPELINES = 1
#: users one /recommend/batch request may hold
MAX_USERS = 1024
#: recommendations (the sum of the users' k) one /recommend/batch request may ask for: the
#: response is built in memory (~600 bytes of JSON per recommendation)
MAX_RESULTS = 100_000
#: environment variable carrying :func:`serve`'s settings to worker processes
CONFIG_ENV = "NPCF_SERVE_CONFIG"
_FIELDS = ("ratings", "k", "exclude")


class RequestError(Exception):
    """A bad request: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, one_line(message)
        super().__init__(self.message)


def _error(status: int, message: str) -> JSONResponse:
    """The JSON error; a 503 (busy, stopping) says when to retry."""
    return JSONResponse({"error": one_line(message)}, status_code=status,
                        headers={"Retry-After": "1"} if status == 503 else None)


# ------------------------------------------------------------------- requests
async def read_body(request, max_body: int) -> bytes:
    """The request body; 413 when Content-Length or the bytes streamed exceed ``max_body``."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_body:
        raise RequestError(413, f"request body of {int(length)} bytes exceeds the limit of "
                                f"{max_body} bytes")
    from starlette.requests import ClientDisconnect
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise RequestError(413, f"request body exceeds the limit of {max_body} bytes")
            chunks.append(chunk)
    except ClientDisconnect:        # nobody is left to answer: no traceback in the log
        raise RequestError(400, "the client disconnected before the body ended") from None
    return b"".join(chunks)


def _no_constant(name):
    raise ValueError(f"{name} is not a valid JSON number")


def _no_repeats(pairs: list) -> dict:
    """A JSON object's members as a dict; a key given twice is refused (which value
    was meant is unknown, and keeping one would drop the other silently)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {json.dumps(key)[:40]} appears twice in one object")
            seen.add(key)
    return out


def parse_json(body: bytes):
    """The JSON document of ``body`` (422 when it is not UTF-8 JSON; NaN/Infinity refused)."""
    if not body.strip():
        raise RequestError(422, "empty request body; expected a JSON object")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant,
                          object_pairs_hook=_no_repeats)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RequestError(422, f"malformed JSON: {one_line(err)[:200]}") from None


def _finite(x) -> bool:
    """Whether the JSON number ``x`` is a finite float (a huge integer is not)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _movie_key(items, v):
    """``v`` as an id of the ``items`` vocabulary's type, or None when it cannot be one
    (a whole float such as ``10.0`` is the integer id 10, as in the library, where it is
    exact: up to 2**53; beyond, it names no id)."""
    if isinstance(v, float) and v.is_integer():
        if abs(v) > EXACT_FLOAT_INT:      # may stand for a neighbouring id: names none
            return None
        v = int(v)
    if _is_int(v):
        if items.ids.dtype.kind in "iu":
            return v if -2 ** 63 <= v < 2 ** 63 else None
        return str(v)
    if isinstance(v, str):
        return int_text(v) if items.ids.dtype.kind in "iu" else v
    raise RequestError(422, f"movie ids must be integers or strings, got {json.dumps(v)[:40]}")


def _columns(items, raw: list) -> tuple[np.ndarray, list]:
    """Column index of each raw id (-1 if unknown) and the unknown ids, once each, as
    the model's id type where they parse as one (``"7"`` -> 7 for integer ids)."""
    cols = None
    if items.ids.dtype.kind in "iu" and all(type(v) is int for v in raw):   # the common case
        try:
            cols = items.index(np.asarray(raw, np.int64), missing="ignore")
        except OverflowError:
            cols = None
    shown = raw
    if cols is None:
        keys = [_movie_key(items, v) for v in raw]
        cols = np.full(len(raw), -1, np.int64)
        ok = [i for i, key in enumerate(keys) if key is not None]
        if ok:
            dtype = np.int64 if items.ids.dtype.kind in "iu" else str
            cols[ok] = items.index(np.asarray([keys[i] for i in ok], dtype=dtype),
                                   missing="ignore")
        shown = [raw[i] if key is None else key for i, key in enumerate(keys)]
    return cols, _distinct([shown[i] for i in np.flatnonzero(cols < 0)])


def parse_k(value, n_items: int, where: str = "k") -> int:
    """``k``: an integer 1..n_items (422 otherwise)."""
    if not _is_int(value):
        raise RequestError(422, f"{where} must be an integer, got {json.dumps(value)[:40]}")
    if not 1 <= value <= n_items:
        raise RequestError(422, f"{where} must be between 1 and {n_items}, got {value}")
    return value


def _exclude(recommender, value, where: str) -> tuple[np.ndarray, list]:
    if not isinstance(value, list):
        raise RequestError(422, f"{where}exclude must be a list of movie ids")
    if not value:
        return np.zeros(0, np.int64), []
    cols, unknown = _columns(recommender.items, value)
    return np.unique(cols[cols >= 0]), unknown


def parse_query(recommender, obj, where: str = "") -> tuple[Query, list]:
    """A /recommend body -> (:class:`Query`, unknown movie ids); 422 on anything malformed.
    The known ratings are checked as ``recommender.recommend`` checks them
    (:func:`_check_ratings`)."""
    if not isinstance(obj, dict):
        raise RequestError(422, f"{where or 'body: '}expected a JSON object with 'ratings'")
    extra = sorted(set(obj) - set(_FIELDS))
    if extra:
        raise RequestError(422, f"{where}unknown field {extra[0]!r} (expected "
                                f"{', '.join(_FIELDS)})")
    if "ratings" not in obj:
        raise RequestError(422, f"{where}missing field 'ratings' ([[movieId, rating], ...])")
    pairs = obj["ratings"]
    named = isinstance(pairs, dict)
    if named:                                       # {movieId: rating, ...}, as the CLI takes
        pairs = [[key, value] for key, value in pairs.items()]
    if not isinstance(pairs, list):
        raise RequestError(422, f"{where}ratings must be a list of [movieId, rating] pairs "
                                "or an object {movieId: rating}")
    for j, p in enumerate(pairs):
        if type(p) is list and len(p) == 2 and type(p[1]) in (int, float) and _finite(p[1]):
            continue
        if not (isinstance(p, list) and len(p) == 2):
            raise RequestError(422, f"{where}ratings[{j}] must be a [movieId, rating] pair")
        at = json.dumps(p[0])[:40] if named else j
        raise RequestError(422, f"{where}ratings[{at}]: the rating must be a finite number, "
                                f"got {json.dumps(p[1])[:40]}")
    k = parse_k(obj.get("k", 10), recommender.n_items, f"{where}k")
    cols, unknown = _columns(recommender.items, [p[0] for p in pairs])
    values = np.fromiter((p[1] for p in pairs), np.float64, len(pairs))
    _check_ratings(recommender, pairs, cols, values, where)      # unknown movies' ratings too
    known = cols >= 0
    cols, values = cols[known], values[known]
    order = np.argsort(cols)
    exclude, unknown_ex = _exclude(recommender, obj.get("exclude", []), where)
    return (Query(cols[order], values[order].astype(np.float32), k, exclude),
            _distinct(unknown + unknown_ex))


def _distinct(ids: list) -> list:
    """``ids`` without repeats, in first-seen order."""
    seen, out = set(), []
    for v in ids:
        key = (type(v).__name__, v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _check_ratings(recommender, pairs, cols, values, where: str) -> None:
    """422 unless the ratings are what ``recommender.recommend`` accepts as ``(movie_id,
    rating)`` pairs (same rules and wording): each known movie (``cols`` >= 0) once, every
    rating finite as float32, non-zero, within the model's rating scale."""
    problem = None
    known = cols[cols >= 0]
    with np.errstate(over="ignore"):
        finite32 = np.isfinite(values.astype(np.float32)).all()
    if np.unique(known).size != known.size:
        first = np.flatnonzero(np.bincount(known) > 1)[0]
        problem = f"movie {pairs[int(np.flatnonzero(cols == first)[0])][0]} is rated more than once"
    elif not finite32:
        problem = "ratings must be finite numbers (float32)"
    elif (values == 0).any():
        problem = (f"rating 0 for movie {pairs[int(np.flatnonzero(values == 0)[0])][0]} is not "
                   "a finite, non-zero number")
    elif recommender.rating_scale is not None:
        lo, hi = recommender.rating_scale
        out = np.flatnonzero((values < lo) | (values > hi))
        if out.size:
            j = int(out[0])
            problem = (f"rating {shown(values[j])} for movie {pairs[j][0]} is outside the model's "
                       f"scale {lo:g}-{hi:g}")
    if problem:
        raise RequestError(422, where + problem)


# ----------------------------------------------------------------------- app
def create_app(recommender, dataset=None, max_batch: int = MAX_BATCH,
               max_wait_ms: float = MAX_WAIT_MS, max_body: int = MAX_BODY,
               info: dict | None = None, pipelines: int = PIPELINES) -> Starlette:
    """The Starlette app serving ``recommender`` (a :class:`~npcf.serving.runtime.
    Recommender`); ``dataset``: a prepared :class:`~npcf.data.dataset.Dataset` whose users
    /users/{id}/recommendations knows (its movies must be the model's); titles come from
    ``recommender.titles``, else the dataset's. ``info``: extra fields for GET /model.
    ``pipelines``: batches ranked at once (:class:`~npcf.serving.batcher.MicroBatcher`)."""
    titles = recommender.titles or (dataset.titles() if dataset is not None else {})
    batcher = MicroBatcher(lambda qs: rank_queries(recommender, qs), max_batch, max_wait_ms,
                           pipelines=pipelines)

    def items_json(ids, scores) -> list[dict]:
        return [{"movie_id": m, "title": titles.get(m, ""), "score": json_float(s)}
                for m, s in zip(ids.tolist(), scores)]

    async def ranked(query: Query, unknown: list) -> dict:
        try:
            ids, scores = await batcher.submit(query)
        except Busy as err:
            raise RequestError(503, f"server busy: {err}") from None
        except NpcfError as err:             # the model refused this query's input
            raise RequestError(422, one_line(err)) from None
        return {"items": items_json(ids, scores), "unknown_ids": unknown}

    async def recommend(request):
        obj = parse_json(await read_body(request, max_body))
        return JSONResponse(await ranked(*parse_query(recommender, obj)))

    async def recommend_batch(request):
        obj = parse_json(await read_body(request, max_body))
        shape = "expected {\"users\": [{\"ratings\": ...}, ...]}"
        if not isinstance(obj, dict):
            raise RequestError(422, shape)
        extra = sorted(set(obj) - {"users"})
        if extra:
            raise RequestError(422, f"unknown field {extra[0]!r} ({shape})")
        if not isinstance(obj.get("users"), list):
            raise RequestError(422, "\"users\" must be a list" if "users" in obj else
                               f"missing field 'users' ({shape})")
        if len(obj["users"]) > MAX_USERS:
            raise RequestError(422, f"at most {MAX_USERS} users per batch request, got "
                                    f"{len(obj['users'])}")
        parsed = [parse_query(recommender, u, f"users[{i}]: ") for i, u in enumerate(obj["users"])]
        asked = sum(q.k for q, _ in parsed)
        if asked > MAX_RESULTS:
            raise RequestError(422, f"at most {MAX_RESULTS:,} recommendations per batch request "
                                    f"(the sum of the users' k), got {asked:,}; split it")
        results = await asyncio.gather(*(ranked(q, unk) for q, unk in parsed))
        return JSONResponse({"results": list(results)})

    async def user_recommendations(request):
        if dataset is None:
            raise RequestError(404, "no user data: start the server with --data DIR (a "
                                    "prepared directory) to look users up")
        user = request.path_params["user"]
        idx = dataset.users.index([user], missing="ignore")[0]
        if idx < 0:
            raise RequestError(404, f"unknown user id {user}")
        q = request.query_params
        extra = sorted(set(q) - {"k", "exclude"})
        if extra:
            raise RequestError(422, f"unknown query parameter {extra[0]!r} (expected k, exclude)")
        if len(q.getlist("k")) > 1:
            raise RequestError(422, "k is given more than once")
        k = q.get("k", "10")
        if int_text(k) is None:
            if re.fullmatch(r"\s*[+-]?\d+\s*", k, flags=re.ASCII):   # an integer past int64
                digits = k.strip()
                raise RequestError(422, f"k must be between 1 and {recommender.n_items}, got "
                                        f"{digits if len(digits) <= 40 else digits[:40] + '...'}")
            raise RequestError(422, f"k must be an integer, got {k!r}")
        k = parse_k(int_text(k), recommender.n_items)
        raw = [p.strip() for value in q.getlist("exclude") for p in value.split(",")
               if p.strip()]                      # exclude=1,2 and exclude=1&exclude=2
        exclude, unknown = _exclude(recommender, raw, "")
        row = dataset.user_row(dataset.users.ids[idx])
        row.sort_indices()
        out = await ranked(Query(row.indices.astype(np.int64), row.data, k, exclude), unknown)
        return JSONResponse({"user_id": dataset.users.ids[idx].item(), **out})

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def model_info(request):
        meta = {k: v for k, v in recommender.meta.items() if len(v) <= 1000}
        return JSONResponse({
            "path": str(recommender.path), "n_items": recommender.n_items,
            "signature": recommender.signature, "top_k": recommender.graph_top_k,
            "loss": recommender.loss, "rating_scale": recommender.rating_scale,
            "titles": bool(titles), "users": None if dataset is None else len(dataset.users),
            "batching": {"max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait * 1e3,
                         "pipelines": batcher.pipelines, "batches": batcher.batches,
                         "queries": batcher.items},
            "max_body": max_body, **(info or {}), "metadata": meta})

    async def on_request_error(request, err: RequestError):
        return _error(err.status, err.message)

    async def on_http_error(request, err: HTTPException):
        return _error(err.status_code, err.detail or "error")

    async def on_unexpected(request, err: Exception):
        return _error(500, f"internal error ({type(err).__name__}: {one_line(err)[:200]})")

    routes = [Route("/recommend", recommend, methods=["POST"]),
              Route("/recommend/batch", recommend_batch, methods=["POST"]),
              # (:path: a user id may hold a "/", sent as %2F)
              Route("/users/{user:path}/recommendations", user_recommendations,
                    methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/model", model_info, methods=["GET"])]

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.close()

    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(AnswersWhenStopped)],
                    exception_handlers={RequestError: on_request_error,
                                        HTTPException: on_http_error,
                                        Exception: on_unexpected})
    app.router.redirect_slashes = False       # /recommend/ is an unknown route (404 JSON)
    app.state.batcher, app.state.recommender = batcher, recommender
    return app


class AnswersWhenStopped:
    """ASGI middleware: a request the server cancels while it stops (uvicorn cancels what
    is still running 5 s after SIGTERM/Ctrl-C) gets a one-line JSON 503 with Retry-After,
    not a plain-text 500 and a traceback in the log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if started:
                raise
            body = json.dumps({"error": "the server is stopping; retry the request"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------- run
def open_app(model, data=None, movies=None, threads: int | None = None,
             max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS,
             max_body: int = MAX_BODY, pipelines: int = PIPELINES,
             check_fresh: bool = True) -> Starlette:
    """:func:`create_app` for the ONNX file ``model``; ``data``: a prepared directory (its
    users and, without ``movies``, its movies.csv titles); ``threads``: onnxruntime's.
    ``check_fresh``: refuse an export older than the checkpoint it records (a worker's
    private copy of a model its server checked skips that)."""
    from npcf.data.dataset import load_prepared, not_prepared
    from npcf.rundir import check_export_fresh
    from npcf.serving.runtime import Recommender
    path = Path(model)
    if path.suffix != ".onnx":
        if path.suffix in (".npz", ".json"):
            Recommender.load(path)  # names a checkpoint (an item-based one cannot be exported)
        raise NpcfError(f"--model {path}: serve needs an exported .onnx model (python cli.py "
                        "eval --generate)")
    dataset = None
    if data is not None:
        if problem := not_prepared(data):
            raise NpcfError(f"--data {data}: {problem}")
        dataset = load_prepared(data)
        if movies is None and (Path(data) / "movies.csv").is_file():
            movies = Path(data) / "movies.csv"
    rec = Recommender.load(path, movies=movies, threads=threads, batch_size=max(256, max_batch))
    if check_fresh:
        check_export_fresh(rec.meta, path)
    if dataset is not None:
        dataset.check_items(rec.items.ids, path)
    return create_app(rec, dataset, max_batch=max_batch, max_wait_ms=max_wait_ms,
                      max_body=max_body, info={"threads": threads, "pid": os.getpid()},
                      pipelines=pipelines)


def app_from_env() -> Starlette:
    """The app of a uvicorn worker process: :func:`open_app` of the JSON settings in
    :data:`CONFIG_ENV` (what :func:`serve` starts workers with). Warnings about the model
    were shown once, by the process that checked it first."""
    settings = json.loads(os.environ[CONFIG_ENV])
    served = settings.pop("served", None)
    with warned_elsewhere():
        app = open_app(**settings)
    if served:                      # /model names the file the user served, not the copy
        app.state.recommender.path = Path(served)
    return app


@contextmanager
def snapshot(path):
    """A private copy of the file ``path`` for the block, removed after it: worker
    processes that (re)start while the original is replaced or rewritten (a re-export, a
    retrain, a ``cp`` over it) still load the model the server checked. A copy, not a hard
    link: a link would see a rewrite in place."""
    from npcf.serving.runtime import sidecar_path
    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix="npcf-serve-"))
    try:
        copy = folder / path.name
        shutil.copy2(path, copy)
        side = sidecar_path(path)                  # the movie ids of a large catalogue
        if side.is_file():
            shutil.copy2(side, sidecar_path(copy))
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(host: str, port: int) -> int:
    """The port to listen on: ``port``, or for 0 a free one the system picks now (so the
    startup line can say which); NpcfError (one line, naming --host or --port) unless
    ``host:port`` can be bound now."""
    import errno
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as err:
        raise NpcfError(f"--host {host}: cannot resolve it ({err})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as err:
            what = f"--port {port}" if err.errno == errno.EADDRINUSE else f"--host {host}"
            raise NpcfError(f"{what}: cannot listen on {address(host, port)} ({err.strerror})") \
                from None
        return int(sock.getsockname()[1])


def serve(model, host: str = "127.0.0.1", port: int = 8000, *, data=None, movies=None,
          threads: int | None = None, workers: int = 1, max_batch: int = MAX_BATCH,
          max_wait_ms: float = MAX_WAIT_MS, max_body: int = MAX_BODY, log_level: str = "warning",
          pipelines: int = PIPELINES, echo=print) -> int | None:
    """Serve ``model`` on ``host:port`` until stopped (uvicorn; port 0: a free port,
    named in the startup line). ``workers`` > 1: that many processes, each with its own
    session; the model and data are checked here first so a bad file is one error, not
    one per worker. SIGINT (Ctrl-C) and SIGTERM stop it gracefully (requests in flight
    are answered, for up to 5 s); returns the signal's number (None: stopped otherwise)."""
    try:
        import uvicorn
    except ImportError:
        raise NpcfError("npcf serve needs uvicorn: pip install 'npcf[serve]'") from None
    settings = dict(model=str(model), data=None if data is None else str(data),
                    movies=None if movies is None else str(movies), threads=threads,
                    max_batch=max_batch, max_wait_ms=max_wait_ms, max_body=max_body,
                    pipelines=pipelines)
    from npcf.rundir import file_digest
    stopped: list[int] = []
    with contextlib.ExitStack() as stack:
        # workers load a private copy of the file checked here, whatever happens to `model`
        # later; taken first, so the check below is the copy's check
        private = stack.enter_context(snapshot(model)) if workers > 1 else None
        app = open_app(**settings)
        if private is not None and file_digest(private) != file_digest(model):
            raise NpcfError(f"{model}: the file changed while the server started; start it "
                            "again once it is written")
        port = check_address(host, port)
        url = f"http://{address(host, port)}"
        echo(f"serving {model} ({app.state.recommender.n_items:,} movies, max batch "
             f"{max_batch}, max wait {max_wait_ms:g} ms) on {url} with {workers} worker(s); "
             "Ctrl-C stops")
        common = dict(host=host, port=port, log_level=log_level, access_log=False,
                      timeout_graceful_shutdown=5)
        with _noting_signals(stopped), _startup_failure(host, port, stopped):
            if private is not None:
                del app
                os.environ[CONFIG_ENV] = json.dumps(dict(settings, model=str(private),
                                                         check_fresh=False, served=str(model)))
                # a worker answers uvicorn's health check only once its model is loaded
                uvicorn.run("npcf.serving.server:app_from_env", factory=True, workers=workers,
                            timeout_worker_healthcheck=120, **common)
            else:   # uvicorn's server catches the signals and passes them on once stopped
                server = uvicorn.Server(uvicorn.Config(app, **common))
                server.run()
                if not server.started and not stopped:
                    raise NpcfError(f"{url}: the server did not start")
    return int(stopped[-1]) if stopped else None


@contextmanager
def _startup_failure(host: str, port: int, stopped: list):
    """uvicorn exits the process (code 1 or 3) when it cannot bind: a port another process
    took between :func:`check_address` and now (two servers started at once) is one npcf
    error instead, exit code 1."""
    try:
        yield
    except SystemExit as err:
        if stopped or err.code in (0, None):
            raise
        raise NpcfError(f"--port {port}: the server did not start on {address(host, port)} "
                        "(the port taken meanwhile by another process, or see the log line "
                        "above)") from None


@contextmanager
def _noting_signals(stopped: list):
    """SIGINT and SIGTERM append their number to ``stopped`` during the block instead of
    raising: through handlers of ours (the ones uvicorn's server hands a signal on to once
    it has stopped) and a wake-up socket (which sees the signals uvicorn's process
    supervisor handles itself). The handlers that were there are back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = tuple(s for s in (signal.SIGINT, signal.SIGTERM)     # an ignored one stays so
                 if signal.getsignal(s) is not signal.SIG_IGN)
    before = {sig: signal.signal(sig, lambda sig, frame: stopped.append(sig)) for sig in sigs}
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(wakeup)
        for sig, handler in before.items():
            signal.signal(sig, handler)
        try:
            seen = reader.recv(4096)
        except OSError:
            seen = b""
        reader.close()
        writer.close()
        if not stopped:
            stopped.extend(s for s in seen if s in sigs)
