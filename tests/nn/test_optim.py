"""Tests for npcf.nn.optim: every optimizer against hand-computed steps, lazy (row-sparse)
versus exact dense updates, gradient clipping, state_dict round trips."""
from __future__ import annotations

import io

import numpy as np
import pytest

from npcf.nn import optim
from npcf.nn.network import RowProduct, RowSparse
from npcf.nn.optim import SGD, Adam, AdamW, global_norm, make

P0 = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]])
GRADS = [np.array([[0.1, -0.2], [0.3, 0.0], [-0.5, 1.0]]),
         np.array([[-0.4, 0.1], [0.2, 0.2], [0.0, -0.3]]),
         np.array([[0.05, 0.6], [-0.1, -0.7], [0.25, 0.25]])]
B0 = np.array([0.2, -0.1])
BGRADS = [np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-1.0, 0.25])]


def run(opt, steps=3, sparse=False):
    """Apply the first ``steps`` gradients; returns the updated params (copies of P0/B0)."""
    params = {"W": P0.copy(), "b": B0.copy()}
    for k in range(steps):
        gw = GRADS[k]
        if sparse:
            gw = RowSparse(np.arange(3), gw.copy())
        opt.step(params, {"W": gw, "b": BGRADS[k]})
    return params


def hand(update, steps=3):
    """Reference loop: ``update(p, g, state, t)`` -> new p, written per optimizer below."""
    out = {}
    for name, p, gs in (("W", P0.copy(), GRADS), ("b", B0.copy(), BGRADS)):
        state, fn = {}, update
        for t in range(1, steps + 1):
            p = fn(p, gs[t - 1], state, t)
        out[name] = p
    return out


def check(params, expected):
    for k in ("W", "b"):
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("wd", (0.0, 0.1))
def test_sgd(wd):
    lr = 0.5

    def upd_with(decay):
        return lambda p, g, s, t: p - lr * (g + decay * p)
    check(run(SGD(lr, weight_decay=wd)), hand(upd_with(wd)))


@pytest.mark.parametrize("wd", (0.0, 0.1))
def test_momentum(wd):
    lr, mu = 0.3, 0.9

    def upd_with(decay):
        def upd(p, g, s, t):
            g = g + decay * p
            s["buf"] = mu * s.get("buf", 0) + g
            return p - lr * s["buf"]
        return upd
    check(run(SGD(lr, momentum=mu, weight_decay=wd)),
          hand(upd_with(wd)))
    # and it is not plain SGD
    assert not np.allclose(run(SGD(lr, momentum=mu))["W"], run(SGD(lr))["W"])


def test_nesterov():
    lr, mu = 0.3, 0.8

    def upd(p, g, s, t):
        s["buf"] = mu * s.get("buf", 0) + g
        return p - lr * (g + mu * s["buf"])
    check(run(SGD(lr, momentum=mu, nesterov=True)), hand(upd))
    assert not np.allclose(run(SGD(lr, momentum=mu, nesterov=True))["W"],
                           run(SGD(lr, momentum=mu))["W"])


def adam_ref(lr, b1, b2, eps, wd=0.0, decoupled=False):
    def upd(p, g, s, t):
        if wd and not decoupled:
            g = g + wd * p
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        mhat, vhat = s["m"] / (1 - b1 ** t), s["v"] / (1 - b2 ** t)
        new = p - lr * mhat / (np.sqrt(vhat) + eps)
        if decoupled:
            new = new - lr * wd * p
        return new
    return upd


@pytest.mark.parametrize("eps", (1e-8, 0.5))     # a big eps checks where eps is added
def test_adam(eps):
    lr, b1, b2 = 0.1, 0.9, 0.999
    check(run(Adam(lr, b1, b2, eps)), hand(adam_ref(lr, b1, b2, eps)))


def test_adam_first_step_is_lr_times_sign():
    params = {"W": P0.copy()}
    g = np.array([[3.0, -1e-3], [2.0, 5.0], [-7.0, 1.0]])
    Adam(0.01, eps=1e-12).step(params, {"W": g})
    np.testing.assert_allclose(params["W"], P0 - 0.01 * np.sign(g), rtol=1e-9)


