"""Tests for npcf.nn.network: gradients against central finite differences, the sparse-aware
path against a plain dense reference written here, RowSparse and add_grads."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.nn.losses import masked_mse, multinomial
from npcf.nn.network import Network, RowProduct, RowSparse, add_grads
from npcf.utils.sparse import entry_rows

ACTIVATIONS = ("relu", "selu", "elu", "sigmoid", "tanh", "identity")
# (loss, output activation) pairs the design supports
LOSS_CONFIGS = (("mse", "sigmoid"), ("mse", "identity"), ("multinomial", "identity"))
LAYERS = (3, 2)          # >= 2 hidden layers: encoder 7-3-2, decoder 2-3-7
N_USERS, N_ITEMS = 5, 7
LAST = N_ITEMS - 1       # an item that is input-only


def rel_err(a, b) -> float:
    """Norm-based relative error, safe when both are (near) zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = np.linalg.norm(a - b)
    den = max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)
    return float(num / den)


def dense(g, shape):
    return g.dense(shape) if isinstance(g, RowSparse) else np.asarray(g)


# ----------------------------------------------------------------------------- data
def make_data(loss: str, out_act: str, seed: int = 0, dtype=np.float64, subset=False):
    """Tiny CSR input ``x`` and target ``t`` (B, n).

    The target pattern is a strict superset of most input rows (denoising: masked
    entries are still reconstructed), row 3 has no input at all, and item LAST is in
    the input but never in the target, so input- and output-side row sets differ.
    ``subset=True``: the input pattern is inside the target's (what every corruption
    gives; the tied input gradient then accumulates into the output's rows).
    """
    rng = np.random.default_rng(seed)
    pattern = rng.random((N_USERS, N_ITEMS)) < 0.55
    pattern[:, LAST] = False
    pattern[np.arange(N_USERS), rng.integers(0, LAST, N_USERS)] = True   # every row has a target
    if loss == "multinomial":
        values = rng.integers(1, 3, (N_USERS, N_ITEMS)).astype(dtype)   # weights 1 or 2
    elif out_act == "sigmoid":
        values = rng.uniform(0.05, 0.95, (N_USERS, N_ITEMS))
    else:
        values = rng.normal(0, 1.0, (N_USERS, N_ITEMS))
    t_dense = np.where(pattern, values, 0.0).astype(dtype)
    x_pattern = pattern & (rng.random(pattern.shape) < 0.7)
    x_pattern[:, LAST] = rng.random(N_USERS) < 0.6
    x_pattern[3] = False
    if subset:
        x_pattern &= pattern
    x_dense = np.where(x_pattern, rng.normal(0, 1.0, pattern.shape), 0.0).astype(dtype)
    x = sp.csr_matrix(x_dense)
    t = sp.csr_matrix(t_dense)
    assert t.nnz == pattern.sum() and x.nnz == x_pattern.sum()   # no accidental zeros
    return x, t


def make_net(tied, activation, out_act, dropout=0.0, seed=1, dtype=np.float64, layers=LAYERS):
    net = Network(N_ITEMS, layers, tied=tied, activation=activation, output_activation=out_act,
                  dropout=dropout, seed=seed, dtype=dtype)
    # non-zero biases so that bias paths are exercised by every check
    rng = np.random.default_rng(seed + 100)
    for k, v in net.params.items():
        if k[0] in "bc":
            v[...] = rng.normal(0, 0.3, v.shape)
    return net


# ------------------------------------------------------------- dense reference (tests only)
SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def ref_act(name):
    """(f, f') written independently of npcf.nn.activations."""
    if name == "relu":
        return lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)
    if name == "elu":
        return (lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1),
                lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))))
    if name == "selu":
        return (lambda z: SELU_S * np.where(z > 0, z, SELU_A * (np.exp(np.minimum(z, 0)) - 1)),
                lambda z: SELU_S * np.where(z > 0, 1.0, SELU_A * np.exp(np.minimum(z, 0))))
    if name == "sigmoid":
        s = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
        return s, lambda z: s(z) * (1 - s(z))
    if name == "tanh":
        return np.tanh, lambda z: 1 - np.tanh(z) ** 2
    if name == "identity":
        return (lambda z: z), (lambda z: np.ones_like(z))
    raise AssertionError(name)


