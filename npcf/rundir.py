"""The run directory: what `train` writes, what `eval` and `recommend` read back.

Layout of a run directory (``models/`` by default)::

    model.npz  model.json    the checkpoint (weights and id maps without pickle; metadata)
    history.csv              one row per epoch (``member`` column for ensembles)
    tuning.csv               one row per trial of the hyperparameter search
    metrics.json             test and validation figures, hyperparameters, data path
    data/                    the prepared split the model was trained and tested on
    members/K/               ensemble member K (its own checkpoint and history)
    resume.npz resume.json   Ctrl-C state, removed when training finishes
    model.onnx               `eval --generate` (``model.<precision>.onnx`` for fp16/int8)

This module owns those names, the defaults and the data fingerprints; it imports
nothing from npcf but the file helpers and the errors.
"""
from __future__ import annotations

import contextlib
import csv
import fnmatch
import hashlib
import json
import os
import shlex
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from npcf.errors import NpcfError, NpcfWarning
from npcf.utils.files import atomic_path, dir_lock, lock_path

DEFAULT_DIR = Path("models")
MODEL_NPZ, MODEL_JSON = "model.npz", "model.json"
HISTORY_CSV = "history.csv"
TUNING_CSV = "tuning.csv"
METRICS_JSON = "metrics.json"
DATA_DIR = "data"
MEMBERS_DIR = "members"
RESUME_NPZ, RESUME_JSON = "resume.npz", "resume.json"
ONNX_SUFFIX = ".onnx"
PLOT_NAME = "loss.png"
#: files (name patterns) only a finished or interrupted run directory has
RUN_MARKERS = (MODEL_JSON, METRICS_JSON, RESUME_JSON, f"{MEMBERS_DIR}/*/{MODEL_JSON}",
               f"{MEMBERS_DIR}/*/{RESUME_JSON}")
#: the entries `train` (and `eval --generate`, `plot`) put in a run directory
RUN_ENTRIES = (MODEL_NPZ, MODEL_JSON, HISTORY_CSV, TUNING_CSV, METRICS_JSON, DATA_DIR,
               MEMBERS_DIR, RESUME_NPZ, RESUME_JSON, PLOT_NAME, "model*.onnx", "model*.onnx.*")


def onnx_name(precision: str = "fp32", stem: str = "model") -> str:
    """File name of an exported model: ``model.onnx``, or ``model.<precision>.onnx``
    (``stem``: the checkpoint's, for a checkpoint saved as ``best.npz``)."""
    return f"{stem}.onnx" if precision == "fp32" else f"{stem}.{precision}.onnx"


def exports(folder) -> list[Path]:
    """The exported files in ``folder`` (``model*.onnx`` and their id sidecars)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("model*.onnx*") if p.is_file()) if folder.is_dir() else []


def file_digest(path) -> str:
    """SHA-256 (first 16 hex digits) of the bytes of file ``path`` (a checkpoint's
    ``.npz``): which checkpoint an export came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def path_text(path) -> str:
    """``path`` as text for a file's metadata (valid UTF-8 whatever the locale: a name the
    file system holds as UTF-8 bytes reads as itself); :func:`text_path` reads it back."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def text_path(text: str) -> Path:
    """The path :func:`path_text` wrote, as this process's file-system encoding names it."""
    return Path(os.fsdecode(text.encode("utf-8", "surrogateescape")))


def check_export_fresh(meta: dict, path) -> None:
    """Whether the ONNX file ``path`` (its metadata ``meta``) was exported from the
    checkpoint now at the path it records (``checkpoint_path``; older exports: its run
    directory's ``model.npz``). If a retrain replaced that checkpoint: NpcfError when the
    export sits beside it (``model.onnx`` of a run directory, left stale), an
    :class:`~npcf.errors.NpcfWarning` when it was written elsewhere (a file deployed on
    purpose keeps working: it holds its whole model). Every command that loads an export
    checks this (recommend, eval, serve, batch-recommend)."""
    recorded = meta.get("checkpoint_sha256")
    if "checkpoint_path" in meta:      # the checkpoint it came from, wherever it is
        source = text_path(meta["checkpoint_path"])
    else:
        source = folder_of(path) / MODEL_NPZ
    if not recorded or not source.is_file():
        return
    try:
        digest = file_digest(source)
    except OSError:
        return
    if digest == recorded:
        return
    redo = f"re-export with `python cli.py eval --generate --model {shlex.quote(str(source))}`"
    if Path(path).resolve().parent != source.resolve().parent:
        warnings.warn(f"{path}: exported from an older checkpoint than {source} (retrained "
                      f"since); it holds its own model and is used as it is ({redo} to use "
                      "the new one)", NpcfWarning, stacklevel=2)
        return
    raise NpcfError(f"{path}: exported from an older checkpoint than {source}; {redo}")


