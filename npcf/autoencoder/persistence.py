"""An :class:`~npcf.AutoEncoder` as checkpoint contents and back: ``(arrays, meta)``
with the network's parameters, the bias baseline, the id maps, the item counts and a
blend's members, and the checks that a loaded pair describes one model.
:mod:`npcf.autoencoder.checkpoint` reads and writes the files.
"""
from __future__ import annotations

import math

import numpy as np

from npcf._version import __version__
from npcf.autoencoder import checkpoint, hyperparameters
from npcf.autoencoder.blend import MASS_FEATURES, SUPPORT_FEATURES
from npcf.autoencoder.members import NEIGHBOUR_KINDS, NeighbourMember
from npcf.autoencoder.units import MIN_UNIT, UNIT_TOLERANCE
from npcf.data.vocab import Vocabulary
from npcf.errors import CheckpointError, check_scale, one_line
from npcf.nn.bias import UserItemBias
from npcf.nn.network import Network, ShapeMismatch


def save(model, path) -> None:
    """Write fitted ``model`` as the checkpoint ``path`` names (see
    :func:`~npcf.autoencoder.checkpoint.write_model`); CheckpointError if it is not
    fitted, if a hyperparameter is one ``load`` would refuse, or if the place cannot be
    written."""
    if model.network is None:
        raise CheckpointError("cannot save a model that is not fitted")
    model._check_params()                  # never write what load would refuse
    arrays, meta = _own_parts(model)
    for name in ("users", "items"):
        vocab = getattr(model, name)
        if vocab is not None:
            arrays[f"{name}/ids"] = vocab.ids
    arrays["items/counts"] = model.item_counts
    if model.blend_weights is not None:
        meta["blend"] = {"weights": np.asarray(model.blend_weights, np.float64).tolist(),
                         "members": []}
        if model.blend_offset is not None:          # weights that follow the pair's counts
            meta["blend"]["offset"] = np.asarray(model.blend_offset, np.float64).tolist()
        for k, m in enumerate(model.blend_members):
            a, mm = m.parts() if isinstance(m, NeighbourMember) else _own_parts(m)
            arrays.update({f"blend{k}/{name}": v for name, v in a.items()})
            meta["blend"]["members"].append(mm)
    try:
        checkpoint.write_model(path, arrays, meta)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot write the model ({err.strerror or err})") \
            from None


def _own_parts(model) -> tuple[dict, dict]:
    """``(arrays, meta)`` of ``model``'s own network, baseline and settings."""
    net = model.network
    arrays = {f"param/{k}": v for k, v in net.params.items()}
    if model.baseline is not None:
        arrays["baseline/col_bias"] = model.baseline.col_bias
    return arrays, {
        "npcf_version": __version__,
        "architecture": {"n_inputs": net.n_inputs, "layers": list(net.layers),
                         "tied": net.tied, "activation": net.activation,
                         "output_activation": net.output_activation,
                         "item_based": bool(model.item_based), "dtype": str(net.dtype)},
        "hyperparameters": model.get_params(),
        "scale": None if model.scale is None else list(model.scale),
        "unit": model.unit,
        "n_users": None if model.users is None else len(model.users),
        "n_items": None if model.items is None else len(model.items),
        "info": model.info,
        "baseline": None if model.baseline is None else {
            "mu": model.baseline.mu, "reg_row": model.baseline.reg_row,
            "reg_col": model.baseline.reg_col},
    }


