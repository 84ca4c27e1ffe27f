"""IGMC (Zhang and Chen, "Inductive Matrix Completion Based on Graph Neural Networks",
ICLR 2020) in NumPy/SciPy with a hand-written backward pass: the published state of
the art on the monti sets, measured here beside npcf instead of only quoted.

Written from the paper and its recipe for Flixster, Douban and Yahoo! Music
(``--epochs 40 --ensemble``), not from its code:

- for a pair (user u, item i), the enclosing 1-hop subgraph: u, i, the other users
  who rated i and the other items u rated; its edges are every training rating among
  those nodes except (u, i) itself, typed by rating level (one relation per distinct
  training rating), both directions;
- node features: a one-hot label (0 target user, 1 target item, 2 other user, 3 other
  item); 4 R-GCN layers of 32 tanh units, each ``x W_root + b + mean over incoming
  edges of x_j W_rel`` with ``W_rel`` a combination of 4 basis matrices;
- read-out: the four layers' states of the target user and target item, concatenated
  (256), then 128 ReLU units, dropout 0.5 and one linear output: the rating;
- loss: mean squared error plus ``ARR * sum_rel ||W_{rel+1} - W_rel||^2`` (adjacent
  rating regularisation, 1e-3); training drops each directed edge with probability
  0.2; Adam 1e-3 in batches of 50 pairs; 40 epochs; the prediction averages the
  models after epochs 10, 20, 30 and 40 (the recipe's ``--ensemble``: every 10th epoch
  of the last 30, the last included);
- initialisation as the paper's libraries do it: uniform in +-1/sqrt(fan-in).

Nothing here is tuned: the recipe is the paper's. ``python benchmarks/igmc.py
--set flixster [--validation]`` trains it on a data set of :mod:`crossdata`
(``--validation``: on npcf's validation carve, reporting the carve's RMSE per epoch).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

N_LABELS = 4
DIMS = (32, 32, 32, 32)
N_BASES = 4
HIDDEN = 128
ARR = 1e-3
EDGE_DROPOUT = 0.2
LR = 1e-3
BATCH = 50
EPOCHS = 40
SNAPSHOTS = (10, 20, 30, 40)
#: how a node averages its incoming messages (:class:`Batch`)
AVERAGE = "node"
#: dense level matrices above this many cells are refused (the monti sets have 9M)
MAX_CELLS = 100_000_000


class Subgraphs:
    """Enclosing 1-hop subgraphs over a training matrix (users x items)."""

    def __init__(self, train: sp.spmatrix):
        train = sp.coo_matrix(train)
        if train.shape[0] * train.shape[1] > MAX_CELLS:
            raise ValueError(f"{train.shape} is too large for IGMC's dense level matrix")
        #: the distinct training ratings, one relation each
        self.values = np.unique(train.data)
        if self.values.size >= np.iinfo(np.int16).max:
            raise ValueError(f"{self.values.size} distinct ratings: IGMC's relations are "
                             f"stored as int16 (at most {np.iinfo(np.int16).max - 1})")
        self.levels = np.zeros(train.shape, np.int16)      # 0 = no rating; level + 1
        self.levels[train.row, train.col] = np.searchsorted(self.values, train.data) + 1
        csr = sp.csr_matrix(self.levels != 0)
        self.user_items = np.split(csr.indices, csr.indptr[1:-1])
        csc = csr.tocsc()
        self.item_users = np.split(csc.indices, csc.indptr[1:-1])

    @property
    def n_relations(self) -> int:
        return int(self.values.size)

    def extract(self, u: int, i: int) -> tuple:
        """``(n_users, n_items, user, item, relation)``: local node counts (target first)
        and the subgraph's rating edges as local int32 indices and relation ids."""
        users = self.item_users[i]
        items = self.user_items[u]
        users = np.concatenate(([u], users[users != u]))
        items = np.concatenate(([i], items[items != i]))
        block = self.levels[np.ix_(users, items)]
        block[0, 0] = 0                                   # the target rating is never seen
        lu, li = np.nonzero(block)
        return (users.size, items.size, lu.astype(np.int32), li.astype(np.int32),
                (block[lu, li] - 1).astype(np.int32))

    def extract_all(self, users, items) -> list[tuple]:
        """:meth:`extract` of each pair of the 1-D index arrays ``users``, ``items``."""
        return [self.extract(int(u), int(i)) for u, i in zip(users, items)]


