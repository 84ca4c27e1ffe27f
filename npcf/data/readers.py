"""Readers for rating files: MovieLens ``ratings.csv``, ``ratings.dat``, ``u.data``
and any delimited file with named columns; plus movie metadata (titles, genres).

Fast path: one ``pandas.read_csv`` with fixed dtypes and vectorised checks. When
anything is wrong, a line-by-line pass finds the first bad line and raises
:class:`~npcf.errors.DataError` as ``FILE:LINE: problem``. Nothing is dropped
silently: blank lines are the only lines skipped.
"""
from __future__ import annotations

import csv
import math
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from npcf.data import textfile
from npcf.data.ratings import FLOAT32_MAX, ZERO_RATING, Ratings, build_ratings, rating_problem
from npcf.data.titles import parse_movies
from npcf.errors import DataError, ParamError, one_line

FORMATS = ("auto", "movielens-csv", "movielens-dat", "ml-100k", "delimited")


@dataclass(frozen=True)
class Format:
    """How to parse one rating file. ``columns``: (user, item, rating, timestamp|None)."""

    name: str
    sep: str
    header: bool
    columns: tuple
    scale: tuple | None
    int_ids: bool = True


MOVIELENS_CSV = Format("movielens-csv", ",", True,
                       ("userId", "movieId", "rating", "timestamp"), (0.5, 5.0))
MOVIELENS_DAT = Format("movielens-dat", "::", False,
                       ("userId", "movieId", "rating", "timestamp"), (1.0, 5.0))
ML_100K = Format("ml-100k", "\t", False,
                 ("userId", "movieId", "rating", "timestamp"), (1.0, 5.0))

_FIXED = {"movielens-csv": MOVIELENS_CSV, "movielens-dat": MOVIELENS_DAT, "ml-100k": ML_100K}

_USER_NAMES = ("userid", "user_id", "user", "uid")
_ITEM_NAMES = ("movieid", "movie_id", "itemid", "item_id", "item", "movie", "iid")
_RATING_NAMES = ("rating", "score", "stars", "value")
_TIME_NAMES = ("timestamp", "time", "ts", "date")


def _first_line(path: Path) -> str:
    head = textfile.head(path)
    with textfile.open_text(path, errors="replace") as f:
        for line in f:
            if line.strip():
                if "\ufffd" in line:
                    raise DataError("not UTF-8 text (the first line holds bytes that are "
                                    "not UTF-8); is this a rating file?", path, 1)
                return line.rstrip("\r\n")
    raise DataError("file is empty (no ratings)" if not head.strip() else
                    "no ratings (only blank lines)", path)


def _pick(header: list[str], names) -> str | None:
    low = {h.strip().lower(): h.strip() for h in header}
    for n in names:
        if n in low:
            return low[n]
    return None


def rating_columns(header: list[str]) -> tuple[str | None, str | None, str | None]:
    """The user, movie and rating column names of ``header`` (matched case-insensitively
    against the names npcf recognises: ``userId``, ``user_id``, ``movieId``, ``item_id``,
    ``rating``, ``score``, ...); None for one it lacks."""
    return (_pick(header, _USER_NAMES), _pick(header, _ITEM_NAMES),
            _pick(header, _RATING_NAMES))


