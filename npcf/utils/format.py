"""Numbers for people: fixed decimals that do not round ratings in tiny units to zero."""
from __future__ import annotations

import numpy as np


def decimal(v: float, places: int = 4) -> str:
    """``v`` with ``places`` decimals, or 4 significant digits where the decimals would
    show fewer than two (0.8471 -> ``0.8471``, 0.000045 -> ``4.5e-05``)."""
    v = float(v)
    return f"{v:.4g}" if v != 0 and abs(v) < 10.0 ** (1 - places) else f"{v:.{places}f}"


def json_float(v) -> float:
    """``v`` as float32 would hold it, in the fewest digits that read back to that float32
    (``np.float32(3.456789)`` -> ``3.456789``, not ``3.4567890167236328``): full model
    precision for JSON, without float64 noise digits."""
    return float(str(np.float32(v)))
