"""Row-parallel work for what NumPy and SciPy run on one thread.

SciPy's sparse x dense products and NumPy's gathers and element-wise updates release
the GIL but use one core. :func:`split` spreads such work, cut into contiguous row
ranges, over a small thread pool; each output row is computed by exactly one thread,
so results do not depend on the thread count.

Thread count: :func:`using` / :func:`set_threads` (per calling thread), else
``NPCF_NUM_THREADS``, else 1.
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import scipy.sparse as sp

#: the most threads npcf's kernels take (``--threads``, ``NPCF_NUM_THREADS``)
MAX_THREADS = 1024
#: work below these sizes stays on the calling thread (a split costs ~50 us)
MIN_NNZ = 1 << 14        # stored entries of a sparse product
MIN_BYTES = 1 << 21      # bytes of rows per thread for row-wise work

# per calling thread (and asyncio task): library users may run npcf from several threads
_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("npcf_threads",
                                                                      default=None)
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def env_threads() -> int | None:
    """``NPCF_NUM_THREADS`` as a positive int; None when unset; ValueError when invalid."""
    value = os.environ.get("NPCF_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        return parse_threads(value)
    except ValueError as err:
        raise ValueError(f"NPCF_NUM_THREADS {err}") from None


def parse_threads(text: str) -> int:
    """A thread count written as text: a whole number from 1 to :data:`MAX_THREADS`
    (ValueError, saying so, otherwise)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5) \
            or not 1 <= int(text) <= MAX_THREADS:
        raise ValueError(f"must be a whole number from 1 to {MAX_THREADS}, got {text!r}")
    return int(text)


def threads() -> int:
    """Threads npcf's own kernels use on this thread (>= 1)."""
    n = _threads.get()
    if n is not None:
        return n
    try:
        return env_threads() or 1
    except ValueError:
        return 1


def set_threads(n: int | None) -> None:
    """Use ``n`` threads from the calling thread (``None``: ``NPCF_NUM_THREADS`` or 1)."""
    if n is not None and int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _threads.set(None if n is None else int(n))


@contextlib.contextmanager
def using(n: int | None):
    """``with using(n):`` npcf's kernels run on ``n`` threads, restored afterwards."""
    if n is not None and int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    token = _threads.set(None if n is None else int(n))
    try:
        yield
    finally:
        _threads.reset(token)


#: the thread-count setters of the OpenBLAS builds NumPy and SciPy ship (and a plain one)
_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                 "openblas_set_num_threads64_", "openblas_set_num_threads")


def set_blas_threads(n: int) -> int:
    """Best effort: cap every OpenBLAS this process has loaded (NumPy's, SciPy's) at ``n``
    threads, as ``OPENBLAS_NUM_THREADS`` would have at start-up (for a forked worker
    beside others). Returns how many libraries took it (0 where none is found: another
    BLAS, or no ``/proc``)."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return 0
    done = 0
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, name) for name in _BLAS_SETTERS if hasattr(lib, name)), None)
        if setter is not None:
            setter(ctypes.c_int(int(n)))
            done += 1
    return done


def single_threaded() -> None:
    """A worker process's setup: npcf's kernels and BLAS on one thread each."""
    set_threads(1)
    set_blas_threads(1)


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor(k: int) -> ThreadPoolExecutor:
    """A pool with at least ``k`` workers. A smaller old pool is dropped, not shut
    down (another thread may still use it; its idle workers exit once it is freed)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < k:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=k, thread_name_prefix="npcf"), k
        return _pool


