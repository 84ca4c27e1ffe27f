"""Rating prediction across data sets: movies-small (random 90/10 split, seed 0) and the
Flixster and Yahoo! Music matrices of Monti et al. with their canonical train/test
splits (``../shared/datasets/monti``, see its README), side by side with the baselines,
a torch I-AutoRec (:mod:`iautorec_torch`), IGMC in NumPy (:mod:`igmc`, on the monti
sets it was published on) and the published figures.

npcf is run through :func:`npcf.workflows.train`, i.e. exactly what ``python cli.py
train`` does: validation carved from the training part (never the test part), model
selection within the CLI's default budget, or ``--tune off`` (the plain defaults).

    python benchmarks/crossdata.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"
MONTI = DATASETS / "monti"
#: ``load_dataset`` keywords of each data set, as ``cli.py train --data/--train/--test/--scale``
SETS = {
    "movies-small": dict(data=str(DATASETS / "movies-small" / "ratings.csv")),
    "flixster": dict(train_file=str(MONTI / "flixster" / "train.csv"),
                     test_file=str(MONTI / "flixster" / "test.csv")),
    "yahoo_music": dict(train_file=str(MONTI / "yahoo_music" / "train.csv"),
                        test_file=str(MONTI / "yahoo_music" / "test.csv"), scale=(1.0, 100.0)),
}
#: what ``cli.py train`` passes as hyperparameters when no option is given
CLI_PARAMS = dict(denoise=True, tied=True, seed=0, lazy=True)
#: where :mod:`igmc` runs: the sets it was published on (movies-small's users with up to
#: 2,391 ratings make its subgraphs, and an epoch, ~50x flixster's)
IGMC_SETS = ("flixster", "yahoo_music")
IGMC_NAME = "IGMC (NumPy, paper's recipe)"
#: ``--quick``: epochs per npcf model and seconds of model selection
QUICK_EPOCHS, QUICK_BUDGET = 3, 5.0


def published() -> list[dict]:
    """The published test RMSEs of the monti README's table (not measured here)."""
    readme = MONTI / "README.md"
    if not readme.is_file():
        return []
    rows = []
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and all(re.fullmatch(r"\d+(\.\d+)?", c) for c in cells[1:]):
            rows.append({"model": cells[0], "flixster": float(cells[1]),
                         "yahoo_music": float(cells[2])})
    return rows


def _cores() -> int:
    """What ``cli.py train`` uses without ``--threads``: every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def npcf_row(name: str, tune: bool, quick: bool) -> dict:
    """``cli.py train`` (``tune``: default model selection; else ``--tune off``) on data set
    ``name`` in a throw-away run directory; the seconds are the whole command's."""
    from npcf import workflows
    params = dict(CLI_PARAMS, **({"n_epochs": QUICK_EPOCHS} if quick else {}))
    budget = QUICK_BUDGET if quick else workflows.TUNE_BUDGET
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = workflows.train(params, out, dict(SETS[name], seed=0), tune=tune, fixed=set(),
                              tune_budget=budget, threads=_cores(), echo=lambda *a: None)
        seconds = time.perf_counter() - t0
    hp = res["hyperparameters"]
    row = dict(model="npcf, model selection (default)" if tune else "npcf --tune off",
               rmse=res["test"]["rmse"], mae=res["test"]["mae"], seconds=seconds,
               val_rmse=res["validation"].get("val_rmse"),
               item_based=hp["item_based"], layers=hp["layers"], activation=hp["activation"])
    if tune and res["tuning"]:
        row.update(chosen=res["tuning"]["chosen"], trials=res["tuning"]["trials"],
                   search_seconds=res["tuning"]["seconds"], budget=budget,
                   blend=res.get("blend"))
    return row


