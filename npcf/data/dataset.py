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

from npcf.data.readers import read_movies
from npcf.data.splits import Split, split_ratings
from npcf.data.vocab import Vocabulary
from npcf.errors import DataError, one_line
from npcf.utils.files import ARCHIVE_ERRORS, atomic_path, write_json
from npcf.utils.sparse import column_counts, merge_parts

PARTS = ("train", "test", "test_input", "validation", "validation_input")
#: the files of a prepared directory
PREPARED_FILES = tuple(f"{p}.npz" for p in PARTS) + ("users.csv", "items.csv", "movies.csv",
                                                      "stats.json")


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

    def rating_range(self) -> tuple[float, float] | None:
        """The declared :attr:`scale`, else the (min, max) of every rating in the file
        (``stats``; of the training ratings when the stats lack them; None without any):
        the range a model's predictions are clipped to and what relevance thresholds are
        relative to, so a delimited file (which declares no scale) is judged as the same
        ratings in MovieLens format, and a maximum only the test part holds is in range.
        None also when every rating is the same (one value is no range)."""
        if self.scale is not None:
            return self.scale
        lo, hi = self.stats.get("rating_min"), self.stats.get("rating_max")
        if lo is None or hi is None:
            data = self.split.train.data
            lo, hi = (data.min(), data.max()) if data.size else (0.0, 0.0)
        return (float(lo), float(hi)) if lo < hi else None

    def item_counts(self) -> np.ndarray:
        """Training ratings per item (int64, n_items)."""
        train = self.split.train
        return column_counts(train)

    def titles(self) -> dict:
        """``{movie id: title}`` (empty without titles)."""
        if self.movies is None or "title" not in self.movies.columns:
            return {}
        return {_plain(k): str(v) for k, v in self.movies["title"].items()}

    def known_ratings(self) -> sp.csr_matrix:
        """Every rating of the data set, whatever its part (training, validation and its
        input, test input and held-out test ratings) as CSR float32 (n_users, n_items): what a
        recommendation for a known user starts from and filters out (evaluation alone
        keeps the test part hidden)."""
        return merge_parts(self._known_parts())

    def user_row(self, user) -> sp.csr_matrix:
        """Every rating of raw user id ``user`` (:meth:`known_ratings`' row) as CSR float32
        (1, n_items); DataError for an unknown user."""
        idx = self.users.index([user], missing="ignore")[0]
        if idx < 0:
            raise DataError(f"unknown user id {user}", self.path)
        return merge_parts([p[idx] for p in self._known_parts() if p is not None])

    def _known_parts(self) -> tuple:
        """The parts :meth:`known_ratings` merges, first value kept (None: absent)."""
        s = self.split        # (held-out users' fold-in ratings are in the *_input parts)
        return s.train, s.validation, s.validation_input, s.test_input, s.test

    def check_items(self, item_ids, what) -> None:
        """DataError unless ``item_ids`` (a model's movie ids, by column) are this data
        set's items in the same order; ``what`` names the model in the message."""
        if item_ids is None:
            return
        ids = np.asarray(item_ids)
        if len(ids) != len(self.items) or not np.array_equal(ids.astype(str),
                                                            self.items.ids.astype(str)):
            how = (f"{len(ids)} vs {len(self.items)} movies" if len(ids) != len(self.items)
                   else "the same number of movies, other ids or order")
            raise DataError(f"{what} was trained on other movies than this data ({how}); "
                            "pass the matching --data", self.path)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


#: the validation share `train` carves from a training part that has none
VALIDATION_FRACTION = 0.1


def check_split(split: Split, source=None) -> None:
    """DataError (naming ``source``) if a part a model needs is empty: no training
    rating, no test rating, or a validation part that exists but holds nothing."""
    parts = split.parts()
    for name in ("train", "test", "validation"):
        part = parts.get(name)
        if part is not None and part.nnz == 0:
            sizes = ", ".join(f"{k} {int(p.nnz)}" for k, p in parts.items()
                              if k in ("train", "test", "validation"))
            fix = "--validation_size" if name == "validation" else "--test_size/--split"
            raise DataError(f"the {name} part of the split is empty (ratings: {sizes}); use "
                            f"more ratings or another {fix}", source)


