"""A prepared data set on disk: split parts as ``.npz`` CSR, id maps, stats, titles.

Layout of a prepared directory::

    train.npz test.npz test_input.npz [validation.npz validation_input.npz]
    users.csv items.csv      # index,id  (raw id of each row / column)
    movies.csv               # movieId,title,genres (when titles are known)
    stats.json               # n_users, n_items, n_ratings, density, ..., split
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from npcf.errors import DataError
from npcf.utils.files import atomic_path, write_json
from npcf.data.vocab import Vocabulary
from npcf.data.splits import Split

PARTS = ("train", "test", "test_input", "validation", "validation_input")


@dataclass
class Dataset:
    """A split with its id maps, summary statistics and (optional) movie titles."""

    split: Split
    users: Vocabulary
    items: Vocabulary
    stats: dict
    movies: pd.DataFrame | None = None
    path: Path | None = None

    @property
    def scale(self) -> tuple[float, float] | None:
        s = self.stats.get("scale")
        return None if s is None else (float(s[0]), float(s[1]))


def save_prepared(ds: Dataset, out) -> Path:
    """Write ``ds`` to directory ``out`` (each file atomically). Returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in ds.split.parts().items():
        with atomic_path(out / f"{name}.npz", suffix=".npz") as tmp:
            sp.save_npz(tmp, part.tocsr(), compressed=True)
    for name, vocab in (("users", ds.users), ("items", ds.items)):
        with atomic_path(out / f"{name}.csv") as tmp:
            vocab.to_frame().to_csv(tmp, index=False)
    if ds.movies is not None:
        with atomic_path(out / "movies.csv") as tmp:
            ds.movies.to_csv(tmp)
    write_json(out / "stats.json", ds.stats)
    ds.path = out
    return out


def is_prepared(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "stats.json").is_file()


def _read_vocab(path: Path) -> Vocabulary:
    try:
        # ids as written: "NA" or "2.0" must not come back as NaN or a float
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
        ids = frame["id"].to_numpy(dtype=str)
        if not np.array_equal(frame["index"].to_numpy(), np.arange(len(frame))):
            raise DataError("index column is not 0..n-1", path)
    except (OSError, KeyError, ValueError, pd.errors.ParserError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot read id map: {err}", path) from None
    if len(ids) and pd.Series(ids).str.fullmatch(r"-?[1-9]\d{0,18}|0").all():
        try:
            return Vocabulary(ids.astype(np.int64))
        except OverflowError:
            pass
    return Vocabulary(ids)


def load_prepared(path) -> Dataset:
    """Load a directory written by :func:`save_prepared` (or ``cli.py prepare``)."""
    path = Path(path)
    if not is_prepared(path):
        raise DataError("not a prepared data directory (no stats.json)", path)
    try:
        stats = json.loads((path / "stats.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read: {err}", path / "stats.json") from None
    users, items = _read_vocab(path / "users.csv"), _read_vocab(path / "items.csv")
    parts = {}
    for name in PARTS:
        f = path / f"{name}.npz"
        if f.is_file():
            try:
                parts[name] = sp.load_npz(f).tocsr().astype(np.float32)
            except (OSError, ValueError, KeyError) as err:
                raise DataError(f"cannot read sparse matrix: {err}", f) from None
            if parts[name].shape != (len(users), len(items)):
                raise DataError(f"shape {parts[name].shape} does not match the id maps "
                                f"({len(users)} users, {len(items)} items)", f)
    missing = [p for p in ("train", "test", "test_input") if p not in parts]
    if missing:
        raise DataError(f"missing {', '.join(p + '.npz' for p in missing)}", path)
    movies = None
    if (path / "movies.csv").is_file():
        from npcf.data.readers import read_movies
        movies = read_movies(path / "movies.csv")
    split = Split(**parts, params=stats.get("split", {}))
    return Dataset(split, users, items, stats, movies, path)