def detect_format(path, sep: str | None = None, columns=None, scale=None, *,
                  generic: bool = False) -> Format:
    """Guess the :class:`Format` of ``path`` from its first non-blank line (and its
    delimiter, unless ``sep`` is given). ``generic``: a delimited file whatever it looks
    like (``--format delimited``: no MovieLens format and its rating scale is assumed)."""
    path = Path(path)
    line = _first_line(path)
    given_sep = sep is not None
    if sep is None:
        if "::" in line and not generic:
            return _with(MOVIELENS_DAT, scale)
        counts = {s: line.count(s) for s in (",", "\t", ";", "|", "::")}
        sep = max(counts, key=counts.get)
        if counts[sep] == 0:
            raise DataError("cannot detect the delimiter (tried , tab ; | ::); "
                            "pass --format or --sep", path, 1)
    fields = [f.strip() for f in _split(line, sep)]
    numeric = all(_is_number(f) for f in fields)
    # Text ids but a number where the rating (and timestamp) go: data, not a header
    # (no header names its rating column with a number).
    text_ids = not numeric and len(fields) in (3, 4) and all(_is_number(f) for f in fields[2:])
    if columns is None and text_ids:
        return Format("delimited", sep, False,
                      ("userId", "movieId", "rating", "timestamp" if len(fields) == 4 else None),
                      scale, int_ids=False)
    if columns is None and numeric:
        if sep == "\t" and len(fields) in (3, 4) and not generic:
            return _with(ML_100K, scale, columns=ML_100K.columns[:len(fields)] + (None,) * (4 - len(fields)))
        if len(fields) in (3, 4):
            fmt = Format("delimited", sep, False,
                         ("userId", "movieId", "rating", "timestamp" if len(fields) == 4 else None),
                         scale, int_ids=False)        # ids as text unless all plain integers
            return fmt
        raise DataError(f"cannot detect the columns of a {len(fields)}-field file without a "
                        "header; pass --columns", path, 1)
    if columns is not None and (numeric or text_ids):
        raise DataError(f"the columns given (--columns) are header names, but the file has "
                        f"no header (first line {_shown(line)}); drop --columns: a headerless "
                        "file's fields are read as user, item, rating[, timestamp]", path, 1)
    if not numeric:
        seen = [f.lower() for f in fields]
        twice = sorted({f for f in fields if seen.count(f.lower()) > 1})
        if twice:
            raise DataError(f"column {twice[0]!r} appears more than once in the header", path, 1)
    if columns is None:
        cols = rating_columns(fields) + (_pick(fields, _TIME_NAMES),)
        missing = [what for what, c in zip(("user", "item", "rating"), cols) if c is None]
        if missing and len(fields) < 3:
            n = f"{len(fields)} field{'s' * (len(fields) != 1)}"
            raise DataError(f"the first line {_shown(line)} has {n} at --sep {sep!r}: wrong "
                            "delimiter? pass the file's own --sep" if given_sep else
                            f"the first line {_shown(line)} has {n} ({sep!r}-separated); a "
                            "ratings file needs user, item and rating columns (another "
                            "delimiter: --sep)", path, 1)
        if missing and given_sep:       # the delimiter is the user's: the names are not ours
            raise DataError(f"the header's columns ({', '.join(fields)}) name no "
                            f"{', '.join(missing)} column npcf recognises; name them with "
                            "--columns USER,ITEM,RATING[,TIME]", path, 1)
        if missing:
            raise DataError(f"missing {', '.join(missing)} column (header: {_shown(line)}); "
                            "wrong delimiter? pass --sep or --columns", path, 1)
        if cols[:3] == MOVIELENS_CSV.columns[:3] and sep == "," and not generic:
            return _with(MOVIELENS_CSV, scale, columns=cols)
        return Format("delimited", sep, True, cols, scale, int_ids=False)
    return Format("delimited", sep, not numeric, tuple(columns) + (None,) * (4 - len(columns)),
                  scale, int_ids=False)


def _shown(line: str, limit: int = 80) -> str:
    """``line`` quoted for a one-line message, cut at ``limit`` characters."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _with(fmt: Format, scale, **kw) -> Format:
    if scale is not None:
        kw["scale"] = tuple(scale)
    return replace(fmt, **kw) if kw else fmt


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def check_columns(columns) -> tuple | None:
    """``columns`` as a tuple of 3 or 4 distinct non-empty header names (a ``"u,i,r"``
    string is split at commas); ParamError naming ``columns`` otherwise."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = columns.split(",")
    try:
        cols = tuple(str(c).strip() for c in columns)
    except TypeError:
        raise ParamError("columns", f"expected (user, item, rating[, timestamp]) header "
                                    f"names, got {columns!r}") from None
    if len(cols) not in (3, 4) or not all(cols) or not all(isinstance(c, str) for c in columns):
        raise ParamError("columns", f"expected 3 or 4 header names (user, item, rating"
                                    f"[, timestamp]), got {columns!r}")
    if len(set(cols)) != len(cols):
        raise ParamError("columns", f"each column can be named once, got {columns!r}")
    return cols