def test_adam_l2_weight_decay():
    lr, wd = 0.05, 0.3
    check(run(Adam(lr, weight_decay=wd)), hand(adam_ref(lr, 0.9, 0.999, 1e-8, wd)))


def test_adamw_decoupled_weight_decay():
    lr, wd = 0.05, 0.3
    got = run(AdamW(lr, weight_decay=wd))
    check(got, hand(adam_ref(lr, 0.9, 0.999, 1e-8, wd, decoupled=True)))
    # decoupled decay is not L2 decay, and not no decay
    assert not np.allclose(got["W"], run(Adam(lr, weight_decay=wd))["W"])
    assert not np.allclose(got["W"], run(Adam(lr))["W"])


def test_global_norm_and_clip_norm():
    params = {"a": np.array([1.0, 1.0]), "b": np.array([[2.0], [2.0], [2.0]])}
    grads = {"a": np.array([3.0, 0.0]), "b": RowSparse(np.array([1]), np.array([[4.0]]))}
    assert global_norm(grads) == pytest.approx(5.0)
    opt = SGD(1.0, clip_norm=1.0)
    opt.step(params, grads)
    np.testing.assert_allclose(params["a"], [1 - 0.6, 1.0], rtol=1e-10)
    np.testing.assert_allclose(params["b"].ravel(), [2.0, 2 - 0.8, 2.0], rtol=1e-10)
    # the caller's gradients are not scaled in place
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    np.testing.assert_array_equal(grads["b"].values, [[4.0]])
    # below the threshold: untouched gradient
    params2 = {"a": np.array([1.0, 1.0])}
    SGD(1.0, clip_norm=10.0).step(params2, {"a": np.array([3.0, 0.0])})
    np.testing.assert_array_equal(params2["a"], [-2.0, 1.0])


def test_clip_norm_with_adam_scales_before_moments():
    lr, clip = 0.1, 0.5
    params = {"W": P0.copy()}
    g = GRADS[0]
    opt = Adam(lr, eps=0.5, clip_norm=clip)
    opt.step(params, {"W": g})
    gs = g * clip / np.linalg.norm(g)
    expected = hand(adam_ref(lr, 0.9, 0.999, 0.5), steps=1)   # W with unclipped g
    assert not np.allclose(params["W"], expected["W"])
    m, v = 0.1 * gs, 0.001 * gs * gs
    want = P0 - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 0.5)
    np.testing.assert_allclose(params["W"], want, rtol=1e-10)


# ----------------------------------------------------------------------- lazy vs dense
def _sparse_run(lazy, name, row_sets, seed=0, **kw):
    rng = np.random.default_rng(seed)
    n, h = 6, 3
    params = {"W": rng.normal(size=(n, h)), "c": rng.normal(size=n), "d": rng.normal(size=h)}
    opt = make(name, 0.05, lazy=lazy, **kw)
    for rows in row_sets:
        rows = np.asarray(rows)
        grads = {"W": RowSparse(rows, rng.normal(size=(rows.size, h))),
                 "c": RowSparse(rows, rng.normal(size=rows.size)),
                 "d": rng.normal(size=h)}
        opt.step(params, grads)
    return params, opt


@pytest.mark.parametrize("name,kw", [("adam", {}), ("adamw", {"weight_decay": 0.1}),
                                     ("adam", {"weight_decay": 0.1, "clip_norm": 1.0}),
                                     ("momentum", {}), ("nesterov", {"weight_decay": 0.01})])
