"""Tests for npcf.autoencoder.trainer (Trainer): determinism, resume after Ctrl-C continues exactly,
NaN guard, early stopping, history."""
from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest

from npcf import AutoEncoder
from npcf.autoencoder.callbacks import Checkpoint
from npcf.autoencoder.trainer import Trainer, TrainingDiverged, TrainingInterrupted
from npcf.errors import NpcfError
from npcf.rundir import RESUME_JSON, RESUME_NPZ

from helpers import split, tiny_ratings

BASE = dict(layers=(8, 4), n_epochs=4, batch_size=10, lr=3e-3, seed=0, patience=0)


def params_of(model):
    return {k: v.copy() for k, v in model.network.params.items()}


def assert_same_params(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_weights_different_seed_different():
    X = tiny_ratings()
    train, val = split(X)
    a = AutoEncoder(**BASE, dropout=0.2).fit(train, val)
    b = AutoEncoder(**BASE, dropout=0.2).fit(train, val)
    assert_same_params(params_of(a), params_of(b))
    assert strip_seconds(a.history) == strip_seconds(b.history)
    c = AutoEncoder(**dict(BASE, seed=1), dropout=0.2).fit(train, val)
    assert not np.array_equal(a.network.params["W0"], c.network.params["W0"])
    # the seed also drives the initial weights
    n0 = AutoEncoder(**BASE)._build(*X.shape)
    n1 = AutoEncoder(**dict(BASE, seed=1))._build(*X.shape)
    assert not np.array_equal(n0.params["W0"], n1.params["W0"])
    assert_same_params(n0.params, AutoEncoder(**BASE)._build(*X.shape).params)


def test_seed_drives_shuffle_noise_and_dropout_not_only_init(monkeypatch):
    """Same initial weights, different seed: training itself must still differ."""
    X = tiny_ratings()
    a = AutoEncoder(**BASE, dropout=0.3)
    a._build(*X.shape)
    init = params_of(a)
    import npcf.autoencoder.estimator as ae_mod
    orig = ae_mod.Network.__init__

    def fixed_init(self, *args, **kw):
        kw["seed"] = 0
        orig(self, *args, **kw)
    monkeypatch.setattr(ae_mod.Network, "__init__", fixed_init)
    b = AutoEncoder(**dict(BASE, seed=5), dropout=0.3)
    b._build(*X.shape)
    assert_same_params(init, params_of(b))
    a.fit(X)
    b.fit(X)
    assert not np.array_equal(a.network.params["W0"], b.network.params["W0"])


# ---------------------------------------------------------------------------- resume
def interrupt_after(monkeypatch, n_steps):
    """Deliver a real SIGINT right after the ``n_steps``-th optimizer step."""
    count = {"n": 0}
    name = "step" if hasattr(Trainer, "step") else "_step"
    orig = getattr(Trainer, name)

    def step(self, rows, b):
        out = orig(self, rows, b)
        count["n"] += 1
        if count["n"] == n_steps:
            signal.raise_signal(signal.SIGINT)
        return out
    monkeypatch.setattr(Trainer, name, step)
    return count


@pytest.mark.parametrize("where", ("end_of_epoch_2", "middle_of_epoch_3"))
@pytest.mark.parametrize("with_validation", (True, False))
def test_resume_after_ctrl_c_is_identical_to_a_straight_run(tmp_path, monkeypatch, where,
                                                            with_validation):
    X = tiny_ratings()
    train, val = split(X)
    val_arg = val if with_validation else None
    kw = dict(BASE, optimizer="adam", dropout=0.2, noise="masking", noise_level=0.3)
    straight = AutoEncoder(**kw).fit(train, val_arg, callbacks=[Checkpoint(tmp_path / "straight")])

    per_epoch = -(-np.count_nonzero(np.diff(train.indptr)) // kw["batch_size"])
    n_steps = 2 * per_epoch if where == "end_of_epoch_2" else 2 * per_epoch + 2
    interrupt_after(monkeypatch, n_steps)
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        AutoEncoder(**kw).fit(train, val_arg, callbacks=[Checkpoint(out)])
    assert signal.getsignal(signal.SIGINT) is handler          # the Ctrl-C handler is restored
    meta = json.loads((out / RESUME_JSON).read_text())
    assert (meta["epoch"], meta["batch"]) == ((1, per_epoch) if where == "end_of_epoch_2"
                                              else (2, 2))
    with np.load(out / RESUME_NPZ, allow_pickle=False) as f:
        assert any(k.startswith("opt/") for k in f.files)
    monkeypatch.undo()

    resumed = AutoEncoder(**kw).fit(train, val_arg, callbacks=[Checkpoint(out, resume=True)])
    assert_same_params(params_of(straight), params_of(resumed))
    assert strip_seconds(resumed.history) == strip_seconds(straight.history)
    assert len(resumed.history) == 4
    assert not (out / RESUME_NPZ).exists() and not (out / RESUME_JSON).exists()
    assert resumed.info["best_epoch"] == straight.info["best_epoch"]


def test_resume_from_a_checkpoint_with_unscaled_adam_moments(tmp_path, monkeypatch):
    """A resume file written before Adam held its moments scaled (``opt/W0/m``, ``opt/W0/v``)
    continues the run: the same weights as a straight run up to float rounding."""
    X = tiny_ratings()
    train, val = split(X)
    kw = dict(BASE, optimizer="adam", dropout=0.2, noise="masking", noise_level=0.3)
    straight = AutoEncoder(**kw).fit(train, val)
    per_epoch = -(-np.count_nonzero(np.diff(train.indptr)) // kw["batch_size"])
    interrupt_after(monkeypatch, 2 * per_epoch + 2)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(out)])
    monkeypatch.undo()
    with np.load(out / RESUME_NPZ, allow_pickle=False) as f:
        arrays = dict(f)
    old = {}
    for key, value in arrays.items():
        if key.startswith("opt/") and key.endswith(("/m_scaled", "/v_scaled")):
            beta = 0.9 if key.endswith("/m_scaled") else 0.999
            old[key[:-len("_scaled")]] = (value * (1 - beta)).astype(value.dtype)
        else:
            old[key] = value
    assert any(k.endswith("/m") for k in old) and not any(k.endswith("_scaled") for k in old)
    old.pop("format/pair")
    np.savez(out / RESUME_NPZ, **old)
    meta = json.loads((out / RESUME_JSON).read_text())
    del meta["pair"]
    (out / RESUME_JSON).write_text(json.dumps(meta))
    resumed = AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(out, resume=True)])
    for name, value in params_of(straight).items():
        np.testing.assert_allclose(params_of(resumed)[name], value, rtol=1e-4, atol=1e-5)