def measured_rows(name: str, quick: bool) -> list[dict]:
    """Every measured row of data set ``name`` (test RMSE/MAE and seconds each)."""
    import iautorec_torch
    import igmc
    import quality

    from npcf.data import load_dataset
    from npcf.data.dataset import with_validation
    ds = with_validation(load_dataset(**SETS[name], seed=0), seed=0)
    s = ds.split
    rows = [npcf_row(name, True, quick), npcf_row(name, False, quick)]
    rows += quality.baseline_rows(ds)
    rows += quality.surprise_rows(s, ds, quick)
    if iautorec_torch.available():
        r = iautorec_torch.run(s.train + s.validation, s.test, ds.scale, quick)
        rows.append(dict(r, model="I-AutoRec (torch, 500 sigmoid)"))
    else:
        rows.append(dict(model="I-AutoRec (torch, 500 sigmoid)", skipped="torch not installed"))
    if name in IGMC_SETS:
        rows.append(dict(igmc.run(s.train + s.validation, s.test, ds.scale, quick),
                         model=IGMC_NAME))
    for r in rows:
        print(f"{name}: {r['model']}: " + (r["skipped"] if "skipped" in r else
              f"RMSE {r['rmse']:.4f} MAE {r['mae']:.4f} ({r['seconds']:.1f} s)"), flush=True)
    return rows


def run(quick: bool = False) -> dict:
    """``{"sets": [names], "rows": {name: [rows]}, "published": [...], "budget": s}``."""
    from npcf import workflows
    return {"sets": list(SETS), "rows": {name: measured_rows(name, quick) for name in SETS},
            "published": published(),
            "budget": QUICK_BUDGET if quick else workflows.TUNE_BUDGET}


def _cells(row: dict | None, digits: int) -> tuple:
    if row is None:
        return ("", "", "")
    if "skipped" in row:
        return ("skipped", "", "")
    return (f"{row['rmse']:.{digits}f}", f"{row['mae']:.{digits}f}", f"{row['seconds']:.1f}")


def markdown(res: dict) -> str:
    """The cross-data-set table, the search's choices and the notes."""
    from report import md_table
    sets, rows = res["sets"], res["rows"]
    digits = {name: 2 if name == "yahoo_music" else 4 for name in sets}
    models = list(dict.fromkeys(r["model"] for name in sets for r in rows[name]))
    by = {name: {r["model"]: r for r in rows[name]} for name in sets}
    table = [(m, *[c for name in sets for c in _cells(by[name].get(m), digits[name])])
             for m in models]
    table += [(f"{p['model']} (published)", *[c for name in sets for c in (
        (f"{p[name]:g}", "", "published") if name in p else ("", "", ""))])
        for p in res["published"]]
    skipped = sorted({f"{r['model']}: {r['skipped']}" for name in sets for r in rows[name]
                      if "skipped" in r})
    headers = ("model", *[f"{name} {col}" for name in sets for col in ("RMSE", "MAE", "s")])
    return "\n".join([
        "Rating prediction across data sets (test set; lower is better; s = training "
        "seconds, wall time on this shared 2-core machine). movies-small: random 90/10 "
        "split, seed 0; flixster and yahoo_music (scale 1-100): the canonical train/test "
        "split of Monti et al. 2017 (`../shared/datasets/monti`).", "",
        md_table(headers, table, "l" + "r" * (len(headers) - 1)), "",
        choices_table(res), "",
        "npcf rows are `workflows.train`, i.e. `python cli.py train --data ...` (or `--train "
        "--test [--scale 1,100]`): its validation part is 10% of the training ratings "
        "(never the test part); \"model selection\" is the CLI default (successive halving "
        "over `npcf.autoencoder.selection.SPACE` on the validation RMSE, budget "
        f"{res['budget']:g} s, so the chosen model can depend on "
        "the machine's speed), `--tune off` fits the plain `AutoEncoder()` defaults "
        "(user-based). Their seconds are the whole command (reading, search, fit, test). "
        "Baselines and Surprise fit on the training part (Surprise on all of it, its "
        "default settings; KNNBaseline item-item, pearson_baseline); pairs with an unseen "
        "user or item get Surprise's own fallback. I-AutoRec: `benchmarks/iautorec_torch.py`"
        " (item-based, 500 sigmoid units, identity output, Adam lr 1e-3, L2 lambda from 1, "
        "10, 100, 300 chosen on a 5% slice of the training ratings, early stopping on it, "
        "torch at 1 thread; "
        "unseen user or item -> training mean). IGMC: `benchmarks/igmc.py`, NumPy with a "
        "hand-written backward pass, the paper's recipe untuned (1-hop subgraphs, 4 R-GCN "
        "layers of 32, 4 bases, adjacent-rating regularisation 1e-3, edge dropout 0.2, Adam "
        "1e-3, batch 50, 40 epochs, mean of the models after epochs 10/20/30/40), on the monti "
        "sets only. Published rows are the monti README's figures, not run here.",
    ] + ([f"Skipped: {'; '.join(skipped)}."] if skipped else []))