class Batch:
    """Block-diagonal union of subgraphs, each rating edge in both directions.

    ``x``: (n, 4) one-hot labels; ``tu``/``ti``: the target user and item node of each
    pair; ``src``/``dst``/``rel``: the directed edges after dropout (int64, one per
    edge); ``weight``: each edge's float64 weight in the mean its target node takes,
    ``average="node"``: 1 / the target's in-degree (PyG 1.x's RGCNConv, which IGMC was
    released on), ``"relation"``: 1 / its in-degree of that relation (the R-GCN formula,
    later PyG's). ``subs``: :meth:`Subgraphs.extract` tuples, at least one.
    """

    def __init__(self, subs: list[tuple], edge_dropout: float = 0.0, rng=None,
                 average: str = AVERAGE):
        if not subs:
            raise ValueError("a batch needs at least one subgraph")
        nu = np.array([s[0] for s in subs], np.int64)
        sizes = nu + np.array([s[1] for s in subs], np.int64)
        off = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.n = int(sizes.sum())
        self.tu, self.ti = off, off + nu
        pair = np.repeat(np.arange(len(subs)), sizes)             # pair of each node
        local = np.arange(self.n) - off[pair]
        label = np.where(local < nu[pair], 2, 3)
        label[self.tu], label[self.ti] = 0, 1
        self.x = np.eye(N_LABELS)[label]
        users = np.concatenate([off[k] + s[2] for k, s in enumerate(subs)]).astype(np.int64)
        items = np.concatenate([off[k] + nu[k] + s[3] for k, s in enumerate(subs)]).astype(np.int64)
        rel = np.concatenate([s[4] for s in subs]).astype(np.int64)
        src, dst, rel = np.concatenate((users, items)), np.concatenate((items, users)), \
            np.concatenate((rel, rel))
        if edge_dropout > 0:
            keep = rng.random(src.size) >= edge_dropout
            src, dst, rel = src[keep], dst[keep], rel[keep]
        self.src, self.dst, self.rel = src, dst, rel
        if average == "node":
            self.weight = 1.0 / np.bincount(dst, minlength=self.n)[dst]
        else:
            key = dst * (int(rel.max(initial=0)) + 1) + rel
            _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
            self.weight = 1.0 / counts[inverse]
        self._layout: dict[int, tuple] = {}

    def layout(self, n_bases: int) -> tuple:
        """The message matrix's structure, shape ``(n, n * n_bases)`` with entry
        ``(dst, src * n_bases + b)`` per edge and basis: ``(indptr, rows, cols, rel, base)``
        sorted by row, and each entry's edge ``weight``; its values are
        ``att[rel, base] * weight``."""
        if n_bases not in self._layout:
            rows = np.repeat(self.dst, n_bases)
            cols = (self.src[:, None] * n_bases + np.arange(n_bases)).ravel()
            rel = np.repeat(self.rel, n_bases)
            weight = np.repeat(self.weight, n_bases)
            base = np.tile(np.arange(n_bases), self.src.size)
            order = np.argsort(rows, kind="stable")
            rows, cols, rel, base, weight = (a[order] for a in (rows, cols, rel, base, weight))
            indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=self.n))))
            self._layout[n_bases] = (indptr, rows, cols, rel, base, weight)
        return self._layout[n_bases]