def test_resume_keeps_the_best_epoch_and_early_stopping_state(tmp_path, monkeypatch):
    """The best score, best weights and patience counter survive the interruption: with
    a model that overfits after epoch 1, the resumed run must still end on epoch 1's
    weights and stop at the same epoch."""
    X = tiny_ratings(60, 40, 0.4)
    train, val = split(X, 0.3)
    kw = dict(layers=(64,), tied=False, denoise=False, lr=0.02, weight_decay=0.0, n_epochs=12,
              batch_size=8, patience=3, seed=0)
    straight = AutoEncoder(**kw).fit(train, val)
    best = straight.info["best_epoch"]
    assert best <= 2 and len(straight.history) == best + 3     # the scenario is as intended
    per_epoch = -(-np.count_nonzero(np.diff(train.indptr)) // kw["batch_size"])
    interrupt_after(monkeypatch, (best + 1) * per_epoch + 1)    # after the best epoch
    with pytest.raises(TrainingInterrupted):
        AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(tmp_path)])
    monkeypatch.undo()
    resumed = AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(tmp_path, resume=True)])
    assert resumed.info["best_epoch"] == best
    assert strip_seconds(resumed.history) == strip_seconds(straight.history)
    assert_same_params(params_of(straight), params_of(resumed))


def _changed_data(X):
    other = X.copy()
    other.data[0] = 6.0 - other.data[0]
    return other


