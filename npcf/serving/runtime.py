"""Framework-free inference: an exported ``model.onnx`` in onnxruntime.

Imports only numpy, scipy and onnxruntime (no pandas, click or onnx), so it
embeds in small environments::

    rec = Recommender.load("models/model.onnx", movies="movies.csv")
    ids, scores = rec.recommend([(1, 5.0), (260, 4.5)], k=10)
    rec.titles_of(ids)

A user never seen in training gets recommendations from their ratings alone
(fold-in): the autoencoder encodes any rating vector. ``recommend`` follows the
contract every npcf model shares (:class:`~npcf.evaluation.ranking.Recommends`); the
in-graph top-k serves it when the request allows, and ranks exactly as the NumPy path.
A raw-id graph (``input_signature`` ``raw_ids``) is fed the movie ids of the rows'
columns (padding: the first column's id, rating 0).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp

from npcf.data.titles import read_titles
from npcf.data.vocab import Vocabulary
from npcf.errors import CheckpointError, NpcfWarning, one_line, positive_int
from npcf.evaluation.ranking import PAD, Recommends
from npcf.utils.sparse import dense_mask, entry_rows

#: padded history entries (users x longest history) per session run
PADDED_ENTRIES = 16_384


class Recommender(Recommends):
    """Scores and top-k recommendations from an exported npcf ONNX model.

    ``meta``: the model's metadata (strings); ``items``: :class:`Vocabulary` of the
    movie ids of its columns; ``titles``: ``{movie id: title}`` or None.
    """

    n_items: int = 0     # set from the id map (its counts may be unknown: not derived)

    def __init__(self, session: ort.InferenceSession, meta: dict, items: Vocabulary,
                 titles: dict | None = None, path=None, batch_size: int = 256):
        self.session, self.meta, self.items, self.titles = session, meta, items, titles
        self.path, self.recommend_batch = path, batch_size
        self.signature = meta.get("input_signature", "dense")
        self.graph_top_k = int(meta.get("top_k", "0"))
        self.n_items = len(items)
        # what ranking orders by: the scores before the clip to the rating scale, where
        # the graph has them (exports before them, unclipped models: ``scores``)
        self._rank_output = "rank_scores" if "rank_scores" in {
            o.name for o in session.get_outputs()} else "scores"
        arch = _json(meta.get("architecture"), {})
        self.loss = arch.get("loss", "mse")
        scale = _json(meta.get("rating_scale"), None)
        self.rating_scale = tuple(scale) if scale and self.loss == "mse" else None
        self.popularity_penalty = float(meta.get("popularity_penalty", "0") or 0)
        counts = _json(meta.get("item_counts"), None)
        self.item_counts = None if counts is None else np.asarray(counts, np.int64)
        untrained = _json(meta.get("untrained_items"), None)
        self._untrained = None if untrained is None else np.asarray(untrained, np.int64)
        if self.ranks_after_clip:
            warnings.warn(f"{path or 'this model'}: exported before npcf ranked by the scores "
                          "before the clip to the rating scale, so movies predicted past its "
                          "top tie there and fall back to movie order; re-export it "
                          "(eval --generate) to rank them", NpcfWarning, stacklevel=3)

    @property
    def ranks_after_clip(self) -> bool:
        """Whether ranking orders by scores clipped to the rating scale: an export made
        before the graph had its ``rank_scores`` output (re-exporting fixes it)."""
        return self.rating_scale is not None and self._rank_output == "scores"

    def untrained_items(self) -> np.ndarray:
        """Columns without a training rating, as recorded at export (the graph's top-k
        leaves them out too); none for an export older than that record, whose graph
        ranks them, so both paths keep ranking alike."""
        return np.zeros(0, np.int64) if self._untrained is None else self._untrained

    @property
    def item_ids(self) -> np.ndarray:
        """Movie id of each column."""
        return self.items.ids

    @classmethod
    def load(cls, path, movies=None, threads: int | None = None,
             batch_size: int = 256) -> "Recommender":
        """Load ``path`` (an npcf ``.onnx``); ``movies``: a titles file; ``threads``:
        onnxruntime's intra-op threads; ``batch_size``: users per session run."""
        path = Path(path)
        batch_size = positive_int(batch_size, "batch_size")
        threads = None if threads is None else positive_int(threads, "threads")
        if not path.is_file():
            raise CheckpointError(f"{path}: no such model file")
        if path.suffix in (".npz", ".json"):
            if _item_based_checkpoint(path):
                raise CheckpointError(f"{path}: an item-based checkpoint, which cannot be "
                                      "exported or served (it scores only its training "
                                      "users); train a user-based model (train --user_based) "
                                      "and export that")
            raise CheckpointError(f"{path}: a training checkpoint, not an exported model; "
                                  f"export it first: python cli.py eval --generate --model "
                                  f"{shlex.quote(str(path))}")
        with open(path, "rb"):            # "FILE: Permission denied", not onnxruntime's
            pass                          # "system error number 13"
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            # a file it cannot parse makes onnxruntime print an "EP Error ... Falling back"
            # block and retry; the one-line error below says it all
            try:                  # a name onnxruntime cannot take as UTF-8 (a non-UTF-8
                str(path).encode("utf-8")          # locale): the model's bytes instead
                source = str(path)
            except UnicodeEncodeError:
                source = path.read_bytes()
            with contextlib.redirect_stdout(io.StringIO()):
                session = ort.InferenceSession(source, opts,
                                               providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: cannot load ONNX model "
                                  f"({one_line(err)[:200]})") from None
        try:
            meta = dict(session.get_modelmeta().custom_metadata_map)
        except (UnicodeDecodeError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt ONNX metadata ({one_line(err)[:120]})") \
                from None
        if "npcf_version" not in meta:
            raise CheckpointError(f"{path}: not an npcf model (no npcf metadata)")
        try:
            items = Vocabulary(_item_ids(path, meta))
            model = cls(session, meta, items, None, path, batch_size)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{path}: corrupt npcf metadata ({one_line(err)[:120]})") \
                from None
        model.titles = read_titles(movies) if movies else None
        model._loaded_with = (str(path.resolve()),
                              None if movies is None else str(Path(movies).resolve()),
                              threads, batch_size)
        return model

    def __reduce__(self):
        """Pickled as the arguments of :meth:`load` (absolute paths; an onnxruntime session
        cannot be pickled), so a Recommender can be sent to worker processes (Dask,
        multiprocessing): each loads the file again. Attributes changed after loading
        do not travel."""
        args = getattr(self, "_loaded_with", None)
        if args is None:
            raise TypeError("only a Recommender made by Recommender.load can be pickled "
                            "(it is sent as the path to load)")
        return (type(self).load, args)

    def titles_of(self, ids) -> list:
        """Titles of movie ids (nested like ``ids``; ``""`` when unknown or no titles)."""
        titles = self.titles or {}
        ids = np.asarray(ids)
        return np.vectorize(lambda m: titles.get(m, ""), otypes=[object])(ids).tolist() \
            if ids.size else ids.tolist()

    # ---------------------------------------------------------------- scoring
    def _feeds(self, m: sp.csr_matrix) -> dict:
        if self.signature == "dense":
            return {"ratings": m.toarray()}
        lengths = np.diff(m.indptr)
        width = max(1, int(lengths.max()) if lengths.size else 1)
        idx = np.zeros((m.shape[0], width), np.int64)
        val = np.zeros((m.shape[0], width), np.float32)
        pos = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
        rows = entry_rows(m)
        idx[rows, pos], val[rows, pos] = m.indices, m.data
        if self.signature == "raw_ids":       # the graph maps ids to columns itself
            return {"movie_id": np.asarray(self.items.ids, np.int64)[idx], "rating": val}
        return {"item_idx": idx, "item_rating": val}

    def _run(self, m: sp.csr_matrix, outputs):
        """``outputs`` for the rows of ``m``, in row order. The first layer gathers one
        weight row per padded history entry (rows x the longest history), so one long
        history would inflate a whole batch: rows go to the session in runs of similar
        history length, at most :data:`PADDED_ENTRIES` padded entries each."""
        lengths = np.maximum(np.diff(m.indptr), 1)
        if m.shape[0] * int(lengths.max(initial=1)) <= PADDED_ENTRIES:
            return self.session.run(outputs, self._feeds(m))
        order = np.argsort(lengths, kind="stable")
        out, lo = None, 0
        while lo < order.size:           # ascending lengths: a run's last row is its longest
            fits = np.arange(1, order.size - lo + 1) * lengths[order[lo:]] <= PADDED_ENTRIES
            hi = lo + max(1, int(np.argmin(fits)) if not fits.all() else fits.size)
            rows = order[lo:hi]
            part = self.session.run(outputs, self._feeds(m[rows]))
            if out is None:
                out = [np.empty((m.shape[0],) + p.shape[1:], p.dtype) for p in part]
            for o, p in zip(out, part):
                o[rows] = p
            lo = hi
        return out

    def _score_rows(self, X: sp.csr_matrix) -> np.ndarray:
        return self._run(X, [self._rank_output])[0]


    def rank_scores(self, rows, batch_size: int | None = None) -> np.ndarray:
        """The scores ranking orders by (:meth:`scores` before the clip to the rating
        scale, where the graph records them; else :meth:`scores`), shaped as there."""
        return self._scores(rows, batch_size, self._rank_output)


    def scores(self, rows, batch_size: int | None = None) -> np.ndarray:
        """Predicted scores float32 (B, n_items) for sparse rows, or (n_items,) for one
        user's ratings (any single-user form :meth:`recommend` takes)."""
        return self._scores(rows, batch_size, "scores")

    def _scores(self, rows, batch_size: int | None, output: str) -> np.ndarray:
        m, single = self._user_rows(rows)
        step = max(1, int(batch_size or self.recommend_batch))
        out = np.empty(m.shape, np.float32)
        for s in range(0, m.shape[0], step):
            out[s:s + step] = self._run(m[s:s + step], [output])[0]
        return out[0] if single else out

    def _rank_rows(self, X, k, filter_seen, exclude, candidates):
        """The in-graph top-k when the request is what the graph computes (seen items
        masked, nothing excluded, k within the exported k), else the NumPy path (so a k
        above the exported one is served in full); both rank through the same penalty
        and tie rule and return min(k, the movies allowed) columns, as the estimator does
        (:class:`~npcf.evaluation.ranking.Recommendations`)."""
        if not (filter_seen and exclude is None and candidates is None
                and k <= self.graph_top_k):
            return super()._rank_rows(X, k, filter_seen, exclude, candidates)
        k = min(k, self.n_items - self.untrained_items().size)   # the graph never ranks those
        ids = np.empty((X.shape[0], k), np.int64)
        top_scores = np.empty((X.shape[0], k), np.float32)
        step = max(1, int(self.recommend_batch))
        for s in range(0, X.shape[0], step):
            batch = X[s:s + step]
            items, sc = self._run(batch, ["top_items", "top_scores"])
            items, sc = items[:, :k], sc[:, :k]
            short = np.diff(batch.indptr) > self.n_items - k    # fewer unseen than k
            if short.any():                                      # the graph lists seen ones last
                rated = np.take_along_axis(dense_mask(batch[short]), items[short], 1)
                items[short] = np.where(rated, PAD, items[short])
                sc[short] = np.where(rated, -np.inf, sc[short])
            items[sc == -np.inf] = PAD          # slots past the movies it may recommend
            ids[s:s + batch.shape[0]], top_scores[s:s + batch.shape[0]] = items, sc
        return ids, top_scores


def _item_based_checkpoint(path: Path) -> bool:
    """Whether the checkpoint ``path`` (``.npz`` or ``.json``) records an item-based model."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        return bool(meta.get("hyperparameters", {}).get("item_based"))
    except (OSError, ValueError, AttributeError):
        return False


def _json(text, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def sidecar_path(path) -> Path:
    """Where an export at ``path`` keeps its movie ids when its metadata does not hold
    them (catalogues over 200,000 movies): ``<path>.items.json``."""
    return Path(f"{path}.items.json")


def _item_ids(path: Path, meta: dict) -> np.ndarray:
    text = meta.get("item_ids")
    if text is None:
        side = sidecar_path(path)
        if not side.is_file():
            raise CheckpointError(f"{path}: item ids not in the model and sidecar {side} missing")
        text = side.read_text()
        if hashlib.sha256(text.encode()).hexdigest() != meta.get("item_ids_sha256"):
            raise CheckpointError(f"{side}: item ids do not match the model (hash differs)")
    try:
        ids = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path}: corrupt item ids in the metadata") from None
    return np.asarray(ids, np.int64 if meta.get("item_ids_dtype") == "int64" else str)