def init_params(n_relations: int, dims=DIMS, n_bases: int = N_BASES, hidden: int = HIDDEN,
                seed: int = 0, dtype=np.float32) -> dict:
    """Layer ``l``: ``basis{l}`` (n_bases, d_in, d), ``att{l}`` (n_relations, n_bases),
    ``root{l}`` (d_in, d), ``bias{l}`` (d,); read-out ``W1`` (2 sum(dims), hidden), ``b1``,
    ``W2`` (hidden, 1), ``b2``. Uniform in +-1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    p, d_in = {}, N_LABELS

    def uniform(bound, shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)
    for layer, d in enumerate(dims):
        b = 1 / np.sqrt(n_bases * d_in)
        p[f"basis{layer}"] = uniform(b, (n_bases, d_in, d))
        p[f"att{layer}"] = uniform(b, (n_relations, n_bases))
        p[f"root{layer}"] = uniform(b, (d_in, d))
        p[f"bias{layer}"] = uniform(b, d)
        d_in = d
    f = 2 * sum(dims)
    p["W1"], p["b1"] = uniform(1 / np.sqrt(f), (f, hidden)), uniform(1 / np.sqrt(f), hidden)
    p["W2"], p["b2"] = uniform(1 / np.sqrt(hidden), (hidden, 1)), uniform(1 / np.sqrt(hidden), 1)
    return p


def _n_layers(p: dict) -> int:
    return sum(1 for k in p if k.startswith("basis"))


def _relation_weights(p: dict, layer: int) -> np.ndarray:
    """(n_relations, d_in, d): each relation's weight matrix from the bases."""
    return np.einsum("rb,bio->rio", p[f"att{layer}"], p[f"basis{layer}"])


def forward(p: dict, batch: Batch, rng=None, cache: list | None = None) -> np.ndarray:
    """Predicted ratings, one per pair of ``batch``. ``rng``: training mode (dropout 0.5
    in the read-out). ``cache``: a list that receives what the backward pass needs."""
    H = batch.x.astype(p["W1"].dtype)
    layers, states = [], []
    for layer in range(_n_layers(p)):
        basis = p[f"basis{layer}"]
        nb, d_in, d = basis.shape
        indptr, rows, cols, rel, base, weight = batch.layout(nb)
        vals = (p[f"att{layer}"][rel, base] * weight).astype(H.dtype)
        A = sp.csr_matrix((vals, cols, indptr), shape=(batch.n, batch.n * nb))
        bcat = basis.transpose(1, 0, 2).reshape(d_in, nb * d)
        Zr = (H @ bcat).reshape(batch.n * nb, d)          # row src * nb + b: x_src B_b
        Hn = np.tanh(A @ Zr + H @ p[f"root{layer}"] + p[f"bias{layer}"])
        layers.append((H, A, Zr, bcat, Hn))
        states.append(Hn)
        H = Hn
    S = np.concatenate(states, axis=1)
    x = np.concatenate((S[batch.tu], S[batch.ti]), axis=1)
    h = np.maximum(x @ p["W1"] + p["b1"], 0)
    mask = None if rng is None else (rng.random(h.shape) >= 0.5) * np.array(2.0, h.dtype)
    hd = h if mask is None else h * mask
    if cache is not None:
        cache.extend((layers, S, x, h, hd, mask))
    return (hd @ p["W2"] + p["b2"])[:, 0]


def arr_penalty(p: dict) -> float:
    """sum over layers and adjacent relations of ||W_{rel+1} - W_rel||^2."""
    return float(sum(np.sum(np.diff(_relation_weights(p, layer), axis=0) ** 2)
                     for layer in range(_n_layers(p))))


