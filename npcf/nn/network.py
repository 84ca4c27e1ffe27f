"""The autoencoder network: parameters, sparse-aware forward and backward passes.

Shapes (``n`` = input width, i.e. items for a user-based model; ``d = [n, h1, ..., hL]``):

- encoder layer k: ``W{k}`` (d_k, d_k+1) float, ``b{k}`` (d_k+1,)
- decoder layer k maps d_k+1 -> d_k: ``out = a @ D_k.T + c{k}`` where ``D_k`` is
  ``W{k}`` when tied (the same array: stored once, gradients summed) and ``V{k}``
  (d_k, d_k+1) when untied. Storing decoder weights as (d_k, d_k+1) makes the output
  weight ``D_0`` row-indexed by item, like ``W0``: both get row-sparse gradients.

Training never forms a (B, n) array for the masked MSE: the first layer is
``X @ W0`` with X CSR, the output is computed only at the observed entries, and
the gradients of ``W0``, ``D_0`` and ``c0`` are :class:`RowSparse` (touched item rows);
for the masked MSE those of ``W0`` and ``D_0`` are usually a :class:`RowProduct`, formed
chunk by chunk where a lazy update without clipping uses them.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from npcf.nn import activations
from npcf.nn.losses import masked_mse, multinomial
from npcf.utils import parallel
from npcf.utils.sparse import entry_rows, positions_in, union, unique, unique_inverse


class RowSparse:
    """A gradient that is zero outside ``rows``: ``values[j]`` is row ``rows[j]``.

    ``rows``: sorted unique int64 indices into the first axis; ``values``: array of
    shape ``(len(rows),) + param.shape[1:]``.
    """

    def __init__(self, rows: np.ndarray, values: np.ndarray):
        self.rows, self._values = rows, values

    @property
    def values(self) -> np.ndarray:
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``values``."""
        return (len(self.rows),) + self._row_shape()

    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype

    def _row_shape(self) -> tuple[int, ...]:
        return self._values.shape[1:]

    def values_at(self, lo: int, hi: int, buf: np.ndarray) -> np.ndarray:
        """``values[lo:hi]``: a view here; a :class:`RowProduct` forms them in ``buf``
        (C-contiguous, ``(hi - lo,) + shape[1:]``) and returns it."""
        return self.values[lo:hi]

    def dense(self, shape) -> np.ndarray:
        out = np.zeros(shape, dtype=self.values.dtype)
        out[self.rows] = self.values
        return out

    def sq_norm(self) -> float:
        return float(np.vdot(self.values, self.values))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rows={self.rows!r}, shape={self.shape})"


class RowProduct(RowSparse):
    """A :class:`RowSparse` whose values are the product ``left @ right`` (CSR
    (len(rows), k) times dense (k, h), one dtype), formed where it is consumed: the
    optimizer asks :meth:`values_at` for one cache-sized block of rows at a time and
    updates it at once, so the (len(rows), h) gradient (38 MB at full scale, a step's
    largest array) is never written to memory and read back. ``values`` forms it whole
    (once) for anyone else; both give the same bits.
    """

    def __init__(self, rows: np.ndarray, left: sp.csr_matrix, right: np.ndarray):
        if left.shape[0] != len(rows) or left.shape[1] != right.shape[0] or right.ndim != 2:
            raise ValueError(f"a {left.shape} by {right.shape} product for {len(rows)} rows")
        super().__init__(rows, None)
        self.left, self.right = left, right

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = parallel.spmm(self.left, self.right)
        return self._values

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(self.left.dtype, self.right.dtype)

    def _row_shape(self) -> tuple[int, ...]:
        return self.right.shape[1:]

    def values_at(self, lo: int, hi: int, buf: np.ndarray) -> np.ndarray:
        if self._values is not None:
            return self._values[lo:hi]
        parallel.product_into(self.left, self.right, buf, rows=(lo, hi))
        return buf


