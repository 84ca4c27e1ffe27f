"""Tests for npcf.autoencoder.estimator (AutoEncoder): no hyperparameter silently ignored,
predict/predict_at shapes, dtypes and clipping, fold-in, item-based models, and a
real-data check on movies-small."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from npcf import AutoEncoder, Vocabulary
from npcf.autoencoder.estimator import DEFAULTS
from npcf.autoencoder.units import rating_unit
from npcf.errors import NpcfError, ParamError

from helpers import split, tiny_ratings

BASE = dict(layers=(8, 4), n_epochs=3, batch_size=10, lr=3e-3, seed=0, patience=0)
X = tiny_ratings()
TRAIN, VAL = split(X)


def fit_predict(**changes):
    model = AutoEncoder(**dict(BASE, **changes)).fit(TRAIN)
    return model.predict(TRAIN)


@pytest.fixture(scope="module")
def base_pred():
    return fit_predict()


# ----------------------------------------------------------- no option silently ignored
VARIANTS = {
    "layers": dict(layers=(8,)),
    "layers_width": dict(layers=(16, 4)),
    "tied": dict(tied=False),
    "activation": dict(activation="elu"),
    "output_activation": dict(output_activation="elu"),
    "dropout": dict(dropout=0.3),
    "noise_kind": dict(noise="gaussian"),
    "noise_kind_multiplicative": dict(noise="multiplicative"),
    "noise_level": dict(noise_level=0.5),
    "denoise_off": dict(denoise=False),
    "optimizer_sgd": dict(optimizer="sgd"),
    "optimizer_momentum": dict(optimizer="momentum"),
    "optimizer_nesterov": dict(optimizer="nesterov"),
    "lr": dict(lr=1e-2),
    "weight_decay": dict(weight_decay=0.05),
    "clip_norm": dict(clip_norm=0.05),
    "schedule_step": dict(schedule="step", step_size=1, gamma=0.1),
    "schedule_cosine": dict(schedule="cosine"),
    "n_epochs": dict(n_epochs=2),
    "batch_size": dict(batch_size=7),
    "residual": dict(residual=False),
    "bias_reg": dict(bias_reg=50.0),
    "bias_reg_pair": dict(bias_reg=(5.0, 50.0)),
    "item_based": dict(item_based=True),
    "lazy": dict(lazy=False, batch_size=4),
    "seed": dict(seed=1),
    "loss": dict(loss="multinomial"),
    "ensemble": dict(ensemble=2),
    "init": dict(init="uniform"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_hyperparameter_changes_the_result(name, base_pred):
    pred = fit_predict(**VARIANTS[name])
    assert pred.shape == base_pred.shape
    assert np.abs(pred - base_pred).max() > 1e-4, f"{name} was ignored"


# options whose effect needs a partner option to be visible
PAIRS = {
    "adamw_vs_adam": (dict(optimizer="adam", weight_decay=0.05),
                      dict(optimizer="adamw", weight_decay=0.05)),
    "gamma": (dict(schedule="step", step_size=1, gamma=0.5),
              dict(schedule="step", step_size=1, gamma=0.1)),
    "step_size": (dict(schedule="step", step_size=1, gamma=0.1),
                  dict(schedule="step", step_size=2, gamma=0.1)),
    "lazy_adamw": (dict(optimizer="adamw", weight_decay=0.1, lazy=True, batch_size=4),
                   dict(optimizer="adamw", weight_decay=0.1, lazy=False, batch_size=4)),
    "noise_level_gaussian": (dict(noise="gaussian", noise_level=0.1),
                             dict(noise="gaussian", noise_level=1.0)),
    "tied_untied_3_layers": (dict(layers=(8, 6, 4), tied=True),
                             dict(layers=(8, 6, 4), tied=False)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_options_that_need_a_partner_change_the_result(name):
    a, b = PAIRS[name]
    assert np.abs(fit_predict(**a) - fit_predict(**b)).max() > 1e-4, name


def test_noise_level_is_ignored_without_denoise():
    np.testing.assert_array_equal(fit_predict(denoise=False, noise_level=0.1),
                                  fit_predict(denoise=False, noise_level=0.6))


def test_output_mode_is_an_implementation_detail(base_pred):
    for mode in ("sampled", "union"):
        np.testing.assert_allclose(fit_predict(output_mode=mode), base_pred, atol=2e-4)


def test_patience_stops_early_with_validation():
    kw = dict(layers=(64,), tied=False, denoise=False, lr=0.02, n_epochs=12, batch_size=8,
              seed=0)
    a = AutoEncoder(**kw, patience=1).fit(TRAIN, VAL)
    b = AutoEncoder(**kw, patience=0).fit(TRAIN, VAL)
    assert len(a.history) < len(b.history) == 12


def test_without_the_residual_the_output_bias_starts_at_the_training_mean():
    m = AutoEncoder(layers=(4,), residual=False, n_epochs=1, lr=1e-9)
    m.fit(TRAIN)
    np.testing.assert_allclose(m.network.params["c0"], TRAIN.data.mean(), rtol=1e-5)
    m = AutoEncoder(layers=(4,), residual=True, n_epochs=1, lr=1e-9).fit(TRAIN)
    assert np.abs(m.network.params["c0"]).max() < 1e-6     # the residual is centred already


@pytest.mark.parametrize("tied", [True, False])
def test_uniform_init_is_pytorchs_linear_default(tied):
    from npcf.nn.network import Network
    net = Network(400, (100, 20), tied=tied, init="uniform", seed=0)
    for k, fan_in in enumerate((400, 100)):
        bound = 1 / np.sqrt(fan_in)
        for name, near in ((f"W{k}", 0.99), (f"b{k}", 0.5)):
            v = net.params[name]
            assert near * bound < np.abs(v).max() <= bound, name
        if not tied:     # the decoder's Linear reads the smaller layer
            v = net.params[f"V{k}"]
            assert np.abs(v).max() <= 1 / np.sqrt(net.sizes[k + 1]) < 1.2 * np.abs(v).max()
    assert AutoEncoder(residual=False)._init_kind() == "uniform"
    assert AutoEncoder()._init_kind() == AutoEncoder(loss="multinomial")._init_kind() == "glorot"
    with pytest.raises(ValueError, match="init must be one of glorot, uniform"):
        Network(4, (2,), init="he")
    with pytest.raises(ParamError, match="init"):
        AutoEncoder(init="he")


def test_every_default_is_covered_by_a_test():
    covered = {k for v in VARIANTS.values() for k in v} | {k for a, b in PAIRS.values()
                                                           for k in (*a, *b)}
    covered |= {"output_mode", "patience", "popularity_penalty"}
    assert set(DEFAULTS) <= covered, set(DEFAULTS) - covered


def test_unknown_hyperparameter_and_get_params():
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        AutoEncoder(hidden=3)
    m = AutoEncoder(lr=0.01, layers=[10, 5])
    p = m.get_params()
    assert set(p) == set(DEFAULTS) and p["lr"] == 0.01 and p["layers"] == [10, 5]
    assert m._architecture()[0] == (10, 5)
    assert repr(m) == "AutoEncoder(layers=[10, 5], lr=0.01)"
    assert AutoEncoder(**p).get_params() == p


# --------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def fitted():
    return AutoEncoder(**BASE).fit(TRAIN, VAL)


def test_predict_shape_dtype_and_clipping(fitted):
    pred = fitted.predict(TRAIN)
    assert pred.shape == X.shape and pred.dtype == np.float32
    assert fitted.scale == (float(TRAIN.data.min()), float(TRAIN.data.max()))
    assert pred.min() >= fitted.scale[0] and pred.max() <= fitted.scale[1]
    with pytest.raises(NpcfError, match=r"ratings 0.5..5 are outside .* 2.5-3.5 .*given to fit"):
        AutoEncoder(**BASE).fit(TRAIN, scale=(2.5, 3.5))
    m = AutoEncoder(**BASE).fit(TRAIN)
    m.scale = (2.5, 3.5)                      # narrowed by hand: the clipping is under test
    inside = TRAIN.copy()
    inside.data[(inside.data < 2.5) | (inside.data > 3.5)] = 0
    inside.eliminate_zeros()
    p = m.predict(inside)
    assert p.min() == 2.5 and p.max() == 3.5          # the narrow range is actually hit
    coo = VAL.tocoo()
    at = m.predict_at(inside, coo.row, coo.col)
    assert at.dtype == np.float32 and at.min() >= 2.5 and at.max() <= 3.5


@pytest.mark.parametrize("scale", [(5, 1), (1, 1), (0, float("nan")), "ab", (1,)])
def test_a_scale_that_is_not_min_below_max_is_refused(scale):
    """A reversed scale used to clip every prediction to one value."""
    with pytest.raises(ParamError, match="scale: must be"):
        AutoEncoder(**BASE).fit(TRAIN, scale=scale)


@pytest.mark.parametrize("scale, unit", [((0.5, 5), 1.0), ((1, 100), 1.0), ((0, 1), 1.0),
                                         ((0.2, 1.0), 1.0), ((500, 5000), 1.0),
                                         ((5e-5, 5e-4), 1e-4), ((-0.3, 0.05), 0.1),
                                         ((0, float(np.float32(1e-4))), 1e-4),   # as read
                                         ((0, float(np.float32(1e-2))), 1e-2),
                                         (None, 1.0)])
def test_rating_unit(scale, unit):
    assert rating_unit(scale) == pytest.approx(unit, rel=1e-12)


@pytest.mark.parametrize("changes", [{}, dict(residual=False), dict(item_based=True),
                                     dict(noise="gaussian", noise_level=0.3)])
def test_the_same_ratings_in_a_tiny_unit_train_the_same_model(changes):
    """The defaults assume ratings of order 1: ratings / 10_000 train the same model, scaled
    (before units, --tune off on such data did worse than the global mean)."""
    u = 1e-4
    ones = AutoEncoder(**dict(BASE, **changes)).fit(TRAIN, VAL)
    tiny = AutoEncoder(**dict(BASE, **changes)).fit(TRAIN * u, VAL * u)
    assert (ones.unit, tiny.unit) == (1.0, pytest.approx(u))
    np.testing.assert_allclose(tiny.predict(TRAIN * u) / u, ones.predict(TRAIN), rtol=1e-3,
                               atol=1e-3)
    assert len(tiny.history) == len(ones.history)
    for a, b in zip(tiny.history, ones.history):          # reported in rating units
        assert a["val_rmse"] / u == pytest.approx(b["val_rmse"], rel=1e-3)
        assert a["train_loss"] / u ** 2 == pytest.approx(b["train_loss"], rel=1e-3)


def test_the_unit_is_saved_and_checked_on_load(tmp_path):
    import json
    tiny = AutoEncoder(**BASE).fit(TRAIN * 1e-4)
    tiny.save(tmp_path)
    back = AutoEncoder.load(tmp_path)
    assert back.unit == tiny.unit
    np.testing.assert_array_equal(back.predict(TRAIN * 1e-4), tiny.predict(TRAIN * 1e-4))
    meta = json.loads((tmp_path / "model.json").read_text())
    for bad in (0, -1, "x", None, True, 0.5, 1e-40, 1e300, 10):
        (tmp_path / "model.json").write_text(json.dumps(dict(meta, unit=bad)))
        with pytest.raises(NpcfError, match="unit"):
            AutoEncoder.load(tmp_path)
    del meta["unit"]                                      # saved before units
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert AutoEncoder.load(tmp_path).unit == 1.0


def test_predict_at_equals_predict_at_the_pairs(fitted):
    coo = VAL.tocoo()
    rng = np.random.default_rng(0)
    perm = rng.permutation(coo.nnz)               # unsorted, repeated rows
    rows, cols = coo.row[perm], coo.col[perm]
    at = fitted.predict_at(TRAIN, rows, cols)
    full = fitted.predict(TRAIN)
    assert at.shape == rows.shape and at.dtype == np.float32
    np.testing.assert_allclose(at, full[rows, cols], atol=1e-5)
    # small batches give the same answers
    np.testing.assert_allclose(fitted.predict_at(TRAIN, rows, cols, batch_size=3), at, atol=1e-6)
    np.testing.assert_allclose(fitted.predict(TRAIN, batch_size=5), full, atol=1e-6)
    assert fitted.predict_at(TRAIN, np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_fold_in_new_users():
    """Users never seen in training get predictions from their ratings alone."""
    seen, new = X[:36], X[36:]
    m = AutoEncoder(**BASE).fit(seen)
    pred = m.predict(new)
    assert pred.shape == new.shape and np.isfinite(pred).all()
    # each row depends only on its own ratings
    np.testing.assert_allclose(m.predict(new[3:4]), pred[3:4], atol=1e-6)
    # ... and does depend on them
    other = new[3:4].copy()
    other.data[:] = 5.0
    assert np.abs(m.predict(other) - pred[3:4]).max() > 1e-3
    # an empty user still gets finite scores in range
    empty = sp.csr_matrix((1, X.shape[1]), dtype=np.float32)
    e = m.predict(empty)
    assert np.isfinite(e).all() and e.min() >= m.scale[0] and e.max() <= m.scale[1]
    coo = new.tocoo()
    np.testing.assert_allclose(m.predict_at(new, coo.row, coo.col), pred[coo.row, coo.col],
                               atol=1e-5)


def test_fitted_model_beats_its_starting_point_on_training_data():
    coo = TRAIN.tocoo()

    def train_rmse(model):
        p = model.predict_at(TRAIN, coo.row, coo.col).astype(np.float64)
        return np.sqrt(np.mean((p - coo.data) ** 2))
    short = AutoEncoder(**dict(BASE, n_epochs=1, residual=False, denoise=False, lr=1e-2)).fit(TRAIN)
    long = AutoEncoder(**dict(BASE, n_epochs=30, residual=False, denoise=False, lr=1e-2)).fit(TRAIN)
    assert train_rmse(long) < 0.8 * train_rmse(short)


def test_item_based_predict():
    m = AutoEncoder(**dict(BASE, item_based=True)).fit(TRAIN, VAL)
    assert m.network.n_inputs == X.shape[0]          # an item's ratings over all users
    pred = m.predict(TRAIN)
    assert pred.shape == X.shape and pred.dtype == np.float32
    assert pred.min() >= m.scale[0] and pred.max() <= m.scale[1]
    coo = VAL.tocoo()
    np.testing.assert_allclose(m.predict_at(TRAIN, coo.row, coo.col), pred[coo.row, coo.col],
                               atol=1e-5)
    # validation RMSE in the history is that of these predictions
    want = np.sqrt(np.mean((pred[coo.row, coo.col].astype(np.float64) - coo.data) ** 2))
    assert m.history[-1]["val_rmse"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(NpcfError, match="validation_input must be the training matrix"):
        AutoEncoder(**dict(BASE, item_based=True)).fit(TRAIN, VAL, validation_input=VAL)


def test_item_based_predict_rejects_a_matrix_of_the_wrong_shape():
    m = AutoEncoder(**dict(BASE, item_based=True, n_epochs=1)).fit(TRAIN)
    with pytest.raises(NpcfError):
        m.predict(TRAIN[:10])


def test_multinomial_scores_are_not_clipped_and_have_no_baseline():
    m = AutoEncoder(**dict(BASE, loss="multinomial", n_epochs=5)).fit(TRAIN, scale=(1.0, 5.0))
    assert m.baseline is None
    s = m.predict(TRAIN)
    assert s.dtype == np.float32 and s.shape == X.shape and np.isfinite(s).all()
    assert s.min() < 1.0                              # logits: the rating scale is not applied


def test_a_network_too_big_to_allocate_names_layers():
    with pytest.raises(ParamError, match=r"layers: a 30-100000000000 network needs .* GiB"):
        AutoEncoder(**dict(BASE, layers=(10**11,), n_epochs=1)).fit(TRAIN)


def test_predict_errors():
    with pytest.raises(NpcfError, match="not fitted"):
        AutoEncoder(**BASE).predict(TRAIN)
    m = AutoEncoder(**dict(BASE, n_epochs=1)).fit(TRAIN)
    with pytest.raises(NpcfError, match="expects 30 items"):
        m.predict(sp.csr_matrix((2, 29), dtype=np.float32))
    with pytest.raises(NpcfError, match="expects 30 items"):
        m.predict_at(sp.csr_matrix((2, 31), dtype=np.float32), [0], [0])
    for bad, match in ((np.nan, "finite"), (np.inf, "finite"), (99.0, "outside the model's "
                                                                     "scale"),
                       (1e300, "float32's range")):        # no overflow warning either
        row = np.zeros((1, 30), np.float64)
        row[0, 3] = bad                       # refused as recommend() refuses it
        for call in (lambda: m.predict(sp.csr_matrix(row)),
                     lambda: m.predict_at(sp.csr_matrix(row), [0], [0]),
                     lambda: m.recommend(row[0])):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with pytest.raises(NpcfError, match=match):
                    call()


# ------------------------------------------------------------------------ real data
def test_few_epochs_on_movies_small_beat_the_global_mean(movies_small_ratings):
    from npcf.data import split_ratings

    s = split_ratings(movies_small_ratings, "random", 0.1, seed=0, validation_size=0.1)
    model = AutoEncoder(layers=(64,), n_epochs=3, batch_size=128, seed=0, patience=0)
    model.fit(s.train, s.validation, s.validation_input)
    v = s.validation.tocoo()
    mean_rmse = float(np.sqrt(np.mean((v.data - s.train.data.mean()) ** 2)))
    pred = model.predict_at(s.validation_input, v.row, v.col).astype(np.float64)
    rmse = float(np.sqrt(np.mean((pred - v.data) ** 2)))
    assert rmse == pytest.approx(model.history[model.info["best_epoch"] - 1]["val_rmse"], rel=1e-5)
    assert rmse < mean_rmse - 0.05, (rmse, mean_rmse)
    assert min(r["val_rmse"] for r in model.history) < mean_rmse


# ------------------------------------------------------------ scikit-learn protocol
def test_scikit_learn_asks_for_tags_and_gets_them():
    from npcf.evaluation.baselines import EASE
    get_tags = getattr(pytest.importorskip("sklearn.utils"), "get_tags", None)
    if get_tags is None:
        pytest.skip("scikit-learn < 1.6 has no tags API")
    for model in (AutoEncoder(), EASE()):
        tags = get_tags(model)
        assert tags.input_tags.sparse and not tags.target_tags.required


def test_scikit_learn_clone_and_params():
    base = pytest.importorskip("sklearn.base")
    m = AutoEncoder(layers=(8, 4), lr=0.02, item_based=True)
    c = base.clone(m)
    assert c is not m and c.get_params() == m.get_params()
    assert c.network is None and c.history == [] and c.info == {}
    assert m.set_params(lr=0.5, n_epochs=2) is m and m.lr == 0.5 and m.n_epochs == 2
    with pytest.raises(ValueError, match="invalid parameter 'hidden'"):
        m.set_params(hidden=3)
    # the constructor and set_params check every value (ParamError is a ValueError)
    with pytest.raises(ParamError, match="activation"):
        AutoEncoder(activation="nope")
    with pytest.raises(ParamError, match="layers"):
        AutoEncoder(layers=(0,))
    with pytest.raises(ParamError, match="lr"):
        m.set_params(lr=float("nan"))
    with pytest.raises(ParamError, match="lr"):
        m.set_params(n_epochs=7, lr=-5)
    assert (m.lr, m.n_epochs) == (0.5, 2)          # all or nothing: nothing was kept


def test_save_refuses_hyperparameters_load_would_refuse(tmp_path):
    m = AutoEncoder(**BASE).fit(TRAIN)
    m.lr = -5                                     # set behind set_params' back
    with pytest.raises(ParamError, match="lr"):
        m.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name, bad", [
    ("n_epochs", 0), ("n_epochs", -1), ("n_epochs", 2.5), ("batch_size", 0), ("batch_size", -5),
    ("lr", 0), ("lr", -1), ("lr", float("nan")), ("weight_decay", -1), ("clip_norm", -1),
    ("clip_norm", 0), ("noise_level", -0.1), ("dropout", 1), ("dropout", -0.1),
    ("step_size", 0), ("gamma", -1), ("gamma", 0), ("patience", -1), ("seed", -1),
    ("bias_reg", float("nan")), ("bias_reg", (1.0, 2.0, 3.0)), ("bias_reg", (1.0, -1.0)),
    ("bias_reg", "5"), ("bias_reg", (True, 1.0)), ("lr", float("inf")), ("ensemble", 0),
    ("popularity_penalty", float("nan")),
    ("popularity_penalty", 1e308),
    ("layers", ("a",)), ("layers", ()), ("layers", "32"), ("layers", (32.7,)), ("layers", 32),
    ("layers", (0,)), ("layers", (True,)), ("layers", np.array([[8]])), ("layers", {8, 4}),
    ("layers", {8: 1}),
    ("tied", "no"), ("item_based", "no"), ("denoise", 1), ("residual", None), ("lazy", "yes"),
    ("activation", ["relu"]),
])
def test_every_value_out_of_its_domain_is_refused(name, bad):
    with pytest.raises(ParamError) as err:
        AutoEncoder(**{name: bad})
    assert err.value.param == name


def test_pairs_that_cannot_go_together_are_refused_up_front():
    with pytest.raises(ParamError, match="user-based"):
        AutoEncoder(loss="multinomial", item_based=True)
    with pytest.raises(ParamError, match="below 1"):
        AutoEncoder(noise_level=1.5)
    AutoEncoder(noise="gaussian", noise_level=1.5)          # a standard deviation: fine
    AutoEncoder(denoise=False, noise_level=1.5)              # not used: fine


def test_fit_returns_self_and_a_grid_over_clones_works():
    base = pytest.importorskip("sklearn.base")
    model = AutoEncoder(**BASE)
    assert model.fit(TRAIN) is model
    scores = {}
    for lr in (1e-3, 1e-2):
        m = base.clone(model).set_params(lr=lr).fit(TRAIN)
        scores[lr] = float(np.sqrt(np.mean((m.predict_at(TRAIN, *VAL.nonzero())
                                            - VAL.data) ** 2)))
    assert len(set(scores.values())) == 2


def test_popularity_penalty_changes_the_ranking_not_the_scores():
    m = AutoEncoder(**BASE).fit(TRAIN)
    plain = m.recommend(TRAIN, k=10)
    m.popularity_penalty = 2.0
    pen = m.recommend(TRAIN, k=10)
    assert (plain.ids != pen.ids).any()
    np.testing.assert_array_equal(m.predict(TRAIN), AutoEncoder(**BASE).fit(TRAIN).predict(TRAIN))


# ------------------------------------------------------------------ inputs that disagree
@pytest.mark.parametrize("method", ["fit", "tune"])
@pytest.mark.parametrize("kwargs, expect", [
    (dict(validation=VAL[:, :-1]), "validation: shape"),
    (dict(validation=VAL, validation_input=TRAIN[:-2]), "validation_input"),
    (dict(validation=VAL, validation_input=VAL[:, :3]), "validation_input"),
    (dict(validation=VAL, items=np.arange(X.shape[1])), "items: expected an npcf.Vocabulary"),
    (dict(validation=VAL, users=Vocabulary(np.arange(3))), "users: 3 ids for"),
    (dict(validation="ratings.csv"), "validation: expected a 2-D"),
    (dict(validation=sp.csr_matrix(VAL * np.nan)), "validation: holds .* not finite"),
])
def test_disagreeing_inputs_are_refused_before_training(method, kwargs, expect):
    model = AutoEncoder(**BASE)
    with pytest.raises(NpcfError, match=expect) as info:
        getattr(model, method)(TRAIN, **kwargs)
    assert "\n" not in str(info.value)
    assert model.network is None                     # nothing was trained


def test_fold_in_validation_of_other_users_is_accepted():
    rows = VAL[:7]
    model = AutoEncoder(**BASE).fit(TRAIN, validation=rows, validation_input=TRAIN[:7])
    assert model.history


def test_nan_ratings_are_named_not_reported_as_divergence():
    bad = TRAIN.copy().astype(np.float32)
    bad.data[3] = np.nan
    with pytest.raises(NpcfError, match="X: holds 1 values that are not finite"):
        AutoEncoder(**BASE).fit(bad)


@pytest.mark.parametrize("call", [
    lambda m: m.predict(TRAIN, batch_size=-1), lambda m: m.predict(TRAIN, batch_size=0),
    lambda m: m.predict_at(TRAIN, [0], [-1]), lambda m: m.predict_at(TRAIN, [0], [X.shape[1]]),
    lambda m: m.predict_at(TRAIN, [X.shape[0]], [0]), lambda m: m.predict_at(TRAIN, [0, 1], [0]),
    lambda m: m.predict_at(TRAIN, [0.5], [1]),
])
def test_prediction_arguments_out_of_range_are_refused(call):
    model = AutoEncoder(**BASE).fit(TRAIN)
    with pytest.raises(NpcfError) as info:
        call(model)
    assert "\n" not in str(info.value)


def test_validation_users_other_than_the_training_rows_fold_in():
    """A validation pair of other users (another shape) is folded in by user-based models,
    refused by name for item-based ones, and searched over user-based models only."""
    X = tiny_ratings(40, 20, 0.4)
    vin, v = split(tiny_ratings(12, 20, 0.5, seed=1), 0.3, seed=2)
    m = AutoEncoder(layers=(4,), n_epochs=2).fit(X, v, vin)
    assert m.predict(vin).shape == (12, 20)
    with pytest.raises(NpcfError, match="training matrix"):
        AutoEncoder(layers=(4,), n_epochs=2, item_based=True).fit(X, v, vin)
    tuned = AutoEncoder(layers=(4,), n_epochs=2).tune(X, v, vin, fixed=("layers", "n_epochs"),
                                                      budget=20, blend=0)
    assert tuned.item_based is False


def test_stored_zeros_are_refused_by_name():
    """0 is 'not rated' in a rating vector: a matrix storing zeros would train on what
    serving ignores."""
    X = tiny_ratings(20, 10, 0.5)
    X.data[3] = 0.0
    with pytest.raises(NpcfError, match="X: 1 stored zeros: npcf reads a rating of 0"):
        AutoEncoder(layers=(4,), n_epochs=1).fit(X)
    X.eliminate_zeros()
    AutoEncoder(layers=(4,), n_epochs=1).fit(X)


def test_layers_as_an_array_and_numpy_switches_are_accepted():
    m = AutoEncoder(layers=np.array([8, 4]), tied=np.bool_(False))
    assert repr(m) == f"AutoEncoder(layers=array([8, 4]), tied={np.bool_(False)!r})"
    assert m._architecture()[0] == (8, 4)
    assert repr(AutoEncoder(layers=(8, 4))) == "AutoEncoder(layers=(8, 4))"


@pytest.mark.parametrize("item_based", [False, True])
def test_stored_zeros_in_prediction_input_are_not_ratings(item_based):
    """predict, predict_at and recommend all read a stored 0 as 'not rated' (as the ONNX
    graph must), and none of them changes the caller's matrix."""
    m = AutoEncoder(layers=(4,), n_epochs=2, item_based=item_based).fit(TRAIN)
    zeros = TRAIN.tolil()
    zeros[0, np.flatnonzero(TRAIN[0].toarray() == 0)[:3]] = 99.0
    zeros = zeros.tocsr()
    zeros.data[zeros.data == 99.0] = 0.0           # explicit zeros where row 0 had no rating
    assert zeros.nnz == TRAIN.nnz + 3
    before = (zeros.data.copy(), zeros.indices.copy(), zeros.indptr.copy())
    np.testing.assert_array_equal(m.predict(zeros), m.predict(TRAIN))
    coo = VAL.tocoo()
    np.testing.assert_array_equal(m.predict_at(zeros, coo.row, coo.col),
                                  m.predict_at(TRAIN, coo.row, coo.col))
    np.testing.assert_array_equal(m.recommend(zeros, k=5).ids, m.recommend(TRAIN, k=5).ids)
    for a, b in zip(before, (zeros.data, zeros.indices, zeros.indptr)):
        np.testing.assert_array_equal(a, b)


