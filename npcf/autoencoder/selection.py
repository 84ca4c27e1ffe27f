"""Model selection on the validation part: a budgeted successive-halving search.

:func:`select` samples configurations from :data:`SPACE` (deterministically for a
seed; the estimator's own defaults for both orientations always take part), trains each
for a few epochs with early stopping on the validation part, keeps the best third, trains
those three times longer, and so on; the last rung trains the configurations left (one
to a few: ``ceil(n_configs / 3**r)`` after ``r`` cuts) with the estimator's full
``n_epochs``. Hyperparameters named in ``fixed`` are never searched.
``budget`` (seconds) stops the search early: the best configuration of the highest rung
reached is then trained with the full ``n_epochs`` (unless early stopping had already
ended it), past the budget; ``info["tuning"]["budget_hit"]`` says at which rung (a budget
that is hit makes the result depend on the machine's speed).

Cost: each rung costs about ``n_configs * first_epochs`` epochs (a third of the
configurations, trained three times longer), plus the final fit; smaller data start with
more configurations (:func:`n_configs_for`). ``benchmarks/NOTES.md`` has the seconds.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import scipy.sparse as sp

from npcf.errors import NpcfError
from npcf.nn.bias import cross_validated_regs
from npcf.nn.optim import FULL_BATCH
from npcf.utils import parallel
from npcf.utils.progress import open_progress
from npcf.utils.sparse import same_matrix

#: searched hyperparameters and their candidate values
SPACE = {
    "item_based": (False, True),
    "layers": ((128,), (256,), (512,)),
    "activation": ("tanh", "relu", "sigmoid", "selu"),
    "weight_decay": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "noise_level": (0.0, 0.1, 0.2, 0.3),
    "dropout": (0.0, 0.2),
    "lr": (1e-3, 3e-3),
    "tied": (True, False),
    "residual": (True, False),
}
#: hyperparameters that only make sense for the masked-MSE loss
MSE_ONLY = ("item_based", "residual")
#: configurations tried on data of :data:`REFERENCE_RATINGS` training ratings or more; smaller
#: data (cheaper epochs) get more, up to :data:`MAX_CONFIGS`, ~ 1 / sqrt(ratings)
N_CONFIGS = 24
MAX_CONFIGS = 96
REFERENCE_RATINGS = 250_000
FIRST_EPOCHS = 3
ETA = 3


def _configs(space: dict, n: int, seed: int, starts: list[dict]) -> list[dict]:
    """``n`` distinct configurations (dicts over ``space``'s keys): ``starts`` (the
    estimator's own values, per orientation) first, then seeded random draws."""
    rng = np.random.default_rng([seed, 2024])
    out: list[dict] = []
    keys = sorted(space)

    def add(cfg):
        if cfg not in out:
            out.append(cfg)
    for start in starts:
        add({k: start[k] for k in keys})
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        add({k: space[k][int(rng.integers(len(space[k])))] for k in keys})
    return out[:n]


def n_configs_for(n_ratings: int) -> int:
    """How many configurations the search starts with for ``n_ratings`` training ratings."""
    scale = np.sqrt(REFERENCE_RATINGS / max(1, int(n_ratings)))
    return int(np.clip(round(N_CONFIGS * scale), N_CONFIGS, MAX_CONFIGS))


#: what the trial processes fit on: ``(estimator class, X, validation, validation_input,
#: fit keywords)``, set while a search runs so that forked processes inherit it unpickled
_SHARED: tuple | None = None


def _fit_trial(kw: dict, data: tuple | None = None):
    """``(fitted model, seconds)`` of one trial: ``kw`` the estimator's parameters;
    ``data`` as :data:`_SHARED` (default: the inherited one, in a trial process)."""
    cls, X, validation, validation_input, fit_kw = data if data is not None else _SHARED
    t0 = time.perf_counter()
    model = cls(**kw).fit(X, validation, validation_input, **fit_kw)
    return model, time.perf_counter() - t0


def shared_data() -> tuple:
    """The data tuple of the :func:`trial_pool` this worker process was forked from:
    ``(cls, X, validation, validation_input, fit_kw)`` for a search's trials,
    ``(cls, ratings coo, fold, fit_kw)`` for cross-fitting's fold fits
    (:mod:`npcf.autoencoder.crossfit`)."""
    return _SHARED


#: one search at a time uses worker processes (they inherit :data:`_SHARED` at fork);
#: a search started meanwhile in another thread runs its trials in its own thread
_POOL_LOCK = threading.Lock()


def _worker_init() -> None:
    """A trial process: one npcf thread, one BLAS thread, and gone with its parent (a
    SIGTERM'd `train` must not leave children writing into a pipe nobody reads)."""
    parallel.single_threaded()
    with contextlib.suppress(Exception):           # Linux only: best effort elsewhere
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:                           # the parent died before the prctl
        os._exit(1)


def usable_workers(workers: int, n_trials: int) -> int:
    """How many trial processes make sense: at most ``workers``, the cores this process
    may use and ``n_trials``; 1 where processes cannot be forked (no ``fork``, or a
    daemonic process such as a Dask or ``multiprocessing`` worker)."""
    if "fork" not in multiprocessing.get_all_start_methods() or \
            multiprocessing.current_process().daemon:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return max(1, min(int(workers), cores, int(n_trials)))


@contextlib.contextmanager
def trial_pool(workers: int, data: tuple):
    """``workers`` forked processes that fit trials on ``data`` (each with one npcf
    thread and one BLAS thread), or None: one worker, or another search already has
    the processes (trials then run in this thread, one after the other). Trials not
    started when the search ends are cancelled; running ones are waited for when it
    ends normally and killed when it ends by an error or a signal (SIGTERM, Ctrl-C), or
    by :func:`select` when its budget ends while they run."""
    global _SHARED
    if workers <= 1 or not _POOL_LOCK.acquire(blocking=False):
        yield None
        return
    try:
        _SHARED = data
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_init)
        done = False
        try:
            yield pool
            done = True
        finally:
            if not done:
                _kill_workers(pool)
            pool.shutdown(wait=done, cancel_futures=True)
    finally:
        _SHARED = None
        _POOL_LOCK.release()


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill ``pool``'s processes (trials hold nothing but memory) and reap them.

    A worker killed while sending a result leaves half a message in the result pipe, and
    the executor's manager thread would wait for the rest forever (and the interpreter for
    that thread at exit): once the workers are gone, this process's own write end of the
    pipe is closed too, so that read ends (EOF) and the manager thread winds the pool up."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    kill = getattr(pool, "kill_workers", None)         # Python >= 3.14
    if kill is not None:
        kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(5)
    with contextlib.suppress(Exception):              # on every version (see above)
        pool._result_queue._writer.close()


