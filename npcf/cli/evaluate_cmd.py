"""``npcf eval --evaluate`` (a trained model) and ``npcf eval --baselines``.

What is measured comes from the split files written by ``prepare``/``train``
(``train.npz``, ``test.npz``, ``test_input.npz``, ``validation*.npz``): the model is
fed each test user's ``test_input`` row and judged on the user's ``test`` entries.

* random rating holdout (``--split random``, the default): 10% of all ratings are
  held out; the input is the user's other ratings (train + validation). RMSE/MAE
  on the held-out ratings are the headline; top-N metrics are also reported.
* per-user holdout (``--split user``) and ``temporal`` (each user's latest
  ratings): the top-N protocol; the held-out items are ranked among all items the
  user has not rated.
* held-out users (``--split users``, strong generalization): the test users were
  never trained on; their ``test_input`` (fold-in part) goes through the model
  and the rest is the target, so this measures new users without retraining.

Ranking metrics exclude the user's input items. Relevant items are held-out
ratings >= 4.0 when the rating scale reaches 4 or more and the model predicts
ratings (MSE loss; rating baselines); for the multinomial loss and implicit data
every held-out item is relevant. ``--baselines`` evaluates all baselines with the
data's threshold (4.0 for explicit ratings) so they compare with each other.
Metrics: see :mod:`npcf.evaluation.metrics`; the JSON (``--json``) has the same keys.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from npcf.errors import NpcfError
from npcf.cli.base import table

MODELS_DIR = Path("models")
ROW_LABELS = {"precision": "Precision", "recall": "Recall", "ndcg": "NDCG", "map": "MAP",
              "hit_rate": "Hit rate", "coverage": "Coverage", "gini": "Gini (exposure)",
              "popularity": "Popularity pct", "personalization": "Personalization"}
BASELINE_NAMES = ("global_mean", "biases", "popularity", "ease")


# --------------------------------------------------------------------------- helpers
def parse_ks(text) -> tuple[int, ...]:
    """``"10,20,100"`` -> (10, 20, 100); BadParameter on anything else."""
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p for p in str(text).split(",") if p.strip()]
    try:
        ks = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated cut-offs like 10,20,100, "
                                 f"got {text!r}", param_hint="-k") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter(f"cut-offs must be positive integers, got {text!r}",
                                 param_hint="-k")
    return ks


def resolve_model(model) -> Path:
    """``--model`` or the default ``models/model.onnx`` (else ``models/model.npz``)."""
    if model:
        path = Path(model)
        if not path.exists():
            raise NpcfError(f"{path}: no such model")
        return path
    for name in ("model.onnx", "model.npz"):
        if (MODELS_DIR / name).is_file():
            return MODELS_DIR / name
    raise NpcfError(f"no model in {MODELS_DIR}/ (model.onnx or model.npz); run "
                    "`python cli.py train` (and `eval --generate`) first or pass --model")


class _Scorer:
    """A loaded model as ``score_fn`` plus what evaluation needs to know about it."""

    def __init__(self, fn, kind, loss, item_ids, path, by_row_index=False):
        self.fn, self.kind, self.loss, self.item_ids, self.path = fn, kind, loss, item_ids, path
        self.by_row_index = by_row_index

    def __call__(self, rows):
        return self.fn(rows)


def load_scorer(path: Path, batch_size: int = 256, test_input=None) -> _Scorer:
    """``.onnx`` -> :class:`~npcf.serving.runtime.Recommender`; ``.npz`` or directory -> ``npcf.load``.

    ``test_input``: the full input matrix, needed by item-based models (which
    score all users at once).
    """
    if path.suffix == ".onnx":
        from npcf.serving.runtime import Recommender
        rec = Recommender.load(path)
        try:
            loss = json.loads(rec.meta.get("architecture", "{}")).get("loss", "mse")
        except ValueError:
            loss = "mse"
        return _Scorer(lambda x: rec.scores(x, batch_size=batch_size), "onnx", loss,
                       rec.item_ids, path)
    import npcf
    model = npcf.load(path)
    ids = model.items.ids if model.items is not None else None
    if model.item_based:
        if test_input is None:
            raise NpcfError("an item-based model needs the full input matrix")
        full = model.predict(test_input)
        return _Scorer(lambda u: full[u], "npz", model.loss, ids, path, by_row_index=True)
    return _Scorer(lambda x: model.predict(x, batch_size=batch_size), "npz", model.loss, ids,
                   path)


def resolve_data(data, model_dir: Path | None):
    """The prepared :class:`~npcf.data.Dataset` from ``--data`` or the one train recorded."""
    from npcf.data import is_prepared, load_prepared
    from npcf.cli.evaluate import _recorded_data
    if data is not None:
        if not is_prepared(data):
            raise NpcfError(f"{data}: not a prepared data directory (no stats.json); pass "
                            "the data/ folder written by train (or `prepare`)")
        return load_prepared(data)
    found = _recorded_data(model_dir) if model_dir is not None else None
    if found is None:
        where = f" in {model_dir}/metrics.json" if model_dir is not None else ""
        raise NpcfError(f"no test data recorded{where}; pass --data DIR (a prepared directory)")
    return load_prepared(found)


def _check_items(ds, item_ids, path) -> None:
    n = ds.split.test.shape[1]
    if item_ids is None:
        return
    if len(item_ids) != n or not np.array_equal(np.asarray(item_ids).astype(str),
                                                ds.items.ids.astype(str)):
        raise NpcfError(f"{path} was trained on other movies than {ds.path} "
                        f"({len(item_ids)} vs {n} items); pass the matching --data")


def protocol(params: dict) -> str:
    """One line describing the split protocol."""
    kind = params.get("kind", "random")
    size = params.get("test_size")
    pct = f"{size:.0%} " if isinstance(size, (int, float)) else ""
    if kind == "users":
        h = float(params.get("holdout", 0.2))
        return (f"held-out users ({pct.strip() or 'some'}): fold in {1 - h:.0%} of their "
                f"ratings, predict {h:.0%}")
    if kind in ("user", "temporal"):
        which = "latest" if kind == "temporal" else "random"
        return f"per-user holdout ({pct}of each user's ratings, {which}): top-N"
    if kind == "given":
        return "given train/test files"
    return f"random rating holdout ({pct}of ratings): rating prediction and top-N"


def _num(v, key: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key.startswith("popularity"):
        return f"{v:.1f}"
    return f"{v:.4f}"


def metrics_table(result: dict, ks) -> str:
    """Rows = metrics, columns = cut-offs K (fits in 80 columns)."""
    rows = [[label] + [_num(result.get(f"{m}@{k}"), m) for k in ks]
            for m, label in ROW_LABELS.items()]
    return table(rows, ["metric"] + [f"@{k}" for k in ks], align="l" + "r" * len(ks))


def compare_table(results: dict, ks) -> str:
    """Rows = metrics (RMSE, MAE, then each metric at each K), columns = models."""
    names = list(results)
    rows = [[key.upper()] + [_num(results[n].get(key)) for n in names] for key in ("rmse", "mae")]
    for m, label in ROW_LABELS.items():
        for k in ks:
            rows.append([f"{label}@{k}"] + [_num(results[n].get(f"{m}@{k}"), m)
                                            for n in names])
    return table(rows, ["metric"] + names, align="l" + "r" * len(names))


def _titles(ds) -> dict:
    if ds.movies is None or "title" not in ds.movies.columns:
        return {}
    return {k: str(v) for k, v in ds.movies["title"].items()}


def _short(t: str, width: int) -> str:
    return t if len(t) <= width else t[:width - 1] + "…"


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def example_records(result: dict, ds, n_items: int = 5) -> list[dict]:
    """The evaluated example users with raw ids and titles (JSON-friendly)."""
    titles = _titles(ds)
    out = []
    for ex in result.get("examples", []):
        rel = set(ex["relevant"])
        top = []
        for col, s in zip(ex["items"][:n_items], ex["scores"][:n_items]):
            mid = _plain(ds.items.ids[col])
            top.append({"movie_id": mid, "title": titles.get(mid, ""),
                        "score": round(float(s), 4), "relevant": col in rel})
        out.append({"user_id": _plain(ds.users.ids[ex["user"]]), "n_input": ex["n_input"],
                    "n_heldout": ex["n_heldout"], "n_relevant": len(rel), "top": top})
    return out


def examples_text(records: list[dict]) -> str:
    blocks = []
    for r in records:
        head = (f"user {r['user_id']}: {r['n_input']} ratings in, {r['n_heldout']} held out "
                f"({r['n_relevant']} relevant); top {len(r['top'])}  (* = relevant)")
        rows = [(i + 1, "*" if t["relevant"] else "", str(t["movie_id"]),
                 _short(t["title"], 50), f"{t['score']:.3f}") for i, t in enumerate(r["top"])]
        blocks.append(head + "\n" + table(rows, ("#", "", "movie", "title", "score"),
                                          align="rlrlr"))
    return "\n\n".join(blocks)


def _clean(obj):
    """NaN -> None and numpy scalars -> Python, recursively (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path, obj) -> None:
    from npcf.utils.files import write_json
    write_json(path, _clean(obj))


