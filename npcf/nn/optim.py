"""Optimizers written by hand: SGD (momentum, Nesterov), Adam, AdamW; and ``lbfgs``,
full-batch L-BFGS-B through ``scipy.optimize.minimize`` (:class:`FullBatch`, which the
trainer drives with the network's own gradient).

Every optimizer updates a dict of float arrays in place from a dict of
gradients; a gradient may be a :class:`~npcf.nn.network.RowSparse`.

Lazy updates (``lazy=True``, the default): for a row-sparse gradient only the
touched rows of the parameter *and of the optimizer state* are updated, as
TensorFlow's LazyAdam and torch's SparseAdam do. Rows a batch did not touch keep
their moments unchanged (no decay) and get no update, so lazy Adam differs from
dense Adam whenever some rows are untouched; when every row is touched every
step it is identical. ``lazy=False`` densifies the gradient: exact dense Adam.

Weight decay: ``weight_decay`` is L2 (added to the gradient) for SGD and Adam,
decoupled (``p -= lr * wd * p``) for AdamW; in lazy mode both apply to touched
rows only. It applies to every parameter, biases included (leaving biases out helped
only configurations the search never picks and cost movies-small's chosen model 0.0045
validation RMSE: ``benchmarks/NOTES.md``).
``clip_norm`` clips the global gradient norm before the update.
"""
from __future__ import annotations

import threading

import numpy as np

from npcf.nn.network import RowProduct, RowSparse
from npcf.utils import parallel

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw", "lbfgs")
#: optimizers that take the whole training set per step (no mini-batches, no learning rate)
FULL_BATCH = ("lbfgs",)


def global_norm(grads: dict) -> float:
    """L2 norm of all gradients together."""
    total = 0.0
    for g in grads.values():
        total += g.sq_norm() if isinstance(g, RowSparse) else float(np.vdot(g, g))
    return float(np.sqrt(total))


