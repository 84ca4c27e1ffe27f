"""Optimizers written by hand: SGD (momentum, Nesterov), Adam, AdamW.

Every optimizer updates a dict of float arrays in place from a dict of
gradients; a gradient may be a :class:`~npcf.model.RowSparse`.

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

import numpy as np

from .model import RowSparse

NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw")


def global_norm(grads: dict) -> float:
    """L2 norm of all gradients together."""
    total = 0.0
    for g in grads.values():
        total += g.sq_norm() if isinstance(g, RowSparse) else float(np.vdot(g, g))
    return float(np.sqrt(total))


class Optimizer:
    """Base: ``step(params, grads)``; ``state_dict()``/``load_state_dict()`` for resume."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, clip_norm: float | None = None,
                 lazy: bool = True):
        self.lr, self.weight_decay, self.clip_norm, self.lazy = lr, weight_decay, clip_norm, lazy
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    #: Rows are updated in chunks of about this many bytes, so that the gathered
    #: rows and every temporary stay in cache (the update is memory-bound).
    chunk_bytes = 1 << 18

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
            if scale != 1.0:
                gv = gv * np.asarray(scale, gv.dtype)
            n = gv.shape[0] if gv.ndim else 1
            row_bytes = max(1, gv[:1].nbytes) if gv.ndim else gv.nbytes
            per = max(1, self.chunk_bytes // row_bytes)
            for s in range(0, n, per):
                if gv.ndim == 0:
                    idx, gc = ..., gv
                elif rows is None:
                    idx, gc = slice(s, s + per), gv[s:s + per]
                else:
                    idx, gc = rows[s:s + per], gv[s:s + per]
                p[idx] = self._update(name, p, idx, p[idx], gc)

    def _slot(self, name: str, key: str, like: np.ndarray) -> np.ndarray:
        s = self.state.setdefault(name, {})
        if key not in s:
            s[key] = np.zeros_like(like)
        return s[key]

    def _update(self, name, p, idx, pv, gv):  # pragma: no cover - abstract
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

    def __init__(self, lr=1e-2, momentum: float = 0.0, nesterov: bool = False, **kw):
        super().__init__(lr, **kw)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, name, p, idx, pv, gv):
        dt = pv.dtype.type
        if self.weight_decay:
            gv = gv + dt(self.weight_decay) * pv
        if self.momentum:
            buf = self._slot(name, "momentum", p)
            b = dt(self.momentum) * buf[idx] + gv
            buf[idx] = b
            gv = gv + dt(self.momentum) * b if self.nesterov else b
        return pv - dt(self.lr) * gv


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with L2 ``weight_decay`` added to the gradient."""

    decoupled = False

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw):
        super().__init__(lr, **kw)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, name, p, idx, pv, gv):
        dt = pv.dtype.type
        if self.weight_decay and not self.decoupled:
            gv = gv + dt(self.weight_decay) * pv
        m_all, v_all = self._slot(name, "m", p), self._slot(name, "v", p)
        m = m_all[idx] * dt(self.beta1)
        m += dt(1 - self.beta1) * gv
        v = v_all[idx] * dt(self.beta2)
        v += dt(1 - self.beta2) * (gv * gv)
        m_all[idx], v_all[idx] = m, v
        bc2 = 1 - self.beta2 ** self.t
        step = self.lr * np.sqrt(bc2) / (1 - self.beta1 ** self.t)
        denom = np.sqrt(v)
        denom += dt(self.eps * np.sqrt(bc2))
        np.divide(m, denom, out=denom)
        denom *= dt(step)
        new = pv - denom
        if self.weight_decay and self.decoupled:
            new -= dt(self.lr * self.weight_decay) * pv
        return new


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