def _counts(ds) -> np.ndarray:
    s = ds.split
    return np.bincount(s.train.indices, minlength=s.train.shape[1])


def _summary(result: dict) -> str:
    line = f"test: {result['n_users']:,} users, {result['n_ratings']:,} held-out ratings"
    thr = result.get("threshold")
    rel = (f"relevant: held-out rating >= {thr:g} ({result['n_relevant']:,} ratings of "
           f"{result['n_ranked_users']:,} users)") if thr is not None else \
        "relevant: every held-out item"
    return line + "\n" + rel


# ------------------------------------------------------------------------- commands
def evaluate(model, data, batch_size, ks, json_out, quiet, threshold=None) -> dict:
    """Evaluate ``model`` (.onnx, .npz or directory) on the test split; print and return."""
    from npcf.evaluation.protocol import evaluate as run
    from npcf.evaluation.metrics import default_threshold
    ks = parse_ks(ks)
    path = resolve_model(model)
    model_dir = path if path.is_dir() else path.parent
    ds = resolve_data(data, model_dir)
    s = ds.split
    scorer = load_scorer(path, batch_size, test_input=s.test_input)
    _check_items(ds, scorer.item_ids, path)
    rating = scorer.loss == "mse"
    # Relevance is a property of the data, not of the model, so that every model
    # (and the baselines) is judged on the same held-out items.
    if threshold is None:
        threshold = default_threshold(ds.scale)
    elif threshold <= 0:
        threshold = None
    result = run(scorer, s.test_input, s.test, ks=ks, item_counts=_counts(ds), rating=rating,
                 threshold=threshold, batch_size=batch_size, progress=not quiet)
    records = example_records(result, ds)
    click.echo(f"model: {path} ({scorer.kind}, {scorer.loss} loss)")
    click.echo(f"data: {ds.path}")
    click.echo(f"protocol: {protocol(s.params)}")
    click.echo(_summary(result))
    if rating:
        click.echo(f"RMSE {_num(result['rmse'])}   MAE {_num(result['mae'])}")
    click.echo("")
    click.echo(metrics_table(result, ks))
    if records:
        click.echo("")
        click.echo(examples_text(records))
    out = {k: v for k, v in result.items() if k != "examples"}
    out.update(model=str(path), format=scorer.kind, loss=scorer.loss,
               data=str(ds.path) if ds.path else None, split=s.params,
               protocol=protocol(s.params), examples=records)
    if json_out:
        _write_json(json_out, out)
        click.echo(f"\nwrote {json_out}")
    return _clean(out)