def foreign_entries(folder, owned) -> list[str]:
    """Names in directory ``folder`` that match none of the ``owned`` names/patterns (a
    missing folder has none; npcf's own hidden temporary files do not count)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(n for n in os.listdir(folder)
                  if not (n.startswith(".") and n.endswith((".tmp", ".old", ".lock")))
                  and not any(fnmatch.fnmatchcase(n, pat) for pat in owned))


def check_target(out, owned, what: str, option: str = "--out", inputs=(),
                 markers=()) -> Path:
    """``out`` as a directory a command may replace as a whole: NpcfError if it is a
    file, the working directory or one of its parents, holds an entry not in ``owned``,
    is not empty but holds none of the ``markers`` (name patterns of the files that show
    npcf wrote it), or contains one of the command's ``inputs`` (paths it reads)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NpcfError(f"{option} {out}: is a file, not a directory")
    real = out.resolve()
    if real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        raise NpcfError(f"{option} {out}: is the working directory (or holds it); choose "
                        f"a directory of its own for the {what}")
    foreign = foreign_entries(out, owned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise NpcfError(f"{option} {out}: holds files that are not a {what}'s ({shown}); "
                        f"npcf replaces the whole directory, so choose a new or empty one")
    if markers and out.is_dir() and foreign_entries(out, ()) and \
            not any(next(out.glob(m), None) for m in markers):
        raise NpcfError(f"{option} {out}: holds files but is not a {what} npcf wrote; "
                        f"npcf replaces the whole directory, so choose a new or empty one")
    for path in inputs:
        if path is not None and Path(path).exists():
            p = Path(path).resolve()
            if p == real or real in p.parents:
                raise NpcfError(f"{option} {out}: would replace this command's own input "
                                f"{path}; write to another directory")
    return out


def is_run_dir(folder) -> bool:
    """Whether ``folder`` holds a finished or interrupted run (one of :data:`RUN_MARKERS`)."""
    folder = Path(folder)
    return folder.is_dir() and any(next(folder.glob(m), None) for m in RUN_MARKERS)


@contextlib.contextmanager
def writing_into(folder):
    """Hold ``folder``'s lock while the block writes a file into it (an export, a plot)
    when ``folder`` is a run directory or one a command is building now (its lock file
    exists): a `train` replacing it cannot swap the new file away, and a command already
    at work there makes this one fail at once (OSError EBUSY, "in use by another npcf
    command") instead. Any other folder is written unlocked."""
    folder = Path(folder).resolve()
    if is_run_dir(folder) or lock_path(folder).exists():
        with dir_lock(folder):
            yield
    else:
        yield


def folder_of(path) -> Path:
    """The run directory of ``path`` (a directory, or a file inside one)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def member_dir(out, k: int) -> Path:
    """Directory of ensemble member ``k`` inside run directory ``out``."""
    return Path(out) / MEMBERS_DIR / str(k)


def recorded_data(folder) -> Path | None:
    """The prepared data directory of run directory ``folder``: its ``data/``, else the
    one `train` recorded in ``folder/metrics.json``, if it holds a prepared data set."""
    if (Path(folder) / DATA_DIR / "stats.json").is_file():
        return Path(folder) / DATA_DIR
    f = Path(folder) / METRICS_JSON
    try:
        recorded = json.loads(f.read_text()).get("data", "")
    except (OSError, ValueError, AttributeError):
        return None
    path = Path(recorded) if isinstance(recorded, str) and recorded else None
    return path if path is not None and (path / "stats.json").is_file() else None


def fingerprint(X) -> str:
    """A short SHA-256 of a sparse matrix's shape, pattern and values (the order of
    stored entries within a row does not matter)."""
    X = sp.csr_matrix(X)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    h = hashlib.sha256(repr(X.shape).encode())
    for arr in (X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------- history.csv
def history_columns(loss: str) -> list[str]:
    """The columns of ``history.csv`` for a model trained with ``loss``."""
    return ["epoch", "train_loss", "val_loss", "val_rmse" if loss == "mse" else "val_ndcg", "lr",
            "seconds"]


def write_rows(path, rows: list[dict], cols: list[str]) -> None:
    """Write ``rows`` (dicts) as a CSV with ``cols``, atomically; missing cells empty
    (``history.csv``, ``tuning.csv``)."""
    lines = [",".join(cols)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in cols))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_history(path, *, missing_ok: bool = True) -> list[dict]:
    """Rows of a ``history.csv`` (numbers parsed; empty cells left out); ``[]`` when there
    is no file and ``missing_ok``. ValueError (with the line number) on a cell that is
    not a number; OSError on an unreadable file."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    rows = []
    with f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            parsed = {}
            for k, v in row.items():
                if k is None or v is None or not v.strip():
                    continue
                try:
                    parsed[k] = int(v) if k in ("epoch", "member") else float(v)
                except ValueError:
                    raise ValueError(f"line {line}: {k} is not a number: {v!r}") from None
            rows.append(parsed)
    return rows


def history_header(path) -> list[str]:
    """The column names of a ``history.csv`` (``[]`` for an empty file)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [c.strip() for c in next(csv.reader(f), [])]
