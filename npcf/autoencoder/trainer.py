"""The training loop: seeded shuffling, corruption, validation, early stopping,
history, NaN guard, Ctrl-C to a resumable checkpoint.

Randomness is derived from ``(seed, epoch)`` for the shuffle and from
``(seed, epoch, batch)`` for noise and dropout, so a run resumed at any batch
boundary continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import click
import numpy as np
import scipy.sparse as sp

from npcf.nn import schedules
from npcf.errors import NpcfError
from npcf.utils.files import atomic_path, write_json
from npcf.evaluation.metrics import ndcg_at_k
from npcf.nn.noise import corrupt
from npcf.nn.optim import make as make_optimizer

RESUME_NPZ, RESUME_JSON = "resume.npz", "resume.json"


class TrainingDiverged(NpcfError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(NpcfError):
    """Ctrl-C: a resumable checkpoint was written."""


def binarize(m: sp.csr_matrix, dtype=np.float32) -> sp.csr_matrix:
    """Same pattern, all stored values 1."""
    return sp.csr_matrix((np.ones(m.nnz, dtype), m.indices, m.indptr), shape=m.shape)


def l2_normalize_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms).astype(m.dtype) @ m)


class _SigintFlag:
    """Turns the first Ctrl-C into a flag checked between batches; a second one aborts."""

    def __init__(self):
        self.raised = False

    def __enter__(self):
        self._old = None
        with contextlib.suppress(ValueError):  # not in the main thread
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Trainer:
    """Trains ``model.network`` (an :class:`npcf.AutoEncoder`'s) on CSR rows."""

    def __init__(self, model, train: sp.csr_matrix, validation=None, *, out=None,
                 quiet: bool = False, verbose_epochs: int = 0, echo=click.echo):
        self.model, self.net = model, model.network
        self.train = self._prepare(train, target=True)
        self.validation = None
        if validation is not None:
            vin, vt = validation
            self.validation = (self._prepare(vin, target=False), vt.tocsr())
        self.out = None if out is None else Path(out)
        self.quiet, self.verbose_epochs, self.echo = quiet, verbose_epochs, echo
        m = model
        self.opt = make_optimizer(m.optimizer, m.lr, m.weight_decay, m.clip_norm, m.lazy)
        self.epoch, self.batch, self.wait = 0, 0, 0
        self.best_score, self.best_params, self.best_epoch = None, None, -1
        self.history: list[dict] = []
        self._epoch_loss = [0.0, 0]

    # -------------------------------------------------------------- data views
    def _prepare(self, m: sp.csr_matrix, target: bool) -> sp.csr_matrix:
        m = sp.csr_matrix(m, dtype=self.net.dtype)
        m.sort_indices()
        if self.model.loss == "multinomial" and target:
            m = binarize(m, self.net.dtype)
        return m

    # ------------------------------------------------------------------- loop
    def run(self) -> list[dict]:
        m, n_epochs = self.model, self.model.n_epochs
        active = np.flatnonzero(np.diff(self.train.indptr) > 0)
        with _SigintFlag() as sigint:
            while self.epoch < n_epochs:
                t0 = time.perf_counter()
                self.opt.lr = schedules.learning_rate(m.lr, self.epoch, m.schedule, n_epochs,
                                                      m.step_size, m.gamma)
                order = np.random.default_rng([m.seed, self.epoch]).permutation(active)
                starts = range(0, order.size, m.batch_size)
                bar = self._bar(len(starts), self.epoch)
                with bar:
                    bar.update(self.batch)
                    for b in range(self.batch, len(starts)):
                        rows = order[starts[b]:starts[b] + m.batch_size]
                        self.step(rows, b)
                        self.batch = b + 1
                        bar.update(1)
                        if sigint.raised:
                            self._interrupt()
                self._end_epoch(time.perf_counter() - t0)
                if self.wait >= m.patience > 0:
                    break
        if self.best_params is not None:
            self.net.params = self.best_params
        self._remove_resume()
        return self.history

    def _bar(self, n: int, epoch: int):
        show = not self.quiet and sys.stderr.isatty()
        loss = self._epoch_loss
        self._rate = [0, time.perf_counter()]       # ratings seen, start of this bar

        def info(_):
            if not loss[1]:
                return ""
            per_s = self._rate[0] / max(1e-9, time.perf_counter() - self._rate[1])
            return f"loss {loss[0] / max(1, loss[1]):.4f}  {per_s:,.0f} ratings/s"
        return click.progressbar(length=n, label=f"epoch {epoch + 1}/{self.model.n_epochs}",
                                 file=sys.stderr if show else _Null(), item_show_func=info,
                                 show_eta=True)

    def step(self, rows: np.ndarray, b: int) -> float:
        """One optimizer step on the training rows ``rows`` (batch ``b`` of the epoch); returns the loss."""
        m = self.model
        target = self.train[rows]
        rng = np.random.default_rng([m.seed, self.epoch, b])
        x, b_row = m.encode(corrupt(target, m.noise if m.denoise else "none", m.noise_level, rng))
        loss, grads = self.net.loss_and_grads(x, m.encode_target(target, b_row), m.loss, rng=rng,
                                              output_mode=m.output_mode)
        if not np.isfinite(loss):
            where = f" (last good checkpoint: {self.out / 'model.npz'})" \
                if self.out is not None and (self.out / "model.npz").exists() else ""
            raise TrainingDiverged(f"loss became {loss} at epoch {self.epoch + 1}, batch {b + 1}; "
                                   f"try a lower --lr or --clip_norm{where}")
        self.opt.step(self.net.params, grads)
        self._epoch_loss[0] += loss * len(rows)
        self._epoch_loss[1] += len(rows)
        if hasattr(self, "_rate"):
            self._rate[0] += target.nnz
        return loss

    def _end_epoch(self, seconds: float) -> None:
        m = self.model
        row = {"epoch": self.epoch + 1,
               "train_loss": self._epoch_loss[0] / max(1, self._epoch_loss[1])}
        if self.validation is not None:
            row.update(self.evaluate(*self.validation))
        row.update(lr=self.opt.lr, seconds=round(seconds, 3))
        self.history.append(row)
        key = "val_rmse" if m.loss == "mse" else "val_ndcg"
        score = row.get(key)
        if score is not None and np.isfinite(score):
            better = (self.best_score is None or
                      (score < self.best_score if m.loss == "mse" else score > self.best_score))
            if better:
                self.best_score, self.best_epoch, self.wait = score, self.epoch, 0
                self.best_params = {k: v.copy() for k, v in self.net.params.items()}
                if self.out is not None:
                    m.save(self.out)
            else:
                self.wait += 1
        if self.verbose_epochs and (self.epoch + 1) % self.verbose_epochs == 0:
            self.echo(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in row.items()))
        if self.out is not None:
            self.write_history()
        self.epoch, self.batch, self._epoch_loss = self.epoch + 1, 0, [0.0, 0]

    def evaluate(self, inputs: sp.csr_matrix, target: sp.csr_matrix) -> dict:
        """Validation loss and RMSE (mse) or NDCG@100 (multinomial), in batches."""
        m = self.model
        rows_with = np.flatnonzero(np.diff(target.indptr) > 0)
        if m.loss == "mse":
            preds, trues = [], []
            for s in range(0, rows_with.size, 1024):
                r = rows_with[s:s + 1024]
                t = target[r]
                x, b = m.encode(inputs[r])
                a, _ = self.net.hidden(x)
                rr = np.repeat(np.arange(r.size), np.diff(t.indptr))
                cc = t.indices.astype(np.int64)
                y = self.net._g(self.net.output_at(a, rr, cc))
                preds.append(m.decode_at(y, b, rr, cc))
                trues.append(t.data)
            y, t = np.concatenate(preds), np.concatenate(trues)
            d = y.astype(np.float64) - t
            clipped = np.clip(y, *m.scale) if m.scale else y
            e = clipped.astype(np.float64) - t
            return {"val_loss": float(np.mean(d * d)), "val_rmse": float(np.sqrt(np.mean(e * e)))}
        losses, ndcg = [], []
        for s in range(0, rows_with.size, 512):
            r = rows_with[s:s + 512]
            x = inputs[r]
            a, _ = self.net.hidden(m.encode(x)[0])
            z, _ = self.net.output(a)
            from npcf.nn.losses import multinomial
            losses.append(multinomial(z, binarize(target[r]))[0] * r.size)
            z[np.repeat(np.arange(r.size), np.diff(x.indptr)), x.indices] = -np.inf
            ndcg.append(ndcg_at_k(z, target[r], 100))
        return {"val_loss": float(np.sum(losses) / max(1, rows_with.size)),
                "val_ndcg": float(np.nanmean(np.concatenate(ndcg)))}

    def write_history(self) -> None:
        """``history.csv``: epoch, train_loss, val_loss, val_rmse|val_ndcg, lr, seconds."""
        write_history(self.out / "history.csv", self.history, history_columns(self.model.loss))

    # ----------------------------------------------------------------- resume
    def _interrupt(self) -> None:
        if self.out is None:
            raise TrainingInterrupted("interrupted (no --out directory, nothing saved)")
        self.save_resume()
        raise TrainingInterrupted(f"interrupted at epoch {self.epoch + 1}, batch {self.batch}; "
                                  f"state saved in {self.out}; continue with --resume")

    def save_resume(self) -> None:
        """Write everything needed to continue exactly: params, optimizer, best, counters."""
        arrays = {f"param/{k}": v for k, v in self.net.params.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt.state_dict().items()})
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        with atomic_path(self.out / RESUME_NPZ, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        write_json(self.out / RESUME_JSON, {
            "epoch": self.epoch, "batch": self.batch, "wait": self.wait,
            "best_score": self.best_score, "best_epoch": self.best_epoch,
            "epoch_loss": self._epoch_loss, "history": self.history,
            "config": self.model.get_params()})

    def load_resume(self) -> None:
        """Restore the state written by :meth:`save_resume` from ``out``."""
        try:
            meta = json.loads((self.out / RESUME_JSON).read_text())
            with np.load(self.out / RESUME_NPZ, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError) as err:
            raise NpcfError(f"cannot resume from {self.out}: {err}") from None
        if meta["config"] != self.model.get_params():
            diff = sorted(k for k in meta["config"]
                          if meta["config"].get(k) != self.model.get_params().get(k))
            raise NpcfError(f"cannot resume: options differ from the interrupted run ({', '.join(diff)})")
        for k in self.net.params:
            self.net.params[k][...] = arrays[f"param/{k}"]
        self.opt.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
        self.best_params = best or None
        self.epoch, self.batch, self.wait = meta["epoch"], meta["batch"], meta["wait"]
        self.best_score, self.best_epoch = meta["best_score"], meta["best_epoch"]
        self._epoch_loss, self.history = list(meta["epoch_loss"]), meta["history"]

    def _remove_resume(self) -> None:
        if self.out is not None:
            for name in (RESUME_NPZ, RESUME_JSON):
                with contextlib.suppress(FileNotFoundError):
                    (self.out / name).unlink()


def history_columns(loss: str) -> list[str]:
    """The columns of ``history.csv`` for a model trained with ``loss``."""
    return ["epoch", "train_loss", "val_loss", "val_rmse" if loss == "mse" else "val_ndcg", "lr",
            "seconds"]


def write_history(path, rows: list[dict], cols: list[str]) -> None:
    """Write ``rows`` (dicts) as a CSV with ``cols``, atomically; missing cells empty."""
    lines = [",".join(cols)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in cols))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_history(path) -> list[dict]:
    """Rows of a ``history.csv`` written by :func:`write_history` (numbers parsed, empty
    cells left out); ``[]`` when there is no file."""
    import csv
    try:
        with open(path, newline="") as f:
            return [{k: (int(v) if k in ("epoch", "member") else float(v))
                     for k, v in row.items() if v} for row in csv.DictReader(f)]
    except FileNotFoundError:
        return []


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False
