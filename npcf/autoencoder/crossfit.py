"""Cross-fitting: the search's best configurations refitted on K folds of every labelled
rating, then stacked on their out-of-fold predictions.

The search (:mod:`npcf.autoencoder.selection`) judges configurations on one validation
carve (10% of the training ratings); on small data that carve is a noisy judge, and the
chosen model never trains on it. :func:`fit_folds` instead cuts the training and
validation ratings together into ``folds`` random folds and fits each configuration
``folds`` times, each time on all folds but one and early-stopped on the one left out.
The models' predictions of their left-out folds (out-of-fold predictions, one for every
labelled rating) are the figure for each configuration and the data the blend weights are
fitted on (:func:`npcf.autoencoder.blend.fit_stack`). They are slightly optimistic: each
fold model's stopping epoch was chosen on the fold it predicts (one number per fit, against
the search's choice of a whole configuration on one carve). The final predictor averages a
configuration's fold models, so every rating has trained all but one of them. Fold fits
run in the search's worker processes.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import scipy.sparse as sp

from npcf.autoencoder import blend, selection
from npcf.autoencoder.members import NeighbourMember
from npcf.errors import NpcfError
from npcf.nn.bias import cross_validated_regs
from npcf.nn.neighbours import ItemNeighbours, graph_holds
from npcf.utils import parallel
from npcf.utils.folds import fold_of, fold_parts
from npcf.utils.progress import open_progress
from npcf.utils.sparse import column_counts

#: folds of the labelled ratings (each configuration is fitted this many times)
FOLDS = 5
#: a fold fit stops early after this many epochs without a better held-out fold (at
#: most; the search's trials wait the estimator's ``patience``): a fold holds a fifth of
#: every labelled rating, twice the validation carve, so its curve is smoother, and the
#: epochs saved fit more configurations in the budget
FOLD_PATIENCE = 2
#: fewer labelled ratings than this per fold: no cross-fitting (too few to stop early on)
MIN_PER_FOLD = 20
#: what :func:`stacked`'s reason says when the chosen configuration's folds would not end
#: within the budget (:func:`short_of_time`)
NO_TIME = "too little for"


def short_of_time(why: str | None) -> bool:
    """Whether :func:`stacked` declined only because the chosen configuration's fold fits
    were expected to end past the budget (judged from the search's trials)."""
    return bool(why) and NO_TIME in why


def _fit_fold(kw: dict, k: int, data: tuple | None = None):
    """``(model, out-of-fold predictions float64, seconds)`` of configuration ``kw`` on
    fold ``k``; ``data`` ``(cls, A coo, fold, fit_kw)`` (default: the worker's inherited
    copy)."""
    cls, A, fold, fit_kw = data if data is not None else selection.shared_data()
    t0 = time.perf_counter()
    train, held = fold_parts(A, fold, k)
    model = cls(**kw).fit(train, held, **fit_kw)
    at = fold == k
    pred = model.predict_at(train, A.row[at], A.col[at]).astype(np.float64)
    return model, pred, time.perf_counter() - t0


def fit_folds(cls, configs: list[dict], A, folds: int = FOLDS, seed: int = 0,
              fit_kw: dict | None = None, workers: int | None = None, progress=None,
              fold: np.ndarray | None = None, deadline: float | None = None,
              expected: list[float] | None = None, started=None):
    """Fit configurations (estimator keywords) on ``folds`` folds of sparse ``A`` (all
    labelled ratings, users x items).

    Returns ``(models, P, fold, coo)``: ``models[c][k]`` the fitted model of
    configuration ``c`` without fold ``k`` (``models[c]`` None for a configuration
    skipped, below); ``coo`` the ratings as a COO matrix; ``P`` float64 (nnz, C) the
    out-of-fold predictions (NaN for a skipped configuration) and ``fold`` int64 (nnz,)
    each rating's fold, both in ``coo``'s order. ``workers``: fold fits at once in
    forked processes (default :func:`npcf.utils.parallel.threads`); without a
    ``deadline`` the result does not depend on it. ``fold``: each rating's fold in
    ``A.tocoo()``'s order, to share the cut with other members (default
    :func:`fold_of` ``(nnz, folds, seed)``). ``deadline`` (a
    ``time.perf_counter()`` value) with ``expected`` (seconds of one fold fit of each
    configuration, :func:`fit_seconds`): a configuration after the first is skipped
    unless its ``folds`` fits, ``workers`` at a time after the fits still running (and
    no sooner than one fit), should end before ``deadline`` (expected seconds scaled by
    how long the fits done so far took against theirs) when its turn comes; a cheaper one
    after it may still be fitted. ValueError: a ``deadline`` without one expected figure
    per configuration. ``started``: called once, with True when the first fits are
    under way in worker processes (forked by then), for work to run beside them in
    this process; with False before the fits when they run in this process.
    """
    coo = sp.csr_matrix(A).tocoo()
    if not 2 <= int(folds) <= coo.nnz:
        raise NpcfError(f"cross-fitting needs 2 <= folds <= ratings, got {folds} folds "
                        f"of {coo.nnz} ratings")
    fold = fold_of(coo.nnz, int(folds), seed) if fold is None else np.asarray(fold)
    if fold.shape != (coo.nnz,) or fold.min(initial=0) < 0 or fold.max(initial=0) >= folds:
        raise NpcfError(f"fold must give each of the {coo.nnz} ratings a fold below {folds}")
    data = (cls, coo, fold, dict(fit_kw or {}))
    jobs = [(c, k) for c in range(len(configs)) for k in range(int(folds))]
    models = [[None] * int(folds) for _ in configs]
    P = np.zeros((coo.nnz, len(configs)), np.float64)
    workers = selection.usable_workers(parallel.threads() if workers is None else workers,
                                       len(jobs))

    if deadline is not None and (expected is None or len(expected) != len(configs)):
        raise ValueError("a deadline needs the expected seconds of each configuration")
    took = [0.0, 0.0]                     # seconds of the fits done, and their expected
    at_once = workers                     # fits at a time (1 where no pool is had)
    running: dict = {}                    # future -> (configuration, fold)

    def starts(c: int) -> bool:           # configuration c may begin now
        if c == 0 or deadline is None:
            return True
        pace = took[0] / took[1] if took[1] > 0 else 1.0
        ahead = sum(expected[r] for r, _ in running.values())   # fits still running
        need = max(expected[c], (int(folds) * expected[c] + ahead) / at_once)
        return need * pace <= _left(deadline)

    def done(c: int, k: int, result: tuple) -> None:
        models[c][k], P[fold == k, c], seconds = result
        if expected is not None:
            took[0], took[1] = took[0] + seconds, took[1] + expected[c]
        bar.update(1)

    with open_progress(progress, len(jobs), "cross-fitting") as bar, \
            selection.trial_pool(workers, data) as pool:
        at_once = workers if pool is not None else 1
        queue = list(jobs)
        if pool is None and started is not None:
            started(False)
        while queue or running:
            while queue and (pool is None and not running or
                             pool is not None and len(running) < workers):
                c, k = queue.pop(0)
                if k == 0 and not starts(c):      # skipped: its fits leave the queue
                    queue = [job for job in queue if job[0] != c]
                    models[c], P[:, c] = None, np.nan
                    bar.update(int(folds))
                    continue
                if pool is None:
                    done(c, k, _fit_fold(configs[c], k, data))
                else:
                    running[pool.submit(_fit_fold, configs[c], k)] = (c, k)
            if pool is not None and started is not None:   # forked by the first submit
                started(True)   # (with the fork context, Python forks every worker then)
                started = None
            if running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    c, k = running.pop(future)
                    done(c, k, selection.trial_result(future))
    return models, P, fold, coo


def _in_process_folds(coo: sp.coo_matrix, fold: np.ndarray, fit, predict,
                      deadline: float | None = None, bar=None, stop=None):
    """``(models, out-of-fold predictions float64 (nnz,))``: ``fit(train)`` on each fold of
    ``coo`` (as :func:`fit_folds` cuts them; model ``k`` without fold ``k``), one after
    the other in this process, each predicting its fold by ``predict(model, train, rows,
    cols)``. None if the fits left would end past ``deadline`` (a ``time.perf_counter()``
    value) at the pace of the slowest so far, or once ``stop`` (a ``threading.Event``) is
    set. ``bar``: a progress bar to update."""
    folds = int(fold.max()) + 1
    models, oof, slowest = [], np.zeros(coo.nnz), 0.0
    for k in range(folds):
        if stop is not None and stop.is_set():
            return None
        t0 = time.perf_counter()
        train, _ = fold_parts(coo, fold, k)
        at = fold == k
        models.append(fit(train))
        oof[at] = predict(models[-1], train, coo.row[at], coo.col[at])
        slowest = max(slowest, time.perf_counter() - t0)
        if bar is not None:
            bar.update(1)
        if k < folds - 1 and deadline is not None \
                and time.perf_counter() + (folds - 1 - k) * slowest > deadline:
            return None
    return models, oof


def bias_folds(cls, kw: dict, coo: sp.coo_matrix, fold: np.ndarray,
               fit_kw: dict | None = None) -> tuple:
    """``(models, out-of-fold predictions float64 (nnz,))`` of configuration ``kw``'s bias
    residual alone (:meth:`AutoEncoder._fit_bias_only`, closed form, in this process) on
    each fold of ``coo`` (as :func:`fit_folds` cuts them)."""
    return _in_process_folds(
        coo, fold, lambda train: cls(**kw)._fit_bias_only(train, **dict(fit_kw or {})),
        lambda model, train, rows, cols: model.predict_at(train, rows, cols))


#: the item-neighbour candidate is skipped above this much work per fit (items squared
#: plus co-rated pairs, sum of n_user^2; movies-small's ~1.2e8 take ~3 s on this machine)
NEIGHBOUR_MAX_WORK = 1e9


def neighbour_folds(coo: sp.coo_matrix, fold: np.ndarray, regs: tuple, scale: tuple,
                    deadline: float | None = None, progress=None, stop=None):
    """``(members, out-of-fold predictions float64 (nnz,), clipped to scale)`` of the
    item-neighbour model (:class:`~npcf.autoencoder.members.NeighbourMember`, bias ridge
    strengths ``regs``) on each fold of ``coo`` (as :func:`fit_folds` cuts them; member
    ``k`` was fitted without fold ``k``). None where it would take too long: more work
    per fit than :data:`NEIGHBOUR_MAX_WORK`, or the fits left would end past ``deadline``
    (a ``time.perf_counter()`` value) at the pace of the slowest so far, or ``stop`` (a
    ``threading.Event``) was set. ``progress``: as :func:`fit_folds`'."""
    if neighbour_work(coo) > NEIGHBOUR_MAX_WORK or (
            deadline is not None and time.perf_counter() > deadline):
        return None
    with open_progress(progress, int(fold.max()) + 1, "item neighbours") as bar:
        return _in_process_folds(
            coo, fold, lambda train: NeighbourMember(ItemNeighbours(*regs).fit(train), scale),
            lambda member, train, rows, cols: member._predict_one_at(train, rows, cols),
            deadline, bar, stop)


def neighbour_work(m) -> float:
    """Work of one item-neighbour fit on ``m`` (users x items): items squared plus the
    co-rated pairs, the sum of each user's count squared."""
    m = sp.csr_matrix(m)
    return float(m.shape[1]) ** 2 + float(np.sum(np.diff(m.indptr).astype(np.float64) ** 2))


def holdout_neighbours(X, scale: tuple, seed: int = 0,
                       regs: tuple | None = None) -> NeighbourMember | None:
    """The item-neighbour member fitted once on CSR ``X`` (users x items), its bias ridge
    strengths ``regs`` ``(users, items)`` (default: cross-validated on ``X`` with
    ``seed``), for a blend judged on a validation part instead of on folds; None over
    :data:`NEIGHBOUR_MAX_WORK` or with too few ratings for the ridge strengths."""
    X = sp.csr_matrix(X)
    if neighbour_work(X) > NEIGHBOUR_MAX_WORK:
        return None
    if regs is None:
        regs = cross_validated_regs(X, seed=seed)
    if regs is None:
        return None
    return NeighbourMember(ItemNeighbours(*regs).fit(X), scale)


def oof_mass(members: list, coo: sp.coo_matrix, fold: np.ndarray) -> np.ndarray:
    """float64 (nnz,): each rating's similarity mass under the neighbour member fitted
    without its fold (``members[k]``, :meth:`NeighbourMember.similarity_mass_at`, from
    its fold's training part), scaled by folds / (folds - 1) to the mass over every
    rating, as :func:`fold_counts` scales the counts."""
    folds = len(members)
    out = np.zeros(coo.nnz)
    for k, member in enumerate(members):
        train, _ = fold_parts(coo, fold, k)
        at = fold == k
        out[at] = member.similarity_mass_at(train, coo.row[at], coo.col[at])
    return out * (folds / (folds - 1))


def choose_stack(P: np.ndarray, y: np.ndarray, fold: np.ndarray, G: np.ndarray,
                 mass: np.ndarray | None = None, scale=None) -> tuple:
    """The combination of out-of-fold predictions ``P`` (n, K) of ``y`` (n,) that
    cross-validates best over ``fold`` (n,), the simpler winning ties, in this order:
    constant greedy weights (:func:`~npcf.autoencoder.blend.greedy_weights`) of the
    candidates they weigh (and candidate 0); a stack of those with weights that follow
    the pair features ``G`` (n, 4; :func:`~npcf.autoencoder.blend.fit_stack`); the same
    also following ``log(1 + mass)`` (n,), the item neighbours' similarity mass, where
    ``mass`` is given and the neighbours (the last candidate) are among them; then the
    two stacks over every candidate (the greedy step judges members by a constant-weight
    mean, and may drop one whose worth shows only where the weights follow the pair).
    Returns ``(keep, kind, coef (len(keep) + 1, F), lambda or None, cross-validated
    predictions (n,), features (n, F), {name: cross-validated RMSE})``; ``kind`` is
    ``greedy``, ``support`` or ``support_mass``."""
    kept = np.union1d([0], np.flatnonzero(blend.greedy_weights(P, y) > 0))
    every = np.arange(P.shape[1])
    greedy_cv = blend.greedy_cv(P[:, kept], y, fold, scale=scale)
    coef = np.zeros((kept.size + 1, G.shape[1]))
    coef[:-1, 0] = blend.greedy_weights(P[:, kept], y)
    best = (kept, "greedy", coef, None, greedy_cv, G)
    figures = {"greedy": blend.rmse(greedy_cv, y)}
    for members, suffix in ((kept, ""), (every, "_every")):
        if suffix and members.size == kept.size:
            break
        designs = {"support": G}
        if mass is not None and P.shape[1] - 1 in members:
            designs["support_mass"] = blend.with_mass(G, mass)
        for kind, features in designs.items():
            fitted, strength, cv = blend.fit_stack(P[:, members], features, y, fold,
                                                   scale=scale)
            figures[kind + suffix] = blend.rmse(cv, y)
            if figures[kind + suffix] < blend.rmse(best[4], y):
                best = (members, kind, fitted, strength, cv, features)
    return (*best, figures)


def fold_counts(coo: sp.coo_matrix, fold: np.ndarray, folds: int) -> tuple:
    """``(n_row, n_col)`` float64 (nnz,): for each rating, its row's and its column's
    rating counts in the training part of its fold's model, scaled by folds / (folds - 1)
    to the counts of all of ``coo`` (the input the final predictor sees)."""
    n_row, n_col = np.zeros(coo.nnz), np.zeros(coo.nnz)
    share = folds / (folds - 1)
    for k in range(folds):
        held = fold == k
        n_row[held] = np.bincount(coo.row[~held], minlength=coo.shape[0])[coo.row[held]] * share
        n_col[held] = np.bincount(coo.col[~held], minlength=coo.shape[1])[coo.col[held]] * share
    return n_row, n_col


def _candidates(chosen, pool: list, base, size: int, other_orientation: bool,
                counterpart: bool = True) -> list[dict]:
    """Estimator keywords of ``size`` distinct configurations, the chosen model's first,
    each trained for ``base``'s epochs: the pool's next best of its orientation; with
    ``counterpart``, unless one of those already has it, one of its orientation with the
    bias residual the other way round (the pool's best, else the chosen configuration
    with it flipped: the two make different errors); with ``other_orientation``, one of
    the other orientation (the pool's best, else the base's defaults there). Ordered for
    a budget that fits only a prefix, the most different first: the chosen, the
    residual's counterpart, the next best, the other orientation, then the rest."""
    def keywords(m) -> dict:       # fold fits stop early sooner: FOLD_PATIENCE
        patience = min(m.patience, FOLD_PATIENCE) if m.patience > 0 else m.patience
        return dict(m.get_params(), n_epochs=base.n_epochs, ensemble=1, patience=patience)

    # (by configuration: ``chosen`` may be the search's winner trained in full since)
    same = [m for _, _, m in pool if keywords(m) != keywords(chosen)
            and m.item_based == chosen.item_based]
    slots = max(1, size - int(other_orientation) - int(counterpart))
    alike = [keywords(m) for m in [chosen, *same][:slots]]
    flip = [kw for kw in alike[1:] if kw["residual"] != chosen.residual][:1]
    if counterpart and size > 1 and not flip:
        flipped = next((m for m in same if m.residual != chosen.residual), None)
        flip = [keywords(flipped) if flipped is not None else
                dict(keywords(chosen), residual=not chosen.residual)]
    other = []
    if other_orientation:
        found = next((m for _, _, m in pool if m.item_based != chosen.item_based), None)
        other = [keywords(found) if found is not None else keywords(
            type(base)(**dict(base.get_params(), item_based=not chosen.item_based)))]
    rest = [kw for kw in alike[1:] if kw not in flip]
    unique = []
    for kw in [alike[0], *flip, *rest[:1], *other, *rest[1:]]:
        if kw not in unique:
            unique.append(kw)
    return unique


def fit_seconds(configs: list[dict], trials: list[dict], n_epochs: int) -> list[float]:
    """Expected seconds of one fold fit of each configuration: as long as the
    configuration's longest trial in the search (``trials`` as
    :func:`~npcf.autoencoder.selection.select` returns them; its highest rung that was
    trained, not reused), scaled to ``n_epochs`` unless early stopping had ended that
    trial. A configuration the search never trained takes as long as the same one with
    the bias residual the other way round (which costs about the same), else as the
    slowest before it."""
    keys = [k for k in selection.SPACE if any(k in t for t in trials)]

    def key(cfg: dict) -> tuple:         # trials hold plain values (lists, not tuples)
        values = selection.plain(cfg)
        return tuple(repr(values.get(k)) for k in keys)

    longest: dict = {}                    # config -> its longest trial that really ran
    for t in trials:
        k = key(t)
        if float(t.get("seconds") or 0.0) > 0 and (k not in longest or (
                t.get("epochs") or 0) >= (longest[k].get("epochs") or 0)):
            longest[k] = t
    expected: dict = {}
    for k, t in longest.items():
        took, ran, asked = float(t["seconds"]), t.get("epochs_run"), t.get("epochs")
        if ran and asked and ran >= asked:            # still going when its rung ended
            took *= max(1.0, n_epochs / ran)
        expected[k] = took
    out, worst = [], 0.0
    for cfg in configs:
        flipped = key(dict(cfg, residual=not cfg.get("residual", True)))
        seconds = expected.get(key(cfg), expected.get(flipped, worst))
        worst = max(worst, seconds)
        out.append(seconds)
    return out


def inapplicable(X, validation, folds: int) -> str | None:
    """Why :func:`stacked` cannot cross-fit ``X + validation`` on ``folds`` folds before
    any fit (the parts share a pair, or too few ratings per fold), or None."""
    X, V = sp.csr_matrix(X), sp.csr_matrix(validation)
    if X.shape != V.shape or (X != 0).multiply(V != 0).nnz:
        return "the validation part shares ratings with the training part"
    if X.nnz + V.nnz < MIN_PER_FOLD * folds:
        return f"fewer than {MIN_PER_FOLD} ratings per fold"
    return None


def varied(trials: list[dict], name: str) -> bool:
    """Whether the search's ``trials`` tried more than one value of ``name``."""
    return len({repr(t[name]) for t in trials if name in t}) > 1


def stacked(chosen, pool: list, base, X, validation, *, folds: int = FOLDS,
            size: int = blend.BLEND,
            fit_kw: dict | None = None, progress=None, trials: list | None = None,
            seconds: float | None = None):
    """``(model, None)``: the search's result cross-fitted and stacked; ``(None, why)``
    where it does not apply.

    Candidates (:func:`_candidates`; the other orientation and the residual's counterpart
    only if the search varied them; then the bias model alone, with cross-validated
    ridge strengths, and item neighbours over a bias model with those strengths,
    :func:`neighbour_folds`, in a thread beside the networks' fold fits, unless over its
    work limit or past the budget, said in ``info["blend"]["neighbours_skipped"]``) are
    fitted on ``folds`` folds of ``X +
    validation`` (:func:`fit_folds`; networks that would not fit in the budget are left
    out, counted in ``info["blend"]["over_budget"]``), all on one rating scale; their
    out-of-fold predictions are combined by the best, in cross-validation over the
    folds, of constant greedy weights, a stack whose weights follow the pair's rating
    counts (:func:`npcf.autoencoder.blend.fit_stack`) and, where the item neighbours
    are in it, one whose weights also follow their similarity mass at the pair
    (:func:`oof_mass`, :func:`npcf.autoencoder.blend.with_mass`), each stack over the
    candidates the greedy weights keep (and the chosen configuration) or over every
    candidate (:func:`choose_stack`). Returns a new estimator: fold 0 of the
    chosen configuration, the other fold models its blend members, ``item_counts``
    those of ``X + validation``; its ``history`` and ``info`` are ``chosen``'s (the
    search's run of that configuration, or its full run where :meth:`AutoEncoder.tune`
    trained it first), plus ``blend`` (what was kept, each
    candidate's out-of-fold RMSE) and ``validation`` (the stack's cross-validated
    figures over every labelled rating). The stack's features are rating counts in the
    input it predicts from (a user-based stack's item counts: those of ``X +
    validation``, stored) and possibly the neighbours' similarity mass over each row's
    ratings in it: predict from ``X + validation``, as ``train`` does for the
    test part. A user-based ``chosen`` gets user-based networks only, and the item
    neighbours only where an exported graph can hold their dense similarities
    (:func:`npcf.nn.neighbours.graph_holds`).

    Not applied (``why`` says which): ``X`` and ``validation`` share a pair, fewer than
    :data:`MIN_PER_FOLD` labelled ratings per fold, no time for the chosen
    configuration's folds within ``seconds`` (judged from the search's ``trials``,
    :func:`fit_seconds`; the other configurations are fitted while their expected time
    is left, :func:`fit_folds`), or a fold fit failed (NpcfError, e.g. a fold with
    nothing to stop early on).
    """
    why = inapplicable(X, validation, folds)
    if why:
        return None, why
    A = (sp.csr_matrix(X) + sp.csr_matrix(validation)).tocsr()
    A.eliminate_zeros()
    workers = selection.usable_workers(parallel.threads(), folds)
    # a user-based stack holds user-based networks only, so that it folds in and exports
    candidates = _candidates(chosen, pool, base, size, chosen.item_based and (
        not trials or varied(trials, "item_based")), not trials or varied(trials, "residual"))
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds
    n_epochs, trials = base.n_epochs, trials or []
    per_fit = fit_seconds(candidates, trials, n_epochs)
    reserve = -(-folds // workers) * per_fit[0]    # the chosen configuration's rounds
    if deadline is not None and reserve > _left(deadline):
        return None, (f"{max(0.0, _left(deadline)):.0f} s of the budget left, {NO_TIME} "
                      f"{folds} fits of the chosen configuration")
    regs = cross_validated_regs(A, seed=chosen.seed)       # for the bias model alone
    fit_kw = dict(fit_kw or {})
    if fit_kw.get("scale") is None:       # one scale for every fold model: the data's
        fit_kw["scale"] = (float(A.data.min()), float(A.data.max()))
    scale = tuple(fit_kw["scale"])
    # the item neighbours (the strongest member beside the networks, and cheap) are
    # fitted in a thread of this process beside the networks' fold fits, which use the
    # worker processes (started once those are forked: no fork while it runs; without
    # worker processes, first and in this thread, one fit at a time); they may
    # use the whole budget, and the chosen configuration's folds are fitted in any case,
    # then as many of the other networks as the time left allows
    fold = fold_of(A.nnz, int(folds), chosen.seed)     # one cut for every member
    side, stop, beside = ThreadPoolExecutor(1), threading.Event(), []
    # a user-based stack exports as one graph, which holds each fold's similarities dense
    too_wide = not chosen.item_based and not graph_holds(A.shape[1], folds)

    def start_neighbours(pooled: bool) -> None:
        if regs is None or too_wide:
            return
        if pooled:           # beside the worker processes, which slow them down: once
            # started before the deadline they finish (their work is bounded by
            # NEIGHBOUR_MAX_WORK), so the slowed pace never drops the strongest member
            if deadline is None or time.perf_counter() < deadline:
                beside.append(side.submit(neighbour_folds, A.tocoo(), fold, regs, scale,
                                          None, stop=stop).result)
        else:                # one fit at a time (--threads 1): first, in this thread
            found = neighbour_folds(A.tocoo(), fold, regs, scale, deadline)
            beside.append(lambda: found)
    try:
        try:
            models, P, fold, coo = fit_folds(
                type(chosen), candidates, A, folds, chosen.seed, fit_kw, progress=progress,
                fold=fold, deadline=deadline, expected=per_fit, started=start_neighbours)
        except NpcfError as err:
            return None, f"a fold fit failed: {err}"
        found = beside[0]() if beside else None
    finally:               # an error or a signal: the neighbours stop after their fold
        stop.set()
        side.shutdown(wait=True, cancel_futures=True)
    skipped = None if found else \
        "too many items for an exported graph to hold their similarities" if too_wide else \
        "over the work limit or past the budget" if regs is not None else \
        "too few ratings to cross-validate the biases' ridge strengths"
    fitted = [c for c, m in enumerate(models) if m is not None]
    over_time = len(models) - len(fitted)      # networks skipped for the budget
    configs, models, P = [candidates[c] for c in fitted], [models[c] for c in fitted], \
        P[:, fitted]
    y = coo.data.astype(np.float64)
    if regs is not None:                  # the bias model alone, a candidate of its own
        bias_kw = dict(configs[0], layers=(1,), residual=True, bias_reg=regs,
                       output_activation="identity")
        bias_models, bias_oof = bias_folds(type(chosen), bias_kw, coo, fold, fit_kw)
        configs = [*configs, {"bias_only": True, "item_based": chosen.item_based,
                              "bias_reg": list(regs)}]
        models, P = [*models, bias_models], np.c_[P, bias_oof]
        if found is not None:             # item neighbours over the biases
            members, oof = found
            configs = [*configs, members[0].describe()]
            models, P = [*models, members], np.c_[P, oof]
    mass = oof_mass(found[0], coo, fold) if found is not None else None
    keep, kind, coef, lam, cv, design, figures = choose_stack(
        P, y, fold, blend.support_basis(*fold_counts(coo, fold, folds)), mass, scale)
    fitted = [m for c in keep for m in models[c]]
    out = fitted[0]
    out.patience = chosen.patience          # its fold fit stopped sooner (FOLD_PATIENCE)
    out.item_counts = column_counts(A)       # it predicts from every labelled rating
    out.blend_members, out.blend_offset = fitted[1:], coef[-1]
    out.blend_weights = np.repeat(coef[:-1], folds, axis=0) / folds
    out.history = chosen.history
    single = [blend.rmse(np.clip(P[:, c], *scale), y) for c in range(P.shape[1])]
    out.info = dict(chosen.info, validation={
        "val_rmse": blend.rmse(cv, y), "val_mae": float(np.mean(np.abs(cv - y))),
        "ratings": int(A.nnz), "out_of_fold": True})
    out.info["blend"] = {
        "kind": kind, "folds": int(folds), "candidates": len(configs),
        "configurations": [int(c) for c in keep], "lambda": lam,
        "out_of_fold_rmse": [round(v, 6) for v in single],
        "cv_rmse": round(blend.rmse(cv, y), 6),
        **{f"cv_rmse_{name}": round(v, 6) for name, v in figures.items()},
        "used": True, "weights": [round(float(v), 4) for v in (design @ coef[:-1].T).mean(0)],
        "members": [_member(configs[c]) for c in keep]}
    if skipped:
        out.info["blend"]["neighbours_skipped"] = skipped
    if over_time:
        out.info["blend"]["over_budget"] = over_time
    return out, None


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (a ``time.perf_counter()`` value; None: no limit)."""
    return None if deadline is None else deadline - time.perf_counter()


def _member(kw: dict) -> dict:
    """How ``info["blend"]["members"]`` lists a kept configuration (JSON values): a
    member that is not a network (the bias model alone, the neighbours) describes itself
    in ``configs``; a network by its searched hyperparameters."""
    if "kind" in kw or kw.get("bias_only"):
        return dict(kw)
    return selection.plain({k: kw[k] for k in selection.SPACE if k in kw})
