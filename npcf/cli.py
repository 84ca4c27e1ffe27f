"""The ``npcf`` command line: a thin click layer over the library.

Every :class:`~npcf.errors.NpcfError` (and OS error on a file) becomes one line
on stderr and exit code 1; click's usage errors exit with 2.
"""
from __future__ import annotations

import sys

import click

from .errors import NpcfError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NpcfError as err:
            raise click.ClickException(" ".join(str(err).split())) from None
        except (OSError, MemoryError) as err:
            name = getattr(err, "filename", None)
            msg = f"{name}: {err.strerror}" if name and getattr(err, "strerror", None) else str(err)
            raise click.ClickException(msg) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name=None, message="npcf %(version)s",
                      version=__import__("npcf").__version__)
def main():
    """npcf: deep-autoencoder collaborative filtering (NumPy/SciPy, ONNX)."""


def table(rows, headers=None, align=None) -> str:
    """Rows (sequences) as an aligned plain-text table; numbers right-aligned."""
    rows = [[_fmt(c) for c in r] for r in rows]
    if headers:
        rows.insert(0, list(headers))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [c.rjust(w) if (align or "l" * 0) and align[i] == "r" else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if headers and k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _floats(text: str | None, n: int | None = None, what: str = "value"):
    if text is None:
        return None
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise click.BadParameter(f"expected {n} numbers for {what}, got {len(vals)}")
    return vals


def data_options(f):
    """Options shared by every command that reads ratings."""
    opts = [
        click.option("--data", default=None, metavar="PATH_OR_NAME",
                     help="Ratings file, prepared directory or dataset name "
                          "(see `npcf datasets`). Default: the built-in synthetic set."),
        click.option("--format", "fmt", default="auto", show_default=True,
                     type=click.Choice(["auto", "movielens-csv", "movielens-dat", "ml-100k",
                                        "delimited"]), help="Ratings file format."),
        click.option("--sep", default=None, help="Delimiter of a delimited file."),
        click.option("--columns", default=None, metavar="USER,ITEM,RATING[,TIME]",
                     help="Column names of a delimited file with a header."),
        click.option("--scale", default=None, metavar="MIN,MAX",
                     help="Allowed rating range (default: the format's)."),
        click.option("--split", "split_kind", default="random", show_default=True,
                     type=click.Choice(["random", "user", "temporal", "users"]),
                     help="random: per-rating holdout; user: per-user holdout; temporal: "
                          "each user's latest; users: held-out users (strong generalization)."),
        click.option("--test_size", default=0.1, show_default=True, type=float,
                     help="Held-out fraction (of ratings, of each user's ratings, or of users)."),
        click.option("--validation_size", default=0.0, show_default=True, type=float,
                     help="Validation fraction carved from training the same way."),
        click.option("--holdout", default=0.2, show_default=True, type=float,
                     help="For --split users: fraction of a test user's ratings held out."),
        click.option("--train", "train_file", default=None, type=click.Path(),
                     help="A split made elsewhere: training file (with --test)."),
        click.option("--test", "test_file", default=None, type=click.Path(),
                     help="A split made elsewhere: test file (with --train)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def load_data(data, fmt, sep, columns, scale, split_kind, test_size, validation_size, holdout,
              train_file, test_file, seed, quiet=False, default_validation=None):
    """Call :func:`npcf.data.load_dataset` with parsed CLI options."""
    from .data import load_dataset
    cols = tuple(c.strip() for c in columns.split(",")) if columns else None
    if cols is not None and len(cols) not in (3, 4):
        raise click.BadParameter("--columns needs USER,ITEM,RATING[,TIMESTAMP]")
    return load_dataset(data, format=fmt, sep=sep, columns=cols,
                        scale=_floats(scale, 2, "--scale"), split=split_kind,
                        test_size=test_size, validation_size=validation_size,
                        holdout=holdout, seed=seed, train_file=train_file,
                        test_file=test_file, progress=not quiet)


def stats_table(stats: dict) -> str:
    keys = ("n_users", "n_items", "n_ratings", "density", "rating_min", "rating_max",
            "duplicates_resolved")
    rows = [(k, stats.get(k)) for k in keys]
    rows += [(f"{name} ratings", n) for name, n in stats.get("parts", {}).items()]
    return table(rows, ("", "value"), align="lr")


@main.command()
@data_options
@click.option("--seed", default=0, show_default=True, help="Seed of the split.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory to write the prepared data set to.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def prepare(data, fmt, sep, columns, scale, split_kind, test_size, validation_size, holdout,
            train_file, test_file, seed, out, quiet):
    """Read ratings, split them and write a prepared directory (npz + id maps + stats)."""
    from .data import save_prepared
    ds = load_data(data, fmt, sep, columns, scale, split_kind, test_size, validation_size,
                   holdout, train_file, test_file, seed, quiet)
    path = save_prepared(ds, out)
    click.echo(stats_table(ds.stats))
    click.echo(f"\nwrote {path}/ (split: {ds.stats['split'].get('kind')}, seed {seed})")


@main.command()
def datasets():
    """List the named datasets, their sizes and whether each is cached."""
    from .data.download import cache_dir, list_datasets
    rows = [(d["name"], f"{d['size_bytes'] / 1e6:,.1f} MB" if d.get("size_bytes") else "?",
             "yes" if d["cached"] else "no", d["description"]) for d in list_datasets()]
    rows.insert(0, ("synthetic", "built in", "yes", "seeded synthetic MovieLens-like set"))
    click.echo(table(rows, ("name", "size", "cached", "description"), align="lrll"))
    click.echo(f"\ncache: {cache_dir()}  (set NPCF_DATA to move it)")



def _layers(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected sizes like 1000,500,100, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, got {text!r}")
    return sizes


@main.command()
@data_options
@click.option("--denoiser/--basic", default=True, show_default=True,
              help="Corrupt the input (see --noise) or train a plain autoencoder.")
@click.option("--tied_weights/--not_tied", default=True, show_default=True,
              help="Decoder weights are the encoder's transposed (stored once).")
@click.option("--n_epochs", default=None, type=int, help="Maximum epochs.  [default: 40]")
@click.option("--batch_size", default=None, type=int, help="Users per batch.  [default: 64]")
@click.option("--verbose_epochs", default=1, show_default=True, type=int,
              help="Print a summary line every N epochs (0: never).")
@click.option("--lr", default=None, type=float, help="Learning rate.  [default: 0.001]")
@click.option("--layers", default=None, help="Encoder sizes, e.g. 1000,500,100.  [default: 512]")
@click.option("--activation", default=None, type=click.Choice(
    ["relu", "selu", "elu", "sigmoid", "tanh", "identity"]), help="Hidden activation.")
@click.option("--output_activation", default=None, type=click.Choice(
    ["relu", "selu", "elu", "sigmoid", "tanh", "identity"]), help="Output activation.")
@click.option("--optimizer", default=None,
              type=click.Choice(["sgd", "momentum", "nesterov", "adam", "adamw"]))
@click.option("--loss", default=None, type=click.Choice(["mse", "multinomial"]),
              help="mse: explicit ratings; multinomial: implicit top-N (Mult-DAE).")
@click.option("--noise", default=None,
              type=click.Choice(["masking", "gaussian", "multiplicative"]),
              help="Corruption for --denoiser.")
@click.option("--noise_level", default=None, type=float,
              help="Masking probability or Gaussian standard deviation.")
@click.option("--dropout", default=None, type=float, help="Dropout rate on the code layer.")
@click.option("--weight_decay", default=None, type=float,
              help="L2 (sgd/adam) or decoupled (adamw) weight decay.")
@click.option("--clip_norm", default=None, type=float, help="Clip the global gradient norm.")
@click.option("--schedule", default=None, type=click.Choice(["none", "step", "cosine"]))
@click.option("--step_size", default=None, type=int, help="Epochs per step of --schedule step.")
@click.option("--gamma", default=None, type=float, help="Decay factor of --schedule step.")
@click.option("--patience", default=None, type=int,
              help="Stop after N epochs without validation improvement (0: never).")
@click.option("--item_based", is_flag=True, default=None,
              help="Item-based autoencoder (I-AutoRec) instead of user-based.")
@click.option("--dense_adam", is_flag=True, help="Exact dense Adam instead of lazy row updates.")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and the model.")
@click.option("--out", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Output directory for the checkpoint, history and metrics.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or epoch lines.")
def train(data, fmt, sep, columns, scale, split_kind, test_size, validation_size, holdout,
          train_file, test_file, denoiser, tied_weights, n_epochs, batch_size, verbose_epochs,
          lr, layers, activation, output_activation, optimizer, loss, noise, noise_level,
          dropout, weight_decay, clip_norm, schedule, step_size, gamma, patience, item_based,
          dense_adam, seed, out, resume, quiet):
    """Train the autoencoder; writes OUT/model.npz, model.json, history.csv, metrics.json."""
    from .training import run_training
    given = dict(n_epochs=n_epochs, batch_size=batch_size, lr=lr, activation=activation,
                 output_activation=output_activation, optimizer=optimizer, loss=loss,
                 noise=noise, noise_level=noise_level, dropout=dropout,
                 weight_decay=weight_decay, clip_norm=clip_norm, schedule=schedule,
                 step_size=step_size, gamma=gamma, patience=patience, item_based=item_based)
    params = {k: v for k, v in given.items() if v is not None}
    if layers is not None:
        params["layers"] = _layers(layers)
    params.update(denoise=denoiser, tied=tied_weights, seed=seed, lazy=not dense_adam)
    ds = load_data(data, fmt, sep, columns, scale, split_kind, test_size, validation_size,
                   holdout, train_file, test_file, seed, quiet)
    result = run_training(ds, params, out, resume=resume, quiet=quiet,
                          verbose_epochs=0 if quiet else verbose_epochs, echo=click.echo)
    if not quiet:
        click.echo("")
    click.echo(table([(k, v) for k, v in result["test"].items()], ("test", "value"), "lr"))
    click.echo(f"\ncheckpoint: {result['model_path']}")
    click.echo(f"next: python cli.py eval --generate   (export {out}/model.onnx)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
