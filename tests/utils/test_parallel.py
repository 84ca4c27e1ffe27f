"""Tests for npcf.utils.parallel: thread-split kernels give bit-identical results to one
thread (products, optimizer steps, whole training steps), and errors propagate."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn.network import Network, RowSparse
from npcf.nn.optim import make
from npcf.utils import parallel


@pytest.fixture(autouse=True)
def split_everything(monkeypatch):
    """Split even tiny work, so the threaded paths run in these tests."""
    monkeypatch.setattr(parallel, "MIN_NNZ", 1)
    monkeypatch.setattr(parallel, "MIN_BYTES", 1)


def _csr(m, n, density, seed):
    rng = np.random.default_rng(seed)
    return sp.random(m, n, density=density, random_state=rng, format="csr", dtype=np.float32)


def test_threads_from_environment_and_set(monkeypatch):
    monkeypatch.delenv("NPCF_NUM_THREADS", raising=False)
    parallel.set_threads(None)
    assert parallel.threads() == 1
    monkeypatch.setenv("NPCF_NUM_THREADS", "3")
    assert parallel.threads() == 3
    with parallel.using(2):
        assert parallel.threads() == 2
    assert parallel.threads() == 3
    with pytest.raises(ValueError):
        parallel.set_threads(0)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_split_covers_the_range_once(k):
    seen = np.zeros(1000, int)

    def fn(lo, hi):
        seen[lo:hi] += 1

    with parallel.using(k):
        parallel.split(fn, 1000)
        parallel.split(fn, 0)
    assert (seen == 1).all()


def _failing_first(error, delay, done):
    """``fn(lo, hi)`` raising ``error`` for the range from 0; any other sleeps ``delay`` s
    and appends its ``lo`` to ``done``."""
    import time

    def fn(lo, hi):
        if lo == 0:
            raise error
        time.sleep(delay)
        done.append(lo)
    return fn


def test_split_reraises_a_worker_error_after_every_range_is_done():
    import time
    done = []

    def fn(lo, hi):
        if lo > 0:
            raise RuntimeError("boom")
        time.sleep(0.05)
        done.append(lo)

    with parallel.using(2), pytest.raises(RuntimeError, match="boom"):
        parallel.split(fn, 10)
    assert done == [0]

    with parallel.using(2), pytest.raises(KeyError, match="caller"):
        parallel.split(_failing_first(KeyError("caller"), 0.05, done), 10)
    assert done == [0, 5]                       # the worker finished before split returned


def test_thread_count_is_per_calling_thread_and_env_is_validated(monkeypatch):
    import threading
    seen = []
    with parallel.using(3):
        t = threading.Thread(target=lambda: seen.append(parallel.threads()))
        t.start()
        t.join()
        assert parallel.threads() == 3
    assert seen == [1]
    monkeypatch.setenv("NPCF_NUM_THREADS", "all")
    assert parallel.threads() == 1
    # '²'.isdigit() is True and int() refuses it; int() refuses 4,300+ digits too
    for bad in ("all", "0", "\u00b2", "100000", "9" * 5000):
        monkeypatch.setenv("NPCF_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="NPCF_NUM_THREADS must be a whole number from 1 "
                                             "to 1024"):
            parallel.env_threads()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("n,step", [(1000, 7), (1000, 1000), (5, 2), (0, 3)])
def test_chunks_cover_the_range_once_in_whole_chunks(k, n, step):
    seen = np.zeros(n, int)
    got = []

    def fn(lo, hi):
        seen[lo:hi] += 1
        got.append((lo, hi))

    with parallel.using(k):
        parallel.chunks(fn, n, step)
    assert (seen == 1).all()
    assert sorted(got) == [(s, min(s + step, n)) for s in range(0, n, step)]


def test_chunks_go_to_the_thread_that_is_free():
    """The thread that takes the first chunk is held up on it; the other does the rest."""
    import threading
    import time
    by_thread: dict = {}
    first = threading.Lock()

    def fn(lo, hi):
        by_thread.setdefault(threading.get_ident(), []).append(lo)
        if first.acquire(blocking=False):
            time.sleep(0.3)

    with parallel.using(2):
        parallel.chunks(fn, 20, 1)
    assert sorted(len(v) for v in by_thread.values()) == [1, 19]


def test_chunks_reraise_the_first_error_and_stop_the_others():
    done = []
    with parallel.using(2), pytest.raises(RuntimeError, match="boom"):
        parallel.chunks(_failing_first(RuntimeError("boom"), 0.01, done), 500, 1)
    assert len(done) < 20                  # not the remaining 499 chunks


def test_chunks_below_min_size_stay_on_the_calling_thread():
    import threading
    seen = set()
    with parallel.using(4):
        parallel.chunks(lambda lo, hi: seen.add(threading.get_ident()), 100, 10, min_size=60)
    assert seen == {threading.get_ident()}


def test_spmm_accepts_any_sparse_format():
    a = _csr(300, 200, 0.3, 4)
    b = np.ones((200, 3), np.float32)
    with parallel.using(2):
        np.testing.assert_array_equal(parallel.spmm(a.tocoo(), b), parallel.spmm(a, b))


@pytest.mark.parametrize("item_major", [False, True])
@pytest.mark.parametrize("shape", [(300, 500), (3, 40000), (5000, 60)])
def test_spmm_is_bit_identical_across_thread_counts(item_major, shape):
    a = _csr(*shape, density=0.05, seed=1)
    b = np.random.default_rng(2).standard_normal((shape[1], 33)).astype(np.float32)
    with parallel.using(1):
        one = parallel.spmm(a, b, item_major=item_major)
    np.testing.assert_allclose(one, a.toarray() @ b, rtol=1e-4, atol=1e-4)
    for k in (2, 3):
        with parallel.using(k):
            np.testing.assert_array_equal(parallel.spmm(a, b, item_major=item_major), one)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_into_writes_what_scipy_computes_over_what_was_there(fmt, dtype):
    a = _csr(70, 50, 0.2, 5).astype(dtype).asformat(fmt)
    b = np.random.default_rng(3).standard_normal((50, 9)).astype(dtype)
    out = np.full((70, 9), np.nan, dtype)            # stale values must not leak in
    parallel.product_into(a, b, out)
    np.testing.assert_array_equal(out, a @ b)


@pytest.mark.parametrize("b_rows,out_shape", [(40, (70, 9)), (50, (10, 9)), (50, (70, 3))])
def test_product_into_refuses_shapes_that_disagree_as_scipy_does(b_rows, out_shape):
    """The kernel trusts its sizes: a mismatch must raise, not read or write past arrays."""
    a = _csr(70, 50, 0.2, 5)
    b = np.ones((b_rows, 9), np.float32)
    with pytest.raises(ValueError):
        parallel.product_into(a, b, np.zeros(out_shape, np.float32))


def test_product_into_an_output_that_is_its_input():
    a = _csr(30, 30, 0.3, 7)
    x = np.random.default_rng(5).standard_normal((30, 4)).astype(np.float32)
    want = a @ x
    parallel.product_into(a, x, x)                   # out[...] = a @ x with out = x
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("lo,hi", [(0, 70), (13, 41), (69, 70), (20, 20)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_into_rows_of_a_csr_matrix(lo, hi, dtype):
    a = _csr(70, 50, 0.2, 8).astype(dtype)
    b = np.random.default_rng(6).standard_normal((50, 9)).astype(dtype)
    out = np.full((hi - lo, 9), np.nan, dtype)
    parallel.product_into(a, b, out, rows=(lo, hi))
    np.testing.assert_array_equal(out, a[lo:hi] @ b)
    mixed = np.empty((hi - lo, 9), np.float64 if dtype == np.float32 else np.float32)
    parallel.product_into(a, b, mixed, rows=(lo, hi))       # SciPy's path
    np.testing.assert_allclose(mixed, (a[lo:hi] @ b).astype(mixed.dtype), rtol=1e-6)


@pytest.mark.parametrize("fmt,rows", [("csc", (0, 5)), ("csr", (5, 71)), ("csr", (6, 5)),
                                      ("csr", (-1, 5))])
def test_product_into_refuses_rows_it_cannot_read(fmt, rows):
    a = _csr(70, 50, 0.2, 8).asformat(fmt)
    out = np.zeros((max(rows[1] - rows[0], 0), 3), np.float32)
    with pytest.raises(ValueError, match="rows"):
        parallel.product_into(a, np.ones((50, 3), np.float32), out, rows=rows)


@pytest.mark.parametrize("case", ["mixed dtypes", "strided b", "no kernel"])
def test_product_into_falls_back_to_scipys_product(case, monkeypatch):
    a = _csr(40, 30, 0.3, 6)
    b = np.random.default_rng(4).standard_normal((30, 8)).astype(np.float32)
    out = np.empty((40, 8), np.float64 if case == "mixed dtypes" else np.float32)
    if case == "strided b":
        b = np.asfortranarray(b)
    if case == "no kernel":
        monkeypatch.setattr(parallel, "csr_matvecs", None)
    parallel.product_into(a, b, out)
    np.testing.assert_allclose(out, a.toarray() @ b.astype(np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw", "momentum"])
def test_optimizer_steps_are_bit_identical_across_thread_counts(name, monkeypatch):
    monkeypatch.setattr(type(make(name, 0.01)), "chunk_bytes", 64)   # many chunks
    rng = np.random.default_rng(0)
    p0 = {"W": rng.standard_normal((4000, 16)).astype(np.float32),
          "b": rng.standard_normal(16).astype(np.float32)}
    steps = []
    for _ in range(3):
        rows = np.sort(rng.choice(4000, 2500, replace=False))
        steps.append({"W": RowSparse(rows, rng.standard_normal((rows.size, 16)).astype(np.float32)),
                      "b": rng.standard_normal(16).astype(np.float32)})
    out = []
    for k in (1, 2, 3):
        params = {n: v.copy() for n, v in p0.items()}
        opt = make(name, 0.01, weight_decay=0.01)
        with parallel.using(k):
            for g in steps:
                opt.step(params, g)
        out.append(params)
    for other in out[1:]:
        for n in p0:
            np.testing.assert_array_equal(other[n], out[0][n])


@pytest.mark.parametrize("tied", [True, False])
def test_training_step_gradients_are_bit_identical_across_thread_counts(tied):
    t = _csr(64, 3000, 0.1, 3)
    t.data = np.round(t.data * 4 + 1).astype(np.float32)
    x = t.copy()
    x.data[::3] = 0
    x.eliminate_zeros()
    results = []
    for k in (1, 2):
        net = Network(3000, (40, 8), tied=tied, activation="tanh", seed=0)
        with parallel.using(k):
            results.append(net.loss_and_grads(x, t, "mse", output_mode="sampled"))
    (l1, g1), (l2, g2) = results
    assert l1 == l2
    for name in g1:
        a, b = g1[name], g2[name]
        if isinstance(a, RowSparse):
            np.testing.assert_array_equal(a.rows, b.rows)
            a, b = a.values, b.values
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_product_into_rows_refuses_an_output_of_another_height():
    a = _csr(70, 50, 0.2, 8)
    with pytest.raises(ValueError, match="output"):
        parallel.product_into(a, np.ones((50, 3), np.float64), np.zeros((4, 3)), rows=(2, 3))
