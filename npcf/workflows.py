"""What each command does, as one library function returning a dict (the CLI prints it).

``prepare``, ``train``, ``export_model`` (`eval --generate`), ``evaluate_model``
(`eval --evaluate`), ``compare_baselines`` (`eval --baselines`), ``recommend``. The run
directory they share is :mod:`npcf.rundir`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from npcf import rundir
from npcf.autoencoder import AutoEncoder, checkpoint
from npcf.autoencoder.blend import BLEND
from npcf.autoencoder.callbacks import Checkpoint, EpochLog, ProgressBar
from npcf.autoencoder.crossfit import FOLDS
from npcf.autoencoder.trainer import TrainingInterrupted
from npcf.data.dataset import (
    PREPARED_FILES,
    Dataset,
    is_prepared,
    load_prepared,
    not_prepared,
    save_prepared,
    with_validation,
)
from npcf.data.source import load_dataset
from npcf.data.splits import describe
from npcf.data.titles import read_titles
from npcf.errors import Interrupted, NpcfError, ParamError
from npcf.evaluation import baselines
from npcf.evaluation.metrics import resolve_threshold
from npcf.evaluation.protocol import evaluate, ranking_metrics, rating_metrics
from npcf.evaluation.ranking import clip_finite, outside_scale, rank
from npcf.nn.optim import FULL_BATCH
from npcf.serving import triton as triton_repo
from npcf.serving.export import (
    OPSET,
    check_exportable,
    check_parity,
    export_target,
    graph_and_metadata,
    staged_export,
    write_graph,
)
from npcf.serving.runtime import Recommender
from npcf.utils import parallel
from npcf.utils.files import as_written, staged_dir, write_json
from npcf.utils.format import json_float

#: top-k outputs of an exported graph unless told otherwise
DEFAULT_TOP_K = 10
#: seconds the default `train` may spend choosing hyperparameters (the search and the
#: cross-fitting)
TUNE_BUDGET = 50.0


# ------------------------------------------------------------------------- data
def _inputs(data_options: dict) -> tuple:
    """The paths a command reads its ratings from."""
    return tuple(data_options.get(k) for k in ("data", "train_file", "test_file"))


def prepare(out, data_options: dict | None = None, *, progress=None) -> Dataset:
    """Read and split ratings (``data_options``: :func:`npcf.data.load_dataset` keywords)
    and write the prepared directory ``out``: built beside it and swapped in when complete,
    so ``out`` never mixes two data sets, and a failure leaves it as it was."""
    opts = dict(data_options or {})
    rundir.check_target(out, PREPARED_FILES, "prepared data directory", inputs=_inputs(opts),
                        markers=("stats.json",))
    ds = load_dataset(**dict(opts, progress=progress))
    with staged_dir(out) as stage:
        save_prepared(ds, stage)
    ds.path = Path(out)
    return ds


# ------------------------------------------------------------------------ train
def train(params: dict, out=rundir.DEFAULT_DIR, data_options: dict | None = None, *,
          tune: bool = True, fixed=None, tune_budget: float | None = TUNE_BUDGET,
          blend: int | None = None, folds: int | None = None, resume: bool = False,
          overwrite: bool = False,
          threads: int | None = None, progress=None, verbose_epochs: int = 0,
          echo=print) -> dict:
    """Fit an :class:`AutoEncoder` on the data ``data_options`` describe, into the run
    directory ``out`` (:mod:`npcf.rundir`).

    The run is built in a fresh directory beside ``out`` and swapped in when it ends
    (also on Ctrl-C, which leaves resume state), so ``out`` never mixes two runs and a
    failed run leaves it as it was. An ``out`` holding an interrupted run is refused
    unless ``resume`` (continue it, after checking the options and data match; its
    ``data/`` is the default data; the stage starts as a copy of ``out``, so a resumed
    run killed outright leaves the interrupted one whole) or ``overwrite``.

    A validation part is carved from training when the split has none. ``tune``: choose
    the hyperparameters on it (:meth:`AutoEncoder.tune`; ``params`` are the starting
    values, those named in ``fixed`` — default: every key of ``params`` — are kept;
    ``tune_budget`` seconds at most for the search and the cross-fitting; trials in
    ``tuning.csv``; up to ``blend`` (default :data:`BLEND`) of the searched
    configurations refitted on ``folds`` (default :data:`FOLDS`) folds and stacked, a
    user-based choice with user-based networks only, as :meth:`AutoEncoder.tune` says);
    else fit ``params`` as they are (``blend`` and ``folds`` must then be None, and a
    full-batch optimizer takes none of the step options :data:`STEP_OPTIONS`). Returns
    (and writes as ``metrics.json``) the test figures, the best validation row, paths,
    split, hyperparameters and the search's summary.
    """
    given = set(params) if fixed is None else set(fixed)
    _check_combinations(params, given, tune, blend, resume, overwrite, folds)
    blend = BLEND if blend is None else blend
    folds = FOLDS if folds is None else folds
    out = Path(out)
    opts = dict(data_options or {})
    model = AutoEncoder(**params)
    if resume:
        if not out.is_dir():
            raise NpcfError(f"--resume: {out} does not exist; there is no run to continue")
        if opts.get("data") is None and opts.get("train_file") is None:
            opts["data"] = str(out / rundir.DATA_DIR)
    else:
        rundir.check_target(out, rundir.RUN_ENTRIES + _npcf_exports(out), "run directory",
                            inputs=_inputs(opts), markers=rundir.RUN_MARKERS)
        if _interrupted(out) and not overwrite:
            raise NpcfError(f"--out {out}: holds an interrupted run; continue it with --resume "
                            "(and the same options) or replace it with --overwrite")
    ds = with_validation(load_dataset(**dict(opts, progress=progress)),
                         seed=params.get("seed", 0))
    if model.item_based and ds.split.params.get("kind") == "users":
        raise ParamError("item_based", "an item-based model scores only the users it was "
                         "trained on, and --split users holds whole users out (new users "
                         "folded in): pass --user_based, or another --split")
    with staged_dir(out, keep_on=() if tune else (TrainingInterrupted,),
                    from_target=resume) as stage:
        if resume:
            _check_resume(out, model, ds)
        else:
            save_prepared(ds, stage / rundir.DATA_DIR)
        try:
            result = _fit(model, ds, stage, out, tune=tune,
                          fixed=set(params) if fixed is None else set(fixed),
                          tune_budget=tune_budget, blend=blend, folds=folds, resume=resume,
                          threads=threads,
                          progress=progress, verbose_epochs=verbose_epochs, echo=echo)
        except (TrainingInterrupted, KeyboardInterrupt) as err:   # (the latter: waiting on workers)
            if not tune:
                raise
            raise Interrupted(f"interrupted during the hyperparameter search (or its "
                              f"cross-fitting); {out} was left "
                              "as it was (a search does not resume: run it again, with "
                              "--tune_budget SECONDS to shorten it, or --tune off)",
                              getattr(err, "exit_code", 130)) from None
        write_json(stage / rundir.METRICS_JSON, result)
        if resume:      # continued from a copy: exports of the interrupted checkpoint
            for stale in _exports_in(stage):        # are stale
                stale.unlink(missing_ok=True)
    return result


#: options a full-batch optimizer (one step over the whole training set) has no use for
STEP_OPTIONS = ("lr", "batch_size", "schedule", "step_size", "gamma", "clip_norm")


def _check_combinations(params: dict, given: set, tune: bool, blend, resume: bool,
                        overwrite: bool = False, folds=None) -> None:
    """ParamError for options that cannot go together (each one alone is checked by the
    estimator): resuming and replacing a run, a resumed search, step options beside
    ``lbfgs``, a blend without a search or of models that are never blended."""
    if resume and overwrite:
        raise ParamError("overwrite", "replaces the run in --out and --resume continues it; "
                         "pass one of them")
    if tune and resume:
        raise ParamError("resume", "continues a run trained with --tune off (a search is not "
                         "resumable); pass --tune off with the options of that run")
    unused = sorted(set(STEP_OPTIONS) & given)
    if params.get("optimizer") in FULL_BATCH and unused:
        raise ParamError("optimizer", f"{params['optimizer']} takes the whole training set per "
                         f"step and no step size: {', '.join('--' + u for u in unused)} would "
                         "be ignored; leave them out")
    for name, value, what in (("blend", blend, "mixes"), ("folds", folds, "refits")):
        if not tune and value is not None:
            raise ParamError(name, f"{what} the configurations a search tried; with --tune "
                             "off there is no search: leave it out")
        never = ("with --ensemble the chosen configuration is refitted as one network, "
                 "never blended" if params.get("ensemble", 1) > 1 else
                 f"--loss {params['loss']} models are never blended"
                 if params.get("loss", "mse") != "mse" else
                 "--user_based models are never blended (they stay exportable)"
                 if params.get("item_based") is False and "item_based" in given else None)
        if tune and value is not None and value > 1 and never:
            raise ParamError(name, f"{what} the searched configurations of a masked-MSE "
                             f"choice; {never}: leave it out")
    corruption = sorted({"noise", "noise_level"} & given)
    if not params.get("denoise", True) and corruption:
        raise ParamError(corruption[0], "--basic turns the input corruption off, so "
                         f"{' and '.join('--' + c for c in corruption)} would be ignored; "
                         "leave them out or drop --basic")
    step = sorted({"step_size", "gamma"} & given)
    if step and params.get("schedule", "none") != "step":
        raise ParamError(step[0], f"{' and '.join('--' + c for c in step)} shape the 'step' "
                         f"schedule; with --schedule {params.get('schedule', 'none')} they "
                         "would be ignored: pass --schedule step or leave them out")


def _fit(model, ds, stage: Path, out: Path, *, tune, fixed, tune_budget, blend, folds, resume,
         threads, progress, verbose_epochs, echo) -> dict:
    s = ds.split
    callbacks = [Checkpoint(stage, resume=resume, shown=out)]
    if progress is not None:
        callbacks.append(ProgressBar(progress))
    if verbose_epochs:
        callbacks.append(EpochLog(verbose_epochs, echo))
    fit_kw = dict(scale=ds.rating_range(), users=ds.users, items=ds.items)
    with parallel.using(threads):
        if tune:
            model = model.tune(s.train, s.validation, s.validation_input, fixed=fixed,
                               budget=tune_budget, progress=progress, callbacks=callbacks[:1],
                               blend=blend, folds=folds, **fit_kw)
            cols = list(dict.fromkeys(k for row in model.tuning for k in row))
            rundir.write_rows(stage / rundir.TUNING_CSV, model.tuning, cols)
        else:
            model.fit(s.train, s.validation, s.validation_input, callbacks=callbacks, **fit_kw)
        if model.loss == "mse":
            test = rating_metrics(model, s.test_input, s.test)
        else:
            test = ranking_metrics(model, s.test_input, s.test, ks=(20, 100))
    return {"test": test, "validation": _best_validation(model),
            "model_path": str(out / rundir.MODEL_NPZ), "data": str(out / rundir.DATA_DIR),
            "source": str(ds.stats.get("source", "")), "split": s.params,
            "duplicates_resolved": int(ds.stats.get("duplicates_resolved", 0) or 0),
            "hyperparameters": model.get_params(), "tuning": model.info.get("tuning"),
            "blend": model.info.get("blend"), "tuning_trials": model.tuning if tune else []}


def _npcf_exports(out: Path) -> tuple[str, ...]:
    """Name patterns of the npcf ONNX exports in ``out`` under another name than
    ``model*.onnx`` (``eval --generate --out DIR/raw.onnx``) and their id sidecars:
    stale once the run is replaced, so a run directory may hold them."""
    found = sorted(p.name for p in out.glob("*.onnx") if p.is_file() and _is_npcf_onnx(p)) \
        if out.is_dir() else []
    return tuple(found) + tuple(f"{name}.*" for name in found)


def _exports_in(out: Path) -> list[Path]:
    """Every npcf export in ``out`` (``model*.onnx``, other names, their id sidecars)."""
    found = set(rundir.exports(out))
    for pattern in _npcf_exports(out):
        found.update(p for p in out.glob(pattern) if p.is_file())
    return sorted(found)


def _resume_dirs(out: Path) -> list[Path]:
    """The directories of ``out`` holding resume state (the run's, or its members')."""
    dirs = [out] + sorted((out / rundir.MEMBERS_DIR).glob("*"))
    return [d for d in dirs if checkpoint.has_resume(d)]


def _interrupted(out: Path) -> bool:
    return out.is_dir() and bool(_resume_dirs(out))


def _check_resume(out: Path, model: AutoEncoder, ds: Dataset) -> None:
    """NpcfError unless ``out`` holds an interrupted run on ``ds``'s training part;
    ParamError (of ``resume``) naming every option that differs from the run's (checked
    before anything is written)."""
    found = _resume_dirs(out) if out.is_dir() else []
    if not found and not (out / rundir.MEMBERS_DIR).is_dir():   # an ensemble reuses members
        raise NpcfError(f"--resume: {out} holds no interrupted run ({rundir.RESUME_JSON}); "
                        "train without --resume")
    if model.ensemble == 1 and (out / rundir.MEMBERS_DIR).is_dir():
        raise ParamError("resume", f"{out} holds an interrupted ensemble; pass the "
                         "--ensemble count it was started with")
    params = model.get_params()
    fp = rundir.fingerprint(ds.split.train)
    for folder in found:
        meta, _ = checkpoint.read_resume(folder)
        want = params
        if folder != out:          # ensemble member k: its own seed, one model
            k = int(folder.name) if folder.name.isdigit() else 0
            want = dict(params, ensemble=1, seed=params["seed"] + k)
        diff = checkpoint.changed_options(meta, want)
        if diff:
            saved, given = meta.get("config", {}), as_written(want)
            shown = "; ".join(f"{_option_text(k, given.get(k))}, started with "
                              f"{_option_text(k, saved.get(k))}" for k in diff)
            raise ParamError("resume", f"continues the interrupted run with the options it "
                             f"was started with, and these differ: {shown}")
        if meta.get("fingerprint") not in (None, fp):
            raise NpcfError(f"--resume: the training data differ from the interrupted run's; "
                            f"pass the same --data (default: {out / rundir.DATA_DIR})")


#: the `train` flags of the switches (hyperparameter, value)
_FLAGS = {("denoise", True): "--denoiser", ("denoise", False): "--basic",
          ("tied", True): "--tied_weights", ("tied", False): "--not_tied",
          ("lazy", True): "no --dense_adam", ("lazy", False): "--dense_adam",
          ("item_based", True): "--item_based", ("item_based", False): "--user_based"}


def _option_text(name: str, value) -> str:
    """Option ``name`` with ``value`` as typed on the `train` command line."""
    if isinstance(value, bool) and (name, value) in _FLAGS:
        return _FLAGS[name, value]
    if value is None:
        return f"--{name} at its default"
    if isinstance(value, (list, tuple)):
        return f"--{name} {','.join(map(str, value))}"
    return f"--{name} {value}"


def _best_validation(model) -> dict:
    if "validation" in model.info:          # an ensemble: its own validation figures
        return model.info["validation"]
    best = model.info.get("best_epoch")
    if model.history and isinstance(best, int) and best > 0:
        return model.history[best - 1]
    return {}


# ----------------------------------------------------------------------- export
def export_model(model=None, out=None, *, batch_size: int = 256, top_k: int | None = None,
                 sparse_input: bool = False, precision: str = "fp32",
                 popularity_penalty: float | None = None, raw_ids: bool = False,
                 triton=None, triton_name: str | None = None,
                 triton_max_batch: int = triton_repo.DEFAULT_MAX_BATCH) -> dict:
    """Export a checkpoint (default ``models/model.npz``) to ONNX (default beside it)
    and check the graph against the NumPy forward (:func:`npcf.serving.export.check_parity`)
    on up to ``batch_size`` users: the test users of the recorded data, else random rows.
    ``top_k``: the graph's top-k outputs (default :data:`DEFAULT_TOP_K`, at most the
    catalogue; 0: scores only). The file is written only once it passes (a mismatch
    raises and leaves ``out`` as it was). The graph records the checkpoint's and the
    training data's fingerprints (:func:`check_fresh`). ``raw_ids``: the graph takes and
    returns movie ids (int64 ids only; implies ``sparse_input`` and a top-k). ``triton``:
    also write a Triton model repository there (:mod:`npcf.serving.triton`; model
    ``triton_name``, default the file's stem, ``triton_max_batch`` users per batch), only
    once the parity check passed. Returns what was written."""
    model_path = Path(model) if model else rundir.DEFAULT_DIR / rundir.MODEL_NPZ
    if model_path.suffix == rundir.ONNX_SUFFIX:
        raise NpcfError(f"{model_path}: --generate needs an .npz checkpoint, not an ONNX file")
    if not model_path.exists() and model is None:
        raise NpcfError(f"{model_path}: no checkpoint; run `python cli.py train` first "
                        "or pass --model")
    ae = AutoEncoder.load(model_path)
    folder = rundir.folder_of(model_path)
    stem = model_path.stem if model_path.suffix == ".npz" else "model"   # best.npz: best.onnx
    out = Path(out) if out else folder / rundir.onnx_name(precision, stem)
    _check_export_target(out, folder)
    if top_k is None:                     # the default: 10, or every movie of a small catalogue
        top_k = min(DEFAULT_TOP_K, ae.network.n_inputs)
    if top_k and top_k > ae.network.n_inputs:   # the library would clamp; the CLI says so
        raise ParamError("top_k", f"{top_k}: the model has only {ae.network.n_inputs} movies")
    try:
        top_k = check_exportable(ae, top_k=top_k or None, popularity_penalty=popularity_penalty,
                                 raw_ids=raw_ids)
    except ParamError:
        raise                                       # an option's problem: named by the CLI
    except NpcfError as err:                        # the model's (item-based, a blend): name it
        raise NpcfError(f"{model_path}: {err}") from None
    if triton is None and triton_name is not None:
        raise ParamError("triton_name", "names the model of --triton DIR; pass --triton too")
    if triton is not None:
        name = triton_repo.check_name(triton_name if triton_name is not None
                                      else triton_repo.default_name(out))
        triton_repo.check_target(triton, name)
        if int(triton_max_batch) < 1:
            raise ParamError("triton_max_batch", f"{triton_max_batch}: must be >= 1")
    graph, meta = graph_and_metadata(
        ae, sparse_input=sparse_input, top_k=top_k or None, raw_ids=raw_ids,
        popularity_penalty=popularity_penalty, precision=precision,
        extra_metadata={"checkpoint_sha256": checkpoint.file_digest(model_path),
                        "checkpoint_path": rundir.path_text(
                            checkpoint.checkpoint_files(model_path)[0].resolve()),
                        "data_fingerprint": ae.info.get("fingerprint", "")})
    with rundir.writing_into(out.parent), staged_export(out) as staged:
        write_graph(ae, graph, meta, staged)
        parity = check_parity(ae, staged, _parity_rows(folder, batch_size),
                              batch_size=batch_size, target=out)
        repo = None if triton is None else triton_repo.write_repository(
            staged, triton, name=name, max_batch_size=triton_max_batch)
    return {"path": str(out), "bytes": out.stat().st_size, "opset": OPSET,
            "precision": precision,
            "signature": "raw_ids" if raw_ids else "sparse" if sparse_input else "dense",
            "top_k": top_k, "triton": repo, "parity": parity}


def _check_export_target(out: Path, folder: Path) -> None:
    """``--out`` of `eval --generate`: an ``.onnx`` path that is not a directory
    (:func:`~npcf.serving.export.export_target`) and not one of the run directory's
    own files."""
    if out.suffix != rundir.ONNX_SUFFIX:
        raise ParamError("out", f"{out}: an exported model must be an .onnx file")
    export_target(out)
    if out.exists() and out.resolve().parent == folder.resolve() \
            and out.name not in [p.name for p in rundir.exports(folder)] \
            and not _is_npcf_onnx(out):
        raise NpcfError(f"--out {out}: is a file of the run directory, not an export")
    if out.is_file() and not _is_npcf_onnx(out):
        raise NpcfError(f"--out {out}: exists and is not an npcf export; remove it or choose "
                        "another --out")


def _is_npcf_onnx(path: Path) -> bool:
    """Whether ``path`` is an ONNX file npcf exported (its producer), so it may be replaced."""
    import onnx
    try:
        return onnx.load(str(path), load_external_data=False).producer_name == "npcf"
    except Exception:           # noqa: BLE001 - not ONNX at all (protobuf raises its own)
        return False


def check_fresh(model, path) -> None:
    """NpcfError if the ONNX file ``path`` (loaded as the Recommender ``model``) was
    exported from another checkpoint than the one now beside it
    (:func:`npcf.rundir.check_export_fresh`)."""
    if isinstance(model, Recommender):
        rundir.check_export_fresh(model.meta, path)


def _check_data(model, path, ds: Dataset) -> None:
    """NpcfError if the model was trained on another training part than ``ds``'s (the
    data its run directory records)."""
    recorded = _recorded_fingerprint(model)
    if recorded and recorded != rundir.fingerprint(ds.split.train):
        raise NpcfError(f"{path}: was not trained on the training part of {ds.path}; "
                        "re-train, re-export, or pass --data")


def _check_leak(model, path, ds: Dataset) -> str | None:
    """NpcfError if test ratings of ``ds`` (data given with --data) were in the model's
    training or validation ratings: figures measured on them would be inflated (e.g. a
    model of one split evaluated on a split of the same file with another seed). Checked
    against the data the model's run directory records, when that is the data it was
    trained on (by fingerprint); a test on the model's own training part passes. Returns
    a warning when the check could not be made (the model's training data not found)."""
    fp = _recorded_fingerprint(model)
    if fp and fp == rundir.fingerprint(ds.split.train):
        return None
    unchecked = (f"whether {ds.path or 'the data'}'s test ratings were among {path}'s training "
                 "ratings was not checked")
    if not fp:
        return f"{path} records no fingerprint of its training data: {unchecked}"
    found = rundir.recorded_data(rundir.folder_of(path))
    if found is None:
        return (f"{path}: its training data is not beside it (a run directory's data/): "
                f"{unchecked}")
    seen_ds = load_prepared(found)
    if rundir.fingerprint(seen_ds.split.train) != fp:
        return f"{found} is not the data {path} was trained on: {unchecked}"
    s = seen_ds.split
    seen = s.train if s.validation is None else (s.train + s.validation).tocsr()
    test = ds.split.test.tocoo()
    rows = seen_ds.users.index(ds.users.ids[test.row], missing="ignore")
    cols = seen_ds.items.index(ds.items.ids[test.col], missing="ignore")
    known = (rows >= 0) & (cols >= 0)
    seen = seen.tocoo()
    codes = seen.row.astype(np.int64) * seen.shape[1] + seen.col
    n = int(np.isin(rows[known] * seen.shape[1] + cols[known], codes).sum())
    if n:
        raise NpcfError(f"{ds.path or 'data'}: {n} of its {test.nnz} test ratings were in "
                        f"the training data of {path} ({found}); figures on them would be "
                        "inflated: evaluate on data the model was not trained on")
    return None


def _recorded_fingerprint(model) -> str | None:
    """The training-part fingerprint a model (checkpoint or export) records."""
    if isinstance(model, Recommender):
        return model.meta.get("data_fingerprint")
    return (model.info or {}).get("fingerprint")


def _parity_rows(folder: Path, n: int) -> sp.csr_matrix | None:
    """Up to ``n`` test users (with ratings) of the data recorded in ``folder``, else
    None (the parity check then draws random ones)."""
    data_dir = rundir.recorded_data(folder)
    if data_dir is None:
        return None
    x = load_prepared(data_dir).split.test_input
    return x[np.flatnonzero(np.diff(x.indptr))[:n]]


# --------------------------------------------------------------------- evaluate
def find_model(model=None) -> Path:
    """``model`` (a run directory: its ``model.onnx``, else its ``model.npz``), or by
    default the same in :data:`~npcf.rundir.DEFAULT_DIR`."""
    folder = rundir.DEFAULT_DIR
    if model:
        path = Path(model)
        if not path.exists():
            raise NpcfError(f"{path}: no such model")
        if not path.is_dir():
            return path
        folder = path
    for name in (rundir.onnx_name(), rundir.MODEL_NPZ):
        if (folder / name).is_file():
            return folder / name
    raise NpcfError(f"no model in {folder}/ (model.onnx or model.npz); run "
                    "`python cli.py train` (and `eval --generate`) first or pass --model")


def open_model(path, batch_size: int = 256):
    """An ``.onnx`` file as a :class:`Recommender`, else a checkpoint as an
    :class:`AutoEncoder`: both score rows and ``recommend`` alike."""
    path = Path(path)
    if path.suffix == rundir.ONNX_SUFFIX:
        return Recommender.load(path, batch_size=batch_size)
    return AutoEncoder.load(path)


def recorded_dataset(data, model_dir: Path | None) -> Dataset:
    """The prepared data set ``data``, or the one `train` recorded in ``model_dir``."""
    if data is not None:
        if problem := not_prepared(data):
            raise NpcfError(f"{data}: {problem}; pass the data/ folder written by train (or "
                            "`prepare`)")
        return load_prepared(data)
    found = rundir.recorded_data(model_dir) if model_dir is not None else None
    if found is None:
        metrics = None if model_dir is None else Path(model_dir) / rundir.METRICS_JSON
        where = "" if metrics is None else f" in {metrics}" if metrics.is_file() else \
            f": {model_dir} has no {rundir.METRICS_JSON} (not a run directory)"
        raise NpcfError(f"no test data recorded{where}; pass --data DIR (a prepared directory)")
    return load_prepared(found)


def _score_fn(model, test_input: sp.csr_matrix, batch_size: int):
    """``score_fn`` for :func:`evaluate`: rows -> the scores the model ranks by (before
    the clip to its rating scale; :func:`evaluate` clips for RMSE), item-based: by row
    index."""
    if isinstance(model, Recommender):
        return lambda x: model.rank_scores(x, batch_size=batch_size)
    if model.item_based:
        full = model.rank_scores(test_input)

        def by_row(u):
            return full[u]
        by_row.by_row_index = True
        return by_row
    return lambda x: model.rank_scores(x, batch_size=batch_size)


def evaluate_model(model=None, data=None, *, batch_size: int = 256, ks=None,
                   threshold: float | None = None, progress=None) -> dict:
    """Metrics of a model (``.onnx`` or checkpoint; default :func:`find_model`) on the
    test split of ``data`` (default: the one train recorded). ``threshold``: relevance
    (:func:`~npcf.evaluation.metrics.resolve_threshold`), a property of the data so every
    model is judged on the same items."""
    path = find_model(model)
    m = open_model(path, batch_size)
    check_fresh(m, path)
    ds = recorded_dataset(data, rundir.folder_of(path))
    s = ds.split
    if data is None:
        _check_data(m, path, ds)
    ds.check_items(m.items.ids if m.items is not None else None, path)
    warnings = [w for w in [_check_leak(m, path, ds) if data is not None else None] if w]
    _check_scale(m, ds, path)
    ks = _check_cutoffs(ks, threshold, ds)
    loss = m.loss
    rating = loss == "mse"
    threshold = resolve_threshold(threshold, ds.rating_range())
    # ranked as the model serves: with its popularity penalty, from its own counts
    penalty = float(getattr(m, "popularity_penalty", 0.0) or 0.0)
    result = evaluate(_score_fn(m, s.test_input, batch_size), s.test_input, s.test, ks=ks,
                      item_counts=ds.item_counts(), rating=rating, threshold=threshold,
                      batch_size=batch_size, progress=progress, popularity_penalty=penalty,
                      penalty_counts=m.item_counts if penalty else None,
                      exclude=m.untrained_items(), clip=m.rating_scale)
    result["popularity_penalty"] = penalty
    result["examples"] = example_records(result, ds)
    result.update(model=str(path), format="onnx" if isinstance(m, Recommender) else "npz",
                  loss=loss, data=str(ds.path) if ds.path else None, split=s.params,
                  protocol=describe(s.params), warnings=warnings)
    return result


#: the ranking cut-offs reported when none are given (those within the catalogue)
DEFAULT_KS = (10, 20, 100)


def _check_cutoffs(ks, threshold, ds: Dataset) -> tuple[int, ...]:
    """The cut-offs to report: ``ks``, or by default those of :data:`DEFAULT_KS` within
    the catalogue (else the catalogue's size). ParamError for a cut-off given beyond the
    catalogue (its figures would be the catalogue's, labelled otherwise) or a relevance
    threshold above every held-out rating."""
    n = len(ds.items)
    if ks is None:
        ks = tuple(k for k in DEFAULT_KS if k <= n) or (n,)
    if max(ks) > n:
        raise ParamError("ks", f"{max(ks)}: beyond the {n:,} movies of {ds.path or 'the data'}")
    hi = float(ds.split.test.data.max()) if ds.split.test.nnz else None
    if threshold is not None and hi is not None and threshold > hi:
        raise ParamError("threshold", f"{threshold:g}: above every held-out rating (the "
                         f"highest is {hi:g}); no movie would be relevant")
    return tuple(ks)


def _check_scale(m, ds: Dataset, path) -> None:
    """NpcfError naming the data and the model if the test input's ratings lie outside
    the model's rating scale (other data than the model's, or another unit)."""
    problem = outside_scale(ds.split.test_input.data, m.rating_scale)
    if problem:
        raise NpcfError(f"{ds.path or 'data'}: {problem} ({path})")


def example_records(result: dict, ds: Dataset, n_items: int = 5) -> list[dict]:
    """The evaluated example users with raw ids and titles (JSON-friendly)."""
    titles = ds.titles()
    out = []
    for ex in result.get("examples", []):
        rel = set(ex["relevant"])
        top = []
        for col, s in zip(ex["items"][:n_items], ex["scores"][:n_items]):
            mid = ds.items.ids[col].item()
            top.append({"movie_id": mid, "title": titles.get(mid, ""),
                        "score": json_float(s), "relevant": col in rel})
        out.append({"user_id": ds.users.ids[ex["user"]].item(), "n_input": ex["n_input"],
                    "n_heldout": ex["n_heldout"], "n_relevant": len(rel), "top": top})
    return out


# -------------------------------------------------------------------- baselines
def compare_baselines(data=None, *, ks=None, threshold: float | None = None,
                      batch_size: int = 256, names=baselines.NAMES, progress=None,
                      log=None, reader_options: dict | None = None) -> dict:
    """Fit every baseline on the split's training part and evaluate them side by side.

    ``data``: a prepared directory (default: the one train recorded in ``models/``), or
    ratings / a dataset name split as ``train`` would by default, read with
    ``reader_options`` (``format``, ``sep``, ``columns``, ``scale``). A validation part is
    carved from training when the split has none; it picks EASE's lambda and the
    biases' regularisation. ``log``: called with a line before each fit.
    """
    ds = with_validation(_baseline_data(data, progress, reader_options or {}))
    s = ds.split
    ks = _check_cutoffs(ks, threshold, ds)
    threshold = resolve_threshold(threshold, ds.rating_range())
    counts = ds.item_counts()
    results = {}
    for model in baselines.make(names, scale=ds.rating_range(), threshold=threshold):
        if log is not None:
            log(f"fitting {model.name} ...")
        model.fit(s.train, s.validation, s.validation_input)
        # ranked as the model's recommend ranks: never a movie no training rating touched
        # (as eval --evaluate ranks npcf's model)
        r = evaluate(getattr(model, "rank_scores", model.predict), s.test_input, s.test, ks=ks,
                     item_counts=counts, rating=model.rating, threshold=threshold,
                     batch_size=batch_size, progress=progress, examples=0, label=model.name,
                     exclude=model.untrained_items(), clip=model.rating_scale)
        r.pop("examples", None)
        r["params"] = model.params()
        results[model.name] = r
    where = str(ds.path) if ds.path else str(ds.stats.get("source", data))
    return {"data": where, "split": s.params, "protocol": describe(s.params),
            "threshold": threshold, "ks": list(ks), "models": results}


def _baseline_data(data, progress, reader_options: dict) -> Dataset:
    if data is None:
        found = rundir.recorded_data(rundir.DEFAULT_DIR)
        if found is None:
            raise NpcfError("no data: pass --data (a prepared directory, ratings file or "
                            f"dataset name); none recorded in "
                            f"{rundir.DEFAULT_DIR}/{rundir.METRICS_JSON}")
        data = found
    if is_prepared(data):
        if any(v not in (None, "auto") for v in reader_options.values()):
            raise NpcfError(f"{data}: a prepared directory is read as prepared; "
                            "--format/--sep/--columns/--scale are for a ratings file")
        return load_prepared(data)
    return load_dataset(data, progress=progress, **reader_options)


# -------------------------------------------------------------------- recommend
def _known_user_top(m: AutoEncoder, path, ds: Dataset, user, seen: sp.csr_matrix, k: int,
                    include_seen: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(movie ids, scores)`` of known ``user``'s top ``k`` from an item-based
    checkpoint: each movie's reconstruction at that user, the input being every rating
    known at test time (the split's test input, as `eval --evaluate` scores it) of the
    data the model was fitted on (``ds``'s training part, checked by fingerprint)."""
    s = ds.split
    if rundir.fingerprint(s.train) != m.info.get("fingerprint"):
        raise NpcfError(f"{ds.path}: not the training data {path} was fitted on; an "
                        "item-based model needs it: pass --data with its run's data/ directory")
    n = s.train.shape[1]
    u = int(ds.users.index([user])[0])
    scores = m.predict_at(s.test_input, np.full(n, u), np.arange(n), clip=False)[None, :]
    idx, top = rank(scores, k, seen=None if include_seen else seen,
                    exclude=m.untrained_items(), penalty=m.popularity_penalty,
                    item_counts=m.item_counts)        # ranked before the clip, shown clipped
    ids = idx if m.items is None else m.items.ids[np.maximum(idx, 0)]
    return ids, clip_finite(np.where(idx < 0, -np.inf, top), m.rating_scale)


def _check_titles(titles: dict, movies, m) -> None:
    """NpcfError naming the titles file ``movies`` when its ``titles`` name none of model
    ``m``'s movies (the titles of another data set: every title would be blank)."""
    ids = m.items.ids if m.items is not None else None
    if titles and ids is not None and not any(i in titles for i in ids.tolist()):
        raise NpcfError(f"{movies}: none of its {len(titles):,} movie ids is a movie of the "
                        "model; the titles of another data set?")


def recommend(model=None, *, user=None, ratings=None, k: int = 10, movies=None, data=None,
              include_seen: bool = False) -> list[dict]:
    """Top-``k`` movies for a known ``user`` (their ratings in ``data``, default the data
    train recorded) or a new user's ``ratings`` (``[(movie id, rating), ...]``: fold-in,
    user-based models only; an item-based checkpoint scores its own training users).

    ``model``: an ``.onnx`` file, a checkpoint, or by default the run directory's
    ``model.onnx``, falling back to ``model.npz`` before anything was exported.
    Returns ``[{rank, movie_id, title, score}, ...]``.
    """
    if (user is None) == (ratings is None):
        raise NpcfError("give exactly one of a user id or a list of ratings")
    path = find_model(model)
    m = open_model(path)
    check_fresh(m, path)
    titles = read_titles(movies) if movies is not None else {}
    if movies is not None:                         # a titles file the user named
        _check_titles(titles, movies, m)
    item_based = getattr(m, "item_based", False)
    if item_based and ratings is not None:
        raise NpcfError(f"{path}: an item-based model scores only the users it was trained "
                        "on; pass --user ID, or train a user-based model (--user_based) to "
                        "fold in new ratings")
    data_dir = Path(data) if data else rundir.recorded_data(rundir.folder_of(path))
    if movies is None and data_dir is not None and (data_dir / "movies.csv").is_file():
        titles = read_titles(data_dir / "movies.csv")
    if user is not None:
        if data_dir is None:
            raise NpcfError("a user id needs the training data: pass --data DIR "
                            "(a prepared directory)")
        ds = load_prepared(data_dir)
        ds.check_items(m.items.ids if m.items is not None else None, path)
        rows = ds.user_row(user)
    else:
        rows = list(ratings)
        try:                          # a problem with the given ratings is an option error
            m._pairs_row(rows)
        except NpcfError as err:
            raise ParamError("ratings", str(err)) from None
    if item_based:
        ids, scores = _known_user_top(m, path, ds, user, rows, k, include_seen)
    else:
        ids, scores = m.recommend(rows, k=k, filter_seen=not include_seen)
    ids, scores = np.atleast_2d(ids)[0], np.atleast_2d(scores)[0]
    keep = np.isfinite(scores)                     # padding: fewer unseen movies than k
    return [{"rank": i + 1, "movie_id": mid, "title": titles.get(mid, ""),
             "score": json_float(s)}
            for i, (mid, s) in enumerate(zip(ids[keep].tolist(), scores[keep]))]