def split(fn, n: int, *, min_size: int = 1) -> None:
    """Call ``fn(lo, hi)`` over ``[0, n)`` cut into one contiguous range per thread
    (fewer when a range would hold under ``min_size`` items); the first range runs on
    the calling thread. Returns once every range is done; re-raises the calling
    thread's error, else the first worker's."""
    k = max(1, min(threads(), n // max(1, min_size)))
    edges = [int(e) for e in np.linspace(0, n, k + 1).round()]
    bounds = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    if len(bounds) <= 1:
        for lo, hi in bounds:
            fn(lo, hi)
        return
    futures = [_executor(len(bounds) - 1).submit(fn, lo, hi) for lo, hi in bounds[1:]]
    try:
        fn(*bounds[0])
    finally:
        wait(futures)                       # never leave workers writing after we return
    for f in futures:
        f.result()


def chunks(fn, n: int, step: int, *, min_size: int = 1) -> None:
    """Call ``fn(lo, hi)`` for every chunk ``[s, s + step)`` of ``[0, n)``, the chunks
    handed out one at a time to up to :func:`threads` threads (the calling thread one of
    them) as each becomes free: a thread that wakes late or runs slower on a shared host
    takes fewer, and all end together. ``fn`` must compute each chunk alone (results then
    do not depend on the thread count). Threads are used only when each gets
    ``min_size`` items. Returns once every chunk is done; after an error the other threads
    stop at their next chunk, and the calling thread's error, else a worker's, is raised."""
    step = max(1, int(step))
    starts = range(0, n, step)
    k = max(1, min(threads(), n // max(1, min_size), len(starts)))
    if k <= 1:
        for s in starts:
            fn(s, min(s + step, n))
        return
    tickets = itertools.count()         # next() on it is atomic under the GIL
    failed = threading.Event()

    def run() -> None:
        for i in tickets:
            if i >= len(starts) or failed.is_set():
                return
            try:
                fn(starts[i], min(starts[i] + step, n))
            except BaseException:
                failed.set()            # the others stop at their next chunk
                raise

    futures = [_executor(k - 1).submit(run) for _ in range(k - 1)]
    try:
        run()
    finally:
        wait(futures)                   # never leave workers writing after we return
    for f in futures:
        f.result()


def spmm(a, b: np.ndarray, *, item_major: bool = False) -> np.ndarray:
    """``a @ b`` for CSR ``a`` (m, n) and dense ``b`` (n, h) as a dense (m, h) array,
    row blocks of ``a`` on :func:`threads` threads. ``item_major``: multiply each block
    in CSC order (reads each needed row of ``b`` once per block)."""
    a = sp.csr_matrix(a)
    k = min(threads(), a.shape[0]) if a.nnz >= MIN_NNZ else 1
    if k <= 1:
        return np.asarray((a.tocsc() if item_major else a) @ b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a.dtype, b.dtype))
    cuts = np.searchsorted(a.indptr, np.linspace(0, a.nnz, k + 1)[1:-1])
    edges = np.unique(np.concatenate(([0], np.clip(cuts, 0, a.shape[0]), [a.shape[0]])))

    def blocks(first, last):
        for i in range(first, last):
            lo, hi = int(edges[i]), int(edges[i + 1])
            part = a[lo:hi]
            product_into(part.tocsc() if item_major else part, b, out[lo:hi])

    split(blocks, edges.size - 1)
    return out


try:     # SciPy's own kernels behind ``csr @ dense``; they take the output array
    from scipy.sparse._sparsetools import csc_matvecs, csr_matvecs
except ImportError:                                      # pragma: no cover - SciPy moved them
    csc_matvecs = csr_matvecs = None


def product_into(a, b: np.ndarray, out: np.ndarray, rows: tuple[int, int] | None = None) -> None:
    """``out[...] = a @ b`` for CSR or CSC ``a`` (m, n), dense ``b`` (n, h), ``out`` (m, h).

    Written in place by the kernel SciPy's ``a @ b`` runs (the same sums in the same
    order, so the same bits), where the dtypes agree and the arrays are C-contiguous:
    ``out[...] = a @ b`` would allocate an (m, h) temporary in this thread and copy it,
    a second pass over the output that a second thread's product cannot afford.
    Elsewhere (another SciPy, mixed dtypes) exactly that.

    ``rows=(lo, hi)``: only rows ``lo:hi`` of a CSR ``a`` (``out`` is (hi - lo, h)), read
    where they are (no slice of ``a`` is copied).
    """
    lo, hi = (0, a.shape[0]) if rows is None else (int(rows[0]), int(rows[1]))
    if rows is not None and (a.format != "csr" or not 0 <= lo <= hi <= a.shape[0]):
        raise ValueError(f"rows {lo}:{hi} of a {a.format} matrix of {a.shape[0]} rows")
    if rows is not None and out.shape != (hi - lo, np.shape(b)[-1]):
        raise ValueError(f"rows {lo}:{hi} into an output of shape {out.shape}")
    kernel = csr_matvecs if a.format == "csr" else csc_matvecs if a.format == "csc" else None
    # the kernel trusts its sizes: anything it would not read or write exactly as `a @ b`
    # takes SciPy's checked path (which raises on a shape mismatch)
    if (kernel is None or not (a.dtype == b.dtype == out.dtype)
            or a.indptr.dtype != a.indices.dtype or b.ndim != 2
            or b.shape[0] != a.shape[1] or out.shape != (hi - lo, b.shape[1])
            or not (b.flags.c_contiguous and out.flags.c_contiguous)
            or np.may_share_memory(out, b)):
        out[...] = (a if rows is None else a[lo:hi]) @ b
        return
    out.fill(0)                       # the kernel adds a @ b into what is there
    indptr = a.indptr if rows is None else a.indptr[lo:hi + 1]    # it reads absolute offsets
    kernel(hi - lo, a.shape[1], b.shape[1], indptr, a.indices, a.data, b.ravel(),
           out.reshape(-1))
