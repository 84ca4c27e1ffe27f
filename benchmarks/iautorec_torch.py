"""I-AutoRec (Sedhain et al., "AutoRec: Autoencoders Meet Collaborative Filtering",
WWW 2015) in torch, as a reference point for npcf's rating prediction.

Written from the paper's description:

- item-based: item ``i``'s input is its column of training ratings over all users
  (0 where unobserved); ``h = sigmoid(V r_i + mu)`` with 500 hidden units, output
  ``W h + b`` (identity);
- objective: the sum of squared errors on the observed entries plus
  ``lambda / 2 * (||W||^2 + ||V||^2)``. Minimised with Adam (lr 1e-3) in
  mini-batches of :data:`BATCH` items, each batch carrying its share
  (``batch / n_items``) of the penalty, so one epoch sums to the paper's objective;
- ``lambda`` from :data:`LAMBDAS`, chosen on a 5% validation slice carved at random
  (seed 0) from the training ratings; early stopping on the same slice (patience
  :data:`PATIENCE` epochs, the best epoch's weights are kept);
- test: the chosen model reads each item's full training column (validation slice
  included, as npcf's ``test_input`` does) and predicts the test pairs, clipped to the
  rating scale. Pairs whose user or item has no training rating get the training mean.

Two choices the paper leaves open: the output bias ``b`` starts at the training mean
(Adam at lr 1e-3 would otherwise need thousands of steps just to reach the mean of a
1-100 scale), everything else has torch's default initialisation.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

HIDDEN = 500
LR = 1e-3
LAMBDAS = (1.0, 10.0, 100.0, 300.0)
VALIDATION_FRACTION = 0.05
BATCH = 64
MAX_EPOCHS = 300
PATIENCE = 20
#: torch threads: on this shared 2-core machine 2 threads ran an epoch 3-4x slower than 1
THREADS = 1


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def carve(train: sp.csr_matrix, fraction: float = VALIDATION_FRACTION, seed: int = 0):
    """``(fit, validation)``: a random ``fraction`` of ``train``'s entries held out."""
    coo = train.tocoo()
    rng = np.random.default_rng(seed)
    held = rng.random(coo.nnz) < fraction

    def part(mask):
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=train.shape,
                             dtype=np.float32)
    return part(~held), part(held)


def _net(n_users: int, mean: float):
    import torch
    net = torch.nn.Sequential(torch.nn.Linear(n_users, HIDDEN), torch.nn.Sigmoid(),
                              torch.nn.Linear(HIDDEN, n_users))
    with torch.no_grad():
        net[2].bias.fill_(mean)
    return net


def _items(m: sp.csr_matrix):
    """Items x users dense ratings and mask (torch float32)."""
    import torch
    dense = torch.from_numpy(np.asarray(m.T.todense(), dtype=np.float32))
    return dense, (dense != 0).float()


def _predict_at(net, inputs, users, items, batch: int = 1024) -> np.ndarray:
    """Outputs at (user, item) pairs given the items x users ``inputs``."""
    import torch
    out = np.empty(len(users), np.float32)
    order = np.argsort(items, kind="stable")
    with torch.no_grad():
        for a in range(0, inputs.shape[0], batch):
            lo, hi = np.searchsorted(items[order], [a, a + batch])
            if lo == hi:
                continue
            idx = order[lo:hi]
            y = net(inputs[a:a + batch]).numpy()
            out[idx] = y[items[idx] - a, users[idx]]
    return out


def _rmse(pred, target) -> float:
    return float(np.sqrt(np.mean((pred.astype(np.float64) - target) ** 2)))


def fit_one(fit: sp.csr_matrix, validation: sp.csr_matrix, lam: float, max_epochs: int,
            seed: int = 0) -> dict:
    """Train at ``lam`` with early stopping on ``validation``; the best epoch's state."""
    import torch
    torch.manual_seed(seed)
    x, mask = _items(fit)
    n_items, n_users = x.shape
    net = _net(n_users, float(fit.data.mean()))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    v = validation.tocoo()
    rng = np.random.default_rng(seed)
    best = {"val_rmse": np.inf, "epoch": 0, "state": None}
    for epoch in range(1, max_epochs + 1):
        net.train()
        for idx in np.array_split(rng.permutation(n_items), max(1, n_items // BATCH)):
            idx = torch.from_numpy(idx)
            err = (net(x[idx]) - x[idx]) * mask[idx]
            penalty = net[0].weight.square().sum() + net[2].weight.square().sum()
            loss = err.square().sum() + lam / 2 * penalty * (len(idx) / n_items)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        val = _rmse(_predict_at(net, x, v.row, v.col), v.data)
        if val < best["val_rmse"]:
            best = {"val_rmse": val, "epoch": epoch,
                    "state": {k: t.clone() for k, t in net.state_dict().items()}}
        elif epoch - best["epoch"] >= PATIENCE:
            break
    net.load_state_dict(best["state"])
    return {"net": net, "lambda": lam, "val_rmse": best["val_rmse"], "best_epoch": best["epoch"],
            "epochs_run": epoch}


def run(train: sp.csr_matrix, test: sp.csr_matrix, scale, quick: bool = False) -> dict:
    """Choose lambda on the carved validation slice, then score ``test``: test RMSE and
    MAE, the chosen lambda, every lambda's validation RMSE and the seconds."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run(sp.csr_matrix(train, dtype=np.float32), test, scale, quick)
    finally:
        torch.set_num_threads(threads)


def _run(train: sp.csr_matrix, test: sp.csr_matrix, scale, quick: bool) -> dict:
    import torch
    t0 = time.perf_counter()
    fit, validation = carve(train)
    trials = [fit_one(fit, validation, lam, 1 if quick else MAX_EPOCHS) for lam in LAMBDAS]
    best = min(trials, key=lambda t: t["val_rmse"])
    t = test.tocoo()
    x, _ = _items(train)
    pred = _predict_at(best["net"], x, t.row, t.col)
    seen_u = np.diff(train.indptr) > 0
    seen_i = np.bincount(train.indices, minlength=train.shape[1]) > 0
    unseen = ~(seen_u[t.row] & seen_i[t.col])
    pred[unseen] = train.data.mean()
    if scale is not None:
        np.clip(pred, scale[0], scale[1], out=pred)
    err = pred.astype(np.float64) - t.data
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "lambda": best["lambda"], "best_epoch": best["best_epoch"],
            "val_rmse": {str(tr["lambda"]): tr["val_rmse"] for tr in trials},
            "n_unseen": int(unseen.sum()), "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - t0}