def test_lazy_equals_dense_when_every_row_is_touched(name, kw):
    all_rows = [np.arange(6)] * 4
    lazy, _ = _sparse_run(True, name, all_rows, **kw)
    exact, _ = _sparse_run(False, name, all_rows, **kw)
    for k in lazy:
        np.testing.assert_allclose(lazy[k], exact[k], rtol=1e-13, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("name,kw", [("adam", {"weight_decay": 0.1}), ("adamw", {"weight_decay": 0.1}),
                                     ("momentum", {"weight_decay": 0.01}), ("nesterov", {}),
                                     ("sgd", {})])
@pytest.mark.parametrize("lazy", (True, False))
def test_chunked_update_equals_one_chunk(name, kw, lazy, monkeypatch):
    """Row chunks of one row (scratch reused across chunks, params and gradients) give
    exactly the update of a single chunk."""
    rows = [np.array([0, 2, 5]), np.array([1, 2, 3, 4]), np.array([5])]
    whole, _ = _sparse_run(lazy, name, rows, **kw)
    monkeypatch.setattr(optim.Optimizer, "chunk_bytes", 1)
    chunked, opt = _sparse_run(lazy, name, rows, **kw)
    for k in whole:
        np.testing.assert_array_equal(chunked[k], whole[k], err_msg=k)
    assert all(b.shape[0] == 1 for bufs in opt._local.bufs.values() for b in bufs)


@pytest.mark.parametrize("name", ["adam", "momentum", "sgd"])
def test_scalar_parameter_is_updated_like_a_one_element_vector(name):
    scalar, vector = {"s": np.array(0.5)}, {"s": np.array([0.5])}
    a, b = make(name, 0.1, weight_decay=0.01), make(name, 0.1, weight_decay=0.01)
    for g in (0.3, -0.2, 0.7):
        a.step(scalar, {"s": np.array(g)})
        b.step(vector, {"s": np.array([g])})
    assert scalar["s"].shape == () and scalar["s"] == vector["s"][0] != 0.5


@pytest.mark.parametrize("name", ("adam", "momentum"))
def test_lazy_differs_from_dense_when_rows_are_untouched(name):
    row_sets = [np.arange(6), [0, 2, 5], [0, 2]]
    lazy, opt_lazy = _sparse_run(True, name, row_sets)
    exact, opt_exact = _sparse_run(False, name, row_sets)
    assert not np.allclose(lazy["W"], exact["W"])
    # touched every time: identical; rows 1, 3, 4 (only in step 1) differ
    np.testing.assert_allclose(lazy["W"][[0, 2]], exact["W"][[0, 2]], rtol=1e-13)
    assert not np.allclose(lazy["W"][[1, 3, 4]], exact["W"][[1, 3, 4]])
    np.testing.assert_allclose(lazy["d"], exact["d"], rtol=1e-13)    # dense param: same


@pytest.mark.parametrize("name,slots", [("adam", ("m_scaled", "v_scaled")),
                                        ("adamw", ("m_scaled", "v_scaled")),
                                        ("momentum", ("momentum",))])
def test_lazy_leaves_untouched_rows_and_their_moments_alone(name, slots):
    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(5, 2))}
    opt = make(name, 0.1, weight_decay=0.2, lazy=True)
    opt.step(params, {"W": RowSparse(np.arange(5), rng.normal(size=(5, 2)))})
    before_p = params["W"].copy()
    before = {s: opt.state["W"][s].copy() for s in slots}
    assert all(np.abs(before[s]).min() > 0 for s in slots)
    opt.step(params, {"W": RowSparse(np.array([1, 3]), rng.normal(size=(2, 2)))})
    untouched = [0, 2, 4]
    np.testing.assert_array_equal(params["W"][untouched], before_p[untouched])
    for s in slots:
        np.testing.assert_array_equal(opt.state["W"][s][untouched], before[s][untouched])
        assert not np.allclose(opt.state["W"][s][[1, 3]], before[s][[1, 3]])
    assert not np.allclose(params["W"][[1, 3]], before_p[[1, 3]])


def test_dense_mode_moves_untouched_rows_with_momentum():
    params = {"W": np.ones((3, 2))}
    opt = Adam(0.1, lazy=False)
    opt.step(params, {"W": RowSparse(np.arange(3), np.ones((3, 2)))})
    row2 = params["W"][2].copy()
    opt.step(params, {"W": RowSparse(np.array([0]), np.ones((1, 2)))})
    assert (params["W"][2] < row2).all()          # still moving on momentum alone


