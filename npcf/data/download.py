"""Download, verify and unpack the named MovieLens datasets.

Layout of the cache (``cache_dir()``: ``$NPCF_DATA`` if set, else ``~/.cache/npcf``)::

    <cache>/<name>.zip              the archive, kept so the data can be re-extracted offline
    <cache>/<name>.zip.sha256       trust-on-first-use digest (entries without a pinned one)
    <cache>/<name>/                 the extracted archive; ``DatasetInfo.ratings`` and
                                    ``DatasetInfo.movies`` are relative to this directory
    <cache>/<name>/.npcf-complete   marker holding the SHA-256 of the archive it came from

``fetch`` returns ``<cache>/<name>`` at once, without network access, when the marker
matches the expected digest. Otherwise it downloads (or takes an archive the user put at
``<cache>/<name>.zip`` by hand), checks its SHA-256, and extracts it into a temporary
directory that is renamed into place. Downloads go to a temporary file that is renamed
only when complete; entries that would land outside the target directory (absolute
paths, ``..``, symlinks) are refused.

Every built-in dataset has a pinned SHA-256. A registry entry with ``sha256=None`` is
trusted on first use: the digest of the first archive that downloads and extracts
successfully is recorded in ``<cache>/<name>.zip.sha256``, and every later use is
verified against it. Delete that file to trust a new archive.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Mapping

from npcf.errors import DatasetError, one_line
from npcf.utils.files import atomic_path, write_text
from npcf.utils.progress import open_progress

MARKER = ".npcf-complete"
CHUNK = 1 << 16
TIMEOUT = 60.0
_BASE = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetInfo:
    """One downloadable dataset. ``ratings``/``movies`` are relative to the extracted dir."""

    name: str
    url: str
    sha256: str | None
    size_bytes: int | None
    ratings: str
    movies: str
    description: str


# SHA-256 digests and byte sizes: tensorflow/datasets, file
# tensorflow_datasets/url_checksums/movielens.txt (commit 1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c),
# each also recorded identically by several independent projects on GitHub.
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "ml-latest-small", _BASE + "ml-latest-small.zip",
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202,
            "ml-latest-small/ratings.csv", "ml-latest-small/movies.csv",
            "100,836 ratings (0.5-5 stars) by 610 users of 9,742 movies; for development",
        ),
        DatasetInfo(
            "ml-100k", _BASE + "ml-100k.zip",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029,
            "ml-100k/u.data", "ml-100k/u.item",
            "100,000 ratings (1-5 stars) by 943 users of 1,682 movies (1998)",
        ),
        DatasetInfo(
            "ml-1m", _BASE + "ml-1m.zip",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549,
            "ml-1m/ratings.dat", "ml-1m/movies.dat",
            "1,000,209 ratings (1-5 stars) by 6,040 users of about 3,900 movies (2003)",
        ),
        DatasetInfo(
            "ml-25m", _BASE + "ml-25m.zip",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261_978_986,
            "ml-25m/ratings.csv", "ml-25m/movies.csv",
            "25,000,095 ratings (0.5-5 stars) by 162,541 users of 62,423 movies (2019)",
        ),
    )
}


def cache_dir() -> Path:
    """The dataset cache: ``$NPCF_DATA`` if set, else ``~/.cache/npcf``."""
    env = os.environ.get("NPCF_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "npcf"


def fetch(name: str, *, cache=None, registry: Mapping[str, DatasetInfo] | None = None,
          progress=None) -> Path:
    """Return the extracted directory of dataset ``name``, downloading it if needed.

    Raises ``DatasetError`` for an unknown name, a failed or interrupted download,
    a checksum mismatch, or an unsafe or broken archive.
    """
    info = _lookup(name, registry)
    root = Path(cache) if cache is not None else cache_dir()
    target = root / info.name
    expected = info.sha256 or _recorded_digest(root, info.name)
    if _is_complete(info, target, expected):
        return target
    archive = _archive_path(root, info.name)
    placed = archive.exists()           # put there by hand (or an earlier run): kept aside
    if not placed:
        _download(info, archive, progress)
    digest = _verify(info, archive, expected, placed)
    _extract(info, archive, target, digest, placed)
    if info.sha256 is None and expected is None:
        write_text(_digest_path(root, info.name), digest + "\n")
    return target


def list_datasets(cache=None, registry: Mapping[str, DatasetInfo] | None = None) -> list[dict]:
    """One dict per dataset: ``name``, ``size_bytes``, ``cached``, ``url``, ``description``."""
    root = Path(cache) if cache is not None else cache_dir()
    rows = []
    for info in (DATASETS if registry is None else registry).values():
        expected = info.sha256 or _recorded_digest(root, info.name)
        rows.append({
            "name": info.name,
            "size_bytes": info.size_bytes,
            "cached": _is_complete(info, root / info.name, expected),
            "url": info.url,
            "description": info.description,
        })
    return rows


# -- registry and cache state ------------------------------------------------------------

def _lookup(name: str, registry: Mapping[str, DatasetInfo] | None) -> DatasetInfo:
    registry = DATASETS if registry is None else registry
    if name not in registry:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(registry)}")
    return registry[name]


def _archive_path(root: Path, name: str) -> Path:
    return root / f"{name}.zip"


def _digest_path(root: Path, name: str) -> Path:
    return root / f"{name}.zip.sha256"


def _recorded_digest(root: Path, name: str) -> str | None:
    """The trust-on-first-use digest recorded for ``name``, if any."""
    try:
        text = _digest_path(root, name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text.lower() or None


def _is_complete(info: DatasetInfo, target: Path, expected: str | None) -> bool:
    """True if ``target`` holds a finished extract of the archive with digest ``expected``."""
    if expected is None:
        return False
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("sha256") != expected.lower():
        return False
    return (target / info.ratings).is_file() and (target / info.movies).is_file()


# -- download and verification -------------------------------------------------------------

def _manual_hint(info: DatasetInfo, archive: Path) -> str:
    return f"download {info.url} by hand and put it at {archive}"


def _reason(err: BaseException) -> str:
    """``err`` as one short line (the underlying reason of a ``URLError``)."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return one_line(err.reason) if str(err.reason).strip() else one_line(err)
    return one_line(err)


