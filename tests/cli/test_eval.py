"""`eval --evaluate` end to end on movies-small (ONNX and npz agree) and `run_baselines`."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from npcf import workflows
from npcf.cli import main
from npcf.evaluation.metrics import BEYOND, RANKING


@pytest.fixture(scope="module")
def trained(movies_small, tmp_path_factory):
    """A tiny model trained for one epoch on movies-small, exported to ONNX."""
    out = tmp_path_factory.mktemp("model")
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--tune", "off", "--n_epochs", "1", "--layers", "32", "--quiet",
                             "--data", str(movies_small / "ratings.csv"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["eval", "--generate", "--model", str(out / "model.npz")])
    assert r.exit_code == 0, r.output
    assert (out / "model.onnx").is_file()
    return out


def _evaluate(model, tmp_path, *extra):
    out = tmp_path / f"{model.suffix[1:]}.json"
    r = CliRunner().invoke(main, ["eval", "--evaluate", "--model", str(model), "--json",
                                  str(out), "-q", *extra])
    assert r.exit_code == 0, r.output
    return r.output, json.loads(out.read_text())


def test_json_replaces_an_earlier_metrics_dump_of_either_mode(trained, tmp_path):
    _, first = _evaluate(trained / "model.npz", tmp_path, "-k", "5")
    out = tmp_path / "npz.json"
    assert first["ks"] == [5]
    r = CliRunner().invoke(main, ["eval", "--baselines", "--json", str(out), "-k", "7", "-q",
                                  "--data", str(json.loads((trained / "metrics.json")
                                                           .read_text())["data"])])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["ks"] == [7] and "models" in json.loads(out.read_text())
    _, again = _evaluate(trained / "model.npz", tmp_path, "-k", "3")     # and back
    assert again["ks"] == [3]


def test_onnx_and_npz_give_the_same_numbers(trained, tmp_path):
    _, a = _evaluate(trained / "model.onnx", tmp_path)
    _, b = _evaluate(trained / "model.npz", tmp_path)
    assert a["format"] == "onnx" and b["format"] == "npz"
    keys = ["rmse", "mae"] + [f"{m}@{k}" for m in RANKING + BEYOND for k in (10, 20, 100)]
    for key in keys:
        assert a[key] is not None and np.isfinite(a[key]), key
        assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for key in ("n_users", "n_ratings", "n_ranked_users", "threshold", "ks"):
        assert a[key] == b[key]
    assert a["threshold"] == 4.0 and a["ks"] == [10, 20, 100]
    # same RMSE as train's metrics.json (predict_at) on the same split
    recorded = json.loads((trained / "metrics.json").read_text())["test"]
    assert a["rmse"] == pytest.approx(recorded["rmse"], abs=1e-5)
    assert a["n_ratings"] == recorded["n_ratings"] and a["n_users"] == recorded["n_users"]
    assert [e["user_id"] for e in a["examples"]] == [e["user_id"] for e in b["examples"]]


def test_table_and_examples_are_readable(trained, tmp_path):
    out, data = _evaluate(trained / "model.onnx", tmp_path, "-k", "5,10")
    lines = out.splitlines()
    paths = ("model:", "data:", "wrote")
    assert all(len(line) <= 80 for line in lines if not line.startswith(paths)), \
        max(lines, key=len)
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "@5", "@10"]
    for label in ("Precision", "Recall", "NDCG", "MAP", "Hit rate", "Coverage", "Gini",
                  "Popularity pct", "Personalization"):
        assert any(line.startswith(label) for line in lines), label
    assert "RMSE" in out and "random rating holdout" in out
    assert len(data["examples"]) == 3
    for ex in data["examples"]:
        assert len(ex["top"]) == 5
        assert all(t["title"] for t in ex["top"])          # titles from data/movies.csv
        assert ex["top"][0]["title"][:40] in out
    assert "precision@5" in data and "precision@20" not in data


def test_default_model_prefers_onnx_then_npz(trained, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("model.npz", "model.json", "metrics.json"):
        shutil.copy(trained / name, models / name)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["eval", "--evaluate", "-q", "-k", "10"])
    assert r.exit_code == 0, r.output
    assert "model: models/model.npz (npz" in r.output
    shutil.copy(trained / "model.onnx", models / "model.onnx")
    r = CliRunner().invoke(main, ["eval", "--evaluate", "-q", "-k", "10"])
    assert r.exit_code == 0, r.output
    assert "model: models/model.onnx (onnx" in r.output


def test_errors_are_one_line(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["eval", "--evaluate"])
    assert r.exit_code == 1 and "no model" in r.output and len(r.output.splitlines()) == 1
    r = runner.invoke(main, ["eval", "--evaluate", "--model", str(trained / "model.onnx"),
                             "-k", "ten"])
    assert r.exit_code == 2 and "cut-offs" in r.output
    r = runner.invoke(main, ["eval", "--evaluate", "--model", str(trained / "model.onnx"),
                             "--data", str(tmp_path)])
    assert r.exit_code == 1 and "not a prepared data directory" in r.output
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(trained / "model.npz", lone / "model.npz")
    shutil.copy(trained / "model.json", lone / "model.json")
    r = runner.invoke(main, ["eval", "--evaluate", "--model", str(lone / "model.npz")])
    assert r.exit_code == 1 and "--data" in r.output


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory):
    """A small synthetic prepared directory (fast enough for every baseline)."""
    from npcf.data import Dataset, generate, save_prepared, split_ratings
    ratings, movies = generate(n_users=150, n_items=120, mean_ratings=25, seed=1)
    split = split_ratings(ratings, "random", 0.1, seed=0)
    stats = {"n_users": len(ratings.users), "n_items": len(ratings.items),
             "scale": [0.5, 5.0], "split": split.params}
    ds = Dataset(split, ratings.users, ratings.items, stats, movies)
    return save_prepared(ds, tmp_path_factory.mktemp("small") / "data")


def test_data_must_match_the_model(trained, small_prepared):
    r = CliRunner().invoke(main, ["eval", "--evaluate", "--model",
                                  str(trained / "model.onnx"), "--data", str(small_prepared)])
    assert r.exit_code == 1 and "other movies" in r.output


def test_data_of_another_scale_is_named(trained, tmp_path):
    """The model's own data with every rating doubled (out of its 0.5-5 scale)."""
    from npcf.data.dataset import load_prepared, save_prepared
    ds = load_prepared(trained / "data")
    ds.split.test_input.data *= 2
    ds.stats["scale"] = None
    save_prepared(ds, tmp_path / "doubled")
    for model in ("model.onnx", "model.npz"):
        r = CliRunner().invoke(main, ["eval", "--evaluate", "--model", str(trained / model),
                                      "--data", str(tmp_path / "doubled"), "-q"])
        assert r.exit_code == 1, r.output
        assert f"{tmp_path / 'doubled'}: ratings 1..10 are outside the model's scale 0.5-5" \
            in r.output


