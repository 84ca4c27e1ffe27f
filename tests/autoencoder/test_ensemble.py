"""Tests for npcf.autoencoder.ensemble and ``AutoEncoder(ensemble=K)``: the merged network is
exactly the members' mean, and it trains, saves, exports and resumes like one model."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from npcf import AutoEncoder
from npcf.autoencoder.callbacks import Checkpoint
from npcf.autoencoder.ensemble import merge
from npcf.cli import main
from npcf.nn.network import Network
from npcf.serving.export import export

from helpers import random_ratings, split, tiny_ratings

X = tiny_ratings()
TRAIN, VAL = split(X)
BASE = dict(layers=(8, 4), n_epochs=3, batch_size=10, lr=3e-3, patience=0)


@pytest.mark.parametrize("layers", [(5,), (6, 3), (6, 4, 2)])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("out_act", ["identity", "sigmoid"])
def test_merged_logits_are_the_members_mean(layers, tied, out_act):
    nets = [Network(12, layers, tied=tied, activation="tanh", output_activation=out_act,
                    seed=s, dtype=np.float64) for s in range(3)]
    for net in nets:                       # non-zero biases, so their handling is checked
        for k, v in net.params.items():
            if k[0] in "bc":
                v[...] = np.random.default_rng(len(k)).normal(size=v.shape)
    merged = merge(nets)
    assert merged.layers == tuple(3 * h for h in layers) and not merged.tied
    x = random_ratings(7, 12, 0.3)
    z_mean = np.mean([n.output(n.hidden(x)[0])[0] for n in nets], axis=0)
    z, y = merged.output(merged.hidden(x)[0])
    np.testing.assert_allclose(z, z_mean, rtol=1e-12, atol=1e-12)
    if out_act == "identity":
        np.testing.assert_allclose(y, np.mean([n.predict(x) for n in nets], axis=0), atol=1e-12)
    rows, cols = np.repeat(np.arange(7), 3), np.tile([0, 5, 11], 7)
    np.testing.assert_allclose(merged.output_at(merged.hidden(x)[0], rows, cols),
                               z_mean[rows, cols], atol=1e-12)


def test_merge_of_one_network_predicts_the_same():
    net = Network(10, (4, 2), tied=True, activation="relu", seed=3, dtype=np.float64)
    x = random_ratings(5, 10, 0.3)
    np.testing.assert_allclose(merge([net]).predict(x), net.predict(x), atol=1e-12)


def test_merge_refuses_members_that_differ():
    a = Network(10, (4,), seed=0)
    with pytest.raises(ValueError, match="differ"):
        merge([a, Network(10, (5,), seed=1)])
    with pytest.raises(ValueError, match="differ"):
        merge([a, Network(10, (4,), activation="relu", seed=1)])
    with pytest.raises(ValueError, match="at least one"):
        merge([])


@pytest.mark.parametrize("item_based", [False, True])
def test_ensemble_predicts_the_mean_of_its_seeds(item_based):
    kw = dict(BASE, item_based=item_based)
    wide = (-100.0, 100.0)                 # no clipping, so the mean is exact
    ens = AutoEncoder(**kw, ensemble=3, seed=5).fit(TRAIN, VAL, scale=wide)
    singles = [AutoEncoder(**kw, seed=s).fit(TRAIN, VAL, scale=wide) for s in (5, 6, 7)]
    want = np.mean([m.predict(TRAIN) for m in singles], axis=0)
    np.testing.assert_allclose(ens.predict(TRAIN), want, atol=2e-5)
    rows, cols = VAL.nonzero()
    np.testing.assert_allclose(ens.predict_at(TRAIN, rows, cols), want[rows, cols], atol=2e-5)
    assert ens.info["best_epoch"] == [m.info["best_epoch"] for m in singles]
    assert [r["member"] for r in ens.history] == [1] * 3 + [2] * 3 + [3] * 3
    assert set(ens.info["validation"]) == {"val_rmse", "val_mae"}
    assert np.abs(ens.predict(TRAIN) - singles[0].predict(TRAIN)).max() > 1e-4


def test_ensemble_must_be_a_positive_integer():
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="ensemble"):
            AutoEncoder(ensemble=bad).fit(TRAIN)


def test_ensemble_saves_loads_and_exports(tmp_path):
    ens = AutoEncoder(**BASE, ensemble=2).fit(TRAIN, scale=(0.5, 5.0))
    ens.save(tmp_path / "m")
    back = AutoEncoder.load(tmp_path / "m")
    assert back.get_params()["ensemble"] == 2 and back.network.layers == (16, 8)
    np.testing.assert_array_equal(back.predict(TRAIN), ens.predict(TRAIN))
    path = export(back, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["scores"], {"ratings": TRAIN.toarray().astype(np.float32)})[0]
    np.testing.assert_allclose(got, ens.predict(TRAIN), atol=1e-4)


def _train(movies_small, out, *extra):
    return CliRunner().invoke(main, [str(a) for a in (
        "train", "--tune", "off", "--data", movies_small / "ratings.csv", "--n_epochs", 1, "--layers", 16,
        "--out", out, "--quiet", "--ensemble", 2, *extra)], catch_exceptions=False)


def test_cli_ensemble_trains_members_and_resume_reuses_finished_ones(movies_small, tmp_path):
    out = tmp_path / "run"
    result = _train(movies_small, out)
    assert result.exit_code == 0, result.output
    for k in ("0", "1"):
        assert (out / "members" / k / "model.npz").is_file()
        assert (out / "members" / k / "history.csv").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hyperparameters"]["ensemble"] == 2 and "val_rmse" in metrics["validation"]
    stamp = (out / "members" / "0" / "model.npz").stat().st_mtime_ns
    again = _train(movies_small, out, "--resume")
    assert again.exit_code == 0, again.output
    assert (out / "members" / "0" / "model.npz").stat().st_mtime_ns == stamp   # reused
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


def test_resume_trains_again_members_whose_options_or_data_changed(tmp_path):
    out = tmp_path / "run"
    AutoEncoder(**BASE, ensemble=2).fit(TRAIN, VAL, callbacks=[Checkpoint(out)])
    stamp = {k: (out / "members" / k / "model.npz").stat().st_mtime_ns for k in ("0", "1")}
    again = AutoEncoder(**BASE, ensemble=2).fit(TRAIN, VAL, callbacks=[Checkpoint(out, resume=True)])
    assert {k: (out / "members" / k / "model.npz").stat().st_mtime_ns
            for k in ("0", "1")} == stamp                              # same: reused
    assert len(again.history) == 6                                     # histories kept
    changed = AutoEncoder(**dict(BASE, lr=1e-2), ensemble=2).fit(
        TRAIN, VAL, callbacks=[Checkpoint(out, resume=True)])
    fresh = AutoEncoder(**dict(BASE, lr=1e-2), ensemble=2).fit(TRAIN, VAL)
    np.testing.assert_allclose(changed.predict(TRAIN), fresh.predict(TRAIN), atol=1e-6)
    other_data = X[:, ::-1].tocsr()
    AutoEncoder(**dict(BASE, lr=1e-2), ensemble=2).fit(other_data, callbacks=[Checkpoint(out, resume=True)])
    meta = json.loads((out / "members" / "0" / "model.json").read_text())
    from npcf.rundir import fingerprint
    assert meta["info"]["fingerprint"] == fingerprint(other_data)    # trained again


def test_resume_trains_again_a_member_whose_final_save_was_cut(tmp_path):
    """A member whose npz is not its json's pair (a save stopped between the two
    renames) is not finished: the resumed run trains it again instead of failing."""
    import shutil
    out = tmp_path / "run"
    AutoEncoder(**BASE, ensemble=2).fit(TRAIN, VAL, callbacks=[Checkpoint(out)])
    shutil.copy(out / "members" / "1" / "model.npz", out / "members" / "0" / "model.npz")
    again = AutoEncoder(**BASE, ensemble=2).fit(TRAIN, VAL, callbacks=[Checkpoint(out, resume=True)])
    fresh = AutoEncoder(**BASE, ensemble=2).fit(TRAIN, VAL)
    np.testing.assert_allclose(again.predict(TRAIN), fresh.predict(TRAIN), atol=1e-6)
    AutoEncoder.load(out / "members" / "0")                         # a pair again


def test_ensemble_without_validation_and_its_history_file(tmp_path):
    from npcf.workflows import train
    ens = AutoEncoder(**BASE, ensemble=2).fit(TRAIN, callbacks=[Checkpoint(tmp_path / "m")])
    assert "validation" not in ens.info and ens.info["best_epoch"] == [0, 0]   # no validation: no best epoch
    lines = (tmp_path / "m" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("member,epoch,train_loss") and len(lines) == 7
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 1, 1, 2, 2, 2]
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n" + "\n".join(
        f"{u},{i},{r}" for u, i, r in zip(*TRAIN.nonzero(), TRAIN.data)) + "\n")
    res = train(dict(BASE, ensemble=2), tmp_path / "cli", {"data": path, "seed": 0}, tune=False)
    assert set(res["validation"]) == {"val_rmse", "val_mae"}

