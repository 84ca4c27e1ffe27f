"""Checkpoint files: ``model.npz`` (arrays; loaded without pickle) + ``model.json``
(architecture, hyperparameters, scale, version, data fingerprint), and the resume
state a Ctrl-C leaves (``resume.npz`` + ``resume.json``).

Each pair is written as one: both files are complete under temporary names before either
is renamed into place, and both carry the same random tag (``pair`` in the JSON,
``format/pair`` in the archive). A save interrupted between the two renames leaves a
pair whose tags differ, which reading refuses instead of mixing one model's weights with
another's metadata. Pairs written before the tag existed read as before.

Pure file I/O on dicts of arrays and JSON metadata: the estimator decides what goes in
(:meth:`npcf.AutoEncoder.save` / :meth:`~npcf.AutoEncoder.load`).
"""
from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import numpy as np

from npcf import rundir
from npcf.errors import CheckpointError, NpcfError, one_line
from npcf.utils.files import ARCHIVE_ERRORS, as_written, atomic_path, json_text

FORMAT, FORMAT_VERSION = "npcf-autoencoder", 1
_NPZ_ERRORS = ARCHIVE_ERRORS
_PAIR = "format/pair"


def write_pair(npz: Path, meta_path: Path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` to ``npz`` and ``meta`` to ``meta_path`` as one pair (see the
    module docstring): either file is replaced only once both are written."""
    tag = uuid.uuid4().hex
    with atomic_path(npz, suffix=".npz") as tmp_npz, atomic_path(meta_path) as tmp_meta:
        np.savez(tmp_npz, **arrays, **{_PAIR: np.array(tag)})
        tmp_meta.write_text(json_text(dict(meta, pair=tag)), encoding="utf-8")


def load_arrays(npz) -> dict:
    """Every array in ``npz`` (a path or a binary file; no pickle); the archive's errors
    pass through."""
    with np.load(npz, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def check_pair(npz: Path, meta: dict, arrays: dict) -> None:
    """Remove the pair tag from ``meta`` and ``arrays`` (read from ``npz`` and the JSON
    beside it); :class:`CheckpointError` if they were not written as one pair."""
    tag, stored = meta.pop("pair", None), arrays.pop(_PAIR, None)
    if (tag is not None or stored is not None) and (stored is None or str(stored) != tag):
        raise CheckpointError(f"{npz}: does not belong to the .json beside it (a save was "
                              "interrupted between the two files); save it again")


def write_model(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` and ``meta`` (plus the format tag) as the checkpoint ``path``
    names (see :func:`checkpoint_files`; a path that does not exist and has no
    ``.npz``/``.json`` suffix becomes a run directory). Returns the npz path."""
    path = Path(path)
    if path.is_dir() or path.suffix not in (".npz", ".json"):
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"{path}: exists and is not a directory; save into a "
                                  "directory or to a .npz path")
        npz, meta_path = path / rundir.MODEL_NPZ, path / rundir.MODEL_JSON
    else:
        npz, meta_path = path.with_suffix(".npz"), path.with_suffix(".json")
    write_pair(npz, meta_path, arrays, dict(meta, format=FORMAT,
                                           format_version=FORMAT_VERSION))
    return npz


def checkpoint_files(path) -> tuple[Path, Path]:
    """``(npz, json)`` of the checkpoint ``path`` names: a run directory's ``model.npz`` and
    ``model.json``, or the named ``X.npz`` (or ``X.json``) and its same-stem sibling.
    :class:`CheckpointError` naming ``path`` for anything else."""
    path = Path(path)
    if path.is_dir():
        return path / rundir.MODEL_NPZ, path / rundir.MODEL_JSON
    if path.suffix in (".npz", ".json"):
        return path.with_suffix(".npz"), path.with_suffix(".json")
    if not path.exists():
        raise CheckpointError(f"{path}: no such model directory or .npz checkpoint")
    raise CheckpointError(f"{path}: not a checkpoint; pass a run directory or its .npz file")


def read_model(path) -> tuple[dict, dict, Path]:
    """``(meta, arrays, npz path)`` of the checkpoint ``path`` names (see
    :func:`checkpoint_files`); :class:`CheckpointError` on anything wrong."""
    npz, meta_path = checkpoint_files(path)
    for f, other in ((npz, meta_path), (meta_path, npz)):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: no such checkpoint file" if not other.is_file() else
                f"{other}: its {f.name} (a checkpoint is a {npz.name} + {meta_path.name} "
                "pair, written together) is missing; copy both files")
    raw = meta_path.read_bytes()          # an access error is reported as it is
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not an npcf model file")
    version = meta.get("format_version")
    if type(version) is not int:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata (format_version "
                              f"{version!r} is not a whole number)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: written by a newer npcf "
                              f"({meta.get('npcf_version')}); upgrade npcf")
    with open(npz, "rb") as fh:           # an access error is reported as it is
        try:
            arrays = load_arrays(fh)
        except _NPZ_ERRORS as err:
            raise CheckpointError(f"{npz}: corrupt checkpoint ({_npz_problem(npz, err)})") \
                from None
    check_pair(npz, meta, arrays)
    return meta, arrays, npz


def _npz_problem(npz: Path, err: Exception) -> str:
    """What is wrong with an archive ``np.load`` refused, without suggesting pickle (NumPy
    takes any file without a zip header for a pickle)."""
    if "allow_pickle" not in str(err):
        return str(err)
    with open(npz, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    return "it holds pickled Python objects, which npcf never loads" if zipped else \
        "not an .npz archive (no zip header)"


def file_digest(path) -> str:
    """SHA-256 (first 16 hex digits) of the bytes of the checkpoint ``path`` names (see
    :func:`checkpoint_files`): which checkpoint an export came from."""
    return rundir.file_digest(checkpoint_files(path)[0])


def is_finished(folder, hyperparameters: dict, data_fingerprint: str) -> bool:
    """Whether ``folder`` holds a model trained to the end with ``hyperparameters``
    (compared as JSON) on the data whose fingerprint is ``data_fingerprint``."""
    try:
        meta = json.loads((Path(folder) / rundir.MODEL_JSON).read_text())
    except (OSError, ValueError):
        return False
    info = meta.get("info", {}) if isinstance(meta, dict) else {}
    return ("epochs_run" in info and info.get("fingerprint") == data_fingerprint
            and meta.get("hyperparameters") == as_written(hyperparameters)
            and _same_pair(Path(folder) / rundir.MODEL_NPZ, meta))


def _same_pair(npz: Path, meta: dict) -> bool:
    """Whether ``npz`` carries the pair tag of ``meta`` (both untagged counts too); reads
    only the tag."""
    try:
        with np.load(npz, allow_pickle=False) as f:
            stored = str(f[_PAIR]) if _PAIR in f.files else None
    except _NPZ_ERRORS:
        return False
    return stored == meta.get("pair")


# ---------------------------------------------------------------------- resume state
def has_resume(folder) -> bool:
    return (Path(folder) / rundir.RESUME_JSON).is_file()


def write_resume(folder, arrays: dict, meta: dict) -> None:
    """The trainer's state (``arrays``: params, optimizer slots, best params; ``meta``:
    counters, history, config), atomically."""
    folder = Path(folder)
    write_pair(folder / rundir.RESUME_NPZ, folder / rundir.RESUME_JSON, arrays, meta)


def read_resume(folder) -> tuple[dict, dict]:
    """``(meta, arrays)`` written by :func:`write_resume`; :class:`NpcfError` if absent."""
    folder = Path(folder)
    if not has_resume(folder):
        raise NpcfError(f"cannot resume from {folder}: no interrupted run there (no "
                        f"{rundir.RESUME_JSON})")
    try:
        meta = json.loads((folder / rundir.RESUME_JSON).read_text())
        arrays = load_arrays(folder / rundir.RESUME_NPZ)
    except _NPZ_ERRORS as err:
        raise NpcfError(f"cannot resume from {folder}: {one_line(err)}") from None
    if not isinstance(meta, dict):
        raise NpcfError(f"cannot resume from {folder}: {rundir.RESUME_JSON} is not a state file")
    try:
        check_pair(folder / rundir.RESUME_NPZ, meta, arrays)
    except CheckpointError as err:
        raise NpcfError(f"cannot resume from {folder}: {err}") from None
    return meta, arrays


def changed_options(meta: dict, params: dict) -> list[str]:
    """The names whose value in ``params`` differs from the resume state's ``config``."""
    saved, want = meta.get("config", {}), as_written(params)
    return sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))


def remove_resume(folder) -> None:
    for name in (rundir.RESUME_NPZ, rundir.RESUME_JSON):
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / name).unlink()
