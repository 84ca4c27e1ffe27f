"""Option groups and value parsers shared by the commands (choices come from the
library's own constants)."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import click

from npcf.autoencoder.hyperparameters import RANGES
from npcf.data.dataset import VALIDATION_FRACTION, is_prepared
from npcf.data.readers import FORMATS, check_columns
from npcf.data.splits import KINDS
from npcf.errors import ParamError, check_scale


class LocalPath(click.Path):
    """``click.Path`` whose refusals read like npcf's other errors ("PATH: is a file, not
    a directory") rather than click's ("Directory 'PATH' is a file.")."""

    def convert(self, value, param, ctx):
        p = Path(value)
        if not self.file_okay and p.exists() and not p.is_dir():
            self.fail(f"{value}: is a file, not a directory", param, ctx)
        if not self.dir_okay and p.is_dir():
            self.fail(f"{value}: is a directory, not a file", param, ctx)
        return super().convert(value, param, ctx)


class Finite(click.FloatRange):
    """A float range that also refuses NaN and infinities (click's ranges let NaN through:
    every comparison with it is false)."""

    name = "float"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v is not None and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v

    def _describe_range(self) -> str:
        """No range shown in ``--help`` for a bound-less number (click prints ``x<=None``)."""
        return "" if self.min is None and self.max is None else super()._describe_range()


def hyperparameter(name: str) -> click.ParamType:
    """The click type of hyperparameter ``name``: its domain in
    :data:`npcf.autoencoder.hyperparameters.RANGES`."""
    kind, lo, hi, lo_open, hi_open = RANGES[name]
    if kind is int:
        return click.IntRange(min=lo, max=hi, min_open=lo_open, max_open=hi_open)
    return Finite(min=lo, max=hi, min_open=lo_open, max_open=hi_open)


SEED = hyperparameter("seed")
FRACTION = Finite(min=0.0, max=1.0, min_open=True, max_open=True)

#: the keywords of :func:`npcf.data.load_dataset` that :func:`data_options` collects
DATA_KEYS = ("data", "format", "sep", "columns", "scale", "split", "test_size",
             "validation_size", "holdout", "train_file", "test_file")


def _reader_options() -> list:
    """--format, --sep, --columns, --scale: how a ratings file is parsed."""
    return [
        click.option("--format", "format", default="auto", show_default=True,
                     type=click.Choice(FORMATS), help="Ratings file format."),
        click.option("--sep", default=None, callback=_sep,
                     help="Delimiter of a delimited file ('\\t' or 'tab' for a tab)."),
        click.option("--columns", default=None, metavar="USER,ITEM,RATING[,TIME]",
                     callback=_columns, help="Column names of a delimited file with a header."),
        click.option("--scale", default=None, metavar="MIN,MAX", callback=_scale,
                     help="Allowed rating range (default: the format's)."),
    ]


#: the keywords of :func:`npcf.data.read_ratings` that :func:`reader_options` collects
READER_KEYS = ("format", "sep", "columns", "scale")


def reader_options(f):
    """--format/--sep/--columns/--scale alone (for commands that read users' ratings
    without splitting them), passed on as one ``reader_options`` dict."""
    @functools.wraps(f)
    def wrapper(*args, **kw):
        kw["reader_options"] = {k: kw.pop(k) for k in READER_KEYS}
        return f(*args, **kw)
    for opt in reversed(_reader_options()):
        wrapper = opt(wrapper)
    return wrapper


def data_options(f):
    """Options of every command that reads ratings, passed on as one ``data_options``
    dict of :func:`npcf.data.load_dataset` keywords (the command adds ``seed``)."""
    opts = [
        click.option("--data", default=None, metavar="PATH_OR_NAME",
                     help="Ratings file, prepared directory or dataset name "
                          "(see `npcf datasets`). Default: the built-in synthetic set."),
        *_reader_options(),
        click.option("--split", "split", default="random", show_default=True,
                     type=click.Choice(KINDS),
                     help="random: per-rating holdout; user: per-user holdout; temporal: "
                          "each user's latest; users: held-out users (strong generalization)."),
        click.option("--test_size", default=0.1, show_default=True, type=FRACTION,
                     help="Held-out fraction (of ratings, of each user's ratings, or of users)."),
        click.option("--validation_size", default=0.0, show_default=True,
                     type=Finite(min=0.0, max=1.0, max_open=True),
                     help="Validation fraction carved from training the same way (0: "
                          "none; train, eval --baselines and the search then carve "
                          f"{VALIDATION_FRACTION:g} of it for early stopping)."),
        click.option("--holdout", default=0.2, show_default=True, type=FRACTION,
                     help="For --split users: fraction of a test user's ratings held out."),
        click.option("--train", "train_file", default=None, type=LocalPath(),
                     help="A split made elsewhere: training file (with --test)."),
        click.option("--test", "test_file", default=None, type=LocalPath(),
                     help="A split made elsewhere: test file (with --train)."),
    ]

    @functools.wraps(f)
    def wrapper(*args, **kw):
        kw["data_options"] = {k: kw.pop(k) for k in DATA_KEYS}
        _check_split_files(click.get_current_context(), kw["data_options"])
        _check_prepared(click.get_current_context(), kw["data_options"])
        _check_holdout(click.get_current_context(), kw["data_options"])
        return f(*args, **kw)
    for opt in reversed(opts):
        wrapper = opt(wrapper)
    return wrapper


