"""The data makers the tests share (one of each kind)."""
import numpy as np
import scipy.sparse as sp

from npcf.utils.sparse import entry_rows


class CountingBar:
    """A progress bar of the ``progress(total, label, info)`` protocol
    (:mod:`npcf.utils.progress`) that counts its updates in ``done``."""

    def __init__(self, total: int = 0, label: str = "", info=None):
        self.total, self.label, self.done = total, label, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        self.done += n


def random_ratings(n_users, n_items, density=0.2, seed=0):
    """Uniformly random pattern with half-star ratings 0.5..5: CSR float32, sorted indices."""
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=density, random_state=rng, format="csr",
                  dtype=np.float32)
    m.data = (rng.integers(1, 11, m.nnz) / 2).astype(np.float32)
    m.sort_indices()
    return m


def tiny_ratings(n_users=48, n_items=30, density=0.35, seed=0, noise=0.3):
    """Low-rank-ish ratings on a 0.5..5 half-star scale, CSR float32; every row non-empty."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    r = np.clip(np.round((3.2 + u @ v.T + noise * rng.normal(size=(n_users, n_items))) * 2) / 2,
                0.5, 5)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(np.where(mask, r, 0).astype(np.float32))


def split(m, frac=0.2, seed=1):
    """Random (train, test) CSR parts of ``m``: each stored entry lands in one of them."""
    coo = m.tocoo()
    test = np.random.default_rng(seed).random(coo.nnz) < frac

    def part(keep):
        return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape,
                             dtype=np.float32)
    return part(~test), part(test)


def as_dict(r) -> dict:
    """{(raw user, raw item): rating} of a Ratings object, via its vocabularies."""
    m = r.matrix.tocoo()
    return {(r.users.ids[u].item(), r.items.ids[i].item()): float(v)
            for u, i, v in zip(m.row, m.col, m.data)}


def ts_dict(r) -> dict:
    """{(raw user, raw item): timestamp}; timestamps are aligned with matrix.data."""
    m = r.matrix
    rows = entry_rows(m)
    return {(r.users.ids[u].item(), r.items.ids[i].item()): int(t)
            for u, i, t in zip(rows, m.indices, r.timestamps)}


#: shape of :func:`fitted_model`'s training data; its movie ids are 1000..1000+N_ITEMS-1
N_USERS, N_ITEMS = 40, 60


def fitted_model(tied=True, activation="selu", loss="mse", residual=True, layers=(16, 8),
                 output_activation="identity", seed=0, **kw):
    """An :class:`~npcf.AutoEncoder` fitted for one epoch on random ratings, raw movie ids
    1000.. (its ``training`` attribute is the data)."""
    from npcf import AutoEncoder, Vocabulary
    X = random_ratings(N_USERS, N_ITEMS, 0.2, seed)
    m = AutoEncoder(layers=layers, tied=tied, activation=activation, loss=loss,
                    residual=residual, output_activation=output_activation, n_epochs=1,
                    batch_size=8, seed=seed, **kw)
    m.fit(X, scale=(0.5, 5.0), items=Vocabulary(np.arange(1000, 1000 + N_ITEMS)))
    m.training = X
    return m


def checkerboard(n_users=40, n_items=30, in_group=9, out_group=4, seed=0):
    """Users and items in two groups (index parity). Each user rated ``in_group`` movies of
    their own group 5 and ``out_group`` of the other group 1, so the right recommendations
    for a user are the unseen movies of their group. CSR float32, sorted indices."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        same = np.arange(u % 2, n_items, 2)
        other = np.arange(1 - u % 2, n_items, 2)
        dense[u, rng.choice(same, in_group, replace=False)] = 5.0
        dense[u, rng.choice(other, out_group, replace=False)] = 1.0
    return sp.csr_matrix(dense)


def without_rank_scores(path, out):
    """``path``'s export as npcf wrote it before the graph had a ``rank_scores`` output."""
    import onnx
    m = onnx.load(path)
    kept = [o for o in m.graph.output if o.name != "rank_scores"]
    del m.graph.output[:]
    m.graph.output.extend(kept)
    onnx.save(m, out)
    return out


def user_stack(seed=0, neighbours=True, priors=True, support=True, mass=False):
    """A user-based stack as ``AutoEncoder.tune`` builds one (:func:`fitted_model` first,
    another network without the bias residual, the bias model alone and item
    neighbours), with random weights following the rating counts (``support``; with
    ``mass`` also the neighbours' similarity mass) or constant ones; its ``training``
    attribute is the data."""
    from npcf import AutoEncoder
    from npcf.autoencoder.members import NeighbourMember
    from npcf.nn.neighbours import ItemNeighbours
    first = fitted_model(seed=seed)
    X = first.training
    other = AutoEncoder(layers=(12,), tied=False, activation="tanh", residual=False, n_epochs=1,
                        batch_size=8, seed=seed + 1).fit(X, scale=(0.5, 5.0))
    bias = AutoEncoder(layers=(1,), residual=True, bias_reg=(2.0, 3.0))._fit_bias_only(
        X, scale=(0.5, 5.0))
    members = [other, bias]
    if neighbours:                  # two, as the folds of one configuration are
        members += [NeighbourMember(ItemNeighbours(2.0, 1.0, neighbours=k, priors=priors)
                                    .fit(X[rows]), (0.5, 5.0))
                    for k, rows in ((7, slice(None)), (5, slice(5, None)))]
    rng = np.random.default_rng(seed)
    k = len(members) + 1
    first.blend_members = members
    if support:
        width = 5 if mass else 4
        first.blend_weights = rng.normal(0, 0.3, (k, width)) + np.eye(1, width)[0] / k
        first.blend_offset = rng.normal(0, 0.1, width)
    else:
        first.blend_weights, first.blend_offset = rng.dirichlet(np.ones(k)), None
    return first
