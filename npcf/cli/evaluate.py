"""`npcf eval` (--generate: export to ONNX; --evaluate: metrics) and `npcf recommend`."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from npcf.errors import NpcfError
from npcf.cli.base import main, table

DEFAULT_MODEL = Path("models") / "model.npz"


def _model_dir(model: Path) -> Path:
    return model if model.is_dir() else model.parent


def _recorded_data(model_dir: Path):
    """The prepared data directory recorded by ``train`` in ``metrics.json`` (or None)."""
    f = model_dir / "metrics.json"
    if f.is_file():
        try:
            path = Path(json.loads(f.read_text()).get("data", ""))
        except ValueError:
            return None
        return path if (path / "stats.json").is_file() else None
    return None


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:,.2f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


@main.command("eval")
@click.option("--generate", "mode", flag_value="generate",
              help="Export the checkpoint to ONNX and check it against the NumPy forward.")
@click.option("--evaluate", "mode", flag_value="evaluate",
              help="Score a model (.onnx or .npz) on a test split.")
@click.option("--baselines", "mode", flag_value="baselines",
              help="Fit the baselines (global mean, biases, popularity, EASE) on --data's "
                   "training part and score them side by side.")
@click.option("--model", type=click.Path(), default=None,
              help="--generate: checkpoint [default: models/model.npz]; --evaluate: "
                   "model.onnx or model.npz [default: models/model.onnx].")
@click.option("--batch_size", default=256, show_default=True,
              help="Users per batch (parity check / evaluation).")
@click.option("--top_k", default=10, show_default=True,
              help="--generate: add top_items/top_scores outputs (0: scores only).")
@click.option("--sparse_input", is_flag=True,
              help="--generate: take (item_idx, item_rating) instead of a dense row.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="--generate: float32, float16 weights (half the "
              "file), or int8 dynamic quantization.")
@click.option("--popularity_penalty", default=0.0, show_default=True,
              help="--generate: rank by score - beta * log(1 + item popularity).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="--generate: output file [default: beside the checkpoint].")
@click.option("--data", default=None, help="--evaluate/--baselines: prepared directory with the test "
              "split [default: the one recorded by train].")
@click.option("-k", "ks", default="10,20,100", show_default=True,
              help="--evaluate/--baselines: cut-offs for ranking metrics.")
@click.option("--threshold", type=float, default=None,
              help="--evaluate/--baselines: held-out ratings >= this are relevant for top-N "
                   "[default: 4 for explicit ratings; 0: every held-out item].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="--evaluate/--baselines: also write the metrics as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_cmd(mode, model, batch_size, top_k, sparse_input, precision, popularity_penalty, out,
             data, ks, threshold, json_out, quiet):
    """Export a trained model to ONNX (--generate), evaluate one (--evaluate), or score the
    classic baselines on the same split (--baselines)."""
    if mode is None:
        raise click.UsageError("choose --generate, --evaluate or --baselines")
    if mode == "generate":
        _generate(Path(model) if model else DEFAULT_MODEL, batch_size, top_k, sparse_input,
                  precision, popularity_penalty, out)
    elif mode == "baselines":
        from npcf.cli.evaluate_cmd import run_baselines
        run_baselines(data, ks, json_out, quiet, threshold=threshold, batch_size=batch_size)
    else:
        from npcf.cli.evaluate_cmd import evaluate
        evaluate(model, data, batch_size, ks, json_out, quiet, threshold=threshold)


def _generate(model_path: Path, batch_size, top_k, sparse_input, precision, penalty, out):
    import scipy.sparse as sp

    from npcf.autoencoder.checkpoint import load_model
    from npcf.data import load_prepared
    from npcf.serving.export import OPSET, export
    from npcf.serving.runtime import Recommender
    if model_path.suffix == ".onnx":
        raise NpcfError(f"{model_path}: --generate needs an .npz checkpoint, not an ONNX file")
    if not model_path.exists() and model_path == DEFAULT_MODEL:
        raise NpcfError(f"{model_path}: no checkpoint; run `python cli.py train` first "
                        "or pass --model")
    model = load_model(model_path)
    folder = _model_dir(model_path)
    default_name = "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"
    out = Path(out) if out else folder / default_name
    export(model, out, sparse_input=sparse_input, top_k=top_k or None,
           popularity_penalty=penalty, item_counts=model.item_counts, precision=precision)
    # Parity on real users when the training data is known, else random rows.
    data_dir = _recorded_data(folder)
    if data_dir is not None:
        x = load_prepared(data_dir).split.test_input
        x = x[np.flatnonzero(np.diff(x.indptr))[:batch_size]]
    else:
        rng = np.random.default_rng(0)
        x = sp.random(batch_size, model.network.n_inputs, density=0.02, random_state=rng,
                      format="csr", dtype=np.float32)
        x.data = np.round(rng.uniform(1, 5, x.nnz) * 2) / 2
    got = Recommender.load(out).scores(x, batch_size=batch_size)
    ref = model.predict(x)
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    rel = err / max(1e-12, float(np.max(np.abs(ref)))) if ref.size else 0.0
    click.echo(f"wrote {out}  ({_size(out)}, opset {OPSET}, {precision}, "
               f"{'sparse' if sparse_input else 'dense'} input"
               f"{f', top-{top_k}' if top_k else ''})")
    tol = {"fp32": 1e-5, "fp16": 1e-3}.get(precision, 0.05)
    status = "ok" if rel <= tol else "MISMATCH"
    click.echo(f"parity vs NumPy on {x.shape[0]} users: max |diff| {err:.2e}, "
               f"relative {rel:.2e} ({status})")
    if status != "ok":
        raise NpcfError(f"ONNX output differs from the NumPy forward by {rel:.2e} (> {tol})")
    click.echo(f"next: python cli.py recommend --model {out} --user <id>")


@main.command()
@click.option("--model", type=click.Path(dir_okay=False), default="models/model.onnx",
              show_default=True, help="An exported model (eval --generate).")
@click.option("--user", default=None, help="Raw user id from the training data.")
@click.option("--ratings", default=None, metavar="ID:RATING,...",
              help="A (new) user's ratings, e.g. '1:5,260:4.5'.")
@click.option("-k", "k", default=10, show_default=True, help="Number of recommendations.")
@click.option("--movies", type=click.Path(dir_okay=False), default=None,
              help="Titles file (movies.csv, movies.dat, u.item) [default: from the data].")
@click.option("--data", default=None, help="Prepared directory holding --user's ratings "
              "[default: the one recorded by train].")
@click.option("--include_seen", is_flag=True, help="Allow movies the user already rated.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def recommend(model, user, ratings, k, movies, data, include_seen, as_json):
    """Top-k movies for a known user (--user) or a new one (--ratings)."""
    from npcf.serving.runtime import Recommender
    if (user is None) == (ratings is None):
        raise click.UsageError("give exactly one of --user or --ratings")
    model = Path(model)
    data_dir = Path(data) if data else _recorded_data(model.parent)
    if movies is None and data_dir is not None and (data_dir / "movies.csv").is_file():
        movies = data_dir / "movies.csv"
    rec = Recommender.load(model, movies=movies)
    if ratings is not None:
        rows = _parse_ratings(ratings)
    else:
        if data_dir is None:
            raise NpcfError("--user needs the training data: pass --data DIR (a prepared directory)")
        rows = _user_row(data_dir, user, rec)
    ids, scores, titles = rec.recommend(rows, k=k, exclude_seen=not include_seen)
    if np.ndim(ids) == 2:          # a one-row matrix for --user
        ids, scores, titles = ids[0], scores[0], titles[0] if titles is not None else None
    titles = titles if titles is not None else [""] * len(ids)
    if as_json:
        click.echo(json.dumps([{"rank": i + 1, "movie_id": _plain(m), "title": t,
                                "score": round(float(s), 4)}
                               for i, (m, t, s) in enumerate(zip(ids, titles, scores))]))
        return
    rows_out = [(i + 1, str(_plain(m)), _short(t), f"{s:.3f}")
                for i, (m, t, s) in enumerate(zip(ids, titles, scores))]
    click.echo(table(rows_out, ("rank", "movie", "title", "score"), align="rrlr"))


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _short(t: str, width: int = 52) -> str:
    return t if len(t) <= width else t[:width - 1] + "…"


def _parse_ratings(text: str):
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            mid, r = part.split(":")
            out.append((mid.strip(), float(r)))
        except ValueError:
            raise click.BadParameter(f"expected movieId:rating, got {part!r}",
                                     param_hint="--ratings") from None
    if not out:
        raise click.BadParameter("no ratings given", param_hint="--ratings")
    return out


def _user_row(data_dir: Path, user: str, rec):
    import scipy.sparse as sp

    from npcf.data import load_prepared
    ds = load_prepared(data_dir)
    idx = ds.users.index([user], missing="ignore")[0]
    if idx < 0:
        raise NpcfError(f"unknown user id {user} in {data_dir}")
    s = ds.split
    parts = [p[idx] for p in (s.train, s.validation, s.test_input) if p is not None]
    row = parts[0]
    for p in parts[1:]:
        row = row.maximum(p)
    if len(ds.items) != rec.n_items or not np.array_equal(ds.items.ids.astype(str),
                                                          rec.item_ids.astype(str)):
        raise NpcfError(f"{data_dir} does not match the model's movies")
    return sp.csr_matrix(row, dtype=np.float32)
