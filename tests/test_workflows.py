"""npcf.workflows called as a library: the keys of ``params`` are what the search keeps."""
from __future__ import annotations

import shutil

from npcf import workflows

from helpers import tiny_ratings


def ratings_csv(tmp_path):
    """A small MovieLens-style ratings.csv (60 users x 40 movies) in ``tmp_path``."""
    m = tiny_ratings(60, 40, 0.3).tocoo()
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n" + "".join(
        f"{u + 1},{i + 1},{r}\n" for u, i, r in zip(m.row, m.col, m.data)))
    return path


def test_train_keeps_the_given_params_and_searches_the_rest(tmp_path):
    path = ratings_csv(tmp_path)
    result = workflows.train({"layers": (8,), "n_epochs": 3}, tmp_path / "run",
                             {"data": str(path)}, tune=True, tune_budget=10)
    assert list(result["hyperparameters"]["layers"]) == [8]
    chosen = result["tuning"]["chosen"]
    assert "layers" not in chosen and "n_epochs" not in chosen and chosen


def test_an_export_is_checked_against_its_own_checkpoint_wherever_it_is_written(tmp_path):
    import pytest

    from npcf.errors import NpcfError
    from npcf.serving.runtime import Recommender
    path = ratings_csv(tmp_path)
    params = {"layers": (8,), "n_epochs": 2}
    for run in ("r1", "r2"):
        workflows.train(dict(params, seed=len(run) + (run == "r2")), tmp_path / run,
                        {"data": str(path)}, tune=False)
    out = tmp_path / "r2" / "from_r1.onnx"            # beside another run's model.npz
    workflows.export_model(tmp_path / "r1" / "model.npz", out)
    workflows.check_fresh(Recommender.load(out), out)  # r2/model.npz is not its source
    workflows.train(dict(params, seed=7), tmp_path / "r1", {"data": str(path)}, tune=False)
    inside = tmp_path / "r1" / "model.onnx"            # the old export, beside its source
    shutil.copy2(out, inside)
    with pytest.raises(NpcfError, match="r1/model.npz"):
        workflows.check_fresh(Recommender.load(inside), inside)
    # every command that loads an export refuses a stale one alike: serve, batch-recommend
    from npcf.serving import batch
    from npcf.serving.server import open_app
    with pytest.raises(NpcfError, match="older checkpoint"):
        open_app(inside)
    with pytest.raises(NpcfError, match="older checkpoint"):
        batch.batch_recommend(inside, path, tmp_path / "recs", workers=1)
    assert not (tmp_path / "recs").exists()
    # written elsewhere, it is a deployed file holding its whole model: used, with a warning
    from npcf.errors import NpcfWarning
    with pytest.warns(NpcfWarning, match="older checkpoint than .*r1/model.npz"):
        workflows.check_fresh(Recommender.load(out), out)
    with pytest.warns(NpcfWarning, match="older checkpoint"):
        open_app(out)


def test_evaluate_ranks_as_the_model_serves_with_its_popularity_penalty(tmp_path):
    """``eval --evaluate`` scores the ranking a penalised export serves (its penalty, its
    own counts): the same RMSE, other top lists, and the examples are the served ones."""
    from npcf.serving.runtime import Recommender
    path = ratings_csv(tmp_path)
    workflows.train({"layers": (8,), "n_epochs": 2}, tmp_path / "run", {"data": str(path)},
                    tune=False)
    plain, penalised = tmp_path / "run" / "plain.onnx", tmp_path / "run" / "pen.onnx"
    workflows.export_model(tmp_path / "run" / "model.npz", plain)
    workflows.export_model(tmp_path / "run" / "model.npz", penalised, popularity_penalty=5.0)
    r0, r5 = workflows.evaluate_model(plain), workflows.evaluate_model(penalised)
    assert (r0["popularity_penalty"], r5["popularity_penalty"]) == (0.0, 5.0)
    assert r5["rmse"] == r0["rmse"]
    assert r5["popularity@10"] < r0["popularity@10"]
    ds = workflows.recorded_dataset(None, tmp_path / "run")
    rec = Recommender.load(penalised)
    for ex in r5["examples"]:
        row = ds.users.index([ex["user_id"]])[0]
        served, _ = rec.recommend(ds.split.test_input[[row]], k=len(ex["top"]))
        assert [t["movie_id"] for t in ex["top"]] == served[0].tolist()