def load(cls, path):
    """A ``cls`` (the AutoEncoder class) from the checkpoint ``path`` names;
    CheckpointError naming the file and the problem for anything that does not fit."""
    meta, arrays, npz = checkpoint.read_model(path)
    meta_path = npz.with_suffix(".json")
    try:
        return _from_parts(cls, meta, arrays, npz)
    except (KeyError, TypeError, AttributeError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else one_line(err)
        raise CheckpointError(f"{meta_path}: incompatible checkpoint metadata ({what})") \
            from None
    except ShapeMismatch as err:
        raise CheckpointError(f"{npz}: weights do not match {meta_path.name} ({err})") \
            from None
    except ValueError as err:
        raise CheckpointError(f"{meta_path}: incompatible checkpoint metadata "
                              f"({one_line(err)})") from None


#: the largest blend weight or offset a saved model may hold (a fitted one is ~1 or less)
MAX_BLEND_VALUE = 1e6


def _check_numbers(values, what: str) -> None:
    """ValueError unless ``values`` (nested lists from JSON) are finite numbers (not bools)
    of magnitude below :data:`MAX_BLEND_VALUE`."""
    flat = list(values) if isinstance(values, list) else [values]
    while any(isinstance(v, list) for v in flat):
        flat = [w for v in flat for w in (v if isinstance(v, list) else [v])]
    if not all(type(v) in (int, float) and math.isfinite(v) and abs(v) < MAX_BLEND_VALUE
               for v in flat):
        raise ValueError(f"{what} must be finite numbers below {MAX_BLEND_VALUE:g} in size")


def _hyperparameters(meta: dict) -> dict:
    """The saved hyperparameters, with what npcf before 2026-12-04 accepted (and saved):
    0/1 switches as bools, layer sizes as the network built them."""
    hp = dict(meta["hyperparameters"])
    for name in hyperparameters.SWITCHES:
        if type(hp.get(name)) is int and hp[name] in (0, 1):
            hp[name] = bool(hp[name])
    if isinstance(hp.get("layers"), list):      # as given (a JSON list; an ensemble's
        hp["layers"] = tuple(int(h) if isinstance(h, float) and h.is_integer() else h
                             for h in hp["layers"])     # network is K times wider)
    if isinstance(hp.get("bias_reg"), list):    # a pair (users, items), saved as a list
        hp["bias_reg"] = tuple(hp["bias_reg"])
    return hp


def _check_agrees(model, meta: dict) -> None:
    """ValueError where the saved hyperparameters, scale or baseline contradict the
    architecture (a hand-edited ``model.json`` that would load a model other than its
    description says, or one predicting nothing but NaN)."""
    arch = meta["architecture"]
    k = int(model.ensemble or 1)
    if model.layers is not None and [h * k for h in model.layers] != list(arch["layers"]):
        raise ValueError(f"layers {list(model.layers)}" + (f" x ensemble {k}" if k > 1 else "")
                         + f" disagree with the network's {list(arch['layers'])}")
    for name in ("item_based", "activation", "output_activation"):
        given = getattr(model, name)
        if given is not None and given != arch[name]:
            raise ValueError(f"{name} {given!r} disagrees with the network's {arch[name]!r}")
    check_scale(meta.get("scale"))
    b = meta.get("baseline")
    if b is None and model.residual and model.loss == "mse":
        raise ValueError("residual is on but there is no baseline to add the residual to")
    if b is not None and not all(isinstance(b.get(f), (int, float)) and math.isfinite(b[f])
                                 for f in ("mu", "reg_row", "reg_col")):
        raise ValueError(f"baseline {b!r} is not three finite numbers mu, reg_row, reg_col")


def _check_id_arrays(arrays: dict, arch: dict, npz, meta: dict) -> None:
    """CheckpointError unless the id maps and item counts are 1-D and as long as the
    network needs (user-based: items = input width; item-based: users = input width), the
    id maps ``meta`` records (``n_users``/``n_items``) all there, and the counts integers
    from 0 to the number of users where that is known."""
    width = int(arch["n_inputs"])
    counts = arrays.get("items/counts")
    n_items = (None if counts is None else counts.size) if arch["item_based"] else width
    for name, n in (("items/ids", n_items), ("items/counts", n_items),
                    ("users/ids", width if arch["item_based"] else None)):
        a = arrays.get(name)
        if a is not None and a.ndim != 1:
            raise CheckpointError(f"{npz}: {name} holds a {a.ndim}-D array, not a list")
        if a is not None and n is not None and a.size != n:
            raise CheckpointError(f"{npz}: {name} holds {a.size} entries for {n} "
                                  f"{name.split('/')[0]}")
    for name, key in (("users/ids", "n_users"), ("items/ids", "n_items")):
        if meta.get(key) is not None and name not in arrays:   # else: renumbered
            raise CheckpointError(f"{npz}: {name}: missing (the model was saved with "
                                  f"{meta[key]} {name.split('/')[0][:-1]} ids)")
    users = meta.get("n_users") or (width if arch["item_based"] else None)
    if counts is not None and counts.size and not (
            counts.dtype.kind in "iu" and counts.min() >= 0            # a blend weighs by
            and (type(users) is not int or counts.max() <= users)):   # them
        raise CheckpointError(f"{npz}: items/counts: not whole numbers from 0 to the number "
                              "of users (ratings per item)")


def _from_parts(cls, meta: dict, arrays: dict, npz, prefix: str = ""):
    """The model ``meta`` and ``arrays`` describe (a blend member's under ``prefix``, as
    its arrays are named in ``npz``)."""
    hp = _hyperparameters(meta)
    arch = meta["architecture"]
    model = cls(**hp)
    _check_agrees(model, meta)
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    for name, value in params.items():
        if not (np.issubdtype(value.dtype, np.number) and np.all(np.isfinite(value))):
            raise CheckpointError(f"{npz}: {prefix}param/{name}: not all finite numbers")
    model.network = Network(arch["n_inputs"], arch["layers"], tied=arch["tied"],
                            activation=arch["activation"],
                            output_activation=arch["output_activation"],
                            dropout=hp.get("dropout", 0.0),
                            dtype=np.dtype(arch.get("dtype", "float32")), params=params)
    model.scale = None if meta.get("scale") is None else tuple(map(float, meta["scale"]))
    model.unit = meta.get("unit", 1.0)                 # saved before units: 1
    if isinstance(model.unit, bool) or not isinstance(model.unit, (int, float)) \
            or not MIN_UNIT <= model.unit <= 1 \
            or abs(np.log10(model.unit) - round(np.log10(model.unit))) > UNIT_TOLERANCE:
        raise CheckpointError(f"{npz}: unit {model.unit!r} is not a power of ten in "
                              f"[{MIN_UNIT:g}, 1]")
    model.unit = float(model.unit)
    _check_id_arrays(arrays, arch, npz, meta)
    model.users = Vocabulary(arrays["users/ids"]) if "users/ids" in arrays else None
    model.items = Vocabulary(arrays["items/ids"]) if "items/ids" in arrays else None
    model.info = dict(meta.get("info", {}))
    model.item_counts = arrays.get("items/counts")
    if model.item_counts is None:
        raise CheckpointError(f"{npz}: missing items/counts")
    if meta.get("baseline") is not None:
        b = meta["baseline"]
        if "baseline/col_bias" not in arrays:
            raise CheckpointError(f"{npz}: missing {prefix}baseline/col_bias")
        model.baseline = UserItemBias(b["reg_row"], b["reg_col"])
        model.baseline.mu = float(b["mu"])
        model.baseline.col_bias = arrays["baseline/col_bias"]
        if not (np.issubdtype(model.baseline.col_bias.dtype, np.floating)
                and np.all(np.isfinite(model.baseline.col_bias))):
            raise CheckpointError(f"{npz}: {prefix}baseline/col_bias: not all finite numbers")
    if meta.get("blend") is not None:
        if not isinstance(meta["blend"], dict):
            raise ValueError("blend is not a JSON object")
        _check_numbers(meta["blend"]["weights"], "blend weights")
        try:
            weights = np.asarray(meta["blend"]["weights"], np.float64)
        except ValueError:                                  # rows of different lengths
            raise ValueError("blend weights do not match its members") from None
        shared = {k: v for k, v in arrays.items() if k.split("/")[0] in ("users", "items")}
        model.blend_members = []
        if not isinstance(meta["blend"]["members"], list):
            raise ValueError("blend members are not a JSON list")
        for k, mm in enumerate(meta["blend"]["members"]):
            at = f"blend{k}/"                   # (``prefix`` is this model's own)
            own = {n[len(at):]: v for n, v in arrays.items() if n.startswith(at)}
            if not isinstance(mm, dict):
                raise ValueError(f"blend member {k} is not a JSON object")
            if "kind" in mm and mm["kind"] not in NEIGHBOUR_KINDS:
                raise ValueError(f"blend member {k} is of unknown kind {mm['kind']!r}")
            try:
                member = NeighbourMember.from_parts(
                    mm, own, model.item_counts.size, model.scale, f"{npz}: {at}") \
                    if "kind" in mm else _from_parts(cls, mm, dict(own, **shared), npz, at)
            except ShapeMismatch as err:
                raise ShapeMismatch(f"{at}: {err}") from None
            except KeyError as err:                 # the member's metadata, named
                raise ValueError(f"blend member {k}: missing {err}") from None
            except (ValueError, TypeError) as err:
                raise ValueError(f"blend member {k}: {one_line(err)}") from None
            model.blend_members.append(member)
        offset = meta["blend"].get("offset")
        if offset is None:
            if weights.ndim == 2:
                raise ValueError("blend offset missing beside per-pair blend weights")
            if weights.shape != (1 + len(model.blend_members),) or not np.all(weights >= 0):
                raise ValueError("blend weights do not match its members")
        else:
            _check_numbers(offset, "blend offset")
            offset = np.asarray(offset, np.float64)
            if weights.ndim != 2 or weights.shape[0] != 1 + len(model.blend_members) \
                    or weights.shape[1] not in (SUPPORT_FEATURES, MASS_FEATURES):
                raise ValueError("blend weights do not match its members")
            width = weights.shape[1]
            if offset.shape != (width,):
                raise ValueError(f"blend offset must hold {width} numbers, as each "
                                 "member's weights do")
            if width == MASS_FEATURES and not any(
                    isinstance(m, NeighbourMember) for m in model.blend_members):
                raise ValueError("blend weights follow the neighbours' similarity mass, "
                                 "but no blend member is item neighbours")
        model.blend_weights, model.blend_offset = weights, offset
    if not prefix:            # the file's own arrays: none of a member model.json omits
        listed = {f"blend{k}" for k in range(len(model.blend_members))}
        stray = sorted({n.split("/")[0] for n in arrays if n.startswith("blend")} - listed)
        if stray:
            raise CheckpointError(f"{npz}: {', '.join(stray[:3])}: arrays of no blend member "
                                  f"{npz.with_suffix('.json').name} lists")
    return model