def loss_and_grad(p: dict, batch: Batch, target: np.ndarray, arr: float = ARR,
                  rng=None) -> tuple[float, dict]:
    """Mean squared error against ``target`` (1-D, one rating per pair of ``batch``) +
    ``arr`` * :func:`arr_penalty`, and its gradient (same keys, shapes and dtypes as ``p``).
    ``rng``: the read-out's dropout (None: none)."""
    cache: list = []
    y = forward(p, batch, rng, cache)
    layers, S, x, h, hd, mask = cache
    err = y - target
    loss = float(np.mean(err ** 2)) + arr * arr_penalty(p)
    g = {}
    gy = (2.0 / y.size) * err[:, None].astype(y.dtype)
    g["W2"], g["b2"] = hd.T @ gy, gy.sum(0)
    gh = gy @ p["W2"].T
    gh = (gh if mask is None else gh * mask) * (h > 0)
    g["W1"], g["b1"] = x.T @ gh, gh.sum(0)
    gx = gh @ p["W1"].T
    gS = np.zeros_like(S)
    half = S.shape[1]
    gS[batch.tu] += gx[:, :half]
    gS[batch.ti] += gx[:, half:]
    ends = np.cumsum([p[f"bias{layer}"].size for layer in range(len(layers))])
    g_below = 0.0
    for layer in range(len(layers) - 1, -1, -1):
        H, A, Zr, bcat, Hn = layers[layer]
        gpre = (gS[:, ends[layer] - Hn.shape[1]:ends[layer]] + g_below) * (1 - Hn * Hn)
        basis, att = p[f"basis{layer}"], p[f"att{layer}"]
        nb, d_in, d = basis.shape
        g[f"bias{layer}"] = gpre.sum(0)
        g[f"root{layer}"] = H.T @ gpre
        gZ = (A.T @ gpre).reshape(batch.n, nb * d)
        gbasis = (H.T @ gZ).reshape(d_in, nb, d).transpose(1, 0, 2)
        g_below = gpre @ p[f"root{layer}"].T + gZ @ bcat.T
        _, rows, cols, rel, base, weight = batch.layout(nb)
        d_vals = np.einsum("ij,ij->i", gpre[rows], Zr[cols]) * weight
        gatt = np.bincount(rel * nb + base, weights=d_vals, minlength=att.size)
        gatt = gatt.reshape(att.shape)
        if arr:
            D = np.diff(_relation_weights(p, layer), axis=0)
            gW = np.zeros((att.shape[0],) + D.shape[1:], D.dtype)
            gW[1:] += 2 * arr * D
            gW[:-1] -= 2 * arr * D
            gatt = gatt + np.einsum("rio,bio->rb", gW, basis)
            gbasis = gbasis + np.einsum("rio,rb->bio", gW, att)
        g[f"att{layer}"] = gatt.astype(att.dtype)
        g[f"basis{layer}"] = np.ascontiguousarray(gbasis, dtype=basis.dtype)
    return loss, {k: np.asarray(v, dtype=p[k].dtype) for k, v in g.items()}


def predict(p: dict, subs: list[tuple], chunk: int = 500, average: str = AVERAGE) -> np.ndarray:
    """One float64 prediction per subgraph (evaluation mode)."""
    if not subs:
        return np.zeros(0)
    return np.concatenate([forward(p, Batch(subs[k:k + chunk], average=average))
                           for k in range(0, len(subs), chunk)]).astype(np.float64)


def fit(train: sp.spmatrix, epochs: int = EPOCHS, seed: int = 0, snapshots=SNAPSHOTS,
        eval_pairs=None, on_epoch=None, average: str = AVERAGE) -> dict:
    """Train on ``train`` (users x items). ``eval_pairs``: ``(users, items)`` predicted
    after the ``snapshots`` epochs and the last (every epoch with ``on_epoch``,
    ``on_epoch(epoch, mean loss, predictions or None, seconds)``). Returns
    ``{"graphs", "params", "predictions": {epoch: array}}``."""
    from npcf.nn.optim import Adam
    graphs = Subgraphs(train)
    coo = sp.coo_matrix(train)
    subs = graphs.extract_all(coo.row, coo.col)
    evals = graphs.extract_all(*eval_pairs) if eval_pairs is not None else None
    target = coo.data.astype(np.float32)
    p = init_params(graphs.n_relations, seed=seed)
    opt, rng = Adam(lr=LR), np.random.default_rng(seed)
    predictions = {}
    for epoch in range(1, epochs + 1):
        t0, total = time.perf_counter(), 0.0
        order = rng.permutation(len(subs))
        for k in range(0, order.size, BATCH):
            idx = order[k:k + BATCH]
            batch = Batch([subs[j] for j in idx], EDGE_DROPOUT, rng, average)
            loss, g = loss_and_grad(p, batch, target[idx], rng=rng)
            opt.step(p, g)
            total += loss * idx.size
        pred = None
        if evals is not None and (epoch in snapshots or epoch == epochs or on_epoch is not None):
            pred = predictions[epoch] = predict(p, evals, average=average)
        if on_epoch is not None:
            on_epoch(epoch, total / max(order.size, 1), pred, time.perf_counter() - t0)
    return {"graphs": graphs, "params": p, "predictions": predictions}


