"""Generate a MovieLens-like ``ratings.csv`` the size of The Movies Dataset's full one.

Default shape (``rows=26_024_289``): 270,896 users, 45,115 distinct movies with ids
spread over 1..176,275, half-star ratings 0.5-5.0 written like MovieLens (``3.5``,
``4.0``), 10-digit unix timestamps, sorted by userId then movieId, no duplicate
(user, movie) pair, log-normal user activity (at least 20 ratings per user) and
Zipf-like movie popularity. About 710 MB.

Everything is vectorised NumPy; the CSV text is assembled as a byte matrix (one row
per rating, fixed-width fields, padding masked out), so writing 26M rows takes
seconds rather than minutes. Smaller ``rows`` scale the number of users
proportionally (items keep the same id space).

The file is cached in ``workdir`` as ``ratings-<rows>-s<seed>-v<version>.csv`` next to
a ``.json`` with its size; a file whose size matches is reused.

    python benchmarks/_gen_ratings.py --rows 200000 --workdir /tmp/npcf-bench
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

VERSION = 2
FULL_ROWS = 26_024_289
FULL_USERS = 270_896
FULL_ITEMS = 45_115
MAX_ITEM_ID = 176_275
MAX_PER_USER = 18_276          # the most active user of the real file
MIN_PER_USER = 20
ZIPF_S = 0.9
ID_NOISE = 3.5                 # how loosely movie id follows popularity (file size ~710 MB)
TS_LO, TS_HI = 1_000_000_000, 1_501_829_346     # 10-digit unix times (2001-09 .. 2017-08)
HALF_STARS = np.arange(1, 11) / 2.0
# Share of each half star in MovieLens (0.5 .. 5.0): 4.0 most common, then 3.0, 5.0.
STAR_P = np.array([0.011, 0.033, 0.018, 0.072, 0.048, 0.201, 0.118, 0.264, 0.082, 0.153])
HEADER = b"userId,movieId,rating,timestamp\n"


def cache_path(workdir, rows: int, seed: int) -> Path:
    return Path(workdir) / f"ratings-{rows}-s{seed}-v{VERSION}.csv"


def ensure_ratings(workdir, rows: int = FULL_ROWS, seed: int = 0, verbose: bool = True) -> Path:
    """Path of the cached file for (rows, seed), generating it when missing or stale."""
    path = cache_path(workdir, rows, seed)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("rows") == rows and meta.get("bytes") == path.stat().st_size:
            if verbose:
                print(f"reusing {path} ({meta['bytes'] / 1e6:.0f} MB)", flush=True)
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta = write_ratings(path, rows, seed, verbose=verbose)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if verbose:
        print(f"wrote {path}: {meta['rows']:,} rows, {meta['users']:,} users, "
              f"{meta['items']:,} items, {meta['bytes'] / 1e6:.0f} MB in {meta['seconds']} s",
              flush=True)
    return path


# ----------------------------------------------------------------------------- sampling

def _user_counts(rng, rows: int, n_users: int) -> np.ndarray:
    """Log-normal activity, >= MIN_PER_USER, <= MAX_PER_USER, summing to ``rows``."""
    cap = min(MAX_PER_USER, max(MIN_PER_USER, rows // 2))
    extra = rng.lognormal(mean=3.6, sigma=1.25, size=n_users)
    budget = rows - MIN_PER_USER * n_users
    if budget < 0:
        raise ValueError(f"{rows} rows is too few for {n_users} users")
    extra = np.minimum(np.floor(extra * budget / extra.sum()), cap - MIN_PER_USER).astype(np.int64)
    counts = MIN_PER_USER + extra
    short = rows - int(counts.sum())
    while short > 0:                       # hand the rounding remainder to random users
        room = np.flatnonzero(counts < cap)
        pick = rng.choice(room, size=min(short, room.size), replace=False)
        counts[pick] += 1
        short = rows - int(counts.sum())
    return counts


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort + mask: much faster than np.unique's hash path here)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def _sample_items(rng, counts: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user, ``counts[u]`` distinct item ranks drawn with Zipf-like weights.

    Returns (user, rank) sorted by user then rank. Draw with replacement, drop
    repeats, top up the users still short (drawing more each round), repeat.
    """
    n_users = counts.size
    cdf = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -ZIPF_S)
    cdf /= cdf[-1]

    def draw(users):
        ranks = np.searchsorted(cdf, rng.random(users.size), side="right")
        return users * n_items + np.minimum(ranks, n_items - 1)

    keys = _unique(draw(np.repeat(np.arange(n_users, dtype=np.int64), counts)))
    for rnd in range(60):
        have = np.bincount(keys // n_items, minlength=n_users)
        deficit = counts - have
        if not deficit.any():
            break
        short = np.flatnonzero(deficit)
        want = deficit[short]
        # the fuller a user's set, the more repeats: oversample by 1 / (1 - fill)
        fill = have[short] / n_items
        factor = np.minimum(2.0 ** rnd * (1.5 / np.maximum(1e-3, 1.0 - fill) ** 2), 1e4)
        draws = np.ceil(want * factor).astype(np.int64) + 4
        if rnd >= 40:                      # hopeless tail: uniform top-up
            cand_u = np.repeat(short, draws)
            cand = cand_u * n_items + rng.integers(0, n_items, cand_u.size)
        else:
            cand = draw(np.repeat(short, draws))
        cand = _unique(cand)
        pos = np.searchsorted(keys, cand).clip(max=keys.size - 1)
        cand = cand[keys[pos] != cand]                  # new items only
        cu = cand // n_items
        order = np.lexsort((rng.random(cand.size), cu))  # random order within user
        cand, cu = cand[order], cu[order]
        first = np.searchsorted(cu, cu, side="left")
        keep = (np.arange(cand.size) - first) < deficit[cu]
        keys = np.sort(np.concatenate([keys, cand[keep]]))
    else:
        raise RuntimeError("could not sample distinct items per user")
    return keys // n_items, keys % n_items


def _ensure_every_item(rng, users, ranks, n_items: int) -> None:
    """Give each never-drawn item one rating, taken from the most popular item."""
    seen = np.bincount(ranks, minlength=n_items)
    missing = np.flatnonzero(seen == 0)
    if missing.size == 0:
        return
    top = np.flatnonzero(ranks == 0)
    if top.size < missing.size + 1:
        return                              # tiny files: fewer distinct items, that's fine
    ranks[rng.choice(top, size=missing.size, replace=False)] = missing


def generate(rows: int, seed: int = 0):
    """(user_ids, item_ids, ratings, timestamps) sorted by user then item."""
    rng = np.random.default_rng(seed)
    n_users = max(1, round(FULL_USERS * rows / FULL_ROWS))
    n_items = FULL_ITEMS
    counts = _user_counts(rng, rows, n_users)
    users, ranks = _sample_items(rng, counts, n_items)
    _ensure_every_item(rng, users, ranks, n_items)
    # Movie ids: n_items distinct ids spread over 1..MAX_ITEM_ID (both ends included).
    # Like MovieLens, older (lower) ids tend to be more popular: popularity rank r gets
    # the id whose log-position plus noise is the r-th smallest.
    ids = np.sort(rng.choice(np.arange(2, MAX_ITEM_ID), size=n_items - 2, replace=False))
    ids = np.r_[1, ids, MAX_ITEM_ID]
    score = np.log(np.arange(1, n_items + 1)) + rng.normal(0.0, ID_NOISE, n_items)
    item_ids = ids[np.argsort(score)][ranks]
    order = np.argsort(users * (MAX_ITEM_ID + 1) + item_ids, kind="stable")
    users, item_ids = users[order] + 1, item_ids[order]
    del order, ranks
    stars = rng.choice(10, size=rows, p=STAR_P).astype(np.int8)
    # Timestamps: each user is active from a random start for a log-normal span.
    start = rng.integers(TS_LO, TS_HI - 86_400, size=n_users)
    span = np.minimum(rng.lognormal(16.0, 2.0, size=n_users), TS_HI - start).astype(np.int64)
    u0 = users - 1
    ts = start[u0] + (rng.random(rows) * span[u0]).astype(np.int64)
    return users, item_ids, stars, ts


# ----------------------------------------------------------------------------- writing

def _digits(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned ASCII digits (n, width) and the number of significant digits."""
    out = np.empty((values.size, width), dtype=np.uint8)
    v = values.astype(np.int64, copy=True)
    for j in range(width - 1, -1, -1):
        out[:, j] = (v % 10).astype(np.uint8) + 48
        v //= 10
    if v.any():
        raise ValueError(f"value needs more than {width} digits")
    length = np.ones(values.size, dtype=np.int64)
    for k in range(1, width):
        length += values >= 10 ** k
    return out, length


def format_rows(users, items, stars, ts) -> bytes:
    """CSV text of the rows, like MovieLens: ``1,31,2.5,1260759144``."""
    n = users.size
    uw, iw, tw = 6, 6, 10
    ud, ul = _digits(users, uw)
    idg, il = _digits(items, iw)
    td, tl = _digits(ts, tw)
    star_txt = np.frombuffer(b"".join(f"{s:.1f}".encode() for s in HALF_STARS),
                             dtype=np.uint8).reshape(10, 3)
    width = uw + 1 + iw + 1 + 3 + 1 + tw + 1
    buf = np.empty((n, width), dtype=np.uint8)
    keep = np.ones((n, width), dtype=bool)
    c = 0
    for d, ln, w in ((ud, ul, uw), (idg, il, iw)):
        buf[:, c:c + w] = d
        keep[:, c:c + w] = np.arange(w) >= (w - ln)[:, None]
        buf[:, c + w] = ord(",")
        c += w + 1
    buf[:, c:c + 3] = star_txt[stars]
    buf[:, c + 3] = ord(",")
    c += 4
    buf[:, c:c + tw] = td
    keep[:, c:c + tw] = np.arange(tw) >= (tw - tl)[:, None]
    buf[:, c + tw] = ord("\n")
    return buf[keep].tobytes()


def write_ratings(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000,
                  verbose: bool = True) -> dict:
    t0 = time.perf_counter()
    users, items, stars, ts = generate(rows, seed)
    if verbose:
        print(f"sampled {rows:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(HEADER)
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            f.write(format_rows(users[lo:hi], items[lo:hi], stars[lo:hi], ts[lo:hi]))
    os.replace(tmp, path)
    return {"rows": rows, "seed": seed, "version": VERSION,
            "users": int(np.count_nonzero(np.bincount(users))),
            "items": int(np.count_nonzero(np.bincount(items))),
            "max_item_id": int(items.max()), "bytes": path.stat().st_size}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=FULL_ROWS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/npcf-bench")
    args = ap.parse_args(argv)
    print(ensure_ratings(args.workdir, args.rows, args.seed))


if __name__ == "__main__":
    main()
