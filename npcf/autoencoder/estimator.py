"""``AutoEncoder``: the scikit-learn-like estimator around :class:`~npcf.nn.network.Network`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from npcf.errors import NpcfError
from npcf.nn.network import Network
from npcf.data.vocab import Vocabulary

# Defaults chosen on the validation part of movies-small (random 90/10 split, seed 0,
# validation carved as `npcf train` does); every attempt is in benchmarks/NOTES.md.
DEFAULTS = dict(
    layers=(256,), tied=True, activation="tanh", output_activation="identity", dropout=0.0,
    loss="mse", denoise=True, noise="masking", noise_level=0.2, optimizer="adam", lr=1e-3,
    weight_decay=1e-2, clip_norm=None, schedule="none", step_size=10, gamma=0.5,
    n_epochs=40, batch_size=64, patience=5, item_based=False, residual=True, bias_reg=5.0,
    lazy=True, output_mode="auto", seed=0, ensemble=1,
)
#: What changes when ``item_based=True`` and the keyword is not given (tuned the same way).
ITEM_BASED_DEFAULTS = dict(activation="relu", layers=(128,))


class AutoEncoder:
    """Deep autoencoder for collaborative filtering.

    User-based (default): a user's ratings over all items in, the reconstruction
    out. ``item_based=True``: an item's ratings over all users (I-AutoRec).
    ``fit(X)`` takes a CSR users x items matrix; ``predict(X)`` returns dense
    float32 scores (B, n_items), clipped to the rating scale for the MSE loss.
    Every keyword is a hyperparameter (see ``DEFAULTS``; ``ITEM_BASED_DEFAULTS``
    apply to an item-based model unless given). ``ensemble=K`` fits K members with
    seeds ``seed .. seed+K-1``, each early-stopped on its own, and folds them into one
    network that predicts their mean (:mod:`npcf.autoencoder.ensemble`).
    """

    def __init__(self, **params):
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
        defaults = dict(DEFAULTS, **ITEM_BASED_DEFAULTS) if params.get("item_based") else DEFAULTS
        for k, v in defaults.items():
            setattr(self, k, params.get(k, v))
        self.layers = tuple(int(h) for h in self.layers)
        if int(self.ensemble) != self.ensemble or self.ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer, got {self.ensemble!r}")
        self.ensemble = int(self.ensemble)
        self.network: Network | None = None
        self.scale: tuple[float, float] | None = None
        self.users: Vocabulary | None = None
        self.items: Vocabulary | None = None
        self.history: list[dict] = []
        self.info: dict = {}
        self.baseline = None
        self.item_counts: np.ndarray | None = None

    def get_params(self) -> dict:
        """Hyperparameters as a JSON-friendly dict."""
        out = {k: getattr(self, k) for k in DEFAULTS}
        out["layers"] = list(self.layers)
        return out

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items()
                   if v != (list(DEFAULTS[k]) if k == "layers" else DEFAULTS[k])}
        return "AutoEncoder(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"

    # ------------------------------------------------------------------ fitting
    def _orient(self, x: sp.spmatrix) -> sp.csr_matrix:
        x = sp.csr_matrix(x, dtype=np.float32)
        return sp.csr_matrix(x.T) if self.item_based else x

    def build(self, n_users: int, n_items: int, dtype=np.float32) -> Network:
        """Create a fresh network for a users x items problem."""
        width = n_users if self.item_based else n_items
        self.network = Network(width, self.layers, tied=self.tied, activation=self.activation,
                               output_activation=self.output_activation, dropout=self.dropout,
                               seed=self.seed, dtype=dtype)
        return self.network

    def fit(self, X, validation=None, validation_input=None, *, scale=None, users=None,
            items=None, out=None, resume: bool = False, quiet: bool = True,
            verbose_epochs: int = 0, echo=None) -> "AutoEncoder":
        """Train on CSR ``X`` (n_users, n_items).

        ``validation``: CSR targets for early stopping, predicted from
        ``validation_input`` (default ``X``). ``scale``: (min, max) rating range for
        clipping. ``users``/``items``: :class:`Vocabulary` id maps kept with the
        model. ``out``: directory for the best checkpoint, ``history.csv`` and the
        resume state; ``resume=True`` continues an interrupted run from ``out``.
        """
        from npcf.autoencoder.trainer import Trainer
        X = sp.csr_matrix(X)
        if self.ensemble > 1:
            return self._fit_ensemble(X, validation, validation_input, scale=scale, users=users,
                                      items=items, out=out, resume=resume, quiet=quiet,
                                      verbose_epochs=verbose_epochs, echo=echo)
        if validation is not None and self.item_based and validation_input is not None \
                and (validation_input != X).nnz:
            raise NpcfError("item-based models predict from the training matrix; "
                            "validation_input must be the training matrix")
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        if self.scale is None and self.loss == "mse" and X.nnz:
            self.scale = (float(X.data.min()), float(X.data.max()))
        self.users, self.items = users, items
        self.item_counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
        if not resume or self.network is None:
            self.build(*X.shape)
        self.baseline = None
        if self.residual and self.loss == "mse":
            from npcf.nn.bias import BiasBaseline
            self.baseline = BiasBaseline(self.bias_reg, self.bias_reg).fit(self._orient(X))
        val = None
        if validation is not None:
            vin = X if validation_input is None or self.item_based else validation_input
            val = (self._orient(vin), self._orient(validation))
        kw = {} if echo is None else {"echo": echo}
        trainer = Trainer(self, self._orient(X), val, out=out, quiet=quiet,
                          verbose_epochs=verbose_epochs, **kw)
        self.info["fingerprint"] = fingerprint(X)
        if resume:
            trainer.load_resume()
        self.history = trainer.run()
        self.info.update(best_epoch=trainer.best_epoch + 1, epochs_run=len(self.history))
        if out is not None:
            self.save(out)
        return self

    def _fit_ensemble(self, X, validation, validation_input, *, out, resume, echo, **kw):
        """Fit ``ensemble`` members (seeds ``seed + k``) and merge them into one network.

        With ``out``, member k trains in ``out/members/k`` (its own checkpoint, history
        and Ctrl-C resume state); ``resume`` continues interrupted members and reuses
        finished ones trained with the same options on the same data (others train again).
        """
        from npcf.autoencoder.ensemble import merge
        from npcf.autoencoder.trainer import RESUME_JSON, history_columns, read_history, write_history
        members, data_fp = [], fingerprint(X)
        for k in range(self.ensemble):
            params = dict(self.get_params(), ensemble=1, seed=self.seed + k)
            where = None if out is None else Path(out) / "members" / str(k)
            if echo is not None and not kw.get("quiet", True):
                echo(f"ensemble member {k + 1}/{self.ensemble} (seed {self.seed + k})")
            interrupted = resume and where is not None and (where / RESUME_JSON).exists()
            if resume and where is not None and not interrupted \
                    and _finished(where, params, data_fp):
                member = AutoEncoder.load(where)
                member.history = read_history(where / "history.csv")
            else:
                member = AutoEncoder(**params).fit(X, validation, validation_input, out=where,
                                                   resume=bool(interrupted), echo=echo, **kw)
            members.append(member)
        first = members[0]
        self.scale, self.users, self.items = first.scale, first.users, first.items
        self.item_counts, self.baseline = first.item_counts, first.baseline
        self.network = merge([m.network for m in members])
        self.history = [dict(member=k + 1, **row) for k, m in enumerate(members)
                        for row in m.history]
        self.info = {"fingerprint": first.info["fingerprint"],
                     "best_epoch": [m.info["best_epoch"] for m in members],
                     "epochs_run": [m.info["epochs_run"] for m in members]}
        if validation is not None:   # the ensemble's own figures, named as in history rows
            from npcf.evaluation.protocol import ranking_metrics, rating_metrics
            vin = X if validation_input is None or self.item_based else validation_input
            if self.loss == "mse":
                r = rating_metrics(self, vin, validation)
                self.info["validation"] = {"val_rmse": r["rmse"], "val_mae": r["mae"]}
            else:
                r = ranking_metrics(self, vin, validation, ks=(100,))
                self.info["validation"] = {"val_ndcg": r["ndcg@100"]}
        if out is not None:
            self.save(out)
            write_history(Path(out) / "history.csv", self.history,
                          ["member"] + history_columns(self.loss))
        return self

    # --------------------------------------------------------------- predicting
    def _check(self, X) -> sp.csr_matrix:
        if self.network is None:
            raise NpcfError("the model is not fitted")
        X = sp.csr_matrix(X, dtype=np.float32)
        if self.item_based:
            if X.shape[0] != self.network.n_inputs:
                raise NpcfError(f"input has {X.shape[0]} rows; this item-based model was fitted "
                                f"on {self.network.n_inputs} users and needs their full matrix")
        elif X.shape[1] != self.network.n_inputs:
            raise NpcfError(f"input has {X.shape[1]} columns; the model expects "
                            f"{self.network.n_inputs} items")
        return X

    def encode(self, x: sp.csr_matrix):
        """Network input for oriented CSR rows ``x``: ``(x_in, row_bias or None)``.

        Multinomial: binarised, L2-normalised rows. Residual MSE: ratings minus
        ``mu + b_row + b_col`` (``b_row`` from the row's own ratings). Else ``x``.
        """
        if self.loss == "multinomial":
            from npcf.autoencoder.trainer import binarize, l2_normalize_rows
            return l2_normalize_rows(binarize(x)), None
        if self.baseline is not None:
            b = self.baseline.row_bias(x)
            return self.baseline.residual(x, b), b
        return x, None

    def encode_target(self, t: sp.csr_matrix, b_row) -> sp.csr_matrix:
        """Training target in the network's space (residual when ``b_row`` is given)."""
        return t if b_row is None else self.baseline.residual(t, b_row)

    def decode_at(self, y: np.ndarray, b_row, rows, cols) -> np.ndarray:
        """Network outputs at pairs back to ratings."""
        return y if b_row is None else y + self.baseline.offset_at(b_row, rows, cols)

    def _finish(self, y: np.ndarray) -> np.ndarray:
        if self.loss == "mse" and self.scale is not None:
            np.clip(y, self.scale[0], self.scale[1], out=y)
        return y

    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """Dense float32 scores (n_rows, n_items) for the users (rows) of CSR ``X``.

        User-based: any rows (fold-in: new users need no retraining). Item-based:
        ``X`` must be the full users x items matrix the model was fitted on (each
        item's column is its input), and scores are returned for all its rows.
        """
        X = self._check(X)
        net = self.network
        if self.item_based:
            X = sp.csr_matrix(X.T)
        out = np.empty(X.shape, np.float32)
        for s in range(0, X.shape[0], batch_size):
            x, b = self.encode(X[s:s + batch_size])
            y = net.predict(x)
            if b is not None:
                y += self.baseline.offset(b)
            out[s:s + batch_size] = y
        if self.item_based:
            out = np.ascontiguousarray(out.T)
        return self._finish(out)

    def predict_at(self, X, rows, cols, batch_size: int = 1024) -> np.ndarray:
        """Predicted ratings (1-D float32) of the pairs (rows[k], cols[k]) given input ``X``.

        Computes only the requested outputs (no dense (B, n_items) array).
        """
        X = self._check(X)
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        if self.item_based:
            X, rows, cols = sp.csr_matrix(X.T), cols, rows
        out = np.empty(rows.size, np.float32)
        order = np.argsort(rows, kind="stable")
        r_sorted = rows[order]
        start = np.flatnonzero(np.r_[True, r_sorted[1:] != r_sorted[:-1]]) if r_sorted.size \
            else np.zeros(0, np.int64)
        uniq = r_sorted[start]
        bounds = np.r_[start, r_sorted.size]
        for s in range(0, uniq.size, batch_size):
            u = uniq[s:s + batch_size]
            lo, hi = bounds[s], bounds[min(s + batch_size, uniq.size)]
            local = np.searchsorted(u, r_sorted[lo:hi])
            x, b = self.encode(X[u])
            a, _ = self.network.hidden(x)
            c = cols[order[lo:hi]]
            y = self.network._g(self.network.output_at(a, local, c))
            out[order[lo:hi]] = self.decode_at(y, b, local, c)
        return self._finish(out)

    # -------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write ``model.npz`` + ``model.json`` into directory ``path`` (atomically)."""
        from npcf.autoencoder.checkpoint import save_model
        save_model(self, path)

    @classmethod
    def load(cls, path) -> "AutoEncoder":
        """Load a model saved by :meth:`save` (directory or ``model.npz``)."""
        from npcf.autoencoder.checkpoint import load_model
        return load_model(path)


def _finished(path, params: dict, data_fingerprint: str) -> bool:
    """Whether ``path`` holds a model trained to the end with ``params`` on the data
    whose :func:`fingerprint` is ``data_fingerprint``."""
    import json
    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, ValueError):
        return False
    info = meta.get("info", {})
    return ("epochs_run" in info and info.get("fingerprint") == data_fingerprint
            and meta.get("hyperparameters") == json.loads(json.dumps(params)))


def fingerprint(X: sp.csr_matrix) -> str:
    """A short SHA-256 of a CSR matrix's shape, pattern and values."""
    import hashlib
    X = sp.csr_matrix(X)
    h = hashlib.sha256(repr(X.shape).encode())
    for arr in (X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]
