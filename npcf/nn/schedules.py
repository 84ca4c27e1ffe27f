"""Learning-rate schedules as pure functions of the epoch (0-based)."""
from __future__ import annotations

import math

NAMES = ("none", "step", "cosine")


def learning_rate(base: float, epoch: int, kind: str = "none", n_epochs: int = 1,
                  step_size: int = 10, gamma: float = 0.5, min_lr: float = 0.0) -> float:
    """Learning rate for ``epoch``.

    ``step``: ``base * gamma ** (epoch // step_size)`` (the original's StepLR);
    ``cosine``: from ``base`` to ``min_lr`` over ``n_epochs``; ``none``: ``base``.
    """
    if kind == "none":
        return base
    if kind == "step":
        return base * gamma ** (epoch // max(1, step_size))
    if kind == "cosine":
        frac = min(1.0, epoch / max(1, n_epochs - 1)) if n_epochs > 1 else 0.0
        return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(NAMES)}")
