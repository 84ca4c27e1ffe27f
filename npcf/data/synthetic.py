"""A seeded synthetic MovieLens-like data set, so npcf runs offline with no download.

It is synthetic: users, movies, titles and ratings are generated, not real.
Structure: Zipf-like item popularity, log-normal user activity, a low-rank taste
model plus user and item biases plus Gaussian noise, ratings rounded to half
stars in 0.5-5. Which movies a user rates depends on popularity *and* taste, so
a model that learns taste beats the popularity ranking on top-N.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from npcf.data.ratings import Ratings, build_ratings

_GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
           "Documentary", "Drama", "Fantasy", "Horror", "Musical", "Mystery",
           "Romance", "Sci-Fi", "Thriller", "War", "Western")
_ADJ = ("Silent", "Last", "Crimson", "Hidden", "Broken", "Golden", "Lonely", "Wild",
        "Frozen", "Distant", "Electric", "Midnight", "Secret", "Burning", "Lost", "Iron")
_NOUN = ("River", "Kingdom", "Promise", "Garden", "Horizon", "Mirror", "Storm", "Road",
         "Empire", "Letter", "Harbor", "Machine", "Summer", "Shadow", "Island", "Song")


def generate(n_users: int = 2000, n_items: int = 1500, mean_ratings: float = 60.0,
             rank: int = 8, noise: float = 0.35, seed: int = 0) -> tuple[Ratings, pd.DataFrame]:
    """Generate ratings and a movies table.

    Returns ``(ratings, movies)``: :class:`Ratings` with raw ids 1..n (users and
    movies), scale (0.5, 5), timestamps; and a DataFrame indexed by ``movieId``
    with ``title`` and ``genres``. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    taste_u = rng.normal(0, 1, (n_users, rank)) / np.sqrt(rank)
    taste_i = rng.normal(0, 1, (n_items, rank))
    bias_u = rng.normal(0, 0.35, n_users)
    bias_i = rng.normal(0, 0.45, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.2
    rng.shuffle(popularity)
    bias_i += 0.25 * np.log(popularity / popularity.mean())     # popular films rate higher
    activity = np.clip(rng.lognormal(np.log(mean_ratings) - 0.5, 1.0, n_users), 10, n_items // 3)
    activity = activity.astype(np.int64)

    affinity = taste_u @ taste_i.T                                   # (n_users, n_items)
    # Gumbel top-k: sample without replacement with weights popularity * exp(2 * affinity).
    logits = np.log(popularity)[None, :] + 2.0 * affinity
    logits += rng.gumbel(size=logits.shape)
    order = np.argsort(-logits, axis=1)
    rows = np.repeat(np.arange(n_users), activity)
    cols = np.concatenate([order[u, :k] for u, k in enumerate(activity)])
    score = 2.6 + bias_u[rows] + bias_i[cols] + 0.9 * affinity[rows, cols]
    score += rng.normal(0, noise, rows.size)
    rating = np.clip(np.round(score * 2) / 2, 0.5, 5.0)
    start = 946_684_800  # 2000-01-01
    ts = start + np.sort(rng.integers(0, 15 * 365 * 86400, rows.size))
    ts = ts[rng.permutation(rows.size)]
    ratings = build_ratings(rows + 1, cols + 1, rating, ts, scale=(0.5, 5.0),
                            source=f"synthetic(seed={seed})")
    genre_of = np.argmax(taste_i[:, :min(rank, len(_GENRES))], axis=1)
    second = rng.integers(0, len(_GENRES), n_items)
    years = rng.integers(1930, 2016, n_items)
    titles = [f"The {_ADJ[rng.integers(len(_ADJ))]} {_NOUN[rng.integers(len(_NOUN))]} "
              f"{'I' * (1 + i % 3) if i % 7 == 0 else ''}".strip() + f" ({years[i]})"
              for i in range(n_items)]
    genres = [_GENRES[g] if g == s else f"{_GENRES[g]}|{_GENRES[s]}"
              for g, s in zip(genre_of, second)]
    movies = pd.DataFrame({"title": titles, "genres": genres},
                          index=pd.Index(np.arange(1, n_items + 1), name="movieId"))
    return ratings, movies