def test_weight_decay_applies_to_biases_too():
    for name in ("sgd", "adam", "adamw"):
        params = {"W": np.ones((2, 2)), "b": np.ones(2)}
        make(name, 0.1, weight_decay=0.5).step(params, {"W": np.zeros((2, 2)),
                                                       "b": np.zeros(2)})
        assert (params["W"] < 1).all() and (params["b"] < 1).all(), name


def test_float32_params_stay_float32():
    params = {"W": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    for name in sorted(set(optim.NAMES) - set(optim.FULL_BATCH)):   # lbfgs: the trainer's
        opt = make(name, 0.01, weight_decay=0.1, clip_norm=0.5)
        p = {k: v.copy() for k, v in params.items()}
        opt.step(p, {"W": RowSparse(np.array([0, 2]), np.ones((2, 3), np.float32)),
                     "b": np.ones(3, np.float32)})
        assert p["W"].dtype == np.float32 and p["b"].dtype == np.float32, name
        assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values()), name


# ------------------------------------------------------------------------ state dict
@pytest.mark.parametrize("name", sorted(set(optim.NAMES) - set(optim.FULL_BATCH)))
def test_state_dict_round_trip(name):
    rng = np.random.default_rng(0)
    rows = [np.arange(4), np.array([1, 2])]

    def grads(k):
        r = rows[k % 2]
        return {"W": RowSparse(r, rng.normal(size=(r.size, 3))), "b": rng.normal(size=3)}
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    opt = make(name, 0.05, weight_decay=0.01)
    for k in range(2):
        opt.step(params, grads(k))
    # through an npz without pickle, as the resume file stores it
    buf = io.BytesIO()
    np.savez(buf, **opt.state_dict())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        flat = {k: f[k] for k in f.files}
    clone = make(name, 0.05, weight_decay=0.01)
    clone.load_state_dict(flat)
    assert clone.t == opt.t == 2
    p2 = {k: v.copy() for k, v in params.items()}
    later = [grads(k) for k in range(2, 4)]
    for g in later:
        opt.step(params, g)
        clone.step(p2, g)
    for k in params:
        np.testing.assert_array_equal(params[k], p2[k])
    if name != "sgd":
        # a fresh optimizer (no state) would end elsewhere
        fresh = make(name, 0.05, weight_decay=0.01)
        p3 = {k: v.copy() for k, v in p2.items()}
        p4 = {k: v.copy() for k, v in p2.items()}
        fresh.step(p3, later[0])
        clone.step(p4, later[0])
        assert not np.allclose(p3["W"], p4["W"])


def test_state_dict_keys_and_load_copies():
    opt = Adam(0.1)
    params = {"W": np.ones((2, 2))}
    opt.step(params, {"W": np.ones((2, 2))})
    sd = opt.state_dict()
    assert set(sd) == {"W/m_scaled", "W/v_scaled", "t"} and int(sd["t"]) == 1
    other = Adam(0.1)
    other.load_state_dict(sd)
    sd["W/m_scaled"][...] = 123.0
    assert not np.any(other.state["W"]["m_scaled"] == 123.0)


def test_adam_state_holds_scaled_moments_and_loads_the_unscaled_form():
    """m and v are kept as m / (1 - beta1) and v / (1 - beta2); a state saved with the
    plain moments (npcf before 2026-12-04) continues the same run."""
    rng = np.random.default_rng(5)
    params = {"W": rng.normal(size=(4, 3))}
    grads = [{"W": rng.normal(size=(4, 3))} for _ in range(4)]
    opt = Adam(0.05, weight_decay=0.1)
    for g in grads[:2]:
        opt.step(params, g)
    p_ref = {"W": params["W"].copy()}
    sd = opt.state_dict()
    plain = {"t": sd["t"], "W/m": sd["W/m_scaled"] * 0.1, "W/v": sd["W/v_scaled"] * 0.001}
    old = Adam(0.05, weight_decay=0.1)
    old.load_state_dict(plain)
    np.testing.assert_allclose(old.state["W"]["m_scaled"], opt.state["W"]["m_scaled"], rtol=1e-12)
    np.testing.assert_allclose(old.state["W"]["v_scaled"], opt.state["W"]["v_scaled"], rtol=1e-12)
    for g in grads[2:]:
        opt.step(params, g)
        old.step(p_ref, g)
    np.testing.assert_allclose(p_ref["W"], params["W"], rtol=1e-12)
    with pytest.raises(ValueError, match="0 <= beta < 1"):
        Adam(0.1, beta1=1.0)