def resolve_format(path, format: str = "auto", sep=None, columns=None, scale=None) -> Format:
    """The :class:`Format` named by ``format`` (or detected when ``"auto"``)."""
    columns = check_columns(columns)
    if format in _FIXED:
        given = [name for name, v in (("sep", sep), ("columns", columns)) if v is not None]
        if given:
            raise ParamError(given[0], f"--format {format} fixes the delimiter and the columns "
                             f"({_FIXED[format].sep!r}; {', '.join(c for c in _FIXED[format].columns if c)});"
                             " leave it out, or pass --format delimited")
    if format == "auto":
        return detect_format(path, sep, columns, scale)
    if format == "movielens-csv":
        return _with(MOVIELENS_CSV, scale)
    if format == "movielens-dat":
        return _with(MOVIELENS_DAT, scale)
    if format == "ml-100k":
        return _with(ML_100K, scale)
    if format == "delimited":
        fmt = detect_format(path, sep, columns, scale, generic=True)
        return replace(fmt, name="delimited", int_ids=False)
    raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


def read_ratings(path, format: str = "auto", *, sep: str | None = None, columns=None,
                 scale=None) -> Ratings:
    """Read a rating file into :class:`Ratings` (CSR float32, users x items).

    ``columns``: (user, item, rating[, timestamp]) header names for delimited files.
    ``scale``: (min, max) allowed ratings; defaults to the format's (MovieLens
    0.5-5 or 1-5) and to no limit for generic delimited files.
    Raises :class:`DataError` naming the file and line of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("not a regular file (npcf reads a file twice: once to detect its "
                        "format); write it to a file first" if path.exists() else "no such file",
                        path)
    try:
        return _read_ratings(path, resolve_format(path, format, sep, columns, scale))
    except textfile.ARCHIVE_ERRORS as err:    # a truncated or corrupt archive
        raise textfile.archive_error(err, path) from None


def _read_ratings(path: Path, fmt: Format) -> Ratings:
    frame = _read_fast(path, fmt)
    ucol, icol, rcol, tcol = fmt.columns
    users, items = frame[ucol].to_numpy(), frame[icol].to_numpy()
    rating = frame[rcol].to_numpy(dtype=np.float64)
    ts = frame[tcol].to_numpy() if tcol is not None else None
    problem = rating_problem(rating, fmt.scale)
    if problem:
        _diagnose(path, fmt)              # names the first bad line
        raise DataError(problem, path)    # (a fallback: the scan found none)
    if len(frame) == 0:
        raise DataError("no ratings in file (header only)", path)
    if not fmt.int_ids:
        users, items = _maybe_int(users), _maybe_int(items)
    return build_ratings(users, items, rating, ts, scale=fmt.scale, source=str(path))


def _maybe_int(values: np.ndarray) -> np.ndarray:
    """String ids that are all integers in plain form become int64 (so ``"42"`` and ``42``
    agree); one with a leading zero or a sign (``"007"``, ``"+7"``) keeps them all text, so
    ``"007"`` and ``"7"`` stay two ids, written back as they were read. Surrounding spaces
    are dropped (``1, 5, 4``); text ids keep them where dropping would make two ids one
    (``"a"`` and ``" a"``)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    raw = pd.Series(values, dtype=str)
    s = raw.str.strip()
    if s.str.fullmatch(r"(?:0|-?[1-9][0-9]{0,17})").all():    # ASCII digits only
        return s.astype(np.int64).to_numpy()
    if (s != raw).any() and s.nunique() != raw.nunique():
        return raw.to_numpy(dtype=str)
    return s.to_numpy(dtype=str)


