"""Reference recommenders to compare the autoencoder with.

Every baseline has the estimator's contract: ``fit(train, validation=None,
validation_input=None, *, items=None)`` on a CSR users x items matrix (``items``: the
:class:`~npcf.data.vocab.Vocabulary` of its columns' raw movie ids), ``predict(csr_rows)
-> dense float32 (B, n_items)`` (usable as the ``score_fn`` of
:func:`npcf.evaluation.protocol.evaluate`), the ``recommend`` every npcf model shares
(:class:`~npcf.evaluation.ranking.Recommends`: raw ids with ``items``, ranking by ``score -
popularity_penalty * log(1 + item_counts)``) and ``get_params``/``set_params``
(:class:`~npcf.utils.params.Params`). ``rating`` tells whether the scores are predicted
ratings (so RMSE/MAE make sense); ``params()`` reports what the fit chose.

``GlobalMean``   every score is the training mean rating (the RMSE floor).
``Biases``       ``mu + b_user + b_item`` (:class:`npcf.nn.bias.UserItemBias`); the
                 user's bias is folded in from the input row, so held-out users work;
                 the regularisation is chosen on validation RMSE from a small grid.
``Popularity``   items ranked by their training rating counts (same for everyone).
``EASE``         Steck 2019: ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + lambda
                 I)^-1`` on the binarised training matrix, scores ``x B``; lambda chosen
                 by NDCG@100 on the validation part from :data:`EASE_LAMBDAS`. Solved
                 densely in float64 over items, or - exactly the same B, via the
                 Woodbury identity - over users when there are fewer users than items
                 (``P = (I - X^T (X X^T + lambda I)^-1 X) / lambda``).
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from npcf.data.checks import check_inputs
from npcf.data.vocab import Vocabulary
from npcf.errors import NpcfError, ParamError, check_scale, non_negative, positive_int
from npcf.evaluation.protocol import evaluate
from npcf.evaluation.ranking import (
    Recommends,
    check_penalty,
    check_ratings,
    rating_rows,
)
from npcf.nn.bias import UserItemBias
from npcf.utils.params import Params
from npcf.utils.sparse import binarize, column_counts, entry_rows

EASE_LAMBDAS = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
BIAS_REGS = (1.0, 3.0, 5.0, 10.0, 25.0)
EASE_METHODS = ("auto", "primal", "dual")


def _check_grid(values, name: str, positive: bool = False) -> None:
    """:class:`ParamError` unless ``values`` is a non-empty list, tuple or 1-D array of
    numbers :func:`~npcf.errors.non_negative` accepts."""
    listed = isinstance(values, (list, tuple)) or isinstance(values, np.ndarray) \
        and values.ndim == 1
    if not listed or not len(values):
        raise ParamError(name, f"must be a non-empty sequence of numbers, got {values!r}")
    for v in values:
        non_negative(v, name, positive=positive)


class Baseline(Params, Recommends):
    """What the baselines share. ``fit`` checks its inputs as the estimator's does
    (:func:`~npcf.data.checks.check_inputs`; at least one rating) and keeps ``items``
    (:class:`Vocabulary` or None) and ``item_counts`` (int64 (n_items,): training ratings
    per item); ``predict`` checks the model is fitted and the input's columns, and reads
    a stored 0 as "not rated" (:func:`~npcf.utils.sparse.rated`). A subclass implements
    ``_fit(X, validation, validation_input)`` and ``_predict(csr)``."""

    name, rating = "", False
    items: Vocabulary | None = None
    item_counts: np.ndarray | None = None

    def _check_params(self) -> None:
        check_penalty(self.popularity_penalty)

    def fit(self, train, validation=None, validation_input=None, *, items=None):
        """Fit on sparse ``train`` (n_users, n_items); returns self. ``validation``:
        sparse targets, predicted from ``validation_input`` (default ``train``), for what
        the baseline chooses on them. ``items``: :class:`Vocabulary` of the columns' raw
        movie ids (``recommend`` then takes and returns them)."""
        self._check_params()
        X = check_inputs(train, validation, validation_input, items=items)
        self.items = items
        self.item_counts = column_counts(X)
        self._fit(X, validation, validation_input)
        return self

    def predict(self, x) -> np.ndarray:
        """Dense float32 scores (B, n_items) of the users (rows) of sparse ``x`` (B, n_items)."""
        return self._predict(self._rows(x))

    def _rows(self, x) -> sp.csr_matrix:
        """``x`` as checked CSR rows: the model fitted, one column per item, ratings in
        its scale."""
        n = self._n_items_checked()
        x = rating_rows(x)              # 0 means "not rated", as in recommend and ONNX
        if x.shape[1] != n:
            raise NpcfError(f"input has shape {x.shape}; the model expects (n_users, {n}), "
                            "one column per item")
        check_ratings(x.data, self.rating_scale, "x")    # refused as the autoencoder refuses
        return x


class GlobalMean(Baseline):
    """Predicts the training mean rating for every user and item."""

    name, rating = "global_mean", True

    def __init__(self, popularity_penalty: float = 0.0):
        self.popularity_penalty = popularity_penalty
        self.mu = 0.0
        self._check_params()

    def _fit(self, X, validation, validation_input) -> None:
        self.mu = float(X.data.mean())

    def _predict(self, x) -> np.ndarray:
        return np.full((x.shape[0], self.n_items), self.mu, np.float32)

    def params(self) -> dict:
        return {"mu": self.mu}


class Biases(Baseline):
    """Regularised ``mu + b_user + b_item``; user bias folded in from the input row.

    ``reg``: the L2 weight (>= 0; None: chosen on the validation part from ``regs``,
    else 5). ``scale``: ``(min, max)`` the predictions are clipped to (None: the
    training range). Fitted: ``reg_`` and ``scale_``, the values used (the
    hyperparameters stay as given, so a clone or a refit chooses again).
    """

    name, rating = "biases", True

    def __init__(self, reg: float | None = None, scale=None, regs=BIAS_REGS,
                 popularity_penalty: float = 0.0):
        self.reg, self.scale, self.regs = reg, scale, regs
        self.popularity_penalty = popularity_penalty
        self.model: UserItemBias | None = None
        self._check_params()

    reg_: float | None = None
    scale_: tuple[float, float] | None = None

    @property
    def rating_scale(self):
        """The scale predictions are clipped to and ratings given must lie in (fitted)."""
        return self.scale_

    def _check_params(self) -> None:
        super()._check_params()
        if self.reg is not None:
            non_negative(self.reg, "reg")
        _check_grid(self.regs, "regs")
        check_scale(self.scale)

    def _model(self, train, reg) -> UserItemBias:
        return UserItemBias(reg, reg).fit(train)

    def _fit(self, train, validation, validation_input) -> None:
        self.scale_ = (float(train.data.min()), float(train.data.max())) \
            if self.scale is None else check_scale(self.scale)
        self.reg_ = self.reg
        if self.reg is None and validation is not None and sp.csr_matrix(validation).nnz:
            v = sp.csr_matrix(validation)
            vin = train if validation_input is None else sp.csr_matrix(validation_input)
            best = None
            for reg in self.regs:
                self.model = self._model(train, reg)
                pred = self._clip(self.model.predict(vin, entry_rows(v), v.indices))
                err = float(np.sqrt(np.mean((pred.astype(np.float64) - v.data) ** 2)))
                if best is None or err < best[0]:
                    best = (err, reg)
            self.reg_ = best[1]
        elif self.reg is None:
            self.reg_ = 5.0
        self.model = self._model(train, self.reg_)

    def _clip(self, y):
        np.clip(y, self.scale_[0], self.scale_[1], out=y)
        return y

    def _predict(self, x) -> np.ndarray:
        return self._clip(self._unclipped(x))

    def _unclipped(self, x) -> np.ndarray:
        return self.model.offset(self.model.row_bias(x)).astype(np.float32)

    def rank_scores(self, x) -> np.ndarray:
        """What ``recommend`` ranks by: :meth:`predict` before the clip to the scale
        (predictions past its top would tie there and fall back to column order)."""
        return self._unclipped(self._rows(x))

    def params(self) -> dict:
        return {"reg": self.reg_, "mu": self.model.mu if self.model else None}


class Popularity(Baseline):
    """Scores every item by its number of training ratings (the same list for everyone)."""

    name, rating = "popularity", False

    def __init__(self, popularity_penalty: float = 0.0):
        self.popularity_penalty = popularity_penalty
        self._check_params()

    def _fit(self, X, validation, validation_input) -> None:
        pass

    def _predict(self, x) -> np.ndarray:
        counts = self.item_counts.astype(np.float32)
        return np.broadcast_to(counts, (x.shape[0], counts.size)).copy()

    def params(self) -> dict:
        return {}


class EASE(Baseline):
    """Embarrassingly Shallow AutoEncoder (Steck 2019) on binarised data.

    ``lam``: the L2 weight lambda (> 0; None: chosen on the validation part from
    ``lambdas`` by NDCG@``select_k`` with relevance ``threshold``, else 500). ``method``:
    "primal" (dense item x item solve), "dual" (Woodbury over users; exact, cheaper when
    users < items) or "auto". Fitted: ``lam_``, the lambda used, and
    ``scores_on_validation`` (lambda -> NDCG of this fit's selection).
    """

    name, rating = "ease", False
    lam_: float | None = None

    def __init__(self, lam: float | None = None, lambdas=EASE_LAMBDAS, method: str = "auto",
                 select_k: int = 100, threshold: float | None = None,
                 popularity_penalty: float = 0.0):
        self.lam, self.lambdas, self.method = lam, lambdas, method
        self.select_k, self.threshold = select_k, threshold
        self.popularity_penalty = popularity_penalty
        self.B: np.ndarray | None = None
        self.scores_on_validation: dict = {}
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        if self.method not in EASE_METHODS:
            raise ParamError("method", f"must be one of {', '.join(EASE_METHODS)}, "
                                       f"got {self.method!r}")
        if self.lam is not None:
            non_negative(self.lam, "lam", positive=True)
        _check_grid(self.lambdas, "lambdas", positive=True)
        positive_int(self.select_k, "select_k")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(
                self.threshold, numbers.Real) or not np.isfinite(self.threshold)):
            raise ParamError("threshold", f"must be a finite number or None, got "
                                          f"{self.threshold!r}")

    # -- solvers -------------------------------------------------------------------
    def _setup(self, X: sp.csr_matrix) -> None:
        n_users, n_items = X.shape
        self._method = self.method if self.method != "auto" else \
            ("dual" if n_users < n_items else "primal")
        self._X = X
        if self._method == "primal":
            # G = X^T X = V diag(w) V^T: (G + lambda I)^-1 = V diag(1 / (w + lambda)) V^T
            self._eig = np.linalg.eigh((X.T @ X).toarray())
        else:
            # X X^T = U diag(w) U^T: (X X^T + lambda I)^-1 = U diag(1 / (w + lambda)) U^T
            w, U = np.linalg.eigh((X @ X.T).toarray())
            UtX = np.ascontiguousarray((X.T @ U).T)          # users x items, dense
            self._eig = (w, U, UtX, UtX * UtX)

    def _solve(self, lam: float) -> None:
        """Set the model for ``lam`` (primal: dense B; dual: the factors of x B)."""
        if self._method == "primal":
            w, V = self._eig
            P = (V / (w + lam)) @ V.T
            B = -P / np.diag(P)[None, :]
            np.fill_diagonal(B, 0.0)
            self.B, self._dual = B.astype(np.float32), None
        else:
            # Woodbury: P = (I - X^T M^-1 X) / lambda with M = X X^T + lambda I
            w, U, UtX, UtX2 = self._eig
            inv = 1.0 / (w + lam)
            diag_p = (1.0 - inv @ UtX2) / lam
            self.B, self._dual = None, (lam, U * inv[None, :], UtX, 1.0 / diag_p)

    def _fit(self, train, validation, validation_input) -> None:
        X = binarize(train, np.float64)
        self._setup(X)
        self.scores_on_validation, self.lam_ = {}, self.lam
        if self.lam is None and validation is not None and sp.csr_matrix(validation).nnz:
            top = float(sp.csr_matrix(validation).data.max())
            if self.threshold is not None and self.threshold > top:
                raise ParamError("threshold", f"{self.threshold:g} is above every validation "
                                 f"rating (the highest is {top:g}): no movie would be relevant "
                                 "to choose lambda by")
            vin = train if validation_input is None else validation_input
            best = None
            for lam in self.lambdas:
                self._solve(lam)
                r = evaluate(self.predict, vin, validation, ks=(self.select_k,),
                             threshold=self.threshold, examples=0,
                             exclude=self.untrained_items())      # as it will be ranked
                score = r[f"ndcg@{self.select_k}"]
                self.scores_on_validation[lam] = score
                if np.isfinite(score) and (best is None or score > best[0]):
                    best = (score, lam)
            self.lam_ = 500.0 if best is None else best[1]
        elif self.lam is None:
            self.lam_ = 500.0
        self._solve(self.lam_)
        if self._method == "primal":
            self._eig = None

    def _predict(self, x) -> np.ndarray:
        xb = binarize(x, np.float64)
        if self.B is not None:
            return np.asarray(xb @ self.B, np.float32)
        lam, u_inv, UtX, inv_diag = self._dual
        # x P = (x - (x X^T) M^-1 X) / lambda ;  x B = x - (x P) diag(1 / diag P)
        dense = xb.toarray()
        xP = (dense - ((xb @ self._X.T).toarray() @ u_inv) @ UtX) / lam
        return (dense - xP * inv_diag[None, :]).astype(np.float32)

    def params(self) -> dict:
        return {"lambda": self.lam_, "method": getattr(self, "_method", self.method),
                "validation_ndcg": {str(k): v for k, v in self.scores_on_validation.items()}}


NAMES = ("global_mean", "biases", "popularity", "ease")


def make(names=NAMES, scale=None, threshold=None):
    """Fresh baselines by name (the order given)."""
    table = {"global_mean": lambda: GlobalMean(), "biases": lambda: Biases(scale=scale),
             "popularity": lambda: Popularity(), "ease": lambda: EASE(threshold=threshold)}
    return [table[n]() for n in names]
