"""Raw ids <-> compact indices 0..n-1 (one :class:`Vocabulary` for users, one for items).

NumPy only (the ONNX runtime maps movie ids with it): lookups are a binary search in
a sorted copy of the ids.
"""
from __future__ import annotations

import re

import numpy as np

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
#: the largest integer every float64 near it holds exactly: a whole float id beyond it
#: may stand for a neighbouring id, so it names none
EXACT_FLOAT_INT = 2 ** 53


def int_text(text: str) -> int | None:
    """``text`` (surrounding spaces allowed) as an int64 when it is a plain ASCII integer
    (``"7"``, ``"-3"``), else None: ``"1_0"``, ``"²"``, ``"7.0"`` and values beyond int64
    are not ids of an integer vocabulary."""
    t = text.strip()
    if not _INT_TEXT.fullmatch(t):
        return None
    v = int(t)
    return v if -2 ** 63 <= v < 2 ** 63 else None


class Vocabulary:
    """An ordered set of raw ids; index ``k`` holds the raw id of row/column ``k``.

    ``ids`` is a 1-D array of unique raw ids (int64 or str). ``index(raw)`` maps raw
    ids to int64 indices, ``ids[idx]`` maps back. It reads as the sequence of its ids:
    ``len(v)``, ``v[k]`` (a Python int or str; a slice or index array: an array of
    ids), ``list(v)``, ``raw in v``, ``np.asarray(v)``.
    """

    def __init__(self, ids):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError("Vocabulary ids must be 1-D")
        if ids.size == 0:
            ids = ids.astype(np.int64)
        if ids.dtype.kind == "O" and any(i is None or (isinstance(i, float) and i != i)
                                         for i in ids.tolist()):
            raise ValueError("Vocabulary ids must not be None or NaN")
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        elif ids.dtype.kind in "OUS":
            ids = ids.astype(str)
        else:
            raise ValueError(f"Vocabulary ids must be integers or strings, got {ids.dtype}")
        self.ids = ids
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        if self._sorted.size > 1 and (self._sorted[1:] == self._sorted[:-1]).any():
            raise ValueError("Vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids.tolist())

    def __getitem__(self, k):
        out = self.ids[k]
        return out.item() if isinstance(out, np.generic) else out

    def __contains__(self, raw) -> bool:
        if np.ndim(raw) != 0:
            return False
        try:
            return bool(self.index([raw], missing="ignore")[0] >= 0)
        except (TypeError, ValueError):
            return False

    def __array__(self, dtype=None, copy=None):
        return self.ids if dtype is None else self.ids.astype(dtype)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.ids.dtype.kind == other.ids.dtype.kind \
            and np.array_equal(self.ids, other.ids)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids, dtype={self.ids.dtype})"

    def coerce(self, raw):
        """Convert raw ids (e.g. strings typed by a user) to this vocabulary's id type."""
        return self._coerce(raw)[0]

    def _coerce(self, raw):
        """``(ids, usable)``: ``raw`` in this vocabulary's id type, and where some cannot be
        ids of it at all (text that is not a plain integer never names an id of an integer
        vocabulary), ``usable = (mask, their int64 ids)``; else None."""
        raw = np.atleast_1d(np.asarray(raw))
        if self.ids.dtype.kind == "i" and raw.dtype.kind == "f":   # 10.0 is id 10; 10.5 none
            whole = np.isfinite(raw) & (raw == np.round(raw)) & (np.abs(raw) <= EXACT_FLOAT_INT)
            if whole.all():
                return raw.astype(np.int64), None
            return raw, (whole, raw[whole].astype(np.int64))
        if self.ids.dtype.kind == "i" and raw.dtype.kind not in "iu":
            ints = [int_text(str(r)) for r in raw]
            mask = np.array([v is not None for v in ints], dtype=bool)
            if not mask.all():
                return raw.astype(str), (mask, np.asarray([v for v in ints if v is not None],
                                                          dtype=np.int64))
            return np.asarray(ints, dtype=np.int64).reshape(raw.shape), None
        if self.ids.dtype.kind == "U":
            return raw.astype(str), None
        if raw.dtype.kind in "iu":
            return raw.astype(np.int64), None
        return raw, None

    def index(self, raw, missing: str = "raise") -> np.ndarray:
        """Indices (int64) of ``raw`` ids. ``missing``: ``"raise"`` (KeyError) or ``"ignore"`` (-1)."""
        raw, usable = self._coerce(raw)
        idx = np.full(raw.size, -1, np.int64)
        if usable is not None:          # mixed: look the integer ones up, the rest are unknown
            mask, ints = usable
            idx[mask] = self.index(ints, missing="ignore")
        elif self._sorted.size and raw.size and raw.dtype.kind == self._sorted.dtype.kind:
            pos = np.minimum(np.searchsorted(self._sorted, raw), self._sorted.size - 1)
            found = self._sorted[pos] == raw
            idx[found] = self._order[pos[found]]
        if missing == "raise" and (idx < 0).any():
            bad = raw[idx < 0][:5].tolist()
            raise KeyError(f"unknown ids: {', '.join(map(str, bad))}")
        return idx
