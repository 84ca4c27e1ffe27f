"""Atomic writes and JSON that is always valid (NaN and infinities become null).

A file is written to a temporary name beside it, flushed to disk (``fsync``), then
``os.replace``d (and the directory flushed, so a power cut leaves the old file or the
new one, never a name pointing at unwritten blocks); a directory is built in a hidden
sibling, flushed file by file and swapped in (:func:`staged_dir`). Both get the modes a plain
``open``/``mkdir`` would (the process umask), not ``mkstemp``'s private 0600.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

#: what reading a corrupt ``.npz`` (a zip archive) can raise, in zipfile, zlib or NumPy
ARCHIVE_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, RuntimeError,
                  OverflowError, struct.error, zipfile.BadZipFile, zlib.error)


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", make_parent: bool = True):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On error the temporary file is removed and ``path`` is left untouched.
    ``suffix`` keeps an extension some writers insist on (``np.savez`` adds ``.npz``).
    ``make_parent``: make ``path``'s directory if missing (else FileNotFoundError).
    """
    path = Path(path)
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publish(Path(tmp), path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: the longest name used as it is inside npcf's hidden names (``.NAME.xxxxxxxx.tmp``,
#: ``.NAME.lock``), which must stay within the file systems' 255 bytes
HIDDEN_STEM_MAX = 200


def hidden_stem(name: str) -> str:
    """``name`` as the stem of npcf's hidden files beside it: itself, or for a name over
    :data:`HIDDEN_STEM_MAX` bytes its start and a digest of the whole (still one per name)."""
    raw = os.fsencode(name)
    if len(raw) <= HIDDEN_STEM_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return os.fsdecode(raw[:HIDDEN_STEM_MAX - 17]) + "~" + digest   # (bytes cut mid-character
                                                                # round-trip as surrogates)


@contextlib.contextmanager
def staged_files(path):
    """Yield a path named like ``path`` in a fresh hidden directory beside it; on success
    every file written in that directory replaces its namesake beside ``path`` (atomic
    renames, the umask's modes) in reverse name order (a sidecar such as
    ``model.onnx.items.json`` before ``model.onnx``, so a reader of the file always finds
    its sidecar); on an error nothing beside ``path`` changes. Makes ``path``'s directory
    if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{hidden_stem(path.name)}.", dir=path.parent) as tmp:
        yield Path(tmp) / path.name
        for f in sorted(Path(tmp).iterdir(), reverse=True):
            if f.is_file():
                _publish(f, path.parent / f.name)


def _publish(tmp: Path, path: Path) -> None:
    """Give the written temporary file ``tmp`` the umask's modes, flush it, rename it onto
    ``path`` and flush the directory: the bytes are on disk before the name points at
    them, and so is the new name."""
    os.chmod(tmp, 0o666 & ~umask())
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path) -> None:
    """Flush ``path`` (a file or a directory) to disk; a no-op where the system cannot
    (some file systems refuse it for directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def jsonable(obj):
    """``obj`` with NaN/inf floats as None, numpy scalars and arrays as Python values,
    tuples as lists and keys as strings (recursively)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def as_written(obj):
    """``obj`` as it reads back from :func:`write_json` (for comparing with a file)."""
    return json.loads(json.dumps(jsonable(obj)))


def json_text(obj) -> str:
    """``obj`` (see :func:`jsonable`) as indented, key-sorted JSON text."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n"


def write_json(path, obj) -> None:
    """Write ``obj`` (see :func:`jsonable`) as indented JSON to ``path`` atomically."""
    write_text(path, json_text(obj))


# ------------------------------------------------------------------- directories
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries in one step (Linux ``renameat2``); False where the
    system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd = -100
    return fn(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def swap_dir(new, target) -> None:
    """Put directory ``new`` in place of ``target`` (removing the old one): atomically
    where the system can exchange two names, else by two renames."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)     # now holds the old directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{hidden_stem(target.name)}.", suffix=".old",
                                dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target, keep_on: tuple = (), from_target: bool = False):
    """Yield a fresh hidden directory beside ``target``; on success it replaces
    ``target`` (:func:`swap_dir`), on an error it is removed and ``target`` is left as it
    was, except for the exception types in ``keep_on`` (then it is swapped in too). One
    process at a time: a second one gets OSError (EBUSY) instead of racing the first.

    ``from_target``: the stage starts as a copy of ``target`` (files hard-linked where
    the file system can: every write here replaces a file, never changes one in place),
    so a block that continues ``target``'s content (a resumed run) leaves it whole
    until it swaps in. A symbolic link ``target`` keeps pointing where it did: the swap
    happens there.
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        _remove_stale_stages(target)
        stage = Path(tempfile.mkdtemp(prefix=f".{hidden_stem(target.name)}.", suffix=".tmp",
                                      dir=target.parent))
        os.chmod(stage, 0o777 & ~umask())
        try:
            if from_target and target.is_dir():
                shutil.copytree(target, stage, symlinks=True, dirs_exist_ok=True,
                                copy_function=_link_or_copy,    # not a killed write's debris
                                ignore=shutil.ignore_patterns(".*.tmp", ".*.tmp.*", ".*.old"))
            yield stage
        except BaseException as err:
            if keep_on and isinstance(err, keep_on):
                _swap_in(stage, target)
            else:
                _remove(stage)
            raise
        _swap_in(stage, target)


def _swap_in(stage: Path, target: Path) -> None:
    """:func:`_commit` ``stage`` as ``target``. If that fails, ``stage`` is removed, unless
    the swap failed halfway (the old directory renamed away and not back): then both stay
    for the next holder, which puts the old one back (:func:`_remove_stale_stages`). EBUSY
    (a bind mount, which ``os.path.ismount`` does not see) is named as a mount point."""
    try:
        _commit(stage, target)
    except BaseException as err:
        if target.exists() or not _stages_of(target, ".old"):
            _remove(stage)
        if isinstance(err, OSError) and err.errno == errno.EBUSY:
            raise OSError(errno.EBUSY, MOUNT_POINT, str(target)) from None
        raise


MOUNT_POINT = ("a mount point, which npcf cannot replace (it writes a new directory and renames "
               "it into place); give a directory inside it")


def _check_replaceable(target: Path) -> None:
    """OSError before any work where :func:`staged_dir` could not swap a new directory in
    for ``target``: a mount point (a rename cannot replace it) or a directory this process
    may not write (the new one would silently lose its mode, and the old one would stay)."""
    if not target.is_dir():
        return
    if os.path.ismount(target):
        raise OSError(errno.EBUSY, MOUNT_POINT, str(target))
    if not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable; npcf replaces the whole directory, "
                              "so make it writable or choose another one", str(target))


def _stages_of(target: Path, suffix: str) -> list[Path]:
    """The hidden directories ``.NAME.xxxxxxxx{suffix}`` beside ``target`` (``mkdtemp``'s
    eight random characters): what :func:`staged_dir` and :func:`swap_dir` create."""
    found = []
    stem = hidden_stem(target.name)
    for left in target.parent.glob(f".{glob.escape(stem)}.*{suffix}"):
        middle = left.name[len(stem) + 2:-len(suffix)]
        if left.is_dir() and not left.is_symlink() and len(middle) == 8 and "." not in middle:
            found.append(left)
    return found


def _remove_stale_stages(target: Path) -> None:
    """Clear what a killed command left beside ``target`` (the caller holds its lock, so no
    running command is using any of it): hidden stages (``.NAME.*.tmp``) are removed, and
    the old directory of a swap killed between its two renames (``.NAME.*.old`` with no
    ``target``) is put back, so ``target`` is as it was before that command; an ``.old``
    beside an existing ``target`` is a finished swap's leftover and is removed. Two
    ``.old`` directories and no ``target`` are left alone (which one was last is unknown)."""
    old = _stages_of(target, ".old")
    if not target.exists() and not target.is_symlink():
        if len(old) > 1:
            return                  # not knowably which was last: keep all
        if old:
            os.rename(old[0], target)   # the swap was killed halfway: back as it was
            old = []
    for left in old + _stages_of(target, ".tmp"):
        _remove(left, attempts=1)


def _remove(folder: Path, attempts: int = 20) -> None:
    """Remove directory ``folder``, again while something still writing into it (a
    worker process of an interrupted batch finishing its file) keeps it from going."""
    for _ in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


def _link_or_copy(src, dst) -> None:
    """Hard-link ``src`` as ``dst``; copy it where the file system cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _commit(stage: Path, target: Path) -> None:
    """Flush every file and directory of ``stage`` to disk, swap it in for ``target``,
    flush the parent: a power cut leaves the old directory or the whole new one."""
    for root, dirs, names in os.walk(stage):
        for name in names:
            _fsync(Path(root) / name)
        _fsync(root)
    swap_dir(stage, target)
    _fsync(target.parent)


def lock_path(target) -> Path:
    """The lock file of directory ``target`` (``.NAME.lock`` beside it): present while
    a command holds ``target`` (:func:`staged_dir`, :func:`dir_lock`)."""
    target = Path(target)
    return target.parent / f".{hidden_stem(target.name)}.lock"


@contextlib.contextmanager
def dir_lock(folder):
    """Hold the lock :func:`staged_dir` holds on ``folder`` for the block: a command that
    writes one file into a directory another command may rebuild (an export into a run
    directory `train` is replacing) gets OSError (EBUSY) at once instead of having its
    file swapped away, and a rebuild that starts meanwhile waits for the next try. Where
    no lock file can be made beside ``folder`` (a read-only parent) the block runs
    unlocked: nothing there can be rebuilt either."""
    folder = Path(folder)
    if folder.is_symlink():
        folder = folder.resolve()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_locked(folder))
        except OSError as err:
            if err.errno == errno.EBUSY:
                raise
        yield


@contextlib.contextmanager
def _locked(target: Path):
    """Hold an exclusive lock on ``target`` (a ``.NAME.lock`` file beside it) for the
    block; OSError (EBUSY) at once if another process holds it. The lock file is removed
    on release (a Triton repository or a run directory keeps no stray file): a process
    that locked a file just unlinked by its holder sees that and takes the new one."""
    lock = lock_path(target)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(errno.EBUSY, "in use by another npcf command; wait for it to "
                          "finish or choose another directory", str(target)) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)                             # the holder removed it meanwhile: again
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)