def _baseline_data(data, quiet):
    from npcf.data import is_prepared, load_dataset
    if data is None:
        from npcf.cli.evaluate import _recorded_data
        found = _recorded_data(MODELS_DIR)
        if found is None:
            raise NpcfError("no data: pass --data (a prepared directory, ratings file or "
                            f"dataset name); none recorded in {MODELS_DIR}/metrics.json")
        data = found
    if is_prepared(data):
        from npcf.data import load_prepared
        return load_prepared(data)
    return load_dataset(data, progress=not quiet)


def run_baselines(data, ks, json_out, quiet, threshold=None, batch_size=256,
                  names=BASELINE_NAMES) -> dict:
    """Fit every baseline on the split's training part and evaluate them side by side.

    ``data``: a prepared directory (default: the one train recorded in ``models/``),
    or a ratings file / dataset name split as ``train`` would by default. A
    validation part is carved from training (:func:`npcf.workflows.with_validation`)
    when the split has none; it picks EASE's lambda and the biases' regularisation.
    """
    from npcf.evaluation import baselines
    from npcf.evaluation.protocol import evaluate as run
    from npcf.evaluation.metrics import default_threshold
    from npcf.workflows import with_validation
    ks = parse_ks(ks)
    ds = with_validation(_baseline_data(data, quiet))
    s = ds.split
    if threshold is None:
        threshold = default_threshold(ds.scale)
    elif threshold <= 0:
        threshold = None
    counts = _counts(ds)
    results = {}
    for model in baselines.make(names, scale=ds.scale, threshold=threshold):
        if not quiet:
            click.echo(f"fitting {model.name} ...", err=True)
        model.fit(s.train, s.validation, s.validation_input)
        r = run(model.predict, s.test_input, s.test, ks=ks, item_counts=counts,
                rating=model.rating, threshold=threshold, batch_size=batch_size,
                progress=not quiet, examples=0, label=model.name)
        r.pop("examples", None)
        r["params"] = model.params()
        results[model.name] = r
    first = next(iter(results.values()))
    where = str(ds.path) if ds.path else str(ds.stats.get("source", data))
    click.echo(f"baselines on: {where}")
    click.echo(f"protocol: {protocol(s.params)}")
    click.echo(_summary(first))
    click.echo("")
    click.echo(compare_table(results, ks))
    chosen = [f"{label} {results[n]['params'][key]:g}" for n, label, key in
              (("ease", "EASE lambda", "lambda"), ("biases", "biases reg", "reg"))
              if n in results]
    if chosen:
        click.echo(f"\nchosen on validation: {', '.join(chosen)}")
    out = {"data": where, "split": s.params, "protocol": protocol(s.params),
           "threshold": threshold, "ks": list(ks), "models": results}
    if json_out:
        _write_json(json_out, out)
        click.echo(f"\nwrote {json_out}")
    return _clean(out)