@pytest.mark.parametrize("change, data, match", [
    ({"lr": 0.1}, lambda X: X, r"options differ.*\blr\b"),
    ({}, _changed_data, "training data differ"),
], ids=["other options", "other data"])
def test_resume_with_other_options_or_data_is_refused(tmp_path, monkeypatch, change, data,
                                                       match):
    X = tiny_ratings()
    interrupt_after(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        AutoEncoder(**BASE).fit(X, callbacks=[Checkpoint(tmp_path)])
    monkeypatch.undo()
    with pytest.raises(NpcfError, match=match):
        AutoEncoder(**dict(BASE, **change)).fit(data(X),
                                                callbacks=[Checkpoint(tmp_path, resume=True)])


def test_a_resume_state_of_two_interruptions_is_refused(tmp_path, monkeypatch):
    """resume.npz of one interruption beside resume.json of another is not continued."""
    X = tiny_ratings()
    for name, n in (("a", 3), ("b", 5)):
        interrupt_after(monkeypatch, n)
        with pytest.raises(TrainingInterrupted):
            AutoEncoder(**BASE).fit(X, callbacks=[Checkpoint(tmp_path / name)])
        monkeypatch.undo()
    shutil.copy(tmp_path / "b" / RESUME_NPZ, tmp_path / "a" / RESUME_NPZ)
    with pytest.raises(NpcfError, match="cannot resume from.*interrupted between"):
        AutoEncoder(**BASE).fit(X, callbacks=[Checkpoint(tmp_path / "a", resume=True)])


def test_resume_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(NpcfError, match="cannot resume from"):
        AutoEncoder(**BASE).fit(tiny_ratings(), callbacks=[Checkpoint(tmp_path, resume=True)])


def test_interrupt_without_out_dir_says_nothing_saved(monkeypatch):
    interrupt_after(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted, match="nothing saved"):
        AutoEncoder(**BASE).fit(tiny_ratings())


# ------------------------------------------------------------------------- NaN guard
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    """Epoch 1 trains normally (and is checkpointed); the step schedule then multiplies
    the learning rate by 1e20, the loss overflows, and training must stop cleanly."""
    X = tiny_ratings()
    train, val = split(X)
    kw = dict(BASE, optimizer="sgd", lr=0.01, schedule="step", step_size=1, gamma=1e20)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(out)])
    msg = str(info.value)
    assert "loss became" in msg and "epoch 2" in msg and "--lr" in msg
    assert f"last good checkpoint: {out / 'model.npz'}" in msg
    good = AutoEncoder.load(out)
    assert all(np.isfinite(v).all() for v in good.network.params.values())
    # it is exactly the model after epoch 1
    one = AutoEncoder(**dict(kw, n_epochs=1)).fit(train, val)
    assert_same_params(params_of(one), good.network.params)
    assert np.isfinite(good.predict(train)).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_learning_rate_raises_training_diverged():
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf|-inf) at epoch \d+"):
        AutoEncoder(**dict(BASE, optimizer="sgd", lr=1e30)).fit(tiny_ratings())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_without_residual_raises_training_diverged():
    X = tiny_ratings()
    with pytest.raises(TrainingDiverged, match=r"loss became .* batch \d+"):
        AutoEncoder(**dict(BASE, optimizer="sgd", lr=1e30, residual=False)).fit(X)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_message_has_a_batch_number():
    X = tiny_ratings()
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+, batch \d+;"):
        AutoEncoder(**dict(BASE, optimizer="sgd", lr=1e30)).fit(X)


# ------------------------------------------------------------- early stopping, history
def test_early_stopping_restores_the_best_epoch():
    X = tiny_ratings(60, 40, 0.4)
    train, val = split(X, 0.3)
    # a large, untied, no-noise model with a high learning rate overfits fast
    m = AutoEncoder(layers=(64,), tied=False, denoise=False, lr=0.02, n_epochs=30,
                    batch_size=8, patience=2, seed=0).fit(train, val)
    h = m.history
    assert len(h) < 30                                       # stopped early
    best = int(np.argmin([r["val_rmse"] for r in h]))
    assert len(h) == best + 1 + 2                            # exactly `patience` after best
    assert m.info["best_epoch"] == best + 1
    coo = val.tocoo()
    pred = m.predict_at(train, coo.row, coo.col)
    rmse = float(np.sqrt(np.mean((pred.astype(np.float64) - coo.data) ** 2)))
    assert rmse == pytest.approx(h[best]["val_rmse"], abs=1e-6)
    assert rmse < h[-1]["val_rmse"]


