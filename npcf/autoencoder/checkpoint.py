"""Checkpoint files: ``model.npz`` (arrays; loaded without pickle) + ``model.json``
(architecture, hyperparameters, scale, version, data fingerprint), and the resume
state a Ctrl-C leaves (``resume.npz`` + ``resume.json``).

Pure file I/O on dicts of arrays and JSON metadata: the estimator decides what goes in
(:meth:`npcf.AutoEncoder.save` / :meth:`~npcf.AutoEncoder.load`).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from npcf import rundir
from npcf.errors import CheckpointError, NpcfError
from npcf.utils.files import ARCHIVE_ERRORS, as_written, atomic_path, write_json

FORMAT, FORMAT_VERSION = "npcf-autoencoder", 1
_NPZ_ERRORS = ARCHIVE_ERRORS


def write_model(folder, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` to ``folder/model.npz`` and ``meta`` (plus the format tag) to
    ``folder/model.json``, each atomically. Returns ``folder``."""
    folder = Path(folder)
    with atomic_path(folder / rundir.MODEL_NPZ, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    write_json(folder / rundir.MODEL_JSON, dict(meta, format=FORMAT,
                                                format_version=FORMAT_VERSION))
    return folder


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
    for f in (npz, meta_path):
        if not f.is_file():
            raise CheckpointError(f"{f}: no such checkpoint file")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not an npcf model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: written by a newer npcf "
                              f"({meta.get('npcf_version')}); upgrade npcf")
    try:
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except _NPZ_ERRORS as err:
        raise CheckpointError(f"{npz}: corrupt checkpoint ({_npz_problem(npz, err)})") \
            from None
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
            and meta.get("hyperparameters") == as_written(hyperparameters))


# ---------------------------------------------------------------------- resume state
def has_resume(folder) -> bool:
    return (Path(folder) / rundir.RESUME_JSON).is_file()


def write_resume(folder, arrays: dict, meta: dict) -> None:
    """The trainer's state (``arrays``: params, optimizer slots, best params; ``meta``:
    counters, history, config), atomically."""
    folder = Path(folder)
    with atomic_path(folder / rundir.RESUME_NPZ, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    write_json(folder / rundir.RESUME_JSON, meta)


def read_resume(folder) -> tuple[dict, dict]:
    """``(meta, arrays)`` written by :func:`write_resume`; :class:`NpcfError` if absent."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / rundir.RESUME_JSON).read_text())
        with np.load(folder / rundir.RESUME_NPZ, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except _NPZ_ERRORS as err:
        raise NpcfError(f"cannot resume from {folder}: {err}") from None
    if not isinstance(meta, dict):
        raise NpcfError(f"cannot resume from {folder}: {rundir.RESUME_JSON} is not a state file")
    return meta, arrays


def changed_options(meta: dict, params: dict) -> list[str]:
    """The names whose value in ``params`` differs from the resume state's ``config``."""
    saved, want = meta.get("config", {}), as_written(params)
    return sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))


def remove_resume(folder) -> None:
    for name in (rundir.RESUME_NPZ, rundir.RESUME_JSON):
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / name).unlink()
