"""Cross-fitting and the support-weighted stack: folds, out-of-fold predictions, the
stack's fit and its dense/pair forms, the stacked estimator (save/load) and the CLI."""
import copy
import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from npcf import AutoEncoder, load
from npcf.autoencoder import blend, crossfit
from npcf.cli import main
from npcf.errors import NpcfError
from npcf.nn import neighbours

from helpers import CountingBar, split, tiny_ratings

KW = dict(item_based=True, n_epochs=4, layers=(8,), denoise=False, batch_size=16)


def test_folds_cut_every_rating_once_evenly_and_reproducibly():
    f = crossfit.fold_of(103, 5, seed=3)
    assert f.shape == (103,) and set(np.unique(f)) == set(range(5))
    assert np.bincount(f).max() - np.bincount(f).min() <= 1
    np.testing.assert_array_equal(f, crossfit.fold_of(103, 5, seed=3))
    assert not np.array_equal(f, crossfit.fold_of(103, 5, seed=4))
    for bad in (1, 104):
        with pytest.raises(ValueError, match="folds"):
            crossfit.fold_of(103, bad, seed=0)
        with pytest.raises(NpcfError, match="folds"):
            crossfit.fit_folds(AutoEncoder, [KW], tiny_ratings(12, 10, 0.9)[:, :9], folds=bad)
    A = sp.coo_matrix(tiny_ratings())
    fold = crossfit.fold_of(A.nnz, 4, seed=0)
    train, held = crossfit.fold_parts(A, fold, 2)
    assert held.nnz == (fold == 2).sum() and train.nnz + held.nnz == A.nnz
    assert (train.multiply(held)).nnz == 0                      # disjoint
    np.testing.assert_allclose((train + held).toarray(), A.toarray())


def test_out_of_fold_predictions_come_from_the_model_that_did_not_see_them():
    A = tiny_ratings(40, 24, density=0.4, seed=2)
    configs = [dict(KW, activation="relu"), dict(KW, activation="tanh", seed=1)]
    models, P, fold, coo = crossfit.fit_folds(AutoEncoder, configs, A, folds=3, seed=0,
                                               workers=1)
    assert P.shape == (coo.nnz, 2) and len(models) == 2 and len(models[0]) == 3
    for c in range(2):
        for k in range(3):
            train, _ = crossfit.fold_parts(coo, fold, k)
            at = fold == k
            np.testing.assert_allclose(
                P[at, c], models[c][k].predict_at(train, coo.row[at], coo.col[at]), rtol=1e-6)
            assert models[c][k].info["epochs_run"] >= 1
    # forked workers give the same result
    _, P2, fold2, _ = crossfit.fit_folds(AutoEncoder, configs, A, folds=3, seed=0, workers=2)
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
    assert cv.shape == y.shape
    rmse = blend.rmse
    assert rmse(cv, y) < rmse(blend.greedy_cv(P, y, groups), y) - 0.01   # held out
    assert rmse(blend.stack_apply(P, G, coef), y) <= rmse(cv, y) + 0.005
    wa = G @ coef[0]
    assert wa[share > 0.9].mean() > 0.6 > 0.4 > wa[share < 0.3].mean()
    # the held-out predictions are those of a fit without the group: check one group
    D = np.concatenate([P[:, [k]] * G for k in range(2)] + [G], axis=1)
    out = groups != 0
    A = D[out].T @ D[out] / out.sum()
    A[np.diag_indices_from(A)] += lam * np.mean(np.diag(A))
    beta = np.linalg.solve(A, D[out].T @ y[out] / out.sum())
    np.testing.assert_allclose(cv[~out], D[~out] @ beta, rtol=1e-8)
    # blocks give the same fit as one block
    old, blend.BLOCK = blend.BLOCK, 333
    try:
        coef2, _, cv2 = blend.fit_stack(P, G, y, groups)
    finally:
        blend.BLOCK = old
    np.testing.assert_allclose(coef2, coef, rtol=1e-8)
    np.testing.assert_allclose(cv2, cv, rtol=1e-8)
    # an exact candidate: weight 1 on it, nothing else
    exact = np.column_stack([y, b])
    coef1, _, cv1 = blend.fit_stack(exact, G, y, groups, lambdas=(1e-12,))
    assert rmse(cv1, y) < 1e-6
    np.testing.assert_allclose(blend.stack_apply(exact, G, coef1), y, atol=1e-6)


def test_fold_counts_are_each_models_training_counts_scaled():
    coo = sp.coo_matrix(tiny_ratings(30, 20, density=0.4, seed=3))
    fold = crossfit.fold_of(coo.nnz, 4, seed=1)
    n_row, n_col = crossfit.fold_counts(coo, fold, 4)
    for k in range(4):
        train, _ = crossfit.fold_parts(coo, fold, k)
        at = np.flatnonzero(fold == k)
        np.testing.assert_allclose(n_row[at], np.diff(train.indptr)[coo.row[at]] * 4 / 3)
        np.testing.assert_allclose(
            n_col[at], np.bincount(train.indices, minlength=20)[coo.col[at]] * 4 / 3)


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
    assert info["folds"] == 3 and info["kind"] in ("greedy", "support", "support_mass")
    assert 1 <= len(info["configurations"]) <= info["candidates"] <= 4 + 2   # + the biases
    assert info["candidates"] == len(info["out_of_fold_rmse"])          # and neighbours
    assert model.blend_weights.shape == (3 * len(info["configurations"]), blend.MASS_FEATURES
                                         if info["kind"] == "support_mass"
                                         else blend.SUPPORT_FEATURES)
    assert len(model.blend_members) == model.blend_weights.shape[0] - 1
    assert model.info["validation"]["val_rmse"] == pytest.approx(info["cv_rmse"], abs=1e-6)
    assert model.info["validation"]["ratings"] == train.nnz + val.nnz
    assert info["cv_rmse"] == min(v for k, v in info.items() if k.startswith("cv_rmse_"))
    assert "blend" in blend.describe(info) and "folds" in blend.describe(info)
    # the chosen configuration comes first and the returned model is one of its folds
    assert info["configurations"][0] == 0 and model.item_based
    chosen = model.info["tuning"]["chosen"]
    assert all(model.get_params()[k] == (tuple(v) if isinstance(v, list) else v)
               for k, v in chosen.items())
    assert model.scale == (float(min(train.data.min(), val.data.min())),
                           float(max(train.data.max(), val.data.max())))
    assert all(m.scale == model.scale for m in model.blend_members)


def _user_wins(monkeypatch):
    """Make every search below one over both orientations that users win."""
    from npcf.autoencoder import estimator
    real = estimator.select

    def user_wins(base, *args, **kw):
        model, trials = real(base, *args, **dict(kw, space={"activation": ("relu", "tanh")}))
        return model, trials + [dict(trials[0], item_based=True, score=9.0)]
    monkeypatch.setattr(estimator, "select", user_wins)
    return estimator


def test_a_user_based_choice_is_stacked_with_user_based_members_and_exports(
        monkeypatch, tmp_path):
    from npcf.autoencoder.members import NeighbourMember
    from npcf.serving.export import export
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    _user_wins(monkeypatch)
    space = {"item_based": (False, True), "activation": ("relu", "tanh")}
    model = AutoEncoder(**dict(KW, item_based=False)).tune(
        train, val, space=space, fixed=(), budget=60, blend=3, folds=3)
    info = model.info["blend"]
    assert not model.item_based and info["folds"] == 3 and model.blend_weights is not None
    assert all(isinstance(x, NeighbourMember) or not x.item_based
               for x in model.blend_members)
    assert all(not c.get("item_based", False) for c in info["members"])
    # predictions follow the training ratings' item counts, not the rows given
    np.testing.assert_array_equal(model.item_counts, np.diff((train + val).tocsc().indptr))
    A = (train + val).tocsr()
    np.testing.assert_allclose(model.predict(A[:5]), model.predict(A)[:5], rtol=1e-6)
    export(model, tmp_path / "stack.onnx", check=A)       # parity with the NumPy stack