def test_patience_zero_never_stops():
    X = tiny_ratings(60, 40, 0.4)
    train, val = split(X, 0.3)
    m = AutoEncoder(layers=(64,), tied=False, denoise=False, lr=0.02, n_epochs=8,
                    batch_size=8, patience=0, seed=0).fit(train, val)
    assert len(m.history) == 8


def test_history_file_and_learning_rate_schedule(tmp_path):
    X = tiny_ratings()
    train, val = split(X)
    m = AutoEncoder(**dict(BASE, schedule="step", step_size=2, gamma=0.1)).fit(
        train, val, callbacks=[Checkpoint(tmp_path)])
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,val_rmse,lr,seconds"
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    lrs = [float(r[4]) for r in rows]
    assert lrs == pytest.approx([3e-3, 3e-3, 3e-4, 3e-4])
    for r, h in zip(rows, m.history):
        assert float(r[1]) == h["train_loss"] and float(r[3]) == h["val_rmse"]
        assert all(np.isfinite(float(c)) for c in r)
    # training loss goes down on this easy problem
    assert m.history[-1]["train_loss"] < m.history[0]["train_loss"]


def test_history_without_validation_has_empty_columns(tmp_path):
    AutoEncoder(**dict(BASE, n_epochs=2)).fit(tiny_ratings(), callbacks=[Checkpoint(tmp_path)])
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].split(",")[2:4] == ["", ""]


