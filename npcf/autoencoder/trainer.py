"""The training loop: seeded shuffling, corruption, validation, early stopping,
history, NaN guard, Ctrl-C (or SIGTERM) to a resumable state.

Randomness is derived from ``(seed, epoch)`` for the shuffle and from
``(seed, epoch, batch)`` for noise and dropout, so a run resumed at any batch
boundary continues exactly as an uninterrupted one. Files, progress and epoch lines
are the callbacks' business (:mod:`npcf.autoencoder.callbacks`).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from npcf.autoencoder import checkpoint
from npcf.errors import Interrupted, NpcfError
from npcf.evaluation.metrics import hits_at, ranking_from_hits
from npcf.evaluation.ranking import rank
from npcf.nn import schedules
from npcf.nn.losses import multinomial
from npcf.nn.network import RowSparse
from npcf.nn.noise import corrupt
from npcf.nn.optim import FULL_BATCH
from npcf.nn.optim import make as make_optimizer
from npcf.utils.signals import DeferredSignals
from npcf.utils.sparse import binarize, entry_rows

#: users per validation batch (MSE / multinomial)
VALIDATION_BATCH = {"mse": 1024, "multinomial": 512}


class TrainingDiverged(NpcfError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM: training stopped between two batches (a callback may have saved
    state)."""


