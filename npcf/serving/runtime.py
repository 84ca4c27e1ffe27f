"""Framework-free inference: an exported ``model.onnx`` in onnxruntime.

Imports only numpy, scipy and onnxruntime (no pandas, click or onnx), so it
embeds in small environments::

    rec = Recommender.load("models/model.onnx", movies="movies.csv")
    ids, scores, titles = rec.recommend([(1, 5.0), (260, 4.5)], k=10)

A user never seen in training gets recommendations from their ratings alone
(fold-in): the autoencoder encodes any rating vector.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp

from npcf.errors import CheckpointError, NpcfError
from npcf.evaluation.metrics import top_k


class Recommendations(NamedTuple):
    """``ids`` movie ids, ``scores`` float32 and ``titles`` (or None); (B, k) or (k,)."""

    ids: np.ndarray
    scores: np.ndarray
    titles: list | None


def read_titles(path) -> dict:
    """``{movie id: title}`` from movies.csv, movies.dat or u.item (no pandas)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            head = f.readline()
    except UnicodeDecodeError:
        head = ""
    except OSError as err:
        raise NpcfError(f"{path}: {err.strerror}") from None
    titles = {}
    if "::" in head or not head:
        with open(path, encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\n").split("::")
                if len(parts) >= 2 and parts[0].strip().isdigit():
                    titles[int(parts[0])] = parts[1]
    elif head.count("|") >= 5:
        with open(path, encoding="latin-1") as f:
            for line in f:
                parts = line.split("|")
                if len(parts) >= 2 and parts[0].isdigit():
                    titles[int(parts[0])] = parts[1]
    else:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                mid = row.get("movieId") or row.get("id")
                if mid is not None and row.get("title") is not None:
                    titles[int(mid) if mid.strip().lstrip("-").isdigit() else mid] = row["title"]
    return titles


class Recommender:
    """Scores and top-k recommendations from an exported npcf ONNX model."""

    def __init__(self, session: ort.InferenceSession, meta: dict, item_ids: np.ndarray,
                 titles: dict | None = None, path=None):
        self.session, self.meta, self.item_ids, self.titles = session, meta, item_ids, titles
        self.path = path
        self.signature = meta.get("input_signature", "dense")
        self.graph_top_k = int(meta.get("top_k", "0"))
        self.n_items = len(item_ids)
        self._index = {v: i for i, v in enumerate(item_ids.tolist())}
        self._outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path, movies=None, threads: int | None = None) -> "Recommender":
        """Load ``path`` (an npcf ``.onnx``); ``movies``: a titles file; ``threads``: intra-op."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such model file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model "
                                  f"({' '.join(str(err).split())[:200]})") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if "npcf_version" not in meta:
            raise CheckpointError(f"{path}: not an npcf model (no npcf metadata)")
        item_ids = _item_ids(path, meta)
        return cls(session, meta, item_ids, read_titles(movies) if movies else None, path)

    # ----------------------------------------------------------------- inputs
    def rows_from_ratings(self, ratings) -> sp.csr_matrix:
        """CSR (1, n_items) from ``[(movie_id, rating), ...]``; unknown ids raise NpcfError."""
        ratings = list(ratings)
        cols, vals = [], []
        unknown = []
        for mid, r in ratings:
            key = self._key(mid)
            if key not in self._index:
                unknown.append(mid)
                continue
            cols.append(self._index[key])
            vals.append(float(r))
        if unknown:
            raise NpcfError(f"unknown movie id(s) not in the model: "
                            f"{', '.join(map(str, unknown[:5]))}")
        if not all(np.isfinite(vals)) or any(v == 0 for v in vals):
            raise NpcfError("ratings must be finite and non-zero")
        m = sp.csr_matrix((np.asarray(vals, np.float32), (np.zeros(len(cols), np.int64), cols)),
                          shape=(1, self.n_items))
        m.sum_duplicates()
        return m

    def _key(self, mid):
        if self.item_ids.dtype.kind == "i":
            try:
                return int(mid)
            except (TypeError, ValueError):
                return mid
        return str(mid)

    def _as_rows(self, rows) -> tuple[sp.csr_matrix, bool]:
        if isinstance(rows, (list, tuple)) and (not rows or not sp.issparse(rows)):
            return self.rows_from_ratings(rows), True
        m = sp.csr_matrix(rows, dtype=np.float32)
        if m.shape[1] != self.n_items:
            raise NpcfError(f"input has {m.shape[1]} columns; the model expects "
                            f"{self.n_items} items")
        return m, False

    def _feeds(self, m: sp.csr_matrix) -> dict:
        if self.signature == "dense":
            return {"ratings": m.toarray()}
        lengths = np.diff(m.indptr)
        width = max(1, int(lengths.max()) if lengths.size else 1)
        idx = np.zeros((m.shape[0], width), np.int64)
        val = np.zeros((m.shape[0], width), np.float32)
        pos = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
        rows = np.repeat(np.arange(m.shape[0]), lengths)
        idx[rows, pos], val[rows, pos] = m.indices, m.data
        return {"item_idx": idx, "item_rating": val}

    def _run(self, m: sp.csr_matrix, outputs):
        return self.session.run(outputs, self._feeds(m))

    # ---------------------------------------------------------------- scoring
    def scores(self, rows, batch_size: int = 256) -> np.ndarray:
        """Predicted scores float32 (B, n_items), or (n_items,) for one user's list."""
        m, single = self._as_rows(rows)
        out = np.empty(m.shape, np.float32)
        for s in range(0, m.shape[0], batch_size):
            out[s:s + batch_size] = self._run(m[s:s + batch_size], ["scores"])[0]
        return out[0] if single else out

    def recommend(self, rows, k: int = 10, *, exclude_seen: bool = True, exclude=None,
                  batch_size: int = 256) -> Recommendations:
        """Top-``k`` movie ids and scores per user (best first).

        ``rows``: CSR (B, n_items) or one user's ``[(movie_id, rating), ...]``.
        ``exclude_seen``: never recommend a movie in the input. ``exclude``: more
        movie ids to leave out. Ties go to the lower column index.
        """
        m, single = self._as_rows(rows)
        k = int(min(k, self.n_items))
        extra = np.zeros(self.n_items, bool)
        for mid in exclude or ():
            key = self._key(mid)
            if key not in self._index:
                raise NpcfError(f"unknown movie id to exclude: {mid}")
            extra[self._index[key]] = True
        use_graph = (exclude_seen and not extra.any() and 0 < k <= self.graph_top_k)
        ids = np.empty((m.shape[0], k), np.int64)
        top_scores = np.empty((m.shape[0], k), np.float32)
        for s in range(0, m.shape[0], batch_size):
            batch = m[s:s + batch_size]
            if use_graph:
                items, sc = self._run(batch, ["top_items", "top_scores"])
                ids[s:s + batch.shape[0]], top_scores[s:s + batch.shape[0]] = items[:, :k], sc[:, :k]
                continue
            sc = self._run(batch, ["scores"])[0]
            rank = sc.astype(np.float64)
            if exclude_seen:
                rank[np.repeat(np.arange(batch.shape[0]), np.diff(batch.indptr)), batch.indices] = -np.inf
            rank[:, extra] = -np.inf
            top = top_k(rank, k)
            ids[s:s + batch.shape[0]] = top
            top_scores[s:s + batch.shape[0]] = np.take_along_axis(sc, top, 1)
        movie_ids = self.item_ids[ids]
        titles = None
        if self.titles is not None:
            titles = [[self.titles.get(x, "") for x in row] for row in movie_ids.tolist()]
        if single:
            return Recommendations(movie_ids[0], top_scores[0], titles[0] if titles else None)
        return Recommendations(movie_ids, top_scores, titles)


def _item_ids(path: Path, meta: dict) -> np.ndarray:
    text = meta.get("item_ids")
    if text is None:
        side = Path(str(path) + ".items.json")
        if not side.is_file():
            raise CheckpointError(f"{path}: item ids not in the model and sidecar {side} missing")
        text = side.read_text()
        if hashlib.sha256(text.encode()).hexdigest() != meta.get("item_ids_sha256"):
            raise CheckpointError(f"{side}: item ids do not match the model (hash differs)")
    ids = json.loads(text)
    return np.asarray(ids, np.int64 if meta.get("item_ids_dtype") == "int64" else str)