def test_a_user_based_choice_left_unstacked_gets_the_cross_validated_ridge(monkeypatch):
    from npcf.nn.bias import cross_validated_regs
    from npcf.serving.export import check_exportable
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    user = dict(KW, item_based=False)
    estimator = _user_wins(monkeypatch)
    space = {"item_based": (False, True), "activation": ("relu", "tanh")}
    regs = cross_validated_regs(train, seed=0)
    # no time for the stack: the trials kept the given ridge (a stack was possible), so
    # the winner is refitted with the cross-validated one if the validation part prefers
    # it, then blended on validation halves with user-based members only (exportable)
    monkeypatch.setattr(crossfit, "stacked", lambda *a, **k: (None, "no time left"))
    for refit_wins in (True, False):
        monkeypatch.setattr(estimator, "best_score", lambda m, w=refit_wins:
                            (1.0 if isinstance(m.bias_reg, tuple) == w else 2.0))
        got = AutoEncoder(**user).tune(train, val, space=space, fixed=(), budget=60, blend=3,
                                       folds=3)
        assert got.bias_reg == (regs if refit_wins else 5.0)
        assert got.info["tuning"]["bias_reg"] == (list(regs) if refit_wins else None)
        assert got.info["blend"]["crossfit_skipped"] == "no time left"
        assert "holdout_gain" in got.info["blend"]
        check_exportable(got)                        # the seed's train -> eval --generate
        given = AutoEncoder(**dict(user, bias_reg=7.0)).tune(           # a given ridge stays
            train, val, space=space, budget=60, blend=3, folds=3)
        assert given.bias_reg == 7.0 and given.info["tuning"]["bias_reg"] is None
    # --folds 1: the validation halves blend, user-based members only
    got = AutoEncoder(**user).tune(train, val, space=space, fixed=(), budget=60, blend=3,
                                   folds=1)
    assert "holdout_gain" in got.info["blend"] and "crossfit_skipped" not in got.info["blend"]
    assert all(not x.item_based for x in got.blend_members if hasattr(x, "item_based"))
    check_exportable(got)
    monkeypatch.undo()
    # a user-based model asked for: one network with the cross-validated ridge
    for space in ({"activation": ("relu", "tanh")},
                  {"item_based": (False,), "activation": ("relu", "tanh")}):
        single = AutoEncoder(**user).tune(train, val, space=space, fixed=(), budget=60,
                                          blend=3, folds=3)
        assert single.blend_weights is None and not single.item_based
        assert single.info["tuning"]["bias_reg"] is not None
        assert single.bias_reg == tuple(single.info["tuning"]["bias_reg"])
        check_exportable(single)


@pytest.mark.parametrize("item_based", [False, True])
def test_the_bias_model_alone_predicts_its_biases_and_cross_fits(item_based):
    from npcf.nn.bias import UserItemBias
    X = tiny_ratings(30, 20, density=0.4, seed=4)
    kw = dict(KW, item_based=item_based, layers=(1,), bias_reg=(2.0, 10.0))
    m = AutoEncoder(**kw)._fit_bias_only(X, scale=(0.5, 5.0))
    assert m.info["bias_only"] and all(np.all(p == 0) for p in m.network.params.values())
    bias = UserItemBias(2.0, 10.0).fit(X / m.unit)            # users x items: (users, items)
    rows, cols = X.nonzero()
    want = np.clip(bias.predict(X / m.unit, rows, cols) * m.unit, 0.5, 5.0)
    np.testing.assert_allclose(m.predict_at(X, rows, cols), want, atol=1e-5)
    np.testing.assert_allclose(m.predict(X)[rows, cols], want, atol=1e-5)
    coo = X.tocoo()
    fold = crossfit.fold_of(coo.nnz, 3, seed=0)
    models, oof = crossfit.bias_folds(AutoEncoder, kw, coo, fold, dict(scale=(0.5, 5.0)))
    for k in range(3):
        train, _ = crossfit.fold_parts(coo, fold, k)
        at = fold == k
        b = UserItemBias(2.0, 10.0).fit(train / m.unit)
        np.testing.assert_allclose(oof[at], np.clip(b.predict(train / m.unit, coo.row[at],
                                                              coo.col[at]) * m.unit, 0.5, 5.0),
                                   atol=1e-5)
    with pytest.raises(NpcfError, match="residual"):
        AutoEncoder(**dict(kw, residual=False))._fit_bias_only(X)
    with pytest.raises(NpcfError, match="identity"):       # sigmoid(0) would add 0.5
        AutoEncoder(**dict(kw, output_activation="sigmoid"))._fit_bias_only(X)


def test_a_bias_pair_round_trips_and_a_hostile_one_is_refused(tmp_path):
    X = tiny_ratings(30, 20, density=0.4, seed=4)
    m = AutoEncoder(**dict(KW, layers=(1,), bias_reg=(2.0, 10.0)))._fit_bias_only(X)
    m.save(tmp_path)
    back = load(tmp_path)
    assert back.bias_reg == (2.0, 10.0) and back.info["bias_only"]
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    meta = json.loads((tmp_path / "model.json").read_text())
    for bad in ([1.0, 2.0, 3.0], [1.0, -2.0], ["a", 1.0]):
        meta["hyperparameters"]["bias_reg"] = bad
        (tmp_path / "model.json").write_text(json.dumps(meta))
        with pytest.raises(NpcfError, match="bias_reg"):
            load(tmp_path)


def test_a_stack_keeps_the_given_ridge_and_adds_the_bias_model_alone(stacked):
    model, train, val = stacked
    info = model.info["blend"]
    assert model.info["tuning"]["bias_reg"] is None            # the trials kept 5.0
    assert model.bias_reg == 5.0
    from npcf.nn.bias import cross_validated_regs
    A = (train + val).tocsr()
    regs = cross_validated_regs(A, seed=model.seed)
    # the last candidate is the bias model alone: its out-of-fold figure is bias_folds'
    coo = A.tocoo()
    fold = crossfit.fold_of(coo.nnz, 3, model.seed)
    kw = dict(model.get_params(), layers=(1,), bias_reg=regs, ensemble=1)
    _, oof = crossfit.bias_folds(AutoEncoder, kw, coo, fold, dict(scale=model.scale))
    last = info["candidates"] - 1 - ("neighbours_skipped" not in info)   # before them
    assert info["out_of_fold_rmse"][last] == pytest.approx(
        blend.rmse(np.clip(oof, *model.scale), coo.data), abs=1e-6)
    if last in info["configurations"]:
        assert info["members"][info["configurations"].index(last)] == {
            "bias_only": True, "item_based": True, "bias_reg": list(regs)}
        assert "bias model alone" in blend.describe(info)
        biases = [m for m in model.blend_members
                  if isinstance(m, AutoEncoder) and m.info.get("bias_only")]
        assert len(biases) == 3 and all(m.bias_reg == regs and m.layers == (1,)
                                        for m in biases)


