"""Tests for ``npcf train`` through click's CliRunner on the real movies-small ratings."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from npcf import AutoEncoder
from npcf.cli import main

HISTORY_HEADER = "epoch,train_loss,val_loss,val_rmse,lr,seconds"


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def output_lines(result):
    """Non-blank lines the user sees (CliRunner's ``output`` holds stdout and stderr)."""
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mse_run(movies_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_mse") / "run one"      # a space: hints quote it
    # the brief's command; --layers 64 only keeps the test fast (default: 512)
    result = invoke(["train", "--tune", "off", "--data", movies_small / "ratings.csv", "--n_epochs", 2,
                     "--out", out, "--quiet", "--layers", 64])
    return result, out


def test_train_writes_model_history_and_metrics(mse_run):
    result, out = mse_run
    assert result.exit_code == 0, result.output
    for name in ("model.npz", "model.json", "history.csv", "metrics.json"):
        assert (out / name).is_file(), name
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0] == HISTORY_HEADER
    assert len(lines) == 3
    for k, line in enumerate(lines[1:], 1):
        cells = line.split(",")
        assert int(cells[0]) == k and len(cells) == 6
        assert all(math.isfinite(float(c)) for c in cells[1:])
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert 0.6 < test["rmse"] < 1.1 and 0.4 < test["mae"] < test["rmse"]
    assert test["n_ratings"] > 9000
    assert metrics["hyperparameters"]["n_epochs"] == 2
    assert "rmse" in result.output and "model.npz" in result.output
    assert "epoch 1" not in result.output                    # --quiet: no epoch lines
    # the next command names this run's checkpoint (not the default models/)
    assert f"next: python cli.py eval --generate --model '{out / 'model.npz'}'" in result.output


def test_trained_checkpoint_reproduces_the_reported_test_rmse(mse_run):
    from npcf.data import load_prepared
    from npcf.evaluation.protocol import rating_metrics

    _, out = mse_run
    model = AutoEncoder.load(out)
    assert model.items is not None and len(model.items) == model.network.n_inputs
    assert model.get_params()["n_epochs"] == 2
    ds = load_prepared(out / "data")
    got = rating_metrics(model, ds.split.test_input, ds.split.test)
    reported = json.loads((out / "metrics.json").read_text())["test"]
    assert got["rmse"] == pytest.approx(reported["rmse"], rel=1e-6)
    assert got["mae"] == pytest.approx(reported["mae"], rel=1e-6)
    # the global mean of the training ratings is clearly worse
    t = ds.split.test
    mean_rmse = float(np.sqrt(np.mean((t.data - ds.split.train.data.mean()) ** 2)))
    assert got["rmse"] < mean_rmse


@pytest.mark.parametrize("content", ["userId,movieId,rating,timestamp\n1,2,oops,3\n",
                                     "\x00\x01\x02 binary junk\n"])
def test_bad_data_is_one_line_error_exit_1(tmp_path, content):
    bad = tmp_path / "ratings.csv"
    bad.write_text(content)
    result = CliRunner().invoke(main, ["train", "--tune", "off", "--data", str(bad), "--n_epochs", "1",
                                       "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)          # not a crash
    lines = output_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "model.npz").exists()


def test_missing_data_file_is_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--tune", "off", "--data", str(tmp_path / "nope.csv"),
                                       "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    lines = output_lines(result)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "nope.csv" in lines[0]


def test_bad_option_is_a_usage_error(tmp_path, movies_small):
    result = CliRunner().invoke(main, ["train", "--tune", "off", "--data", str(movies_small / "ratings.csv"),
                                       "--layers", "64,0", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2
    assert "layer sizes must be positive" in result.output


def test_multinomial_writes_ranking_metrics(movies_small, tmp_path):
    out = tmp_path / "mult"
    result = invoke(["train", "--tune", "off", "--data", movies_small / "ratings.csv", "--n_epochs", 1,
                     "--loss", "multinomial", "--layers", 32, "--batch_size", 256,
                     "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    test = json.loads((out / "metrics.json").read_text())["test"]
    for key in ("ndcg@100", "recall@20"):
        assert 0 < test[key] <= 1, key
    assert "rmse" not in test
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,val_ndcg,lr,seconds"
    assert AutoEncoder.load(out).loss == "multinomial"


def test_lbfgs_refuses_options_it_would_ignore(tmp_path):
    from click.testing import CliRunner

    from npcf.cli import main
    r = CliRunner().invoke(main, ["train", "--data", "synthetic", "--optimizer", "lbfgs",
                                  "--basic", "--lr", "0.5", "--batch_size", "8",
                                  "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "--batch_size, --lr would be ignored" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