def test_make_and_names():
    assert isinstance(make("sgd", 0.1), SGD) and make("sgd", 0.1).momentum == 0
    m = make("momentum", 0.1)
    assert m.momentum == 0.9 and not m.nesterov
    n = make("nesterov", 0.1, momentum=0.5)
    assert n.momentum == 0.5 and n.nesterov
    assert type(make("adam", 0.1)) is Adam and isinstance(make("adamw", 0.1), AdamW)
    o = make("adamw", 0.2, weight_decay=0.3, clip_norm=4.0, lazy=False)
    assert (o.lr, o.weight_decay, o.clip_norm, o.lazy) == (0.2, 0.3, 4.0, False)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make("rmsprop", 0.1)


def test_row_sparse_gradient_outside_the_parameter_is_refused():
    # rows are gathered with mode="clip" for speed: a bad row must fail, not clip
    params = {"W": np.zeros((3, 2), np.float32)}
    with pytest.raises(IndexError, match="outside its 3 rows"):
        Adam(0.1).step(params, {"W": RowSparse(np.array([0, 3]), np.ones((2, 2), np.float32))})
    np.testing.assert_array_equal(params["W"], 0)


def test_adam_scaled_moments_are_the_textbook_moments_over_one_minus_beta():
    rng = np.random.default_rng(6)
    params = {"W": rng.normal(size=(3, 2))}
    opt = Adam(0.01)
    m = v = 0.0
    for _ in range(3):
        g = rng.normal(size=(3, 2))
        opt.step(params, {"W": g})
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    np.testing.assert_allclose(opt.state["W"]["m_scaled"] * 0.1, m, rtol=1e-12)
    np.testing.assert_allclose(opt.state["W"]["v_scaled"] * 0.001, v, rtol=1e-10)


@pytest.mark.parametrize("name", ["adam", "adamw", "momentum", "sgd"])
@pytest.mark.parametrize("lazy,clip,threads", [(True, None, 1), (True, None, 2), (False, None, 1),
                                               (True, 0.5, 2)])
def test_a_row_product_gradient_updates_exactly_as_its_values(name, lazy, clip, threads,
                                                              monkeypatch):
    """Formed block by block inside the update (no clipping, lazy) or whole (otherwise):
    the same parameters and state, bit for bit, as the same gradient given as values."""
    import scipy.sparse as sp

    from npcf.utils import parallel
    monkeypatch.setattr(optim.Optimizer, "chunk_bytes", 40)          # many small blocks
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((60, 5)).astype(np.float32)
    grads = []
    for k in range(3):
        rows = np.sort(rng.choice(60, 35, replace=False))
        left = sp.random(35, 20, density=0.3, random_state=k, format="csr", dtype=np.float32)
        grads.append((rows, left, rng.standard_normal((20, 5)).astype(np.float32)))
    out = []
    for as_product in (True, False):
        params, opt = {"W": p0.copy()}, make(name, 0.01, weight_decay=0.01, lazy=lazy,
                                             clip_norm=clip)
        with parallel.using(threads):
            for rows, left, right in grads:
                g = RowProduct(rows, left, right) if as_product else \
                    RowSparse(rows, left @ right)
                opt.step(params, {"W": g})
                if as_product:
                    assert (g._values is None) == (lazy and clip is None)
        out.append((params["W"], opt.state_dict()))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for key in out[0][1]:
        np.testing.assert_array_equal(out[0][1][key], out[1][1][key], err_msg=key)