def test_the_item_neighbours_cross_fit_as_fold_models(stacked):
    from npcf.nn.bias import cross_validated_regs
    from npcf.nn.neighbours import ItemNeighbours
    model, train, val = stacked
    info = model.info["blend"]
    A = (train + val).tocsr()
    regs = cross_validated_regs(A, seed=model.seed)
    coo = A.tocoo()
    fold = crossfit.fold_of(coo.nnz, 3, model.seed)
    members, oof = crossfit.neighbour_folds(coo, fold, regs, model.scale)
    assert info["out_of_fold_rmse"][-1] == pytest.approx(blend.rmse(oof, coo.data), abs=1e-6)
    assert len(members) == 3 and all(m.scale == model.scale for m in members)
    for k in range(3):                       # fold k's figure comes from the others
        train_k, _ = crossfit.fold_parts(coo, fold, k)
        at = fold == k
        fitted = ItemNeighbours(*regs).fit(train_k)
        assert (members[k].model.similarity != fitted.similarity).nnz == 0
        np.testing.assert_allclose(oof[at], np.clip(fitted.predict_at(
            train_k, coo.row[at], coo.col[at]), *model.scale), rtol=1e-6)
    assert "neighbours_skipped" not in info


def _grouped_ratings(n_users=80, n_items=40, seed=0):
    """Two groups of users and of items: a user rates mostly items of its own group, and
    those higher (who rated what says something about how, as in real data)."""
    rng = np.random.default_rng(seed)
    gu, gi = np.arange(n_users) % 2, np.arange(n_items) % 2
    same = gu[:, None] == gi[None, :]
    rated = rng.random((n_users, n_items)) < np.where(same, 0.45, 0.08)
    rated[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    r = np.where(same, 4.0, 2.0) + rng.normal(0, 0.5, (n_users, n_items))
    return sp.csr_matrix(np.where(rated, np.clip(np.round(r * 2) / 2, 0.5, 5), 0)
                         .astype(np.float32))


def test_the_item_neighbours_are_kept_where_who_rated_what_says_how():
    from npcf.autoencoder.members import NeighbourMember
    train, val = split(_grouped_ratings(), 0.2, seed=2)
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "tanh")},
                                   blend=2, folds=3)
    info = model.info["blend"]
    assert info["candidates"] - 1 in info["configurations"]
    kept = [m for m in model.blend_members if isinstance(m, NeighbourMember)]
    assert len(kept) == 3 and info["members"][-1] == kept[0].describe()
    assert [m.model.damping for m in kept] == [neighbours.DAMPING] * 3
    assert "item neighbours" in blend.describe(info)
    # the neighbours alone beat the bias model alone out of fold
    assert info["out_of_fold_rmse"][-1] < info["out_of_fold_rmse"][-2]


def test_weights_follow_the_similarity_mass_where_that_cross_validates_best(tmp_path):
    from npcf.autoencoder.members import NeighbourMember
    train, val = split(_grouped_ratings(), 0.2, seed=2)
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "tanh")},
                                   blend=2, folds=3)
    info = model.info["blend"]
    # on these data who rated what says how: the mass stack wins the cross-validation
    figures = {k: v for k, v in info.items() if k.startswith("cv_rmse_")}
    assert info["kind"] == "support_mass" and info["cv_rmse"] == min(figures.values()) \
        in (info["cv_rmse_support_mass"], info.get("cv_rmse_support_mass_every"))
    assert info["cv_rmse"] < min(info["cv_rmse_support"], info["cv_rmse_greedy"])
    assert "similarity mass" in blend.describe(info)
    assert model.blend_weights.shape[1] == blend.MASS_FEATURES == model.blend_offset.size
    X = (train + val).tocsr()
    assert sum(isinstance(m, NeighbourMember) for m in model.blend_members) == 3  # folds
    want = _stack_formula(model, X)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-5, atol=1e-5)
    rows, cols = val.nonzero()
    np.testing.assert_allclose(model.predict_at(X, rows, cols), want[rows, cols],
                               rtol=1e-5, atol=1e-5)
    model.save(tmp_path)
    np.testing.assert_array_equal(load(tmp_path).predict(X), model.predict(X))
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["blend"]["offset"] = meta["blend"]["offset"][:4]     # one number short
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="blend offset must hold 5 numbers"):
        load(tmp_path)


def test_the_stack_over_every_candidate_wins_where_the_greedy_step_drops_one_it_needs():
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 1.0, 3000)
    err = rng.normal(0.0, 0.5, 3000)
    # the last candidate alone is poor and spoils a mean, but it knows the first's error
    P = np.c_[y + err, y + rng.normal(0.0, 0.8, 3000), 3.0 + err]
    fold = crossfit.fold_of(y.size, 4, 0)
    G = blend.support_basis(np.full(y.size, 5), np.full(y.size, 7))
    keep, kind, coef, lam, cv, design, figures = crossfit.choose_stack(P, y, fold, G)
    assert list(keep) == [0, 1, 2] and kind == "support" and coef.shape == (4, 4)
    assert figures["support_every"] == min(figures.values()) < 0.01 < figures["greedy"]
    assert blend.rmse(cv, y) == figures["support_every"] and design is G
    # exact candidates: nothing beats constant weights, the simplest
    same = np.c_[y, y]
    keep, kind, coef, lam, cv, design, figures = crossfit.choose_stack(same, y, fold, G)
    assert list(keep) == [0] and kind == "greedy" and lam is None
    np.testing.assert_array_equal(coef[:, 1:], 0)
    # with the neighbours (the last candidate) out of the greedy's set, their mass is
    # tried over every candidate only
    keep, kind, coef, lam, cv, design, figures = crossfit.choose_stack(
        P, y, fold, G, mass=rng.random(y.size) * 3)
    assert "support_mass_every" in figures and "support_mass" not in figures


def test_the_out_of_fold_mass_comes_from_the_member_without_the_fold():
    from npcf.autoencoder.members import NeighbourMember
    from npcf.nn.neighbours import ItemNeighbours
    coo = _grouped_ratings(40, 20, seed=3).tocoo()
    fold = crossfit.fold_of(coo.nnz, 4, 0)
    members = [NeighbourMember(ItemNeighbours(2.0, 2.0).fit(crossfit.fold_parts(
        coo, fold, k)[0]), (0.5, 5.0)) for k in range(4)]
    got = crossfit.oof_mass(members, coo, fold)
    for k in range(4):
        train, _ = crossfit.fold_parts(coo, fold, k)
        at = fold == k
        want = members[k].model.mass(train)[coo.row[at], coo.col[at]] * 4 / 3
        np.testing.assert_allclose(got[at], want, rtol=1e-12)


def test_mass_weights_without_a_neighbour_member_are_refused(tmp_path):
    from helpers import user_stack
    model = user_stack(mass=True)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    with np.load(tmp_path / "model.npz") as z:
        arrays = {k: z[k] for k in z.files if not k.startswith(("blend2/", "blend3/"))}
    del meta["blend"]["members"][2:]
    meta["blend"]["weights"] = meta["blend"]["weights"][:3]
    np.savez(tmp_path / "model.npz", **arrays)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="similarity mass, but no blend member is item "
                                        "neighbours"):
        load(tmp_path)


def test_neighbour_folds_skip_what_would_take_too_long(monkeypatch):
    import time
    coo = tiny_ratings(30, 20, density=0.4, seed=4).tocoo()
    fold = crossfit.fold_of(coo.nnz, 3, seed=0)
    found = crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0))
    assert len(found[0]) == 3 and found[1].shape == (coo.nnz,)
    assert crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0),
                                    deadline=time.perf_counter() - 1) is None
    fits = []
    monkeypatch.setattr(crossfit, "ItemNeighbours", lambda *a: fits.append(a))
    assert crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0),
                                    deadline=time.perf_counter() - 1) is None
    assert fits == []                        # a passed deadline fits nothing
    monkeypatch.undo()
    clock = iter(np.arange(0.0, 100.0, 10.0))     # each fit seems to take 10 s
    monkeypatch.setattr(crossfit.time, "perf_counter", lambda: float(next(clock)))
    assert crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0), deadline=25.0) is None
    clock = iter(np.arange(0.0, 100.0, 10.0))
    assert crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0), deadline=75.0) \
        is not None                          # the last fold's end is never judged
    monkeypatch.setattr(crossfit, "NEIGHBOUR_MAX_WORK", 20 ** 2)
    assert crossfit.neighbour_folds(coo, fold, (5.0, 5.0), (0.5, 5.0)) is None