def trial_result(future):
    """A trial's result (``(model, seconds)`` for a search); a worker that died becomes
    one clear NpcfError."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise NpcfError("a worker process of the hyperparameter search or its "
                        "cross-fitting died (out of memory?); run with fewer threads "
                        "(--threads 1 trains one model at a time)") from None


def select(base, X, validation, validation_input=None, *, fixed=(), space=None,
           n_configs: int | None = None, first_epochs: int = FIRST_EPOCHS, eta: int = ETA,
           budget: float | None = None, fit_kw: dict | None = None, progress=None,
           candidates: list | None = None, workers: int | None = None,
           finish: bool = True):
    """Search hyperparameters of the :class:`~npcf.AutoEncoder` ``base`` on ``validation``.

    ``fixed``: names never searched (given by the user); unless ``bias_reg`` is among
    them, the bias residual's ``(users, items)`` ridge strengths are first chosen by
    cross-validating the bias model alone on ``X``
    (:func:`npcf.nn.bias.cross_validated_regs`) and used by every trial. ``space``: overrides
    :data:`SPACE`. ``n_configs``: default :func:`n_configs_for` the training ratings.
    ``fit_kw``: keywords for every ``fit`` (scale, users, items). ``progress``: a progress
    factory (:mod:`npcf.utils.progress`), one step per trial. ``candidates``: a list that
    receives ``(score, config, model)`` of every configuration that reached one of the
    last two rungs run (its longest-trained model), best first (for :mod:`blend`).
    ``workers``: trials trained at once, in forked processes of one thread each (default:
    npcf's thread count, :func:`npcf.utils.parallel.threads`); the result does not
    depend on it (trials are seeded and read back in order), only a ``budget`` cut does.
    A ``budget`` is checked before each trial starts; trials running in worker
    processes when it ends are killed (``info["tuning"]["abandoned"]`` counts them; a
    trial running in this thread, and the first trial, always finish).
    Returns ``(model, trials)``: the fitted best model (``info["tuning"]`` records the
    search) and one dict per trial (``rung``, ``epochs``, the searched values,
    ``score``, ``best_epoch``, ``seconds``) in the order they ran. A winner the budget
    cut while it was still improving is trained again for the full ``n_epochs``; with
    ``finish=False`` it is returned as trained, ``info["tuning"]["unfinished"]`` True,
    for the caller to pass to :func:`finish_training` if it keeps it.
    """
    params = base.get_params()
    space = dict(SPACE if space is None else space)
    folds_in_only = validation_input is not None and not same_matrix(validation_input, X)
    if params["loss"] != "mse":
        for k in MSE_ONLY:
            space.pop(k, None)
    if folds_in_only:                               # item-based models cannot fold in
        space.pop("item_based", None)
    if not params["denoise"]:                       # no corruption: its level does nothing
        space.pop("noise_level", None)
    elif "denoise" in set(fixed) and "noise_level" in space:   # corruption asked for: some
        space["noise_level"] = tuple(v for v in space["noise_level"] if v > 0)
        if not space["noise_level"]:                          # none left: the given level
            space.pop("noise_level")
    if params["optimizer"] in FULL_BATCH:           # one fixed objective, no step size
        space.pop("dropout", None)
        space.pop("lr", None)
    space = {k: v for k, v in space.items() if k not in set(fixed)}
    start = time.perf_counter()
    bias_reg = None
    if "bias_reg" not in set(fixed) and params["loss"] == "mse" and (
            params["residual"] or "residual" in space):
        # the bias residual's ridge strengths: closed-form fits, cross-validated on the
        # training part (counted in the budget; ~5 s at most), the same for every trial
        bias_reg = cross_validated_regs(sp.csr_matrix(X), seed=params["seed"])
        if bias_reg is not None:
            params["bias_reg"] = bias_reg
    starts = []
    for item_based in space.get("item_based", (params["item_based"],)):
        oriented = type(base)(**dict(params, item_based=item_based))
        starts.append(dict(params, item_based=item_based,
                           **dict(zip(("layers", "activation"), oriented._architecture()))))
    if n_configs is None:
        n_configs = n_configs_for(sp.csr_matrix(X).nnz)
    configs = _configs(space, n_configs, params["seed"], starts) if space else [{}]
    higher = params["loss"] != "mse"               # NDCG: higher is better
    full = int(params["n_epochs"])
    rungs, epochs = [], max(1, int(first_epochs))
    while epochs < full:
        rungs.append(epochs)
        epochs *= eta
    rungs.append(full)
    alive = list(range(len(configs)))
    trials, best = [], None                         # best: (rung, score, model, config)
    abandoned = 0                                  # trials killed at the budget's end
    stopped: dict = {}                             # config -> model that stopped early
    latest: dict = {}                              # config -> (rung, score, model)
    total = sum(max(1, -(-len(configs) // eta ** r)) for r in range(len(rungs)))
    data = (type(base), X, validation, validation_input, dict(fit_kw or {}))
    workers = usable_workers(parallel.threads() if workers is None else workers, len(configs))

    def deadline() -> float | None:     # none until a model exists: the first finishes
        return None if budget is None or best is None else start + budget

    def over_budget() -> bool:
        end = deadline()
        return end is not None and time.perf_counter() > end

    def trial_kw(cfg: dict, n_epochs: int) -> dict:
        return dict(params, **cfg, n_epochs=n_epochs, ensemble=1)

    def record(rung: int, n_epochs: int, cfg: dict, score: float, model, seconds: float):
        trials.append(_trial_row(rung, n_epochs, cfg, score, model, seconds))

    with open_progress(progress, total, "tuning") as bar, trial_pool(workers, data) as pool:
        ahead = workers if pool is not None else 1
        for rung, n_epochs in enumerate(rungs):
            scored, futures, submitted = [], {}, 0
            for pos, i in enumerate(alive):
                # keep `ahead` trials in flight; the budget is checked before each starts
                while submitted < min(len(alive), pos + ahead) and not over_budget():
                    j = alive[submitted]
                    if pool is not None and j not in stopped:
                        futures[j] = pool.submit(_fit_trial, trial_kw(configs[j], n_epochs))
                    submitted += 1
                if pos >= submitted:
                    break
                cfg = configs[i]
                model = stopped.get(i)
                if model is not None:           # the same run as a longer one would be
                    model.set_params(n_epochs=n_epochs)
                    seconds = 0.0
                else:
                    if i in futures and not _done_by(futures[i], deadline()):
                        # the budget ended while it ran: the search stops here, and the
                        # trials still running are killed rather than waited for
                        abandoned = max(1, sum(not f.done() for f in futures.values()))
                        _kill_workers(pool)
                        break
                    model, seconds = trial_result(futures.pop(i)) if i in futures else \
                        _fit_trial(trial_kw(cfg, n_epochs), data)
                    if model.info["epochs_run"] < n_epochs and params["schedule"] != "cosine":
                        # early stopping ended it: a longer run is the same run (shuffle,
                        # noise and the step/none schedules depend on seed, epoch, batch)
                        stopped[i] = model
                score = best_score(model, higher)
                record(rung + 1, n_epochs, cfg, score, model, seconds)
                scored.append((score, i, model))
                latest[i] = (rung, score, model)
                if best is None or best[0] < rung or (best[0] == rung and _better(
                        score, best[1], higher)):
                    best = (rung, score, model, cfg)
                bar.update(1)
            if not scored or abandoned or (budget is not None
                                           and time.perf_counter() - start > budget):
                break
            scored.sort(key=lambda s: (-s[0] if higher else s[0], s[1]))
            alive = [i for _, i, _ in scored[:max(1, -(-len(scored) // eta))]]
    reached, score, model, cfg = best
    cut = reached + 1 if reached < len(rungs) - 1 else 0    # the budget ended it early
    if cut and model.info["epochs_run"] < model.n_epochs and params["schedule"] != "cosine":
        # early stopping had ended it: the longer run is the same run
        model.set_params(n_epochs=full)
    unfinished = bool(cut) and model.n_epochs < full
    if candidates is not None:
        top = max(r for r, _, _ in latest.values())
        kept = sorted(((sc, i, m) for i, (r, sc, m) in latest.items() if r >= top - 1),
                      key=lambda t: (-t[0] if higher else t[0], t[1]))
        candidates.extend((sc, plain(configs[i]), m) for sc, i, m in kept)
    model.info = dict(model.info, tuning={
        "chosen": plain(cfg), "bias_reg": None if bias_reg is None else list(bias_reg),
        "score": score, "metric": "val_ndcg" if higher else "val_rmse",
        "trials": len(trials), "rungs": rungs, "seconds": round(time.perf_counter() - start, 1),
        "fixed": sorted(set(fixed) & set(SPACE)), "budget": budget, "budget_hit": cut,
        "unfinished": unfinished, "epochs": full, "abandoned": abandoned})
    if finish:                  # still improving when cut: train the winner in full
        model = finish_training(model, trials, X, validation, validation_input, fit_kw)
    return model, trials


def _trial_row(rung: int, n_epochs: int, cfg: dict, score: float, model, seconds: float) -> dict:
    """One trial as :func:`select` lists it (and ``tuning.csv`` holds it)."""
    return dict(rung=rung, epochs=n_epochs, **plain(cfg), score=score,
                best_epoch=model.info.get("best_epoch"),
                epochs_run=model.info.get("epochs_run"), seconds=round(seconds, 3))


def _done_by(future, deadline: float | None) -> bool:
    """Whether ``future`` is done by ``deadline`` (a ``time.perf_counter()`` value; None:
    wait as long as it takes)."""
    if deadline is None:
        return True
    left = max(0.0, deadline - time.perf_counter())    # (a far deadline: the longest wait
    return bool(wait([future], timeout=min(left, threading.TIMEOUT_MAX)).done)  # a lock takes)


def finish_training(model, trials: list, X, validation, validation_input=None,
                    fit_kw: dict | None = None):
    """``model``, :func:`select`'s result, itself; or, if the budget cut it while it was
    still improving and it was not trained again (``finish=False``), its configuration
    trained for the search's full epochs on the same data, with its trial appended to
    ``trials`` and ``info["tuning"]`` updated (score, trials, seconds)."""
    tuning = model.info.get("tuning") or {}
    if not tuning.get("unfinished"):
        return model
    higher = model.loss != "mse"
    data = (type(model), X, validation, validation_input, dict(fit_kw or {}))
    full = int(tuning["epochs"])
    out, seconds = _fit_trial(dict(model.get_params(), n_epochs=full), data)
    score = best_score(out, higher)
    trials.append(_trial_row(len(tuning["rungs"]), full, tuning["chosen"], score, out, seconds))
    out.info = dict(out.info, tuning=dict(
        tuning, score=score, trials=len(trials), unfinished=False,
        seconds=round(float(tuning["seconds"]) + seconds, 1)))
    return out


def best_score(model, higher: bool = False) -> float:
    """The best validation figure in ``model``'s history: the highest NDCG (``higher``)
    or the lowest RMSE; -inf / inf with none."""
    key = "val_ndcg" if higher else "val_rmse"
    values = [row[key] for row in model.history if row.get(key) is not None
              and np.isfinite(row[key])]
    if not values:
        return -np.inf if higher else np.inf
    return float(max(values) if higher else min(values))


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def plain(cfg: dict) -> dict:
    """``cfg`` with tuples as lists (as JSON and CSV hold them)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
