"""Blends of the configurations a search found: greedy ensemble selection on validation.

The search (:mod:`npcf.autoencoder.selection`) trains many configurations and keeps one;
with ~100 trials on one validation carve the winner is partly noise, and the runners-up
make different errors. :func:`greedy_weights` is ensemble selection with replacement
(Caruana et al. 2004): start from nothing, add the candidate whose inclusion lowers the
validation RMSE of the running mean most, ``steps`` times; a candidate's weight is the
share of steps that picked it (non-negative, summing to 1, so a blend of clipped
predictions stays in the rating scale). :func:`holdout_gain` decides whether blending
pays on *this* data: weights fitted on one random half of the validation ratings are
scored on the other half against the single best model, over several halvings; the
search blends only when the mean gain is positive (on a small validation part the
weights over-fit and it does not).

On out-of-fold predictions (:mod:`npcf.autoencoder.crossfit`, one per labelled rating)
:func:`fit_stack` goes further: feature-weighted linear stacking, each candidate's weight
(and an offset) linear in :func:`support_basis`, the pair's ``log(1 + count)`` of its row
and column (and, :func:`with_mass`, the item neighbours' similarity mass at the pair),
ridge strength chosen by cross-validation over the folds; :func:`greedy_cv`
gives the greedy weights' figure in the same cross-validation, so the simpler one can win.
:func:`describe` says in one line what a search decided.
"""
from __future__ import annotations

import numpy as np

from npcf.autoencoder.members import NEIGHBOUR_KINDS

#: how many of the search's configurations :meth:`AutoEncoder.tune` may blend by default
BLEND = 7
#: greedy steps (the finest weight is 1 / STEPS)
STEPS = 20
#: random halvings of the validation ratings in :func:`holdout_gain`
REPEATS = 5


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Root mean squared error of ``pred`` against ``y`` (as float)."""
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def greedy_weights(P: np.ndarray, y: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Weights float64 (K,) of candidates ``P`` (n_ratings, K) predicting ``y`` (n,):
    greedy forward selection with replacement, ``steps`` picks, ties to the lower index."""
    P, y = np.asarray(P, np.float64), np.asarray(y, np.float64)
    if P.ndim != 2 or P.shape[0] != y.size or P.shape[1] < 1:
        raise ValueError(f"P must be (n_ratings, K>=1) matching y, got {P.shape} and {y.shape}")
    counts = np.zeros(P.shape[1], np.int64)
    total = np.zeros(P.shape[0], np.float64)
    for step in range(1, int(steps) + 1):
        trial = (total[:, None] + P) / step                  # the mean with each candidate
        errors = np.mean((trial - y[:, None]) ** 2, axis=0)
        k = int(np.argmin(errors))
        counts[k] += 1
        total += P[:, k]
    return counts / counts.sum()


def holdout_gain(P: np.ndarray, y: np.ndarray, repeats: int = REPEATS, seed: int = 0,
                 steps: int = STEPS) -> float:
    """Mean RMSE gain (positive: the blend is better) on held-out halves: for each of
    ``repeats`` seeded random halvings of the ratings, weights fitted on one half are
    scored on the other (both ways) against candidate 0 (the search's choice)."""
    P, y = np.asarray(P, np.float64), np.asarray(y, np.float64)
    rng = np.random.default_rng([seed, 77])
    gains = []
    for _ in range(int(repeats)):
        half = rng.permutation(y.size) < y.size // 2
        for fit, score in ((half, ~half), (~half, half)):
            if not fit.any() or not score.any():
                continue
            w = greedy_weights(P[fit], y[fit], steps)
            gains.append(rmse(P[score, 0], y[score]) - rmse(P[score] @ w, y[score]))
    return float(np.mean(gains)) if gains else 0.0


# ------------------------------------------------------------------ support-weighted stack
#: ridge strengths tried by :func:`fit_stack`, relative to the mean diagonal of the
#: design's second-moment matrix (so the same grid serves a 1-5 and a 1-100 scale)
LAMBDAS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: features of a pair in :func:`support_basis`
SUPPORT_FEATURES = 4
#: features of a stack whose weights also follow the item neighbours' similarity mass
#: (:func:`with_mass`)
MASS_FEATURES = SUPPORT_FEATURES + 1


