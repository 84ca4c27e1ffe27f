"""The README's cross-data-set table is generated from a run's results (benchmarks/crossdata.py)."""
import importlib.util
from pathlib import Path

_dir = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_crossdata", _dir / "crossdata.py")
crossdata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crossdata)


def _row(model, rmse, seconds=1.0):
    return {"model": model, "rmse": rmse, "mae": rmse * 0.8, "seconds": seconds}


def _res():
    return {"sets": ["movies-small", "flixster", "yahoo_music"],
            "rows": {"movies-small": [_row("npcf, model selection (default)", 0.84712, 36.6),
                                      _row("Surprise SVD++", 0.9), _row("Surprise KNNBaseline", 0.87),
                                      {"model": crossdata.IGMC_NAME, "skipped": "not run"}],
                     "flixster": [_row("npcf, model selection (default)", 0.8868, 25.4),
                                  _row("Surprise SVD++", 0.898),
                                  _row(crossdata.IGMC_NAME, 0.8841, 194.0)],
                     "yahoo_music": [_row("npcf, model selection (default)", 19.004, 8.4),
                                     _row("Surprise KNNBaseline", 20.61)]},
            "published": [{"model": "GC-MC (van den Berg et al. 2017)", "flixster": 0.917,
                           "yahoo_music": 20.5},
                          {"model": "IGMC (Zhang and Chen 2020)", "flixster": 0.872,
                           "yahoo_music": 19.1}],
            "budget": 120.0}


def test_readme_table_bolds_each_columns_best_and_keeps_only_winning_published_rows(monkeypatch):
    monkeypatch.syspath_prepend(str(_dir))        # crossdata imports report as a sibling
    lines = crossdata.readme_table(_res()).splitlines()
    assert lines[0] == "| model | movies-small (90/10) | flixster | yahoo_music (1-100) |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert rows["npcf default (model selection)"] == \
        "| npcf default (model selection) | **0.8471** (37 s) | 0.8868 (25 s) | **19.00** (8 s) |"
    # a skipped or missing model is "-"; two models share a row where the label says so
    assert rows["Surprise SVD++ / KNNBaseline"] == \
        "| Surprise SVD++ / KNNBaseline | 0.9000 / 0.8700 | 0.8980 / - | - / 20.61 |"
    assert rows["IGMC (NumPy, the paper's recipe)"].endswith("| - | 0.8841 (194 s) | - |")
    # published: only a row holding some column's best figure, as published (no padding)
    assert rows["IGMC (published)"] == "| IGMC (published) | - | **0.872** | 19.1 |"
    assert not any(k.startswith("GC-MC") for k in rows)
    assert "npcf `--tune off`" not in rows          # not run: no row at all