def test_a_neighbour_member_round_trips_and_hostile_parts_are_refused(stacked, tmp_path):
    from npcf.autoencoder.members import NeighbourMember
    from npcf.nn.neighbours import ItemNeighbours
    model, train, val = stacked
    X = (train + val).tocsr()
    member = NeighbourMember(ItemNeighbours(2.0, 5.0).fit(X), model.scale)
    arrays, meta = member.parts()
    back = NeighbourMember.from_parts(json.loads(json.dumps(meta)), arrays, X.shape[1],
                                      model.scale, "f: blend9/")
    np.testing.assert_array_equal(back._predict_one(X), member._predict_one(X))
    rows, cols = val.nonzero()
    np.testing.assert_array_equal(back._predict_one_at(X, rows, cols),
                                  member._predict_one(X)[rows, cols])
    # stored in half the bytes (exactly: the similarities are held at float16 precision);
    # files written with float32 / int32 arrays load and predict the same
    assert arrays["similarity/data"].dtype == np.float16
    assert arrays["similarity/indices"].dtype == np.uint16
    wide = dict(arrays, **{"similarity/data": arrays["similarity/data"].astype(np.float32),
                           "similarity/indices": arrays["similarity/indices"].astype(np.int32)})
    old = NeighbourMember.from_parts(meta, wide, X.shape[1], model.scale, "f: blend9/")
    np.testing.assert_array_equal(old._predict_one(X), member._predict_one(X))
    # the bias priors' raters' biases are saved under a kind of its own (an npcf from
    # before them refuses it); a member saved before them (no rater_shrinkage, no
    # rater_bias) loads over the plain bias model it was fitted with
    assert meta["kind"] == "item_neighbours_priors" and meta["rater_shrinkage"] == 5.0
    assert arrays["baseline/rater_bias"].shape == (X.shape[1],)
    with pytest.raises(KeyError):
        NeighbourMember.from_parts({k: v for k, v in meta.items() if k != "rater_shrinkage"},
                                   arrays, X.shape[1], model.scale, "f/")
    plain = NeighbourMember(ItemNeighbours(2.0, 5.0, priors=False).fit(X), model.scale)
    plain_arrays, plain_meta = plain.parts()
    assert plain_meta["kind"] == "item_neighbours"
    assert "rater_shrinkage" not in plain_meta and "baseline/rater_bias" not in plain_arrays
    before = NeighbourMember.from_parts(plain_meta, plain_arrays, X.shape[1], model.scale, "f/")
    np.testing.assert_array_equal(before._predict_one(X), plain._predict_one(X))
    assert np.any(before._predict_one(X) != member._predict_one(X))
    S = arrays["similarity/data"]
    dup = arrays["similarity/indices"].copy()
    dup[1] = dup[0]
    for field, bad in (("mu", float("nan")), ("mu", 1e300), ("bias_reg", [1.0, -1.0]),
                       ("bias_reg", 5.0), ("bias_reg", [1.0]), ("neighbours", -5),
                       ("neighbours", "many"), ("damping", -1.0), ("damping", None),
                       ("scale", [5.0, 0.5]), ("scale", [-1000.0, 1000.0]),
                       ("rater_shrinkage", 0.0), ("rater_shrinkage", "x"),
                       ("rater_shrinkage", float("inf")), ("rater_shrinkage", True),
                       ("rater_shrinkage", 10 ** 400), ("mu", 10 ** 400)):
        with pytest.raises(ValueError, match=f"neighbour member's {field}"):
            NeighbourMember.from_parts(dict(meta, **{field: bad}), arrays, X.shape[1],
                                       model.scale, "f: blend9/")
    for name, bad, what in (
            ("similarity/data", -S, "similarity/data"),
            ("similarity/data", np.full(S.shape, 1e300), "similarity/data"),
            ("similarity/data", np.full(S.shape, np.nan), "similarity/data"),
            ("similarity/indices", arrays["similarity/indices"].astype(np.int64) + 10 ** 6,
             "similarity"),
            ("similarity/indices", np.full(S.shape, 65535, np.uint16), "similarity"),
            ("similarity/indices", dup, "similarity: unsorted or repeated"),
            ("similarity/indptr", arrays["similarity/indptr"][:-1], "similarity"),
            ("similarity/indptr", np.r_[arrays["similarity/indptr"][:-1].astype(np.uint64),
                                        2 ** 63 + 1], "similarity/indptr: not row offsets"),
            ("similarity/indptr", arrays["similarity/indptr"][::-1].astype(np.uint32),
             "similarity/indptr: not row offsets"),
            ("baseline/col_bias", np.zeros(3, np.float32), "baseline/col_bias"),
            ("baseline/col_bias", np.full(X.shape[1], 1e300), "baseline/col_bias"),
            ("baseline/rater_bias", np.zeros(3, np.float32), "baseline/rater_bias: not"),
            ("baseline/rater_bias", np.full(X.shape[1], np.nan, np.float32),
             "baseline/rater_bias: a bias beyond")):
        with pytest.raises(NpcfError, match=f"^f: blend9/{what}"):
            NeighbourMember.from_parts(meta, dict(arrays, **{name: bad}), X.shape[1],
                                       model.scale, "f: blend9/")
    for name in ("similarity/indptr", "baseline/rater_bias"):
        with pytest.raises(NpcfError, match=f"^f: blend9/{name}: missing"):
            NeighbourMember.from_parts(meta, {k: v for k, v in arrays.items() if k != name},
                                       X.shape[1], model.scale, "f: blend9/")
    with pytest.raises(NpcfError, match="more than 1 neighbours"):
        NeighbourMember.from_parts(dict(meta, neighbours=1), arrays, X.shape[1],
                                   model.scale, "f: blend9/")
    # a stacked model holding one saves, loads and predicts the same
    model = copy.copy(model)                     # the fixture's own stays as it was
    model.blend_members = [*model.blend_members, member]
    model.blend_weights = np.r_[model.blend_weights, [[0.1, 0.0, 0.0, 0.0]]]
    model.save(tmp_path)
    loaded = load(tmp_path)
    assert isinstance(loaded.blend_members[-1], NeighbourMember)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    raw = json.loads((tmp_path / "model.json").read_text())
    raw["blend"]["members"][-1]["kind"] = "something_else"
    (tmp_path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(NpcfError, match="model.json.*unknown kind"):
        load(tmp_path)
    raw["blend"]["members"][-1]["kind"] = "item_neighbours_priors"
    raw["blend"]["members"][-1]["damping"] = "x"
    (tmp_path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(NpcfError, match="model.json.*neighbour member's damping"):
        load(tmp_path)
    # a member saved with shrunk residual correlations (npcf 05fe064) predicts from the
    # similarities it saved: its shrinkage is not needed
    raw["blend"]["members"][-1]["damping"] = member.model.damping
    raw["blend"]["members"][-1]["shrinkage"] = 100.0
    (tmp_path / "model.json").write_text(json.dumps(raw))
    np.testing.assert_array_equal(load(tmp_path).predict(X), model.predict(X))
    raw["blend"]["members"][-1] = "a string"
    (tmp_path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(NpcfError, match="model.json.*not a JSON object"):
        load(tmp_path)


def test_candidates_add_the_other_orientation_and_residual_only_when_searched():
    a = AutoEncoder(**KW).fit(tiny_ratings())
    b = AutoEncoder(**dict(KW, activation="tanh")).fit(tiny_ratings())
    u = AutoEncoder(**dict(KW, item_based=False)).fit(tiny_ratings())
    base = AutoEncoder(n_epochs=9)
    pool = [(0.9, {}, a), (0.91, {}, u), (0.92, {}, b)]
    got = crossfit._candidates(a, pool, base, 3, other_orientation=True, counterpart=False)
    assert [c["item_based"] for c in got] == [True, True, False]
    assert got[0]["activation"] == a.activation and all(c["n_epochs"] == 9 for c in got)
    got = crossfit._candidates(a, pool, base, 3, other_orientation=False, counterpart=False)
    assert [c["item_based"] for c in got] == [True, True]
    got = crossfit._candidates(a, [(0.9, {}, a)], base, 3, other_orientation=True,
                               counterpart=False)
    assert [c["item_based"] for c in got] == [True, False]          # base's defaults there
    # the residual's counterpart: the chosen configuration flipped when the pool has none
    got = crossfit._candidates(a, pool, base, 4, other_orientation=True)
    assert [(c["item_based"], c["residual"]) for c in got] == \
        [(True, True), (True, False), (True, True), (False, True)]
    assert {k: v for k, v in got[1].items() if k != "residual"} == \
        {k: v for k, v in got[0].items() if k != "residual"}
    # ... or the pool's best of that kind, and none when a candidate already has it
    plain = AutoEncoder(**dict(KW, residual=False, activation="sigmoid")).fit(tiny_ratings())
    got = crossfit._candidates(a, pool + [(0.95, {}, plain)], base, 3,
                               other_orientation=False)
    assert [(kw["activation"], kw["residual"]) for kw in got] == \
        [(None, True), ("sigmoid", False), ("tanh", True)]
    got = crossfit._candidates(a, [(0.9, {}, a), (0.95, {}, plain)], base, 4,
                               other_orientation=False)
    assert [kw["residual"] for kw in got] == [True, False]
    # the most different first (a budget may fit only a prefix): the chosen, the
    # residual's counterpart, the next best, the other orientation, the rest
    c = AutoEncoder(**dict(KW, activation="selu")).fit(tiny_ratings())
    order = [(0.9, {}, a), (0.91, {}, b), (0.92, {}, c), (0.93, {}, plain), (0.94, {}, u)]
    got = crossfit._candidates(a, order, base, 6, other_orientation=True)
    assert [(kw["activation"], kw["residual"], kw["item_based"]) for kw in got] == [
        (None, True, True), ("sigmoid", False, True), ("tanh", True, True),
        (None, True, False), ("selu", True, True)]
    got = crossfit._candidates(a, order[:3] + order[4:], base, 5, other_orientation=True)
    assert [(kw["activation"], kw["residual"], kw["item_based"]) for kw in got] == [
        (None, True, True), (None, False, True), ("tanh", True, True),
        (None, True, False), ("selu", True, True)]
    # the chosen model trained again in full (another object, the same configuration):
    # its search run in the pool takes no candidate's place
    again = AutoEncoder(**KW).fit(tiny_ratings())
    for size in (3, 6):
        assert crossfit._candidates(again, order, base, size, other_orientation=True) == \
            crossfit._candidates(a, order, base, size, other_orientation=True)


def _stack_formula(model, X):
    """A stacked model's clipped predictions for CSR ``X``, written from the formula: each
    member's clipped predictions weighed by its coefficients over the pair's features
    ``(1, c, r, r c)`` (and ``log(1 + mass)``, the neighbour members' mean similarity
    mass, with five), plus the offset's."""
    from npcf.autoencoder.members import NeighbourMember
    R, C = blend.count_bases(np.diff(X.indptr), np.bincount(X.indices, minlength=X.shape[1]))
    kept = [m for m in model.blend_members if isinstance(m, NeighbourMember)]
    log_mass = np.log1p(np.mean([m.model.mass(X) for m in kept], axis=0)) if kept else 0

    def surface(coef):
        out = blend.surface(coef[:4], R, C)
        return out + coef[4] * log_mass if coef.size == 5 else out
    want = surface(model.blend_offset)
    for coef, m in zip(model.blend_weights, [model, *model.blend_members]):
        want = want + surface(coef) * m._predict_one(X)
    return np.clip(want, *model.scale)


def test_a_stacked_model_predicts_its_formula_and_round_trips(stacked, tmp_path):
    model, train, val = stacked
    X = (train + val).tocsr()
    want = _stack_formula(model, X)
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
        with pytest.raises(NpcfError, match="blend offset"):
            load(tmp_path)


def test_folds_one_keeps_the_validation_halves_blend():
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=30, blend=3, folds=1)
    assert "holdout_gain" in model.info["blend"] and model.blend_offset is None
    with pytest.raises(ValueError, match="folds"):
        AutoEncoder(**KW).tune(train, val, space=space, folds=-1)


@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_configurations_the_time_left_allows_are_cross_fitted(workers):
    import time
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    a, b, c = (dict(KW, activation=act) for act in ("relu", "tanh", "selu"))

    def fitted(expected, seconds):
        models, P, _, _ = crossfit.fit_folds(
            AutoEncoder, [a, b, c], m, 2, workers=workers,
            deadline=None if seconds is None else time.perf_counter() + seconds,
            expected=expected)
        assert P.shape[1] == len(models) == 3
        for col, f in enumerate(models):      # skipped: no models, NaN predictions
            assert (f is None) == bool(np.isnan(P[:, col]).all())
            assert f is None or (None not in f and not np.isnan(P[:, col]).any())
        return [f and f[0].activation for f in models]
    assert fitted([1.0, 1.0, 1.0], None) == ["relu", "tanh", "selu"]   # no deadline
    assert fitted([1.0, 1.0, 1.0], 1000.0) == ["relu", "tanh", "selu"]
    # a configuration that would overrun is skipped; a cheaper one after it is not
    assert fitted([1.0, 1e9, 1.0], 1000.0) == ["relu", None, "selu"]
    assert fitted([1.0, 1.0, 1e9], 1000.0) == ["relu", "tanh", None]
    # the first is fitted whatever the time left
    assert fitted([1e9, 1.0, 1.0], -1.0) == ["relu", None, None]
    bars = []

    def bar(total, label, info=None):
        bars.append(CountingBar(total, label))
        return bars[-1]
    crossfit.fit_folds(AutoEncoder, [a, b, c], m, 2, workers=workers, progress=bar,
                       deadline=time.perf_counter() + 1000.0, expected=[1.0, 1e9, 1.0])
    assert bars[0].done == bars[0].total == 6                     # skipped fits end it


def test_fit_seconds_expect_each_configurations_fold_fit():
    a, b, c = (dict(KW, activation=act, residual=True) for act in ("relu", "tanh", "selu"))
    trials = [dict(activation="relu", residual=True, epochs=9, epochs_run=5, seconds=4.0),
              dict(activation="tanh", residual=True, epochs=3, epochs_run=1, seconds=2.0)]
    assert crossfit.fit_seconds([a, b, c], trials, 40) == [4.0, 2.0, 4.0]
    assert crossfit.fit_seconds([b, c], trials, 40) == [2.0, 2.0]   # never trained
    # the residual's counterpart costs what the configuration it flips cost
    assert crossfit.fit_seconds([a, dict(b, residual=False)], trials, 40) == [4.0, 2.0]
    assert crossfit.fit_seconds([], trials, 40) == []


def test_the_pace_of_the_fits_done_scales_the_expected_seconds(monkeypatch):
    import time
    m = tiny_ratings(30, 12, density=0.5, seed=3)
    a, b = (dict(KW, activation=act) for act in ("relu", "tanh"))
    reported = []                         # seconds each (instant) fit says it took

    def instant(kw, k, data=None):
        return "model", np.zeros(int(np.sum(data[2] == k))), reported[0]
    monkeypatch.setattr(crossfit, "_fit_fold", instant)

    def started(seconds_per_fit, left):
        reported[:] = [seconds_per_fit]
        models, _, _, _ = crossfit.fit_folds(
            AutoEncoder, [a, b], m, 2, workers=1, expected=[1.0, 1.0],
            deadline=time.perf_counter() + left)
        return models[1] is not None
    # b's 2 fits, one at a time, expected 1 s each: 2 s at the expected pace
    assert started(1.0, 2.5) and not started(1.0, 1.5)
    # the fits done took 10x / 0.1x their estimate: so will b's
    assert not started(10.0, 6.0) and started(0.1, 0.5)
    with pytest.raises(ValueError, match="deadline needs"):
        crossfit.fit_folds(AutoEncoder, [a, b], m, 2, workers=1, deadline=0.0)
    with pytest.raises(ValueError, match="deadline needs"):
        crossfit.fit_folds(AutoEncoder, [a, b], m, 2, workers=1, deadline=0.0,
                           expected=[1.0])


def test_the_search_leaves_part_of_the_budget_to_cross_fitting(monkeypatch):
    from npcf.autoencoder import estimator
    seen = []
    real = estimator.select

    def spy(*args, budget=None, **kw):
        seen.append(budget)
        return real(*args, budget=budget, **kw)
    monkeypatch.setattr(estimator, "select", spy)
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=30, blend=2, folds=2)
    assert model.info["tuning"]["budget"] == 30
    assert model.info["tuning"]["search_budget"] == 30 * estimator.SEARCH_SHARE
    AutoEncoder(**KW).tune(train, val, space=space, budget=30, blend=1)     # never stacked
    AutoEncoder(**KW).tune(train, val, space=space, blend=2, folds=2)       # no budget
    assert seen == [30 * estimator.SEARCH_SHARE, 30, None]


def test_the_neighbours_go_first_then_the_chosen_configurations_folds(monkeypatch):
    import time
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    a = AutoEncoder(**KW).fit(train, val)
    calls, real_neighbours, real_folds = [], crossfit.neighbour_folds, crossfit.fit_folds
    estimates = []                        # seconds of the chosen's fit, then the others'
    monkeypatch.setattr(crossfit, "fit_seconds", lambda configs, *a: estimates[:1] + [
        estimates[1]] * (len(configs) - 1))

    def neighbours(*args, **kw):
        calls.append(("neighbours", args[4]))
        return real_neighbours(*args[:4], None, **kw)

    def folds(cls, configs, *args, **kw):
        out = real_folds(cls, configs, *args, **kw)
        calls.append(("networks", sum(f is not None for f in out[0])))
        return out
    monkeypatch.setattr(crossfit, "neighbour_folds", neighbours)
    monkeypatch.setattr(crossfit, "fit_folds", folds)
    estimates[:] = [10.0, 10.0]
    before = time.perf_counter()
    model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val, folds=2, size=2,
                                  trials=[], seconds=1000.0)
    after = time.perf_counter()
    assert why is None and [c[0] for c in calls] == ["neighbours", "networks"]
    # the neighbours may use the whole budget: the chosen configuration's folds follow
    # in any case
    assert before + 1000.0 <= calls[0][1] <= after + 1000.0
    n_networks = calls[1][1]
    assert n_networks >= 2 and "neighbours_skipped" not in model.info["blend"]
    assert model.info["blend"]["candidates"] == n_networks + 2    # the biases, neighbours
    assert "over_budget" not in model.info["blend"]
    assert "within the budget" not in blend.describe(model.info["blend"])
    # no time left after the neighbours: the chosen configuration's folds all the same
    calls.clear()
    estimates[:] = [10.0, 1e9]
    model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val, folds=2, size=2,
                                  trials=[], seconds=1000.0)
    assert why is None and calls[1] == ("networks", 1)
    assert model.info["blend"]["candidates"] == 3
    assert model.info["blend"]["over_budget"] == n_networks - 1     # said, and printed
    assert f"; {n_networks - 1} more not fitted within the budget)" in \
        blend.describe(model.info["blend"])