def as_support(weights, offset=None) -> tuple:
    """``(W (K, F), b (F,))`` float64 of a blend in :func:`support_basis` form: constant
    weights ``(K,)`` (offset None) become the first feature's coefficient (that feature is
    1), so every blend predicts through one formula; per-pair weights ``(K, F)`` with
    their offset ``(F,)`` are checked (F is :data:`SUPPORT_FEATURES`, or
    :data:`MASS_FEATURES` with :func:`with_mass`'s feature; ValueError otherwise)."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim == 2:
        offset = np.asarray(offset, np.float64)
        if weights.shape[1] not in (SUPPORT_FEATURES, MASS_FEATURES) \
                or offset.shape != weights.shape[1:]:
            raise ValueError(f"per-pair blend weights need {SUPPORT_FEATURES} or "
                             f"{MASS_FEATURES} features and an offset of as many, "
                             f"got {weights.shape} and {offset.shape}")
        return weights, offset
    W = np.zeros((weights.size, SUPPORT_FEATURES))
    W[:, 0] = weights
    return W, np.zeros(SUPPORT_FEATURES)


def support_basis(n_row, n_col) -> np.ndarray:
    """Features float64 (n, 4) of pairs from their row's and column's rating counts in
    the input (each (n,)): ``(1, c, r, r c)`` with ``r = log(1 + n_row)``, ``c = log(1 +
    n_col)``, i.e. the products of ``(1, r)`` and ``(1, c)``."""
    r, c = np.log1p(np.asarray(n_row, np.float64)), np.log1p(np.asarray(n_col, np.float64))
    return np.stack([np.ones_like(r), c, r, r * c], axis=1)


def with_mass(G: np.ndarray, mass) -> np.ndarray:
    """Features float64 (n, 5): :func:`support_basis`'s ``G`` (n, 4) and ``log(1 +
    mass)``, ``mass`` (n,) the pair's similarity mass over the items its row rated
    (:meth:`npcf.nn.neighbours.ItemNeighbours.mass`; the mean over a stack's neighbour
    members): how much the neighbours' prediction rests on, which the counts do not
    say."""
    return np.c_[np.asarray(G, np.float64), np.log1p(np.asarray(mass, np.float64))]


def count_bases(n_row, n_col) -> tuple:
    """``(R, C)``: float64 (n_rows, 2) ``(1, r)`` and (n_cols, 2) ``(1, c)`` of every row's
    and column's count, so that :func:`support_basis` of pair (i, j) is ``R[i] (x) C[j]``."""
    r, c = np.log1p(np.asarray(n_row, np.float64)), np.log1p(np.asarray(n_col, np.float64))
    return np.stack([np.ones_like(r), r], axis=1), np.stack([np.ones_like(c), c], axis=1)