def _download(info: DatasetInfo, archive: Path, progress) -> None:
    """Download ``info.url`` to ``archive``; nothing is left under that name on failure."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(info.url, timeout=TIMEOUT)
    except (OSError, HTTPException, ValueError) as err:
        raise DatasetError(f"cannot download {info.name} ({_reason(err)}); "
                           f"{_manual_hint(info, archive)}") from None
    with response, atomic_path(archive) as tmp:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        got = 0
        try:
            with open(tmp, "wb") as out, \
                    open_progress(progress, total or info.size_bytes or 0, info.name) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        except (OSError, HTTPException) as err:
            raise DatasetError(_interrupted(info, archive, got, total, _reason(err))) from None
        if total is not None and got != total:
            raise DatasetError(_interrupted(info, archive, got, total, "connection closed"))


def _interrupted(info: DatasetInfo, archive: Path, got: int, total: int | None,
                 reason: str) -> str:
    of = f" of {total}" if total is not None else ""
    return (f"download of {info.name} interrupted after {got}{of} bytes ({reason}); "
            f"try again, or {_manual_hint(info, archive)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(info: DatasetInfo, archive: Path, expected: str | None, placed: bool) -> str:
    """Return the archive's SHA-256; put it out of the way (:func:`_reject`) and raise if
    it is not ``expected``."""
    actual = _sha256(archive)
    if expected is not None and actual != expected.lower():
        raise DatasetError(f"{info.name}: checksum mismatch for {archive}: expected sha256 "
                           f"{expected.lower()}, got {actual}; {_reject(archive, placed)}")
    return actual


def _reject(archive: Path, placed: bool) -> str:
    """Remove a rejected archive npcf downloaded; one that was there before (put there by
    hand) is renamed ``<name>.rejected`` instead, never deleted. Says which."""
    if not placed:
        archive.unlink(missing_ok=True)
        return "the file was deleted"
    aside = archive.with_name(archive.name + ".rejected")
    try:
        os.replace(archive, aside)
    except OSError as err:
        return f"the file was left as it was (it could not be renamed: {_reason(err)})"
    return f"the file was kept as {aside} (a fresh download goes to {archive})"


# -- safe extraction -------------------------------------------------------------------

def _unsafe_reason(member: zipfile.ZipInfo, root: Path) -> str | None:
    """Why extracting ``member`` under ``root`` would be unsafe, or None if it is fine."""
    name = member.filename
    if stat.S_ISLNK(member.external_attr >> 16):
        return "symbolic link"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or \
            PurePosixPath(name).is_absolute():
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "parent-directory reference"
    resolved = (root / name).resolve()
    if resolved != root and root not in resolved.parents:
        return "path outside the target directory"
    return None


def _check_members(info: DatasetInfo, zf: zipfile.ZipFile, root: Path) -> None:
    for member in zf.infolist():
        why = _unsafe_reason(member, root)
        if why is not None:
            raise DatasetError(f"{info.name}: refusing to extract unsafe entry "
                               f"{member.filename!r} ({why})")
    missing = [p for p in (info.ratings, info.movies) if p not in zf.namelist()]
    if missing:
        raise DatasetError(f"{info.name}: archive lacks {', '.join(missing)}")


def _extract(info: DatasetInfo, archive: Path, target: Path, digest: str,
             placed: bool = False) -> None:
    """Extract ``archive`` into ``target`` via a temporary directory and a rename.

    A broken or unsafe archive is put out of the way (:func:`_reject`) and
    ``DatasetError`` raised.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        root = tmp.resolve()
        with zipfile.ZipFile(archive) as zf:
            _check_members(info, zf, root)
            zf.extractall(root)
        write_text(tmp / MARKER, json.dumps({"name": info.name, "sha256": digest}) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except DatasetError as err:
        raise DatasetError(f"{err}; {_reject(archive, placed)}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DatasetError(f"{info.name}: {archive} is not a valid zip archive "
                           f"({_reason(err)}); {_reject(archive, placed)}") from None
    except OSError as err:
        raise DatasetError(f"{info.name}: cannot extract {archive} into {target} "
                           f"({_reason(err)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