def test_too_few_ratings_per_fold_fall_back_to_the_validation_halves_blend():
    m = tiny_ratings(12, 10, density=0.5, seed=1)
    train, val = split(m, 0.2, seed=2)
    assert train.nnz + val.nnz < crossfit.MIN_PER_FOLD * 5
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "sigmoid")},
                                   blend=3, folds=5)
    assert model.blend_offset is None and "folds" not in model.info.get("blend", {})
    assert "per fold" in model.info["blend"]["crossfit_skipped"]
    assert blend.describe(model.info["blend"]).startswith("cross-fitting skipped (fewer than")


def test_no_time_left_falls_back_to_the_validation_halves_blend(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    monkeypatch.setattr(crossfit, "fit_seconds", lambda configs, *a: [1e9] * len(configs))
    model = AutoEncoder(**KW).tune(train, val, space={"activation": ("relu", "sigmoid")},
                                   budget=30, blend=3)
    assert "holdout_gain" in model.info["blend"] and model.blend_offset is None
    assert "of the budget left" in model.info["blend"]["crossfit_skipped"]
    assert blend.describe(model.info["blend"]).startswith("cross-fitting skipped (")


def test_fit_folds_take_a_given_cut_and_refuse_a_bad_one():
    m = tiny_ratings(30, 12, density=0.5, seed=3).tocoo()
    cut = np.arange(m.nnz) % 3
    _, _, fold, _ = crossfit.fit_folds(AutoEncoder, [KW], m, 3, fold=cut)
    np.testing.assert_array_equal(fold, cut)
    for bad in (cut[:-1], cut + 1, cut - 1):
        with pytest.raises(NpcfError, match="fold must give each"):
            crossfit.fit_folds(AutoEncoder, [KW], m, 3, fold=bad)


def test_shared_pairs_and_failing_folds_fall_back(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    a = AutoEncoder(**KW).fit(train, val)
    model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, train)       # overlap
    assert model is None and "shares ratings" in why

    def fail(*args, **kw):
        raise NpcfError("a fold with nothing to learn")
    monkeypatch.setattr(crossfit, "fit_folds", fail)
    model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val)
    assert model is None and why == "a fold fit failed: a fold with nothing to learn"


