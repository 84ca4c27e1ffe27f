"""The domain of every numeric hyperparameter of :class:`~npcf.AutoEncoder`, and the
pairs that cannot go together: one table the estimator checks and the CLI turns into
its option types.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from npcf.errors import ParamError
from npcf.evaluation.ranking import MAX_PENALTY

#: name -> (type, low, high, low_open, high_open); None = unbounded on that side
RANGES = {
    "n_epochs": (int, 1, None, False, False),
    "batch_size": (int, 1, None, False, False),
    "lr": (float, 0.0, None, True, False),
    "weight_decay": (float, 0.0, None, False, False),
    "clip_norm": (float, 0.0, None, True, False),
    "noise_level": (float, 0.0, None, False, False),
    "dropout": (float, 0.0, 1.0, False, True),
    "step_size": (int, 1, None, False, False),
    "gamma": (float, 0.0, None, True, False),
    "patience": (int, 0, None, False, False),
    "bias_reg": (float, 0.0, None, False, False),   # or a pair (users, items) of them
    "seed": (int, 0, 2**32 - 1, False, False),
    "ensemble": (int, 1, 64, False, False),     # K networks side by side in one graph
    "popularity_penalty": (float, 0.0, MAX_PENALTY, False, False),
}
#: hyperparameters that may also be None (clip_norm: no clipping)
OPTIONAL = {"clip_norm"}
#: switches: True or False only (a string such as "no" would read as true)
SWITCHES = ("tied", "denoise", "item_based", "residual", "lazy")


def describe(name: str) -> str:
    """The domain of ``name`` in words, e.g. ``"a number in (0, inf)"``."""
    kind, lo, hi, lo_open, hi_open = RANGES[name]
    what = "an integer" if kind is int else "a number"
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return (f"{what} in {left}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{right}")


def check_value(name: str, value) -> None:
    """ParamError unless ``value`` lies in ``name``'s domain (NaN and infinities never
    do)."""
    kind, lo, hi, lo_open, hi_open = RANGES[name]
    if value is None and name in OPTIONAL:
        return
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = is_int if kind is int else (is_int or isinstance(value, numbers.Real)
                                      and not isinstance(value, bool))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and not (lo is not None and (v < lo or lo_open and v == lo)) \
            and not (hi is not None and (v > hi or hi_open and v == hi))
    if not ok:
        raise ParamError(name, f"must be {describe(name)}, got {value!r}")


def check_layers(layers) -> tuple[int, ...] | None:
    """``layers`` as a tuple of ints (None stays None); ParamError unless it is a
    sequence of positive integers (a string, a float size or a bare number is refused)."""
    if layers is None:
        return None
    bad = ParamError("layers", f"must be a sequence of positive integers such as (500,), "
                               f"got {layers!r}")
    if not (isinstance(layers, (list, tuple))
            or isinstance(layers, np.ndarray) and layers.ndim == 1):
        raise bad                  # (a set or dict has no order; a string is not sizes)
    sizes = list(layers)
    if not sizes or not all(isinstance(h, numbers.Integral) and not isinstance(h, bool)
                            and h >= 1 for h in sizes):
        raise bad
    return tuple(int(h) for h in sizes)


def check_bias_reg(value) -> tuple[float, float]:
    """``bias_reg`` as ``(users, items)`` ridge strengths (one number is both);
    ParamError unless it is one number or two in its domain."""
    if isinstance(value, (list, tuple)) or isinstance(value, np.ndarray) and value.ndim == 1:
        pair = list(value)
        if len(pair) != 2:
            raise ParamError("bias_reg", f"must be {describe('bias_reg')} or a pair "
                                         f"(users, items) of them, got {value!r}")
    else:
        pair = [value, value]
    for v in pair:
        try:
            check_value("bias_reg", v)
        except ParamError:
            raise ParamError("bias_reg", f"must be {describe('bias_reg')} or a pair "
                                         f"(users, items) of them, got {value!r}") from None
    return float(pair[0]), float(pair[1])


def check(params: dict) -> None:
    """ParamError naming the first value out of its domain, or the first pair of
    values that cannot go together, in ``params`` (an AutoEncoder's ``get_params()``)."""
    for name in RANGES:
        if name in params and name != "bias_reg":
            check_value(name, params[name])
    if "bias_reg" in params:
        check_bias_reg(params["bias_reg"])
    for name in SWITCHES:
        if name in params and not isinstance(params[name], (bool, np.bool_)):
            raise ParamError(name, f"must be True or False, got {params[name]!r}")
    if "layers" in params:
        check_layers(params["layers"])
    if params.get("loss") == "multinomial" and params.get("item_based"):
        raise ParamError("item_based", "the multinomial loss ranks items for a user; it "
                         "needs the user-based model")
    if params.get("optimizer") == "lbfgs" and (params.get("denoise", True)
                                              or (params.get("dropout") or 0) > 0):
        raise ParamError("optimizer", "lbfgs minimises one fixed full-batch objective; "
                         "turn off the corruption and dropout (--basic --dropout 0)")
    if params.get("noise") == "masking" and params.get("denoise", True) \
            and (params.get("noise_level") or 0) >= 1:
        raise ParamError("noise_level", "masking drops each rating with this probability; "
                         f"it must be below 1, got {params['noise_level']!r}")
