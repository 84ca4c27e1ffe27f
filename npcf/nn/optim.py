"""Optimizers written by hand: SGD (momentum, Nesterov), Adam, AdamW.

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
rows only. ``clip_norm`` clips the global gradient norm before the update.
"""
from __future__ import annotations

import threading

import numpy as np

from npcf.nn.network import RowSparse
from npcf.utils import parallel

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw")


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
        split over :func:`npcf.utils.parallel.threads` threads (disjoint rows)."""
        row_bytes = max(1, gv[:1].nbytes)
        per = max(1, self.chunk_bytes // row_bytes)

        def work(lo: int, hi: int) -> None:
            bufs = self._buffers(per, gv.shape[1:], gv.dtype)
            for s in range(lo, hi, per):
                e = min(s + per, hi)
                idx = slice(s, e) if rows is None else rows[s:e]
                pv = self._rows(p, idx, bufs[0][:e - s])
                new = self._update(p, state, idx, pv, gv[s:e], [b[:e - s] for b in bufs[1:]])
                if new is pv:
                    self._put(p, idx, new)        # a view of p is already updated
                else:
                    p[idx] = new

        parallel.split(work, gv.shape[0], min_size=max(per, parallel.MIN_BYTES // row_bytes))

    def _buffers(self, per: int, row_shape, dtype) -> list[np.ndarray]:
        """This thread's scratch: 1 + ``n_buffers`` arrays of ``per`` rows, kept between steps."""
        cache = getattr(self._local, "bufs", None)
        if cache is None:
            cache = self._local.bufs = {}
        key = (per, tuple(row_shape), np.dtype(dtype).str)
        if key not in cache:
            cache[key] = [np.empty((per,) + tuple(row_shape), dtype)
                          for _ in range(1 + self.n_buffers)]
        return cache[key]

    def _state(self, name: str, p: np.ndarray) -> dict[str, np.ndarray]:
        s = self.state.setdefault(name, {})
        for key in self.slots:
            if key not in s:
                s[key] = np.zeros_like(p)
        return s

    @staticmethod
    def _rows(arr, idx, buf):
        """Rows ``idx`` of ``arr``: a view for a slice, else gathered into ``buf``."""
        return arr[idx] if isinstance(idx, slice) else np.take(arr, idx, axis=0, out=buf)

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
    """

    decoupled = False
    slots = ("m", "v")
    n_buffers = 4

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw):
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
        m = self._rows(state["m"], idx, mbuf)
        m *= dt(self.beta1)
        m += np.multiply(g, dt(1 - self.beta1), out=tmp)
        self._put(state["m"], idx, m)
        v = self._rows(state["v"], idx, vbuf)
        v *= dt(self.beta2)
        np.multiply(g, g, out=tmp)
        tmp *= dt(1 - self.beta2)
        v += tmp
        self._put(state["v"], idx, v)
        bc2 = 1 - self.beta2 ** self.t
        step = self.lr * np.sqrt(bc2) / (1 - self.beta1 ** self.t)
        np.sqrt(v, out=tmp)
        tmp += dt(self.eps * np.sqrt(bc2))
        np.divide(m, tmp, out=tmp)
        tmp *= dt(step)
        if self.weight_decay and self.decoupled:
            pv *= dt(1 - self.lr * self.weight_decay)
        pv -= tmp
        return pv


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
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