def test_a_pair_stored_twice_is_refused_not_summed(fitted):
    """COO (and non-canonical CSR) input may store one (user, movie) twice; SciPy would
    add the two ratings into one out of scale."""
    c = TRAIN.tocoo()
    twice = sp.coo_matrix((np.r_[c.data, 4.0], (np.r_[c.row, c.row[0]], np.r_[c.col, c.col[0]])),
                          shape=c.shape)
    with pytest.raises(NpcfError, match=r"^X: 1 stored entry repeats a \(row, column\) pair"):
        AutoEncoder(layers=(4,), n_epochs=1).fit(twice)
    with pytest.raises(NpcfError, match="validation: 1 stored entry"):
        AutoEncoder(layers=(4,), n_epochs=1).fit(TRAIN, twice)
    with pytest.raises(NpcfError, match="X: 1 stored entry"):
        fitted.predict(twice)
    with pytest.raises(NpcfError, match="X: 1 stored entry"):
        fitted.predict_at(twice, [0], [0])
    with pytest.raises(NpcfError, match="user_items: 1 stored entry"):
        fitted.recommend(twice)
    np.testing.assert_array_equal(fitted.predict(c), fitted.predict(TRAIN))   # COO, canonical


@pytest.mark.parametrize("item_based,tied", [(False, True), (False, False), (True, True)])
def test_a_column_without_training_ratings_predicts_the_baseline_whatever_the_seed(item_based,
                                                                                   tied):
    """Its weight rows never get a gradient: they start (and stay) zero, so its
    prediction is mu + the row's bias, not noise from random initial weights."""
    train = TRAIN.tolil()
    cold_user, cold_item = 3, 5
    train[:, cold_item] = 0
    train[cold_user, :] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    cold = cold_user if item_based else cold_item
    preds = []
    for seed in (0, 1):
        m = AutoEncoder(**dict(BASE, seed=seed, item_based=item_based, tied=tied)).fit(train)
        d = m.network.decoder_weight(0)
        assert not d[cold].any() and not m.network.params["W0"][cold].any()
        assert d.any(axis=1).sum() == d.shape[0] - 1
        pred = m.predict(train)
        preds.append(pred)
        xo = m._orient(train)
        want = m.baseline.mu + m.baseline.row_bias(xo)
        got = pred[cold_user, :] if item_based else pred[:, cold_item]
        np.testing.assert_allclose(got, np.clip(want, *m.scale), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(preds[0][cold_user] if item_based else preds[0][:, cold_item],
                                  preds[1][cold_user] if item_based else preds[1][:, cold_item])


def test_implicit_data_with_the_mse_loss_is_refused_naming_the_multinomial_one():
    """Ratings that all equal 1 (clicks) under MSE: every prediction 1, recommendations in
    id order; it was accepted without a word (a scale of (1, 1) inferred)."""
    X = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    X.data[:] = 1.0
    with pytest.raises(ParamError, match="all equal 1.*multinomial") as err:
        AutoEncoder(layers=(4,), n_epochs=1).fit(X)
    assert err.value.param == "loss"
    m = AutoEncoder(layers=(4,), n_epochs=1, loss="multinomial").fit(X)
    assert len(set(map(tuple, m.recommend(X[:5], k=3).ids.tolist()))) > 1


def test_predict_takes_a_1d_sparse_row_and_points_pairs_to_recommend():
    X = tiny_ratings()
    m = AutoEncoder(layers=(4,), n_epochs=1).fit(X)
    row = sp.csr_array(X[0]).reshape(-1)                 # a 1-D sparse array
    np.testing.assert_array_equal(m.predict(row), m.predict(X[0]))
    with pytest.raises(NpcfError, match="use recommend"):
        m.predict([(1, 5.0)])


@pytest.mark.parametrize("bad", ["no", 1, None])
def test_filter_seen_must_be_a_bool(bad):
    """filter_seen="no" still filtered (a non-empty string is true)."""
    X = tiny_ratings()
    m = AutoEncoder(layers=(4,), n_epochs=1).fit(X)
    with pytest.raises(ParamError, match="True or False") as err:
        m.recommend(X[:2], filter_seen=bad)
    assert err.value.param == "filter_seen"
    m.recommend(X[:2], filter_seen=np.bool_(False))


def test_predict_still_takes_rows_as_nested_lists():
    X = tiny_ratings()
    m = AutoEncoder(layers=(4,), n_epochs=1).fit(X)
    rows = X[:2].toarray().tolist()
    np.testing.assert_array_equal(m.predict(rows), m.predict(X[:2]))
    with pytest.raises(NpcfError, match="use recommend"):
        m.predict({1: 5.0})


@pytest.mark.parametrize("item_based", [False, True])
def test_predict_at_before_the_clip_is_rank_scores_at_the_pairs(item_based):
    """recommend --user on an item-based checkpoint ranks by predict_at: it must be able
    to give the scores before the clip (it tied at the top of the scale)."""
    X = tiny_ratings()
    m = AutoEncoder(layers=(4,), n_epochs=1, item_based=item_based).fit(X)
    m.network.params["c0"] += 3.0                       # many predictions past the top
    rows, cols = np.repeat(np.arange(X.shape[0]), X.shape[1]), np.tile(np.arange(X.shape[1]),
                                                                       X.shape[0])
    full = m.rank_scores(X)
    assert (full > m.scale[1]).any()
    np.testing.assert_allclose(m.predict_at(X, rows, cols, clip=False), full[rows, cols],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.predict_at(X, rows, cols), np.clip(full, *m.scale)[rows, cols],
                               rtol=1e-5, atol=1e-5)
