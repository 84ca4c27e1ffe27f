"""``AutoEncoder``: the scikit-learn-style estimator around :class:`~npcf.nn.network.Network`."""
from __future__ import annotations

import inspect
import time

import numpy as np
import scipy.sparse as sp

from npcf import rundir
from npcf.autoencoder import blend, crossfit, hyperparameters, persistence
from npcf.autoencoder.blend import BLEND
from npcf.autoencoder.ensemble import merge
from npcf.autoencoder.members import NeighbourMember
from npcf.autoencoder.selection import SPACE as SEARCHED
from npcf.autoencoder.selection import best_score, finish_training, select
from npcf.autoencoder.trainer import Trainer
from npcf.autoencoder.units import rating_unit
from npcf.data.checks import check_inputs
from npcf.data.vocab import Vocabulary
from npcf.errors import NpcfError, ParamError, check_scale, flag, non_negative, positive_int
from npcf.evaluation.protocol import ranking_metrics, rating_metrics
from npcf.evaluation.ranking import (
    Recommends,
    check_ratings,
    outside_scale,
    rating_rows,
    untrained_columns,
)
from npcf.nn import activations, noise, optim, schedules
from npcf.nn.bias import UserItemBias, cross_validated_regs
from npcf.nn.losses import LOSSES
from npcf.nn.neighbours import graph_holds
from npcf.nn.network import INITS, Network
from npcf.utils.params import Params
from npcf.utils.sparse import binarize, column_counts, l2_normalize_rows, same_matrix

#: ``layers`` and ``activation`` when left as None (chosen on the validation part of
#: movies-small, random 90/10 split, seed 0; every attempt is in benchmarks/NOTES.md)
USER_BASED_DEFAULTS = dict(layers=(256,), activation="tanh")
ITEM_BASED_DEFAULTS = dict(layers=(128,), activation="relu")
OUTPUT_MODES = ("auto", "sampled", "union")
#: share of a ``tune`` budget the search may use when cross-fitting may follow (the rest
#: is left for the fold fits; see :meth:`AutoEncoder.tune`)
SEARCH_SHARE = 0.6


def _counts(X: sp.csr_matrix) -> tuple:
    """Ratings per row and per column (int64) of checked input ``X``."""
    return np.diff(X.indptr), np.bincount(X.indices, minlength=X.shape[1])


def _looks_like_pairs(X, n_inputs: int) -> bool:
    """Whether ``X`` is one user's ``{movie id: rating}`` or ``[(movie id, rating), ...]``
    (what ``recommend`` takes) rather than rows of ratings (nested lists are rows)."""
    if isinstance(X, dict):
        return True
    return isinstance(X, (list, tuple)) and n_inputs != 2 and len(X) > 0 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in X)


def _with_cross_validated_ridge(model, X, validation, validation_input, fit_kw: dict):
    """``model`` refitted with the bias ridge strengths cross-validated on ``X``
    (:func:`npcf.nn.bias.cross_validated_regs`) when that lowers its best validation
    RMSE, else ``model`` itself; ``info["tuning"]["bias_reg"]`` records the refit's."""
    regs = cross_validated_regs(X, seed=model.seed)
    if regs is None or hyperparameters.check_bias_reg(model.bias_reg) == regs:
        return model
    refit = type(model)(**dict(model.get_params(), bias_reg=regs))
    refit.fit(X, validation, validation_input, **fit_kw)
    if not best_score(refit) < best_score(model):
        return model
    refit.info = dict(refit.info, tuning=dict(model.info["tuning"], bias_reg=list(regs),
                                              score=best_score(refit)))
    return refit