def test_hostile_blend_metadata_is_refused(stacked, tmp_path):
    model = stacked[0]
    model.save(tmp_path)
    good = json.loads((tmp_path / "model.json").read_text())
    n = len(good["blend"]["weights"])
    for field, bad in (("offset", [True, 0, 0, 0]), ("offset", ["1", 0, 0, 0]),
                       ("offset", [1e300, 0, 0, 0]), ("weights", [[0.1] * 4] * (n - 1)),
                       ("weights", [[0.1] * 3] * n), ("weights", [[1e9, 0, 0, 0]] * n),
                       ("weights", 0.5), ("weights", [[[0.1] * 4]] * n),
                       ("weights", [[0.1] * 6] * n)):
        meta = json.loads(json.dumps(good))
        meta["blend"][field] = bad
        (tmp_path / "model.json").write_text(json.dumps(meta))
        with pytest.raises(NpcfError, match="blend (weights|offset)"):
            load(tmp_path)
    meta = dict(good, blend="x")
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="model.json: .*blend is not a JSON object"):
        load(tmp_path)
    meta = json.loads(json.dumps(good))                    # ragged weight rows
    meta["blend"]["weights"][1] = meta["blend"]["weights"][1][:3]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="blend weights do not match its members"):
        load(tmp_path)
    meta = json.loads(json.dumps(good))                    # a member's field: named
    del meta["blend"]["members"][1]["architecture"]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="blend member 1: missing 'architecture'"):
        load(tmp_path)
    meta = json.loads(json.dumps(good))                    # the blend dropped: its
    meta["blend"] = None                                   # members' arrays are stray
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="blend0.*arrays of no blend member model.json lists"):
        load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(good))
    assert load(tmp_path) is not None
    with np.load(tmp_path / "model.npz") as f:              # ... or beside a blend
        arrays = dict(f)
    np.savez(tmp_path / "model.npz", **arrays, **{"blend99/param/W0": arrays["param/W0"]})
    with pytest.raises(NpcfError, match="blend99: arrays of no blend member model.json lists"):
        load(tmp_path)


