"""The unit the network sees ratings in (:func:`rating_unit`)."""
from __future__ import annotations

import numpy as np

#: log10 slack of :func:`rating_unit` (float32 holds a power of ten to ~3e-8 in log10)
UNIT_TOLERANCE = 1e-6
#: the smallest unit a saved model may declare
MIN_UNIT = 1e-30


def rating_unit(scale) -> float:
    """The unit the network sees ratings in: 1, or for a scale whose largest magnitude is
    below 1 the power of ten just under it (0.00005-0.0005 -> 1e-4, so the network sees
    0.5-5). The learning rate, L2 and noise defaults assume ratings of order 1 and more;
    0.5-5, 1-5, 1-100 and 0-1 scales keep unit 1. A scale is not restored to its "own"
    unit: 1-10 x 1e-4 is trained as 0.1-1, 1-10 itself at unit 1."""
    if scale is None:
        return 1.0
    top = max(abs(float(scale[0])), abs(float(scale[1])))
    if not 0 < top < 1:
        return 1.0
    # a scale read from float32 data holds 1e-4 as 9.9999997e-05: its unit is still 1e-4
    return float(10.0 ** np.floor(np.log10(top) + UNIT_TOLERANCE))
