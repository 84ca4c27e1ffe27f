"""The one movie-titles parser: ``movies.csv`` (MovieLens, quoted, UTF-8 with or without
BOM), ``movies.dat`` (``::``, Latin-1) and ``u.item`` (``|``, Latin-1, 19 genre flags).

Standard library only, so the ONNX runtime reads titles without pandas. Every bad
line is a :class:`~npcf.errors.DataError` ``FILE:LINE: problem``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from npcf.data import textfile
from npcf.data.vocab import int_text
from npcf.errors import DataError

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
               "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
               "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _movie_id(text: str, path, line: int):
    text = text.strip()
    if not text:
        raise DataError("empty movie id", path, line)
    number = int_text(text)
    return text if number is None else number


def _text(path: Path) -> str:
    """The file decoded as UTF-8 (BOM dropped), or Latin-1 for ``::``/``|`` files."""
    raw = textfile.read_bytes(path)
    if not raw.strip():
        raise DataError("file is empty (no movies)", path)
    if b"\x00" in raw[:8192]:
        raise DataError("not a text file (binary content)", path)
    head = raw[:raw.find(b"\n")] if b"\n" in raw else raw
    if b"::" in head or (head.count(b"|") >= 5 and not head.lower().startswith(b"movieid")):
        return raw.decode("latin-1")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"bad UTF-8 byte 0x{raw[err.start]:02x}", path, line) from None


def parse_movies(path) -> list[tuple]:
    """``[(movie id, title, genres), ...]`` in file order; ids are int where they are
    integers, genres ``|``-separated (``""`` when unknown)."""
    path = Path(path)
    text = _text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    out = []
    if "::" in first:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("::")
            if len(parts) < 2:
                raise DataError("expected movieId::title::genres", path, n)
            out.append((_movie_id(parts[0], path, n), parts[1],
                        parts[2] if len(parts) > 2 else ""))
    elif first.count("|") >= 5 and not first.lower().startswith("movieid"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 5 + len(GENRES_100K):
                raise DataError(f"u.item needs {5 + len(GENRES_100K)} fields, found {len(parts)}",
                                path, n)
            flags = parts[5:]
            if any(f.strip() not in ("0", "1") for f in flags):
                raise DataError("genre flags must be 0 or 1", path, n)
            genres = "|".join(g for g, f in zip(GENRES_100K, flags) if f.strip() == "1")
            out.append((_movie_id(parts[0], path, n), parts[1], genres))
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip() for h in next(reader, [])]
        for col in ("movieId", "title"):
            if col not in header:
                raise DataError(f"missing column {col!r} in movies file", path, 1)
        i_id, i_title = header.index("movieId"), header.index("title")
        i_genres = header.index("genres") if "genres" in header else None
        for row in reader:
            n = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(f"expected {len(header)} fields, found {len(row)}", path, n)
            out.append((_movie_id(row[i_id], path, n), row[i_title],
                        row[i_genres] if i_genres is not None else ""))
    return out


def read_titles(path) -> dict:
    """``{movie id: title}`` of a titles file (see :func:`parse_movies`)."""
    return {mid: title for mid, title, _ in parse_movies(path)}