def test_another_split_of_the_models_own_file_is_refused_as_leakage(trained, movies_small,
                                                                      tmp_path):
    """--data of the same ratings split with another seed: its test part holds ratings the
    model was trained on. New users' ratings of the same movies are fair."""
    from npcf.data.dataset import load_prepared, save_prepared
    from npcf.data.vocab import Vocabulary
    r = CliRunner().invoke(main, ["prepare", "--data", str(movies_small / "ratings.csv"),
                                  "--seed", "1", "--out", str(tmp_path / "seed1"), "-q"])
    assert r.exit_code == 0, r.output
    for model in ("model.onnx", "model.npz"):
        r = CliRunner().invoke(main, ["eval", "--evaluate", "--model", str(trained / model),
                                      "--data", str(tmp_path / "seed1"), "-q"])
        assert r.exit_code == 1, r.output
        assert "test ratings were in the training data of" in r.output
        assert "inflated" in r.output and "Traceback" not in r.output
    lone = tmp_path / "lone"                          # away from its data: cannot check, says so
    lone.mkdir()
    for name in ("model.npz", "model.json"):
        shutil.copy(trained / name, lone / name)
    r = CliRunner().invoke(main, ["eval", "--evaluate", "--model", str(lone / "model.npz"),
                                  "--data", str(tmp_path / "seed1"), "-q"])
    assert r.exit_code == 0, r.output
    assert f"warning: {lone / 'model.npz'}: its training data is not beside it" in r.output
    assert "was not checked" in r.output
    ds = load_prepared(trained / "data")              # the same ratings by other users
    ds.users = Vocabulary(ds.users.ids + 10**6)
    ds.split.train.data[:5] += 0.5 - (ds.split.train.data[:5] == 5)   # another training part
    save_prepared(ds, tmp_path / "others")
    r = CliRunner().invoke(main, ["eval", "--evaluate", "--model", str(trained / "model.npz"),
                                  "--data", str(tmp_path / "others"), "-q"])
    assert r.exit_code == 0, r.output