def dense_reference(params, X, T, M, *, tied, activation, out_act, loss, n_layers,
                    drop_mask=None):
    """Full dense forward + backward. X, T, M: dense (B, n); M = 1 on observed targets.

    Returns ``(Z, Y, loss, grads)``: output logits and reconstruction (B, n), loss, and
    dense gradients keyed like ``params``.
    """
    f, df = ref_act(activation)
    g, dg = ref_act(out_act)
    L = n_layers
    W = [params[f"W{k}"] for k in range(L)]
    D = [params[f"W{k}"] if tied else params[f"V{k}"] for k in range(L)]
    enc, dec = [], []
    a = X
    for k in range(L):
        z = a @ W[k] + params[f"b{k}"]
        enc.append((a, z))
        a = f(z)
    if drop_mask is not None:
        a = a * drop_mask
    for k in range(L - 1, 0, -1):
        z = a @ D[k].T + params[f"c{k}"]
        dec.append((k, a, z))
        a = f(z)
    Z = a @ D[0].T + params["c0"]
    Y = g(Z)
    if loss == "mse":
        n_obs = M.sum()
        value = float(((Y - T) ** 2 * M).sum() / n_obs)
        dZ = 2.0 * M * (Y - T) / n_obs * dg(Z)
    else:
        B = X.shape[0]
        logp = Z - Z.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        value = float(-(T * logp).sum() / B)
        dZ = (np.exp(logp) * T.sum(1, keepdims=True) - T) / B
    grads = {k: np.zeros_like(v, dtype=np.float64) for k, v in params.items()}
    dname = lambda k: f"W{k}" if tied else f"V{k}"  # noqa: E731
    grads["c0"] += dZ.sum(0)
    grads[dname(0)] += dZ.T @ a
    da = dZ @ D[0]
    for k, a_in, z in reversed(dec):     # backward: the last decoder layer (k = 1) first
        dz = da * df(z)
        grads[f"c{k}"] += dz.sum(0)
        grads[dname(k)] += dz.T @ a_in
        da = dz @ D[k]
    if drop_mask is not None:
        da = da * drop_mask
    for k in range(L - 1, -1, -1):
        a_in, z = enc[k]
        dz = da * df(z)
        grads[f"b{k}"] += dz.sum(0)
        grads[f"W{k}"] += a_in.T @ dz
        da = dz @ W[k].T
    return Z, Y, value, grads


def reference_for(net, x, t, loss, drop_mask=None):
    X = x.toarray().astype(np.float64)
    T = t.toarray().astype(np.float64)
    M = np.zeros_like(T)
    rows = entry_rows(t)
    M[rows, t.indices] = 1.0
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    return dense_reference(params, X, T, M, tied=net.tied, activation=net.activation,
                           out_act=net.output_activation, loss=loss,
                           n_layers=len(net.layers), drop_mask=drop_mask)


# ------------------------------------------------------------------- finite differences
def library_loss(net, x, t, loss, seed=None):
    """The loss exactly as ``loss_and_grads`` computes it, forward pieces only (cheaper)."""
    rng = None if seed is None else np.random.default_rng(seed)
    a, _ = net.hidden(x, rng)
    if loss == "mse":
        rows = entry_rows(t)
        z = net.output_at(a, rows, t.indices.astype(np.int64), "sampled")
        return masked_mse(net._g(z), t.data)[0]
    return multinomial(net.output(a)[0], t)[0]