def test_multinomial_history_uses_ndcg(tmp_path):
    X = tiny_ratings()
    train, val = split(X)
    m = AutoEncoder(**dict(BASE, n_epochs=2, loss="multinomial")).fit(
        train, val, callbacks=[Checkpoint(tmp_path)])
    header = (tmp_path / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,val_ndcg,lr,seconds"
    assert all(0 <= r["val_ndcg"] <= 1 for r in m.history)


def test_validation_metric_matches_an_independent_computation():
    X = tiny_ratings()
    train, val = split(X)
    m = AutoEncoder(**dict(BASE, n_epochs=1)).fit(train, val)
    coo = val.tocoo()
    pred = m.predict_at(train, coo.row, coo.col)
    want = float(np.sqrt(np.mean((pred.astype(np.float64) - coo.data) ** 2)))
    assert m.history[0]["val_rmse"] == pytest.approx(want, rel=1e-6)


def test_epoch_randomness_depends_on_seed_epoch_and_batch_only(monkeypatch):
    """Noise of (epoch, batch) does not depend on what ran before it: draws seen in a
    4-epoch run equal those of a run started from the same state."""
    seen = []
    import npcf.autoencoder.trainer as train_mod
    orig = train_mod.corrupt

    def spy(x, kind, level, rng):
        out = orig(x, kind, level, rng)
        seen.append(out.nnz)
        return out
    monkeypatch.setattr(train_mod, "corrupt", spy)
    X = tiny_ratings()
    AutoEncoder(**BASE).fit(X)
    first = list(seen)
    seen.clear()
    AutoEncoder(**dict(BASE, lr=0.5)).fit(X)            # other weights, same randomness
    assert seen == first
    seen.clear()
    AutoEncoder(**dict(BASE, seed=3)).fit(X)
    assert seen != first


# ------------------------------------------------------------- full-batch L-BFGS-B
LBFGS = dict(layers=(6,), optimizer="lbfgs", denoise=False, weight_decay=1e-2, seed=0,
             patience=0)


@pytest.mark.parametrize("kw", [dict(tied=True), dict(tied=False, residual=False),
                                dict(layers=(6, 3), activation="sigmoid"),
                                dict(loss="multinomial")])
def test_full_batch_gradient_matches_finite_differences(kw):
    X = tiny_ratings(n_users=20, n_items=12)
    m = AutoEncoder(**dict(LBFGS, **kw))
    m._set_data(X, None, None, None)
    m._build(*X.shape, dtype=np.float64)
    if m.residual and m.loss == "mse":
        from npcf.nn.bias import UserItemBias
        m.baseline = UserItemBias(m.bias_reg, m.bias_reg).fit(m._orient(X))
    fun, theta0, _ = Trainer(m, m._orient(X)).full_batch_objective()
    _, grad = fun(theta0.copy())
    rng = np.random.default_rng(0)
    for i in rng.choice(theta0.size, 25, replace=False):
        e = np.zeros_like(theta0)
        e[i] = 1e-6
        numeric = (fun(theta0 + e)[0] - fun(theta0 - e)[0]) / 2e-6
        assert abs(numeric - grad[i]) <= 1e-6 + 1e-4 * abs(numeric), (i, numeric, grad[i])


def test_lbfgs_fits_and_stops_early_on_validation(tmp_path):
    train, val = split(tiny_ratings())
    m = AutoEncoder(**dict(LBFGS, n_epochs=200, patience=3, weight_decay=0.0)).fit(
        train, val, callbacks=[Checkpoint(tmp_path)])
    losses = [r["train_loss"] for r in m.history]
    assert losses[-1] < 0.5 * losses[0]                         # the objective goes down
    assert len(m.history) < 200                                # stopped on validation
    best = int(np.argmin([r["val_rmse"] for r in m.history]))
    assert m.info["best_epoch"] == best + 1 and len(m.history) == best + 1 + 3
    assert (tmp_path / "history.csv").read_text().count("\n") == len(m.history) + 1
    again = AutoEncoder(**dict(LBFGS, n_epochs=200, patience=3, weight_decay=0.0)).fit(train, val)
    assert_same_params(params_of(m), params_of(again))           # deterministic


def test_lbfgs_is_refused_with_corruption_or_dropout():
    with pytest.raises(NpcfError, match="--basic --dropout 0"):
        AutoEncoder(optimizer="lbfgs")
    with pytest.raises(NpcfError, match="--basic --dropout 0"):
        AutoEncoder(optimizer="lbfgs", denoise=False, dropout=0.2)


def test_lbfgs_ctrl_c_saves_and_resumes_from_the_saved_weights(tmp_path, monkeypatch):
    train, val = split(tiny_ratings())
    kw = dict(LBFGS, n_epochs=12)
    orig = Trainer._end_epoch

    def end_epoch(self, seconds):
        orig(self, seconds)
        if self.epoch == 5:
            signal.raise_signal(signal.SIGINT)
    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(tmp_path)])
    monkeypatch.undo()
    resumed = AutoEncoder(**kw).fit(train, val, callbacks=[Checkpoint(tmp_path, resume=True)])
    assert len(resumed.history) == 12 and resumed.history[4]["epoch"] == 5


def test_sigterm_is_left_to_a_library_callers_default_handler(monkeypatch):
    """Only a process that handles SIGTERM (the CLI) has it turned into a clean stop."""
    seen = []
    orig = Trainer.step

    def step(self, rows, b):
        seen.append(signal.getsignal(signal.SIGTERM))
        return orig(self, rows, b)
    monkeypatch.setattr(Trainer, "step", step)
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        AutoEncoder(**dict(BASE, n_epochs=1)).fit(tiny_ratings())
        assert seen and all(h is signal.SIG_DFL for h in seen)
        signal.signal(signal.SIGTERM, lambda *a: None)
        seen.clear()
        interrupt = []

        def step_then_term(self, rows, b):
            out = step(self, rows, b)
            if not interrupt:
                interrupt.append(1)
                signal.raise_signal(signal.SIGTERM)
            return out
        monkeypatch.setattr(Trainer, "step", step_then_term)
        with pytest.raises(TrainingInterrupted) as info:
            AutoEncoder(**BASE).fit(tiny_ratings())
        assert info.value.exit_code == 143 and "nothing saved" in str(info.value)
    finally:
        signal.signal(signal.SIGTERM, old)