def ensemble(predictions: dict, epochs: int, snapshots=SNAPSHOTS) -> np.ndarray:
    """The recipe's prediction: the mean over the snapshot epochs trained (the last
    epoch alone if none was)."""
    chosen = [e for e in snapshots if e in predictions and e <= epochs] or [epochs]
    return np.mean([predictions[e] for e in chosen], axis=0)


def run(train: sp.spmatrix, test: sp.spmatrix, scale, quick: bool = False,
        seed: int = 0) -> dict:
    """Train on all of ``train`` and score ``test``: test RMSE and MAE of the snapshot
    ensemble (clipped to ``scale``), the epochs and the seconds."""
    t0 = time.perf_counter()
    t = sp.coo_matrix(test)
    epochs = 1 if quick else EPOCHS
    model = fit(train, epochs, seed, eval_pairs=(t.row, t.col))
    pred = ensemble(model["predictions"], epochs)
    if scale is not None:
        pred = np.clip(pred, scale[0], scale[1])
    err = pred - t.data
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "epochs": epochs, "snapshots": [e for e in SNAPSHOTS if e <= epochs] or [epochs],
            "relations": model["graphs"].n_relations, "seconds": time.perf_counter() - t0}


def _count(least: int, most: int = 2 ** 31 - 1):
    """An argparse type: a whole number in [``least``, ``most``] (one-line usage error
    otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be in [{least}, {most}], got {value}")
        return value
    return parse


def main(argv=None) -> None:
    import crossdata

    from npcf.data import load_dataset
    from npcf.data.dataset import with_validation
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=sorted(crossdata.SETS), default="flixster")
    ap.add_argument("--epochs", type=_count(1, 10_000), default=EPOCHS)
    ap.add_argument("--seed", type=_count(0), default=0)
    ap.add_argument("--average", choices=("node", "relation"), default=AVERAGE)
    ap.add_argument("--validation", action="store_true",
                    help="train on npcf's validation carve and report its RMSE (no test figure)")
    args = ap.parse_args(argv)
    ds = load_dataset(**crossdata.SETS[args.set], seed=0)
    if args.validation:
        s = with_validation(ds, seed=0).split
        train, held, part = s.train, s.validation, "validation"
    else:
        train, held, part = ds.split.train, ds.split.test, "test"
    h = sp.coo_matrix(held)
    lo, hi = ds.scale if ds.scale is not None else (-np.inf, np.inf)

    def show(epoch, loss, pred, seconds):
        rmse = np.sqrt(np.mean((np.clip(pred, lo, hi) - h.data) ** 2))
        print(f"epoch {epoch}: loss {loss:.4f}, {part} RMSE {rmse:.4f} ({seconds:.1f} s)",
              flush=True)
    model = fit(train, args.epochs, args.seed, eval_pairs=(h.row, h.col), on_epoch=show,
                average=args.average)
    pred = np.clip(ensemble(model["predictions"], args.epochs), lo, hi)
    print(f"{part} RMSE of the snapshot ensemble: {np.sqrt(np.mean((pred - h.data) ** 2)):.4f}")


if __name__ == "__main__":
    main()