def _read_fast(path: Path, fmt: Format) -> pd.DataFrame:
    ucol, icol, rcol, tcol = fmt.columns
    id_type = np.int64 if fmt.int_ids else str
    dtypes = {ucol: id_type, icol: id_type, rcol: np.float64}
    if tcol is not None:
        dtypes[tcol] = np.int64
    wanted = [c for c in fmt.columns if c is not None]
    # With integer ids, letting pandas infer the dtypes is faster than imposing them
    # (pandas 3.1); the inferred kinds are checked below instead.
    infer = fmt.int_ids and fmt.sep != "::"
    kw = dict(dtype=None if infer else dtypes, engine="c", skip_blank_lines=True,
              na_filter=not fmt.int_ids, keep_default_na=False, na_values=[""], index_col=False,
              encoding="utf-8-sig", compression=textfile.compression(path))
    if fmt.sep == "::":
        # '::' would need the slow python engine; split on ':' and take every 2nd field.
        n = 4 if tcol is not None else 3
        kw.update(sep=":", header=None,
                  names=[ucol, "_1", icol, "_2", rcol, "_3", tcol][:2 * n - 1])
    elif fmt.header:
        kw.update(sep=fmt.sep, header=0)
    else:
        kw.update(sep=fmt.sep, header=None, names=wanted)
    try:
        with warnings.catch_warnings():
            # A first line longer than the names: pandas warns and drops fields.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty (no ratings)", path) from None
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError,
            OverflowError) as err:
        _diagnose(path, fmt)
        raise DataError(f"cannot parse: {one_line(err)}", path) from None
    if fmt.header:
        frame.columns = [str(c).strip() for c in frame.columns]
        if not set(wanted) <= set(frame.columns):
            _diagnose(path, fmt)
            raise DataError("header lacks the columns " + ", ".join(wanted), path, 1)
    if infer and len(frame):
        ints = [ucol, icol] + ([tcol] if tcol is not None else [])
        if any(frame[c].dtype.kind not in "iu" for c in ints) or \
                frame[rcol].dtype.kind not in "iuf":
            _diagnose(path, fmt)
            raise DataError("cannot parse: non-numeric values", path)
        if frame[ucol].dtype.kind == "u" or frame[icol].dtype.kind == "u":
            _diagnose(path, fmt)
    if not fmt.int_ids or tcol is None:
        for col in wanted:
            if frame[col].isna().any():
                _diagnose(path, fmt)
    if fmt.sep == "::":
        _check_dat_columns(path, fmt)
    return frame[wanted] if tcol is not None else frame[[ucol, icol, rcol]]


