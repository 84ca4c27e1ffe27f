"""Cross-fitting and the support-weighted stack: folds, out-of-fold predictions, the
stack's fit and its dense/pair forms, the stacked estimator (save/load) and the CLI."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from npcf import AutoEncoder, load
from npcf.autoencoder import blend, crossfit
from npcf.cli import main
from npcf.errors import NpcfError

from helpers import split, tiny_ratings

KW = dict(item_based=True, n_epochs=4, layers=(8,), denoise=False, batch_size=16)


def test_folds_cut_every_rating_once_evenly_and_reproducibly():
    f = crossfit.fold_of(103, 5, seed=3)
    assert f.shape == (103,) and set(np.unique(f)) == set(range(5))
    assert np.bincount(f).max() - np.bincount(f).min() <= 1
    np.testing.assert_array_equal(f, crossfit.fold_of(103, 5, seed=3))
    assert not np.array_equal(f, crossfit.fold_of(103, 5, seed=4))
    for bad in (1, 104):
        with pytest.raises(NpcfError, match="folds"):
            crossfit.fold_of(103, bad, seed=0)
    A = sp.coo_matrix(tiny_ratings())
    fold = crossfit.fold_of(A.nnz, 4, seed=0)
    train, held = crossfit.fold_parts(A, fold, 2)
    assert held.nnz == (fold == 2).sum() and train.nnz + held.nnz == A.nnz
    assert (train.multiply(held)).nnz == 0                      # disjoint
    np.testing.assert_allclose((train + held).toarray(), A.toarray())


def test_out_of_fold_predictions_come_from_the_model_that_did_not_see_them():
    A = tiny_ratings(40, 24, density=0.4, seed=2)
    configs = [dict(KW, activation="relu"), dict(KW, activation="tanh", seed=1)]
    models, P, fold = crossfit.crossfit(AutoEncoder, configs, A, folds=3, seed=0, workers=1)
    coo = sp.csr_matrix(A).tocoo()
    assert P.shape == (coo.nnz, 2) and len(models) == 2 and len(models[0]) == 3
    for c in range(2):
        for k in range(3):
            train, _ = crossfit.fold_parts(coo, fold, k)
            at = fold == k
            np.testing.assert_allclose(
                P[at, c], models[c][k].predict_at(train, coo.row[at], coo.col[at]), rtol=1e-6)
            assert models[c][k].info["epochs_run"] >= 1
    # forked workers give the same result
    _, P2, fold2 = crossfit.crossfit(AutoEncoder, configs, A, folds=3, seed=0, workers=2)
    np.testing.assert_array_equal(fold, fold2)
    np.testing.assert_allclose(P, P2, rtol=1e-6)


def test_support_basis_surface_and_pairs_agree():
    rng = np.random.default_rng(0)
    nr, nc = rng.integers(0, 50, 7), rng.integers(0, 90, 5)
    coef = rng.normal(size=blend.SUPPORT_FEATURES)
    R, C = blend.count_bases(nr, nc)
    dense = blend.surface(coef, R, C)
    rows, cols = np.meshgrid(np.arange(7), np.arange(5), indexing="ij")
    pairs = blend.support_basis(nr[rows.ravel()], nc[cols.ravel()]) @ coef
    np.testing.assert_allclose(dense.ravel(), pairs)
    G = blend.support_basis([0, np.e - 1], [0, 0])
    np.testing.assert_allclose(G, [[1, 0, 0, 0], [1, 0, 1, 0]])


def test_fit_stack_learns_weights_that_follow_the_counts():
    rng = np.random.default_rng(1)
    n = 4000
    y = rng.uniform(1, 5, n)
    G = blend.support_basis(rng.integers(0, 200, n), rng.integers(0, 200, n))
    share = G[:, 1] / G[:, 1].max()                  # 0 .. 1 with the column's count
    # candidate a is good on well-rated columns, b on rarely rated ones
    a = y + (0.6 - 0.5 * share) * rng.normal(size=n)
    b = y + (0.1 + 0.5 * share) * rng.normal(size=n)
    P = np.column_stack([a, b])
    groups = np.arange(n) % 5
    coef, lam, cv = blend.fit_stack(P, G, y, groups)
    assert coef.shape == (3, blend.SUPPORT_FEATURES) and lam in blend.LAMBDAS
    rmse = lambda p: float(np.sqrt(np.mean((p - y) ** 2)))               # noqa: E731
    assert cv < blend.greedy_cv(P, y, groups) - 0.01       # held out, not only in-sample
    assert rmse(blend.stack_apply(P, G, coef)) <= cv + 0.005
    wa = G @ coef[0]
    assert wa[share > 0.9].mean() > 0.6 > 0.4 > wa[share < 0.3].mean()
    # an exact candidate: weight 1 on it, nothing else
    exact = np.column_stack([y, b])
    coef1, _, cv1 = blend.fit_stack(exact, G, y, groups, lambdas=(1e-12,))
    assert cv1 < 1e-6
    np.testing.assert_allclose(blend.stack_apply(exact, G, coef1), y, atol=1e-6)


@pytest.fixture(scope="module")
def stacked():
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    space = {"activation": ("relu", "sigmoid", "tanh"), "weight_decay": (1e-3, 1e-2)}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=60, blend=4, folds=3)
    return model, train, val


def test_tune_cross_fits_an_item_based_choice(stacked):
    model, train, val = stacked
    info = model.info["blend"]
    assert info["folds"] == 3 and info["kind"] in ("greedy", "support")
    assert 1 <= len(info["configurations"]) <= info["candidates"] <= 4
    assert model.blend_weights.shape == (3 * len(info["configurations"]),
                                         blend.SUPPORT_FEATURES)
    assert len(model.blend_members) == model.blend_weights.shape[0] - 1
    assert model.info["validation"]["val_rmse"] == pytest.approx(info["cv_rmse"])
    assert model.info["validation"]["ratings"] == train.nnz + val.nnz
    assert info["cv_rmse"] == min(info["cv_rmse_greedy"], info["cv_rmse_support"])
    assert "blend" in blend.describe(info) and "folds" in blend.describe(info)
    # the other orientation took part as a candidate
    assert any(not m.item_based for m in model.blend_members) or \
        info["candidates"] > len(info["configurations"])


def test_a_stacked_model_predicts_its_formula_and_round_trips(stacked, tmp_path):
    model, train, val = stacked
    X = (train + val).tocsr()
    members = [model, *model.blend_members]
    single = [AutoEncoder._predict_one(m, X) for m in members]
    R, C = blend.count_bases(np.diff(X.indptr), np.bincount(X.indices, minlength=X.shape[1]))
    want = blend.surface(model.blend_offset, R, C)
    for coef, p in zip(model.blend_weights, single):
        want += blend.surface(coef, R, C) * p
    want = np.clip(want, *model.scale)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-5, atol=1e-5)
    rows, cols = val.nonzero()
    np.testing.assert_allclose(model.predict_at(X, rows, cols), want[rows, cols],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(NpcfError, match="rows"):
        model.predict_at(X, np.array([X.shape[0]]), np.array([0]))
    model.save(tmp_path)
    back = load(tmp_path)
    np.testing.assert_array_equal(back.blend_offset, model.blend_offset)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    meta = json.loads((tmp_path / "model.json").read_text())
    for bad in ([1.0, 2.0], [float("nan")] * blend.SUPPORT_FEATURES):
        meta["blend"]["offset"] = bad
        (tmp_path / "model.json").write_text(json.dumps(meta))
        with pytest.raises(NpcfError, match="blend weights"):
            load(tmp_path)


def test_folds_one_keeps_the_validation_halves_blend():
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=30, blend=3, folds=1)
    assert "holdout_gain" in model.info["blend"] and model.blend_offset is None
    with pytest.raises(ValueError, match="folds"):
        AutoEncoder(**KW).tune(train, val, space=space, folds=-1)


def test_only_the_configurations_the_budget_allows_are_cross_fitted():
    a, b, c = (dict(KW, activation=act) for act in ("relu", "tanh", "selu"))
    trials = [dict(activation="relu", rung=1, seconds=1.0), dict(activation="relu", rung=2,
              seconds=4.0), dict(activation="tanh", rung=1, seconds=2.0)]
    assert crossfit.affordable([a, b, c], trials, 5, None, 1) == [a, b, c]
    # relu: 5 folds x 4 s; tanh: 5 x 2 s; selu never trained: the slowest so far, 4 s
    assert crossfit.affordable([a, b, c], trials, 5, 20.0, 1) == [a]
    assert crossfit.affordable([a, b, c], trials, 5, 30.0, 1) == [a, b]
    assert crossfit.affordable([a, b, c], trials, 5, 25.0, 2) == [a, b, c]
    assert crossfit.affordable([a, b, c], trials, 5, 19.0, 1) == []


def test_too_few_ratings_per_fold_fall_back_to_the_validation_halves_blend():
    m = tiny_ratings(12, 10, density=0.5, seed=1)
    train, val = split(m, 0.2, seed=2)
    assert train.nnz + val.nnz < crossfit.MIN_PER_FOLD * 5
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "sigmoid")},
                                   blend=3, folds=5)
    assert model.blend_offset is None and "folds" not in model.info.get("blend", {})


def test_no_time_left_falls_back_to_the_validation_halves_blend(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    monkeypatch.setattr(crossfit, "affordable", lambda *a, **k: [])
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "sigmoid")},
                                   budget=30, blend=3)
    assert "holdout_gain" in model.info["blend"] and model.blend_offset is None


def test_cli_folds_option():
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--folds", "3"])
    assert r.exit_code == 2 and "--folds" in r.output
    for bad in ("0", "21", "x"):
        r = CliRunner().invoke(main, ["train", "--folds", bad])
        assert r.exit_code == 2, r.output
