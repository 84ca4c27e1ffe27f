"""Exceptions npcf raises for bad input; the CLI prints them as one line."""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from pathlib import Path


class NpcfError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, missing data)."""


class NpcfWarning(UserWarning):
    """Something works but not as well as it could, and the user can fix it (the CLI
    prints it as one ``warning:`` line on stderr)."""


@contextlib.contextmanager
def warned_elsewhere():
    """Hold back :class:`NpcfWarning` for the block: a worker process loading what the
    process that started it loaded, and warned about, first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NpcfWarning)
        yield


class DataError(NpcfError, ValueError):
    """A data file is malformed. ``str(err)`` is ``"FILE:LINE: problem"``.

    Attributes: ``path`` (str or None), ``line`` (1-based int or None), ``problem`` (str).
    """

    def __init__(self, problem: str, path=None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.problem = problem
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + problem)

    def __reduce__(self):                 # picklable (errors cross process boundaries)
        return type(self), (self.problem, self.path, self.line)


class DatasetError(NpcfError):
    """A named dataset cannot be downloaded, verified or extracted."""


class Interrupted(NpcfError):
    """Ctrl-C or SIGTERM stopped the work cleanly. ``exit_code``: what the CLI exits with,
    128 + the signal's number as a shell reports it (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str = "", exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):                 # picklable with its exit code
        return type(self), (str(self), self.exit_code)


class CheckpointError(NpcfError):
    """A model file is missing, corrupt or incompatible with this npcf."""


def shown(value) -> str:
    """A number as its shortest exact text in its own precision (``5.0000001``, never a
    rounded ``5`` that would look inside a scale it is outside of)."""
    import numpy as np
    v = value if isinstance(value, (np.floating, float)) else float(value)
    if not np.isfinite(v) or 1e-4 <= abs(v) < 1e16 or v == 0:
        return np.format_float_positional(v, trim="-")
    return np.format_float_scientific(v, trim="-")


def one_line(err: BaseException | str) -> str:
    """An error (or message) as one line: whitespace runs collapsed, never empty."""
    text = " ".join(str(err).split())
    return text or (type(err).__name__ if isinstance(err, BaseException) else "")


def os_message(err: BaseException) -> str:
    """An OS error as one line: ``"FILE: why"`` when it names a file, else its text (a
    directory that could not be made because a file holds its name says so)."""
    name, why = getattr(err, "filename", None), getattr(err, "strerror", None)
    if name and isinstance(err, (FileExistsError, NotADirectoryError)):
        path = Path(os.fsdecode(name))
        file = next((p for p in (path, *path.parents) if p.is_file()), None)
        if file is not None:
            why = "is a file, not a directory" if file == path else \
                f"{file} is a file, not a directory"
    return one_line(f"{name}: {why}" if name and why else str(err))


class ParamError(NpcfError, ValueError):
    """A hyperparameter or option out of its domain, or two that cannot go together.

    ``param``: its name (the CLI shows it as ``--param`` and exits with code 2).
    """

    def __init__(self, param: str, problem: str):
        self.param, self.problem = param, problem
        super().__init__(f"{param}: {problem}")

    def __reduce__(self):
        return type(self), (self.param, self.problem)


def positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (an int or NumPy
    integer; not a bool, float or string); :class:`ParamError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise ParamError(name, f"must be {what}, got {value!r}")
    return int(value)


def flag(value, name: str) -> bool:
    """``value`` as a bool if it is one (Python's or NumPy's); :class:`ParamError` naming
    ``name`` otherwise (a string such as "no" would count as true)."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    if not (isinstance(value, bool) or numpy_bool):
        raise ParamError(name, f"must be True or False, got {value!r}")
    return bool(value)


def non_negative(value, name: str, *, positive: bool = False) -> float:
    """``value`` as a float if it is a finite real number >= 0 (> 0 when ``positive``;
    not a bool or string); :class:`ParamError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ParamError(name, f"must be a finite number {'>' if positive else '>='} 0, "
                               f"got {value!r}")
    return float(value)


def repeated_pairs(name: str, extra: int) -> NpcfError:
    """The error for matrix ``name`` storing ``extra`` entries whose (row, column) pair
    it stores already (see :func:`npcf.utils.sparse.duplicate_entries`)."""
    what = "stored entry repeats" if extra == 1 else "stored entries repeat"
    return NpcfError(f"{name}: {extra} {what} a (row, column) pair; SciPy would add their "
                     "ratings up (keep one rating per pair)")


def check_scale(scale, name: str = "scale") -> tuple[float, float] | None:
    """``scale`` as ``(min, max)`` floats (None stays None); :class:`ParamError` naming
    ``name`` unless it is two finite numbers with min < max (a reversed scale would clip
    every prediction to one value)."""
    if scale is None:
        return None
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ParamError(name, f"must be (min, max) with finite min < max, got {scale!r}")
    return lo, hi
