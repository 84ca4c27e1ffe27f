"""Blends of searched configurations: greedy weights, the held-out gate, the blended
estimator (predict, predict_at, save/load, export refused) and the CLI report."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from npcf import AutoEncoder, load
from npcf.autoencoder.blend import greedy_weights, holdout_gain
from npcf.cli import main
from npcf.errors import NpcfError
from npcf.serving.export import export

from helpers import split, tiny_ratings


def test_greedy_weights_mix_complementary_candidates():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, 400)
    e = rng.normal(0, 0.5, 400)
    P = np.stack([y + e, y - e, y + rng.normal(0, 2, 400)], axis=1)   # errors cancel in 0+1
    w = greedy_weights(P, y)
    assert w.shape == (3,) and w.sum() == pytest.approx(1) and (w >= 0).all()
    assert w[0] == pytest.approx(0.5) and w[1] == pytest.approx(0.5) and w[2] == 0
    assert holdout_gain(P, y) > 0.3                       # exact cancellation: a large gain
    good = np.stack([y + 0.1 * e, y + rng.normal(0, 1, 400)], axis=1)
    assert np.array_equal(greedy_weights(good, y), [1.0, 0.0])   # nothing to add
    assert holdout_gain(good, y) == 0.0
    with pytest.raises(ValueError, match="n_ratings"):
        greedy_weights(P[:, :0], y)


def test_holdout_gain_is_not_positive_when_weights_only_fit_noise():
    rng = np.random.default_rng(1)
    y = rng.uniform(1, 5, 30)                             # a tiny validation part
    best = y + rng.normal(0, 0.5, 30)
    # the others are the best model plus noise of their own: mixing them in only helps
    # where the noise happens to fit the half the weights were fitted on
    P = np.column_stack([best] + [best + rng.normal(0, 0.5, 30) for _ in range(5)])
    gains = [holdout_gain(P, y, seed=s) for s in range(5)]
    assert np.mean(gains) <= 0


@pytest.fixture(scope="module")
def parts():
    m = tiny_ratings(60, 40, density=0.4, seed=5)
    train, val = split(m, 0.2, seed=2)
    return train, val


def _members(train, val):
    kw = dict(item_based=True, n_epochs=6, layers=(8,), denoise=False)
    a = AutoEncoder(**kw, activation="relu").fit(train, val)
    b = AutoEncoder(**kw, activation="sigmoid", residual=False, seed=3).fit(train, val)
    c = AutoEncoder(**kw, activation="tanh", weight_decay=1e-3, seed=4).fit(train, val)
    return a, [(0.9, {}, b), (0.95, {}, c)]


def test_a_blend_predicts_the_weighted_mean_and_round_trips(parts, tmp_path):
    train, val = parts
    model, pool = _members(train, val)
    model._blend_with(pool, train, val, size=3)
    info = model.info["blend"]
    assert info["candidates"] == 3 and isinstance(info["used"], bool)
    if not info["used"]:                                   # force one to test the mechanics
        model.blend_members, model.blend_weights = [pool[0][2]], np.array([0.6, 0.4])
    ws, ms = model.blend_weights, [model, *model.blend_members]
    single = [AutoEncoder._predict_one(m, train) for m in ms]
    want = np.clip(sum(w * p for w, p in zip(ws, single)), *model.scale)
    np.testing.assert_allclose(model.predict(train), want, rtol=1e-5, atol=1e-5)
    rows, cols = val.nonzero()
    np.testing.assert_allclose(model.predict_at(train, rows, cols), want[rows, cols],
                               rtol=1e-5, atol=1e-5)
    model.save(tmp_path)
    back = load(tmp_path)
    np.testing.assert_array_equal(back.blend_weights, model.blend_weights)
    np.testing.assert_allclose(back.predict(train), model.predict(train), rtol=1e-6, atol=1e-6)
    assert [m.get_params() for m in back.blend_members] == \
        [m.get_params() for m in model.blend_members]
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["blend"]["weights"] = [1.0]                       # fewer weights than members
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NpcfError, match="blend weights"):
        load(tmp_path)
    model.item_based = False                               # even if it could fold in
    with pytest.raises(NpcfError, match="blend"):
        export(model, tmp_path / "m.onnx")


def test_tune_blends_only_item_based_mse_models(parts):
    train, val = parts
    space = {"activation": ("relu", "sigmoid", "tanh"), "weight_decay": (1e-3, 1e-2)}
    kw = dict(n_epochs=6, layers=(8,), denoise=False)
    m = AutoEncoder(item_based=True, **kw).tune(train, val, space=space, budget=30, blend=4)
    assert m.info["blend"]["candidates"] >= 2
    assert (m.blend_weights is not None) == m.info["blend"]["used"]
    u = AutoEncoder(item_based=False, **kw).tune(train, val, space=space, budget=30, blend=4)
    assert "blend" not in u.info and u.blend_weights is None
    off = AutoEncoder(item_based=True, **kw).tune(train, val, space=space, budget=30, blend=1)
    assert "blend" not in off.info and off.blend_weights is None


def test_cli_blend_option(tmp_path):
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--blend", "3"])
    assert r.exit_code == 2 and "--blend" in r.output
    for bad in ("0", "33", "x"):
        r = CliRunner().invoke(main, ["train", "--blend", bad])
        assert r.exit_code == 2, r.output


def test_refitting_a_blended_model_drops_the_old_blend():
    from npcf import AutoEncoder

    from helpers import split, tiny_ratings
    train, val = split(tiny_ratings())
    kw = dict(layers=(8,), n_epochs=2, batch_size=10, seed=0, patience=0, item_based=True)
    blended = AutoEncoder(**kw).fit(train)
    other = AutoEncoder(**dict(kw, seed=1)).fit(train)
    blended.blend_members, blended.blend_weights = [other], np.array([0.5, 0.5])
    blended.fit(train)
    assert blended.blend_weights is None and blended.blend_members == []
    np.testing.assert_array_equal(blended.predict(train), AutoEncoder(**kw).fit(train).predict(train))


def test_a_blends_rank_scores_clip_to_its_predictions():
    """eval ranks by rank_scores and clips them for RMSE: for a blend that must give
    predict's figures exactly (its members are clipped as its weights were fitted)."""
    import numpy as np

    from npcf import AutoEncoder
    from npcf.evaluation.ranking import clip_finite

    from helpers import tiny_ratings
    X = tiny_ratings()
    a = AutoEncoder(layers=(4,), n_epochs=1, seed=0).fit(X)
    b = AutoEncoder(layers=(6,), n_epochs=1, seed=1).fit(X)
    a.blend_members, a.blend_weights = [b], np.array([0.6, 0.4])
    np.testing.assert_array_equal(clip_finite(a.rank_scores(X), a.scale), a.predict(X))
