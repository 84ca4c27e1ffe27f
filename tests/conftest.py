"""Shared fixtures: the real MovieLens-small copy that lives beside the repository."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MOVIES_SMALL = REPO.parent / "shared" / "datasets" / "movies-small"


@pytest.fixture(scope="session")
def movies_small() -> Path:
    """``<repo>/../shared/datasets/movies-small`` (ratings.csv, movies.csv); skip if absent."""
    if not (MOVIES_SMALL / "ratings.csv").is_file():
        pytest.skip(f"real data set not found at {MOVIES_SMALL}")
    return MOVIES_SMALL


@pytest.fixture(scope="session")
def movies_small_ratings(movies_small):
    """The real ``ratings.csv`` read once per session (read-only: do not modify)."""
    from npcf.data import read_ratings

    return read_ratings(movies_small / "ratings.csv")
