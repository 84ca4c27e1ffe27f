"""Raw ids <-> compact indices 0..n-1 (one :class:`Vocabulary` for users, one for items)."""
from __future__ import annotations

import numpy as np
import pandas as pd


class Vocabulary:
    """An ordered set of raw ids; index ``k`` holds the raw id of row/column ``k``.

    ``ids`` is a 1-D array of unique raw ids (int64 or str). ``index(raw)`` maps raw
    ids to int64 indices, ``ids[idx]`` maps back.
    """

    def __init__(self, ids):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError("Vocabulary ids must be 1-D")
        if ids.dtype.kind in "iu":
            ids = ids.astype(np.int64)
        elif ids.dtype.kind in "OUS":
            ids = ids.astype(str)
        else:
            raise ValueError(f"Vocabulary ids must be integers or strings, got {ids.dtype}")
        self.ids = ids
        self._lookup = pd.Index(ids)
        if not self._lookup.is_unique:
            raise ValueError("Vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.ids.dtype.kind == other.ids.dtype.kind \
            and np.array_equal(self.ids, other.ids)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids, dtype={self.ids.dtype})"

    def coerce(self, raw):
        """Convert raw ids (e.g. strings typed by a user) to this vocabulary's id type."""
        raw = np.atleast_1d(np.asarray(raw))
        if self.ids.dtype.kind == "i" and raw.dtype.kind not in "iu":
            try:
                return np.asarray([int(str(r)) for r in raw], dtype=np.int64)
            except ValueError:
                return raw.astype(str)
        if self.ids.dtype.kind == "U":
            return raw.astype(str)
        return raw

    def index(self, raw, missing: str = "raise") -> np.ndarray:
        """Indices (int64) of ``raw`` ids. ``missing``: ``"raise"`` (KeyError) or ``"ignore"`` (-1)."""
        raw = self.coerce(raw)
        idx = self._lookup.get_indexer(raw).astype(np.int64)
        if missing == "raise" and (idx < 0).any():
            bad = raw[idx < 0][:5].tolist()
            raise KeyError(f"unknown ids: {', '.join(map(str, bad))}")
        return idx

    def to_frame(self) -> pd.DataFrame:
        """``DataFrame(index, id)`` for writing to CSV."""
        return pd.DataFrame({"index": np.arange(len(self)), "id": self.ids})