def _check_dat_columns(path: Path, fmt: Format) -> None:
    """Pandas cannot see a 5th '::' field once we split on ':'; check the first lines."""
    with textfile.open_text(path, errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if lineno > 1000:
                break
            if line.strip() and line.count("::") != (3 if fmt.columns[3] else 2):
                _diagnose(path, fmt)


_INT = re.compile(r"^[+-]?[0-9]+$")      # ASCII digits only (Python's \d takes '٣' too)
#: the way out for ids a format with integer ids refuses
_TEXT_IDS = " (this format takes integer ids; other ids: --format delimited)"


def _diagnose(path: Path, fmt: Format) -> None:
    """Scan ``path`` line by line; raise :class:`DataError` at the first bad line."""
    n_fields = 4 if fmt.columns[3] is not None else 3
    positions = list(range(n_fields))
    with textfile.open_text(path) as f:
        try:
            lines = enumerate(f, 1)
            if fmt.header:
                for lineno, line in lines:
                    if line.strip():
                        header = _split(line, fmt.sep)
                        n_fields = len(header)
                        names = [h.strip() for h in header]
                        missing = [c for c in fmt.columns if c is not None and c not in names]
                        if missing and len(names) >= 3:    # the header splits: a name
                            raise DataError(f"no column {missing[0]!r} in the header (its "
                                            f"columns: {', '.join(names)}); name them with "
                                            "--columns USER,ITEM,RATING[,TIME]", path, lineno)
                        if missing:
                            raise DataError(f"missing column {missing[0]!r} (header: "
                                            f"{_shown(line.rstrip())}); wrong delimiter or "
                                            "format?",
                                            path, lineno)
                        positions = [names.index(c) for c in fmt.columns if c is not None]
                        break
            for lineno, line in lines:
                if not line.strip():
                    continue
                problem = _check_line(_split(line, fmt.sep), n_fields, positions, fmt,
                                      truncated=not line.endswith("\n"))
                if problem:
                    raise DataError(problem, path, lineno)
        except UnicodeDecodeError as err:
            raise DataError(f"not UTF-8 text ({err.reason} at byte {err.start})", path) from None


def _split(line: str, sep: str) -> list[str]:
    """The fields of one line; CSV quoting is understood for one-character delimiters."""
    line = line.rstrip("\r\n")
    if len(sep) == 1 and '"' in line:
        return next(csv.reader([line], delimiter=sep), [])
    return line.split(sep)


def _check_line(fields, n_fields, positions, fmt: Format, truncated: bool) -> str | None:
    if len(fields) < n_fields:
        what = "truncated line" if truncated else "too few fields"
        return f"{what}: expected {n_fields} fields, found {len(fields)}" + \
            ("" if len(fields) > 1 else f"; wrong delimiter? (expected {fmt.sep!r})")
    if len(fields) > n_fields:
        return f"too many fields: expected {n_fields}, found {len(fields)}"
    names = ("user id", "item id", "rating", "timestamp")
    for what, pos in zip(names, positions):
        value = fields[pos].strip()
        if what == "rating":
            try:
                if not value.isascii():           # float() reads '４' and '٣'; pandas not
                    raise ValueError(value)
                r = float(value.replace("_", "x"))
            except ValueError:
                return f"rating {value!r} is not a number"
            if not math.isfinite(r):
                return f"rating {value!r} is not finite"
            if abs(r) > FLOAT32_MAX:
                return f"rating {value!r} is beyond the float32 range (|r| <= 3.4e38)"
            if fmt.scale is not None and not fmt.scale[0] <= r <= fmt.scale[1]:
                return (f"rating {value} outside the scale {fmt.scale[0]:g}-{fmt.scale[1]:g}"
                        " (another scale: --scale MIN,MAX; scale=(MIN, MAX) in the library)")
            if r == 0:
                return f"rating 0: {ZERO_RATING}"
        elif value == "":
            return f"empty {what}"
        elif (fmt.int_ids or what == "timestamp") and not _INT.match(value):
            return f"{what} {value!r} is not an integer" + _TEXT_IDS * (what != "timestamp")
        elif (fmt.int_ids or what == "timestamp") and abs(int(value)) >= 2**63:
            return f"{what} {value!r} is out of range" + _TEXT_IDS * (what != "timestamp")
    return None


# --------------------------------------------------------------------------- movies

def read_movies(path) -> pd.DataFrame:
    """Movie titles and genres (any format :func:`npcf.data.titles.parse_movies` reads):
    a DataFrame indexed by ``movieId`` with ``title`` and ``genres`` (``|``-separated)."""
    rows = parse_movies(path)
    ids = [r[0] for r in rows]
    index = pd.Index(np.asarray(ids, dtype=np.int64) if all(isinstance(i, int) for i in ids)
                     else np.asarray(ids, dtype=object), name="movieId")
    return pd.DataFrame({"title": [r[1] for r in rows], "genres": [r[2] for r in rows]},
                        index=index)