def test_run_baselines(small_prepared, tmp_path):
    out = tmp_path / "b.json"
    r = CliRunner().invoke(main, ["eval", "--baselines", "--data", str(small_prepared),
                                  "-k", "5,10", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    text = r.output
    data = json.loads(out.read_text())
    res = workflows.compare_baselines(str(small_prepared), ks=(5, 10))
    assert list(res["models"]) == ["global_mean", "biases", "popularity", "ease"]
    assert set(data["models"]) == set(res["models"])
    assert data["threshold"] == 4.0 and data["ks"] == [5, 10]
    assert data["data"] == res["data"] == str(small_prepared)       # the directory given
    assert f"baselines on: {small_prepared}" in text
    keys = {f"{m}@{k}" for m in RANKING + BEYOND for k in (5, 10)} | {"rmse", "mae"}
    for name, r in data["models"].items():
        assert keys <= set(r), name
        assert (r["rmse"] is None) == (name in ("popularity", "ease")), name
    assert data["models"]["biases"]["rmse"] < data["models"]["global_mean"]["rmse"]
    assert data["models"]["ease"]["ndcg@10"] > data["models"]["global_mean"]["ndcg@10"]
    assert data["models"]["ease"]["params"]["lambda"] in (50, 100, 200, 500, 1000, 2000)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "global_mean", "biases", "popularity", "ease"]
    assert all(len(line) <= 80 for line in lines if not line.startswith("baselines on:"))
    assert res["models"]["ease"]["ndcg@10"] == data["models"]["ease"]["ndcg@10"]


def test_baselines_never_rank_a_movie_no_training_rating_touched(tmp_path):
    """Every test rating is of movie 6, which only the test file names: a baseline that
    ranked it (as eval --evaluate never does for npcf's model) would score every hit."""
    train = "userId,movieId,rating\n" + "".join(
        f"{u},{m},{1 + (u * m) % 5}\n" for u in range(1, 9) for m in range(1, 6))
    (tmp_path / "tr.csv").write_text(train)
    (tmp_path / "te.csv").write_text("userId,movieId,rating\n" +
                                     "".join(f"{u},6,5\n" for u in range(1, 9)))
    workflows.prepare(tmp_path / "p", {"train_file": tmp_path / "tr.csv",
                                       "test_file": tmp_path / "te.csv"})
    res = workflows.compare_baselines(str(tmp_path / "p"), ks=(5,))
    for name, r in res["models"].items():
        assert r["recall@5"] == 0.0, name


def test_baselines_read_a_ratings_file_with_the_reader_options(tmp_path, small_prepared):
    """--baselines on a raw file of another scale: --scale declares it (the error says so)."""
    rows = "".join(f"{u},{m},{10 * (1 + (u * m) % 10)}\n" for u in range(1, 41)
                   for m in range(1, 31) if (u + m) % 3)
    (tmp_path / "r.csv").write_text("userId,movieId,rating\n" + rows)
    base = ["eval", "--baselines", "--data", str(tmp_path / "r.csv"), "-k", "5", "-q"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 1 and "outside the scale 0.5-5 (another scale: --scale" in r.output
    r = CliRunner().invoke(main, base + ["--scale", "10,100"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["eval", "--baselines", "--data", str(small_prepared),
                                  "--scale", "1,5", "-q"])
    assert r.exit_code == 1 and "read as prepared" in r.output
    r = CliRunner().invoke(main, ["eval", "--evaluate", "--scale", "1,5"])
    assert r.exit_code == 2 and "--scale does nothing with --evaluate" in r.output


def test_eval_baselines_flag(small_prepared, tmp_path):
    out = tmp_path / "b.json"
    r = CliRunner().invoke(main, ["eval", "--baselines", "--data", str(small_prepared),
                                  "-k", "10", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(out.read_text())["models"]) == {"global_mean", "biases",
                                                          "popularity", "ease"}


def test_generate_raw_ids_and_a_triton_repository(trained, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from npcf.data import load_prepared
    from npcf.serving.runtime import Recommender
    raw, repo = tmp_path / "raw.onnx", tmp_path / "model_repository"
    r = CliRunner().invoke(main, ["eval", "--generate", "--model", str(trained / "model.npz"),
                                  "--out", str(raw), "--raw_ids", "--triton", str(repo),
                                  "--triton_max_batch", "32"])
    assert r.exit_code == 0, r.output
    assert "raw_ids input, top-10" in r.output and "parity vs NumPy" in r.output
    assert f"wrote Triton model 'raw': {repo / 'raw' / 'config.pbtxt'}" in r.output
    cfg = text_format.Parse((repo / "raw" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.name == "raw" and cfg.max_batch_size == 32
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("movie_id", [-1]), ("rating", [-1])]
    assert [t.name for t in cfg.output] == ["scores", "top_items", "top_scores", "top_movie_ids",
                                            "n_unknown", "rank_scores"]
    assert (repo / "raw" / "1" / "model.onnx").read_bytes() == raw.read_bytes()
    # the raw-id model recommends what the plain export does, for recorded users
    x = load_prepared(trained / "data").split.test_input[:20]
    got = Recommender.load(raw).recommend(x, k=10)
    want = Recommender.load(trained / "model.onnx").recommend(x, k=10)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)


def test_raw_ids_and_triton_errors_are_one_line(trained, tmp_path):
    from npcf import AutoEncoder, Vocabulary
    runner = CliRunner()
    base = ["eval", "--generate", "--model", str(trained / "model.npz")]
    out = tmp_path / "x.onnx"
    r = runner.invoke(main, base + ["--out", str(out), "--raw_ids", "--top_k", "0"])
    assert r.exit_code == 2 and "--raw_ids" in r.output and "--top_k" in r.output
    r = runner.invoke(main, base + ["--out", str(out), "--triton", str(tmp_path / "repo"),
                                    "--triton_name", "a/b"])
    assert r.exit_code == 2 and "--triton_name" in r.output and len(r.output.splitlines()) == 1
    r = runner.invoke(main, base + ["--out", str(out), "--triton_name", "m"])
    assert r.exit_code == 2 and "--triton" in r.output and len(r.output.splitlines()) == 1
    foreign = tmp_path / "repo" / "x"
    foreign.mkdir(parents=True)
    r = runner.invoke(main, base + ["--out", str(out), "--triton", str(tmp_path / "repo")])
    assert r.exit_code == 1 and "not a Triton model directory" in r.output
    assert len(r.output.splitlines()) == 1
    assert not out.exists() and not any(foreign.iterdir())       # nothing written
    strings = AutoEncoder.load(trained / "model.npz")
    strings.items = Vocabulary(np.array([f"m{i}" for i in range(len(strings.items))]))
    strings.save(tmp_path / "strings")
    r = runner.invoke(main, ["eval", "--generate", "--model", str(tmp_path / "strings" / "model.npz"),
                             "--raw_ids"])
    assert r.exit_code == 1 and "integer movie ids" in r.output, r.output
    assert len(r.output.splitlines()) == 1 and not (tmp_path / "strings" / "model.onnx").exists()


def test_a_checkpoint_saved_under_another_name_exports_beside_it_under_its_name(trained,
                                                                              tmp_path):
    """Two checkpoints in one folder (``save("d/best.npz")``) get two exports."""
    from npcf import AutoEncoder
    folder = tmp_path / "d"
    model = AutoEncoder.load(trained / "model.npz")
    model.save(folder / "best.npz")
    model.save(folder / "last.npz")
    runner = CliRunner()
    for name in ("best", "last"):
        r = runner.invoke(main, ["eval", "--generate", "--model", str(folder / f"{name}.npz")])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["best.onnx", "last.onnx"]


def test_generate_names_a_checkpoint_it_cannot_export(tmp_path):
    from npcf import AutoEncoder

    from helpers import tiny_ratings
    AutoEncoder(layers=(4,), n_epochs=1, item_based=True).fit(tiny_ratings()).save(tmp_path / "m")
    r = CliRunner().invoke(main, ["eval", "--generate", "--model", str(tmp_path / "m" / "model.npz")])
    assert r.exit_code == 1
    assert r.output.strip().startswith(f"Error: {tmp_path / 'm' / 'model.npz'}: item-based")


def test_generate_never_overwrites_a_file_npcf_did_not_export(trained, tmp_path):
    runner = CliRunner()
    base = ["eval", "--generate", "--model", str(trained / "model.npz"), "--top_k", "5"]
    mine = tmp_path / "mine.onnx"
    mine.write_text("my notes, not a model")
    r = runner.invoke(main, base + ["--out", str(mine)])
    assert r.exit_code == 1 and "not an npcf export" in r.output
    assert len(r.output.strip().splitlines()) == 1 and mine.read_text() == "my notes, not a model"
    ours = tmp_path / "ours.onnx"
    assert runner.invoke(main, base + ["--out", str(ours)]).exit_code == 0
    assert runner.invoke(main, base + ["--out", str(ours)]).exit_code == 0   # its own: replaced


def test_generate_into_a_run_directory_in_use_is_refused(trained, tmp_path):
    """An export into a run directory another command holds (train rebuilding it) fails
    at once (exit 1, one line) rather than being reported written and swapped away."""
    from npcf.utils.files import dir_lock
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = sorted(p.name for p in run.iterdir())
    with dir_lock(run):
        r = CliRunner().invoke(main, ["eval", "--generate", "--model", str(trained / "model.npz"),
                                      "--top_k", "5", "--out", str(run / "other.onnx")])
    assert r.exit_code == 1, r.output
    assert r.output.strip() == (f"Error: {run.resolve()}: in use by another npcf command; wait "
                                "for it to finish or choose another directory")
    assert sorted(p.name for p in run.iterdir()) == before


def test_generate_top_k_beyond_the_catalogue_is_a_usage_error(trained):
    r = CliRunner().invoke(main, ["eval", "--generate", "--model", str(trained / "model.npz"),
                                  "--top_k", "100000", "--out", str(trained / "x.onnx")])
    assert r.exit_code == 2, r.output
    assert "'--top_k': 100000: the model has only" in r.output
    assert not (trained / "x.onnx").exists()