def test_non_finite_or_misshapen_weights_are_refused_naming_the_member(stacked, tmp_path):
    model = stacked[0]
    model.save(tmp_path)
    with np.load(tmp_path / "model.npz") as z:
        good = {k: z[k] for k in z.files}
    member = next(k.split("/")[0] for k in good if k.startswith("blend") and "/param/W0" in k)
    for name, bad, what in (
            ("param/W0", np.full_like(good["param/W0"], np.nan), "param/W0: not all finite"),
            (f"{member}/param/W0", np.full_like(good[f"{member}/param/W0"], np.inf),
             f"{member}/param/W0: not all finite"),
            (f"{member}/param/W0", good[f"{member}/param/W0"][:, :1],
             f"{member}/: .*wrong shape"),
            ("baseline/col_bias", np.full_like(good["baseline/col_bias"], np.nan),
             "baseline/col_bias: not all finite")):
        assert name in good
        np.savez(tmp_path / "model.npz", **dict(good, **{name: bad}))
        with pytest.raises(NpcfError, match=what):
            load(tmp_path)


def test_cli_folds_option():
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--folds", "3"])
    assert r.exit_code == 2 and "--folds" in r.output
    for extra in (["--ensemble", "2"], ["--user_based"], ["--loss", "multinomial"]):
        for opt in ("--folds", "--blend"):
            r = CliRunner().invoke(main, ["train", opt, "3", *extra])
            assert r.exit_code == 2 and opt in r.output and "never blended" in r.output
    for bad in ("0", "21", "x"):
        r = CliRunner().invoke(main, ["train", "--folds", bad])
        assert r.exit_code == 2, r.output


@pytest.mark.parametrize("workers", [1, 2])
def test_work_beside_the_fold_fits_starts_once_after_the_workers_are_forked(
        workers, monkeypatch):
    import contextlib

    from npcf.autoencoder import selection
    A = sp.coo_matrix(tiny_ratings())
    pools, seen, real = [], [], selection.trial_pool

    @contextlib.contextmanager
    def capturing(n, data):
        with real(n, data) as pool:
            pools.append(pool)
            yield pool
    monkeypatch.setattr(selection, "trial_pool", capturing)

    def started(pooled):       # with a pool, every worker process exists by now
        pool = pools[-1]
        seen.append((pooled, 0 if pool is None else len(pool._processes or {})))
    crossfit.fit_folds(AutoEncoder, [KW, dict(KW, layers=(4,))], A, folds=3,
                       workers=workers, started=started)
    n = selection.usable_workers(workers, 6)
    assert seen == ([(True, n)] if n > 1 else [(False, 0)])


def test_the_neighbours_run_beside_the_networks_and_stop_when_those_fail(monkeypatch):
    import threading
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    a = AutoEncoder(**KW).fit(train, val)
    real_neighbours, threads, stops = crossfit.neighbour_folds, [], []

    deadlines = []

    def neighbours(*args, stop=None, **kw):
        threads.append(threading.current_thread() is not threading.main_thread())
        stops.append(stop)
        deadlines.append(args[4] if len(args) > 4 else kw.get("deadline"))
        return real_neighbours(*args, stop=stop, **kw)
    monkeypatch.setattr(crossfit, "neighbour_folds", neighbours)
    from npcf.autoencoder import selection
    from npcf.utils import parallel
    if selection.usable_workers(2, 2) < 2:
        pytest.skip("needs two cores and fork for worker processes")
    with parallel.using(2):
        model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val, folds=2,
                                      size=2, trials=[], seconds=1000.0)
    assert why is None and threads == [True]                 # in a thread of its own
    # once started (before the deadline) they finish: the networks beside them slow them,
    # and a pace check would drop the strongest member
    assert deadlines == [None]
    assert "neighbours_skipped" not in model.info["blend"]      # fitted, a candidate
    # its fold fit stopped sooner; the model reports the patience it was asked for
    assert model.patience == a.patience > crossfit.FOLD_PATIENCE

    # one worker (--threads 1): the neighbours first, in this thread, one fit at a time
    with parallel.using(1):
        model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val, folds=2,
                                      size=2, trials=[], seconds=1000.0)
    assert why is None and threads == [True, False]
    assert deadlines[1] is not None          # alone, the pace check applies as before

    def failing(*args, started=None, **kw):      # the networks fail once under way
        started(True)
        raise NpcfError("no fold to stop early on")
    monkeypatch.setattr(crossfit, "fit_folds", failing)
    model, why = crossfit.stacked(a, [], AutoEncoder(**KW), train, val, folds=2, size=2,
                                  trials=[], seconds=1000.0)
    assert model is None and "a fold fit failed" in why
    assert len(stops) == 3 and stops[2] is not stops[0] and stops[2].is_set()
    coo = sp.coo_matrix(m)
    assert crossfit.neighbour_folds(coo, crossfit.fold_of(coo.nnz, 2, 0), (5.0, 5.0),
                                    (0.5, 5.0), stop=stops[-1]) is None


def test_fold_fits_stop_early_sooner_than_the_search_and_never_when_it_is_off():
    a = AutoEncoder(**KW).fit(tiny_ratings())
    flipped = AutoEncoder(**dict(KW, residual=False, patience=0)).fit(tiny_ratings())
    pool = [(0.9, {}, a), (0.91, {}, flipped)]
    got = crossfit._candidates(a, pool, AutoEncoder(n_epochs=9), 2, other_orientation=False)
    assert a.patience > crossfit.FOLD_PATIENCE
    assert [c["patience"] for c in got] == [crossfit.FOLD_PATIENCE, 0]
    assert all(c["n_epochs"] == 9 for c in got)


