"""``AutoEncoder``: the scikit-learn-like estimator around :class:`~npcf.model.Network`."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import NpcfError
from .model import Network
from .vocab import Vocabulary

# Defaults chosen on a validation split of movies-small (benchmarks/NOTES.md).
DEFAULTS = dict(
    layers=(512,), tied=True, activation="selu", output_activation="identity", dropout=0.0,
    loss="mse", denoise=True, noise="masking", noise_level=0.2, optimizer="adam", lr=1e-3,
    weight_decay=0.0, clip_norm=None, schedule="none", step_size=10, gamma=0.5,
    n_epochs=40, batch_size=64, patience=5, item_based=False, lazy=True,
    output_mode="auto", seed=0,
)


class AutoEncoder:
    """Deep autoencoder for collaborative filtering.

    User-based (default): a user's ratings over all items in, the reconstruction
    out. ``item_based=True``: an item's ratings over all users (I-AutoRec).
    ``fit(X)`` takes a CSR users x items matrix; ``predict(X)`` returns dense
    float32 scores (B, n_items), clipped to the rating scale for the MSE loss.
    Every keyword is a hyperparameter (see ``DEFAULTS``).
    """

    def __init__(self, **params):
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
        for k, v in DEFAULTS.items():
            setattr(self, k, params.get(k, v))
        self.layers = tuple(int(h) for h in self.layers)
        self.network: Network | None = None
        self.scale: tuple[float, float] | None = None
        self.users: Vocabulary | None = None
        self.items: Vocabulary | None = None
        self.history: list[dict] = []
        self.info: dict = {}

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
        from .train import Trainer
        X = sp.csr_matrix(X)
        if validation is not None and self.item_based and validation_input is not None \
                and (validation_input != X).nnz:
            raise NpcfError("item-based models predict from the training matrix; "
                            "validation_input must be the training matrix")
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        if self.scale is None and self.loss == "mse" and X.nnz:
            self.scale = (float(X.data.min()), float(X.data.max()))
        self.users, self.items = users, items
        if resume and self.network is None or not resume:
            self.build(*X.shape)
        val = None
        if validation is not None:
            vin = X if validation_input is None else validation_input
            val = (self._orient(vin), self._orient(validation))
            if self.item_based:
                val = (self._orient(X), self._orient(validation))
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

    # --------------------------------------------------------------- predicting
    def _check(self, X) -> sp.csr_matrix:
        if self.network is None:
            raise NpcfError("the model is not fitted")
        X = sp.csr_matrix(X, dtype=np.float32)
        want = self.network.n_inputs if not self.item_based else None
        if want is not None and X.shape[1] != want:
            raise NpcfError(f"input has {X.shape[1]} columns; the model expects {want} items")
        return X

    def _transform_input(self, x: sp.csr_matrix) -> sp.csr_matrix:
        if self.loss == "multinomial":
            from .train import binarize, l2_normalize_rows
            return l2_normalize_rows(binarize(x))
        return x

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
            xt = self._transform_input(sp.csr_matrix(X.T))
            out = np.empty((X.shape[1], X.shape[0]), np.float32)
            for s in range(0, xt.shape[0], batch_size):
                out[s:s + batch_size] = net.predict(xt[s:s + batch_size])
            return self._finish(np.ascontiguousarray(out.T))
        out = np.empty(X.shape, np.float32)
        for s in range(0, X.shape[0], batch_size):
            out[s:s + batch_size] = net.predict(self._transform_input(X[s:s + batch_size]))
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
        uniq, start = np.unique(r_sorted, return_index=True)
        bounds = np.r_[start, r_sorted.size]
        for s in range(0, uniq.size, batch_size):
            u = uniq[s:s + batch_size]
            lo, hi = bounds[s], bounds[min(s + batch_size, uniq.size)]
            local = np.searchsorted(u, r_sorted[lo:hi])
            a, _ = self.network.hidden(self._transform_input(X[u]))
            z = self.network.output_at(a, local, cols[order[lo:hi]])
            out[order[lo:hi]] = self.network._g(z)
        return self._finish(out)

    # -------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write ``model.npz`` + ``model.json`` into directory ``path`` (atomically)."""
        from .checkpoint import save_model
        save_model(self, path)

    @classmethod
    def load(cls, path) -> "AutoEncoder":
        """Load a model saved by :meth:`save` (directory or ``model.npz``)."""
        from .checkpoint import load_model
        return load_model(path)


def fingerprint(X: sp.csr_matrix) -> str:
    """A short SHA-256 of a CSR matrix's shape, pattern and values."""
    import hashlib
    X = sp.csr_matrix(X)
    h = hashlib.sha256(repr(X.shape).encode())
    for arr in (X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]