def _check_split_files(ctx, opts: dict) -> None:
    """--train/--test come together, and replace --data and the split options."""
    train, test = opts["train_file"], opts["test_file"]
    if (train is None) != (test is None):
        raise click.UsageError("--train and --test go together (a split made elsewhere)")
    if train is None:
        return
    given = [f"--{k}" for k in ("data", "split", "test_size", "holdout")
             if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--train/--test give the split; {', '.join(given)} cannot "
                               "be used with them")


def _check_prepared(ctx, opts: dict) -> None:
    """A prepared directory's format and split are fixed: options that would change them
    are refused rather than ignored."""
    data = opts.get("data")
    if data is None or not is_prepared(data):
        return
    given = [f"--{k}" for k in ("format", "sep", "columns", "scale", "split", "test_size",
                                "validation_size", "holdout") if k in ctx.params
             and ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--data {data} is a prepared directory (its format and split "
                               f"are fixed); {', '.join(given)} cannot be used with it")


def _check_holdout(ctx, opts: dict) -> None:
    """--holdout shapes --split users only: refused with another split, not ignored."""
    if "holdout" in ctx.params and opts["split"] != "users" and \
            ctx.get_parameter_source("holdout") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--holdout is the part of each held-out user's ratings to "
                               f"predict with --split users; with --split {opts['split']} it "
                               "would be ignored: pass --split users or leave it out")


#: delimiters a shell makes hard to type, by name
_SEP_NAMES = {"tab": "\t", "space": " ", "comma": ",", "semicolon": ";", "pipe": "|"}


def _sep(ctx, param, text):
    """The delimiter: as typed, by name (``tab``) or as a backslash escape (``'\\t'``)."""
    if text is None:
        return None
    if text.lower() in _SEP_NAMES:
        return _SEP_NAMES[text.lower()]
    if "\\" in text:
        typed, text = text, text.replace("\\t", "\t")
        if "\\" in text:
            raise click.BadParameter(f"{typed!r} holds an unknown backslash escape (only "
                                     "'\\t' is one; 'tab' also names a tab)")
    if text == "":
        raise click.BadParameter("the delimiter cannot be empty (e.g. ',' or '\\t')")
    if text.strip() == "" and text != " " and text != "\t":
        raise click.BadParameter(f"{text!r} is not a usable delimiter")
    if "\n" in text or "\r" in text or '"' in text:
        raise click.BadParameter(f"{text!r} cannot be a delimiter (a newline or a quote)")
    return text


def number_list(text: str, kind, what: str, example: str) -> tuple:
    """``"1,2,3"`` -> a tuple of ``kind``; BadParameter naming ``what`` on anything else
    (an empty part such as ``"10,,5"`` is a typo, not a shorter list)."""
    try:
        return tuple(kind(p) for p in str(text).split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated {what} like {example}, "
                                 f"got {text!r}") from None


def floats(text: str | None, n: int | None = None, what: str = "value"):
    """``"1,2.5"`` -> (1.0, 2.5); BadParameter on anything else (or not ``n`` numbers)."""
    if text is None:
        return None
    vals = number_list(text, float, "numbers", "1,5")
    if n is not None and len(vals) != n:
        raise click.BadParameter(f"expected {n} numbers for {what}, got {len(vals)}")
    return vals


def _scale(ctx, param, text):
    try:
        return check_scale(floats(text, 2, "--scale"))
    except ParamError:
        raise click.BadParameter(f"expected MIN,MAX with finite MIN < MAX, got {text!r}") \
            from None