def with_validation(ds: Dataset, fraction: float = VALIDATION_FRACTION, seed: int = 0) -> Dataset:
    """``ds`` with a validation part carved from its training part if it has none.

    The cut follows the split's kind (held-out users stay held-out users; a
    temporal split falls back to a per-user holdout: the carved part is the
    validation for early stopping, not a forecast).
    """
    s = ds.split
    if s.validation is not None:
        return ds
    kind = s.params.get("kind", "random")
    kind = {"given": "random", "temporal": "user"}.get(kind, kind)
    inner = split_ratings(s.train, kind, fraction, seed + 1, holdout=s.params.get("holdout", 0.2))
    split = Split(inner.train, s.test, s.test_input, inner.test, inner.test_input,
                  dict(s.params, validation_size=fraction, validation_carved=kind))
    check_split(split, ds.path or ds.stats.get("source"))
    return Dataset(split, ds.users, ds.items, dict(ds.stats, split=split.params), ds.movies,
                   ds.path)        # still named by where it came from


def save_prepared(ds: Dataset, out) -> Path:
    """Write ``ds`` to directory ``out`` (each file atomically). Returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in ds.split.parts().items():
        with atomic_path(out / f"{name}.npz", suffix=".npz") as tmp:
            sp.save_npz(tmp, part.tocsr(), compressed=True)
    for name, vocab in (("users", ds.users), ("items", ds.items)):
        with atomic_path(out / f"{name}.csv") as tmp:
            pd.DataFrame({"index": np.arange(len(vocab)), "id": vocab.ids}).to_csv(tmp, index=False)
    if ds.movies is not None:
        with atomic_path(out / "movies.csv") as tmp:
            ds.movies.to_csv(tmp)
    write_json(out / "stats.json", ds.stats)
    ds.path = out
    return out


def is_prepared(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "stats.json").is_file()


def not_prepared(path) -> str | None:
    """Why ``path`` is not a prepared directory (None when it is)."""
    path = Path(path)
    if not path.exists():
        return "no such directory"
    if not path.is_dir():
        return "is a file, not a prepared data directory"
    return None if is_prepared(path) else "not a prepared data directory (no stats.json)"


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
    try:
        if len(ids) and pd.Series(ids).str.fullmatch(r"-?[1-9]\d{0,18}|0").all():
            try:
                return Vocabulary(ids.astype(np.int64))
            except OverflowError:
                pass
        return Vocabulary(ids)
    except ValueError as err:           # e.g. an id listed twice
        raise DataError(f"bad id map: {one_line(err)}", path) from None


def load_prepared(path) -> Dataset:
    """Load a directory written by :func:`save_prepared` (or ``cli.py prepare``)."""
    path = Path(path)
    if problem := not_prepared(path):
        raise DataError(problem, path)
    try:
        stats = json.loads((path / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read: {one_line(err)}", path / "stats.json") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("split", {}), dict):
        raise DataError("not a prepared data set's stats (expected a JSON object)",
                        path / "stats.json")
    users, items = _read_vocab(path / "users.csv"), _read_vocab(path / "items.csv")
    parts = {}
    for name in PARTS:
        f = path / f"{name}.npz"
        if f.is_file():
            with open(f, "rb") as fh:     # an access error is reported as it is
                try:
                    parts[name] = sp.load_npz(fh).tocsr().astype(np.float32)
                except ARCHIVE_ERRORS:
                    raise DataError("corrupt or not a sparse matrix; prepare the data again",
                                    f) from None
            if not np.isfinite(parts[name].data).all():
                raise DataError("holds ratings that are not finite numbers; prepare the data "
                                "again", f)
            if parts[name].shape != (len(users), len(items)):
                raise DataError(f"shape {parts[name].shape} does not match the id maps "
                                f"({len(users)} users, {len(items)} items)", f)
    missing = [p for p in ("train", "test", "test_input") if p not in parts]
    if missing:
        raise DataError(f"missing {', '.join(p + '.npz' for p in missing)}", path)
    movies = None
    if (path / "movies.csv").is_file():
        movies = read_movies(path / "movies.csv")
    split = Split(**parts, params=stats.get("split", {}))
    return Dataset(split, users, items, stats, movies, path)
