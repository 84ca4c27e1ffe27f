"""Model selection (npcf.autoencoder.selection, AutoEncoder.tune, train --tune)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from npcf import AutoEncoder
from npcf.autoencoder.callbacks import Checkpoint
from npcf.autoencoder.selection import SPACE, select
from npcf.cli import main
from npcf.errors import NpcfError

from helpers import split, tiny_ratings

X = tiny_ratings(60, 40)
TRAIN, VAL = split(X)
BASE = dict(n_epochs=9, batch_size=16, patience=2)
SMALL = {"layers": ((8,), (16,)), "weight_decay": (1e-3, 1e-2), "activation": ("tanh", "relu"),
         "item_based": (False, True)}


def run(**kw):
    kw = dict(dict(space=SMALL, n_configs=6, first_epochs=1), **kw)
    return select(AutoEncoder(**BASE), TRAIN, VAL, **kw)


def test_successive_halving_is_deterministic_and_keeps_the_best():
    model, trials = run()
    again, trials2 = run()
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in trials] == \
        [{k: v for k, v in t.items() if k != "seconds"} for t in trials2]
    rungs = [t["rung"] for t in trials]
    assert rungs == sorted(rungs) and rungs.count(1) == 6 and rungs.count(2) == 2
    assert [t["epochs"] for t in trials if t["rung"] == 3] == [9]          # full n_epochs
    last = [t for t in trials if t["rung"] == max(rungs)][0]
    chosen = model.info["tuning"]["chosen"]
    assert {k: last[k] for k in chosen} == chosen
    assert model.network is not None and model.get_params()["weight_decay"] == chosen["weight_decay"]
    assert model.n_epochs == BASE["n_epochs"]          # also when an early-stopped run is reused
    best_val = min(r["val_rmse"] for r in model.history)
    assert model.info["tuning"]["score"] == pytest.approx(best_val)
    np.testing.assert_array_equal(model.predict(TRAIN), again.predict(TRAIN))
    # the survivors of a rung are the best of the rung before
    first = sorted((t["score"], i) for i, t in enumerate(trials) if t["rung"] == 1)
    keys = ("layers", "weight_decay", "activation", "item_based")
    second = {tuple(str(t[k]) for k in keys) for t in trials if t["rung"] == 2}
    assert second == {tuple(str(trials[i][k]) for k in keys) for _, i in first[:2]}


def test_fixed_values_are_never_searched_and_the_defaults_take_part():
    _, trials = run(fixed={"layers", "item_based"})
    assert all("layers" not in t and "item_based" not in t for t in trials)
    _, trials = run()
    firsts = trials[:2]               # the estimator's own values, user- then item-based
    assert [(t["item_based"], t["layers"], t["activation"], t["weight_decay"]) for t in firsts] \
        == [(False, [256], "tanh", 0.01), (True, [128], "relu", 0.01)]
    assert set(SPACE) >= set(SMALL)


def test_budget_stops_the_search_with_a_fitted_model():
    model, trials = run(budget=1e-9)
    assert model.network is not None and model.info["tuning"]["budget"] == 1e-9
    # one trial of 1 epoch, then its configuration trained with the full n_epochs
    assert [(t["rung"], t["epochs"]) for t in trials] == [(1, 1), (3, 9)]   # rungs 1/3/9
    assert model.info["tuning"]["budget_hit"] == 1 and model.n_epochs == 9
    assert model.info["epochs_run"] > 1 and model.info["tuning"]["score"] == trials[-1]["score"]
    full, _ = run()
    assert full.info["tuning"]["budget_hit"] == 0


def test_a_cut_winner_can_be_trained_in_full_later_with_the_same_result():
    from npcf.autoencoder.selection import finish_training
    now, trials_now = run(budget=1e-9)
    later, trials = run(budget=1e-9, finish=False)
    assert later.info["tuning"]["unfinished"] and later.n_epochs == 1
    assert [(t["rung"], t["epochs"]) for t in trials] == [(1, 1)]
    assert later.info["tuning"]["trials"] == 1
    done = finish_training(later, trials, TRAIN, VAL)
    assert not done.info["tuning"]["unfinished"] and done.n_epochs == 9
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in trials] == \
        [{k: v for k, v in t.items() if k != "seconds"} for t in trials_now]
    assert done.info["tuning"]["score"] == now.info["tuning"]["score"]
    def untimed(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert done.info["tuning"]["trials"] == 2 and untimed(done.history) == untimed(now.history)
    np.testing.assert_array_equal(done.predict(TRAIN), now.predict(TRAIN))
    assert finish_training(done, trials, TRAIN, VAL) is done     # nothing left to do
    assert finish_training(now, trials, TRAIN, VAL) is now and len(trials) == 2


def test_the_bias_ridge_is_cross_validated_once_unless_it_was_given():
    from npcf.nn.bias import cross_validated_regs
    model, trials = run()
    regs = cross_validated_regs(TRAIN, seed=0)
    assert model.info["tuning"]["bias_reg"] == list(regs) and model.bias_reg == regs
    users, items = regs
    rows, cols = (items, users) if model.item_based else (users, items)
    assert (model.baseline.reg_row, model.baseline.reg_col) == (rows, cols)
    given, _ = run(fixed={"bias_reg"})
    assert given.info["tuning"]["bias_reg"] is None and given.bias_reg == 5.0
    plain, _ = select(AutoEncoder(**dict(BASE, residual=False)), TRAIN, VAL, space=SMALL,
                      n_configs=2, first_epochs=1, fixed={"residual"})
    assert plain.info["tuning"]["bias_reg"] is None       # no residual: nothing to choose


def test_orientation_is_searched_only_where_it_can_be():
    _, trials = run(space=dict(SMALL, residual=(True, False)))
    assert {t["item_based"] for t in trials} == {False, True}
    model = AutoEncoder(**BASE, loss="multinomial")
    _, trials = select(model, TRAIN, VAL, space=dict(SMALL, residual=(True, False)),
                       n_configs=3, first_epochs=1)
    assert all("item_based" not in t and "residual" not in t for t in trials)
    other_input = sp.csr_matrix(TRAIN.toarray() * (np.arange(TRAIN.shape[0]) % 2)[:, None])
    _, trials = select(AutoEncoder(**BASE), TRAIN, VAL, other_input, space=SMALL, n_configs=3,
                       first_epochs=1)
    assert all("item_based" not in t for t in trials)      # held-out users: fold-in only


def test_tune_returns_a_fitted_estimator_saved_by_its_callbacks(tmp_path):
    start = AutoEncoder(**BASE, ensemble=2)
    model = start.tune(TRAIN, VAL, space=SMALL, budget=5, callbacks=[Checkpoint(tmp_path)])
    assert model is not start and model.ensemble == 2 and model.network.layers[0] % 2 == 0
    assert model.tuning and model.info["tuning"]["trials"] == len(model.tuning)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["info"]["tuning"]["chosen"] == model.info["tuning"]["chosen"]
    with pytest.raises(NpcfError, match="validation"):
        AutoEncoder(**BASE).tune(TRAIN, None)


@pytest.fixture()
def ratings_csv(tmp_path):
    m = tiny_ratings(80, 50, seed=3).tocoo()
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n" + "".join(
        f"{u + 1},{i + 1},{r}\n" for u, i, r in zip(m.row, m.col, m.data)))
    return path


def test_cli_tunes_by_default_and_keeps_what_was_given(ratings_csv, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an export of an older model")
    (out / "model.json").write_text("{}")                  # of an older run
    r = CliRunner().invoke(main, ["train", "--data", str(ratings_csv), "--out", str(out),
                                  "--n_epochs", "3", "--layers", "8", "--tune_budget", "20"])
    assert r.exit_code == 0, r.output
    assert "tuning:" in r.output and "val_rmse" in r.output
    assert not (out / "model.onnx").exists()           # stale export of the replaced model
    rows = (out / "tuning.csv").read_text().splitlines()
    assert rows[0].startswith("rung,epochs,") and "layers" not in rows[0] and len(rows) > 3
    meta = json.loads((out / "model.json").read_text())
    assert meta["hyperparameters"]["layers"] == [8]                       # given: fixed
    assert "weight_decay" in meta["info"]["tuning"]["chosen"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tuning"]["chosen"] == meta["info"]["tuning"]["chosen"]
    r = CliRunner().invoke(main, ["train", "--data", str(ratings_csv), "--out", str(out),
                                  "--n_epochs", "2", "--tune", "off", "-q"])
    assert r.exit_code == 0, r.output
    assert not (out / "tuning.csv").exists() and "tuning:" not in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(ratings_csv), "--out", str(out),
                                  "--resume"])
    assert r.exit_code == 2 and "--tune off" in r.output and len(r.output.splitlines()) == 1
    for bad in ("0", "-1", "nan"):
        r = CliRunner().invoke(main, ["train", "--tune_budget", bad])
        assert r.exit_code == 2 and "--tune_budget" in r.output, bad


def test_a_given_denoiser_is_searched_only_among_real_corruption_levels():
    space = dict(SMALL, noise_level=(0.0, 0.1, 0.3))
    _, trials = run(space=space, fixed={"denoise"}, n_configs=8)
    levels = {t["noise_level"] for t in trials}
    assert 0.0 not in levels and levels & {0.1, 0.3}       # (0.2: the estimator's own start)
    _, trials = run(space=space, n_configs=8)                    # not given: 0 is a candidate
    assert 0.0 in {t["noise_level"] for t in trials}
    _, trials = select(AutoEncoder(**BASE, denoise=False), TRAIN, VAL, space=space,
                       n_configs=4, first_epochs=1)
    assert all("noise_level" not in t for t in trials)           # --basic: nothing to search


def test_trials_in_worker_processes_give_the_same_search():
    def plain(trials):
        return [{k: v for k, v in t.items() if k != "seconds"} for t in trials]
    one, trials1 = run(workers=1)
    two, trials2 = run(workers=2)
    assert plain(trials1) == plain(trials2) and len(trials2) > 6
    assert all(t["seconds"] >= 0 for t in trials2)
    np.testing.assert_array_equal(one.predict(TRAIN), two.predict(TRAIN))
    assert one.info["tuning"]["chosen"] == two.info["tuning"]["chosen"]


def test_a_budget_cut_with_workers_returns_a_fitted_model():
    model, trials = run(workers=2, budget=1e-9, n_configs=6)
    assert model.network is not None and 1 <= len(trials) <= 6


def _slow_tanh(kw, *a):          # a trial function the forked workers find by name
    import time

    from npcf.autoencoder import selection
    if kw["activation"] == "tanh":
        time.sleep(60)
    return selection._REAL_FIT_TRIAL(kw, *a)


def test_trials_still_running_when_the_budget_ends_are_killed_not_waited_for(monkeypatch):
    import time

    from npcf.autoencoder import selection
    if selection.usable_workers(2, 2) < 2:
        pytest.skip("needs two worker processes (two usable cores)")
    real = selection._fit_trial
    monkeypatch.setattr(selection, "_REAL_FIT_TRIAL", real, raising=False)
    monkeypatch.setattr(selection, "_fit_trial", _slow_tanh)
    t0 = time.perf_counter()
    model, trials = select(AutoEncoder(**dict(BASE, activation="relu")), TRAIN, VAL,
                           space={"activation": ("relu", "tanh")}, n_configs=2,
                           first_epochs=1, budget=0.5, workers=2)
    assert time.perf_counter() - t0 < 30
    assert model.info["tuning"]["abandoned"] == 1 and model.activation == "relu"
    assert [t["activation"] for t in trials if t["rung"] == 1] == ["relu"]
    monkeypatch.setattr(selection, "_fit_trial", real)     # the next search forks anew
    again, _ = run(workers=2)
    assert again.info["tuning"]["abandoned"] == 0


def test_tune_refuses_a_fixed_name_that_is_no_hyperparameter():
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match="'layer' are not hyperparameters"):
        AutoEncoder(**BASE).tune(TRAIN, VAL, fixed=("layer",), space=SMALL)


@pytest.mark.parametrize("kw, name", [
    (dict(budget=float("nan")), "budget"), (dict(budget=-1), "budget"), (dict(budget=0), "budget"),
    (dict(budget="3"), "budget"), (dict(budget=True), "budget"), (dict(blend=-1), "blend"),
    (dict(blend=2.5), "blend"), (dict(blend="8"), "blend"), (dict(fixed=3), "fixed"),
    (dict(fixed=[("lr",)]), "fixed"),
])
def test_tune_refuses_a_budget_or_blend_out_of_its_domain(kw, name):
    from npcf.errors import ParamError
    with pytest.raises(ParamError) as err:
        AutoEncoder(**BASE).tune(TRAIN, VAL, space=SMALL, **kw)
    assert err.value.param == name


def test_tune_takes_one_fixed_name_as_a_string():
    model = AutoEncoder(**dict(BASE, layers=(16,))).tune(TRAIN, VAL, fixed="layers",
                                                         space=SMALL, blend=0)
    assert model.layers == (16,) and model.info["tuning"]["fixed"] == ["layers"]


def test_searches_in_two_threads_each_fit_their_own_data():
    import threading

    from npcf.utils import parallel
    other_train, other_val = split(tiny_ratings(50, 30, seed=5))
    alone_a, _ = run(workers=2)
    alone_b, _ = select(AutoEncoder(**BASE), other_train, other_val, space=SMALL, n_configs=6,
                        first_epochs=1, workers=2)
    got = {}

    def search(name, X, V):
        with parallel.using(2):
            got[name] = select(AutoEncoder(**BASE), X, V, space=SMALL, n_configs=6,
                               first_epochs=1, workers=2)[0]
    threads = [threading.Thread(target=search, args=("a", TRAIN, VAL)),
               threading.Thread(target=search, args=("b", other_train, other_val))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(got["a"].predict(TRAIN), alone_a.predict(TRAIN))
    np.testing.assert_array_equal(got["b"].predict(other_train), alone_b.predict(other_train))


def test_worker_errors_arrive_as_they_are_and_workers_are_capped():
    from npcf.autoencoder.selection import usable_workers
    from npcf.errors import ParamError
    with pytest.raises(ParamError, match="noise_level"):
        run(space={"noise_level": (0.2, 1.0)}, workers=2, n_configs=2)
    assert usable_workers(64, 3) <= 3 and usable_workers(64, 100) >= 1
    assert usable_workers(1, 100) == 1


def _tune_in_daemon(queue):
    from npcf.utils import parallel
    with parallel.using(2):
        model, trials = run(workers=2, n_configs=3)
    queue.put(len(trials))


def test_a_daemonic_process_searches_in_one_process():
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_tune_in_daemon, args=(queue,), daemon=True)
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0 and queue.get(timeout=5) >= 3


def test_a_search_ended_by_an_error_kills_its_running_trials():
    """SIGTERM or an error during a search: running trials are killed, not waited for."""
    import time

    from npcf.autoencoder import selection
    if selection.usable_workers(2, 2) < 2:
        pytest.skip("needs fork and two cores")
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with selection.trial_pool(2, None) as pool:
            futures = [pool.submit(time.sleep, 120) for _ in range(2)]
            time.sleep(1.0)                          # both trials running
            raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 30
    from concurrent.futures import wait
    wait(futures, timeout=20)        # the pool's manager thread marks them as it winds up
    assert all(f.done() for f in futures)
    assert time.perf_counter() - t0 < 50             # killed, not run for their 120 s
    with selection.trial_pool(2, None) as pool:     # the next search gets processes again
        assert pool is not None and pool.submit(abs, -3).result() == 3


def test_tune_keeps_what_the_constructor_changed_unless_fixed_says_otherwise():
    kept = AutoEncoder(**BASE, layers=(8,)).tune(TRAIN, VAL, space=SMALL)
    assert all("layers" not in t for t in kept.tuning) and kept.layers == (8,)
    assert "layers" in kept.info["tuning"]["fixed"]
    searched = AutoEncoder(**BASE, layers=(8,)).tune(TRAIN, VAL, space=SMALL, fixed=())
    assert len({tuple(t["layers"]) for t in searched.tuning}) > 1


def test_tune_takes_layers_as_an_array():
    model = AutoEncoder(**BASE, layers=np.array([8])).tune(TRAIN, VAL, space=SMALL)
    assert all("layers" not in t for t in model.tuning)


def test_a_far_deadline_waits_for_the_trial_instead_of_overflowing():
    import threading
    import time
    from concurrent.futures import Future

    from npcf.autoencoder.selection import _done_by
    pending = Future()
    threading.Timer(0.1, pending.set_result, args=(1,)).start()
    assert _done_by(pending, time.perf_counter() + 1e300)       # --tune_budget 1e300
