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