def fd_grads(net, x, t, loss, seed=None, eps=1e-6):
    """Central finite differences of the loss w.r.t. every parameter element."""
    rng = None if seed is None else np.random.default_rng(seed)
    assert library_loss(net, x, t, loss, seed) == net.loss_and_grads(x, t, loss, rng=rng,
                                                                      output_mode="sampled")[0]
    out = {}
    for name, p in net.params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = library_loss(net, x, t, loss, seed)
            p[idx] = old - eps
            down = library_loss(net, x, t, loss, seed)
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        out[name] = g
    return out


CASES = list(itertools.product((True, False), ACTIVATIONS, LOSS_CONFIGS))

CASE_IDS = [f"{'tied' if t else 'untied'}-{a}-{c[0]}-{c[1]}" for t, a, c in CASES]


@pytest.mark.parametrize("tied,activation,cfg", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(tied, activation, cfg):
    loss, out_act = cfg
    seed = 3 * ACTIVATIONS.index(activation) + LOSS_CONFIGS.index(cfg)
    x, t = make_data(loss, out_act, seed=seed)
    net = make_net(tied, activation, out_act)
    value, grads = net.loss_and_grads(x, t, loss, rng=None, output_mode="sampled")
    assert np.isfinite(value) and value > 0
    assert set(grads) == set(net.params)
    num = fd_grads(net, x, t, loss)
    assert np.linalg.norm(num["W0"]) > 0 and np.linalg.norm(num["c0"]) > 0
    for name, p in net.params.items():
        g = dense(grads[name], p.shape)
        assert g.shape == p.shape
        assert rel_err(g, num[name]) < 1e-5, (name, rel_err(g, num[name]))


@pytest.mark.parametrize("tied", (True, False))
@pytest.mark.parametrize("cfg", LOSS_CONFIGS)
def test_gradients_with_dropout_match_finite_differences(tied, cfg):
    loss, out_act = cfg
    x, t = make_data(loss, out_act, seed=7)
    net = make_net(tied, "tanh", out_act, dropout=0.4)
    seed = 1234
    value, grads = net.loss_and_grads(x, t, loss, rng=np.random.default_rng(seed),
                                      output_mode="sampled")
    # dropout really acts: another mask gives another loss, no mask another still
    other = net.loss_and_grads(x, t, loss, rng=np.random.default_rng(seed + 1))[0]
    clean = net.loss_and_grads(x, t, loss, rng=None)[0]
    assert other != value and clean != value
    num = fd_grads(net, x, t, loss, seed=seed)
    for name, p in net.params.items():
        assert rel_err(dense(grads[name], p.shape), num[name]) < 1e-5, name


@pytest.mark.parametrize("tied", (True, False))
@pytest.mark.parametrize("cfg", (("mse", "identity"), ("multinomial", "identity")))
@pytest.mark.parametrize("subset", (False, True))
def test_gradients_three_hidden_layers_match_finite_differences(tied, cfg, subset):
    """Three hidden layers give two decoder hidden layers, whose backprop order matters."""
    loss, out_act = cfg
    x, t = make_data(loss, out_act, seed=21, subset=subset)
    net = make_net(tied, "elu", out_act, layers=(4, 3, 2))
    _, grads = net.loss_and_grads(x, t, loss, output_mode="sampled")
    num = fd_grads(net, x, t, loss)
    for name, p in net.params.items():
        assert rel_err(dense(grads[name], p.shape), num[name]) < 1e-5, name


def test_dropout_mask_is_inverted_and_applied_to_the_code_layer():
    x, _ = make_data("mse", "identity")
    net = make_net(True, "tanh", "identity", dropout=0.5)
    a_clean, cache_clean = net.hidden(x, None)
    assert cache_clean["mask"] is None
    _, cache = net.hidden(x, np.random.default_rng(0))
    mask = cache["mask"]
    assert set(np.unique(mask)) <= {0.0, 2.0} and (mask == 0).any() and (mask == 2).any()
    np.testing.assert_allclose(cache["code"], cache_clean["code"] * mask)
    # a network with dropout=0 ignores the rng entirely
    net0 = make_net(True, "tanh", "identity", dropout=0.0)
    np.testing.assert_array_equal(net0.hidden(x, np.random.default_rng(0))[0],
                                  net0.hidden(x, None)[0])


# ----------------------------------------------------------- sparse path == dense reference
DENSE_CASES = list(itertools.product((True, False), ("selu", "relu", "sigmoid"), LOSS_CONFIGS,
                                     ("sampled", "union", "auto")))


@pytest.mark.parametrize("layers", ((3, 2), (5, 3, 2)))
@pytest.mark.parametrize("subset", (False, True))
@pytest.mark.parametrize("tied,activation,cfg,mode", DENSE_CASES)
def test_sparse_path_equals_dense_reference(tied, activation, cfg, mode, subset, layers):
    loss, out_act = cfg
    x, t = make_data(loss, out_act, seed=3, subset=subset)
    net = make_net(tied, activation, out_act, layers=layers)
    Z, Y, ref_loss, ref_grads = reference_for(net, x, t, loss)
    # forward output
    assert rel_err(net.predict(x), Y) < 1e-5
    a, _ = net.hidden(x)
    rows = entry_rows(t)
    z_at = net.output_at(a, rows, t.indices.astype(np.int64), mode=mode)
    assert rel_err(z_at, Z[rows, t.indices]) < 1e-5
    # loss and every gradient
    value, grads = net.loss_and_grads(x, t, loss, rng=None, output_mode=mode)
    assert abs(value - ref_loss) <= 1e-5 * max(1.0, abs(ref_loss))
    for name, p in net.params.items():
        assert rel_err(dense(grads[name], p.shape), ref_grads[name]) < 1e-5, name


@pytest.mark.parametrize("mode", ("sampled", "union"))
@pytest.mark.parametrize("tied", (True, False))
def test_sparse_path_equals_dense_reference_with_dropout(tied, mode):
    x, t = make_data("mse", "identity", seed=5, subset=True)
    net = make_net(tied, "elu", "identity", dropout=0.3, layers=(4, 3, 2))
    keep = 0.7
    drop = (np.random.default_rng(9).random((N_USERS, 2)) < keep) / keep
    _, _, ref_loss, ref_grads = reference_for(net, x, t, "mse", drop_mask=drop)
    value, grads = net.loss_and_grads(x, t, "mse", rng=np.random.default_rng(9),
                                      output_mode=mode)
    assert abs(value - ref_loss) < 1e-10
    for name, p in net.params.items():
        assert rel_err(dense(grads[name], p.shape), ref_grads[name]) < 1e-5, name


@pytest.mark.parametrize("tied", (True, False))
def test_float32_network_matches_float64_reference(tied):
    x, t = make_data("mse", "identity", seed=11, dtype=np.float32)
    net = make_net(tied, "selu", "identity", dtype=np.float32)
    _, Y, ref_loss, ref_grads = reference_for(net, x, t, "mse")
    value, grads = net.loss_and_grads(x, t, "mse", output_mode="union")
    assert net.predict(x).dtype == np.float32
    assert rel_err(net.predict(x), Y) < 1e-5
    assert abs(value - ref_loss) <= 1e-5 * max(1, ref_loss)
    for name, p in net.params.items():
        g = dense(grads[name], p.shape)
        assert g.dtype == np.float32, name
        assert rel_err(g, ref_grads[name]) < 1e-5, name


def test_sampled_chunks_and_union_agree_on_larger_data():
    rng = np.random.default_rng(0)
    net = Network(300, (16, 4), tied=False, activation="selu", seed=0, dtype=np.float64)
    x = sp.random(40, 300, density=0.05, random_state=1, format="csr")
    a, _ = net.hidden(x)
    rows = rng.integers(0, 40, 500)
    cols = rng.integers(0, 300, 500)
    full = net.output(a)[0][rows, cols]
    for mode, chunk in (("union", 1 << 22), ("sampled", 1 << 22), ("sampled", 16 * 7),
                        ("auto", 1 << 22)):
        np.testing.assert_allclose(net.output_at(a, rows, cols, mode, chunk=chunk), full,
                                   rtol=1e-12, atol=1e-12, err_msg=f"{mode} {chunk}")


def test_mse_training_never_forms_the_dense_output():
    x, t = make_data("mse", "identity")
    net = make_net(True, "selu", "identity")

    def boom(*a, **k):
        raise AssertionError("dense output computed for the masked MSE")
    net.output = boom
    for mode in ("sampled", "union", "auto"):
        net.loss_and_grads(x, t, "mse", output_mode=mode)


def test_row_sparse_gradient_rows_are_exactly_the_touched_items():
    x, t = make_data("mse", "identity", seed=2)
    in_cols = np.unique(x.indices)
    out_cols = np.unique(t.indices)
    _, g_tied = make_net(True, "selu", "identity").loss_and_grads(x, t, "mse")
    assert isinstance(g_tied["W0"], RowSparse) and isinstance(g_tied["c0"], RowSparse)
    np.testing.assert_array_equal(g_tied["W0"].rows, np.union1d(in_cols, out_cols))
    np.testing.assert_array_equal(g_tied["c0"].rows, out_cols)
    _, g = make_net(False, "selu", "identity").loss_and_grads(x, t, "mse")
    np.testing.assert_array_equal(g["W0"].rows, in_cols)
    np.testing.assert_array_equal(g["V0"].rows, out_cols)
    assert not in_cols.tolist() == out_cols.tolist()   # the data makes the check meaningful
    for name in ("W1", "V1", "b0", "b1", "c1"):
        assert isinstance(g[name], np.ndarray), name


def test_unknown_loss_and_bad_construction_raise():
    x, t = make_data("mse", "identity")
    with pytest.raises(ValueError, match="unknown loss"):
        make_net(True, "selu", "identity").loss_and_grads(x, t, "hinge")
    with pytest.raises(ValueError, match="dropout"):
        Network(5, (3,), dropout=1.0)
    with pytest.raises(ValueError, match="layers"):
        Network(5, (3, 0))
    with pytest.raises(ValueError, match="unknown activation"):
        Network(5, (3,), activation="swish")


def test_init_shapes_glorot_bounds_and_tied_storage():
    net = Network(50, (20, 6), tied=True, seed=3)
    assert set(net.params) == {"W0", "W1", "b0", "b1", "c0", "c1"}
    assert net.decoder_weight(0) is net.params["W0"]
    assert net.params["W0"].shape == (50, 20) and net.params["c0"].shape == (50,)
    assert net.params["W0"].dtype == np.float32
    lim = np.sqrt(6 / 70)
    assert np.abs(net.params["W0"]).max() <= lim and np.abs(net.params["W0"]).max() > 0.8 * lim
    assert net.n_params() == 50 * 20 + 20 * 6 + 20 + 6 + 50 + 20
    untied = Network(50, (20, 6), tied=False, seed=3)
    assert set(untied.params) == {"W0", "W1", "V0", "V1", "b0", "b1", "c0", "c1"}
    assert untied.params["V1"].shape == (20, 6)
    assert not np.array_equal(untied.params["V0"], untied.params["W0"])
    # seeded
    np.testing.assert_array_equal(Network(50, (20, 6), seed=3).params["W1"], net.params["W1"])
    assert not np.array_equal(Network(50, (20, 6), seed=4).params["W1"], net.params["W1"])


# ------------------------------------------------------------------ RowSparse / add_grads
def test_row_sparse_dense_and_norm():
    g = RowSparse(np.array([1, 4]), np.array([[1.0, 2.0], [3.0, -4.0]]))
    d = g.dense((6, 2))
    expected = np.zeros((6, 2))
    expected[1] = [1, 2]
    expected[4] = [3, -4]
    np.testing.assert_array_equal(d, expected)
    assert g.sq_norm() == pytest.approx(30.0)
    v = RowSparse(np.array([0, 2]), np.array([3.0, 4.0]))
    np.testing.assert_array_equal(v.dense((4,)), [3, 0, 4, 0])
    assert v.sq_norm() == 25.0


@pytest.mark.parametrize("threads", [1, 2])
def test_row_product_is_its_product_whole_and_in_blocks(threads, monkeypatch):
    from npcf.utils import parallel
    monkeypatch.setattr(parallel, "MIN_NNZ", 1)           # the whole product splits too
    rng = np.random.default_rng(0)
    left = sp.random(40, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    right = rng.standard_normal((30, 6)).astype(np.float32)
    rows = np.sort(rng.choice(100, 40, replace=False))
    g = RowProduct(rows, left, right)
    assert g.shape == (40, 6) and g.dtype == np.float32
    want = left @ right
    buf = np.full((40, 6), np.nan, np.float32)
    with parallel.using(threads):
        blocks = [g.values_at(lo, hi, buf[lo:hi]).copy() for lo, hi in ((0, 7), (7, 8), (8, 40))]
        assert g._values is None                          # blocks do not form the whole
        np.testing.assert_array_equal(np.concatenate(blocks), want)
        np.testing.assert_array_equal(g.values, want)
    np.testing.assert_array_equal(g.values_at(3, 9, buf[:6]), want[3:9])
    np.testing.assert_array_equal(g.dense((100, 6)), RowSparse(rows, want).dense((100, 6)))
    assert g.sq_norm() == pytest.approx(float(np.vdot(want, want)))
    with pytest.raises(ValueError, match="product"):
        RowProduct(rows[:5], left, right)


def test_input_weight_gradients_are_row_products_formed_on_demand():
    x, t = make_data("mse", "identity", seed=2, subset=True)   # as every corruption gives
    for tied in (True, False):
        _, g = make_net(tied, "selu", "identity").loss_and_grads(x, t, "mse")
        for name in ("W0",) if tied else ("W0", "V0"):
            assert isinstance(g[name], RowProduct) and g[name]._values is None, name


def test_add_grads_row_sparse_plus_row_sparse_unions_rows():
    a = RowSparse(np.array([0, 3, 5]), np.array([[1.0], [2.0], [3.0]]))
    b = RowSparse(np.array([3, 4]), np.array([[10.0], [20.0]]))
    a_vals, b_vals = a.values.copy(), b.values.copy()
    s = add_grads(a, b)
    assert isinstance(s, RowSparse)
    np.testing.assert_array_equal(s.rows, [0, 3, 4, 5])
    np.testing.assert_array_equal(s.dense((6, 1)), a.dense((6, 1)) + b.dense((6, 1)))
    np.testing.assert_array_equal(a.values, a_vals)
    np.testing.assert_array_equal(b.values, b_vals)


@pytest.mark.parametrize("order", ("sparse_first", "dense_first"))
def test_add_grads_mixed_is_dense_and_does_not_modify_inputs(order):
    d = np.arange(12.0).reshape(6, 2)
    r = RowSparse(np.array([1, 5]), np.array([[1.0, 1.0], [2.0, 2.0]]))
    d0 = d.copy()
    s = add_grads(r, d) if order == "sparse_first" else add_grads(d, r)
    assert isinstance(s, np.ndarray)
    np.testing.assert_array_equal(s, d0 + r.dense((6, 2)))
    np.testing.assert_array_equal(d, d0)
    np.testing.assert_array_equal(add_grads(d, d), 2 * d0)


@pytest.mark.parametrize("vecdot", [True, False])
def test_row_dots_are_the_rows_inner_products(vecdot, monkeypatch):
    from npcf.nn import network
    if not vecdot:                                    # NumPy < 2.0 has no vecdot
        monkeypatch.setattr(network, "_vecdot", None)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 300)).astype(np.float32), rng.standard_normal((7, 300))
    got = network.row_dots(a, b.astype(np.float32))
    np.testing.assert_allclose(got, (a.astype(np.float64) * b).sum(1), rtol=1e-4, atol=1e-4)
    assert got.dtype == np.float32 and got.shape == (7,)
