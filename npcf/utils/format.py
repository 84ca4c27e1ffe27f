"""Numbers for people: fixed decimals that do not round ratings in tiny units to zero."""
from __future__ import annotations


def decimal(v: float, places: int = 4) -> str:
    """``v`` with ``places`` decimals, or 4 significant digits where the decimals would
    show fewer than two (0.8471 -> ``0.8471``, 0.000045 -> ``4.5e-05``)."""
    v = float(v)
    return f"{v:.4g}" if v != 0 and abs(v) < 10.0 ** (1 - places) else f"{v:.{places}f}"
