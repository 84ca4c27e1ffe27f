"""The ``npcf`` command line: a thin click layer over the library.

Every :class:`~npcf.errors.NpcfError` (and OS error on a file) becomes one line
on stderr and exit code 1; click's usage errors exit with 2.
"""
from __future__ import annotations


import click

from npcf.errors import NpcfError


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
    from npcf.data import load_dataset
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


