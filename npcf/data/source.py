"""Resolve a ``--data`` argument (nothing, a file, a prepared directory or a dataset
name) into a split :class:`~npcf.data.dataset.Dataset`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npcf.data.dataset import Dataset, check_split, is_prepared, load_prepared
from npcf.data.download import DATASETS, fetch
from npcf.data.ratings import Ratings, build_ratings
from npcf.data.readers import read_movies, read_ratings
from npcf.data.splits import Split, split_ratings
from npcf.data.synthetic import generate
from npcf.data.vocab import Vocabulary
from npcf.errors import DataError
from npcf.utils.sparse import entry_rows

SYNTHETIC = "synthetic"
_MOVIE_FILES = ("movies.csv", "movies.dat", "u.item")


def find_movies(ratings_path) -> Path | None:
    """A titles file next to a ratings file (movies.csv, movies.dat or u.item), if any."""
    folder = Path(ratings_path).parent
    for name in _MOVIE_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_ratings(data=None, *, format: str = "auto", sep=None, columns=None, scale=None,
                 progress=None):
    """``(Ratings, movies DataFrame or None)`` for a file, a dataset name or None (synthetic)."""
    if data is None or str(data) == SYNTHETIC:
        return generate()
    path = Path(data)
    if path.exists() and not path.is_dir():     # a file (or a pipe: read_ratings says so)
        ratings = read_ratings(path, format, sep=sep, columns=columns, scale=scale)
        movies_path = find_movies(path)
        return ratings, (read_movies(movies_path) if movies_path else None)
    if path.is_dir():
        raise DataError("a directory but not a prepared data set (no stats.json); "
                        "run `npcf prepare` on a ratings file first", path)
    if str(data) in DATASETS:
        info = DATASETS[str(data)]
        folder = fetch(str(data), progress=progress)
        ratings = read_ratings(folder / info.ratings, format, sep=sep, columns=columns,
                               scale=scale)
        movies_file = folder / info.movies
        return ratings, (read_movies(movies_file) if movies_file.is_file() else None)
    raise DataError(f"no such file, directory or dataset name (known names: "
                    f"{SYNTHETIC}, {', '.join(DATASETS)})", data)


def _stats(ratings: Ratings, split: Split) -> dict:
    stats = ratings.stats()
    stats.update(source=ratings.source, scale=list(ratings.scale) if ratings.scale else None,
                 split=split.params,
                 parts={name: int(part.nnz) for name, part in split.parts().items()})
    return stats


def load_dataset(data=None, *, format: str = "auto", sep=None, columns=None, scale=None,
                 split: str = "random", test_size: float = 0.1, validation_size: float = 0.0,
                 holdout: float = 0.2, seed: int = 0, train_file=None, test_file=None,
                 progress=None) -> Dataset:
    """A split :class:`Dataset` from ``data`` as ``prepare`` would make it.

    ``data``: None (built-in synthetic set), a ratings file, a prepared directory
    (returned as saved: split options are ignored) or a dataset name. With
    ``train_file`` and ``test_file``, a split made elsewhere is read instead.
    """
    if train_file is not None or test_file is not None:
        if train_file is None or test_file is None:
            raise DataError("--train and --test must be given together")
        return given_split(train_file, test_file, format=format, sep=sep, columns=columns,
                           scale=scale, validation_size=validation_size, seed=seed)
    if data is not None and is_prepared(data):
        return load_prepared(data)
    ratings, movies = load_ratings(data, format=format, sep=sep, columns=columns,
                                   scale=scale, progress=progress)
    parts = split_ratings(ratings, split, test_size, seed, validation_size, holdout)
    check_split(parts, ratings.source or data)
    return Dataset(parts, ratings.users, ratings.items, _stats(ratings, parts), movies)


def given_split(train_file, test_file, *, format="auto", sep=None, columns=None, scale=None,
                validation_size: float = 0.0, seed: int = 0) -> Dataset:
    """A split made elsewhere (e.g. MovieLens 100K ``u1.base``/``u1.test``), one shared id map."""
    train = read_ratings(train_file, format, sep=sep, columns=columns, scale=scale)
    test = read_ratings(test_file, format, sep=sep, columns=columns, scale=scale)
    users = _union(train.users, test.users)
    items = _union(train.items, test.items)
    tr, te = _remap(train, users, items), _remap(test, users, items)
    overlap = tr.matrix.multiply(te.matrix.astype(bool)).nnz
    if overlap:
        raise DataError(f"{overlap} (user, movie) pairs are in both files", test_file)
    whole = build_ratings(
        np.r_[users.ids[entry_rows(tr.matrix)], users.ids[entry_rows(te.matrix)]],
        np.r_[items.ids[tr.matrix.indices], items.ids[te.matrix.indices]],
        np.r_[tr.matrix.data, te.matrix.data], scale=train.scale, source=str(train_file))
    whole.duplicates_resolved = train.duplicates_resolved + test.duplicates_resolved
    if validation_size > 0:
        inner = split_ratings(tr, "random", validation_size, seed)
        parts = Split(inner.train, te.matrix, tr.matrix, inner.test, inner.train)
    else:
        parts = Split(tr.matrix, te.matrix, tr.matrix)
    parts.params = {"kind": "given", "train": str(train_file), "test": str(test_file),
                    "validation_size": validation_size, "seed": seed}
    check_split(parts, train_file)
    movies_path = find_movies(train_file)
    return Dataset(parts, users, items, _stats(whole, parts),
                   read_movies(movies_path) if movies_path else None)


def _union(a: Vocabulary, b: Vocabulary) -> Vocabulary:
    if a.ids.dtype.kind != b.ids.dtype.kind:
        return Vocabulary(np.union1d(a.ids.astype(str), b.ids.astype(str)))
    return Vocabulary(np.union1d(a.ids, b.ids))


def _remap(r: Ratings, users: Vocabulary, items: Vocabulary) -> Ratings:
    rows = users.index(r.users.ids)[entry_rows(r.matrix)]
    cols = items.index(r.items.ids)[r.matrix.indices]
    import scipy.sparse as sp
    m = sp.csr_matrix((r.matrix.data, (rows, cols)), shape=(len(users), len(items)),
                      dtype=np.float32)
    m.sort_indices()
    return Ratings(m, users, items, None, r.duplicates_resolved, r.scale, r.source)
