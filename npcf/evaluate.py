"""Scoring a fitted model on a split: rating metrics and (multinomial) ranking metrics."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import metrics


def rating_metrics(model, inputs: sp.csr_matrix, target: sp.csr_matrix) -> dict:
    """RMSE and MAE of ``model`` on the stored entries of ``target`` given ``inputs``."""
    target = sp.csr_matrix(target)
    rows = np.repeat(np.arange(target.shape[0]), np.diff(target.indptr))
    pred = model.predict_at(inputs, rows, target.indices)
    return {"rmse": metrics.rmse(pred, target.data), "mae": metrics.mae(pred, target.data),
            "n_ratings": int(target.nnz),
            "n_users": int(np.count_nonzero(np.diff(target.indptr)))}


def ranking_metrics(model, inputs: sp.csr_matrix, target: sp.csr_matrix, ks=(20, 100),
                    batch_size: int = 512) -> dict:
    """Recall@k and NDCG@k with the user's input items excluded from the ranking."""
    inputs, target = sp.csr_matrix(inputs), sp.csr_matrix(target)
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    acc = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg")}
    for s in range(0, users.size, batch_size):
        u = users[s:s + batch_size]
        x = inputs[u]
        scores = model.predict(x).astype(np.float64)
        scores[np.repeat(np.arange(u.size), np.diff(x.indptr)), x.indices] = -np.inf
        for k in ks:
            acc[f"recall@{k}"].append(metrics.recall_at_k(scores, target[u], k))
            acc[f"ndcg@{k}"].append(metrics.ndcg_at_k(scores, target[u], k))
    out = {k: float(np.nanmean(np.concatenate(v))) if v else float("nan") for k, v in acc.items()}
    out.update(n_users=int(users.size), n_ratings=int(target.nnz))
    return out
