"""Training callbacks: checkpointing, epoch lines and progress, outside the loop.

:meth:`npcf.AutoEncoder.fit` takes ``callbacks=[...]``; the :class:`~npcf.autoencoder.
trainer.Trainer` calls their hooks. Every hook is optional (the base class does
nothing):

- ``on_fit_begin(trainer)``; ``on_epoch_begin(trainer, epoch, n_batches, done)``
  (``done``: batches already run, after a resume); ``on_batch_end(trainer, n_ratings)``;
  ``on_epoch_end(trainer, row, improved)`` (``row``: the history row);
  ``on_train_stop(trainer)`` (always, also on errors);
- ``on_interrupt(trainer)`` and ``on_diverged(trainer)`` return a note for the error
  message (where the state was saved), or None;
- estimator level: ``on_fit_end(model)`` once the model is final;
  ``for_member(k)`` (the callback for ensemble member k), ``on_member_begin(k, n, seed)``
  and ``finished(hyperparameters, fingerprint)`` (a directory holding that member
  already trained, or None).
"""
from __future__ import annotations

import time
from pathlib import Path

from npcf import rundir
from npcf.autoencoder import checkpoint
from npcf.utils.format import decimal
from npcf.utils.progress import open_progress


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_begin(self, trainer) -> None:
        pass

    def on_epoch_begin(self, trainer, epoch: int, n_batches: int, done: int) -> None:
        pass

    def on_batch_end(self, trainer, n_ratings: int) -> None:
        pass

    def on_epoch_end(self, trainer, row: dict, improved: bool) -> None:
        pass

    def on_train_stop(self, trainer) -> None:
        pass

    def on_interrupt(self, trainer) -> str | None:
        return None

    def on_diverged(self, trainer) -> str | None:
        return None

    def on_fit_end(self, model) -> None:
        pass

    def for_member(self, k: int) -> "Callback":
        return self

    def on_member_begin(self, k: int, n: int, seed: int) -> None:
        pass

    def finished(self, hyperparameters: dict, fingerprint: str) -> Path | None:
        return None


class Checkpoint(Callback):
    """Keeps a run directory (:mod:`npcf.rundir`): the best model after every improving
    epoch, ``history.csv`` every epoch, the resume state on Ctrl-C, the final model.

    ``resume=True`` continues an interrupted run from ``out``'s resume state (the
    options must be the same). Ensemble member k lives in ``out/members/k``. ``shown``:
    where the files will be once ``out`` (a staging directory) is moved there, for
    messages.
    """

    def __init__(self, out, resume: bool = False, shown=None):
        self.out, self.resume = Path(out), bool(resume)
        self.shown = Path(shown) if shown is not None else self.out
        self._reuse = False     # an ensemble member of a resumed run: reuse if finished

    def on_fit_begin(self, trainer) -> None:
        if self.resume:
            trainer.restore(*checkpoint.read_resume(self.out))

    def on_epoch_end(self, trainer, row: dict, improved: bool) -> None:
        if improved:
            trainer.model.save(self.out)
        rundir.write_rows(self.out / rundir.HISTORY_CSV, trainer.history,
                             rundir.history_columns(trainer.model.loss))

    def on_interrupt(self, trainer) -> str | None:
        checkpoint.write_resume(self.out, *trainer.state())
        return (f"state saved in {self.shown}; continue with the same command plus --resume "
                "(the same options: they are checked)")

    def on_diverged(self, trainer) -> str | None:
        if self.shown != self.out:          # a staged run: it is dropped, the target kept
            return f"{self.shown} was left as it was"
        last = self.out / rundir.MODEL_NPZ
        return f"last good checkpoint: {self.shown / rundir.MODEL_NPZ}" if last.exists() else None

    def on_fit_end(self, model) -> None:
        model.save(self.out)
        cols = rundir.history_columns(model.loss)
        if model.history and "member" in model.history[0]:
            cols = ["member"] + cols
        rundir.write_rows(self.out / rundir.HISTORY_CSV, model.history, cols)
        checkpoint.remove_resume(self.out)

    def for_member(self, k: int) -> "Checkpoint":
        where = rundir.member_dir(self.out, k)
        member = Checkpoint(where, resume=self.resume and checkpoint.has_resume(where),
                            shown=rundir.member_dir(self.shown, k))
        member._reuse = self.resume and not member.resume
        return member

    def finished(self, hyperparameters: dict, fingerprint: str) -> Path | None:
        if self._reuse and checkpoint.is_finished(self.out, hyperparameters, fingerprint):
            return self.out
        return None


class EpochLog(Callback):
    """Prints a summary line every ``every`` epochs (and a heading per ensemble member)
    through ``echo`` (default :func:`print`)."""

    def __init__(self, every: int = 1, echo=print):
        self.every, self.echo = int(every), echo

    def on_epoch_end(self, trainer, row: dict, improved: bool) -> None:
        if self.every > 0 and row["epoch"] % self.every == 0:
            self.echo(" ".join(f"{k} {decimal(v)}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in row.items()))

    def on_member_begin(self, k: int, n: int, seed: int) -> None:
        self.echo(f"ensemble member {k + 1}/{n} (seed {seed})")


class ProgressBar(Callback):
    """A progress bar per epoch, showing the running loss and ratings per second.

    ``progress``: a factory as in :mod:`npcf.utils.progress` (the CLI passes a click bar).
    """

    def __init__(self, progress):
        self.progress = progress
        self._bar = self._ctx = None

    def on_epoch_begin(self, trainer, epoch: int, n_batches: int, done: int) -> None:
        self._close()
        start, seen = time.perf_counter(), [0]
        self._seen = seen

        def info(_=None) -> str:
            loss = trainer.running_loss()
            if loss is None:
                return ""
            rate = seen[0] / max(1e-9, time.perf_counter() - start)
            return f"loss {decimal(loss)}  {rate:,.0f} ratings/s"
        self._ctx = open_progress(self.progress, n_batches,
                                  f"epoch {epoch + 1}/{trainer.model.n_epochs}", info)
        self._bar = self._ctx.__enter__()
        if done:
            self._bar.update(done)

    def on_batch_end(self, trainer, n_ratings: int) -> None:
        if self._bar is not None:
            self._seen[0] += n_ratings
            self._bar.update(1)

    def on_epoch_end(self, trainer, row: dict, improved: bool) -> None:
        self._close()

    def on_train_stop(self, trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx, self._bar = self._ctx, None, None
            ctx.__exit__(None, None, None)