def test_the_validation_halves_blend_weighs_the_item_neighbours_too(tmp_path, monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    fitted = []
    real = crossfit.holdout_neighbours

    def counted(*a, **k):
        fitted.append(real(*a, **k))
        regs.append(a[3])
        return fitted[-1]
    regs: list = []
    monkeypatch.setattr(crossfit, "holdout_neighbours", counted)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=30, blend=3, folds=1)
    assert len(fitted) == 1 and fitted[0] is not None
    # the search's cross-validated ridge strengths, not a second cross-validation
    assert regs == [tuple(model.info["tuning"]["bias_reg"])]
    assert (fitted[0].model.reg_row, fitted[0].model.reg_col) == regs[0]
    assert model.info["blend"]["candidates"] == 3          # chosen, one network, neighbours
    # a neighbour member in a constant-weight blend predicts and saves like the others
    model.blend_members = [fitted[0]]
    model.blend_weights, model.blend_offset = np.array([0.25, 0.75]), None
    X = train + val
    rows, cols = sp.coo_matrix(val).row, sp.coo_matrix(val).col
    own = model._predict_one_at(model._check(X), rows, cols)
    theirs = fitted[0]._predict_one_at(sp.csr_matrix(X), rows, cols)
    np.testing.assert_allclose(model.predict_at(X, rows, cols),
                               np.clip(0.25 * own + 0.75 * theirs, *model.scale), rtol=1e-5)
    model.save(tmp_path)
    back = load(tmp_path)
    assert isinstance(back.blend_members[0], type(fitted[0]))
    np.testing.assert_array_equal(back.predict_at(X, rows, cols), model.predict_at(X, rows, cols))
    np.testing.assert_allclose(back.predict(X)[rows, cols], model.predict_at(X, rows, cols),
                               rtol=1e-5, atol=1e-5)


def test_the_validation_halves_blend_fits_no_neighbours_without_time(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    calls = []
    monkeypatch.setattr(crossfit, "holdout_neighbours", lambda *a, **k: calls.append(a))
    space = {"activation": ("relu", "sigmoid")}
    AutoEncoder(**KW).tune(train, val, space=space, budget=1e-9, blend=3, folds=1)
    assert calls == []                                   # the search used the budget up
    AutoEncoder(**KW).tune(train, val, space=space, blend=3, folds=1)
    assert len(calls) == 1


def test_holdout_neighbours_are_skipped_over_the_work_limit_or_on_too_few_ratings(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    member = crossfit.holdout_neighbours(m, (1.0, 5.0))
    assert member is not None and member.scale == (1.0, 5.0)
    given = crossfit.holdout_neighbours(m, (1.0, 5.0), regs=(3.0, 7.0)).model
    assert (given.reg_row, given.reg_col) == (3.0, 7.0)
    assert crossfit.neighbour_work(m) == 40 ** 2 + np.sum(np.diff(m.indptr) ** 2.0)
    assert crossfit.holdout_neighbours(sp.csr_matrix(m[:1, :3]), (1.0, 5.0)) is None
    monkeypatch.setattr(crossfit, "NEIGHBOUR_MAX_WORK", 10.0)
    assert crossfit.holdout_neighbours(m, (1.0, 5.0)) is None


def test_a_winner_the_budget_cut_is_trained_in_full_only_if_the_stack_is_skipped(monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    real, seen = crossfit.stacked, []

    def unbounded(chosen, *a, **k):          # the stack ignores the (spent) budget
        seen.append(chosen.n_epochs)
        return real(chosen, *a, **dict(k, seconds=None))
    monkeypatch.setattr(crossfit, "stacked", unbounded)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=1e-6, blend=3)
    first = model.info["tuning"]["rungs"][0]
    assert first < KW["n_epochs"] and seen == [first]                   # not retrained
    assert model.info["tuning"]["unfinished"] and model.info["blend"]["used"]
    assert max(t["epochs"] for t in model.tuning) == first
    monkeypatch.setattr(crossfit, "stacked", lambda *a, **k: (None, "skipped in this test"))
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=1e-6, blend=3)
    assert model.n_epochs == KW["n_epochs"] and not model.info["tuning"]["unfinished"]
    assert [t["epochs"] for t in model.tuning] == [first, KW["n_epochs"]]
    assert model.info["tuning"]["trials"] == 2
    # the search's own shorter run of the winner is no member of the validation-halves
    # blend beside it
    chosen = model.info["tuning"]["chosen"]
    for member in model.blend_members:
        if isinstance(member, AutoEncoder):
            assert member.get_params()["activation"] != chosen["activation"]


def test_a_cut_winner_whose_folds_seem_too_slow_is_trained_in_full_and_judged_again(
        monkeypatch):
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    real, seen = crossfit.stacked, []

    def judged(chosen, *a, **k):       # the first judgement: too little time
        seen.append((chosen.n_epochs, len(k["trials"])))
        if len(seen) == 1:
            return None, f"9 s of the budget left, {crossfit.NO_TIME} 5 fits of the chosen"
        return real(chosen, *a, **dict(k, seconds=None))
    monkeypatch.setattr(crossfit, "stacked", judged)
    space = {"activation": ("relu", "sigmoid")}
    model = AutoEncoder(**KW).tune(train, val, space=space, budget=1e-6, blend=3)
    first = model.info["tuning"]["rungs"][0]
    # judged again with the winner trained in full, its full run among the trials
    assert seen == [(first, 1), (KW["n_epochs"], 2)]
    assert model.info["blend"]["folds"] == crossfit.FOLDS and model.info["blend"]["used"]
    assert [t["epochs"] for t in model.tuning] == [first, KW["n_epochs"]]
    # other reasons to decline are not judged again; a second decline for time falls
    # back without training the winner a second time
    for why in ("fewer than 20 ratings per fold", f"1 s of the budget left, "
                f"{crossfit.NO_TIME} 5 fits of the chosen configuration"):
        seen.clear()
        monkeypatch.setattr(crossfit, "stacked", lambda chosen, *a, **k: (
            seen.append(chosen.n_epochs), (None, why))[1])
        model = AutoEncoder(**KW).tune(train, val, space=space, budget=1e-6, blend=3)
        assert seen == ([first] if crossfit.NO_TIME not in why else [first, KW["n_epochs"]])
        assert [t["epochs"] for t in model.tuning] == [first, KW["n_epochs"]]
        assert model.info["blend"]["crossfit_skipped"] == why
    # a winner the budget did not cut is not trained again either
    seen.clear()
    AutoEncoder(**KW).tune(train, val, space=space, blend=3)
    assert seen == [KW["n_epochs"]]
    assert not crossfit.short_of_time(None) and not crossfit.short_of_time("other")


def test_the_validation_halves_blend_leaves_out_the_winners_own_shorter_run():
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    short = AutoEncoder(**dict(KW, n_epochs=1)).fit(train, val)
    other = AutoEncoder(**dict(KW, activation="tanh")).fit(train, val)
    full = AutoEncoder(**KW).fit(train, val)
    full._blend_with([(0.9, {}, short), (1.0, {}, other)], train, val, 3)
    assert full.info["blend"]["candidates"] == 2           # itself and the tanh network
    # ... also when the winner was refitted with another bias ridge after the search
    # (a user-based winner left unstacked): its own run does not take a member's slot
    refit = AutoEncoder(**dict(KW, bias_reg=(2.0, 3.0))).fit(train, val)
    short._predict_one_at = None                            # never asked to predict
    refit._blend_with([(0.9, {}, short), (1.0, {}, other)], train, val, 2)
    assert refit.info["blend"]["candidates"] == 2


def test_the_validation_halves_blend_line_names_the_item_neighbours():
    nb = {"kind": "item_neighbours_priors", "neighbours": 200, "damping": 1.0,
          "bias_reg": [2.0, 10.0], "rater_shrinkage": 5.0}
    net = {"activation": "relu", "layers": [128]}
    info = {"candidates": 4, "holdout_gain": 0.01, "used": True, "weights": [0.4, 0.6],
            "members": [nb], "crossfit_skipped": "too little time"}
    line = blend.describe(info)
    assert line.startswith("cross-fitting skipped (too little time); blend of 2 of 4 "
                           "configurations (among them item neighbours over the biases, "
                           "200 per item), weights 0.4, 0.6")
    assert "among them" not in blend.describe(dict(info, members=[net]))
