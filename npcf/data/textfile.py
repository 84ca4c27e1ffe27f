"""Opening the text files users have: plain, or compressed (gzip, bz2, xz, a one-file
zip — told by their first bytes, not their names), UTF-8 with or without a BOM, any line
ending; a binary file is a :class:`~npcf.errors.DataError`, never bytes on a screen."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from pathlib import Path

from npcf.errors import DataError, one_line

#: first bytes -> compression (the names pandas' ``compression=`` takes)
MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"),
         (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"))     # (the latter: an empty zip)
SNIFF_BYTES = 8192
#: what opening or reading a truncated or corrupt archive raises
ARCHIVE_ERRORS = (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)


def archive_error(err: BaseException, path) -> DataError:
    """The one-line :class:`DataError` for one of :data:`ARCHIVE_ERRORS` reading ``path``."""
    return DataError(f"cannot read: {one_line(err)} (truncated or corrupt archive?)", path)


def compression(path) -> str | None:
    """``"gzip"``, ``"bz2"``, ``"xz"``, ``"zip"`` or None (plain) from the first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise DataError(err.strerror or str(err), path) from None
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), None)


def open_binary(path):
    """``path``'s bytes, decompressed. DataError on a corrupt archive or a zip that does
    not hold exactly one file."""
    path = Path(path)
    kind = compression(path)
    try:
        if kind == "gzip":
            return gzip.open(path, "rb")
        if kind == "bz2":
            return bz2.open(path, "rb")
        if kind == "xz":
            return lzma.open(path, "rb")
        if kind == "zip":
            z = zipfile.ZipFile(path)
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise DataError(f"a zip archive must hold one file, this one holds "
                                f"{len(names)}", path)
            return z.open(names[0])
        return open(path, "rb")
    except ARCHIVE_ERRORS as err:
        raise DataError(f"cannot open: {err}", path) from None


def head(path, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes of the decompressed content; DataError if they are not text
    (a NUL byte), or if the archive is corrupt."""
    try:
        with open_binary(path) as f:
            data = f.read(n)
    except ARCHIVE_ERRORS as err:
        raise archive_error(err, path) from None
    if b"\x00" in data:
        raise DataError("not a text file (binary content)", path)
    return data


def open_text(path, errors: str = "strict"):
    """A text stream over ``path`` (decompressed, UTF-8, BOM dropped, newlines kept as
    they are so a caller can tell a truncated last line)."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", errors=errors,
                            newline="")


def read_bytes(path) -> bytes:
    """The whole decompressed content (for small files such as titles)."""
    try:
        with open_binary(path) as f:
            return f.read()
    except ARCHIVE_ERRORS as err:
        raise archive_error(err, path) from None
