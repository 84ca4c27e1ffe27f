"""npcf.workflows called as a library: the keys of ``params`` are what the search keeps."""
from __future__ import annotations

from npcf import workflows

from helpers import tiny_ratings


def test_train_keeps_the_given_params_and_searches_the_rest(tmp_path):
    m = tiny_ratings(60, 40, 0.3).tocoo()
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n" + "".join(
        f"{u + 1},{i + 1},{r}\n" for u, i, r in zip(m.row, m.col, m.data)))
    result = workflows.train({"layers": (8,), "n_epochs": 3}, tmp_path / "run",
                             {"data": str(path)}, tune=True, tune_budget=10)
    assert list(result["hyperparameters"]["layers"]) == [8]
    chosen = result["tuning"]["chosen"]
    assert "layers" not in chosen and "n_epochs" not in chosen and chosen


def test_an_export_is_checked_against_its_own_checkpoint_wherever_it_is_written(tmp_path):
    import pytest

    from npcf.errors import NpcfError
    from npcf.serving.runtime import Recommender
    m = tiny_ratings(60, 40, 0.3).tocoo()
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId,rating\n" + "".join(
        f"{u + 1},{i + 1},{r}\n" for u, i, r in zip(m.row, m.col, m.data)))
    params = {"layers": (8,), "n_epochs": 2}
    for run in ("r1", "r2"):
        workflows.train(dict(params, seed=len(run) + (run == "r2")), tmp_path / run,
                        {"data": str(path)}, tune=False)
    out = tmp_path / "r2" / "from_r1.onnx"            # beside another run's model.npz
    workflows.export_model(tmp_path / "r1" / "model.npz", out)
    workflows.check_fresh(Recommender.load(out), out)  # r2/model.npz is not its source
    workflows.train(dict(params, seed=7), tmp_path / "r1", {"data": str(path)}, tune=False)
    with pytest.raises(NpcfError, match="r1/model.npz"):
        workflows.check_fresh(Recommender.load(out), out)