class Trainer:
    """Trains ``model.network`` (an :class:`npcf.AutoEncoder`'s) on CSR rows ``train``.

    ``validation``: ``(inputs, targets)`` CSR pair in the network's orientation, for
    early stopping; ``callbacks``: :class:`~npcf.autoencoder.callbacks.Callback` list.
    """

    def __init__(self, model, train: sp.csr_matrix, validation=None, callbacks=()):
        self.model, self.net = model, model.network
        self.train = self._prepare(train, target=True)
        self.validation = None
        if validation is not None:
            vin, vt = validation
            self.validation = (self._prepare(vin, target=False), vt.tocsr())
        self.callbacks = list(callbacks)
        m = model
        self.opt = make_optimizer(m.optimizer, m.lr, m.weight_decay, m.clip_norm, m.lazy)
        self.epoch, self.batch, self.wait = 0, 0, 0
        self.best_score, self.best_params, self.best_epoch = None, None, -1
        self.history: list[dict] = []
        self._epoch_loss = [0.0, 0]

    def _prepare(self, m: sp.csr_matrix, target: bool) -> sp.csr_matrix:
        m = sp.csr_matrix(m, dtype=self.net.dtype)
        if not m.has_sorted_indices:        # sort a copy: never the caller's matrix
            m = m.sorted_indices()
        if self.model.loss == "multinomial" and target:
            m = binarize(m, self.net.dtype)
        return m

    def _call(self, hook: str, *args) -> list:
        return [getattr(cb, hook)(self, *args) for cb in self.callbacks]

    def running_loss(self) -> float | None:
        """Mean training loss of the epoch so far (None before its first batch)."""
        total, n = self._epoch_loss          # the network's loss, back to rating units
        return total / n * (self.model.unit ** 2 if self.model.loss == "mse" else 1.0) \
            if n else None

    # ------------------------------------------------------------------- loop
    def run(self) -> list[dict]:
        """Train until ``n_epochs`` or early stopping; returns the history (one dict per
        epoch). The network ends with the best validation epoch's parameters."""
        m, n_epochs = self.model, self.model.n_epochs
        row_nnz = np.diff(self.train.indptr)
        active = np.flatnonzero(row_nnz > 0)
        try:
            self._call("on_fit_begin")
            # a diverging run overflows: TrainingDiverged reports it, not NumPy warnings
            with DeferredSignals() as stop, np.errstate(over="ignore", invalid="ignore"):
                if m.optimizer in FULL_BATCH:
                    self._run_full_batch(stop)
                while m.optimizer not in FULL_BATCH and self.epoch < n_epochs:
                    t0 = time.perf_counter()
                    self.opt.lr = schedules.learning_rate(m.lr, self.epoch, m.schedule, n_epochs,
                                                          m.step_size, m.gamma)
                    order = np.random.default_rng([m.seed, self.epoch]).permutation(active)
                    starts = range(0, order.size, m.batch_size)
                    self._call("on_epoch_begin", self.epoch, len(starts), self.batch)
                    for b in range(self.batch, len(starts)):
                        rows = order[starts[b]:starts[b] + m.batch_size]
                        self.step(rows, b)
                        self.batch = b + 1
                        self._call("on_batch_end", int(row_nnz[rows].sum()))
                        if stop.raised:
                            self._interrupt(stop.signum)
                    self._end_epoch(time.perf_counter() - t0)
                    if self.wait >= m.patience > 0:
                        break
        finally:
            self._call("on_train_stop")
        if self.best_params is not None:
            self.net.params = self.best_params
        return self.history

    def step(self, rows: np.ndarray, b: int) -> float:
        """One optimizer step on the training rows ``rows`` (batch ``b`` of the epoch);
        returns the loss."""
        m = self.model
        target = self.train[rows]
        rng = np.random.default_rng([m.seed, self.epoch, b])
        level = m.noise_level * (m.unit if m.noise == "gaussian" else 1.0)   # in units
        x, b_row = m._encode(corrupt(target, m.noise if m.denoise else "none", level, rng))
        loss, grads = self.net.loss_and_grads(x, m._encode_target(target, b_row), m.loss,
                                              rng=rng, output_mode=m.output_mode)
        if not np.isfinite(loss):
            notes = [n for n in self._call("on_diverged") if n]
            where = f" ({'; '.join(notes)})" if notes else ""
            raise TrainingDiverged(f"loss became {loss} at epoch {self.epoch + 1}, batch {b + 1}; "
                                   f"try a lower --lr or --clip_norm{where}")
        self.opt.step(self.net.params, grads)
        self._epoch_loss[0] += loss * len(rows)
        self._epoch_loss[1] += len(rows)
        return loss

    def full_batch_objective(self):
        """``(fun, theta0, unflatten)`` of the full-batch fit: ``fun(theta)`` -> (loss,
        flat float64 gradient) of the masked MSE over every training rating (mean; the
        multinomial loss: mean over users) + ``weight_decay / 2 * ||theta||^2`` (every
        parameter, as the mini-batch optimizers);
        ``theta0`` the current parameters, flat; ``unflatten(theta)`` writes them back."""
        m, net, wd = self.model, self.net, self.opt.weight_decay
        names = list(net.params)
        shapes = [net.params[k].shape for k in names]
        bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        rows = np.flatnonzero(np.diff(self.train.indptr) > 0)
        x, b_row = m._encode(self.train[rows])
        target = m._encode_target(self.train[rows], b_row)
        per_entry = m.loss == "mse"
        total = max(1, target.nnz if per_entry else target.shape[0])
        step = VALIDATION_BATCH[m.loss]
        parts = list(zip(names, shapes, bounds[:-1], bounds[1:]))

        def unflatten(theta):
            for k, shape, lo, hi in parts:
                net.params[k][...] = theta[lo:hi].reshape(shape)

        def fun(theta):
            unflatten(theta)
            loss, flat = 0.0, np.zeros_like(theta)
            for s in range(0, x.shape[0], step):
                xs, ts = x[s:s + step], target[s:s + step]
                value, grads = net.loss_and_grads(xs, ts, m.loss, output_mode=m.output_mode)
                w = (ts.nnz if per_entry else ts.shape[0]) / total
                loss += w * value
                for k, shape, lo, hi in parts:
                    g = grads.get(k)
                    if g is not None:
                        g = g.dense(shape) if isinstance(g, RowSparse) else g
                        flat[lo:hi] += w * g.ravel()
            if wd:
                loss += 0.5 * wd * float(theta @ theta)
                flat += wd * theta
            return loss, flat

        theta0 = np.concatenate([net.params[k].ravel() for k in names]).astype(np.float64)
        return fun, theta0, unflatten

    def _run_full_batch(self, stop) -> None:
        """L-BFGS-B (:class:`~npcf.nn.optim.FullBatch`) on :meth:`full_batch_objective`:
        one iteration per history row, early stopping and Ctrl-C between iterations."""
        m = self.model
        objective, theta0, unflatten = self.full_batch_objective()
        n_ratings = int(self.train.nnz)

        def fun(theta):
            loss, flat = objective(theta)
            if not np.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} at iteration {self.epoch + 1} of "
                                       "L-BFGS-B; try a larger --weight_decay")
            self._epoch_loss = [loss, 1]
            return loss, flat

        clock = [time.perf_counter()]

        def after_iteration(theta):
            unflatten(theta)
            self._call("on_batch_end", n_ratings)
            self._end_epoch(time.perf_counter() - clock[0])
            clock[0] = time.perf_counter()
            if stop.raised:
                self._interrupt(stop.signum)
            if self.epoch >= m.n_epochs or self.wait >= m.patience > 0:
                raise StopIteration
            self._call("on_epoch_begin", self.epoch, 1, 0)

        self._call("on_epoch_begin", self.epoch, 1, 0)
        unflatten(self.opt.minimize(fun, theta0, m.n_epochs - self.epoch, after_iteration))

    def _end_epoch(self, seconds: float) -> None:
        m = self.model
        row = {"epoch": self.epoch + 1, "train_loss": self.running_loss() or 0.0}
        if self.validation is not None:
            row.update(self.evaluate(*self.validation))
        row.update(lr=self.opt.lr, seconds=round(seconds, 3))
        self.history.append(row)
        key = "val_rmse" if m.loss == "mse" else "val_ndcg"
        score = row.get(key)
        improved = False
        if score is not None and np.isfinite(score):
            improved = (self.best_score is None or
                        (score < self.best_score if m.loss == "mse" else score > self.best_score))
            if improved:
                self.best_score, self.best_epoch, self.wait = score, self.epoch, 0
                self.best_params = {k: v.copy() for k, v in self.net.params.items()}
            else:
                self.wait += 1
        self._call("on_epoch_end", row, improved)
        self.epoch, self.batch, self._epoch_loss = self.epoch + 1, 0, [0.0, 0]

    def evaluate(self, inputs: sp.csr_matrix, target: sp.csr_matrix) -> dict:
        """Validation loss and RMSE (mse) or NDCG@100 (multinomial), in batches."""
        m = self.model
        rows_with = np.flatnonzero(np.diff(target.indptr) > 0)
        step = VALIDATION_BATCH[m.loss]
        if m.loss == "mse":
            preds, trues = [], []
            for s in range(0, rows_with.size, step):
                r = rows_with[s:s + step]
                t = target[r]
                x, b = m._encode(inputs[r])
                a, _ = self.net.hidden(x)
                rr, cc = entry_rows(t), t.indices.astype(np.int64)
                preds.append(m._decode_at(self.net.reconstruct_at(a, rr, cc), b, rr, cc))
                trues.append(t.data)
            y, t = np.concatenate(preds), np.concatenate(trues)
            d = y.astype(np.float64) - t
            clipped = np.clip(y, *m.scale) if m.scale else y
            e = clipped.astype(np.float64) - t
            return {"val_loss": float(np.mean(d * d)), "val_rmse": float(np.sqrt(np.mean(e * e)))}
        losses, ndcg = [], []
        for s in range(0, rows_with.size, step):
            r = rows_with[s:s + step]
            x, t = inputs[r], target[r]
            a, _ = self.net.hidden(m._encode(x)[0])
            z, _ = self.net.output(a)
            losses.append(multinomial(z, binarize(t))[0] * r.size)
            top, _ = rank(z, 100, seen=x)
            hits = hits_at(np.where(top >= 0, top, 0), t) & (top >= 0)
            ndcg.append(ranking_from_hits(hits, np.diff(t.indptr), 100)["ndcg"])
        return {"val_loss": float(np.sum(losses) / max(1, rows_with.size)),
                "val_ndcg": float(np.nanmean(np.concatenate(ndcg)))}

    # ----------------------------------------------------------------- resume
    def _interrupt(self, signum: int) -> None:
        notes = [n for n in self._call("on_interrupt") if n]
        where = "; ".join(notes) if notes else "no checkpoint directory, nothing saved"
        raise TrainingInterrupted(f"interrupted at epoch {self.epoch + 1}, batch {self.batch}; "
                                  f"{where}", 128 + int(signum))

    def state(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: everything needed to continue exactly (params, optimizer,
        best params, counters, history, options)."""
        arrays = {f"param/{k}": v for k, v in self.net.params.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt.state_dict().items()})
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        meta = {"epoch": self.epoch, "batch": self.batch, "wait": self.wait,
                "best_score": self.best_score, "best_epoch": self.best_epoch,
                "epoch_loss": self._epoch_loss, "history": self.history,
                "config": self.model.get_params(),
                "fingerprint": (self.model.info or {}).get("fingerprint")}
        return arrays, meta

    def restore(self, meta: dict, arrays: dict) -> None:
        """Continue from :meth:`state` (as read back from disk); NpcfError if the
        options or the training data (by fingerprint) differ from the interrupted run's."""
        diff = checkpoint.changed_options(meta, self.model.get_params())
        if diff:
            raise NpcfError(f"cannot resume: options differ from the interrupted run "
                            f"({', '.join(diff)})")
        if meta.get("fingerprint") not in (None, (self.model.info or {}).get("fingerprint")):
            raise NpcfError("cannot resume: the training data differ from the interrupted "
                            "run's; pass the same data")
        try:
            for k in self.net.params:
                self.net.params[k][...] = arrays[f"param/{k}"]
            self.opt.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
            self.epoch, self.batch, self.wait = meta["epoch"], meta["batch"], meta["wait"]
            self.best_score, self.best_epoch = meta["best_score"], meta["best_epoch"]
            self._epoch_loss, self.history = list(meta["epoch_loss"]), meta["history"]
        except (KeyError, ValueError, TypeError) as err:
            raise NpcfError(f"cannot resume: the saved state does not fit this model ({err})") \
                from None
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
        self.best_params = best or None