class Optimizer:
    """Base: ``step(params, grads)``; ``state_dict()``/``load_state_dict()`` for resume."""

    #: optimizer state arrays per parameter, each shaped like it
    slots: tuple[str, ...] = ()
    #: Rows are updated in chunks of about this many bytes, so that the gathered rows
    #: and the scratch buffers stay in cache (the update is memory-bound).
    chunk_bytes = 1 << 19
    #: scratch arrays the update needs, each one chunk
    n_buffers = 0

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, clip_norm: float | None = None,
                 lazy: bool = True):
        self.lr, self.weight_decay, self.clip_norm, self.lazy = lr, weight_decay, clip_norm, lazy
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._local = threading.local()    # per-thread scratch buffers

    def step(self, params: dict, grads: dict) -> None:
        for name, g in grads.items():      # rows are gathered unchecked (mode="clip")
            n = len(params[name]) if np.ndim(params[name]) else 1
            if isinstance(g, RowSparse) and g.rows.size and (g.rows.min() < 0 or g.rows.max() >= n):
                raise IndexError(f"gradient rows of {name!r} outside its {n} rows")
        self.t += 1
        scale = 1.0
        if self.clip_norm:
            norm = global_norm(grads)
            if norm > self.clip_norm:
                scale = self.clip_norm / (norm + 1e-12)
        for name, g in grads.items():
            p = params[name]
            if isinstance(g, RowSparse) and not self.lazy:
                g = g.dense(p.shape)
            if isinstance(g, RowProduct) and scale == 1.0 and g.dtype == p.dtype and p.ndim > 1:
                rows, gv = g.rows, g              # its rows formed block by block in _chunks
            else:
                rows, gv = (g.rows, g.values) if isinstance(g, RowSparse) else (None, g)
                gv = np.asarray(gv, dtype=p.dtype)
                if scale != 1.0:
                    gv = gv * p.dtype.type(scale)
            state = self._state(name, p)
            if p.ndim == 0:                       # a scalar parameter: as one row
                p, gv = p.reshape(1), gv.reshape(1)
                state = {k: v.reshape(1) for k, v in state.items()}
            self._chunks(p, state, rows, gv)

    def _chunks(self, p, state, rows, gv) -> None:
        """Update the rows of ``p`` (all, or ``rows``) chunk by chunk; the chunks are
        split over :func:`npcf.utils.parallel.threads` threads (disjoint rows).
        ``gv``: the gradient rows, an array or a :class:`RowProduct` whose rows are
        formed one chunk at a time, in cache, right before they are used."""
        row_shape = tuple(gv.shape[1:])
        row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * gv.dtype.itemsize)
        per = max(1, self.chunk_bytes // row_bytes)
        formed = isinstance(gv, RowProduct)

        def work(s: int, e: int) -> None:
            bufs = self._buffers(per, row_shape, gv.dtype)
            idx = slice(s, e) if rows is None else rows[s:e]
            g = gv.values_at(s, e, bufs[-1][:e - s]) if formed else gv[s:e]
            pv = self._rows(p, idx, bufs[0][:e - s])
            new = self._update(p, state, idx, pv, g, [b[:e - s] for b in bufs[1:-1]])
            if new is pv:
                self._put(p, idx, new)        # a view of p is already updated
            else:
                p[idx] = new

        # a second thread joins once there are two chunks: the dense 1000 x 500 layer's
        # update (2 MB, ~0.7 ms) gains from it too
        parallel.chunks(work, gv.shape[0], per, min_size=per)

    def _buffers(self, per: int, row_shape, dtype) -> list[np.ndarray]:
        """This thread's scratch, kept between steps: arrays of ``per`` rows for the
        parameter's rows, the ``n_buffers`` of the update and the gradient's rows."""
        cache = getattr(self._local, "bufs", None)
        if cache is None:
            cache = self._local.bufs = {}
        key = (per, tuple(row_shape), np.dtype(dtype).str)
        if key not in cache:
            cache[key] = [np.empty((per,) + tuple(row_shape), dtype)
                          for _ in range(2 + self.n_buffers)]
        return cache[key]

    def _state(self, name: str, p: np.ndarray) -> dict[str, np.ndarray]:
        s = self.state.setdefault(name, {})
        for key in self.slots:
            if key not in s:
                s[key] = np.zeros_like(p)
        return s

    @staticmethod
    def _rows(arr, idx, buf):
        """Rows ``idx`` of ``arr``: a view for a slice, else gathered into ``buf``.

        ``mode="clip"``: the row indices are valid by construction, and NumPy gathers
        into ``out`` through a hidden temporary in its default ``mode="raise"`` (an
        extra copy per chunk: ~8% of a full-scale training step at 1 thread).
        """
        return arr[idx] if isinstance(idx, slice) else np.take(arr, idx, axis=0, out=buf,
                                                                mode="clip")

    @staticmethod
    def _put(arr, idx, values) -> None:
        if not isinstance(idx, slice):
            arr[idx] = values

    def _update(self, p, state, idx, pv, gv, bufs):  # pragma: no cover - abstract
        """New values of the rows ``idx`` (``pv``: their current values, may be
        overwritten); update ``state`` rows; ``bufs``: scratch shaped like ``gv``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (``"{param}/{slot}"``) plus ``"t"``."""
        out = {f"{n}/{k}": v for n, s in self.state.items() for k, v in s.items()}
        out["t"] = np.array(self.t, dtype=np.int64)
        return out

    def load_state_dict(self, flat: dict) -> None:
        self.t = int(flat["t"])
        self.state = {}
        for key, v in flat.items():
            if key != "t":
                n, k = key.rsplit("/", 1)
                self.state.setdefault(n, {})[k] = np.array(v)


class SGD(Optimizer):
    """SGD; ``momentum`` > 0 adds heavy-ball momentum, ``nesterov`` the Nesterov form."""

    n_buffers = 2

    def __init__(self, lr=1e-2, momentum: float = 0.0, nesterov: bool = False, **kw):
        super().__init__(lr, **kw)
        self.momentum, self.nesterov = momentum, nesterov
        self.slots = ("momentum",) if momentum else ()

    def _update(self, p, state, idx, pv, gv, bufs):
        dt = pv.dtype.type
        if self.weight_decay:
            gv = np.add(gv, dt(self.weight_decay) * pv, out=bufs[0])
        if self.momentum:
            b = self._rows(state["momentum"], idx, bufs[1])
            b *= dt(self.momentum)
            b += gv
            self._put(state["momentum"], idx, b)
            gv = gv + dt(self.momentum) * b if self.nesterov else b
        return pv - dt(self.lr) * gv


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with L2 ``weight_decay`` added to the gradient.

    The update runs in place on per-thread scratch buffers: no allocation per chunk.
    The moments are held scaled, ``m / (1 - beta1)`` and ``v / (1 - beta2)``, so that
    updating them needs no multiply by ``1 - beta`` (two passes fewer over the rows);
    they are saved that way (slots ``m_scaled``, ``v_scaled``), so a resumed run continues
    bit for bit.
    """

    decoupled = False
    slots = ("m_scaled", "v_scaled")
    n_buffers = 4

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw):
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam needs 0 <= beta < 1, got beta1={beta1}, beta2={beta2}")
        super().__init__(lr, **kw)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, p, state, idx, pv, gv, bufs):
        dt = pv.dtype.type
        g, tmp, mbuf, vbuf = bufs
        if self.weight_decay and not self.decoupled:
            np.multiply(pv, dt(self.weight_decay), out=g)
            g += gv
        else:
            g = gv
        m = self._rows(state["m_scaled"], idx, mbuf)       # m / (1 - beta1)
        m *= dt(self.beta1)
        m += g
        self._put(state["m_scaled"], idx, m)
        v = self._rows(state["v_scaled"], idx, vbuf)       # v / (1 - beta2)
        v *= dt(self.beta2)
        v += np.multiply(g, g, out=tmp)
        self._put(state["v_scaled"], idx, v)
        # lr * m_hat / (sqrt(v_hat) + eps), with both bias corrections and both moment
        # scales folded into one step size and one epsilon
        root_bc2, root_c2 = np.sqrt(1 - self.beta2 ** self.t), np.sqrt(1 - self.beta2)
        step = self.lr * root_bc2 * (1 - self.beta1) / ((1 - self.beta1 ** self.t) * root_c2)
        np.sqrt(v, out=tmp)
        tmp += dt(self.eps * root_bc2 / root_c2)
        np.divide(m, tmp, out=tmp)
        tmp *= dt(step)
        if self.weight_decay and self.decoupled:
            pv *= dt(1 - self.lr * self.weight_decay)
        pv -= tmp
        return pv

    def load_state_dict(self, flat: dict) -> None:
        """Also takes the unscaled ``m`` and ``v`` that npcf before 2026-12-04 saved."""
        flat = dict(flat)
        for key in [k for k in flat if k.endswith(("/m", "/v"))]:
            v = np.array(flat.pop(key))
            scale = 1 - (self.beta1 if key.endswith("/m") else self.beta2)
            flat[f"{key}_scaled"] = v / v.dtype.type(scale)
        super().load_state_dict(flat)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    decoupled = True


def make(name: str, lr: float, weight_decay: float = 0.0, clip_norm=None, lazy: bool = True,
         momentum: float = 0.9) -> Optimizer:
    """An optimizer by name (see :data:`NAMES`)."""
    kw = dict(weight_decay=weight_decay, clip_norm=clip_norm, lazy=lazy)
    if name == "sgd":
        return SGD(lr, **kw)
    if name == "momentum":
        return SGD(lr, momentum=momentum, **kw)
    if name == "nesterov":
        return SGD(lr, momentum=momentum, nesterov=True, **kw)
    if name == "adam":
        return Adam(lr, **kw)
    if name == "adamw":
        return AdamW(lr, **kw)
    if name == "lbfgs":
        return FullBatch(weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")


class FullBatch:
    """L-BFGS-B on the full-batch objective (masked MSE over every training rating +
    ``weight_decay / 2 * ||theta||^2``, the same L2 as Adam's); the trainer calls
    :meth:`minimize` with a function returning the loss and its flat gradient (float64).
    One iteration is one "epoch" of the history. It keeps no state between runs: a
    resumed run starts a fresh curvature memory from the saved weights.
    """

    def __init__(self, weight_decay: float = 0.0):
        self.weight_decay, self.lr = weight_decay, None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    @staticmethod
    def minimize(fun, theta0: np.ndarray, max_iter: int, callback) -> np.ndarray:
        """Run L-BFGS-B from ``theta0`` (float64, flat) for at most ``max_iter``
        iterations; ``callback(theta)`` after each may raise StopIteration to end it.
        Returns the last iterate."""
        from scipy.optimize import minimize
        last = [theta0]

        def cb(theta):
            last[0] = np.array(theta)
            callback(theta)
        try:
            # the loss is a mean (gradient entries ~1e-5): scipy's default tolerances
            # would stop it after a few iterations; validation and max_iter decide
            res = minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=cb,
                           options={"maxiter": int(max_iter), "maxcor": 10, "gtol": 1e-12,
                                    "ftol": 1e-12})
            return res.x
        except StopIteration:           # scipy < 1.11 lets it through
            return last[0]