def surface(coef: np.ndarray, R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """float32 (n_rows, n_cols): ``support_basis(pair) @ coef`` for every pair, from
    :func:`count_bases` (rank 2: ``R M C^T`` with ``M = coef`` as 2 x 2)."""
    left = (R @ np.asarray(coef, np.float64).reshape(2, 2)).astype(np.float32)
    return left @ C.T.astype(np.float32)


#: pairs per block when :func:`fit_stack` builds its design matrix
BLOCK = 65_536


def _design(P: np.ndarray, G: np.ndarray) -> np.ndarray:
    return np.concatenate([P[:, [k]] * G for k in range(P.shape[1])] + [G], axis=1)


def _blocks(n: int):
    for lo in range(0, n, BLOCK):
        yield slice(lo, min(n, lo + BLOCK))


def _solve(gram: np.ndarray, rhs: np.ndarray, n: int, lam: float) -> np.ndarray:
    A = gram / n
    A[np.diag_indices_from(A)] += lam * np.mean(np.diag(A))
    return np.linalg.solve(A, rhs / n)


def stack_apply(P: np.ndarray, G: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Stacked predictions float64 (n,) of candidates ``P`` (n, K) with pair features
    ``G`` (n, F) and coefficients ``coef`` (K + 1, F): candidate k weighs ``G @ coef[k]``
    at each pair and ``G @ coef[K]`` is added."""
    return _design(np.asarray(P, np.float64), G) @ np.asarray(coef, np.float64).ravel()


def fit_stack(P: np.ndarray, G: np.ndarray, y: np.ndarray, groups: np.ndarray,
              lambdas=LAMBDAS, scale=None) -> tuple:
    """Feature-weighted linear stacking (Sill et al. 2009) of candidates ``P`` (n, K):
    each candidate's weight, and an offset, linear in the pair features ``G`` (n, F), by
    ridge regression on ``y`` (n,). The strength is the one of ``lambdas`` whose
    cross-validated RMSE over ``groups`` (n,) (fit on all groups but one, score the one;
    predictions clipped to ``scale``) is lowest. The design is built in blocks of
    :data:`BLOCK` pairs (memory ~ the inputs). Returns ``(coef (K + 1, F), lambda,
    cross-validated predictions float64 (n,), clipped)``."""
    P, G, y = np.asarray(P, np.float64), np.asarray(G, np.float64), np.asarray(y, np.float64)
    lo, hi = (-np.inf, np.inf) if scale is None else scale
    names = np.unique(groups)
    width = (P.shape[1] + 1) * G.shape[1]
    gram = np.zeros((names.size, width, width))
    rhs = np.zeros((names.size, width))
    count = np.zeros(names.size)
    index = np.searchsorted(names, groups)
    for b in _blocks(y.size):
        D = _design(P[b], G[b])
        for g in range(names.size):
            at = index[b] == g
            gram[g] += D[at].T @ D[at]
            rhs[g] += D[at].T @ y[b][at]
            count[g] += at.sum()
    best = None
    for lam in lambdas:
        betas = [_solve(gram.sum(0) - gram[g], rhs.sum(0) - rhs[g], y.size - count[g], lam)
                 for g in range(names.size)]
        cv = np.empty_like(y)
        for b in _blocks(y.size):
            D = _design(P[b], G[b])
            cv[b] = np.einsum("nf,nf->n", D, np.stack(betas)[index[b]])
        np.clip(cv, lo, hi, out=cv)
        score = rmse(cv, y)
        if best is None or score < best[1]:
            best = (lam, score, cv)
    coef = _solve(gram.sum(0), rhs.sum(0), y.size, best[0])
    return coef.reshape(P.shape[1] + 1, G.shape[1]), best[0], best[2]


def greedy_cv(P: np.ndarray, y: np.ndarray, groups: np.ndarray, scale=None) -> np.ndarray:
    """Cross-validated predictions float64 (n,) over ``groups`` of :func:`greedy_weights`
    (weights fitted on all groups but one, applied to the one; clipped to ``scale``), for
    comparing them with :func:`fit_stack`'s."""
    P, y = np.asarray(P, np.float64), np.asarray(y, np.float64)
    lo, hi = (-np.inf, np.inf) if scale is None else scale
    cv = np.empty_like(y)
    for g in np.unique(groups):
        held = groups == g
        cv[held] = P[held] @ greedy_weights(P[~held], y[~held])
    return np.clip(cv, lo, hi, out=cv)


def describe(info: dict | None) -> str:
    """One line for a blend decision (``info["blend"]`` of :meth:`AutoEncoder.tune`)."""
    if not info:
        return "no blend tried"
    if "folds" in info:
        how = {"support": "weights following the pair's rating counts",
               "support_mass": "weights following the pair's rating counts and the "
                               "neighbours' similarity mass"}.get(info["kind"],
                                                                  "constant weights")
        single = min(info["out_of_fold_rmse"])
        regs = [m["bias_reg"] for m in info.get("members", ()) if m.get("bias_only")]
        others = ["the bias model alone with ridge strengths users {:g} / items {:g}".format(
            *regs[0])] if regs else []
        others += _neighbours(info)
        notes = [f"among them {' and '.join(others)}"] if others else []
        if info.get("over_budget"):
            notes.append(f"{info['over_budget']} more not fitted within the budget")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return (f"cross-fitted blend of {len(info['configurations'])} of "
                f"{info['candidates']} configurations{extra} x {info['folds']} folds, {how}: "
                f"RMSE {info['cv_rmse']:.4f} over every labelled rating, the weights "
                f"cross-validated (each configuration alone, out of fold: best {single:.4f})")
    skipped = f"cross-fitting skipped ({info['crossfit_skipped']}); " \
        if info.get("crossfit_skipped") else ""
    if "holdout_gain" not in info:
        return f"{skipped}no other configuration to blend"
    gain = f"held-out validation gain {info['holdout_gain']:+.4f}"
    if info["used"]:
        among = _neighbours(info)
        extra = f" (among them {among[0]})" if among else ""
        return f"{skipped}blend of {len(info['weights'])} of {info['candidates']} " \
               f"configurations{extra}, weights " \
               f"{', '.join(f'{w:g}' for w in info['weights'])} ({gain})"
    return f"{skipped}no blend: weights fitted on half the validation ratings lost on the " \
           f"other half ({gain})"


def _neighbours(info: dict) -> list[str]:
    """How :func:`describe` names the item-neighbour members of a blend (0 or 1)."""
    return [f"item neighbours over the biases, {m['neighbours']} per item"
            for m in info.get("members", ()) if m.get("kind") in NEIGHBOUR_KINDS]