def add_grads(a, b):
    """Sum of two gradients, each an ndarray or :class:`RowSparse` (rows unioned)."""
    if isinstance(a, RowSparse) and isinstance(b, RowSparse):
        rows = union(a.rows, b.rows)
        values = np.zeros((rows.size,) + a.values.shape[1:], dtype=a.values.dtype)
        values[np.searchsorted(rows, a.rows)] += a.values
        values[np.searchsorted(rows, b.rows)] += b.values
        return RowSparse(rows, values)
    if isinstance(a, RowSparse):
        a, b = b, a
    if isinstance(b, RowSparse):
        out = a.copy()
        out[b.rows] += b.values
        return out
    return a + b


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b).sum(axis=1)`` for two (n, h) arrays: NumPy's ``vecdot`` ufunc where it
    has one (2.0 on; ~1.5x einsum's speed at h = 1000), else ``einsum``."""
    return _vecdot(a, b) if _vecdot is not None else np.einsum("ij,ij->i", a, b)


_vecdot = getattr(np, "vecdot", None)


class ShapeMismatch(ValueError):
    """Given parameters do not fit the architecture; ``str(err)`` lists the names."""


#: weight initialisations: ``glorot`` (Glorot/Xavier uniform, U(+-sqrt(6 / (fan_in +
#: fan_out)))) and ``uniform`` (PyTorch's ``nn.Linear`` default, U(+-1 / sqrt(fan_in)) for
#: weights and hidden biases, about half glorot's scale here: I-AutoRec's setting)
INITS = ("glorot", "uniform")


def glorot(rng, fan_in: int, fan_out: int, shape, dtype) -> np.ndarray:
    """Glorot/Xavier uniform initialisation."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def fan_in_uniform(rng, fan_in: int, shape, dtype) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's ``nn.Linear`` default)."""
    limit = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


class Network:
    """Parameters and passes of a symmetric (optionally tied) deep autoencoder.

    ``layers``: encoder sizes (h1, ..., hL); ``activation`` for every hidden layer
    (code layer included), ``output_activation`` for the reconstruction;
    ``dropout``: rate on the code layer during training; ``init``: one of :data:`INITS`.
    """

    def __init__(self, n_inputs: int, layers, *, tied: bool = True, activation: str = "selu",
                 output_activation: str = "identity", dropout: float = 0.0, seed: int = 0,
                 dtype=np.float32, params: dict | None = None, init: str = "glorot"):
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        self.n_inputs = int(n_inputs)
        self.layers = tuple(int(h) for h in layers)
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers must be positive sizes, got {layers!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.tied, self.dropout = bool(tied), float(dropout)
        self.activation, self.output_activation = activation, output_activation
        self._f, self._df = activations.get(activation)
        self._g, self._dg = activations.get(output_activation)
        self.dtype = np.dtype(dtype)
        if params is not None:
            self._check_shapes(params)
        self.params = params if params is not None else self._init(seed)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.n_inputs,) + self.layers

    def _init(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        d, p = self.sizes, {}
        for k in range(len(self.layers)):
            if self.init == "glorot":
                p[f"W{k}"] = glorot(rng, d[k], d[k + 1], (d[k], d[k + 1]), self.dtype)
                p[f"b{k}"] = np.zeros(d[k + 1], self.dtype)
            else:
                p[f"W{k}"] = fan_in_uniform(rng, d[k], (d[k], d[k + 1]), self.dtype)
                p[f"b{k}"] = fan_in_uniform(rng, d[k], d[k + 1], self.dtype)
        for k in range(len(self.layers)):
            if not self.tied:
                p[f"V{k}"] = glorot(rng, d[k + 1], d[k], (d[k], d[k + 1]), self.dtype) \
                    if self.init == "glorot" else fan_in_uniform(rng, d[k + 1], (d[k], d[k + 1]),
                                                                 self.dtype)
            p[f"c{k}"] = np.zeros(d[k], self.dtype)
        return p

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter of this architecture."""
        d, want = self.sizes, {}
        for k in range(len(self.layers)):
            want[f"W{k}"], want[f"b{k}"], want[f"c{k}"] = (d[k], d[k + 1]), (d[k + 1],), (d[k],)
            if not self.tied:
                want[f"V{k}"] = (d[k], d[k + 1])
        return want

    def _check_shapes(self, params: dict) -> None:
        want = self.param_shapes()
        got = {k: tuple(np.shape(v)) for k, v in params.items()}
        if got != want:
            missing = sorted(set(want) - set(got))
            wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            extra = sorted(set(got) - set(want))
            raise ShapeMismatch(f"missing {missing or 'none'}, wrong shape {wrong or 'none'}, "
                                f"unexpected {extra or 'none'}")

    def zero_columns(self, cols) -> None:
        """Zero the input and output weight rows of data columns ``cols`` (e.g. movies
        with no training rating: no gradient ever reaches those rows under lazy Adam, so
        they would keep their random start and add noise wherever they are used)."""
        cols = np.asarray(cols, dtype=np.int64)
        self.params["W0"][cols] = 0
        self.decoder_weight(0)[cols] = 0

    def decoder_weight(self, k: int) -> np.ndarray:
        return self.params[f"W{k}" if self.tied else f"V{k}"]

    def n_params(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    # ------------------------------------------------------------------ forward
    def hidden(self, x: sp.csr_matrix, rng=None):
        """Forward to the last decoder hidden layer (width h1).

        ``x``: CSR (B, n). ``rng``: a Generator for code-layer dropout (None = no
        dropout, i.e. inference). Returns ``(a, cache)``, ``a`` dense (B, h1).
        """
        p, L = self.params, len(self.layers)
        cache = {"x": x, "enc": [], "dec": [], "mask": None}
        # Item-major (CSC) order reads each needed row of W0 once per batch.
        z = parallel.spmm(x, p["W0"], item_major=True)
        z += p["b0"]
        a = self._f(z)
        cache["enc"].append((z, a))
        for k in range(1, L):
            z = a @ p[f"W{k}"] + p[f"b{k}"]
            a = self._f(z)
            cache["enc"].append((z, a))
        if rng is not None and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = (rng.random(a.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
            a = a * mask
            cache["mask"] = mask
        cache["code"] = a
        for k in range(L - 1, 0, -1):
            z = a @ self.decoder_weight(k).T + p[f"c{k}"]
            a_in, a = a, self._f(z)
            cache["dec"].append((k, z, a, a_in))
        return a, cache

    def output(self, a: np.ndarray):
        """Dense output ``(z, y)``, both (B, n): logits and reconstruction."""
        z = a @ self.decoder_weight(0).T + self.params["c0"]
        return z, self._g(z)

    def output_at(self, a: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  mode: str = "auto", chunk: int = 1 << 19, groups=None):
        """Pre-activation output ``z`` (1-D) only at the pairs ``(rows[k], cols[k])``.

        ``mode``: ``"sampled"`` (gathered dot products, |pairs| * h1),
        ``"union"`` (GEMM on the union of columns, B * |U| * h1) or ``"auto"``.
        ``groups``: ``unique_inverse(cols, return_order=True)`` if the caller has it.
        """
        D, c = self.decoder_weight(0), self.params["c0"]
        h = a.shape[1]
        U, local, order = groups if groups is not None else unique_inverse(cols, True)
        if mode == "auto":
            mode = "union" if a.shape[0] * U.size <= 8 * max(1, cols.size) else "sampled"
        if mode == "union":
            z = a @ D[U].T
            return z[rows, local] + c[cols]
        # Item-major: each chunk reads its items' rows of D once (one DRAM gather per
        # touched row instead of one per pair), then gathers from that small copy.
        out = np.empty(cols.size, dtype=a.dtype)
        step = max(1, chunk // max(1, h))

        def work(s, e):
            o = order[s:e]
            item = local[o]
            lo = item[0]
            rows_of_d = D[U[lo:item[-1] + 1]]
            out[o] = row_dots(a[rows[o]], rows_of_d[item - lo])

        parallel.chunks(work, order.size, step,
                        min_size=max(1, parallel.MIN_BYTES // (a.itemsize * h)))
        return out + c[cols]

    def reconstruct_at(self, a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Reconstruction (1-D, after the output activation) at the pairs ``(rows[k],
        cols[k])`` from the last hidden layer ``a`` (B, h1)."""
        return self._g(self.output_at(a, rows, cols))

    def predict(self, x: sp.csr_matrix) -> np.ndarray:
        """Reconstruction (B, n) dense for CSR input rows (inference: no dropout)."""
        a, _ = self.hidden(x)
        return self.output(a)[1]

    # ----------------------------------------------------------------- backward
    def backward_hidden(self, da: np.ndarray, cache, grads: dict) -> dict:
        """Back-propagate ``da`` (B, h1) from the last decoder hidden layer to the input."""
        p, L = self.params, len(self.layers)
        for k, z, a, a_in in reversed(cache["dec"]):
            dz = da * self._df(z, a)
            self._acc(grads, f"W{k}" if self.tied else f"V{k}", dz.T @ a_in)
            grads[f"c{k}"] = dz.sum(axis=0)
            da = dz @ self.decoder_weight(k)
        if cache["mask"] is not None:
            da = da * cache["mask"]
        for k in range(L - 1, -1, -1):
            z, a = cache["enc"][k]
            dz = da * self._df(z, a)
            grads[f"b{k}"] = dz.sum(axis=0)
            if k == 0:
                self._input_grad(cache["x"], dz, grads, cache.get("tied_out"))
            else:
                a_in = cache["enc"][k - 1][1]
                self._acc(grads, f"W{k}", a_in.T @ dz)
                da = dz @ p[f"W{k}"].T
        return grads

    def _input_grad(self, x: sp.csr_matrix, dz: np.ndarray, grads: dict, tied_out=None) -> None:
        """``dW0 = x.T @ dz`` restricted to the items present in ``x`` (row-sparse).

        ``tied_out``: ``(U, d_out, a)``, the output half of a tied ``W0``'s gradient
        still to be formed (``d_out``: CSR (B, |U|) over the item rows ``U``). When
        ``x``'s items lie in ``U`` (as with every corruption) both halves come from one
        sparse product, ``[d_out; x_U].T @ [a; dz]``: the |U| x h1 gradient is written
        once instead of twice and summed.
        """
        if tied_out is not None:
            U, d_out, a = tied_out
            pos = positions_in(U, x.indices, x.shape[1])
            if U.size and (pos.size == 0 or pos.min() >= 0):
                local = sp.csr_matrix((x.data.astype(self.dtype, copy=False), pos, x.indptr),
                                      shape=(x.shape[0], U.size))
                both = sp.vstack([d_out, local], format="csr").T.tocsr()
                self._acc(grads, "W0", self._row_product(U, both, np.vstack([a, dz])))
                return
            self._acc(grads, "W0", self._row_product(U, d_out.T.tocsr(), a))
        used = unique(x.indices)
        local = sp.csr_matrix((x.data, np.searchsorted(used, x.indices), x.indptr),
                              shape=(x.shape[0], used.size))
        self._acc(grads, "W0", self._row_product(used.astype(np.int64), local.T.tocsr(), dz))

    def _row_product(self, rows, left: sp.csr_matrix, right: np.ndarray) -> RowSparse:
        """The gradient rows ``rows`` as ``left @ right`` in this network's dtype: a
        :class:`RowProduct` when both are in it, else formed now in their own precision
        and cast (e.g. float64 input to a float32 network)."""
        if left.dtype == right.dtype == self.dtype:
            return RowProduct(rows, left, np.ascontiguousarray(right))
        return RowSparse(rows, np.asarray(left @ right).astype(self.dtype, copy=False))

    @staticmethod
    def _acc(grads: dict, name: str, g):
        grads[name] = add_grads(grads[name], g) if name in grads else g

    def loss_and_grads(self, x: sp.csr_matrix, target: sp.csr_matrix, loss: str = "mse",
                       rng=None, output_mode: str = "auto"):
        """Loss on ``target`` for input ``x`` (both CSR (B, n)) and all gradients.

        ``loss="mse"``: masked MSE over the stored entries of ``target``; only
        those outputs are computed. ``loss="multinomial"``: Mult-DAE NLL with
        ``target`` as weights over the full (dense) logits.
        Returns ``(loss, grads)``; grads keyed like ``params``; ``W0``/``V0``/``c0``
        may be :class:`RowSparse`.
        """
        a, cache = self.hidden(x, rng)
        grads: dict = {}
        D = self.decoder_weight(0)
        dname = "W0" if self.tied else "V0"
        if loss == "mse":
            rows = entry_rows(target)
            cols = target.indices.astype(np.int64)
            groups = unique_inverse(cols, return_order=True)     # one sort for the batch
            z = self.output_at(a, rows, cols, output_mode, groups=groups)
            y = self._g(z)
            value, dy = masked_mse(y, target.data.astype(self.dtype))
            delta = (dy * self._dg(z, y)).astype(self.dtype)
            U, local, _ = groups
            d_out = sp.csr_matrix((delta, local, target.indptr), shape=(target.shape[0], U.size))
            grads["c0"] = RowSparse(U, np.bincount(local, delta, U.size).astype(self.dtype))
            if self.tied:   # formed with the input half in _input_grad, in one product
                cache["tied_out"] = (U, d_out, a)
            else:           # (|U|, B) in CSR: each touched item's gradient row is written once
                grads[dname] = self._row_product(U, d_out.T.tocsr(), a)
            # item-major: each touched row of D is read once
            d_users = sp.csr_matrix((delta, cols, target.indptr), shape=target.shape)
            da = parallel.spmm(d_users, D, item_major=True).astype(self.dtype, copy=False)
        elif loss == "multinomial":
            z, _ = self.output(a)
            value, dz = multinomial(z, target)
            dz = dz.astype(self.dtype)
            grads["c0"] = dz.sum(axis=0)
            self._acc(grads, dname, dz.T @ a)
            da = dz @ D
        else:
            raise ValueError(f"unknown loss {loss!r}; choose mse or multinomial")
        self.backward_hidden(da, cache, grads)
        return value, grads