def _columns(ctx, param, text):
    try:
        return check_columns(text)
    except ParamError as err:
        raise click.BadParameter(err.problem) from None


def layers(ctx, param, text):
    """``--layers 1000,500,100`` -> (1000, 500, 100)."""
    if text is None:
        return None
    sizes = number_list(text, int, "layer sizes", "1000,500,100")
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, got {text!r}")
    return sizes


def cutoffs(ctx, param, text) -> tuple[int, ...] | None:
    """``-k 10,20,100`` -> (10, 20, 100) (None stays None: the default cut-offs)."""
    if text is None:
        return None
    ks = tuple(sorted(set(number_list(text, int, "cut-offs", "10,20,100"))))
    if not ks or ks[0] < 1:
        raise click.BadParameter(f"cut-offs must be positive integers, got {text!r}")
    return ks


def _json_pairs(text: str) -> list[tuple[str, str]]:
    """``[[id, rating], ...]`` or ``{id: rating, ...}`` (JSON) as (id text, rating text)."""
    try:
        # an object's members as a list: a movie named twice is reported, not dropped
        obj = json.loads(text, object_pairs_hook=list)
        pairs = [tuple(p) for p in obj]
        if not all(len(p) == 2 for p in pairs):
            raise ValueError
    except (ValueError, TypeError):
        raise click.BadParameter("expected JSON [[movieId, rating], ...] or {movieId: "
                                 "rating, ...}") from None
    return [(str(m), str(r)) for m, r in pairs]


def rating_pairs(ctx, param, text):
    """``--ratings 1:5,260:4.5`` -> [("1", 5.0), ("260", 4.5)] (ids kept as typed; an id
    may hold ``:``, the rating follows the last one). Ids holding a comma: JSON,
    ``'[["film 1, the", 5]]'`` or ``'{"film 1, the": 5}'``; ``'[]'``: a user without
    ratings."""
    if text is None:
        return None
    if text.lstrip()[:1] in ("[", "{"):
        parts = _json_pairs(text)
        if not parts:                     # '[]' or '{}': a user without ratings, as serve's
            return []                     # {"ratings": []} (the model's cold-start list)
    else:
        parts = []
        for part in text.split(","):
            if part.strip():
                mid, sep, r = part.rpartition(":")
                if not sep:
                    raise click.BadParameter(f"expected movieId:rating, got {part!r}")
                parts.append((mid, r))
    out = []
    for mid, r in parts:
        try:
            out.append((mid.strip(), float(r)))
        except ValueError:
            raise click.BadParameter(f"expected movieId:rating, got {mid}:{r}") from None
        if not out[-1][0]:
            raise click.BadParameter(f"empty movie id in {f'{mid}:{r}'.strip()!r} (expected "
                                     "movieId:rating)")
        if not math.isfinite(out[-1][1]) or out[-1][1] == 0:
            raise click.BadParameter(f"rating {r.strip()!r} of movie {mid.strip()} is not a "
                                     "finite, non-zero number")
        if out[-1][0] in [m for m, _ in out[:-1]]:
            raise click.BadParameter(f"movie {out[-1][0]} is rated more than once")
    if not out:
        raise click.BadParameter("no ratings given (for a user without ratings: "
                                 "--ratings '[]')")
    return out


def is_metrics_file(path) -> bool:
    """Whether ``path`` holds a metrics dump of ``eval --evaluate/--baselines --json``
    (a JSON object with the protocol and cut-offs, and no checkpoint's fields)."""
    try:
        obj = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and {"protocol", "ks"} <= obj.keys() \
        and "architecture" not in obj


#: JSON files npcf itself keeps in run and prepared directories
OWN_JSON = ("model.json", "metrics.json", "resume.json", "stats.json")


def json_target(ctx, param, path):
    """``--json PATH``: a ``.json`` file that is not one of npcf's own and, if it exists,
    is a metrics file npcf wrote (so a metrics dump never replaces a checkpoint's
    metadata, a data file or anything else the user keeps)."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise click.BadParameter(f"{path}: the metrics file must end in .json")
    if p.name in OWN_JSON:
        raise click.BadParameter(f"{path}: is a name npcf keeps for its own files; "
                                 "choose another")
    if p.exists() and not is_metrics_file(p):
        raise click.BadParameter(f"{path}: exists and is not a metrics file npcf wrote "
                                 "(npcf replaces only its own); choose a new name")
    return path