def test_options_that_cannot_go_together_are_refused_before_anything_runs(tmp_path):
    import pytest

    from npcf.errors import ParamError
    data = {"data": "synthetic"}
    with pytest.raises(ParamError, match="--batch_size, --lr would be ignored"):
        workflows.train({"optimizer": "lbfgs", "lr": 0.1, "batch_size": 8}, tmp_path / "r", data,
                        tune=False)
    with pytest.raises(ParamError, match="no search"):
        workflows.train({}, tmp_path / "r", data, tune=False, blend=2)
    with pytest.raises(ParamError, match="not resumable"):
        workflows.train({}, tmp_path / "r", data, tune=True, resume=True)
    assert not (tmp_path / "r").exists()


def test_an_export_whose_scores_are_not_numbers_is_not_written(tmp_path, monkeypatch):
    import numpy as np
    import pytest

    from npcf.errors import NpcfError
    from npcf.serving.runtime import Recommender
    path = ratings_csv(tmp_path)
    workflows.train({"layers": (8,), "n_epochs": 1}, tmp_path / "run", {"data": str(path)},
                    tune=False)
    monkeypatch.setattr(Recommender, "scores",
                        lambda self, x, batch_size=256: np.full((x.shape[0], 40), np.nan))
    with pytest.raises(NpcfError, match="not a number"):
        workflows.export_model(tmp_path / "run" / "model.npz", tmp_path / "run" / "x.onnx")
    assert not (tmp_path / "run" / "x.onnx").exists()


def test_a_files_maximum_held_only_by_the_test_part_is_in_the_models_scale(tmp_path):
    """A delimited file declares no scale: the model's is the whole file's observed range,
    so predictions reach the test part's 5 and a 5 is accepted as input."""
    import numpy as np

    from npcf.data.source import load_dataset
    m = tiny_ratings(60, 40, 0.3).tocoo()
    rating = np.minimum(m.data, 4.0)
    path = tmp_path / "r.csv"
    rows = [f"{u + 1},{i + 1},{r:g}\n" for u, i, r in zip(m.row, m.col, rating)]
    path.write_text("user,item,score\n" + "".join(rows))
    split = load_dataset(path, test_size=0.1, seed=0).split
    test = split.test.tocoo()
    u, i = test.row[0], test.col[0]                    # a pair the split puts in the test part
    lines = [r for r in rows if not r.startswith(f"{u + 1},{i + 1},")]
    path.write_text("user,item,score\n" + "".join(lines) + f"{u + 1},{i + 1},5\n")
    ds = load_dataset(path, test_size=0.1, seed=0)
    assert ds.split.train.data.max() == 4.0 and ds.split.test.data.max() == 5.0
    workflows.train({"layers": (8,), "n_epochs": 2}, tmp_path / "run", {"data": str(path)},
                    tune=False)
    from npcf.autoencoder.estimator import AutoEncoder
    assert AutoEncoder.load(tmp_path / "run").scale == (float(rating.min()), 5.0)


def test_a_run_directory_named_in_bytes_that_are_not_the_locales_exports_and_loads(tmp_path):
    """Under a non-UTF-8 locale (PYTHONUTF8=0, LANG=C) a non-ASCII name is a str with
    surrogates: its export crashed writing the checkpoint path into the graph's metadata,
    and onnxruntime could not open such a name."""
    from npcf.serving.runtime import Recommender
    run = tmp_path / "r\udcc3\udcbc"               # the bytes of 'rü', as such a locale sees them
    workflows.train({"layers": (8,), "n_epochs": 1}, run, {"data": str(ratings_csv(tmp_path))},
                    tune=False)
    out = run / "model.onnx"
    workflows.export_model(run / "model.npz", out)
    rec = Recommender.load(out)
    assert rec.meta["checkpoint_path"].endswith("/rü/model.npz")       # valid UTF-8 text
    workflows.check_fresh(rec, out)                                      # found and compared
