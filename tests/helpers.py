"""Small data makers shared by the training tests."""
import numpy as np
import scipy.sparse as sp


def tiny_ratings(n_users=48, n_items=30, density=0.35, seed=0):
    """Low-rank-ish ratings on a 0.5..5 half-star scale, CSR float32; every row non-empty."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    r = np.clip(np.round((3.2 + u @ v.T + 0.3 * rng.normal(size=(n_users, n_items))) * 2) / 2,
                0.5, 5)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(np.where(mask, r, 0).astype(np.float32))


def split(m, frac=0.2, seed=1):
    """Random (train, test) CSR parts of ``m``: each stored entry lands in one of them."""
    coo = m.tocoo()
    test = np.random.default_rng(seed).random(coo.nnz) < frac
    part = lambda k: sp.csr_matrix((coo.data[k], (coo.row[k], coo.col[k])),  # noqa: E731
                                   shape=m.shape, dtype=np.float32)
    return part(~test), part(test)


def as_dict(r) -> dict:
    """{(raw user, raw item): rating} of a Ratings object, via its vocabularies."""
    m = r.matrix.tocoo()
    return {(r.users.ids[u].item(), r.items.ids[i].item()): float(v)
            for u, i, v in zip(m.row, m.col, m.data)}


def ts_dict(r) -> dict:
    """{(raw user, raw item): timestamp}; timestamps are aligned with matrix.data."""
    m = r.matrix
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return {(r.users.ids[u].item(), r.items.ids[i].item()): int(t)
            for u, i, t in zip(rows, m.indices, r.timestamps)}