#: the README's short table: (label, measured model names joined by " / ", seconds shown)
README_ROWS = (
    ("npcf default (model selection)", ("npcf, model selection (default)",), True),
    ("npcf `--tune off`", ("npcf --tune off",), False),
    ("user+item biases", ("user+item biases",), False),
    ("Surprise SVD++ / KNNBaseline", ("Surprise SVD++", "Surprise KNNBaseline"), False),
    ("I-AutoRec (torch, lambda on 5% validation)", ("I-AutoRec (torch, 500 sigmoid)",), False),
    ("IGMC (NumPy, the paper's recipe)", (IGMC_NAME,), True),
)


def readme_table(res: dict) -> str:
    """The README's cross-data-set table: test RMSE of the headline rows of ``res`` (as
    :func:`run` returns it) and the published rows holding a column's best figure; the
    best figure of each column in bold, ``-`` where a model was not run."""
    from report import md_table
    sets, digits = res["sets"], {name: 2 if name == "yahoo_music" else 4 for name in res["sets"]}
    by = {name: {r["model"]: r for r in res["rows"][name] if "rmse" in r} for name in sets}
    best = {name: min([r["rmse"] for r in by[name].values()] +
                      [p[name] for p in res["published"] if name in p], default=None)
            for name in sets}

    def fig(value: float, name: str, published: bool = False) -> str:
        text = f"{value:g}" if published else f"{value:.{digits[name]}f}"
        return f"**{text}**" if best[name] is not None and round(value, digits[name]) <= \
            round(best[name], digits[name]) else text

    rows = []
    for label, models, timed in README_ROWS:
        cells = []
        for name in sets:
            got = [by[name].get(m) for m in models]
            cell = " / ".join(fig(r["rmse"], name) if r else "-" for r in got) \
                if any(got) else "-"
            if timed and len(got) == 1 and got[0]:
                cell += f" ({got[0]['seconds']:.0f} s)"
            cells.append(cell)
        if any(c != "-" for c in cells):
            rows.append((label, *cells))
    for p in res["published"]:
        if any(name in p and best[name] is not None and p[name] <= best[name] for name in sets):
            rows.append((f"{p['model'].split(' (')[0]} (published)",
                         *[fig(p[name], name, True) if name in p else "-" for name in sets]))
    heads = {"movies-small": "movies-small (90/10)", "yahoo_music": "yahoo_music (1-100)"}
    return md_table(("model", *[heads.get(name, name) for name in sets]), rows,
                    "l" + "r" * len(sets))


def choices_table(res: dict) -> str:
    """What the searches chose per data set (validation figures only)."""
    from report import md_table
    out = []
    for name in res["sets"]:
        by = {r["model"]: r for r in res["rows"][name]}
        tuned = by.get("npcf, model selection (default)", {})
        iar = by.get("I-AutoRec (torch, 500 sigmoid)", {})
        chosen = ", ".join(f"{k}={v}" for k, v in sorted(tuned.get("chosen", {}).items()))
        out.append((name, chosen, tuned.get("trials", ""),
                    f"{tuned['search_seconds']:.0f}" if "search_seconds" in tuned else "",
                    f"{tuned['val_rmse']:.4f}" if tuned.get("val_rmse") else "",
                    _blend_cell(tuned.get("blend")),
                    f"{iar['lambda']:g}" if "lambda" in iar else "",
                    f"{iar['best_epoch']}" if "best_epoch" in iar else ""))
    return md_table(("data set", "npcf model selection chose", "trials", "search s", "val RMSE",
                     "blend", "I-AutoRec lambda", "best epoch"), out, "llrrrlrr")


def _blend_cell(info: dict | None) -> str:
    """The blend decision of ``train`` (``metrics.json`` "blend")."""
    from npcf.autoencoder import blend

    return blend.describe(info) if info else "not tried"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs, 5 s of model selection")
    args = ap.parse_args(argv)
    res = run(args.quick)
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
