"""Model checkpoints: ``model.npz`` (weights and id maps; no pickle) and
``model.json`` (architecture, hyperparameters, scale, version, data fingerprint)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from npcf.errors import CheckpointError
from npcf.utils.files import atomic_path, write_json
from npcf.data.vocab import Vocabulary

FORMAT, FORMAT_VERSION = "npcf-autoencoder", 1


def save_model(model, path) -> Path:
    """Save a fitted :class:`~npcf.AutoEncoder` into directory ``path``."""
    from npcf import __version__
    if model.network is None:
        raise CheckpointError("cannot save a model that is not fitted")
    path = Path(path)
    arrays = {f"param/{k}": v for k, v in model.network.params.items()}
    for name in ("users", "items"):
        vocab = getattr(model, name)
        if vocab is not None:
            arrays[f"{name}/ids"] = vocab.ids
    if model.item_counts is not None:
        arrays["items/counts"] = model.item_counts
    if model.baseline is not None:
        arrays["baseline/col_bias"] = model.baseline.col_bias
    with atomic_path(path / "model.npz", suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    net = model.network
    write_json(path / "model.json", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "npcf_version": __version__,
        "architecture": {"n_inputs": net.n_inputs, "layers": list(net.layers), "tied": net.tied,
                         "activation": net.activation,
                         "output_activation": net.output_activation,
                         "item_based": model.item_based, "dtype": str(net.dtype)},
        "hyperparameters": model.get_params(),
        "scale": None if model.scale is None else list(model.scale),
        "n_users": None if model.users is None else len(model.users),
        "n_items": None if model.items is None else len(model.items),
        "info": model.info,
        "baseline": None if model.baseline is None else {
            "mu": model.baseline.mu, "reg_row": model.baseline.reg_row,
            "reg_col": model.baseline.reg_col},
    })
    return path


def load_model(path):
    """Load a model from a directory (or its ``model.npz``/``model.json``)."""
    from npcf.autoencoder.estimator import AutoEncoder
    from npcf.nn.network import Network
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    npz, meta_path = folder / "model.npz", folder / "model.json"
    for f in (npz, meta_path):
        if not f.is_file():
            raise CheckpointError(f"{f}: no such checkpoint file")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not an npcf model file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: written by a newer npcf "
                              f"({meta.get('npcf_version')}); upgrade npcf")
    try:
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{npz}: corrupt checkpoint ({err})") from None
    try:
        hp = dict(meta["hyperparameters"])
        hp["layers"] = tuple(hp["layers"])
        model = AutoEncoder(**hp)
        arch = meta["architecture"]
        params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
        net = Network(arch["n_inputs"], arch["layers"], tied=arch["tied"],
                      activation=arch["activation"], output_activation=arch["output_activation"],
                      dropout=hp["dropout"], dtype=np.dtype(arch.get("dtype", "float32")),
                      params=params)
    except (KeyError, TypeError, ValueError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(f"{meta_path}: incompatible checkpoint metadata ({what})") from None
    _check_shapes(npz, net)
    model.network = net
    model.scale = None if meta.get("scale") is None else tuple(meta["scale"])
    model.users = Vocabulary(arrays["users/ids"]) if "users/ids" in arrays else None
    model.items = Vocabulary(arrays["items/ids"]) if "items/ids" in arrays else None
    model.info = meta.get("info", {})
    model.item_counts = arrays.get("items/counts")
    if meta.get("baseline") is not None:
        from npcf.nn.bias import BiasBaseline
        b = meta["baseline"]
        model.baseline = BiasBaseline(b["reg_row"], b["reg_col"])
        model.baseline.mu = float(b["mu"])
        if "baseline/col_bias" not in arrays:
            raise CheckpointError(f"{npz}: missing baseline/col_bias")
        model.baseline.col_bias = arrays["baseline/col_bias"]
    return model


def _check_shapes(npz: Path, net) -> None:
    d = net.sizes
    want = {}
    for k in range(len(net.layers)):
        want[f"W{k}"], want[f"b{k}"], want[f"c{k}"] = (d[k], d[k + 1]), (d[k + 1],), (d[k],)
        if not net.tied:
            want[f"V{k}"] = (d[k], d[k + 1])
    got = {k: v.shape for k, v in net.params.items()}
    if got != want:
        missing = sorted(set(want) - set(got))
        wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise CheckpointError(f"{npz}: weights do not match model.json "
                              f"(missing {missing or 'none'}, wrong shape {wrong or 'none'})")