class AutoEncoder(Params, Recommends):
    """Deep autoencoder for collaborative filtering.

    User-based (default): a user's ratings over all items in, the reconstruction
    out. ``item_based=True``: an item's ratings over all users (I-AutoRec).
    ``fit(X)`` takes a sparse users x items matrix; ``predict(X)`` returns dense
    float32 scores (B, n_items), clipped to the rating scale for the MSE loss;
    ``recommend`` ranks them (see :class:`~npcf.evaluation.ranking.Recommends`).

    Every keyword is a hyperparameter, stored as given (``get_params``/``set_params``
    work as in scikit-learn). ``layers=None`` / ``activation=None`` mean
    :data:`USER_BASED_DEFAULTS` or :data:`ITEM_BASED_DEFAULTS`. ``ensemble=K`` fits K
    members with seeds ``seed .. seed+K-1``, each early-stopped on its own, folded into
    one network that predicts their mean (:mod:`npcf.autoencoder.ensemble`).
    ``popularity_penalty``: ``recommend`` (and the default export) rank by ``score -
    beta * log(1 + training count)``; it does not change training. ``init``: the weight
    initialisation (``glorot`` or ``uniform``, see :data:`npcf.nn.network.INITS`); without
    the bias residual the output bias starts at the training mean. ``bias_reg``: the bias
    residual's ridge strengths, one number or ``(users, items)`` (:meth:`tune` chooses
    them by cross-validation, :func:`npcf.nn.bias.cross_validated_regs`, unless it
    stacks).

    Fitted attributes: ``network``, ``scale``, ``unit`` (the network and ``baseline``
    work on ratings / unit, :func:`~npcf.autoencoder.units.rating_unit`),
    ``users``/``items`` (:class:`Vocabulary` or None), ``item_counts``, ``baseline`` (the
    bias residual or None), ``history``, ``info``; after :meth:`tune` with ``blend``,
    possibly ``blend_members`` and ``blend_weights`` (predictions are then the weighted
    mean of this model's and the members', :mod:`npcf.autoencoder.blend`; after
    cross-fitting, with weights that follow each pair's rating counts, and possibly the
    item neighbours' similarity mass, plus ``blend_offset``,
    :mod:`npcf.autoencoder.crossfit`; see :meth:`predict`).
    """

    network: Network | None = None
    scale: tuple[float, float] | None = None
    unit: float = 1.0
    users: Vocabulary | None = None
    items: Vocabulary | None = None
    item_counts: np.ndarray | None = None
    baseline: UserItemBias | None = None
    history: list = []     # (class defaults: fit assigns new objects, never mutates these)
    info: dict = {}
    tuning: list = []      # the trials of :meth:`tune`
    blend_members: list = []   # other fitted AutoEncoders (after cross-fitting, possibly a
    # members.NeighbourMember too) this one's predictions blend with
    blend_weights: np.ndarray | None = None   # (1 + len(blend_members),): self first
    # or, after cross-fitting, (1 + len(blend_members), F): weights linear in the pair's
    # support features (:func:`npcf.autoencoder.blend.support_basis`, F = 4; with the
    # neighbours' similarity mass, :func:`~npcf.autoencoder.blend.with_mass`, F = 5), plus
    # this offset (F,)
    blend_offset: np.ndarray | None = None

    def __init__(self, layers=None, tied=True, activation=None, output_activation="identity",
                 dropout=0.0, loss="mse", denoise=True, noise="masking", noise_level=0.2,
                 optimizer="adam", lr=1e-3, weight_decay=1e-2, clip_norm=None, schedule="none",
                 step_size=10, gamma=0.5, n_epochs=40, batch_size=64, patience=5,
                 item_based=False, residual=True, bias_reg=5.0, lazy=True, output_mode="auto",
                 seed=0, ensemble=1, popularity_penalty=0.0, init=None):
        self.layers, self.tied, self.activation = layers, tied, activation
        self.output_activation, self.dropout, self.loss = output_activation, dropout, loss
        self.denoise, self.noise, self.noise_level = denoise, noise, noise_level
        self.optimizer, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.clip_norm, self.schedule, self.step_size = clip_norm, schedule, step_size
        self.gamma, self.n_epochs, self.batch_size = gamma, n_epochs, batch_size
        self.patience, self.item_based, self.residual = patience, item_based, residual
        self.bias_reg, self.lazy, self.output_mode = bias_reg, lazy, output_mode
        self.seed, self.ensemble, self.popularity_penalty = seed, ensemble, popularity_penalty
        self.init = init
        self._check_params()

    # ------------------------------------------------------------------ params
    def _architecture(self) -> tuple[tuple[int, ...], str]:
        """The effective ``(layers, activation)`` (None resolved by orientation)."""
        base = ITEM_BASED_DEFAULTS if self.item_based else USER_BASED_DEFAULTS
        layers = hyperparameters.check_layers(self.layers) or base["layers"]
        return layers, (self.activation or base["activation"])

    def _init_kind(self) -> str:
        """The weight initialisation ``init`` names (None: see the class docstring)."""
        if self.init is not None:
            return self.init
        return "uniform" if self.loss == "mse" and not self.residual else "glorot"

    def _check_params(self) -> None:
        """:class:`~npcf.errors.ParamError` (a ValueError) naming the first
        hyperparameter out of its domain (:mod:`npcf.autoencoder.hyperparameters`)."""
        hyperparameters.check(self.get_params())
        choices = {"activation": (self._architecture()[1], activations.ACTIVATIONS),
                   "output_activation": (self.output_activation, activations.ACTIVATIONS),
                   "loss": (self.loss, LOSSES), "noise": (self.noise, noise.KINDS),
                   "optimizer": (self.optimizer, optim.NAMES),
                   "schedule": (self.schedule, schedules.NAMES),
                   "output_mode": (self.output_mode, OUTPUT_MODES),
                   "init": (self._init_kind(), INITS)}
        for name, (value, allowed) in choices.items():
            if not isinstance(value, str) or value not in allowed:
                raise ParamError(name, f"must be one of {', '.join(allowed)}, got {value!r}")

    # ----------------------------------------------------------------- fitting
    def _orient(self, x: sp.spmatrix) -> sp.csr_matrix:
        x = sp.csr_matrix(x, dtype=np.float32)
        return sp.csr_matrix(x.T) if self.item_based else x

    def _build(self, n_users: int, n_items: int, dtype=np.float32) -> Network:
        """A fresh network for a users x items problem (also kept as ``network``)."""
        layers, act = self._architecture()
        width = n_users if self.item_based else n_items
        try:
            self.network = Network(width, layers, tied=self.tied, activation=act,
                                   output_activation=self.output_activation,
                                   dropout=self.dropout, seed=self.seed, dtype=dtype,
                                   init=self._init_kind())
        except MemoryError:
            sizes = (width, *layers)
            n = sum(a * b for a, b in zip(sizes, sizes[1:])) * (1 if self.tied else 2)
            raise ParamError("layers", f"a {'-'.join(map(str, sizes))} network needs "
                             f"{n * np.dtype(dtype).itemsize / 2**30:.3g} GiB for its weights "
                             "alone (three times that to train); this machine could not "
                             "allocate it: choose smaller layers") from None
        return self.network

    def fit(self, X, validation=None, validation_input=None, *, scale=None, users=None,
            items=None, callbacks=None) -> "AutoEncoder":
        """Train on sparse ``X`` (n_users, n_items); returns self.

        ``validation``: sparse targets for early stopping, predicted from
        ``validation_input`` (default ``X``). ``scale``: (min, max) rating range for
        clipping (default: the range of ``X``). ``users``/``items``:
        :class:`Vocabulary` id maps kept with the model (raw ids in ``recommend``).
        ``callbacks``: :class:`~npcf.autoencoder.callbacks.Callback` list, e.g.
        ``Checkpoint(out)`` for a run directory with Ctrl-C resume, ``ProgressBar``,
        ``EpochLog``.
        """
        self._check_params()
        try:
            callbacks = list(callbacks or ())
        except TypeError:
            raise ParamError("callbacks", f"expected a list of Callback objects, got "
                             f"{type(callbacks).__name__}") from None
        X = check_inputs(X, validation, validation_input, users, items)
        self.blend_members, self.blend_weights = [], None   # a refit replaces a blend too
        self.blend_offset = None
        if self.ensemble > 1:
            return self._fit_ensemble(X, validation, validation_input, scale, users, items,
                                      callbacks)
        if validation is not None and self.item_based and validation_input is not None \
                and not same_matrix(validation_input, X):
            raise NpcfError("item-based models predict from the training matrix; "
                            "validation_input must be the training matrix")
        self._set_data(X, scale, users, items)
        self._build(*X.shape)
        # a column (movie; user when item-based) without a training rating gets no
        # gradient under the masked MSE: zeroed, a prediction there is the baseline, not
        # random-weight noise (the multinomial loss still trains its output rows down)
        Xo = self._orient(X)
        self.network.zero_columns(untrained_columns(column_counts(Xo)))
        self._fit_baseline(Xo)
        if self.baseline is None and self.loss == "mse" and X.nnz:
            # raw ratings as targets: the output bias starts at the training mean (as
            # I-AutoRec's does); from 0, Adam at lr 1e-3 spends thousands of steps on the
            # mean while the weights over-fit (flixster validation 0.979 -> 0.894)
            self.network.params["c0"][:] = X.data.mean(dtype=np.float64) / self.unit
        val = None
        if validation is not None:
            vin = X if validation_input is None or self.item_based else validation_input
            val = (self._orient(vin), self._orient(validation))
        self.info = {"fingerprint": rundir.fingerprint(X)}
        trainer = Trainer(self, Xo, val, callbacks)
        self.history = trainer.run()
        self.info.update(best_epoch=trainer.best_epoch + 1, epochs_run=len(self.history))
        for cb in callbacks:
            cb.on_fit_end(self)
        return self

    def _fit_baseline(self, Xo: sp.csr_matrix) -> None:
        """The bias residual (``bias_reg`` as ``(users, items)``) fitted on oriented ``Xo``,
        or None without the residual or with another loss than MSE."""
        self.baseline = None
        if self.residual and self.loss == "mse":
            users, items = hyperparameters.check_bias_reg(self.bias_reg)
            rows, cols = (items, users) if self.item_based else (users, items)
            self.baseline = UserItemBias(rows, cols).fit(self._in_units(Xo))

    def _fit_bias_only(self, X, *, scale=None, users=None, items=None) -> "AutoEncoder":
        """This estimator as its bias residual alone, a stack member
        (:mod:`npcf.autoencoder.crossfit`): data, scale and biases set as :meth:`fit` sets
        them, every network weight zero (the network adds nothing: predictions are the
        biases'), no training. Needs the residual and the MSE loss; returns self."""
        self._check_params()
        if not self.residual or self.loss != "mse" or self.output_activation != "identity":
            raise NpcfError("the bias model alone needs residual=True, the mse loss and the "
                            "identity output (a zero network then adds nothing)")
        X = check_inputs(X, None, None, users, items)
        self.blend_members, self.blend_weights, self.blend_offset = [], None, None
        self._set_data(X, scale, users, items)
        self._build(*X.shape)
        for p in self.network.params.values():
            p[...] = 0
        self._fit_baseline(self._orient(X))
        self.history = []
        self.info = {"fingerprint": rundir.fingerprint(X), "bias_only": True, "epochs_run": 0}
        return self

    def tune(self, X, validation, validation_input=None, *, fixed=None, budget=None, scale=None,
             users=None, items=None, callbacks=None, progress=None, space=None,
             blend: int = BLEND, folds: int = crossfit.FOLDS):
        """Choose hyperparameters on ``validation`` (successive halving, see
        :mod:`npcf.autoencoder.selection`) and return the fitted best model (a new
        estimator; ``self`` gives the starting values and everything in ``fixed``).

        ``fixed``: the hyperparameters never searched; default: those ``self`` sets to
        something other than their default (``AutoEncoder(layers=(64,)).tune(...)`` keeps
        64 units), so ``fixed=()`` searches everything and ``fixed=("lr",)`` pins a default.

        ``budget``: seconds for the search and the cross-fitting below; the search is
        cut at :data:`SEARCH_SHARE` of them where cross-fitting may follow
        (``info["tuning"]["search_budget"]``; trials still running in worker processes
        then are stopped, ``info["tuning"]["abandoned"]``). The search is recorded
        in the returned model's ``info["tuning"]`` and its trials in ``tuning`` (list of
        dicts). With
        ``ensemble > 1`` the chosen configuration is refitted as an ensemble. ``blend``:
        up to that many configurations are blended (:mod:`npcf.autoencoder.blend`); 1 or 0:
        never. When the search chooses an item-based MSE model (which cannot fold in or
        export anyway; a user-based one: below) and the validation part is a carve of the same users' ratings:
        with ``folds`` >= 2 (default :data:`~npcf.autoencoder.crossfit.FOLDS`), the
        chosen configuration, one with the bias residual the other way round, the next
        best of its orientation and, if the search tried both orientations, the best of
        the other (``blend`` in all, in that order of priority), plus the bias model
        alone with cross-validated ridge strengths and item neighbours over the biases
        (:mod:`npcf.nn.neighbours`), are refitted on ``folds`` folds of
        ``X + validation`` and stacked on their out-of-fold predictions
        (:func:`npcf.autoencoder.crossfit.stacked`: the fold models of the chosen and of
        the kept configurations are saved; ``info["validation"]`` is then the stack's
        cross-validated figure over every labelled rating; its weights follow the counts
        of the input (and possibly the neighbours' similarity mass over each row's
        ratings in it), so predict from ``X + validation``; with a ``budget``, only as
        many configurations as the time left after the search should allow, judged by
        their trials' seconds). With ``folds`` 0 or 1, or where cross-fitting does not
        apply (no time left for the chosen configuration's folds, too few ratings,
        ``X`` and ``validation`` sharing pairs), they and the item neighbours fitted once
        on ``X`` (if time is left) are blended only when weights fitted on half the
        validation ratings beat the chosen model on the other half. A winner the
        search's budget cut while still improving is trained in full whenever no stack
        replaces it (:func:`~npcf.autoencoder.selection.finish_training`; a stack
        refits its configuration on every fold anyway); where its folds, expected to
        run the full epochs, seem not to fit in the time left, it is trained in full
        first and the folds judged again by the seconds that took. ``info["blend"]``
        says what was decided. A user-based winner of a search over both orientations is stacked (or
        blended on validation halves) the same way, but with user-based networks, the
        bias model and the item neighbours only (these where the exported graph can hold
        their dense similarities, :data:`npcf.nn.neighbours.GRAPH_BYTES`): every member
        folds in a new user's ratings, the weights
        follow the training ratings' item counts (``item_counts``: a row's predictions do
        not depend on the rows beside it) and the stack exports as one ONNX graph
        (:mod:`npcf.serving.export`). A ``self`` fixed user-based is never blended.
        Where the result may be stacked (an item-based ``self``, or the orientation
        searched), the trials keep ``self``'s ``bias_reg``
        (the stack's bias member gets the cross-validated strengths: the networks' errors
        then differ from it; a user-based winner left unstacked is refitted with them
        when that lowers its validation RMSE); otherwise the search starts by
        cross-validating it (:func:`npcf.nn.bias.cross_validated_regs`); a ``bias_reg`` in
        ``fixed`` is kept throughout. The ``callbacks`` see the final model only
        (``on_fit_end``).
        Trials and fold fits run in :func:`npcf.utils.parallel.threads` forked processes
        at once (``with parallel.using(2):``; `train` uses every core), with the same
        result.
        """
        if validation is None:
            raise NpcfError("tuning needs a validation part")
        self._check_params()
        if budget is not None:
            non_negative(budget, "budget", positive=True)
        positive_int(blend, "blend", minimum=0)
        positive_int(folds, "folds", minimum=0)
        if fixed is None:
            fixed = set(self.changed_params())
        elif isinstance(fixed, str):
            fixed = (fixed,)                           # one name, not its letters
        if not hasattr(fixed, "__iter__") or not all(isinstance(k, str) for k in fixed):
            raise ParamError("fixed", f"must be hyperparameter names, got {fixed!r}")
        unknown = sorted(set(fixed) - set(self.get_params()))
        if unknown:
            raise ParamError("fixed", f"{', '.join(map(repr, unknown))} are not hyperparameters "
                                      "of AutoEncoder (see get_params())")
        X = check_inputs(X, validation, validation_input, users, items)
        fit_kw = dict(scale=scale, users=users, items=items)
        pool: list = []
        oriented = "item_based" not in set(fixed) and len(
            (SEARCHED if space is None else space).get("item_based", ())) > 1
        same_input = validation_input is None or same_matrix(validation_input, X)
        may_stack = int(blend) > 1 and int(folds) > 1 and self.ensemble == 1 and \
            self.loss == "mse" and (self.item_based or oriented) and same_input and \
            not crossfit.inapplicable(X, validation, int(folds))
        # a stack gets the bias model with cross-validated ridge strengths as a member of
        # its own, beside networks that keep the given strength (their errors differ);
        # one network gets the cross-validated strengths itself (benchmarks/NOTES.md)
        searching = budget if budget is None or not may_stack else budget * SEARCH_SHARE
        began = time.perf_counter()
        # where cross-fitting may follow, a winner the budget cut is trained in full only
        # if the stack does not replace it (the stack refits it on every fold anyway)
        model, trials = select(self, X, validation, validation_input,
                               fixed=set(fixed) | {"bias_reg"} if may_stack else fixed,
                               space=space, budget=searching, fit_kw=fit_kw,
                               progress=progress, candidates=pool,
                               finish=not may_stack and self.ensemble == 1)
        model.info["tuning"] = dict(model.info["tuning"], budget=budget,
                                    search_budget=searching)

        def left() -> float | None:
            return None if budget is None else budget - (time.perf_counter() - began)
        blendable = int(blend) > 1 and self.ensemble == 1 and model.loss == "mse" and \
            model.item_based
        # a user-based winner of a search over both orientations is blended too (with
        # user-based networks and the item neighbours only: it still folds in and exports;
        # from the rows of X, so only where they are the validation part's input)
        stackable = blendable or (int(blend) > 1 and self.ensemble == 1 and oriented and
                                  model.loss == "mse" and same_input)
        stacked, why, timely = None, None, budget is None or left() > 0
        if stackable and int(folds) > 1 and not same_input:
            why = "the validation part is predicted from other inputs"
        elif stackable and int(folds) > 1:
            stacked, why = crossfit.stacked(model, pool, self, X, validation,
                                            folds=int(folds), size=int(blend),
                                            fit_kw=fit_kw, progress=progress,
                                            trials=trials, seconds=left())
            timely = budget is None or left() > 0       # before a retrain, below
            if stacked is None and crossfit.short_of_time(why) \
                    and (model.info.get("tuning") or {}).get("unfinished"):
                # the budget cut the winner while it improved, so its fold fits were
                # expected to run the full epochs; train it in full now (the fallback
                # below needs that anyway) and judge the folds by what that took
                model = finish_training(model, trials, X, validation, validation_input,
                                        fit_kw)
                stacked, why = crossfit.stacked(model, pool, self, X, validation,
                                                folds=int(folds), size=int(blend),
                                                fit_kw=fit_kw, progress=progress,
                                                trials=trials, seconds=left())
        if stacked is not None:
            model = stacked       # info["tuning"]["unfinished"]: the search's own run (or
            # the winner's full run, where the folds were judged again after it)
        else:
            # the item neighbours (the strongest member beside the networks) join a blend
            # on the validation part if it is predicted from X and time is left before
            # the winner's retrain (which is not optional)
            neighbours = stackable and same_input and timely and (
                model.item_based or graph_holds(X.shape[1]))     # user-based: exportable
            if self.ensemble == 1:       # (an ensemble is refitted below anyway)
                model = finish_training(model, trials, X, validation, validation_input,
                                        fit_kw)
            if may_stack and not model.item_based and model.residual \
                    and "bias_reg" not in set(fixed):
                # a user-based winner left unstacked: its trials' ridge had no bias
                # member beside it; the cross-validated one, if the validation part agrees
                model = _with_cross_validated_ridge(model, X, validation, validation_input,
                                                    fit_kw)
            if stackable:        # (a user-based blend holds user-based networks only)
                searched = model.info["tuning"].get("bias_reg")   # cross-validated on X
                nb = crossfit.holdout_neighbours(
                    X, model.scale, model.seed,
                    None if searched is None else tuple(searched)) if neighbours else None
                model._blend_with(pool, X, validation, int(blend),
                                  extra=[] if nb is None else [nb])
                if why:
                    model.info["blend"] = dict(model.info.get("blend") or {"candidates": 1},
                                               crossfit_skipped=why)
        if self.ensemble > 1:
            tuning = dict(model.info["tuning"], unfinished=False)     # refitted in full
            model = AutoEncoder(**dict(model.get_params(), ensemble=self.ensemble,
                                       n_epochs=self.n_epochs))
            model.fit(X, validation, validation_input, **fit_kw)
            model.info = dict(model.info, tuning=tuning)
        for cb in callbacks or ():
            cb.on_fit_end(model)
        model.tuning = trials
        return model

    def _blend_with(self, pool: list, X, validation, size: int, extra=()) -> None:
        """Blend this model (the search's choice) with the best of ``pool`` (``(score,
        config, model)`` from :func:`select`) of the same orientation and loss, and with
        ``extra`` members fitted on ``X`` (:class:`~npcf.autoencoder.members.NeighbourMember`),
        when it pays on held-out halves of ``validation``; records the decision in
        ``info``."""
        def settings(m) -> dict:   # a configuration, however long it trained and whatever
            return dict(m.get_params(), n_epochs=None, bias_reg=None)  # ridge it got after
        members = [m for _, _, m in pool if m.item_based == self.item_based
                   and m.loss == self.loss and settings(m) != settings(self)   # not itself,
                   ][:size - 1] + list(extra)              # nor its shorter run in the search
        if not members:
            return
        X = self._check(X)
        V = sp.coo_matrix(validation)
        y = V.data.astype(np.float64)
        P = np.stack([m._predict_one_at(X, V.row, V.col) for m in [self, *members]], axis=1)
        gain = blend.holdout_gain(P, y, seed=self.seed)
        w = blend.greedy_weights(P, y)
        used = gain > 0 and w[0] < 1
        keep = np.flatnonzero(w[1:] > 0) if used else np.zeros(0, np.int64)
        if used:
            self.blend_members = [members[k] for k in keep]
            self.blend_weights = np.r_[w[0], w[1:][keep]]
            pred = np.clip(P[:, np.r_[0, keep + 1]] @ self.blend_weights, *self.scale)
            self.info["validation"] = {"val_rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
                                       "val_mae": float(np.mean(np.abs(pred - y)))}
        self.info["blend"] = {
            "candidates": 1 + len(members), "holdout_gain": round(gain, 6), "used": bool(used),
            "weights": [] if not used else [round(float(v), 4) for v in self.blend_weights],
            "members": [] if not used else [
                m.describe() if isinstance(m, NeighbourMember) else
                {k: m.get_params()[k] for k in SEARCHED if k in m.get_params()}
                for m in self.blend_members]}

    def _set_data(self, X: sp.csr_matrix, scale, users, items) -> None:
        if self.loss == "mse" and X.nnz and X.data.min() == X.data.max():
            raise ParamError("loss", f"'mse' learns nothing from ratings that all equal "
                             f"{float(X.data[0]):g} (every prediction would be that value); "
                             "for implicit data (clicked, watched) use 'multinomial'")
        self.scale = check_scale(scale)
        if self.loss == "mse" and (problem := outside_scale(X.data, self.scale)):
            raise NpcfError(f"X: {problem} (the scale given to fit)")
        if self.scale is None and self.loss == "mse" and X.nnz:
            self.scale = (float(X.data.min()), float(X.data.max()))
        self.unit = rating_unit(self.scale) if self.loss == "mse" else 1.0
        self.users, self.items = users, items
        self.item_counts = column_counts(X)

    def _fit_ensemble(self, X, validation, validation_input, scale, users, items, callbacks):
        """Fit ``ensemble`` members (seeds ``seed + k``) and merge them into one network.

        Each callback gives its member's own (``for_member``); a member a callback
        reports ``finished`` with the same options on the same data is reloaded.
        """
        members, data_fp = [], rundir.fingerprint(X)
        for k in range(self.ensemble):
            params = dict(self.get_params(), ensemble=1, seed=self.seed + k)
            cbs = [cb.for_member(k) for cb in callbacks]
            for cb in cbs:
                cb.on_member_begin(k, self.ensemble, self.seed + k)
            done = next((p for p in (cb.finished(params, data_fp) for cb in cbs) if p), None)
            if done is not None:
                member = AutoEncoder.load(done)
                member.history = rundir.read_history(done / rundir.HISTORY_CSV)
            else:
                member = AutoEncoder(**params).fit(X, validation, validation_input, scale=scale,
                                                   users=users, items=items, callbacks=cbs)
            members.append(member)
        first = members[0]
        self.scale, self.users, self.items = first.scale, first.users, first.items
        self.item_counts, self.baseline, self.unit = first.item_counts, first.baseline, first.unit
        self.network = merge([m.network for m in members])
        self.history = [dict(member=k + 1, **row) for k, m in enumerate(members)
                        for row in m.history]
        self.info = {"fingerprint": first.info["fingerprint"],
                     "best_epoch": [m.info["best_epoch"] for m in members],
                     "epochs_run": [m.info["epochs_run"] for m in members]}
        if validation is not None:   # the ensemble's own figures, named as in history rows
            vin = X if validation_input is None or self.item_based else validation_input
            if self.loss == "mse":
                r = rating_metrics(self, vin, validation)
                self.info["validation"] = {"val_rmse": r["rmse"], "val_mae": r["mae"]}
            else:
                r = ranking_metrics(self, vin, validation, ks=(100,))
                self.info["validation"] = {"val_ndcg": r["ndcg@100"]}
        for cb in callbacks:
            cb.on_fit_end(self)
        return self

    # -------------------------------------------------------- network space
    def _encode(self, x: sp.csr_matrix):
        """Network input for oriented CSR rows ``x``: ``(x_in, row_bias or None)``.

        Multinomial: binarised, L2-normalised rows. MSE: ratings in :attr:`unit`s, minus
        ``mu + b_row + b_col`` with the bias residual (``b_row`` from the row's own
        ratings).
        """
        if self.loss == "multinomial":
            return l2_normalize_rows(binarize(x)), None
        x = self._in_units(x)
        if self.baseline is not None:
            b = self.baseline.row_bias(x)
            return self.baseline.residual(x, b), b
        return x, None

    def _in_units(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """CSR ratings divided by :attr:`unit` (a new matrix unless the unit is 1)."""
        if self.unit == 1.0:
            return x
        x = sp.csr_matrix(x)
        return sp.csr_matrix(((x.data / self.unit).astype(x.dtype), x.indices, x.indptr),
                             shape=x.shape)

    def _encode_target(self, t: sp.csr_matrix, b_row) -> sp.csr_matrix:
        """Training target in the network's space (in units; residual when ``b_row`` is
        given)."""
        t = self._in_units(t) if self.loss == "mse" else t
        return t if b_row is None else self.baseline.residual(t, b_row)

    def _decode_at(self, y: np.ndarray, b_row, rows, cols) -> np.ndarray:
        """Network outputs at pairs back to ratings."""
        y = y if b_row is None else y + self.baseline.offset_at(b_row, rows, cols)
        return y if self.unit == 1.0 else y * np.float32(self.unit)

    def _finish(self, y: np.ndarray) -> np.ndarray:
        if self.loss == "mse" and self.scale is not None:
            np.clip(y, self.scale[0], self.scale[1], out=y)
        return y

    # --------------------------------------------------------------- predicting
    @property
    def rating_scale(self):
        return self.scale if self.loss == "mse" else None

    def _check(self, X) -> sp.csr_matrix:
        if self.network is None:
            raise NpcfError("the model is not fitted")
        if not sp.issparse(X) and _looks_like_pairs(X, self.network.n_inputs):
            raise NpcfError("X: expected users' ratings as a sparse (users, n_items) matrix or "
                            "a dense array; for one user's (movie id, rating) pairs use "
                            "recommend")
        X = rating_rows(X)              # 0 means "not rated", as in recommend and ONNX
        check_ratings(X.data, self.rating_scale, "X")       # refused as recommend refuses
        if self.item_based:
            if X.shape[0] != self.network.n_inputs or X.shape[1] != self.n_items:
                raise NpcfError(f"input has shape {X.shape}; this item-based model was fitted on "
                                f"{self.network.n_inputs} users x {self.n_items} items and needs "
                                "their full matrix (it cannot fold in single users)")
        elif X.shape[1] != self.network.n_inputs:
            raise NpcfError(f"input has {X.shape[1]} columns; the model expects "
                            f"{self.network.n_inputs} items")
        return X

    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """Dense float32 scores (n_rows, n_items) for the users (rows) of sparse ``X``.

        User-based: any rows (fold-in: new users need no retraining). Item-based:
        ``X`` must be the full users x items matrix the model was fitted on (each
        item's column is its input), and scores are returned for all its rows. A blend
        (:meth:`tune`) returns the weighted mean of its members' predictions (after
        cross-fitting: weights that follow each pair's rating counts, the row's in ``X``,
        the item's in ``X`` item-based and in the training ratings user-based, and where
        the stack chose it the item neighbours' similarity mass over the row's ratings
        in ``X``).
        """
        X, batch_size = self._check(X), positive_int(batch_size, "batch_size")
        return self._predict(X, batch_size, clip=True)

    def rank_scores(self, X, batch_size: int = 1024) -> np.ndarray:
        """The scores :meth:`recommend` ranks by: :meth:`predict`'s before they are clipped
        to the rating scale (predictions past its top would all tie there, and a tie falls
        back to column order). Same shapes and dtype as :meth:`predict`."""
        X, batch_size = self._check(X), positive_int(batch_size, "batch_size")
        return self._predict(X, batch_size, clip=False)

    def _predict(self, X: sp.csr_matrix, batch_size: int, clip: bool) -> np.ndarray:
        """:meth:`predict` (``clip``) or :meth:`rank_scores` on checked input ``X``. A
        blend's members are clipped either way (as its weights were fitted), so the
        clipped :meth:`rank_scores` are :meth:`predict`'s exactly."""
        if self.blend_weights is None:
            return self._predict_one(X, batch_size, clip)
        W, b = self.support_weights()
        R, C = blend.count_bases(*self._blend_counts(X))
        log_mass = scratch = None
        if W.shape[1] == blend.MASS_FEATURES:
            log_mass = np.log1p(self._similarity_mass(X, batch_size=batch_size))
            scratch = np.empty_like(log_mass)

        def surface(coef: np.ndarray) -> np.ndarray:     # the pair's features @ coef
            out = blend.surface(coef[:blend.SUPPORT_FEATURES], R, C)
            if log_mass is not None:                     # + coef4 log(1 + mass)
                out += np.multiply(log_mass, np.float32(coef[blend.SUPPORT_FEATURES]),
                                   out=scratch)
            return out
        out = surface(b)
        for coef, m in zip(W, [self, *self.blend_members]):
            weight = surface(coef)
            weight *= m._predict_one(X, batch_size)
            out += weight
        return self._finish(out) if clip else out

    def _similarity_mass(self, X: sp.csr_matrix, rows=None, cols=None,
                         batch_size: int = 1024) -> np.ndarray:
        """The mean similarity mass of a blend's item-neighbour members over each row's
        rated items: dense float32 (n_rows, n_items), or float64 (n,) at the pairs
        ``(rows, cols)`` (:func:`npcf.autoencoder.blend.with_mass`)."""
        members = [m for m in self.blend_members if isinstance(m, NeighbourMember)]
        if not members:
            raise NpcfError("blend weights follow the neighbours' similarity mass, but the "
                            "blend has no item-neighbour member")
        if rows is None:
            out = members[0].similarity_mass(X, batch_size)
            for m in members[1:]:
                out += m.similarity_mass(X, batch_size)
            out /= np.float32(len(members))
            return out
        return np.mean([m.similarity_mass_at(X, rows, cols) for m in members], axis=0)

    def support_weights(self) -> tuple:
        """``(W (K, F), b (F,))`` float64: a blend's weights in
        :func:`~npcf.autoencoder.blend.support_basis` form, member ``k``'s weight at a pair
        ``g @ W[k]`` and ``g @ b`` added, ``g`` the pair's features (constant weights:
        the first feature's coefficients): F = 4, ``g = support_basis(pair)``; or F = 5
        where the weights also follow the item neighbours' similarity mass, ``g =
        with_mass(support_basis(pair), mass)`` (:func:`~npcf.autoencoder.blend.
        with_mass`). NpcfError for a single network or weights of another shape."""
        if self.blend_weights is None:
            raise NpcfError("not a blend: the model is one network")
        try:
            return blend.as_support(self.blend_weights, self.blend_offset)
        except ValueError as err:
            raise NpcfError(str(err)) from None

    def _blend_counts(self, X: sp.csr_matrix) -> tuple:
        """``(n_row, n_col)`` int64: the rating counts a blend's weights follow. A row's
        are its own in ``X``; an item's are its count in ``X`` for an item-based model
        (which predicts from the whole matrix), but the training ratings'
        (``item_counts``) for a user-based one, so that a user's predictions do not depend
        on the other rows they are predicted with (fold-in, and as the ONNX graph)."""
        n_row, n_col = _counts(X)
        if not self.item_based and self.item_counts is not None:
            n_col = np.asarray(self.item_counts, np.int64)
        return n_row, n_col

    def _predict_one(self, X: sp.csr_matrix, batch_size: int = 1024,
                     clip: bool = True) -> np.ndarray:
        """:meth:`predict` of this model's own network on checked input ``X`` (``clip``:
        to the rating scale)."""
        net = self.network
        if self.item_based:
            X = sp.csr_matrix(X.T)
        out = np.empty(X.shape, np.float32)
        for s in range(0, X.shape[0], batch_size):
            x, b = self._encode(X[s:s + batch_size])
            y = net.predict(x)
            if b is not None:
                y += self.baseline.offset(b)
            if self.unit != 1.0:
                y *= np.float32(self.unit)
            out[s:s + batch_size] = y
        if self.item_based:
            out = np.ascontiguousarray(out.T)
        return self._finish(out) if clip else out

    def predict_at(self, X, rows, cols, batch_size: int = 1024, *,
                   clip: bool = True) -> np.ndarray:
        """Predicted ratings (1-D float32) of the pairs (rows[k], cols[k]) given input ``X``.

        Computes only the requested outputs (no dense (B, n_items) array). ``clip=False``:
        the scores before the clip to the rating scale (:meth:`rank_scores`' at the pairs).
        """
        X, batch_size = self._check(X), positive_int(batch_size, "batch_size")
        clip = flag(clip, "clip")
        if self.blend_weights is None:
            return self._predict_one_at(X, rows, cols, batch_size, clip)
        W, b = self.support_weights()
        first = self._predict_one_at(X, rows, cols, batch_size)    # checks the pairs
        n_row, n_col = self._blend_counts(X)
        G = blend.support_basis(n_row[np.asarray(rows)], n_col[np.asarray(cols)])
        if W.shape[1] == blend.MASS_FEATURES:
            G = blend.with_mass(G, self._similarity_mass(X, rows, cols))
        out = G @ b + (G @ W[0]) * first
        for coef, m in zip(W[1:], self.blend_members):
            out += (G @ coef) * m._predict_one_at(X, rows, cols, batch_size)
        out = out.astype(np.float32, copy=False)
        return self._finish(out) if clip else out

    def _predict_one_at(self, X: sp.csr_matrix, rows, cols, batch_size: int = 1024,
                        clip: bool = True) -> np.ndarray:
        """:meth:`predict_at` of this model's own network on checked input ``X``."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise NpcfError(f"rows and cols must be 1-D of one length, got shapes "
                            f"{rows.shape} and {cols.shape}")
        for name, idx, n in (("rows", rows, X.shape[0]), ("cols", cols, X.shape[1])):
            if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n):
                raise NpcfError(f"{name} must be indices in [0, {n}) of X's "
                                f"{'rows' if name == 'rows' else 'columns'}")
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        if self.item_based:
            X, rows, cols = sp.csr_matrix(X.T), cols, rows
        out = np.empty(rows.size, np.float32)
        order = np.argsort(rows, kind="stable")
        r_sorted = rows[order]
        start = np.flatnonzero(np.r_[True, r_sorted[1:] != r_sorted[:-1]]) if r_sorted.size \
            else np.zeros(0, np.int64)
        uniq = r_sorted[start]
        bounds = np.r_[start, r_sorted.size]
        for s in range(0, uniq.size, batch_size):
            u = uniq[s:s + batch_size]
            lo, hi = bounds[s], bounds[min(s + batch_size, uniq.size)]
            local = np.searchsorted(u, r_sorted[lo:hi])
            x, b = self._encode(X[u])
            a, _ = self.network.hidden(x)
            c = cols[order[lo:hi]]
            out[order[lo:hi]] = self._decode_at(self.network.reconstruct_at(a, local, c), b,
                                                local, c)
        return self._finish(out) if clip else out

    # ``recommend`` (Recommends) ranks by ``rank_scores``, all rows at once item-based
    def _score_batches(self, X: sp.csr_matrix):
        if self.item_based:       # every user's scores come from the whole matrix at once
            yield 0, self.rank_scores(X)
            return
        yield from super()._score_batches(X)


    # -------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write ``model.npz`` + ``model.json`` into directory ``path`` (or ``X.npz`` +
        ``X.json`` for a path ``X.npz``) as one pair (:mod:`npcf.autoencoder.persistence`).
        A blend's members go in the same two files (arrays under ``blend{k}/``)."""
        persistence.save(self, path)

    @classmethod
    def load(cls, path) -> "AutoEncoder":
        """Load a model saved by :meth:`save`: its directory, or a checkpoint ``X.npz``
        (read with the ``X.json`` beside it)."""
        return persistence.load(cls, path)


#: every hyperparameter's default, from the signature
DEFAULTS = {k: p.default for k, p in inspect.signature(AutoEncoder.__init__).parameters.items()
            if k != "self"}
